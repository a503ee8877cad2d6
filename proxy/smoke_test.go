package proxy

import (
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

func TestSmoke(t *testing.T) {
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := tp.dial(t)
	if v, err := redis.String(c.Do("SET", "k", "v")); err != nil || v != "OK" {
		t.Fatalf("SET: %q %v", v, err)
	}
	if v, err := redis.String(c.Do("GET", "k")); err != nil || v != "v" {
		t.Fatalf("GET: %q %v", v, err)
	}
	c.Send("MULTI")
	c.Send("INCR", "n")
	c.Send("INCR", "n")
	v, err := redis.Values(c.Do("EXEC"))
	if err != nil || len(v) != 2 {
		t.Fatalf("EXEC: %v %v", v, err)
	}
	if _, err := c.Do("REPLICAOF", "NO", "ONE"); err == nil {
		t.Fatalf("REPLICAOF was not refused")
	} else {
		t.Log(err)
	}
}
