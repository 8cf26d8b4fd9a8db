#!/usr/bin/env bash
# Takt's local stack: real ClickHouse, Redis and a Kafka-protocol broker as
# plain processes (no Docker), plus the three Takt services.
#
#   stack.sh install   install missing Debian packages
#   stack.sh up        start everything in the background; returns when every
#                      part answers its health check; writes .run/env
#   stack.sh run       up, then follow the logs; Ctrl-C stops everything
#   stack.sh down      stop every process this stack started (by pid file)
#   stack.sh status    what is running
#
# TAKT_STACK_CLUSTER=1 (make up-cluster) makes ClickHouse a replicated
# cluster: a ZooKeeper (Debian's zookeeper, as a plain process) and a
# second clickhouse-server join the first one in the cluster "takt" (one
# shard, two replicas), and the services run with
# TAKT_CLICKHOUSE_CLUSTER=takt and both replicas' addresses.
# TAKT_SCALE=ingestor=2,processor=3,queryapi=2 starts that many of each
# service (instance i > 1 on the first one's ports + 200 × (i - 1)).
# TAKT_STACK_PORT_OFFSET moves every default port; TAKT_STACK_RUN moves
# .run/ (a second stack beside a running one).
#
# Everything lives under .run/ (data, logs, pid files, binaries). Ports are
# not the services' usual ones, so a ClickHouse or Redis already on the
# machine is left alone. Each port can be moved with the variable shown.
set -euo pipefail
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}" # the Go release Takt builds with (see the Makefile)
# A Go service that crashes logs every goroutine with the runtime's own
# frames and the registers (the default level hides a crash inside the
# runtime, e.g. in the CPU profiler's stack walk).
export GOTRACEBACK="${GOTRACEBACK:-crash}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN=${TAKT_STACK_RUN:-$ROOT/.run}
PIDS="$RUN/pids"
LOGS="$RUN/logs"
BIN="$RUN/bin"

OFF=${TAKT_STACK_PORT_OFFSET:-0}
CH_TCP_PORT=${TAKT_STACK_CH_TCP_PORT:-$((19000 + OFF))}
CH_HTTP_PORT=${TAKT_STACK_CH_HTTP_PORT:-$((18123 + OFF))}
CH_INTERSERVER_PORT=${TAKT_STACK_CH_INTERSERVER_PORT:-$((19009 + OFF))}
REDIS_PORT=${TAKT_STACK_REDIS_PORT:-$((16379 + OFF))}
BROKER_PORT=${TAKT_STACK_BROKER_PORT:-$((19092 + OFF))}
INGEST_PORT=${TAKT_STACK_INGEST_PORT:-$((18080 + OFF))}
QUERY_PORT=${TAKT_STACK_QUERY_PORT:-$((18081 + OFF))}
PROCESSOR_PORT=${TAKT_STACK_PROCESSOR_PORT:-$((18082 + OFF))}
# Admin listeners (health with reasons, /metrics, pprof); the processor's
# one listener is its admin listener.
INGEST_ADMIN_PORT=${TAKT_STACK_INGEST_ADMIN_PORT:-$((18083 + OFF))}
QUERY_ADMIN_PORT=${TAKT_STACK_QUERY_ADMIN_PORT:-$((18084 + OFF))}
INGEST_TLS_PORT=${TAKT_STACK_INGEST_TLS_PORT:-$((18443 + OFF))}
QUERY_TLS_PORT=${TAKT_STACK_QUERY_TLS_PORT:-$((18444 + OFF))}
MQTT_PORT=${TAKT_STACK_MQTT_PORT:-$((11883 + OFF))}
MQTTS_PORT=${TAKT_STACK_MQTTS_PORT:-$((18883 + OFF))}
# TAKT_STACK_BRIDGE=1: a Mosquitto stands in for a plant's broker, and the
# ingestor bridges from it (TAKT_MQTT_BRIDGE_*).
BRIDGE=${TAKT_STACK_BRIDGE:-}
PLANT_MQTT_PORT=${TAKT_STACK_PLANT_MQTT_PORT:-$((11884 + OFF))}
PARTITIONS=${TAKT_STACK_PARTITIONS:-6}
# Cluster mode (TAKT_STACK_CLUSTER=1): ZooKeeper and a second ClickHouse.
CLUSTER=${TAKT_STACK_CLUSTER:-}
CLUSTER_NAME=takt
ZK_PORT=${TAKT_STACK_ZK_PORT:-$((12181 + OFF))}
CH2_TCP_PORT=${TAKT_STACK_CH2_TCP_PORT:-$((19200 + OFF))}
CH2_HTTP_PORT=${TAKT_STACK_CH2_HTTP_PORT:-$((18223 + OFF))}
CH2_INTERSERVER_PORT=${TAKT_STACK_CH2_INTERSERVER_PORT:-$((19209 + OFF))}
# TAKT_SCALE=ingestor=N,processor=N,queryapi=N (1 of each by default).
SCALE=${TAKT_SCALE:-}
DB=${TAKT_STACK_DB:-takt}
TOPIC=takt.parts
DLQ_TOPIC=takt.parts.dlq
CHANGES_TOPIC=takt.period-changes

