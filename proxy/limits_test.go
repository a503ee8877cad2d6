package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// Commands the proxy refuses, read/write splitting, and the limits that
// protect the proxy and its other clients from one client.

// --- refused commands --------------------------------------------------------

// stRefused are commands that would change the managed replication
// topology (or stop the server); the proxy must answer them with an error
// and never forward them.
var stRefused = [][]string{
	{"REPLICAOF", "127.0.0.1", "1"},
	{"replicaof", "NO", "ONE"},
	{"SLAVEOF", "127.0.0.1", "1"},
	{"FAILOVER"},
	{"SHUTDOWN", "NOSAVE"},
	{"SYNC"},
	{"PSYNC", "?", "-1"},
	{"CONFIG", "SET", "replica-priority", "5"},
	{"CONFIG", "SET", "slave-priority", "5"},
	{"CONFIG", "SET", "masterauth", "x"},
	{"config", "set", "MASTERUSER", "x"},
	{"CONFIG", "SET", "replica-read-only", "no"},
	{"CONFIG", "SET", "maxmemory-policy", "allkeys-lru", "replica-priority", "5"},
}

// stAssertTopologyUntouched checks on Redis directly that none of
// stRefused took effect.
func stAssertTopologyUntouched(t *testing.T, r *redistest.Server) {
	t.Helper()
	v, err := r.Do("ROLE")
	if err != nil {
		t.Fatalf("ROLE on %s: %v (was it shut down?)", r.Addr, err)
	}
	role, _ := v.([]any)
	if len(role) == 0 || string(role[0].([]byte)) != "master" {
		t.Fatalf("ROLE on %s = %v, want master", r.Addr, v)
	}
	direct := stDial(t, r.Addr)
	stExpect(t, direct.do("CONFIG", "GET", "replica-priority"), `["replica-priority","100"]`)
	stExpect(t, direct.do("CONFIG", "GET", "masterauth"), `["masterauth",""]`)
	stExpect(t, direct.do("CONFIG", "GET", "masteruser"), `["masteruser",""]`)
	stExpect(t, direct.do("CONFIG", "GET", "replica-read-only"), `["replica-read-only","yes"]`)
	stExpect(t, direct.do("CONFIG", "GET", "maxmemory-policy"), `["maxmemory-policy","noeviction"]`)
	if n := stInfoInt(t, r, "replication", "connected_slaves"); n != 0 {
		t.Fatalf("%s has %d replicas after SYNC/PSYNC through the proxy", r.Addr, n)
	}
}

func stExpectRefused(t *testing.T, v stValue, cmd []string) {
	t.Helper()
	if v.typ != '-' || !strings.HasPrefix(v.str, "ERR ") || !strings.Contains(v.str, "refused") {
		t.Fatalf("%q: reply %s, want an ERR ... refused error", cmd, v)
	}
}

func TestRefusedCommandsLeaveServerUntouched(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	for _, cmd := range stRefused {
		stExpectRefused(t, c.do(cmd...), cmd)
	}
	stAssertTopologyUntouched(t, r)
	// Harmless CONFIG SET goes through.
	stExpect(t, c.do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"), "OK")
	stExpect(t, stDial(t, r.Addr).do("CONFIG", "GET", "maxmemory-policy"), `["maxmemory-policy","allkeys-lru"]`)
	// The session is still usable, and refused commands pipelined with
	// others keep their place in the reply order.
	c.write(stCmds([]string{"SET", "ref:k", "1"}, []string{"REPLICAOF", "127.0.0.1", "1"}, []string{"INCR", "ref:k"}))
	stExpect(t, c.read(), "OK")
	stExpectRefused(t, c.read(), []string{"REPLICAOF"})
	stExpect(t, c.read(), "2")
	v, err := r.Do("ROLE")
	if err != nil || string(v.([]any)[0].([]byte)) != "master" {
		t.Fatalf("ROLE after the pipeline: %v %v", v, err)
	}
}

func TestRefusedCommandsInsideMulti(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("MULTI"), "OK")
	for _, cmd := range stRefused {
		stExpectRefused(t, c.do(cmd...), cmd)
	}
	if v := c.do("EXEC"); v.typ != '*' && v.typ != '-' {
		t.Fatalf("EXEC: %s", v)
	}
	stAssertTopologyUntouched(t, r)
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after EXEC = %d, want 0", n)
	}
}

