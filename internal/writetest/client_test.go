package writetest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// run runs c for d and returns its ops.
func run(c Client, d time.Duration) []Op {
	l := NewLoad()
	rec := &Recorder{}
	l.Go(c, rec)
	time.Sleep(d)
	l.Stop()
	return rec.Ops()
}

func TestClientWritesAndReadsBack(t *testing.T) {
	r := redistest.Start(t)
	ops := run(Client{Addr: r.Addr, Prefix: "w", ReadBack: true, Pace: 5 * time.Millisecond}, 300*time.Millisecond)
	if len(ops) < 20 || len(ops) > 2*(300/5+1) {
		t.Fatalf("%d ops in 300ms at one round every 5ms", len(ops))
	}
	for i, o := range ops {
		want := fmt.Sprintf("w:%d", i/2+1)
		cmd := []string{"SET", "GET"}[i%2]
		if o.Err != nil || o.Cmd != cmd || o.Key != want || o.Value != want || o.Done.Before(o.Sent) {
			t.Fatalf("op %d = %+v, want an acknowledged %s of %s", i, o, cmd, want)
		}
		if i >= 2 && i%2 == 0 && o.Sent.Sub(ops[i-2].Sent) < 5*time.Millisecond {
			t.Errorf("round %d began %v after the one before, want at least Pace (5ms)", i/2, o.Sent.Sub(ops[i-2].Sent))
		}
	}
	rb, err := ReadBack(r.Addr, AckedWrites(ops))
	if err != nil || len(rb.Lost()) != 0 {
		t.Errorf("ReadBack of what the client wrote: %+v %v", rb, err)
	}
}

func TestClientPipeline(t *testing.T) {
	r := redistest.Start(t)
	ops := run(Client{Addr: r.Addr, Prefix: "p", Batch: 10}, 100*time.Millisecond)
	if len(ops) < 10 || len(ops)%10 != 0 || len(Failed(ops)) > 0 {
		t.Fatalf("%d ops, %d failed: want whole batches of 10, all acknowledged", len(ops), len(Failed(ops)))
	}
	for i, o := range ops {
		if o.Cmd != "SET" || o.Key != fmt.Sprintf("p:%d", i+1) || !o.Sent.Equal(ops[i-i%10].Sent) {
			t.Fatalf("op %d = %+v: want SET p:%d, sent with its batch", i, o, i+1)
		}
	}
	if n, err := r.Do("DBSIZE"); err != nil || n != int64(len(ops)) {
		t.Errorf("DBSIZE = %v %v, want %d", n, err, len(ops))
	}
}

func TestClientReader(t *testing.T) {
	r := redistest.Start(t)
	if _, err := r.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	ops := run(Client{Addr: r.Addr, Key: "k", Want: "v"}, 50*time.Millisecond)
	if len(ops) == 0 || len(Acked(ops)) != len(ops) || ops[0].Cmd != "GET" || ops[0].Key != "k" {
		t.Errorf("reader: %d ops, %d acknowledged, first %+v", len(ops), len(Acked(ops)), ops[0])
	}
	ops = run(Client{Addr: r.Addr, Key: "k", Want: "other"}, 20*time.Millisecond)
	if len(ops) == 0 || !ops[0].Stale() || !strings.Contains(ops[0].Err.Error(), `"v"`) {
		t.Errorf("reader expecting another value: %+v", ops)
	}
	// A key that is not there is stale too (a write acknowledged, then
	// lost), not an error of some other kind.
	ops = run(Client{Addr: r.Addr, Key: "missing", Want: "v"}, 20*time.Millisecond)
	if len(ops) == 0 || !ops[0].Stale() || !strings.Contains(ops[0].Err.Error(), "nil") {
		t.Errorf("reader of a missing key: %+v", ops)
	}
}

