package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// busyScript runs about ms milliseconds in Redis without yielding (it
// watches the clock, so a slow machine does not shorten it).
func busyScript(ms int) []string {
	return []string{"EVAL", `local s = redis.call('TIME')
repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) >= tonumber(ARGV[1]) * 1000
return 'done'`, "0", strconv.Itoa(ms)}
}

// A client's Lua busy loop keeps the master from answering anyone: first
// silence (Redis answers nobody until busy-reply-threshold, 5 s), then
// -BUSY. The proxy sent the script, so the master is busy, not dead: no
// failover, the whole 6.5 s (it was failed over after DOWN_AFTER, 1 s, and
// SCRIPT KILL then went to the new master: NOTBUSY). SCRIPT KILL through
// the proxy goes to the server that runs the script, on a connection other
// than the one it runs on, and kills it.
func TestBusyMasterIsNotFailedOver(t *testing.T) {
	c := startCluster(t, 2, nil)
	master := c.srv[0].Addr
	before := c.waitTopology(5*time.Second, "a master", func(tv topologyView) bool { return tv.Routing.Master != "" })

	busy := resptest.Dial(t, c.cfg.Listen)
	busy.Send(busyScript(6500)...)
	start := time.Now()
	// Through the silence (5 s) and into -BUSY: still the same master,
	// the same epoch.
	for time.Since(start) < 6*time.Second {
		tv, err := c.topology()
		if err != nil {
			t.Fatalf("GET /topology: %v", err)
		}
		if tv.Routing.Master != master || tv.Routing.Epoch != before.Routing.Epoch {
			t.Fatalf("%v into the script: master %q epoch %d, want %q epoch %d: the busy master was failed over",
				time.Since(start).Round(time.Millisecond), tv.Routing.Master, tv.Routing.Epoch, master, before.Routing.Epoch)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resptest.Expect(t, busy.ReadTimeout(5*time.Second), `"done"`)
	if len(c.logs.since(start, "replication", "server busy running a long command: alive")) == 0 {
		t.Errorf("the manager logged no busy event")
	}
	t.Logf("a 6.5 s script: no failover; master %s epoch %d throughout", master, before.Routing.Epoch)

	// SCRIPT KILL reaches the server running the script.
	busy.Send(busyScript(20000)...)
	time.Sleep(1500 * time.Millisecond) // past DOWN_AFTER, inside the silence
	killer := resptest.Dial(t, c.cfg.Listen)
	resptest.Expect(t, killer.DoTimeout(5*time.Second, "SCRIPT", "KILL"), "OK")
	v := busy.ReadTimeout(5 * time.Second)
	if !v.IsError() || !strings.Contains(v.Str, "killed") {
		t.Fatalf("the script's client got %s, want the error of a killed script", v)
	}
	resptest.Expect(t, killer.Do("SCRIPT", "KILL"), "(error) NOTBUSY No scripts in execution right now.")
	if tv, _ := c.topology(); tv.Routing.Master != master || tv.Routing.Epoch != before.Routing.Epoch {
		t.Fatalf("after SCRIPT KILL: master %q epoch %d, want %q epoch %d", tv.Routing.Master, tv.Routing.Epoch, master, before.Routing.Epoch)
	}
}
