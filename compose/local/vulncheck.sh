#!/usr/bin/env bash
# govulncheck against a local copy of the Go vulnerability database.
#
# The online database (vuln.go.dev) is not reachable from Takt's machines,
# so the database is built from the golang.org/x/vulndb module, which the
# module proxy serves: its OSV files are indexed with the module's own
# indexdb command into .run/vulndb/<version>/ (once per version; the first
# build downloads and compiles indexdb's dependencies, a few minutes).
#
# A vulnerability in a module Takt requires fails the check: bump the
# module. One in the standard library is reported and does not fail it:
# it is fixed by a newer Go release, which the report names (the release
# the build uses is GOTOOLCHAIN's, set below and in the Makefile).
set -euo pipefail
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}" # the Go release Takt builds with (see the Makefile)
cd "$(dirname "$0")/../.."

GOVULNCHECK=golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB_VERSION=${TAKT_VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
DB=".run/vulndb/$VULNDB_VERSION"

if [ ! -f "$DB/index/db.json" ]; then
	echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION"
	src=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src/data/osv" ] || { echo "vulncheck: no data/osv in golang.org/x/vulndb@$VULNDB_VERSION" >&2; exit 1; }
	rm -rf "$DB.tmp"
	mkdir -p "$(dirname "$DB")"
	go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$DB.tmp"
	rm -rf "$DB"
	mv "$DB.tmp" "$DB"
fi

# Installed rather than run with go run, which turns every failing exit
# into 1: govulncheck's 3 means "vulnerabilities found".
GOBIN="$PWD/.run/tools" go install "$GOVULNCHECK"
set +e
out=$(.run/tools/govulncheck -db "file://$PWD/$DB" "$@" 2>&1)
rc=$?
set -e
case $rc in
0)
	echo "vulncheck: no known vulnerability reached from Takt's code (database $VULNDB_VERSION)"
	;;
3)
	if grep -q '^  Module: ' <<<"$out"; then
		echo "$out"
		echo "vulncheck: vulnerable modules (above): upgrade them" >&2
		exit 1
	fi
	echo "$out" | grep -E '^(Vulnerability #|    Found in:|    Fixed in:)' | paste -d' ' - - - | tr -s ' \t' ' ' | sed 's/^/vulncheck: standard library:/'
	echo "vulncheck: only the standard library of $(go env GOVERSION) is affected; a newer Go release fixes it (see 'Fixed in' above). Modules: none."
	;;
*)
	echo "$out"
	echo "vulncheck: govulncheck failed (exit $rc)" >&2
	exit 1
	;;
esac
