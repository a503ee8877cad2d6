// Package proxybin gives tests the redis-proxy binary: built as `make
// build` builds it (so a test never runs a stale bin/redis-proxy), or the
// one $REDIS_PROXY_BIN names.
package proxybin

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build returns the path of the redis-proxy binary: $REDIS_PROXY_BIN, or
// cmd/redis-proxy built into a directory removed when t ends.
func Build(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REDIS_PROXY_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "redis-proxy")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin,
		"github.com/redis-proxy/redis-proxy/cmd/redis-proxy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/redis-proxy: %v\n%s", err, out)
	}
	return bin
}
