# redis-proxy — see README.md. Every target works on a fresh Debian 12 machine
# with Go and Docker; `make test` says which test layers it could not run.

GO        ?= go
BIN       := bin/redis-proxy
PKGS      := ./...
COMPOSE   := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)

.PHONY: all build test test-unit test-integration test-netns test-appliance verify bench up down images clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN) ./cmd/redis-proxy

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
	$(GO) mod tidy -diff
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck $(PKGS); else echo "staticcheck not installed: skipped"; fi

bench: build
	bash bench/bench.sh

# Runs the product on this machine: a Redis master and replica and the proxy
# on 127.0.0.1 (the compose appliance replaces this; see README).
up:
	bash scripts/up.sh

down:
	bash scripts/up.sh down

clean:
	rm -rf bin .run