// A command rejected while queueing makes Redis discard the whole
// transaction at EXEC (EXECABORT). A command the proxy refuses inside MULTI
// is rejected while queueing too, so the other queued commands must not run.
func TestRefusedCommandInsideMultiAbortsTransaction(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("SET", "rma:k", "1"), "QUEUED")
	stExpectRefused(t, c.do("REPLICAOF", "127.0.0.1", "1"), []string{"REPLICAOF"})
	stExpect(t, c.do("EXEC"), "(error) EXECABORT Transaction discarded because of previous errors.")
	stExpect(t, stDial(t, r.Addr).do("GET", "rma:k"), "<nil>")
}

func TestRefusedCommandsInTunnel(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	// A blocking command turns the session into a tunnel for good.
	stExpect(t, c.readAfter(3*time.Second, "BLPOP", "tun:none", "0.1"), "<nil>")
	for _, cmd := range stRefused {
		stExpectRefused(t, c.do(cmd...), cmd)
	}
	stAssertTopologyUntouched(t, r)
	c.write(stCmds([]string{"SET", "tun:k", "1"}, []string{"SLAVEOF", "127.0.0.1", "1"}, []string{"INCR", "tun:k"}))
	stExpect(t, c.read(), "OK")
	stExpectRefused(t, c.read(), []string{"SLAVEOF"})
	stExpect(t, c.read(), "2")
	stExpect(t, c.do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"), "OK")
}

// --- read/write splitting ----------------------------------------------------

func TestReadFromReplicasSplitsReadsAndWrites(t *testing.T) {
	t.Parallel()
	m := redistest.Start(t)
	r1 := redistest.Start(t)
	r2 := redistest.Start(t)
	r1.ReplicaOf(m)
	r2.ReplicaOf(m)
	tp := startProxy(t, Config{ReadFrom: ReadFromReplicas}, m.Addr, r1.Addr, r2.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("SET", "rw:k", "v"), "OK")
	expectReplicated(t, "rw:k", r1, r2)
	servers := []*redistest.Server{m, r1, r2}
	resetStats := func() {
		for _, s := range servers {
			if _, err := s.Do("CONFIG", "RESETSTAT"); err != nil {
				t.Fatalf("CONFIG RESETSTAT: %v", err)
			}
		}
	}
	expectGets := func(what string, want ...int64) {
		t.Helper()
		for i, s := range servers {
			if got := stCmdStat(t, s, "get"); got != want[i] {
				t.Fatalf("%s: GET calls on %s (%s) = %d, want %d", what, s.Addr, []string{"master", "replica1", "replica2"}[i], got, want[i])
			}
		}
	}
	resetStats()
	for i := 0; i < 10; i++ {
		stExpect(t, c.do("GET", "rw:k"), `"v"`)
	}
	expectGets("10 sequential GETs", 0, 5, 5)
	// A pipeline's reads go to one replica, in one write, replies in
	// order; the next pipeline takes the next replica.
	var pipe [][]string
	for i := 0; i < 10; i++ {
		pipe = append(pipe, []string{"GET", "rw:k"})
	}
	for round := 0; round < 2; round++ {
		c.write(stCmds(pipe...))
		for i := 0; i < 10; i++ {
			stExpect(t, c.read(), `"v"`)
		}
	}
	expectGets("2 pipelines of 10 GETs", 0, 15, 15)

	for i := 0; i < 4; i++ {
		stExpect(t, c.do("SET", "rw:w"+strconv.Itoa(i), "x"), "OK")
	}
	if n := stCmdStat(t, m, "set"); n != 4 {
		t.Fatalf("SET calls on the master = %d, want 4", n)
	}
	// Inside a transaction everything goes to the master.
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("GET", "rw:k"), "QUEUED")
	stExpect(t, c.do("GET", "rw:w0"), "QUEUED")
	stExpect(t, c.do("EXEC"), `["v","x"]`)
	expectGets("GETs inside MULTI", 2, 15, 15)
	// So does a read while a WATCH holds the connection.
	stExpect(t, c.do("WATCH", "rw:k"), "OK")
	stExpect(t, c.do("GET", "rw:k"), `"v"`)
	stExpect(t, c.do("UNWATCH"), "OK")
	expectGets("GET under WATCH", 3, 15, 15)

	// With no replica in the topology, reads go to the master.
	solo := redistest.Start(t)
	tp2 := startProxy(t, Config{ReadFrom: ReadFromReplicas}, solo.Addr)
	c2 := stDial(t, tp2.Addr)
	stExpect(t, c2.do("SET", "rw:k", "solo"), "OK")
	for i := 0; i < 6; i++ {
		stExpect(t, c2.do("GET", "rw:k"), `"solo"`)
	}
	if n := stCmdStat(t, solo, "get"); n != 6 {
		t.Fatalf("GET calls on the only server = %d, want 6", n)
	}
}