// fakeServer answers the n-th command of its c-th connection (both from 1)
// with reply(c, n); "" hangs up instead. It counts the connections.
func fakeServer(t *testing.T, reply func(conn, n int) string) (addr string, conns *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = &atomic.Int32{}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := int(conns.Add(1))
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for n := 1; ; n++ {
					if _, err := resptest.ReadValue(br); err != nil {
						return
					}
					out := reply(c, n)
					if out == "" {
						return
					}
					io.WriteString(nc, out)
				}
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// An error reply keeps the connection; a transport error drops it, and
// the next round dials again, after Retry.
func TestClientRedial(t *testing.T) {
	addr, conns := fakeServer(t, func(c, n int) string {
		switch {
		case c == 1 && n == 1:
			return "-TRYAGAIN no master\r\n"
		case c == 1 && n == 3:
			return "" // hang up
		}
		return "+OK\r\n"
	})
	ops := run(Client{Addr: addr, Prefix: "r", Retry: 30 * time.Millisecond}, 150*time.Millisecond)
	if len(ops) < 4 {
		t.Fatalf("%d ops: %+v", len(ops), ops)
	}
	if !strings.HasPrefix(fmt.Sprint(ops[0].Err), "TRYAGAIN") || ops[1].Err != nil || ops[2].Err == nil || ops[3].Err != nil {
		t.Fatalf("ops: %v / %v / %v / %v; want TRYAGAIN, OK, a transport error, OK", ops[0].Err, ops[1].Err, ops[2].Err, ops[3].Err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: one kept after the error reply, one after the hang-up", n)
	}
	for _, i := range []int{1, 3} {
		if d := ops[i].Sent.Sub(ops[i-1].Done); d < 30*time.Millisecond {
			t.Errorf("op %d began %v after a failure, want at least Retry (30ms)", i, d)
		}
	}
	if failed := Failed(ops); len(failed) != 2 {
		t.Errorf("%d failed ops, want 2: %s", len(failed), Describe(failed, ops[0].Sent))
	}
}

// A pipeline cut short: every SET after the break fails with the same
// transport error.
func TestClientPipelineBroken(t *testing.T) {
	addr, _ := fakeServer(t, func(c, n int) string {
		if c == 1 && n == 3 {
			return ""
		}
		return "+OK\r\n"
	})
	ops := run(Client{Addr: addr, Prefix: "b", Batch: 5, Retry: time.Second}, 50*time.Millisecond)
	if len(ops) != 5 {
		t.Fatalf("%d ops, want one batch of 5 (then Retry holds the next back)", len(ops))
	}
	errs := make([]string, 5)
	for i, o := range ops {
		errs[i] = fmt.Sprint(o.Err)
	}
	if errs[0] != "<nil>" || errs[1] != "<nil>" || errs[2] == "<nil>" || errs[3] != errs[2] || errs[4] != errs[2] {
		t.Errorf("pipeline errors %q: want 2 acknowledged, then the same error for the rest", errs)
	}
}

func TestClientDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ops := run(Client{Addr: addr, Prefix: "d", Retry: 20 * time.Millisecond}, 110*time.Millisecond)
	if len(ops) < 2 || len(ops) > 7 {
		t.Fatalf("%d dial attempts in 110ms, 20ms apart", len(ops))
	}
	for i, o := range ops {
		if o.Cmd != "dial" || o.Err == nil || o.Key != "" {
			t.Errorf("op %d = %+v, want a failed dial", i, o)
		}
	}
}

// Stop waits for the clients; no op comes after it; it may be called again.
func TestLoadStop(t *testing.T) {
	r := redistest.Start(t)
	l := NewLoad()
	rec := &Recorder{}
	l.Go(Client{Addr: r.Addr, Prefix: "a"}, rec)
	l.Go(Client{Addr: r.Addr, Prefix: "b"}, rec)
	time.Sleep(50 * time.Millisecond)
	l.Stop()
	stopped := time.Now()
	n := len(rec.Ops())
	time.Sleep(20 * time.Millisecond)
	l.Stop()
	ops := rec.Ops()
	if len(ops) != n || slices.ContainsFunc(ops, func(o Op) bool { return o.Done.After(stopped) }) {
		t.Errorf("ops after Stop")
	}
	if !slices.ContainsFunc(ops, func(o Op) bool { return strings.HasPrefix(o.Key, "a:") }) ||
		!slices.ContainsFunc(ops, func(o Op) bool { return strings.HasPrefix(o.Key, "b:") }) {
		t.Errorf("both clients should have written into the shared recorder")
	}
	// A context that ends stops Run itself.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	Client{Addr: r.Addr, Prefix: "c"}.Run(ctx, func(Op) {})
}

func TestReadBack(t *testing.T) {
	r := redistest.Start(t)
	conn := r.Dial()
	want := map[string]string{}
	for i := range 1200 {
		k := fmt.Sprintf("k:%04d", i)
		want[k] = k
		conn.Send("SET", k, k)
	}
	if _, err := conn.Do(""); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k:0007", "k:0600"} {
		r.Do("DEL", k)
	}
	r.Do("SET", "k:1100", "other")
	want["never"] = "never"
	rb, err := ReadBack(r.Addr, want)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rb.Missing, []string{"k:0007", "k:0600", "never"}) || !slices.Equal(rb.Mismatched, []string{"k:1100"}) {
		t.Errorf("ReadBack = %+v", rb)
	}
	if got := rb.Lost(); !slices.Equal(got, []string{"k:0007", "k:0600", "k:1100", "never"}) {
		t.Errorf("Lost = %v", got)
	}
	if rb, err := ReadBack(r.Addr, nil); err != nil || len(rb.Lost()) != 0 {
		t.Errorf("ReadBack of nothing: %+v %v", rb, err)
	}
}
