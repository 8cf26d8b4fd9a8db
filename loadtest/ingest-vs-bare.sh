#!/usr/bin/env bash
# Single-part ingest at saturation next to its ceiling, in one run: a bare
# gin server that binds the same JSON and answers the same body
# (loadtest/cmd/bare) and Takt's ingestor on the running local stack
# (`make up` first). wrk drives both over loopback at several connection
# counts; "saturation" is each server's best rate, since the ingestor waits
# for Kafka's ack and needs more connections in flight to fill the CPU.
#
#   loadtest/ingest-vs-bare.sh [seconds per step, default 8]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
[ -f .run/env ] || { echo "no .run/env: run make up first" >&2; exit 1; }
# shellcheck disable=SC1091
. .run/env
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
case "$INGEST_URL" in http://127.0.0.1:*|http://localhost:*) ;; *) echo "loopback targets only" >&2; exit 1;; esac

bare_addr=127.0.0.1:18090
mkdir -p .run/bin
go build -o .run/bin/bare ./loadtest/cmd/bare
TAKT_BARE_ADDR=$bare_addr .run/bin/bare >/dev/null 2>&1 &
bare_pid=$!
trap 'kill $bare_pid 2>/dev/null || true; rm -f "$lua"' EXIT
lua=$(mktemp --suffix=.lua)
cat >"$lua" <<LUA
wrk.method = "POST"
wrk.body   = '{"part":{"external_id":"line_1","quantity":1,"quality":"good","product":"PROD001","cycle_time":45.5}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["API-KEY"] = "$API_KEY"
LUA
sleep 0.5

rate() { wrk -t2 -c"$2" -d"${secs}s" -s "$lua" "$1/api/external/production/process_part" | awk '/Requests\/sec/{print int($2)} /Non-2xx/{bad=1} END{if(bad) print "non-2xx answers" > "/dev/stderr"}'; }
best_bare=0 best_takt=0
printf '%-6s %12s %12s\n' conns bare_req/s takt_req/s
for c in 32 64 128 256; do
	b=$(rate "http://$bare_addr" "$c")
	t=$(rate "$INGEST_URL" "$c")
	printf '%-6s %12s %12s\n' "$c" "$b" "$t"
	[ "$b" -gt "$best_bare" ] && best_bare=$b
	[ "$t" -gt "$best_takt" ] && best_takt=$t
done
echo "saturation: bare gin $best_bare req/s, takt ingest $best_takt req/s, ratio $(awk "BEGIN{printf \"%.2f\", $best_takt/$best_bare}") ($(nproc) cores, $(date -u +%F))"
