package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// One write that starts stateless (on an event loop), turns stateful in the
// middle (MULTI, SELECT: the client moves to a goroutine with the rest of
// the bytes) and goes on: every reply arrives, in order.
func TestLoopHandOffMidPipeline(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	other := resptest.Dial(t, tp.Addr)
	c := resptest.Dial(t, tp.Addr)
	c.Write(resptest.Cmds(
		[]string{"SET", "ho:k", "1"},
		[]string{"GET", "ho:k"},
		[]string{"PING"},
		[]string{"MULTI"},
		[]string{"INCR", "ho:k"},
		[]string{"EXEC"},
		[]string{"GET", "ho:k"},
		[]string{"SELECT", "1"},
		[]string{"SET", "ho:k", "db1"},
		[]string{"GET", "ho:k"},
		[]string{"SELECT", "0"},
		[]string{"GET", "ho:k"},
	))
	for i, want := range []string{"OK", `"1"`, "PONG", "OK", "QUEUED", "[2]", `"2"`, "OK", "OK", `"db1"`, "OK", `"2"`} {
		if got := c.Read().String(); got != want {
			t.Fatalf("reply %d = %s, want %s", i, got, want)
		}
	}
	// The client goes on after the hand-off, and the other one was not
	// disturbed.
	resptest.Expect(t, c.Do("GET", "ho:k"), `"2"`)
	resptest.Expect(t, other.Do("GET", "ho:k"), `"2"`)
}

// With reads on replicas, a pipeline that alternates writes (master) and
// reads (replica) is answered in order: a command for another server waits
// for the replies owed before it.
func TestLoopMixedServersKeepOrder(t *testing.T) {
	t.Parallel()
	m := redistest.Start(t)
	rep := redistest.Start(t)
	rep.ReplicaOf(m)
	if _, err := m.Do("SET", "mx:r", "replica-value"); err != nil {
		t.Fatal(err)
	}
	expectReplicated(t, "mx:r", rep)
	tp := startProxy(t, Config{ReadFrom: ReadFromReplicas}, m.Addr, rep.Addr)
	c := resptest.Dial(t, tp.Addr)
	var cmds [][]string
	var want []string
	for i := 0; i < 50; i++ {
		cmds = append(cmds, []string{"INCR", "mx:w"}, []string{"GET", "mx:r"}, []string{"ECHO", "e"})
		want = append(want, strconv.Itoa(i+1), `"replica-value"`, `"e"`)
	}
	c.Write(resptest.Cmds(cmds...))
	for i, w := range want {
		if got := c.Read().String(); got != w {
			t.Fatalf("reply %d to %v = %s, want %s", i, cmds[i], got, w)
		}
	}
}

// A client that sends its commands and then shuts down its side (as
// `printf ... | nc` does) gets every reply, then the connection closes: as
// on Redis, and as before the event loop.
func TestLoopHalfCloseAnswersWhatWasSent(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	var cmds [][]string
	for i := 0; i < 100; i++ {
		cmds = append(cmds, []string{"INCR", "hc:n"})
	}
	c.Write(resptest.Cmds(cmds...))
	if err := c.NetConn().(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if got := c.Read().String(); got != strconv.Itoa(i+1) {
			t.Fatalf("reply %d = %s, want %d", i, got, i+1)
		}
	}
	c.ExpectClosed(2 * time.Second)
}

// A client that turns stateful while the replies before it are still
// waiting for a slow reader to take them is handed over once they are
// written, and then answered.
func TestLoopHandOffWaitsForOutput(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	setup := resptest.Dial(t, tp.Addr)
	big := strings.Repeat("v", 64<<10)
	resptest.Expect(t, setup.Do("SET", "hw:big", big), "OK")
	c := resptest.Dial(t, tp.Addr)
	var cmds [][]string
	for i := 0; i < 200; i++ { // 12.5 MiB of replies: more than the socket buffers hold
		cmds = append(cmds, []string{"GET", "hw:big"})
	}
	cmds = append(cmds, []string{"MULTI"}, []string{"INCR", "hw:n"}, []string{"EXEC"})
	c.Write(resptest.Cmds(cmds...))
	time.Sleep(200 * time.Millisecond) // let the proxy fill the socket and stall
	for i := 0; i < 200; i++ {
		if v := c.Read(); len(v.String()) < len(big) {
			t.Fatalf("reply %d: %.40s, want the big value", i, v.String())
		}
	}
	resptest.Expect(t, c.Read(), "OK")
	resptest.Expect(t, c.Read(), "QUEUED")
	resptest.Expect(t, c.Read(), "[1]")
}

// One command of a million arguments (13 MB, read in many pieces) costs
// about what it costs on Redis: the proxy parses it once it is whole, not
// again on every read (which took 16 times as long as Redis).
func TestHugeCommandIsParsedOnce(t *testing.T) {
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	const n = 1000000
	sadd := []string{"SADD", "huge"}
	for i := 0; i < n; i++ {
		sadd = append(sadd, "m"+strconv.Itoa(i))
	}
	req := resptest.Cmds(sadd, []string{"DEL", "huge"})
	// Measured: 1.1x on an event loop, 1.2x on the goroutine path (6.6x
	// there with -race); parsing again from the start on every read: 12x.
	asFastAsRedis(t, fmt.Sprintf("%d-argument SADD", n), r.Addr, tp.Addr, req, []byte(":"+strconv.Itoa(n)+"\r\n:1\r\n"))
}

// asFastAsRedis sends req, one huge request, in one write on a new
// connection to Redis at direct and on one to the proxy at proxied, and
// expects want back from each within 60s. It logs how long each took
// (as what), and fails t if the proxy took more than four times as long
// as Redis, and a second: twenty times with the race detector, which
// slows the proxy's own code (parsing above all) and Redis not at all.
func asFastAsRedis(t *testing.T, what, direct, proxied string, req, want []byte) {
	t.Helper()
	send := func(addr string) time.Duration {
		nc := resptest.Dial(t, addr).NetConn()
		nc.SetDeadline(time.Now().Add(60 * time.Second))
		start := time.Now()
		go nc.Write(req)
		got := make([]byte, len(want))
		if n, err := io.ReadFull(nc, got); err != nil {
			t.Fatalf("%s: read after %s: %v", addr, resptest.Quote(got[:n]), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: replies %s, want %s", addr, resptest.Quote(got), resptest.Quote(want))
		}
		return time.Since(start)
	}
	d := send(direct)
	p := send(proxied)
	t.Logf("%s: direct %v, through the proxy %v (%.1fx)", what, d, p, p.Seconds()/d.Seconds())
	bound := time.Duration(4)
	if raceDetector {
		bound = 20
	}
	if p > bound*d+time.Second {
		t.Fatalf("through the proxy %v, direct %v: more than %d times as long", p, d, bound)
	}
}
