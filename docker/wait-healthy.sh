#!/usr/bin/env bash
# Waits (up to 90 s) for the appliance started by `make up` to be healthy and
# answering on the VIP, then prints how to reach it. Usage: wait-healthy.sh COMPOSE...
set -uo pipefail
cd "$(dirname "$0")/.."
compose=("$@")
[ ${#compose[@]} -gt 0 ] || compose=(docker-compose)

env_val() { # NAME DEFAULT: the value compose sees (environment, .env, default)
	local v=${!1:-}
	[ -z "$v" ] && [ -r .env ] && v=$(sed -n "s/^$1=//p" .env | tail -1)
	echo "${v:-$2}"
}
vip=$(env_val APPLIANCE_VIP 172.29.0.100)
a=$(env_val PROXY_A_IP 172.29.0.21)
b=$(env_val PROXY_B_IP 172.29.0.22)

health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null; }

deadline=$((SECONDS + 90))
while :; do
	ok=1 states=""
	for svc in redis-a redis-b proxy-a proxy-b; do
		id=$("${compose[@]}" ps -q "$svc" 2>/dev/null)
		st=$(health "$id")
		states+=" $svc=${st:-missing}"
		[ "$st" = healthy ] || ok=0
	done
	if [ $ok = 1 ] && { ! command -v redis-cli >/dev/null || [ "$(redis-cli -h "$vip" -p 6379 ping 2>/dev/null)" = PONG ]; }; then
		break
	fi
	if [ $SECONDS -ge $deadline ]; then
		echo "the appliance is not healthy after 90s:$states" >&2
		"${compose[@]}" logs --tail 20 >&2
		exit 1
	fi
	sleep 1
done
echo "appliance up:$states"
echo "  redis-cli -h $vip -p 6379            # clients: the VIP"
echo "  curl -s http://$a:9736/topology | less   # admin API of proxy-a (proxy-b: $b)"
echo "  ${compose[*]} logs -f proxy-a proxy-b; make down"
