package proxy

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// A large value is read once, into a buffer of its size, on the goroutine
// path (an event loop hands the client over from the value's header), and
// written to Redis from there; the room it took in MaxInflightMemory is
// given back once it has run, and the client goes on as before.
func TestLargeValueIsReadOnce(t *testing.T) {
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20) // 48 MiB
	c.Write(resptest.Cmds([]string{"SET", "big:k", string(big)}, []string{"STRLEN", "big:k"}))
	resptest.Expect(t, c.ReadTimeout(30*time.Second), "OK")
	resptest.Expect(t, c.Read(), "50331648")
	if *eventLoops >= 0 {
		if h := testutil.ToFloat64(tp.m.handoffs); h != 1 {
			t.Fatalf("%v hand-offs, want 1 (the large value to the goroutine path)", h)
		}
	}
	// The buffer and its room go once the client sends more.
	resptest.Expect(t, c.Do("GET", "nosuch"), "<nil>")
	poll.Until(t, 5*time.Second, "the room of the large request given back", func() bool {
		return testutil.ToFloat64(tp.m.inflightMemory) == 0
	})
	v := c.DoTimeout(30*time.Second, "GET", "big:k")
	if !bytes.Equal([]byte(v.Str), big) {
		t.Fatalf("GET big:k: %d bytes, want the %d written", len(v.Str), len(big))
	}
}

// Large requests share MaxInflightMemory: a client whose request does not
// fit waits, unread, while another's is in flight, then goes on; one that
// waits past HoldTimeout gets TRYAGAIN and is disconnected.
func TestLargeRequestsWaitForRoom(t *testing.T) {
	r := redistest.Start(t)
	tp := startProxy(t, Config{MaxInflightMemory: 12 << 20, HoldTimeout: time.Second}, r.Addr)
	val := strings.Repeat("x", 8<<20)
	req := resptest.Cmd("SET", "room:k", val)
	// A sends the header and half the value, and stops: it holds 8 MiB
	// of room while the rest does not come.
	a := resptest.Dial(t, tp.Addr)
	a.Write(req[:len(req)/2])
	poll.Until(t, 5*time.Second, "A's request holding its room", func() bool {
		return testutil.ToFloat64(tp.m.inflightMemory) >= 8<<20
	})
	// B's request does not fit beside it: B waits, then is refused.
	b := resptest.Dial(t, tp.Addr)
	go b.TryWrite(req) // (not all read: the proxy answers and closes first)
	v := b.ReadTimeout(5 * time.Second)
	if !v.IsError() || !strings.Contains(v.Str, "TRYAGAIN") || !strings.Contains(v.Str, "MAX_INFLIGHT_MEMORY") {
		t.Fatalf("B: %s, want TRYAGAIN naming REDIS_PROXY_MAX_INFLIGHT_MEMORY", v)
	}
	b.ExpectClosed(2 * time.Second)
	// C waits while A finishes, then runs.
	c := resptest.Dial(t, tp.Addr)
	go c.TryWrite(req)
	time.Sleep(300 * time.Millisecond)
	a.Write(req[len(req)/2:])
	resptest.Expect(t, a.ReadTimeout(10*time.Second), "OK")
	resptest.Expect(t, a.Do("PING"), "PONG") // A's room goes back
	resptest.Expect(t, c.ReadTimeout(10*time.Second), "OK")
}
