# The redis-proxy image: one static binary (CGO_ENABLED=0) in an empty image.
#
# Two ways to build it, one per final stage:
#
#   prebuilt (what `make images` builds; pulls nothing, works with no registry):
#     the context holds bin/redis-proxy, built on the host by `make build`.
#       docker build -f docker/proxy.Dockerfile --target prebuilt -t redis-proxy/proxy:dev <context>
#     (docker/images.sh prepares a context with just the binary.)
#
#   source (the default, last stage; needs a registry for the Go image):
#     a plain multi-stage build from the repository.
#       docker build -f docker/proxy.Dockerfile -t redis-proxy/proxy:dev .
#
# The prebuilt stages come first: the classic builder builds the stages up to
# --target in order, so `--target prebuilt` never reaches the FROM ${GO_IMAGE} line.
#
# The proxy runs as root: owning the VIP needs CAP_NET_ADMIN (netlink) and
# CAP_NET_RAW (gratuitous ARP), granted with `cap_add` at run time.

# The Go image of the source build; override with --build-arg GO_IMAGE=...
ARG GO_IMAGE=golang:1.26-bookworm

FROM scratch AS base
ENV PATH=/usr/local/bin
EXPOSE 6379/tcp 9736/tcp 5405/udp
# No shell in the image: the binary checks its own admin /healthz.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
	CMD ["/usr/local/bin/redis-proxy", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/redis-proxy"]
CMD ["run"]

FROM base AS prebuilt
COPY bin/redis-proxy /usr/local/bin/redis-proxy

# ---- from source (needs a registry) -----------------------------------------
FROM ${GO_IMAGE} AS build
# What `redis-proxy version` prints: --build-arg VERSION=$(git describe
# --tags --always) --build-arg REVISION=$(git rev-parse HEAD).
ARG VERSION=dev
ARG REVISION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/redis-proxy ./cmd/redis-proxy

FROM base AS source
COPY --from=build /out/redis-proxy /usr/local/bin/redis-proxy
