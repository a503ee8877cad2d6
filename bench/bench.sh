#!/usr/bin/env bash
# bench/bench.sh - loopback throughput and idle-client benchmark of redis-proxy
# against direct Redis and twemproxy (nutcracker).
#
# Usage: bench/bench.sh [--quick]     (run from anywhere; works in the repo root)
#        BASELINE_BIN=/abs/path/old-redis-proxy bench/bench.sh [--quick]
#                                     (before/after in one run; or: make bench BASELINE_BIN=...)
#
# Needs: go, redis-server, redis-benchmark, redis-cli, nutcracker, ss (iproute2),
# timeout (coreutils). On Debian: apt-get install -y redis-server redis-tools nutcracker
#
# Everything listens on 127.0.0.1 on free ports, in a temp dir; all processes
# started here are killed on exit. The results are informational: the script
# exits 0 unless something failed to run (a process did not start or died, a
# redis-benchmark run failed, or the backend did not see the requests).
#
# Environment (all optional):
#   PROXY_BIN            proxy binary (default bin/redis-proxy, built from
#                        ./cmd/redis-proxy if missing)
#   BENCH_REBUILD=1      rebuild PROXY_BIN even if it exists
#   BASELINE_BIN         a second redis-proxy binary to compare against in the same
#                        run, e.g. built from the commit before a change. It runs
#                        beside the proxy (same environment, own ports, same Redis)
#                        as a fourth target "baseline": right after the proxy in odd
#                        rounds, right before it in even ones. The results add its
#                        median, baseline/direct, and proxy/baseline with the
#                        min..max of the per-round ratios; the idle-client test
#                        measures it too. A relative path is taken from the repo
#                        root, like PROXY_BIN. Unset (default): no baseline
#   BENCH_POOL_SIZE      passed to the proxy (and the baseline) as
#                        REDIS_PROXY_POOL_SIZE (default: unset)
#   ROUNDS               interleaved rounds (default 5; --quick: 1)
#   BENCH_N_C50_P1       -n for "-c 50 -P 1"  (default 100000;  --quick: 20000)
#   BENCH_N_C50_P16      -n for "-c 50 -P 16" (default 1000000; --quick: 100000)
#   BENCH_N_C1           -n for "-c 1 -P 1"   (default 20000;   --quick: 2000)
#   BENCH_N_WARMUP       -n for the warm-up run per target (default 20000; --quick: 5000)
#   BENCH_IDLE_CLIENTS   idle client connections (default 10000; 0 skips the idle test)
#   BENCH_IDLE_PING      inline|resp: how idle clients PING the proxy (default inline;
#                        twemproxy only speaks resp, so it always gets resp)
#   BENCH_IDLE_TWEMPROXY=0  skip the twemproxy idle-client reference measurement
#   BENCH_IDLE_BASELINE=0   skip the baseline's idle-client measurement (BASELINE_BIN set)
#   BENCH_TLS=1          add TLS targets to every row (needs openssl; throwaway ECDSA
#                        certificates in the temp dir): direct-tls (Redis's own TLS
#                        port), proxy-tls (the proxy's TLS listener; plain to Redis),
#                        proxy-tls2 (a second proxy, TLS on both sides: its clients
#                        and its connections to Redis's TLS port), and proxy-btls
#                        (that second proxy's plain listener: plain clients of a
#                        proxy with BACKEND_TLS, on its event loop, which reaches
#                        Redis through a TLS relay). A second
#                        table sets them side by side with direct and proxy.
#                        Default 0
#   BENCH_RUN_TIMEOUT    seconds before a single redis-benchmark run is killed (default 300)
#   BENCH_KEEP_TMP=1     keep the temp dir (logs, raw results); it is always kept on failure
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

QUICK=0
for arg in "$@"; do
	case "$arg" in
	--quick) QUICK=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if ((QUICK)); then
	d_rounds=1 d_p1=20000 d_p16=100000 d_c1=2000 d_warm=5000
else
	d_rounds=5 d_p1=100000 d_p16=1000000 d_c1=20000 d_warm=20000
fi
ROUNDS=${ROUNDS:-$d_rounds}
N_C50_P1=${BENCH_N_C50_P1:-$d_p1}
N_C50_P16=${BENCH_N_C50_P16:-$d_p16}
N_C1=${BENCH_N_C1:-$d_c1}
N_WARMUP=${BENCH_N_WARMUP:-$d_warm}
IDLE_CLIENTS=${BENCH_IDLE_CLIENTS:-10000}
IDLE_PING=${BENCH_IDLE_PING:-inline}
IDLE_TWEMPROXY=${BENCH_IDLE_TWEMPROXY:-1}
IDLE_BASELINE=${BENCH_IDLE_BASELINE:-1}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-300}
PROXY_BIN=${PROXY_BIN:-bin/redis-proxy}
BASELINE_BIN=${BASELINE_BIN:-}
NUTCRACKER=${NUTCRACKER:-$(command -v nutcracker || echo /usr/sbin/nutcracker)}

# Rows: label | redis-benchmark args | -n | target proxy/direct ratio.
ROW_LABELS=("c50-P1" "c50-P16" "c1-P1")
ROW_ARGS=("-t set,get -c 50 -P 1" "-t set,get -c 50 -P 16" "-t get -c 1 -P 1")
ROW_N=("$N_C50_P1" "$N_C50_P16" "$N_C1")
ROW_TARGET=("0.95" "0.90" "0.65")
TARGETS=(direct proxy twemproxy)
# With a baseline it runs right after the proxy (before it in even rounds).
[[ -z $BASELINE_BIN ]] || TARGETS=(direct proxy baseline twemproxy)
BENCH_TLS=${BENCH_TLS:-0}
TLS_TARGETS=(direct-tls proxy-tls proxy-tls2 proxy-btls)
[[ $BENCH_TLS != 1 ]] || TARGETS+=("${TLS_TARGETS[@]}")
RSS_TARGET_MIB=150

log() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- processes

TMP=
PIDS=()
FAILED=1 # cleared at the very end; decides whether the temp dir is kept

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $TMP && -d $TMP ]]; then
		if ((FAILED)) || [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then
			log "bench: logs and raw results kept in $TMP"
		else
			rm -rf "$TMP"
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
	log "bench: FAILED: $*"
	exit 1
}

show_log() { # file
	[[ -f $1 ]] || return 0
	log "---- last lines of $1:"
	tail -n 20 "$1" >&2 || true
	log "----"
}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (apt-get install -y redis-server redis-tools nutcracker)"; }

