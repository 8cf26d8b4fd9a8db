#!/usr/bin/env bash
# The local stack in bridge mode, end to end: TAKT_STACK_BRIDGE=1 starts a
# Mosquitto as the plant's broker; parts published there with QoS 1 must
# reach the parts area once each, and a wrong password must be refused.
# Run from the repository root with no stack running; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
trap 'compose/local/stack.sh down >/dev/null' EXIT
TAKT_STACK_BRIDGE=1 compose/local/stack.sh up >/dev/null
# shellcheck disable=SC1091
. .run/env
run=$(date +%s%N | tail -c 10)
# count: the stored parts of this run (their product code names it).
count() {
	curl -fsS "$QUERY_URL/api/1.0/parts/?auth=$API_KEY&product_reported=BRIDGE$run&limit=100&fields=id" |
		{ grep -o '"id":' || true; } | wc -l
}
for i in 1 2 3; do
	mosquitto_pub -h "${PLANT_MQTT_ADDR%:*}" -p "${PLANT_MQTT_ADDR##*:}" -u "$PLANT_MQTT_USER" -P "$PLANT_MQTT_PASSWORD" \
		-q 1 -t takt/parts/line_1 -m "{\"part\":{\"quantity\":$i,\"product\":\"BRIDGE$run\"}}"
done
if mosquitto_pub -h "${PLANT_MQTT_ADDR%:*}" -p "${PLANT_MQTT_ADDR##*:}" -u "$PLANT_MQTT_USER" -P wrong \
	-q 1 -t takt/parts/line_1 -m '{"part":{"quantity":1}}' 2>/dev/null; then
	echo "bridge-check: the plant broker took a wrong password" >&2
	exit 1
fi
for _ in $(seq 1 50); do
	got=$(count)
	[ "$got" -ge 3 ] && break
	sleep 0.2
done
sleep 1 # a double would arrive by now
got=$(count)
if [ "$got" -ne 3 ]; then
	echo "bridge-check: $got parts of 3 published through the plant broker are stored" >&2
	exit 1
fi
echo "bridge-check: 3 parts through the plant broker stored once each; a wrong password refused"