// A SCAN iteration through the proxy must return every key that exists for
// its whole duration, as on one Redis: its cursor only means something on
// the server that produced it.
func TestReadFromReplicasScanIterationComplete(t *testing.T) {
	t.Parallel()
	m := redistest.Start(t)
	r1 := redistest.Start(t)
	r2 := redistest.Start(t)
	r1.ReplicaOf(m)
	r2.ReplicaOf(m)
	tp := startProxy(t, Config{ReadFrom: ReadFromReplicas}, m.Addr, r1.Addr, r2.Addr)
	c := stDial(t, tp.Addr)
	const n = 1000
	var pipe [][]string
	for i := 0; i < n; i++ {
		pipe = append(pipe, []string{"SET", "scan:" + strconv.Itoa(i), "v"})
	}
	c.write(stCmds(pipe...))
	for i := 0; i < n; i++ {
		stExpect(t, c.read(), "OK")
	}
	for _, rep := range []*redistest.Server{r1, r2} {
		stEventually(t, 5*time.Second, "keys replicated to "+rep.Addr, func() bool {
			v, err := rep.Do("DBSIZE")
			return err == nil && v.(int64) == n
		})
	}
	seen := map[string]bool{}
	cursor := "0"
	for calls := 0; ; calls++ {
		if calls > 10*n {
			t.Fatalf("SCAN did not finish")
		}
		v := c.do("SCAN", cursor, "COUNT", "10")
		if v.typ != '*' || len(v.elems) != 2 {
			t.Fatalf("SCAN reply %s", v)
		}
		for _, k := range v.elems[1].elems {
			seen[k.str] = true
		}
		cursor = v.elems[0].str
		if cursor == "0" {
			break
		}
	}
	if len(seen) != n {
		t.Fatalf("a full SCAN iteration through the proxy returned %d of the %d keys", len(seen), n)
	}
}

// --- protocol limits ---------------------------------------------------------

// stGoodClient pipelines SET/GET pairs on its own connection until stop is
// closed, checking every reply.
func stGoodClient(t *testing.T, addr string, stop <-chan struct{}) *stLatencies {
	c := stDial(t, addr)
	stExpect(t, c.do("PING"), "PONG") // accepted and counted before it starts
	return stMeasure(stop, func(i int) error {
		var req []byte
		for j := 0; j < 10; j++ {
			req = append(req, stCmd("SET", fmt.Sprintf("good:%d", j), strconv.Itoa(i))...)
			req = append(req, stCmd("GET", fmt.Sprintf("good:%d", j))...)
		}
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.nc.Write(req); err != nil {
			return err
		}
		for j := 0; j < 10; j++ {
			v, err := c.tryRead(5 * time.Second)
			if err != nil || v.String() != "OK" {
				return fmt.Errorf("SET reply %s %v", v, err)
			}
			v, err = c.tryRead(5 * time.Second)
			if err != nil || v.str != strconv.Itoa(i) {
				return fmt.Errorf("GET reply %s %v, want %d", v, err, i)
			}
		}
		return nil
	})
}

// stUntilEOF writes raw to a new connection and returns what comes back
// until the server closes it (failing after d).
func stUntilEOF(t *testing.T, addr string, raw string, d time.Duration) []byte {
	t.Helper()
	c := stDial(t, addr)
	c.write([]byte(raw))
	return c.expectClosed(d)
}