say() { printf '%s\n' "takt: $*"; }
die() { printf '%s\n' "takt: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- install

need_pkgs() {
	local missing=()
	[ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
	command -v clickhouse-client >/dev/null || missing+=(clickhouse-client)
	command -v redis-server >/dev/null || missing+=(redis-server)
	command -v redis-cli >/dev/null || missing+=(redis-tools)
	command -v kcat >/dev/null || missing+=(kcat)
	command -v curl >/dev/null || missing+=(curl)
	command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients) # MQTT tests and the README's example
	[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto) # the bridge test starts its own broker
	command -v npm >/dev/null || missing+=(npm) # make test-modern fetches libchdb with it
	{ python3 -c 'import requests' || /usr/bin/python3 -c 'import requests'; } >/dev/null 2>&1 || missing+=(python3-requests) # Leading2Lean's Python sample client (internal/e2e)
	command -v chromium >/dev/null || missing+=(chromium) # the dashboard's browser tests and make screenshot
	[ -z "$CLUSTER" ] || [ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper) # make up-cluster, make test-cluster
	echo "${missing[@]}"
}

install() {
	local missing
	missing=$(need_pkgs)
	[ -z "$missing" ] && return 0
	command -v apt-get >/dev/null || die "missing: $missing. This machine has no apt-get: install them (Debian bookworm packages) by hand."
	local sudo=""
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null && sudo -n true 2>/dev/null || die "missing: $missing. Installing needs root: run 'sudo apt-get install -y $missing' and try again."
		sudo="sudo -n"
	fi
	say "installing $missing (Debian packages)"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
	# shellcheck disable=SC2086
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
	missing=$(need_pkgs)
	[ -z "$missing" ] || die "still missing after apt-get: $missing"
}

# ---------------------------------------------------------------- processes

pid_of() { [ -f "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid" || true; }

alive() {
	local pid
	pid=$(pid_of "$1")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# FRESH holds the services this invocation started (not found running).
declare -A FRESH=()

# start NAME PORT CMD...: start CMD in the background unless our own NAME is
# already running; refuse when somebody else holds the port.
start() {
	local name=$1 port=$2
	shift 2
	if alive "$name"; then
		say "$name already running (pid $(pid_of "$name"))"
		return 0
	fi
	if port_busy "$port"; then
		die "port $port (for $name) is in use by a process this stack did not start; stop it or move $name with TAKT_STACK_*_PORT"
	fi
	# A session of its own: Ctrl-C on `make run` reaches only this script,
	# which then stops the services in order (ingestor first, broker and
	# ClickHouse last) instead of all of them at once. In a script a
	# background job is not a group leader, so setsid does not fork and $!
	# is the service's own pid.
	setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$PIDS/$name.pid"
	FRESH[$name]=1
	say "started $name (pid $!, log .run/logs/$name.log)"
}

# wait_for NAME SECONDS CHECK...: poll CHECK until it succeeds.
wait_for() {
	local name=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ! alive "$name"; then
			tail -n 20 "$LOGS/$name.log" >&2 || true
			die "$name exited during start-up (log: .run/logs/$name.log)"
		fi
		[ $SECONDS -lt $deadline ] || { tail -n 20 "$LOGS/$name.log" >&2 || true; die "$name not healthy after ${secs}s (log: .run/logs/$name.log)"; }
		sleep 0.2
	done
}

stop() {
	local name=$1 pid
	pid=$(pid_of "$name")
	[ -n "$pid" ] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "$name (pid $pid) did not stop in 15s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		say "stopped $name"
	fi
	rm -f "$PIDS/$name.pid"
}

# ---------------------------------------------------------------- services

build() {
	say "building binaries into .run/bin"
	mkdir -p "$BIN"
	(cd "$ROOT" && go build -o "$BIN/" ./cmd/broker ./cmd/taktctl \
		./ingestor/cmd/ingestor ./processor/cmd/processor ./queryapi/cmd/queryapi)
}

# start_clickhouse NAME TCP HTTP INTERSERVER REPLICA: one clickhouse-server
# with its data under .run/NAME; in cluster mode with config.d/cluster.xml
# (ZooKeeper, its replica name, the cluster of both servers).
start_clickhouse() {
	local name=$1 tcp=$2 http=$3 inter=$4 replica=$5
	local dir="$RUN/$name"
	mkdir -p "$dir/log" "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/config.d"
	sed -e "s#__RUN__/clickhouse/#$dir/#g" -e "s/__HTTP_PORT__/$http/" -e "s/__TCP_PORT__/$tcp/" \
		-e "s/__INTERSERVER_PORT__/$inter/" "$ROOT/compose/local/clickhouse-config.xml" >"$dir/config.xml"
	cp "$ROOT/compose/local/clickhouse-users.xml" "$dir/users.xml"
	if [ -n "$CLUSTER" ]; then
		sed -e "s/__ZK_PORT__/$ZK_PORT/" -e "s/__REPLICA__/$replica/" -e "s/__CLUSTER__/$CLUSTER_NAME/" \
			-e "s/__TCP_PORT_1__/$CH_TCP_PORT/" -e "s/__TCP_PORT_2__/$CH2_TCP_PORT/" \
			"$ROOT/compose/local/clickhouse-cluster.xml" >"$dir/config.d/cluster.xml"
	else
		rm -f "$dir/config.d/cluster.xml"
	fi
	start "$name" "$tcp" /usr/sbin/clickhouse-server --config-file="$dir/config.xml"
	wait_for "$name" 60 curl -fsS "http://127.0.0.1:$http/ping"
	wait_for "$name" 30 clickhouse-client --port "$tcp" -q "SELECT 1"
	if [ -n "$CLUSTER" ]; then
		[ "$(clickhouse-client --port "$tcp" -q "SELECT count() FROM system.clusters WHERE cluster = '$CLUSTER_NAME'")" -gt 0 ] ||
			die "$name runs without the cluster $CLUSTER_NAME (started by make up?): make down, then make up-cluster"
	fi
}

# start_zookeeper: Debian's ZooKeeper as a plain process (standalone, its
# data under .run/zookeeper, loopback only, no admin web server).
start_zookeeper() {
	local dir="$RUN/zookeeper"
	mkdir -p "$dir/data"
	cat >"$dir/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
4lw.commands.whitelist=ruok,srvr
EOF
	start zookeeper "$ZK_PORT" java -Xmx256m -XX:+UseSerialGC -cp /usr/share/java/zookeeper.jar \
		org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg"
	wait_for zookeeper 60 zk_ok
}

# replicas_writable PORT: that server talks to ZooKeeper and none of its
# replicated tables is read-only.
replicas_writable() {
	clickhouse-client --port "$1" -q "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null &&
		[ "$(clickhouse-client --port "$1" -q "SELECT count() FROM system.replicas WHERE is_readonly OR is_session_expired")" = 0 ]
}

zk_ok() { [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null)" = imok ]; }

start_redis() {
	mkdir -p "$RUN/redis"
	start redis "$REDIS_PORT" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RUN/redis" \
		--save "" --appendonly no --protected-mode yes --daemonize no
	wait_for redis 20 redis-cli -p "$REDIS_PORT" ping
}

start_broker() {
	start broker "$BROKER_PORT" env TAKT_BROKER_ADDR="127.0.0.1:$BROKER_PORT" TAKT_BROKER_DATA_DIR="$RUN/kafka" \
		TAKT_BROKER_TOPICS="$TOPIC,$DLQ_TOPIC,$CHANGES_TOPIC" TAKT_BROKER_PARTITIONS="$PARTITIONS" "$BIN/broker"
	wait_for broker 30 kcat -b "127.0.0.1:$BROKER_PORT" -L -t "$TOPIC" -m 3
}

# local_tls: a local CA and a server certificate for loopback under
# .run/tls (made in Go by taktctl; kept across starts, renewed before they
# end); sets CA_FILE, TLS_CERT and TLS_KEY.
local_tls() {
	local out
	out=$("$BIN/taktctl" tls -dir "$RUN/tls" 2>>"$LOGS/taktctl.log") ||
		{ tail -n 20 "$LOGS/taktctl.log" >&2; die "local certificates failed (log: .run/logs/taktctl.log)"; }
	CA_FILE=$(sed -n 's/^CA_FILE=//p' <<<"$out")
	TLS_CERT=$(sed -n 's/^TLS_CERT=//p' <<<"$out")
	TLS_KEY=$(sed -n 's/^TLS_KEY=//p' <<<"$out")
}

# start_plant_broker: Mosquitto on PLANT_MQTT_PORT with one user (takt,
# its password kept in .run/mosquitto), persistent sessions kept while the
# ingestor restarts, and no cap on the messages queued for a session (its
# default of 1,000 drops QoS 1 messages while the ingestor is away). It
# runs as the user who starts the stack (as root, Mosquitto would switch to
# its own user, which cannot read the password file).
start_plant_broker() {
	local dir="$RUN/mosquitto"
	mkdir -p "$dir"
	[ -s "$dir/password" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/password"
	PLANT_MQTT_USER=takt
	PLANT_MQTT_PASSWORD=$(cat "$dir/password")
	rm -f "$dir/passwd"
	mosquitto_passwd -b -c "$dir/passwd" "$PLANT_MQTT_USER" "$PLANT_MQTT_PASSWORD" >/dev/null 2>&1 ||
		die "mosquitto_passwd failed (Debian's mosquitto package)"
	chmod 600 "$dir/passwd" "$dir/password"
	cat >"$dir/mosquitto.conf" <<EOF
listener $PLANT_MQTT_PORT 127.0.0.1
allow_anonymous false
password_file $dir/passwd
persistence true
persistence_location $dir/
max_queued_messages 0
user $(id -un)
log_dest stderr
EOF
	start mosquitto "$PLANT_MQTT_PORT" /usr/sbin/mosquitto -c "$dir/mosquitto.conf"
	wait_for mosquitto 20 port_busy "$PLANT_MQTT_PORT"
}

# bridge_env: the ingestor's settings for the plant broker, when on.
bridge_env() {
	[ -n "$BRIDGE" ] || return 0
	export TAKT_MQTT_BRIDGE_URL="mqtt://127.0.0.1:$PLANT_MQTT_PORT" TAKT_MQTT_BRIDGE_USERNAME="$PLANT_MQTT_USER"
	export TAKT_MQTT_BRIDGE_PASSWORD="$PLANT_MQTT_PASSWORD" TAKT_MQTT_BRIDGE_KEY="$API_KEY"
	export TAKT_MQTT_BRIDGE_CLIENT_ID=takt-ingestor-local
}

service_env() {
	export TAKT_CLICKHOUSE_ADDR="127.0.0.1:$CH_TCP_PORT" TAKT_CLICKHOUSE_DB="$DB"
	if [ -n "$CLUSTER" ]; then
		export TAKT_CLICKHOUSE_ADDR="127.0.0.1:$CH_TCP_PORT,127.0.0.1:$CH2_TCP_PORT" TAKT_CLICKHOUSE_CLUSTER="$CLUSTER_NAME"
	fi
	export TAKT_REDIS_ADDR="127.0.0.1:$REDIS_PORT" TAKT_KAFKA_BROKERS="127.0.0.1:$BROKER_PORT"
	export TAKT_PARTS_TOPIC="$TOPIC" TAKT_DLQ_TOPIC="$DLQ_TOPIC" TAKT_PERIOD_CHANGES_TOPIC="$CHANGES_TOPIC"
	export TAKT_INGEST_ADDR="127.0.0.1:$INGEST_PORT" TAKT_QUERY_ADDR="127.0.0.1:$QUERY_PORT"
	export TAKT_TLS_CERT="$TLS_CERT" TAKT_TLS_KEY="$TLS_KEY"
	export TAKT_INGEST_TLS_ADDR="127.0.0.1:$INGEST_TLS_PORT" TAKT_QUERY_TLS_ADDR="127.0.0.1:$QUERY_TLS_PORT"
	export TAKT_MQTT_ADDR="127.0.0.1:$MQTT_PORT" TAKT_MQTTS_ADDR="127.0.0.1:$MQTTS_PORT"
}

seed() {
	local old_key="" old_secret=""
	if [ -f "$RUN/env" ]; then
		old_key=$(sed -n 's/^API_KEY=//p' "$RUN/env")
		old_secret=$(sed -n 's/^SECRET_KEY=//p' "$RUN/env")
	fi
	local out
	out=$("$BIN/taktctl" seed -key "$old_key" -secret "$old_secret" 2>>"$LOGS/taktctl.log") ||
		{ tail -n 20 "$LOGS/taktctl.log" >&2; die "migrations / demo seed failed (log: .run/logs/taktctl.log)"; }
	API_KEY=$(sed -n 's/^API_KEY=//p' <<<"$out")
	SECRET_KEY=$(sed -n 's/^SECRET_KEY=//p' <<<"$out")
	SECRET_SERVER=$(sed -n 's/^SECRET_SERVER=//p' <<<"$out")
}

write_env() {
	local tmp="$RUN/env.tmp"
	cat >"$tmp" <<EOF
INGEST_URL=http://127.0.0.1:$INGEST_PORT
QUERY_URL=http://127.0.0.1:$QUERY_PORT
INGEST_TLS_URL=https://127.0.0.1:$INGEST_TLS_PORT
QUERY_TLS_URL=https://127.0.0.1:$QUERY_TLS_PORT
CA_FILE=$CA_FILE
MQTT_ADDR=127.0.0.1:$MQTT_PORT
MQTTS_ADDR=127.0.0.1:$MQTTS_PORT
API_KEY=$API_KEY
SECRET_KEY=$SECRET_KEY
SECRET_SERVER=$SECRET_SERVER
KAFKA_BROKERS=127.0.0.1:$BROKER_PORT
PARTS_TOPIC=$TOPIC
PERIOD_CHANGES_TOPIC=$CHANGES_TOPIC
CLICKHOUSE_ADDR=127.0.0.1:$CH_TCP_PORT
CLICKHOUSE_HTTP=http://127.0.0.1:$CH_HTTP_PORT
CLICKHOUSE_DB=$DB
REDIS_ADDR=127.0.0.1:$REDIS_PORT
PLANT_MQTT_ADDR=${BRIDGE:+127.0.0.1:$PLANT_MQTT_PORT}
PLANT_MQTT_USER=${BRIDGE:+$PLANT_MQTT_USER}
PLANT_MQTT_PASSWORD=${BRIDGE:+$PLANT_MQTT_PASSWORD}
DASHBOARD_URL=http://127.0.0.1:$QUERY_PORT/dashboard/
INGEST_ADMIN_URL=http://127.0.0.1:$INGEST_ADMIN_PORT
QUERY_ADMIN_URL=http://127.0.0.1:$QUERY_ADMIN_PORT
PROCESSOR_ADMIN_URL=http://127.0.0.1:$PROCESSOR_PORT
INGEST_URLS=$(urls ingestor "$INGEST_PORT")
QUERY_URLS=$(urls queryapi "$QUERY_PORT")
CLICKHOUSE_CLUSTER=${CLUSTER:+$CLUSTER_NAME}
CLICKHOUSE_REPLICAS=${CLUSTER:+127.0.0.1:$CH_TCP_PORT,127.0.0.1:$CH2_TCP_PORT}
ZOOKEEPER_ADDR=${CLUSTER:+127.0.0.1:$ZK_PORT}
EOF
	chmod 600 "$tmp"
	mv "$tmp" "$RUN/env"
}

up() {
	command -v go >/dev/null || die "Go is not on PATH (it is at /usr/local/go/bin on Takt's machines)"
	install
	mkdir -p "$PIDS" "$LOGS"
	build
	if [ -z "$CLUSTER" ] && alive zookeeper; then
		die "this stack runs as a cluster (make up-cluster): make down first, or make up-cluster"
	fi
	if [ -n "$CLUSTER" ]; then
		command -v java >/dev/null && [ -f /usr/share/java/zookeeper.jar ] || die "cluster mode needs Debian's zookeeper (apt-get install zookeeper)"
		start_zookeeper
	fi
	start_clickhouse clickhouse "$CH_TCP_PORT" "$CH_HTTP_PORT" "$CH_INTERSERVER_PORT" ch1
	if [ -n "$CLUSTER" ]; then
		start_clickhouse clickhouse2 "$CH2_TCP_PORT" "$CH2_HTTP_PORT" "$CH2_INTERSERVER_PORT" ch2
		# After a ZooKeeper (re)start the servers reconnect on their own
		# time; until then replicated tables are read-only.
		wait_for zookeeper 90 replicas_writable "$CH_TCP_PORT"
		wait_for zookeeper 90 replicas_writable "$CH2_TCP_PORT"
	fi
	start_redis
	start_broker
	[ -z "$BRIDGE" ] || start_plant_broker
	local_tls
	service_env
	seed
	bridge_env
	start_services
	write_env
	banner
}

banner() {
	cat <<EOF

Takt is up. Endpoints (also in .run/env):
  ingest     http://127.0.0.1:$INGEST_PORT/api/external/production/process_part
  query      http://127.0.0.1:$QUERY_PORT/api/1.0/parts/
  https      https://127.0.0.1:$INGEST_TLS_PORT (ingest), https://127.0.0.1:$QUERY_TLS_PORT (query); CA $CA_FILE
  mqtt       127.0.0.1:$MQTT_PORT, TLS 127.0.0.1:$MQTTS_PORT  topics takt/parts/<external_id>, takt/parts
${BRIDGE:+  plant mqtt 127.0.0.1:$PLANT_MQTT_PORT (Mosquitto, user $PLANT_MQTT_USER, password PLANT_MQTT_PASSWORD in .run/env): the ingestor bridges takt/parts/# from it
}  kafka      127.0.0.1:$BROKER_PORT  topic $TOPIC
  clickhouse 127.0.0.1:$CH_TCP_PORT (native), http://127.0.0.1:$CH_HTTP_PORT  database $DB
  redis      127.0.0.1:$REDIS_PORT
  dashboard  http://127.0.0.1:$QUERY_PORT/dashboard/?auth=$API_KEY (the key moves to the browser's storage)
  admin      http://127.0.0.1:$INGEST_ADMIN_PORT (ingestor), http://127.0.0.1:$QUERY_ADMIN_PORT (query), http://127.0.0.1:$PROCESSOR_PORT (processor): /metrics, /readyz, /debug/pprof/

Send a part:
  curl -sS -X POST http://127.0.0.1:$INGEST_PORT/api/external/production/process_part -H 'Content-Type: application/json' -H 'API-KEY: $API_KEY' -d '{"part":{"external_id":"line_1","quantity":5,"quality":"good","product":"PROD001","recorded_at":1698765432}}'
The same over HTTPS (HTTP/2), trusting the local CA:
  curl -sS --cacert $CA_FILE -X POST https://127.0.0.1:$INGEST_TLS_PORT/api/external/production/process_part -H 'Content-Type: application/json' -H 'API-KEY: $API_KEY' -d '{"part":{"external_id":"line_1","quantity":1}}'
Over MQTT (the API key is the password):
  mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -i press-1 -u press-1 -P '$API_KEY' -q 1 -t takt/parts/line_1 -m '{"part":{"quantity":1}}'
Read it back:
  curl -sS 'http://127.0.0.1:$QUERY_PORT/api/1.0/parts/?auth=$API_KEY&order_by=-id&limit=5'

EOF
}

# scale_of SERVICE: how many of it TAKT_SCALE asks for (1 by default).
scale_of() {
	local n=1 kv
	for kv in ${SCALE//,/ }; do
		case "${kv%%=*}" in
		ingestor | processor | queryapi) ;;
		*) die "TAKT_SCALE: unknown service in '$kv' (ingestor, processor, queryapi)" ;;
		esac
		[ "${kv%%=*}" = "$1" ] && n=${kv#*=}
	done
	[[ $n =~ ^[1-9]$ ]] || die "TAKT_SCALE: $1=$n: a count from 1 to 9"
	echo "$n"
}

# instance SERVICE I: the name of its I-th instance (the first keeps the
# plain name, so make up is unchanged).
instance() { if [ "$2" = 1 ]; then echo "$1"; else echo "$1$2"; fi; }

# shift_of I: how far instance I's ports are from the first's.
shift_of() { echo $((200 * ($1 - 1))); }

# urls SERVICE PORT: the base URLs of every instance, comma-separated.
urls() {
	local i out=""
	for i in $(seq 1 "$(scale_of "$1")"); do
		out+="${out:+,}http://127.0.0.1:$(($2 + $(shift_of "$i")))"
	done
	echo "$out"
}

start_services() {
	local i d name
	for i in $(seq 1 "$(scale_of ingestor)"); do
		d=$(shift_of "$i")
		name=$(instance ingestor "$i")
		# Only the first ingestor bridges from the plant broker (one
		# client id, one session).
		local bridge=()
		[ "$i" = 1 ] || bridge=(TAKT_MQTT_BRIDGE_URL=)
		start "$name" $((INGEST_PORT + d)) env TAKT_ADMIN_ADDR="127.0.0.1:$((INGEST_ADMIN_PORT + d))" \
			TAKT_INGEST_ADDR="127.0.0.1:$((INGEST_PORT + d))" TAKT_INGEST_TLS_ADDR="127.0.0.1:$((INGEST_TLS_PORT + d))" \
			TAKT_MQTT_ADDR="127.0.0.1:$((MQTT_PORT + d))" TAKT_MQTTS_ADDR="127.0.0.1:$((MQTTS_PORT + d))" \
			"${bridge[@]}" "$BIN/ingestor"
	done
	for i in $(seq 1 "$(scale_of processor)"); do
		d=$(shift_of "$i")
		start "$(instance processor "$i")" $((PROCESSOR_PORT + d)) env TAKT_ADMIN_ADDR="127.0.0.1:$((PROCESSOR_PORT + d))" "$BIN/processor"
	done
	for i in $(seq 1 "$(scale_of queryapi)"); do
		d=$(shift_of "$i")
		start "$(instance queryapi "$i")" $((QUERY_PORT + d)) env TAKT_ADMIN_ADDR="127.0.0.1:$((QUERY_ADMIN_PORT + d))" \
			TAKT_QUERY_ADDR="127.0.0.1:$((QUERY_PORT + d))" TAKT_QUERY_TLS_ADDR="127.0.0.1:$((QUERY_TLS_PORT + d))" "$BIN/queryapi"
	done
	# Readiness with reasons is on the admin listeners; the public ports'
	# bare probes are checked for services found running, which may
	# predate their admin listener.
	for i in $(seq 1 "$(scale_of ingestor)"); do
		d=$(shift_of "$i")
		name=$(instance ingestor "$i")
		[ -z "${FRESH[$name]:-}" ] || wait_for "$name" 30 curl -fsS "http://127.0.0.1:$((INGEST_ADMIN_PORT + d))/readyz"
		wait_for "$name" 30 curl -fsS "http://127.0.0.1:$((INGEST_PORT + d))/readyz"
		wait_for "$name" 10 curl -fsS --cacert "$CA_FILE" "https://127.0.0.1:$((INGEST_TLS_PORT + d))/healthz"
	done
	for i in $(seq 1 "$(scale_of processor)"); do
		wait_for "$(instance processor "$i")" 30 curl -fsS "http://127.0.0.1:$((PROCESSOR_PORT + $(shift_of "$i")))/readyz"
	done
	for i in $(seq 1 "$(scale_of queryapi)"); do
		d=$(shift_of "$i")
		name=$(instance queryapi "$i")
		[ -z "${FRESH[$name]:-}" ] || wait_for "$name" 30 curl -fsS "http://127.0.0.1:$((QUERY_ADMIN_PORT + d))/readyz"
		wait_for "$name" 30 curl -fsS "http://127.0.0.1:$((QUERY_PORT + d))/readyz"
		wait_for "$name" 10 curl -fsS --cacert "$CA_FILE" "https://127.0.0.1:$((QUERY_TLS_PORT + d))/healthz"
	done
}

# names GLOB...: the processes with a pid file matching each glob, in order.
names() {
	local g f
	for g in "$@"; do
		for f in "$PIDS"/$g.pid; do
			[ -e "$f" ] && basename "$f" .pid
		done
	done
}

# services: every process of this stack, stores first.
services() {
	echo zookeeper clickhouse clickhouse2 redis broker
	for s in ingestor processor queryapi; do
		for i in $(seq 1 "$(scale_of "$s")"); do instance "$s" "$i"; done
	done
	[ -z "$BRIDGE" ] || echo mosquitto
}

down() {
	# Producers before consumers before the stores: the ingestors stop
	# accepting and flush, the processors write and commit what they
	# have, then the broker, Redis, ClickHouse and ZooKeeper close.
	local name
	for name in $(names 'ingestor*' 'queryapi*' 'processor*' broker redis 'clickhouse*' zookeeper mosquitto); do
		stop "$name"
	done
}

status() {
	local name
	for name in $(services); do
		case "$name" in zookeeper | clickhouse2) [ -n "$CLUSTER" ] || alive "$name" || continue ;; esac
		if alive "$name"; then
			echo "$name: running (pid $(pid_of "$name"))"
		else
			echo "$name: stopped"
		fi
	done
}

run() {
	trap 'echo; down; exit 0' INT TERM
	up || { down; exit 1; }
	say "following logs; Ctrl-C stops everything"
	tail -n 0 -F "$LOGS/ingestor.log" "$LOGS/processor.log" "$LOGS/queryapi.log" "$LOGS/broker.log" &
	local tail_pid=$!
	trap 'kill $tail_pid 2>/dev/null; echo; down; exit 0' INT TERM
	# Stop when any service dies, so a broken stack is not left half-up.
	local watched
	watched=$(names '*')
	while true; do
		for name in $watched; do
			if ! alive "$name"; then
				kill $tail_pid 2>/dev/null || true
				say "$name stopped unexpectedly (log: .run/logs/$name.log); stopping the rest"
				down
				exit 1
			fi
		done
		sleep 1
	done
}

case "${1:-}" in
install) install ;;
build) build ;;
up) up ;;
down) down ;;
run) run ;;
status) status ;;
*) die "usage: stack.sh install|up|run|down|status" ;;
esac
