#!/usr/bin/env bash
# fuzz.sh FUZZTIME: every fuzz target of the module for FUZZTIME each.
#
# A target fails when the fuzzer finds an input (it writes it to
# testdata/fuzz/) or the run fails otherwise. One failure is not the
# target's: Go 1.26's fuzz coordinator can report "context deadline
# exceeded" at the end of -fuzztime when a worker is still in a call
# (golang.org/issue/75804, fixed in Go 1.27), with no input found. Such a
# run is tried once more, and fails the second time.
set -euo pipefail
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}" # the Go release Takt builds with (see the Makefile)
cd "$(dirname "$0")/../.."
fuzztime=${1:-10s}
GO=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for f in $(grep -rl --include='*_test.go' --exclude-dir=.run '^func Fuzz' .); do
	for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
		for try in 1 2; do
			echo "fuzz $(dirname "$f") $name ($fuzztime)"
			if "$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$(dirname "$f")" 2>&1 | tee "$log"; then
				break
			fi
			if [ "$try" = 1 ] && grep -q 'context deadline exceeded' "$log" &&
				! grep -q 'Failing input written' "$log"; then
				echo "fuzz: $name: the fuzzer's deadline race (golang.org/issue/75804), no input found; once more"
				continue
			fi
			exit 1
		done
	done
done