func TestMalformedRequestGetsProtocolErrorAndClose(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	stop := make(chan struct{})
	good := stGoodClient(t, tp.Addr, stop)
	for _, raw := range []string{"*1\r\n$x\r\n", "*2\r\n$3\r\nGET\r\n:1\r\n"} {
		want := stUntilEOF(t, r.Addr, raw, 2*time.Second)
		got := stUntilEOF(t, tp.Addr, raw, 2*time.Second)
		if !bytes.HasPrefix(got, []byte("-ERR Protocol error")) {
			t.Fatalf("%q: proxy answered %q, want ERR Protocol error... and a close", raw, got)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: proxy answered %q, Redis %q", raw, got, want)
		}
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	worst, calls, err := good.result()
	if err != nil || calls == 0 {
		t.Fatalf("the other client's pipeline: %d rounds, error %v", calls, err)
	}
	t.Logf("other client: %d pipelined rounds, worst %v", calls, worst)
}

// Redis answers the complete requests that came before a malformed one in
// the same read, then the protocol error.
func TestMalformedRequestAfterValidCommandsLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	raw := "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$5\r\nmal:k\r\n$1\r\nv\r\n*1\r\n$x\r\n"
	want := stUntilEOF(t, r.Addr, raw, 2*time.Second)
	got := stUntilEOF(t, tp.Addr, raw, 2*time.Second)
	if !bytes.Equal(got, want) {
		t.Fatalf("proxy answered %q, Redis %q", got, want)
	}
}

func TestOversizedBulkRefusedBeforeBody(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{MaxBulk: 1024}, r.Addr)

	c := stDial(t, tp.Addr)
	val := strings.Repeat("x", 1024)
	stExpect(t, c.do("SET", "bulk:ok", val), "OK")
	stExpect(t, c.do("GET", "bulk:ok"), strconv.Quote(val))

	// Only the header of the oversized argument is sent: the error must
	// come without waiting for the 2048 bytes.
	big := stDial(t, tp.Addr)
	big.write([]byte("*3\r\n$3\r\nSET\r\n$8\r\nbulk:big\r\n$2048\r\n"))
	v := big.readTimeout(2 * time.Second)
	stExpect(t, v, "(error) ERR Protocol error: invalid bulk length")
	big.expectClosed(2 * time.Second)

	// Requests before it in the same write are answered first.
	mixed := stDial(t, tp.Addr)
	mixed.write(append(stCmd("PING"), "*3\r\n$3\r\nSET\r\n$8\r\nbulk:big\r\n$2048\r\n"...))
	stExpect(t, mixed.readTimeout(2*time.Second), "PONG")
	stExpect(t, mixed.readTimeout(2*time.Second), "(error) ERR Protocol error: invalid bulk length")
	mixed.expectClosed(2 * time.Second)
	stExpect(t, c.do("EXISTS", "bulk:big"), "0")

	// The same header against Redis's own limit gives the same bytes.
	ref := redistest.Start(t, "--proto-max-bulk-len", "1048576")
	tp2 := startProxy(t, Config{MaxBulk: 1 << 20}, r.Addr)
	hdr := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n"
	want := stUntilEOF(t, ref.Addr, hdr, 2*time.Second)
	got := stUntilEOF(t, tp2.Addr, hdr, 2*time.Second)
	if !bytes.Equal(got, want) {
		t.Fatalf("oversized header: proxy %q, Redis %q", got, want)
	}
}

func TestMaxClients(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{MaxClients: 3}, r.Addr)
	var conns []*stConn
	for i := 0; i < 3; i++ {
		c := stDial(t, tp.Addr)
		stExpect(t, c.do("PING"), "PONG")
		conns = append(conns, c)
	}
	got := stUntilEOF(t, tp.Addr, "", 2*time.Second)
	if string(got) != "-ERR max number of clients reached\r\n" {
		t.Fatalf("4th client got %q, want Redis's max clients error and a close", got)
	}
	for _, c := range conns {
		stExpect(t, c.do("PING"), "PONG")
	}
	conns[0].close()
	stEventually(t, 2*time.Second, "client count back to 2", func() bool { return tp.clients.Load() == 2 })
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("PING"), "PONG")
}

// stDialSmallBuffer opens a client connection with a small receive buffer,
// so a client that does not read stops the proxy's writes quickly.
func stDialSmallBuffer(t *testing.T, addr string) *stConn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	nc.(*net.TCPConn).SetReadBuffer(4096)
	t.Cleanup(func() { nc.Close() })
	return &stConn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
}

func TestMaxOutputDisconnectsNonReadingClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	const writeTimeout = 10 * time.Second
	tp := startProxy(t, Config{MaxOutput: 1 << 20, WriteTimeout: writeTimeout}, r.Addr)
	setup := stDial(t, tp.Addr)
	big := strings.Repeat("v", 64<<10)
	stExpect(t, setup.do("SET", "mo:big", big), "OK")

	stop := make(chan struct{})
	good := stGoodClient(t, tp.Addr, stop)
	base := tp.clients.Load()

	bad := stDialSmallBuffer(t, tp.Addr)
	stEventually(t, 2*time.Second, "the client accepted", func() bool { return tp.clients.Load() == base+1 })
	const n = 200 // 200 x 64 KiB = 12.5 MiB of replies
	var pipe [][]string
	for i := 0; i < n; i++ {
		pipe = append(pipe, []string{"GET", "mo:big"})
	}
	start := time.Now()
	bad.write(stCmds(pipe...))
	stEventually(t, 3*time.Second, "the non-reading client disconnected", func() bool { return tp.clients.Load() == base })
	t.Logf("dropped after %v", time.Since(start))
	got := bad.expectClosed(3 * time.Second)
	if replies := bytes.Count(got, []byte("$65536\r\n")); replies >= n {
		t.Fatalf("the client got all %d replies; it should have been cut off", replies)
	}

	time.Sleep(50 * time.Millisecond)
	close(stop)
	worst, calls, err := good.result()
	t.Logf("other client: %d rounds, worst %v", calls, worst)
	if err != nil || calls == 0 {
		t.Fatalf("the other client: %d rounds, error %v", calls, err)
	}
	// Held up by the slow client, it would wait until the WriteTimeout
	// (10 s); the bound only has to survive a loaded machine.
	if worst > 2*time.Second {
		t.Fatalf("the other client waited up to %v while the proxy dropped the slow one", worst)
	}
	stExpect(t, setup.do("STRLEN", "mo:big"), strconv.Itoa(len(big)))
}

func TestWriteTimeoutDropsNonReadingClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{WriteTimeout: 300 * time.Millisecond}, r.Addr)
	setup := stDial(t, tp.Addr)
	big := strings.Repeat("v", 64<<10)
	stExpect(t, setup.do("SET", "wt:big", big), "OK")
	base := tp.clients.Load()

	bad := stDialSmallBuffer(t, tp.Addr)
	stEventually(t, 2*time.Second, "the client accepted", func() bool { return tp.clients.Load() == base+1 })
	const n = 400 // 25 MiB of replies: far more than the socket buffers hold
	var pipe [][]string
	for i := 0; i < n; i++ {
		pipe = append(pipe, []string{"GET", "wt:big"})
	}
	bad.write(stCmds(pipe...))
	start := time.Now()
	stEventually(t, 5*time.Second, "the non-reading client dropped", func() bool { return tp.clients.Load() == base })
	d := time.Since(start)
	t.Logf("dropped after %v", d)
	if d < 200*time.Millisecond {
		t.Fatalf("dropped after %v, before the write timeout could pass", d)
	}
	// (The client socket is closed; the kernel may still be draining what
	// it had queued, so the client side is not read to EOF here.)
	stExpect(t, setup.do("STRLEN", "wt:big"), strconv.Itoa(len(big)))
}

// A subscriber that stops reading while messages keep coming is dropped
// after WriteTimeout; the publisher is not held up.
func TestWriteTimeoutDropsNonReadingSubscriber(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	// A publisher held up by the subscriber would wait about WriteTimeout.
	tp := startProxy(t, Config{WriteTimeout: 3 * time.Second}, r.Addr)
	pub := stDial(t, tp.Addr)
	stExpect(t, pub.do("PING"), "PONG") // accepted and counted
	base := tp.clients.Load()
	sub := stDialSmallBuffer(t, tp.Addr)
	sub.send("SUBSCRIBE", "wts:ch")
	stExpect(t, sub.read(), `["subscribe","wts:ch",1]`)
	if n := tp.clients.Load(); n != base+1 {
		t.Fatalf("clients = %d, want %d", n, base+1)
	}
	msg := strings.Repeat("m", 64<<10)
	start := time.Now()
	var worst time.Duration
	for i := 0; i < 400 && tp.clients.Load() > base; i++ {
		t0 := time.Now()
		v := pub.do("PUBLISH", "wts:ch", msg)
		worst = max(worst, time.Since(t0))
		if v.typ != ':' {
			t.Fatalf("PUBLISH: %s", v)
		}
	}
	stEventually(t, 5*time.Second, "the non-reading subscriber dropped", func() bool {
		return tp.clients.Load() == base && tp.pinned.Load() == 0
	})
	t.Logf("dropped after %v; worst PUBLISH %v", time.Since(start), worst)
	if worst > 1500*time.Millisecond {
		t.Fatalf("PUBLISH took up to %v while a subscriber did not read", worst)
	}
	// (The client socket is closed; the kernel may still be draining what
	// it had queued to a client that reads this slowly, so the client side
	// is not read to EOF here.)
	stEventually(t, 3*time.Second, "the subscription gone from Redis", func() bool { return stNumSub(t, r, "wts:ch") == 0 })
}

