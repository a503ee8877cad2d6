#!/usr/bin/env bash
# Builds the appliance's images with no registry access (`make images`):
#
#   $PROXY_IMAGE (redis-proxy/proxy:dev)        bin/redis-proxy, FROM scratch
#   $REDIS_IMAGE (redis-proxy/redis:7.0-local)  the host's redis-server and
#                                               redis-cli with their libraries, FROM scratch
#
# Each build context is prepared in a temporary directory holding only what
# the image needs. Set PROXY_FROM=source to build the proxy from source in a
# Go image instead (docker/proxy.Dockerfile's default stage; needs a registry).
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY_IMAGE=${PROXY_IMAGE:-redis-proxy/proxy:dev}
REDIS_IMAGE=${REDIS_IMAGE:-redis-proxy/redis:7.0-local}
PROXY_FROM=${PROXY_FROM:-prebuilt}
BIN=${BIN:-bin/redis-proxy}

die() { echo "docker/images.sh: $*" >&2; exit 1; }
for img in "$PROXY_IMAGE" "$REDIS_IMAGE"; do
	case $img in *:latest | *:) die "refusing tag $img: use a fixed local tag, never latest" ;; esac
	case ${img##*/} in *:*) ;; *) die "image $img has no tag: use a fixed local tag" ;; esac
done

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# docker build prints a deprecation notice for the classic builder; the
# classic builder is what works with no buildx plugin and no registry.
# The image a rebuild replaces is removed (when no container uses it), so
# repeated `make images` do not pile up untagged images.
build() { # dockerfile context tag args...
	local df=$1 dir=$2 tag=$3 old new
	shift 3
	old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
	docker build --quiet -f "$df" -t "$tag" "$@" "$dir" >/dev/null 2>"$ctx/build.err" || {
		cat "$ctx/build.err" >&2
		die "docker build -f $df failed"
	}
	new=$(docker image inspect -f '{{.Id}}' "$tag")
	if [ -n "$old" ] && [ "$old" != "$new" ]; then
		docker rmi "$old" >/dev/null 2>&1 || true
	fi
}

# ---- proxy -------------------------------------------------------------------
if [ "$PROXY_FROM" = source ]; then
	build docker/proxy.Dockerfile . "$PROXY_IMAGE" --target source
else
	[ -x "$BIN" ] || die "$BIN is missing: run make build"
	# A dynamically linked binary would not start in an empty image.
	if ldd "$BIN" >/dev/null 2>&1; then die "$BIN is dynamically linked (build it with CGO_ENABLED=0)"; fi
	mkdir -p "$ctx/proxy/bin"
	cp "$BIN" "$ctx/proxy/bin/redis-proxy"
	build docker/proxy.Dockerfile "$ctx/proxy" "$PROXY_IMAGE" --target prebuilt
fi
docker run --rm --entrypoint /usr/local/bin/redis-proxy "$PROXY_IMAGE" --help >/dev/null ||
	die "$PROXY_IMAGE: redis-proxy --help failed in the image"
echo "built $PROXY_IMAGE"

# ---- redis -------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing redis-server and redis-tools (Debian packages) to copy them into $REDIS_IMAGE..."
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
		(service redis-server stop || true) >/dev/null 2>&1
	else
		die "redis-server and redis-cli are needed on this machine (apt-get install redis-server redis-tools)"
	fi
fi
root=$ctx/redis/rootfs
mkdir -p "$root/usr/local/bin" "$root/data" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
# /usr/bin/redis-server is a symlink to redis-check-rdb, and a redis binary
# whose name contains "redis-check-rdb" runs in check mode: copy the file it
# points to under the name redis-server.
server=$(readlink -f "$(command -v redis-server)")
cli=$(readlink -f "$(command -v redis-cli)")
cp "$server" "$root/usr/local/bin/redis-server"
cp "$cli" "$root/usr/local/bin/redis-cli"
# Every library the two load (ldd), and the dynamic loader, at the same paths
# (-L: copy the file, not the soname symlink).
libs=$(ldd "$server" "$cli" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u)
[ -n "$libs" ] || die "ldd found no libraries for $server"
for lib in $libs; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
echo 'root:x:0:0:root:/data:/nonexistent' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
cp docker/redis.Dockerfile "$ctx/redis/Dockerfile"
build "$ctx/redis/Dockerfile" "$ctx/redis" "$REDIS_IMAGE"
docker run --rm "$REDIS_IMAGE" redis-server --version >/dev/null ||
	die "$REDIS_IMAGE: redis-server --version failed in the image"
echo "built $REDIS_IMAGE ($("$root/usr/local/bin/redis-server" --version | awk '{print $3}'))"