USED_PORTS=" "
PORT=
pick_port() { # sets PORT to a free loopback TCP port below the ephemeral range
	local p
	for _ in $(seq 1 500); do
		p=$((20000 + RANDOM % 12000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if ss -Htan "( sport = :$p )" 2>/dev/null | grep -q .; then continue; fi
		USED_PORTS+="$p "
		PORT=$p
		return 0
	done
	die "could not find a free port"
}

LAST_PID=
start_bg() { # logfile cmd... ; sets LAST_PID
	local logf=$1
	shift
	"$@" >"$logf" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

alive() { kill -0 "$1" 2>/dev/null; }

wait_pong() { # name port pid logfile [timeout_s]
	local name=$1 port=$2 pid=$3 logf=$4 t=${5:-20} i
	for ((i = 0; i < t * 10; i++)); do
		alive "$pid" || { show_log "$logf"; die "$name (pid $pid) exited during startup"; }
		if [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null) == PONG ]]; then
			return 0
		fi
		sleep 0.1
	done
	show_log "$logf"
	die "$name did not answer PING on 127.0.0.1:$port within ${t}s"
}

http_status() { # port path -> HTTP status code or empty
	if command -v curl >/dev/null 2>&1; then
		curl --noproxy '*' -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1$2" 2>/dev/null || true
	else
		# shellcheck disable=SC2016 # expanded by the inner bash
		timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
			printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
			IFS=" " read -r _ code _ <&3 && printf "%s" "$code"' _ "$1" "$2" 2>/dev/null || true
	fi
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ------------------------------------------------------------------ checks

for tool in go redis-server redis-benchmark redis-cli ss timeout awk; do need "$tool"; done
[[ $BENCH_TLS != 1 ]] || need openssl
[[ -x $NUTCRACKER ]] || die "nutcracker not found at $NUTCRACKER (apt-get install -y nutcracker)"
if [[ -n $BASELINE_BIN && ! ( -f $BASELINE_BIN && -x $BASELINE_BIN ) ]]; then
	die "BASELINE_BIN=$BASELINE_BIN is not an executable file (a relative path is taken from $ROOT)"
fi

# Every process needs one fd per connection; 10000 idle clients don't fit in
# the usual soft limit of 1024. Children inherit this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/redis-proxy-bench.XXXXXX")
RESULTS=$TMP/results.tsv
CPUS=$TMP/cpu.tsv # label target round requests cpu-seconds: redis middle benchmark; machine busy %
: >"$RESULTS"

# ------------------------------------------------------------------ build

if [[ ! -x $PROXY_BIN || ${BENCH_REBUILD:-0} == 1 ]]; then
	log "bench: building $PROXY_BIN"
	mkdir -p "$(dirname "$PROXY_BIN")"
	CGO_ENABLED=0 go build -o "$PROXY_BIN" ./cmd/redis-proxy || die "go build ./cmd/redis-proxy failed"
else
	# Non-test Go files of this module's packages that the binary is built from.
	mapfile -t src_dirs < <(go list -deps -f '{{if not .Standard}}{{.Dir}}{{end}}' ./cmd/redis-proxy 2>/dev/null | grep -F "$ROOT" || true)
	if ((${#src_dirs[@]})); then
		newer=$(find "${src_dirs[@]}" go.mod -maxdepth 1 \( -name '*.go' -o -name go.mod \) ! -name '*_test.go' \
			-newer "$PROXY_BIN" -print -quit 2>/dev/null || true)
	else # go list failed (sources mid-edit?): any Go file outside bench/
		newer=$(find . -name '*.go' -not -path './bench/*' -newer "$PROXY_BIN" -print -quit 2>/dev/null || true)
	fi
	if [[ -n $newer ]]; then
		log "bench: WARNING: $PROXY_BIN is older than $newer; rm it or set BENCH_REBUILD=1 to benchmark current sources"
	fi
fi
BASELINE_SAME=
if [[ -n $BASELINE_BIN ]]; then
	if cmp -s "$PROXY_BIN" "$BASELINE_BIN"; then
		BASELINE_SAME=" - the same bytes as the proxy binary: an A/A run, expect proxy/baseline ~1"
	fi
fi
IDLE_BIN=$TMP/idleclients
if ((IDLE_CLIENTS > 0)); then
	CGO_ENABLED=0 go build -o "$IDLE_BIN" ./bench/idleclients || die "go build ./bench/idleclients failed"
fi

# ------------------------------------------------------------------ start

pick_port; REDIS_PORT=$PORT
pick_port; PROXY_PORT=$PORT
pick_port; ADMIN_PORT=$PORT
pick_port; TWEM_PORT=$PORT
pick_port; TWEM_STATS_PORT=$PORT

# TLS: a throwaway CA and one certificate (localhost, 127.0.0.1) that Redis
# and both proxies present; nobody presents a client certificate.
REDIS_TLS_ARGS=()
TLS_CLI=()
if [[ $BENCH_TLS == 1 ]]; then
	pick_port; REDIS_TLS_PORT=$PORT
	pick_port; PROXY_TLS_PORT=$PORT
	pick_port; PROXY2_PORT=$PORT
	pick_port; PROXY2_TLS_PORT=$PORT
	pick_port; PROXY2_ADMIN_PORT=$PORT
	TLSD=$TMP/tls
	mkdir -p "$TLSD"
	{
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-subj "/CN=redis-proxy bench CA" -keyout "$TLSD/ca.key" -out "$TLSD/ca.crt" &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
				-keyout "$TLSD/server.key" -out "$TLSD/server.csr" &&
			printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$TLSD/ext" &&
			openssl x509 -req -in "$TLSD/server.csr" -CA "$TLSD/ca.crt" -CAkey "$TLSD/ca.key" -CAcreateserial \
				-days 2 -extfile "$TLSD/ext" -out "$TLSD/server.crt"
	} >"$TLSD/openssl.log" 2>&1 || { show_log "$TLSD/openssl.log"; die "openssl could not make the bench certificates"; }
	REDIS_TLS_ARGS=(--tls-port "$REDIS_TLS_PORT" --tls-cert-file "$TLSD/server.crt" --tls-key-file "$TLSD/server.key"
		--tls-ca-cert-file "$TLSD/ca.crt" --tls-auth-clients no)
	TLS_CLI=(--tls --cacert "$TLSD/ca.crt")
fi

start_bg "$TMP/redis.log" redis-server --save '' --appendonly no --port "$REDIS_PORT" \
	--bind 127.0.0.1 --dir "$TMP" --daemonize no "${REDIS_TLS_ARGS[@]}"
REDIS_PID=$LAST_PID
wait_pong redis-server "$REDIS_PORT" "$REDIS_PID" "$TMP/redis.log"

PROXY_ENV=()
proxy_env() { # listen-port admin-port -> sets PROXY_ENV; the proxy and the baseline get the same
	PROXY_ENV=(REDIS_PROXY_LISTEN="127.0.0.1:$1"
		REDIS_PROXY_SERVERS="127.0.0.1:$REDIS_PORT"
		REDIS_PROXY_ADMIN_LISTEN="127.0.0.1:$2")
	if [[ -n ${BENCH_POOL_SIZE:-} ]]; then
		PROXY_ENV+=(REDIS_PROXY_POOL_SIZE="$BENCH_POOL_SIZE")
	fi
}
proxy_env_tls() { # tls-port: the proxy under test also listens for TLS clients
	[[ $BENCH_TLS == 1 ]] || return 0
	PROXY_ENV+=(REDIS_PROXY_TLS_LISTEN="127.0.0.1:$1" REDIS_PROXY_TLS_CERT_FILE="$TLSD/server.crt"
		REDIS_PROXY_TLS_KEY_FILE="$TLSD/server.key")
}
HC=
wait_healthz() { # name admin-port -> sets HC: 200, or what /healthz answered last (a warning)
	local name=$1 port=$2
	HC=
	for _ in $(seq 1 50); do
		HC=$(http_status "$port" /healthz)
		[[ $HC == 200 ]] && break
		sleep 0.1
	done
	if [[ $HC != 200 ]]; then
		[[ -z $HC || $HC == 000 ]] && HC="no-answer"
		log "bench: WARNING: $name /healthz on 127.0.0.1:$port: $HC (not 200) after 5s; continuing since it answers PING"
	fi
}

proxy_env "$PROXY_PORT" "$ADMIN_PORT"
proxy_env_tls "${PROXY_TLS_PORT:-}"
start_bg "$TMP/proxy.log" env "${PROXY_ENV[@]}" "$PROXY_BIN"
PROXY_PID=$LAST_PID # env execs the binary: same pid
wait_pong redis-proxy "$PROXY_PORT" "$PROXY_PID" "$TMP/proxy.log"
wait_healthz proxy "$ADMIN_PORT"
HEALTHZ=$HC

if [[ -n $BASELINE_BIN ]]; then
	pick_port; BASE_PORT=$PORT
	pick_port; BASE_ADMIN_PORT=$PORT
	proxy_env "$BASE_PORT" "$BASE_ADMIN_PORT"
	start_bg "$TMP/baseline.log" env "${PROXY_ENV[@]}" "$BASELINE_BIN"
	BASE_PID=$LAST_PID
	wait_pong "baseline redis-proxy" "$BASE_PORT" "$BASE_PID" "$TMP/baseline.log"
	wait_healthz baseline "$BASE_ADMIN_PORT"
	BASE_HEALTHZ=$HC
fi

cat >"$TMP/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$TWEM_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  server_connections: 1
  servers:
   - 127.0.0.1:$REDIS_PORT:1
EOF
"$NUTCRACKER" -t -c "$TMP/nutcracker.yml" >"$TMP/nutcracker-check.log" 2>&1 ||
	{ show_log "$TMP/nutcracker-check.log"; die "nutcracker rejected its config"; }
start_bg "$TMP/nutcracker.out" "$NUTCRACKER" -c "$TMP/nutcracker.yml" \
	-s "$TWEM_STATS_PORT" -a 127.0.0.1 -o "$TMP/nutcracker.log" -p "$TMP/nutcracker.pid"
TWEM_PID=$LAST_PID
wait_pong twemproxy "$TWEM_PORT" "$TWEM_PID" "$TMP/nutcracker.log"

declare -A PORT_OF=([direct]=$REDIS_PORT [proxy]=$PROXY_PORT [twemproxy]=$TWEM_PORT)
declare -A PID_OF=([direct]=$REDIS_PID [proxy]=$PROXY_PID [twemproxy]=$TWEM_PID)
declare -A LOG_OF=([direct]=$TMP/redis.log [proxy]=$TMP/proxy.log [twemproxy]=$TMP/nutcracker.log)
if [[ -n $BASELINE_BIN ]]; then
	PORT_OF[baseline]=$BASE_PORT PID_OF[baseline]=$BASE_PID LOG_OF[baseline]=$TMP/baseline.log
fi
# Extra redis-benchmark arguments of a target (TLS).
declare -A ARGS_OF=()
if [[ $BENCH_TLS == 1 ]]; then
	# The proxy under test listens for TLS clients too (its plain path is
	# unchanged: event loops, plain to Redis). The second proxy speaks TLS
	# to Redis as well: its TLS clients on goroutines, its plain ones on
	# its event loop, whose connection to Redis goes through a relay.
	start_bg "$TMP/proxy2.log" env REDIS_PROXY_LISTEN="127.0.0.1:$PROXY2_PORT" \
		REDIS_PROXY_SERVERS="127.0.0.1:$REDIS_TLS_PORT" REDIS_PROXY_ADMIN_LISTEN="127.0.0.1:$PROXY2_ADMIN_PORT" \
		REDIS_PROXY_TLS_LISTEN="127.0.0.1:$PROXY2_TLS_PORT" REDIS_PROXY_TLS_CERT_FILE="$TLSD/server.crt" \
		REDIS_PROXY_TLS_KEY_FILE="$TLSD/server.key" REDIS_PROXY_BACKEND_TLS=true \
		REDIS_PROXY_BACKEND_TLS_CA_FILE="$TLSD/ca.crt" ${BENCH_POOL_SIZE:+REDIS_PROXY_POOL_SIZE="$BENCH_POOL_SIZE"} "$PROXY_BIN"
	PROXY2_PID=$LAST_PID
	wait_pong "redis-proxy (TLS to Redis)" "$PROXY2_PORT" "$PROXY2_PID" "$TMP/proxy2.log"
	wait_healthz "proxy (TLS to Redis)" "$PROXY2_ADMIN_PORT"
	PORT_OF[direct-tls]=$REDIS_TLS_PORT PID_OF[direct-tls]=$REDIS_PID LOG_OF[direct-tls]=$TMP/redis.log
	PORT_OF[proxy-tls]=$PROXY_TLS_PORT PID_OF[proxy-tls]=$PROXY_PID LOG_OF[proxy-tls]=$TMP/proxy.log
	PORT_OF[proxy-tls2]=$PROXY2_TLS_PORT PID_OF[proxy-tls2]=$PROXY2_PID LOG_OF[proxy-tls2]=$TMP/proxy2.log
	PORT_OF[proxy-btls]=$PROXY2_PORT PID_OF[proxy-btls]=$PROXY2_PID LOG_OF[proxy-btls]=$TMP/proxy2.log
	for target in direct-tls proxy-tls proxy-tls2; do ARGS_OF[$target]="${TLS_CLI[*]}"; done
fi

# ------------------------------------------------------------------ runs

# calls SET GET as seen by the backend (cumulative)
backend_calls() {
	timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO commandstats 2>/dev/null |
		tr -d '\r' | awk -F'[:=,]' '
			$1 == "cmdstat_set" { s = $3 }
			$1 == "cmdstat_get" { g = $3 }
			END { printf "%d %d\n", s, g }'
}

# cpu_ticks pid -> CPU time (user + system) the process has used, in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)
# cpu_idle -> "idle total" jiffies of the whole machine (all CPUs), from /proc/stat
cpu_idle() { awk '$1 == "cpu" { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }

RUN_SEQ=0
# run_one label target "args" n round -> appends "label test target round rps" to RESULTS
# and the CPU time each process spent on the run to CPUS
run_one() {
	local label=$1 target=$2 args=$3 n=$4 round=$5
	local port=${PORT_OF[$target]} out err before after test rps calls summary=""
	local r0 m0=0 r1 m1=0 bench_cpu idle0 idle1 TIMEFORMAT='%U %S'
	RUN_SEQ=$((RUN_SEQ + 1))
	out=$TMP/run.$RUN_SEQ.$label.$target.csv
	err=$TMP/run.$RUN_SEQ.$label.$target.err
	read -r -a before <<<"$(backend_calls)"
	r0=$(cpu_ticks "$REDIS_PID")
	[[ $target == direct* ]] || m0=$(cpu_ticks "${PID_OF[$target]}")
	idle0=$(cpu_idle)
	# shellcheck disable=SC2086 # args is a word list on purpose
	if ! { time timeout "$RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" ${ARGS_OF[$target]:-} $args -n "$n" --csv >"$out" 2>"$err"; } 2>"$out.time"; then
		show_log "$err"
		show_log "${LOG_OF[$target]}"
		die "redis-benchmark $args -n $n against $target (127.0.0.1:$port) failed or timed out"
	fi
	idle1=$(cpu_idle)
	r1=$(cpu_ticks "$REDIS_PID")
	[[ $target == direct* ]] || m1=$(cpu_ticks "${PID_OF[$target]}")
	bench_cpu=$(awk '{ print $1 + $2 }' "$out.time")
	alive "${PID_OF[$target]}" || { show_log "${LOG_OF[$target]}"; die "$target died during the $label run"; }
	read -r -a after <<<"$(backend_calls)"
	local ntests=0
	for test in SET GET; do
		[[ $args == *"${test,,}"* ]] || continue
		ntests=$((ntests + 1))
		rps=$(awk -F'","' -v t="\"$test" '$1 == t { print $2 }' "$out")
		[[ $rps =~ ^[0-9]+(\.[0-9]+)?$ ]] || { cat "$out" >&2; show_log "$err"; die "no $test rps in redis-benchmark output ($label, $target)"; }
		if [[ $test == SET ]]; then calls=$((after[0] - before[0])); else calls=$((after[1] - before[1])); fi
		# Replies that are errors still count as "requests" for redis-benchmark:
		# make sure the backend really executed them.
		((calls >= n)) || { show_log "$err"; show_log "${LOG_OF[$target]}"; die "$label via $target: redis-benchmark reported $test done but the backend executed only $calls of $n"; }
		printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$test" "$target" "$round" "$rps" >>"$RESULTS"
		summary+=" $test $(printf '%.0f' "$rps")"
	done
	awk -v l="$label" -v g="$target" -v r="$round" -v q=$((n * ntests)) -v hz="$CLK_TCK" \
		-v rs=$((r1 - r0)) -v ms=$((m1 - m0)) -v bs="$bench_cpu" -v i0="$idle0" -v i1="$idle1" \
		'BEGIN { split(i0, a, " "); split(i1, b, " "); busy = (b[2] > a[2]) ? 100 * (1 - (b[1] - a[1]) / (b[2] - a[2])) : 0
			printf "%s\t%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.1f\n", l, g, r, q, rs / hz, ms / hz, bs, busy }' >>"$CPUS"
	log "  round $round  $(printf '%-8s %-10s' "$label" "$target")${summary}"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
	log "bench: WARNING: the machine is busy (load average $LOAD_START on $(nproc) CPUs); expect noisy numbers"
fi
log "bench: redis 127.0.0.1:$REDIS_PORT (pid $REDIS_PID), proxy 127.0.0.1:$PROXY_PORT (pid $PROXY_PID, admin :$ADMIN_PORT, /healthz ${HEALTHZ:-none}), twemproxy 127.0.0.1:$TWEM_PORT (pid $TWEM_PID)"
if [[ -n $BASELINE_BIN ]]; then
	log "bench: baseline $BASELINE_BIN: 127.0.0.1:$BASE_PORT (pid $BASE_PID, admin :$BASE_ADMIN_PORT, /healthz ${BASE_HEALTHZ:-none})$BASELINE_SAME"
fi
log "bench: warm-up (-t set,get -c 50 -n $N_WARMUP per target)"
for target in "${TARGETS[@]}"; do
	# shellcheck disable=SC2086 # ARGS_OF is a word list on purpose
	timeout "$RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "${PORT_OF[$target]}" ${ARGS_OF[$target]:-} -t set,get -c 50 -n "$N_WARMUP" --csv \
		>"$TMP/warmup.$target.csv" 2>"$TMP/warmup.$target.err" ||
		{ show_log "$TMP/warmup.$target.err"; show_log "${LOG_OF[$target]}"; die "warm-up against $target failed"; }
done

if [[ -n $BASELINE_BIN ]]; then
	log "bench: $ROUNDS round(s), targets interleaved (direct, proxy, baseline, twemproxy; baseline before proxy in even rounds) within each row"
else
	list="${TARGETS[*]}"
	log "bench: $ROUNDS round(s), targets interleaved (${list// /, }) within each row"
fi
for ((round = 1; round <= ROUNDS; round++)); do
	order=("${TARGETS[@]}")
	# proxy and baseline run back to back; alternating which goes first keeps
	# a position effect out of proxy/baseline.
	if [[ -n $BASELINE_BIN ]] && ((round % 2 == 0)); then order=(direct baseline proxy twemproxy); fi
	[[ $BENCH_TLS != 1 || -z $BASELINE_BIN ]] || ((round % 2)) || order+=("${TLS_TARGETS[@]}")
	for i in "${!ROW_LABELS[@]}"; do
		for target in "${order[@]}"; do
			run_one "${ROW_LABELS[$i]}" "$target" "${ROW_ARGS[$i]}" "${ROW_N[$i]}" "$round"
		done
	done
done

# ------------------------------------------------------------------ table

median() { # label test target
	awk -F'\t' -v l="$1" -v t="$2" -v g="$3" '$1 == l && $2 == t && $3 == g { print $5 }' "$RESULTS" |
		sort -g | awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "nan"; exit }
			if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
spread() { # label test target -> "min..max"
	awk -F'\t' -v l="$1" -v t="$2" -v g="$3" '$1 == l && $2 == t && $3 == g { print $5 }' "$RESULTS" |
		sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f..%.0f", lo, hi }'
}
round_ratios() { # label test target1 target2 -> target1/target2 of each round, in round order
	awk -F'\t' -v l="$1" -v t="$2" -v a="$3" -v b="$4" '
		$1 == l && $2 == t { r[$4] = $4; v[$3, $4] = $5 }
		END { for (k = 1; k in r; k++) if (v[b, k] > 0) print v[a, k] / v[b, k] }' "$RESULTS"
}

echo
echo "redis-proxy benchmark: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs, load avg $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo "  $(redis-server --version | awk '{ print $1, $2, $3 }'), $(redis-benchmark --version), $("$NUTCRACKER" -V 2>&1 | head -n 1)"
echo "  proxy: $PROXY_BIN ($(date -u -r "$PROXY_BIN" '+built %Y-%m-%d %H:%M:%S UTC')), pool size ${BENCH_POOL_SIZE:-default}, GOMAXPROCS ${GOMAXPROCS:-default}"
if [[ -n $BASELINE_BIN ]]; then
	echo "  baseline: $BASELINE_BIN ($(date -u -r "$BASELINE_BIN" '+built %Y-%m-%d %H:%M:%S UTC')), same environment$BASELINE_SAME"
fi
echo "  rounds: $ROUNDS, -n: c50-P1 $N_C50_P1, c50-P16 $N_C50_P16, c1-P1 $N_C1; medians of requests/s over rounds"
echo
# row_verdict direct middle twemproxy want -> "ratio/direct ahead-of-twemproxy PASS|MISS(...)"
row_verdict() {
	awk -v d="$1" -v p="$2" -v t="$3" -v want="$4" 'BEGIN {
		pr = p / d; ahead = (p > t) ? "yes" : "no"
		okr = (pr + 1e-9 >= want); why = ""
		if (!okr) why = "ratio"
		if (ahead == "no") why = why (why == "" ? "" : "+") "twem"
		v = (why == "") ? "PASS" : "MISS(" why ")"
		printf "%.3f %s %s\n", pr, ahead, v }'
}
rps() { printf '%.0f' "$1"; }
if [[ -n $BASELINE_BIN ]]; then
	FMT='%-8s %-4s %10s %10s %10s %10s %8s %8s %8s %7s %7s  %s\n'
	# shellcheck disable=SC2059
	printf "$FMT" row test direct proxy baseline twemproxy prx/dir bas/dir twm/dir target "prx>twm" verdict
	# shellcheck disable=SC2059
	printf "$FMT" -------- ---- ---------- ---------- ---------- ---------- -------- -------- -------- ------- ------- -------
else
	FMT='%-8s %-4s %10s %10s %10s %8s %8s %7s %7s  %s\n'
	# shellcheck disable=SC2059
	printf "$FMT" row test direct proxy twemproxy prx/dir twm/dir target "prx>twm" verdict
	# shellcheck disable=SC2059
	printf "$FMT" -------- ---- ---------- ---------- ---------- -------- -------- ------- ------- -------
fi
PASSED=0 TOTAL=0 BASE_PASSED=0
for i in "${!ROW_LABELS[@]}"; do
	label=${ROW_LABELS[$i]}
	for test in SET GET; do
		[[ ${ROW_ARGS[$i]} == *"${test,,}"* ]] || continue
		d=$(median "$label" "$test" direct)
		p=$(median "$label" "$test" proxy)
		t=$(median "$label" "$test" twemproxy)
		read -r pr ahead verdict < <(row_verdict "$d" "$p" "$t" "${ROW_TARGET[$i]}")
		tr=$(awk -v d="$d" -v t="$t" 'BEGIN { printf "%.3f", t / d }')
		TOTAL=$((TOTAL + 1))
		[[ $verdict == PASS ]] && PASSED=$((PASSED + 1))
		if [[ -n $BASELINE_BIN ]]; then
			b=$(median "$label" "$test" baseline)
			read -r br _ bverdict < <(row_verdict "$d" "$b" "$t" "${ROW_TARGET[$i]}")
			[[ $bverdict == PASS ]] && BASE_PASSED=$((BASE_PASSED + 1))
			# shellcheck disable=SC2059
			printf "$FMT" "$label" "$test" "$(rps "$d")" "$(rps "$p")" "$(rps "$b")" "$(rps "$t")" \
				"$pr" "$br" "$tr" ">=${ROW_TARGET[$i]}" "$ahead" "$verdict"
		else
			# shellcheck disable=SC2059
			printf "$FMT" "$label" "$test" "$(rps "$d")" "$(rps "$p")" "$(rps "$t")" \
				"$pr" "$tr" ">=${ROW_TARGET[$i]}" "$ahead" "$verdict"
		fi
	done
done
echo
echo "targets: proxy >= 0.95x direct at c50-P1, >= 0.90x at c50-P16, >= 0.65x at c1-P1, and ahead of twemproxy on every row"
if [[ -n $BASELINE_BIN ]]; then
	echo "rows meeting both targets: $PASSED/$TOTAL (informational); the baseline would meet $BASE_PASSED/$TOTAL"
	echo
	if ((ROUNDS > 1)); then
		echo "proxy vs baseline: ratio of the medians, and min..max of the $ROUNDS per-round ratios (each round ran the two back to back: that range is the noise a difference must exceed):"
	else
		echo "proxy vs baseline: ratio of the medians (1 round: the range is that round's ratio, no spread; use ROUNDS=5 or more to see the noise):"
	fi
	for i in "${!ROW_LABELS[@]}"; do
		label=${ROW_LABELS[$i]}
		for test in SET GET; do
			[[ ${ROW_ARGS[$i]} == *"${test,,}"* ]] || continue
			printf '  %-8s %-4s proxy/baseline %s  per round %s\n' "$label" "$test" \
				"$(awk -v p="$(median "$label" "$test" proxy)" -v b="$(median "$label" "$test" baseline)" 'BEGIN { printf "%.3f", p / b }')" \
				"$(round_ratios "$label" "$test" proxy baseline | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.3f..%.3f", lo, hi }')"
		done
	done
else
	echo "rows meeting both targets: $PASSED/$TOTAL (informational)"
fi
if ((ROUNDS > 1)); then
	echo
	echo "spread over rounds (min..max requests/s):"
	for i in "${!ROW_LABELS[@]}"; do
		label=${ROW_LABELS[$i]}
		for test in SET GET; do
			[[ ${ROW_ARGS[$i]} == *"${test,,}"* ]] || continue
			if [[ -n $BASELINE_BIN ]]; then
				printf '  %-8s %-4s direct %-17s proxy %-17s baseline %-17s twemproxy %s\n' "$label" "$test" \
					"$(spread "$label" "$test" direct)" "$(spread "$label" "$test" proxy)" \
					"$(spread "$label" "$test" baseline)" "$(spread "$label" "$test" twemproxy)"
			else
				printf '  %-8s %-4s direct %-17s proxy %-17s twemproxy %s\n' "$label" "$test" \
					"$(spread "$label" "$test" direct)" "$(spread "$label" "$test" proxy)" "$(spread "$label" "$test" twemproxy)"
			fi
		done
	done
	echo "proxy/direct within each round (round 1..$ROUNDS; each pair ran back to back):"
	for i in "${!ROW_LABELS[@]}"; do
		label=${ROW_LABELS[$i]}
		for test in SET GET; do
			[[ ${ROW_ARGS[$i]} == *"${test,,}"* ]] || continue
			printf '  %-8s %-4s %s\n' "$label" "$test" \
				"$(round_ratios "$label" "$test" proxy direct | awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 }')"
		done
	done
	if [[ -n $BASELINE_BIN ]]; then
		echo "proxy/baseline within each round (round 1..$ROUNDS; proxy first in odd rounds, baseline first in even ones):"
		for i in "${!ROW_LABELS[@]}"; do
			label=${ROW_LABELS[$i]}
			for test in SET GET; do
				[[ ${ROW_ARGS[$i]} == *"${test,,}"* ]] || continue
				printf '  %-8s %-4s %s\n' "$label" "$test" \
					"$(round_ratios "$label" "$test" proxy baseline | awk '{ printf "%s%.3f", (NR > 1 ? " " : ""), $1 }')"
			done
		done
	fi
fi

if [[ $BENCH_TLS == 1 ]]; then
	echo
	echo "TLS (BENCH_TLS=1; requests/s, medians over rounds, the same rounds as above):"
	echo "  direct-tls: Redis's TLS port; proxy-tls: the proxy's TLS listener, plain to Redis; proxy-tls2: TLS on"
	echo "  both sides; proxy-btls: plain clients of the proxy with BACKEND_TLS (event loop, TLS relay to Redis)"
	TFMT='%-8s %-4s %10s %10s %10s %10s %10s %10s %10s %10s %10s %10s\n'
	# shellcheck disable=SC2059
	printf "$TFMT" row test direct proxy direct-tls proxy-tls proxy-tls2 proxy-btls ptls/dtls ptls2/dtls ptls/proxy btls/proxy
	for i in "${!ROW_LABELS[@]}"; do
		label=${ROW_LABELS[$i]}
		for test in SET GET; do
			[[ ${ROW_ARGS[$i]} == *"${test,,}"* ]] || continue
			d=$(median "$label" "$test" direct) p=$(median "$label" "$test" proxy)
			dt=$(median "$label" "$test" direct-tls) pt=$(median "$label" "$test" proxy-tls)
			pt2=$(median "$label" "$test" proxy-tls2) bt=$(median "$label" "$test" proxy-btls)
			# shellcheck disable=SC2059
			printf "$TFMT" "$label" "$test" "$(rps "$d")" "$(rps "$p")" "$(rps "$dt")" "$(rps "$pt")" "$(rps "$pt2")" "$(rps "$bt")" \
				"$(awk -v a="$pt" -v b="$dt" 'BEGIN { printf "%.3f", a / b }')" \
				"$(awk -v a="$pt2" -v b="$dt" 'BEGIN { printf "%.3f", a / b }')" \
				"$(awk -v a="$pt" -v b="$p" 'BEGIN { printf "%.3f", a / b }')" \
				"$(awk -v a="$bt" -v b="$p" 'BEGIN { printf "%.3f", a / b }')"
		done
	done
fi

# CPU per request: where the two cores went, per process, medians over rounds.
echo
echo "CPU time per request (µs, medians over rounds; user + system; clock ticks of 1/$CLK_TCK s):"
printf '  %-8s %-10s %10s %10s %10s %10s %6s\n' row target redis middle benchmark total busy
for i in "${!ROW_LABELS[@]}"; do
	for target in "${TARGETS[@]}"; do
		awk -F'\t' -v l="${ROW_LABELS[$i]}" -v g="$target" '
			function med(a, n,   i, j, t) {
				for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
				return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
			}
			$1 == l && $2 == g { n++; r[n] = 1e6 * $5 / $4; m[n] = 1e6 * $6 / $4; b[n] = 1e6 * $7 / $4; t[n] = r[n] + m[n] + b[n]; u[n] = $8 }
			END {
				if (n == 0) exit
				mid = (g ~ /^direct/) ? "-" : sprintf("%.2f", med(m, n))
				printf "  %-8s %-10s %10.2f %10s %10.2f %10.2f %5.0f%%\n", l, g, med(r, n), mid, med(b, n), med(t, n), med(u, n)
			}' "$CPUS"
	done
done
if [[ -n $BASELINE_BIN ]]; then
	echo "  (baseline rows: middle is the BASELINE_BIN redis-proxy)"
fi
echo "  (middle: redis-proxy or twemproxy; busy: the share of the machine's CPU time used during"
echo "  the run, all processes. At 100 % throughput would be the CPUs divided by the total; below it,"
echo "  the processes sharing one CPU bound the row: through a proxy the kernel runs the proxy and"
echo "  Redis on the same CPU, since each wakes the other with every write - see docs/performance.md.)"

# ------------------------------------------------------------------ idle clients

kv() { awk -F= -v k="$1" '$1 == k { sub(/^[^=]*=/, ""); print; exit }' "$2"; }

idle_run() { # name port pid ping outfile
	local name=$1 port=$2 pid=$3 ping=$4 out=$5
	log "bench: $name: opening $IDLE_CLIENTS idle clients"
	timeout "$RUN_TIMEOUT" "$IDLE_BIN" -addr "127.0.0.1:$port" -n "$IDLE_CLIENTS" -pid "$pid" \
		-backend "127.0.0.1:$REDIS_PORT" -ping "$ping" >"$out" 2>"$out.err" ||
		{ show_log "$out.err"; die "idleclients against $name failed"; }
	alive "$pid" || { show_log "${LOG_OF[$name]}"; die "$name died while holding $IDLE_CLIENTS idle clients"; }
}

idle_clients_text() { # outfile -> "10000" or "9876 of 10000 (124 failed: ...)"
	local ok req failed first
	ok=$(kv clients_ok "$1") req=$(kv clients_requested "$1") failed=$(kv failed "$1") first=$(kv first_error "$1")
	if [[ $ok == "$req" ]]; then echo "$ok"; else echo "$ok of $req ($failed failed, first error: $first)"; fi
}

stop_pid() { # pid
	kill "$1" 2>/dev/null || true
	for _ in $(seq 1 40); do alive "$1" || break; sleep 0.05; done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local keep=() p
	for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}") # not killed again by cleanup (the pid may be reused)
}

# idle_verdict rss-kib clients-ok clients-alive -> PASS or MISS(rss|clients)
idle_verdict() {
	awk -v r="$1" -v t="$RSS_TARGET_MIB" -v ok="$2" -v n="$IDLE_CLIENTS" -v a="$3" 'BEGIN {
		why = ""
		if (r / 1024 > t) why = "rss"
		if (ok < n || a < n) why = why (why == "" ? "" : "+") "clients"
		print (why == "") ? "PASS" : "MISS(" why ")" }'
}

# redis_conns_of pid -> how many established TCP connections pid has to the backend Redis
redis_conns_of() {
	ss -Htnp state established "( dport = :$REDIS_PORT )" 2>/dev/null | grep -c "pid=$1," || true
}

# ------------------------------------------------------------------ durable writes
# REDIS_PROXY_WRITE_ACKS=1 against 0 (docs/durable-writes.md): a replica of
# the bench's Redis and two proxies in front of both, identical but for
# WRITE_ACKS; SET rows interleaved, their order alternating by round.
# BENCH_ACKS=0 skips it. (After the main table, so its replica does not
# slow the main rows' Redis.)
if [[ ${BENCH_ACKS:-1} == 1 ]]; then
	pick_port; REPL_PORT=$PORT
	start_bg "$TMP/replica.log" redis-server --save '' --appendonly no --port "$REPL_PORT" \
		--bind 127.0.0.1 --dir "$TMP" --dbfilename replica.rdb --daemonize no --replicaof 127.0.0.1 "$REDIS_PORT"
	REPL_PID=$LAST_PID
	wait_pong redis-replica "$REPL_PORT" "$REPL_PID" "$TMP/replica.log"
	for _ in $(seq 1 100); do
		redis-cli -p "$REPL_PORT" info replication 2>/dev/null | grep -q master_link_status:up && break
		sleep 0.1
	done
	declare -A ACK_PORT ACK_PID
	for acks in 0 1; do
		pick_port; ACK_PORT[$acks]=$PORT
		pick_port; ack_admin=$PORT
		start_bg "$TMP/proxy-acks$acks.log" env REDIS_PROXY_LISTEN="127.0.0.1:${ACK_PORT[$acks]}" \
			REDIS_PROXY_SERVERS="127.0.0.1:$REDIS_PORT,127.0.0.1:$REPL_PORT" REDIS_PROXY_ADMIN_LISTEN="127.0.0.1:$ack_admin" \
			REDIS_PROXY_WRITE_ACKS="$acks" ${BENCH_POOL_SIZE:+REDIS_PROXY_POOL_SIZE="$BENCH_POOL_SIZE"} "$PROXY_BIN"
		ACK_PID[$acks]=$LAST_PID
		wait_pong "redis-proxy WRITE_ACKS=$acks" "${ACK_PORT[$acks]}" "${ACK_PID[$acks]}" "$TMP/proxy-acks$acks.log"
		wait_healthz "proxy WRITE_ACKS=$acks" "$ack_admin"
		# The replica is linked before writes are timed (NOTREPLICATED otherwise).
		for _ in $(seq 1 100); do
			[[ $(redis-cli -p "${ACK_PORT[$acks]}" set bench:acks:probe 1 2>&1) == OK ]] && break
			sleep 0.1
		done
	done
	ACK_RESULTS=$TMP/acks.tsv
	: >"$ACK_RESULTS"
	log "bench: WRITE_ACKS=1 against WRITE_ACKS=0 (a replica added), $ROUNDS round(s)"
	for ((round = 1; round <= ROUNDS; round++)); do
		order=(0 1)
		((round % 2)) || order=(1 0)
		for row in "c50-P1:-c 50 -P 1:$N_C50_P1" "c50-P16:-c 50 -P 16:$N_C50_P16"; do
			IFS=: read -r label args n <<<"$row"
			for acks in "${order[@]}"; do
				out=$TMP/acks.$round.$label.$acks.csv
				# shellcheck disable=SC2086 # args is a word list on purpose
				timeout "$RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "${ACK_PORT[$acks]}" -t set $args -n "$n" --csv >"$out" 2>"$out.err" ||
					{ show_log "$out.err"; show_log "$TMP/proxy-acks$acks.log"; die "redis-benchmark against WRITE_ACKS=$acks failed"; }
				rps=$(awk -F'","' '$1 == "\"SET" { print $2 }' "$out")
				printf '%s\t%s\t%s\t%s\n' "$label" "$acks" "$round" "${rps%\"}" >>"$ACK_RESULTS"
				echo "  round $round  $label  WRITE_ACKS=$acks  SET $rps" >&2
			done
		done
	done
	failures=$(curl -s "http://127.0.0.1:$ack_admin/metrics" 2>/dev/null | awk '$1 == "redis_proxy_write_ack_failures_total" { print $2 }')
	echo
	echo "durable writes: SET requests/s through a proxy with WRITE_ACKS=1 and one with WRITE_ACKS=0, the same master and replica (medians over $ROUNDS rounds, the two back to back in each):"
	printf '  %-8s %12s %12s %9s  %s\n' row acks=0 acks=1 ratio "per-round ratios (acks=1/acks=0)"
	for label in c50-P1 c50-P16; do
		m0=$(awk -F'\t' -v l=$label '$1 == l && $2 == 0 { print $4 }' "$ACK_RESULTS" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
		m1=$(awk -F'\t' -v l=$label '$1 == l && $2 == 1 { print $4 }' "$ACK_RESULTS" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
		per=$(awk -F'\t' -v l=$label '$1 == l { v[$2, $3] = $4; r[$3] = 1 } END { for (k = 1; k in r; k++) printf "%.3f ", v[1, k] / v[0, k] }' "$ACK_RESULTS")
		printf '  %-8s %12.0f %12.0f %9.3f  %s\n' "$label" "$m0" "$m1" "$(awk -v a="$m1" -v b="$m0" 'BEGIN { print a / b }')" "$per"
	done
	echo "  goal: >= 0.8 at c50-P16 (one WAIT per batch: the group commit); WRITE_ACKS=1 batches answered NOTREPLICATED: ${failures:-?}"
	for acks in 0 1; do stop_pid "${ACK_PID[$acks]}"; done
	stop_pid "$REPL_PID"
fi

# The second proxy's connections to Redis would count as the proxy's below.
[[ $BENCH_TLS != 1 ]] || stop_pid "$PROXY2_PID"

if ((IDLE_CLIENTS > 0)); then
	echo
	# twemproxy reference first, then stop twemproxy so that the backend's
	# connected_clients during the proxy measurement is only the proxy's pool
	# (plus the INFO connection itself). The baseline likewise goes before
	# the proxy and is stopped; while it is measured the proxy is still up,
	# so the proxy's own connections to Redis (counted with ss) are taken
	# off the baseline's backend figure.
	twem_line=
	if [[ $IDLE_TWEMPROXY == 1 ]]; then
		out=$TMP/idle.twemproxy
		idle_run twemproxy "$TWEM_PORT" "$TWEM_PID" resp "$out"
		twem_line="twemproxy reference: idle clients: $(idle_clients_text "$out"), RSS: $(mib "$(kv rss_kib "$out")") MiB (before: $(mib "$(kv rss_before_kib "$out")") MiB), server_connections 1"
	fi
	stop_pid "$TWEM_PID"

	base_lines=()
	stopped="twemproxy was stopped first"
	if [[ -n $BASELINE_BIN ]]; then
		stopped="twemproxy and the baseline were stopped first"
		if [[ $IDLE_BASELINE == 1 ]]; then
			out=$TMP/idle.baseline
			pc0=$(redis_conns_of "$PROXY_PID")
			idle_run baseline "$BASE_PORT" "$BASE_PID" "$IDLE_PING" "$out"
			pc1=$(redis_conns_of "$PROXY_PID")
			rss=$(kv rss_kib "$out") raw=$(kv backend_clients "$out")
			[[ -n $rss ]] || die "no baseline RSS measured: $(kv rss_error "$out")"
			if [[ $pc0 == "$pc1" ]] && ((pc0 > 0)); then
				bconns="$((raw - pc0)) (Redis connected_clients $raw less the proxy's $pc0)"
			else
				bconns="$raw (Redis connected_clients, including the proxy's own connections: ss counted $pc0 before and $pc1 after)"
			fi
			base_lines+=("baseline: idle clients: $(idle_clients_text "$out"), RSS: $(mib "$rss") MiB (before: $(mib "$(kv rss_before_kib "$out")") MiB; VmHWM $(mib "$(kv hwm_kib "$out")") MiB), backend connections: $bconns  $(idle_verdict "$rss" "$(kv clients_ok "$out")" "$(kv clients_alive "$out")")")
			base_lines+=("  baseline: PING=$IDLE_PING; setup $(kv setup_ms "$out") ms; still answering PING after the measurement: $(kv clients_alive "$out")/$IDLE_CLIENTS")
		else
			base_lines+=("baseline: idle clients not measured (BENCH_IDLE_BASELINE=0)")
		fi
		stop_pid "$BASE_PID"
	fi

	out=$TMP/idle.proxy
	idle_run proxy "$PROXY_PORT" "$PROXY_PID" "$IDLE_PING" "$out"
	rss=$(kv rss_kib "$out") rss0=$(kv rss_before_kib "$out") hwm=$(kv hwm_kib "$out")
	ok=$(kv clients_ok "$out") alive_n=$(kv clients_alive "$out")
	[[ -n $rss ]] || die "no proxy RSS measured: $(kv rss_error "$out")"
	verdict=$(idle_verdict "$rss" "$ok" "$alive_n")
	echo "idle clients: $(idle_clients_text "$out"), proxy RSS: $(mib "$rss") MiB (target ≤${RSS_TARGET_MIB} MiB), backend connections: $(kv backend_clients "$out") (pool size ${BENCH_POOL_SIZE:-default})  $verdict"
	echo "  proxy RSS before the clients connected: $(mib "$rss0") MiB; VmHWM while held: $(mib "$hwm") MiB; backend connections before: $(kv backend_clients_before "$out")"
	echo "  PING=$IDLE_PING; setup $(kv setup_ms "$out") ms; still answering PING after the measurement: $alive_n/$IDLE_CLIENTS"
	echo "  (raw figures; backend connections = Redis connected_clients, which counts the INFO connection that asked; $stopped)"
	[[ -z $twem_line ]] || echo "  $twem_line"
	for line in "${base_lines[@]}"; do echo "  $line"; done
fi

for name in proxy baseline proxy2; do
	logf=$TMP/$name.log
	if grep -qiE 'panic|fatal error|data race' "$logf" 2>/dev/null; then
		log "bench: WARNING: the $name log mentions panic/fatal/race:"
		grep -iE -m 5 'panic|fatal error|data race' "$logf" >&2 || true
		BENCH_KEEP_TMP=1
	fi
done

FAILED=0
