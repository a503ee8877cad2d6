package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// With WriteAcks, a write's reply comes once a replica has it; when none
// confirms it in time the client gets NOTREPLICATED (the write is on the
// master), and a read of another client is not held meanwhile.
func TestWriteAcks(t *testing.T) {
	t.Parallel()
	m, r := ackingPair(t)
	tp := startProxy(t, Config{WriteAcks: 1, WriteAckTimeout: 500 * time.Millisecond}, m.Addr, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("SET", "ack:k", "1"), "OK")
	// Acknowledged: the replica has it already.
	if v, err := r.Do("GET", "ack:k"); err != nil || string(v.([]byte)) != "1" {
		t.Fatalf("the replica's ack:k after an acknowledged SET: %v %v", v, err)
	}
	// A pipeline: writes and reads, replies in order.
	got, err := c.Pipeline(resptest.Cmds([]string{"SET", "ack:a", "1"}, []string{"GET", "ack:a"}, []string{"INCR", "ack:n"}, []string{"GET", "ack:n"}), 4, 5*time.Second)
	if err != nil || strings.Join(toStrings(got), "|") != "+OK\r\n|$1\r\n1\r\n|:1\r\n|$1\r\n1\r\n" {
		t.Fatalf("pipeline: %q %v", got, err)
	}
	// A transaction: EXEC's reply waits, +QUEUED do not change.
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("INCR", "ack:n"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), "[2]")

	// The replica stops: writes get the error within the timeout.
	r.Pause()
	defer r.Resume()
	other := resptest.Dial(t, tp.Addr)
	start := time.Now()
	c.Send("SET", "ack:k", "2")
	c.Send("GET", "ack:k")
	// Another client's read is not held behind it.
	resptest.Expect(t, other.Do("GET", "ack:a"), `"1"`)
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("another client's read took %v while a write waited for the replica", d)
	}
	v := c.ReadTimeout(3 * time.Second)
	took := time.Since(start)
	if !v.IsError() || !strings.HasPrefix(v.Str, "NOTREPLICATED") {
		t.Fatalf("SET with the replica paused: %v, want NOTREPLICATED", v)
	}
	t.Logf("NOTREPLICATED after %v (timeout 500ms): %s", took.Round(time.Millisecond), v.Str)
	if took < 450*time.Millisecond || took > 2*time.Second {
		t.Errorf("NOTREPLICATED after %v, want about the 500ms timeout", took)
	}
	// The write is on the master; the GET behind it says so, in order.
	resptest.Expect(t, c.ReadTimeout(time.Second), `"2"`)
	// Reads alone are not held.
	resptest.Expect(t, c.Do("GET", "ack:k"), `"2"`)
}

// With fewer replicas linked than WriteAcks, writes fail at once.
func TestWriteAcksNoReplica(t *testing.T) {
	t.Parallel()
	m := redistest.Start(t)
	tp := startProxy(t, Config{WriteAcks: 1, WriteAckTimeout: 5 * time.Second}, m.Addr)
	c := resptest.Dial(t, tp.Addr)
	start := time.Now()
	v := c.Do("SET", "ack:k", "1")
	if !v.IsError() || !strings.HasPrefix(v.Str, "NOTREPLICATED") || time.Since(start) > time.Second {
		t.Fatalf("SET with no replica: %v after %v, want NOTREPLICATED at once", v, time.Since(start))
	}
	resptest.Expect(t, c.Do("GET", "ack:k"), `"1"`)
	// Replies left out would leave the held ones unplaceable: refused.
	if v := c.Do("CLIENT", "REPLY", "OFF"); !v.IsError() || !strings.Contains(v.Str, "WRITE_ACKS") {
		t.Errorf("CLIENT REPLY OFF with durable writes: %v, want refused", v)
	}
	resptest.Expect(t, c.Do("CLIENT", "REPLY", "ON"), "OK")
}

// ackingPair starts a master and a replica that acknowledges its writes.
// (After a full sync Redis may hold the stream back until the replica's
// first acknowledgement.)
func ackingPair(t *testing.T) (m, r *redistest.Server) {
	t.Helper()
	m, r = redistest.Start(t), redistest.Start(t)
	r.ReplicaOf(m)
	warm := m.Dial()
	poll.Until(t, 10*time.Second, "the replica acknowledging writes", func() bool {
		if _, err := warm.Do("SET", "ack:warm", "1"); err != nil {
			return false
		}
		v, err := warm.Do("WAIT", "1", "100")
		return err == nil && v.(int64) == 1
	})
	return m, r
}

func toStrings(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

// Durable writes in a tunnel: a RESP3 session (HELLO 3) and a blocking
// write (BLMOVE) get their replies only once the replica has the write, or
// NOTREPLICATED; pushes (client-side caching invalidations) still come.
func TestWriteAcksTunnel(t *testing.T) {
	t.Parallel()
	m, r := ackingPair(t)
	tp := startProxy(t, Config{WriteAcks: 1, WriteAckTimeout: 500 * time.Millisecond}, m.Addr, r.Addr)

	c := resptest.Dial(t, tp.Addr)
	if v := c.Do("HELLO", "3"); v.Type != '%' {
		t.Fatalf("HELLO 3: %v", v)
	}
	resptest.Expect(t, c.Do("SET", "t:k", "1"), "OK")
	resptest.Expect(t, c.Do("CLIENT", "TRACKING", "on"), "OK")
	resptest.Expect(t, c.Do("GET", "t:k"), `"1"`)
	// A pipeline: a write, a read, a write; then another client's write
	// makes an invalidation push.
	got, err := c.Pipeline(resptest.Cmds([]string{"SET", "t:a", "1"}, []string{"GET", "t:a"}, []string{"INCR", "t:n"}), 3, 5*time.Second)
	if err != nil || strings.Join(toStrings(got), "|") != "+OK\r\n|$1\r\n1\r\n|:1\r\n" {
		t.Fatalf("pipeline in RESP3: %q %v", got, err)
	}
	other := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, other.Do("SET", "t:k", "2"), "OK")
	if push := c.ReadTimeout(2 * time.Second); push.Type != '>' {
		t.Fatalf("expected an invalidation push, got %v", push)
	}
	// A blocking write on a connection of its own.
	b := resptest.Dial(t, tp.Addr)
	b.Send("BLMOVE", "t:src", "t:dst", "LEFT", "RIGHT", "0")
	stWaitBlocked(t, m, 1)
	resptest.Expect(t, other.Do("RPUSH", "t:src", "x"), "1")
	resptest.Expect(t, b.ReadTimeout(2*time.Second), `"x"`)
	if v, err := r.Do("LRANGE", "t:dst", "0", "-1"); err != nil || len(v.([]any)) != 1 {
		t.Fatalf("the replica's t:dst once BLMOVE answered: %v %v", v, err)
	}

	// The replica stops: the RESP3 session's write gets the error.
	r.Pause()
	defer r.Resume()
	start := time.Now()
	v := c.DoTimeout(3*time.Second, "SET", "t:k", "3")
	if !v.IsError() || !strings.HasPrefix(v.Str, "NOTREPLICATED") {
		t.Fatalf("SET in RESP3 with the replica paused: %v, want NOTREPLICATED", v)
	}
	t.Logf("RESP3 session: NOTREPLICATED after %v", time.Since(start).Round(time.Millisecond))
	resptest.Expect(t, c.Do("GET", "t:k"), `"3"`)
}
