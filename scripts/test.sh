#!/usr/bin/env bash
# Runs the test layers described in docs/testing.md and prints, at the
# end, which layers ran and which were skipped and why. A layer that
# runs and fails makes the script fail; a layer this machine cannot run is
# reported as skipped, never as passed.
set -uo pipefail
cd "$(dirname "$0")/.."

want=${1:-all}
export TESTCONTAINERS_RYUK_DISABLED=true
GO=${GO:-go}
declare -a summary
status=0

# gotest is go test with progress: one line per top-level test as it ends
# and one per package, the whole output of whatever fails, and a closing
# "tests: N passed, N failed, N skipped" (internal/testprogress). Its
# status is go test's.
progress_bin=$(mktemp -d)/testprogress
trap 'rm -rf "$(dirname "$progress_bin")"' EXIT
gotest() {
	if [ ! -x "$progress_bin" ]; then
		$GO build -o "$progress_bin" ./internal/testprogress || return 1
	fi
	$GO test -json "$@" | "$progress_bin"
}

layer() { # name, result, detail
	summary+=("$(printf '%-12s %-8s %s' "$1" "$2" "$3")")
}

run_layer() { # name, command...
	local name=$1
	shift
	echo "=== layer $name: $*"
	local t0=$SECONDS
	if "$@"; then
		layer "$name" passed "$((SECONDS - t0))s"
	else
		layer "$name" FAILED "$((SECONDS - t0))s"
		status=1
	fi
}

# The scenarios skip themselves unless REDIS_PROXY_ITEST=1, so the unit and
# integration layers' `go test ./...` does not start containers.
appliance_tests() { make -s images && REDIS_PROXY_ITEST=1 $GO test -count=1 -timeout 30m -v ./itest/; }
have_redis() { command -v redis-server >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }
have_docker() { docker info >/dev/null 2>&1; }

case $want in
unit)
	run_layer unit gotest -short -count=1 ./...
	;;
integration | all)
	if have_redis; then
		# itest/ is the appliance layer's; run there, not skipped here.
		# e2e/isolation measures latency and memory under a load of its
		# own (gigabytes through one Redis): it runs alone, after, so
		# that it neither slows the other packages' timed tests nor is
		# measured beside them.
		run_layer integration gotest -race -count=1 -timeout 20m $($GO list ./... | grep -v -e /itest -e /e2e/isolation)
		run_layer isolation $GO test -count=1 -timeout 10m -v ./e2e/isolation/
		# Blocked clients served in the order they sent: timing, measured
		# alone and without the race detector.
		run_layer order $GO test -count=1 -timeout 5m -v -run 'TestBlockingOrder' ./proxy/
		# The proxy's tests again with no event loop: every client on a
		# goroutine of its own, the path clients with state move to.
		run_layer goroutines gotest -count=1 -timeout 10m ./proxy/ -eventloops=-1
	else
		layer integration skipped "redis-server is not installed (apt-get install -y redis-server); ran unit tests only"
		run_layer unit gotest -short -count=1 ./...
	fi
	;;&
netns | all)
	if [ "$want" = netns ]; then
		if is_root; then
			run_layer netns $GO test -count=1 -v -run Netns ./vip/ ./e2e/netns/
		else
			layer netns skipped "needs root for network namespaces"
		fi
	elif is_root; then
		layer netns "(in integration)" "ran inside the integration layer as root"
	else
		layer netns skipped "needs root for network namespaces (the tests skipped themselves)"
	fi
	;;&
appliance | all)
	if [ ! -d itest ] || ! ls itest/*_test.go >/dev/null 2>&1; then
		layer appliance skipped "no appliance scenarios yet (itest/ is empty)"
	elif ! have_docker; then
		layer appliance skipped "no Docker engine reachable"
	elif ! is_root; then
		layer appliance skipped "needs root (the scenarios nsenter the containers' network namespaces)"
	else
		run_layer appliance appliance_tests
	fi
	;;
integration | netns) ;;
*)
	echo "usage: scripts/test.sh [all|unit|integration|netns|appliance]" >&2
	exit 2
	;;
esac

echo
echo "=== test layers"
printf '%s\n' "${summary[@]}"
exit $status
