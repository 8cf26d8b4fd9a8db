#!/usr/bin/env bash
# Prints the path of libchdb.so, current ClickHouse as a library (make
# test-modern). The first call fetches the npm package
# @chdb/lib-linux-x64-gnu@VERSION with npm (which checks the registry's
# integrity hash) into .run/chdb/VERSION (~170 MB download, ~560 MB
# unpacked); later calls reuse it. Fails, saying why, when it cannot.
set -euo pipefail
version=${1:?usage: libchdb.sh VERSION}
cd "$(dirname "$0")/../.."
dir=.run/chdb/$version
lib=$dir/package/libchdb.so
if [ ! -f "$lib" ]; then
	command -v npm >/dev/null || { echo "npm is not installed (compose/local/stack.sh install installs it)" >&2; exit 1; }
	# Unpacked beside, then renamed: a fetch cut off half-way is never
	# taken for the library.
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	if ! (cd "$dir.tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$version" >/dev/null && tar -xzf ./*.tgz && rm ./*.tgz); then
		rm -rf "$dir.tmp"
		echo "npm pack @chdb/lib-linux-x64-gnu@$version failed" >&2
		exit 1
	fi
	[ -f "$dir.tmp/package/libchdb.so" ] || { rm -rf "$dir.tmp"; echo "the package holds no libchdb.so" >&2; exit 1; }
	mv "$dir.tmp" "$dir"
fi
echo "$PWD/$lib"