// Past MaxPinned, a command that needs a dedicated connection gets an error
// at once; the session stays usable and gets one once a pin is free.
func TestMaxPinned(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{MaxPinned: 2}, r.Addr)
	subs := []*stConn{stDial(t, tp.Addr), stDial(t, tp.Addr)}
	for i, s := range subs {
		s.send("SUBSCRIBE", fmt.Sprintf("mp:%d", i))
		stExpect(t, s.read(), fmt.Sprintf(`["subscribe","mp:%d",1]`, i))
	}
	c := stDial(t, tp.Addr)
	v := c.do("MULTI")
	if v.typ != '-' || !strings.Contains(v.str, "too many pinned connections") {
		t.Fatalf("MULTI past MaxPinned: %s", v)
	}
	stExpect(t, c.do("SET", "mp:k", "1"), "OK")
	stExpect(t, c.do("EXEC"), "(error) ERR EXEC without MULTI")
	subs[0].close()
	stEventually(t, 2*time.Second, "a pin freed", func() bool { return tp.pinned.Load() == 1 })
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("INCR", "mp:k"), "QUEUED")
	stExpect(t, c.do("EXEC"), "[2]")
}

func TestTooBigInlineRequestLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	raw := strings.Repeat("a", 70000)
	want := stUntilEOF(t, r.Addr, raw, 2*time.Second)
	got := stUntilEOF(t, tp.Addr, raw, 2*time.Second)
	if !bytes.Equal(got, want) {
		t.Fatalf("proxy answered %q, Redis %q", got, want)
	}
}

func TestIdleTimeoutClosesOnlyIdleClients(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	// Generous against a loaded machine: the active client pings ten times
	// per idle period.
	const idle = time.Second
	tp := startProxy(t, Config{IdleTimeout: idle}, r.Addr)

	idler := stDial(t, tp.Addr)
	stExpect(t, idler.do("PING"), "PONG")
	active := stDial(t, tp.Addr)
	sub := stDial(t, tp.Addr)
	sub.send("SUBSCRIBE", "idle:ch")
	stExpect(t, sub.read(), `["subscribe","idle:ch",1]`)
	blocked := stDial(t, tp.Addr)
	blocked.send("BLPOP", "idle:list", "0")
	stWaitBlocked(t, r, 1)

	// The active client pings until the idle one has been closed (not only
	// for 2*idle: waiting for the close without pinging made it idle too).
	stop := make(chan struct{})
	pinged := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				pinged <- nil
				return
			default:
			}
			// Not active.do: it fails the test, which only this
			// goroutine's caller may do.
			if _, err := active.nc.Write(stCmd("PING")); err != nil {
				pinged <- fmt.Errorf("active client: PING: %v", err)
				return
			}
			if v, err := active.tryRead(5 * time.Second); err != nil || v.String() != "PONG" {
				pinged <- fmt.Errorf("active client: PING got %s, %v", v, err)
				return
			}
			time.Sleep(idle / 10)
		}
	}()
	time.Sleep(2 * idle)
	// The idle client was closed by the proxy (the read sees EOF, not a
	// timeout), the others were not.
	idler.expectClosed(time.Second)
	close(stop)
	if err := <-pinged; err != nil {
		t.Fatal(err)
	}
	stExpect(t, active.do("PING"), "PONG")
	stExpect(t, active.do("PUBLISH", "idle:ch", "still-here"), "1")
	stExpect(t, sub.read(), `["message","idle:ch","still-here"]`)
	stExpect(t, active.do("RPUSH", "idle:list", "x"), "1")
	stExpect(t, blocked.readTimeout(2*time.Second), `["idle:list","x"]`)
}
