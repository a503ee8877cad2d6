# redis-proxy — see README.md. Every target works on a fresh Debian 12 machine
# with Go and Docker; `make test` says which test layers it could not run.

GO        ?= go
BIN       := bin/redis-proxy
PKGS      := ./...
COMPOSE   := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)
# Fixed local tags of the appliance's images (docker/images.sh); never latest.
PROXY_IMAGE       := redis-proxy/proxy:dev
REDIS_LOCAL_IMAGE := redis-proxy/redis:7.0-local
APPLIANCE_ENV     := REDIS_IMAGE=$(REDIS_LOCAL_IMAGE) PROXY_IMAGE=$(PROXY_IMAGE)

.PHONY: all build test test-unit test-integration test-netns test-appliance verify bench up down images clean

all: build

# `redis-proxy version` and redis_proxy_build_info: the git description and
# commit of this checkout ("dev" outside one).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o $(BIN) ./cmd/redis-proxy

# All layers this machine allows; a summary names the ones skipped and why.
test:
	bash scripts/test.sh all

# Layer 1: pure unit tests (no Redis, no root, no Docker); tests that need
# a real redis-server skip themselves under -short.
test-unit:
	bash scripts/test.sh unit

# Layers 1+2: everything in go test, with real redis-server processes.
test-integration:
	bash scripts/test.sh integration

# Layer 3: VIP tests in network namespaces (root).
test-netns:
	bash scripts/test.sh netns

# Layer 4: testcontainers-go scenarios against the real images.
test-appliance:
	bash scripts/test.sh appliance

verify:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@# The proxy also builds on other Unix systems (goroutine per client, no VIP).
	GOOS=darwin $(GO) vet $(PKGS)
	$(GO) mod tidy -diff
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck $(PKGS); else echo "staticcheck not installed: skipped"; fi

bench: build
	bash bench/bench.sh

# The appliance's images, built from bin/redis-proxy and this host's Redis
# with no registry (see docker/images.sh).
images: build
	$(APPLIANCE_ENV) bash docker/images.sh

# Runs the product: compose.yaml's two Redis servers and the proxy pair
# holding the VIP, with passwords (redis-cli -h 172.29.0.100 --askpass).
# docker/env.sh creates .env from .env.example the first time and generates
# into it (new or old) whichever of the heartbeat secret, the Redis password,
# the client password and the admin token it lacks. The local processes of
# scripts/up.sh remain available as `bash scripts/up.sh`.
up: images
	@bash docker/env.sh
	$(APPLIANCE_ENV) $(COMPOSE) up -d
	@$(APPLIANCE_ENV) bash docker/wait-healthy.sh $(COMPOSE)

# Stops what `make up` and `bash scripts/up.sh` started: the local processes
# of scripts/up.sh (.run/), then the appliance (containers, network and the
# volumes: Redis data, the proxies' state) when a Docker engine is reachable.
# The secrets compose.yaml requires need not be known to remove it.
DOWN_ENV := $(foreach v,REDIS_PROXY_HEARTBEAT_SECRET REDIS_PROXY_BACKEND_PASSWORD REDIS_PROXY_PASSWORD REDIS_PROXY_ADMIN_TOKEN,$(v)=$${$(v):-not-needed-by-down})
down:
	@bash scripts/up.sh down
	@if docker info >/dev/null 2>&1; then \
		$(APPLIANCE_ENV) $(DOWN_ENV) $(COMPOSE) down --volumes --remove-orphans; \
	else echo "no Docker engine reachable: no appliance to remove"; fi

clean:
	rm -rf bin .run
