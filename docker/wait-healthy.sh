#!/usr/bin/env bash
# Waits (up to 90 s) for the appliance started by `make up` to be healthy and
# answering on the VIP (with the client password from .env), then prints how
# to reach it, without printing a secret. Usage: wait-healthy.sh COMPOSE...
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
password=$(env_val REDIS_PROXY_PASSWORD "")

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
	if [ $ok = 1 ] && { ! command -v redis-cli >/dev/null || [ "$(REDISCLI_AUTH=$password redis-cli -h "$vip" -p 6379 ping 2>/dev/null)" = PONG ]; }; then
		break
	fi
	if [ $SECONDS -ge $deadline ]; then
		echo "the appliance is not healthy after 90s:$states" >&2
		"${compose[@]}" logs --tail 20 >&2
		exit 1
	fi
	sleep 1
done
# How to read a secret from .env, for the commands printed below.
from_env() { echo "\$(sed -n 's/^$1=//p' .env | tail -1)"; }
echo "appliance up:$states"
echo "clients: the VIP, with the password REDIS_PROXY_PASSWORD from .env"
echo "  redis-cli -h $vip -p 6379 --askpass"
echo "  REDISCLI_AUTH=$(from_env REDIS_PROXY_PASSWORD) redis-cli -h $vip -p 6379"
echo "admin API of proxy-a (proxy-b: $b): reads are open; POST /switchover needs REDIS_PROXY_ADMIN_TOKEN from .env"
echo "  curl -s http://$a:9736/topology | less"
echo "  curl -s -X POST -H \"Authorization: Bearer $(from_env REDIS_PROXY_ADMIN_TOKEN)\" http://$a:9736/switchover"
echo "  ${compose[*]} logs -f proxy-a proxy-b; make down"
