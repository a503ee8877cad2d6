#!/usr/bin/env bash
# Runs redis-proxy on this machine in front of a local Redis master and
# replica, for trying it out. Everything lives under .run/ and listens on
# 127.0.0.1. `make down` (scripts/up.sh down) stops it.
#
# Ports (override with the variables): Redis 6381 (master) and 6382
# (replica), proxy 6380, admin API 9736.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=.run
A_PORT=${REDIS_A_PORT:-6381}
B_PORT=${REDIS_B_PORT:-6382}
PROXY_PORT=${PROXY_PORT:-6380}
ADMIN_PORT=${ADMIN_PORT:-9736}

stop() {
	local n=0
	for f in "$RUN"/*.pid; do
		[ -e "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null && n=$((n + 1))
		rm -f "$f"
	done
	echo "scripts/up.sh: stopped $n local process(es)"
}

if [ "${1:-}" = down ]; then
	stop
	exit 0
fi

if ! command -v redis-server >/dev/null 2>&1; then
	echo "installing redis-server (Debian package)..."
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
	(service redis-server stop || true) >/dev/null 2>&1
fi
make -s build
mkdir -p "$RUN/a" "$RUN/b"
stop >/dev/null

redis() { # name port extra...
	local name=$1 port=$2
	shift 2
	redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/$RUN/$name" --save '' --appendonly no \
		--daemonize yes --pidfile "$PWD/$RUN/redis-$name.pid" --logfile "$PWD/$RUN/redis-$name.log" "$@"
}
redis a "$A_PORT"
redis b "$B_PORT" --replicaof 127.0.0.1 "$A_PORT"

REDIS_PROXY_LISTEN=127.0.0.1:$PROXY_PORT \
	REDIS_PROXY_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
	REDIS_PROXY_SERVERS=127.0.0.1:$A_PORT,127.0.0.1:$B_PORT \
	nohup bin/redis-proxy >"$RUN/proxy.log" 2>&1 &
echo $! >"$RUN/proxy.pid"

for _ in $(seq 50); do
	# healthcheck reads only the admin variables.
	if REDIS_PROXY_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT bin/redis-proxy healthcheck 2>/dev/null; then
		echo "redis-proxy is up: redis-cli -p $PROXY_PORT   (admin: http://127.0.0.1:$ADMIN_PORT/topology, logs: $RUN/proxy.log)"
		echo "  everything listens on 127.0.0.1: with no REDIS_PROXY_ADMIN_TOKEN, switchovers are accepted from loopback:"
		echo "  REDIS_PROXY_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT bin/redis-proxy switchover"
		exit 0
	fi
	sleep 0.2
done
echo "redis-proxy did not become healthy; see $RUN/proxy.log" >&2
tail -20 "$RUN/proxy.log" >&2
exit 1
