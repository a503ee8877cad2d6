package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
)

// ctCommandReply returns the COMMAND reply of a real Redis server.
func ctCommandReply(t *testing.T, args ...string) (*redistest.Server, []any) {
	t.Helper()
	srv := redistest.Start(t, args...)
	c := srv.Dial()
	reply, err := redis.Values(c.Do("COMMAND"))
	if err != nil {
		t.Fatalf("COMMAND: %v", err)
	}
	return srv, reply
}

func ctArgs(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}

// TestRenamedCommandThroughProxy: COMMAND lists a renamed command under its
// original name, so the new name is unknown to the table; the proxy must
// still forward it (to the master) and return the server's reply.
func TestRenamedCommandThroughProxy(t *testing.T) {
	srv, reply := ctCommandReply(t, "--rename-command", "GET", "MYGET")
	tbl, err := command.Build(srv.Addr, reply, newMetrics(nil).commandCounters)
	if err != nil {
		t.Fatalf("command.Build: %v", err)
	}
	if got := tbl.Lookup(ctArgs("MYGET", "k")).Name; got != "unknown" {
		t.Fatalf("lookup(MYGET) = %q, want the unknown entry", got)
	}
	tp := startProxy(t, Config{}, srv.Addr)
	c := tp.dial(t, redis.DialReadTimeout(5*time.Second))
	if _, err := c.Do("SET", "k", "renamed"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, err := redis.String(c.Do("MYGET", "k")); err != nil || v != "renamed" {
		t.Fatalf("MYGET through the proxy: %q, %v", v, err)
	}
	if _, err := c.Do("GET", "k"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("GET (renamed away) through the proxy: %v, want Redis's unknown command error", err)
	}
}
