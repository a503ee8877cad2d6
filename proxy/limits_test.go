package proxy

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
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
	direct := resptest.Dial(t, r.Addr)
	resptest.Expect(t, direct.Do("CONFIG", "GET", "replica-priority"), `["replica-priority","100"]`)
	resptest.Expect(t, direct.Do("CONFIG", "GET", "masterauth"), `["masterauth",""]`)
	resptest.Expect(t, direct.Do("CONFIG", "GET", "masteruser"), `["masteruser",""]`)
	resptest.Expect(t, direct.Do("CONFIG", "GET", "replica-read-only"), `["replica-read-only","yes"]`)
	resptest.Expect(t, direct.Do("CONFIG", "GET", "maxmemory-policy"), `["maxmemory-policy","noeviction"]`)
	if n := stInfoInt(t, r, "replication", "connected_slaves"); n != 0 {
		t.Fatalf("%s has %d replicas after SYNC/PSYNC through the proxy", r.Addr, n)
	}
}

func stExpectRefused(t *testing.T, v resptest.Value, cmd []string) {
	t.Helper()
	if v.Type != '-' || !strings.HasPrefix(v.Str, "ERR ") || !strings.Contains(v.Str, "refused") {
		t.Fatalf("%q: reply %s, want an ERR ... refused error", cmd, v)
	}
}

func TestRefusedCommandsLeaveServerUntouched(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	for _, cmd := range stRefused {
		stExpectRefused(t, c.Do(cmd...), cmd)
	}
	stAssertTopologyUntouched(t, r)
	// Harmless CONFIG SET goes through.
	resptest.Expect(t, c.Do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"), "OK")
	resptest.Expect(t, resptest.Dial(t, r.Addr).Do("CONFIG", "GET", "maxmemory-policy"), `["maxmemory-policy","allkeys-lru"]`)
	// The session is still usable, and refused commands pipelined with
	// others keep their place in the reply order.
	c.Write(resptest.Cmds([]string{"SET", "ref:k", "1"}, []string{"REPLICAOF", "127.0.0.1", "1"}, []string{"INCR", "ref:k"}))
	resptest.Expect(t, c.Read(), "OK")
	stExpectRefused(t, c.Read(), []string{"REPLICAOF"})
	resptest.Expect(t, c.Read(), "2")
	v, err := r.Do("ROLE")
	if err != nil || string(v.([]any)[0].([]byte)) != "master" {
		t.Fatalf("ROLE after the pipeline: %v %v", v, err)
	}
}

func TestRefusedCommandsInsideMulti(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("MULTI"), "OK")
	for _, cmd := range stRefused {
		stExpectRefused(t, c.Do(cmd...), cmd)
	}
	if v := c.Do("EXEC"); v.Type != '*' && v.Type != '-' {
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
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("SET", "rma:k", "1"), "QUEUED")
	stExpectRefused(t, c.Do("REPLICAOF", "127.0.0.1", "1"), []string{"REPLICAOF"})
	resptest.Expect(t, c.Do("EXEC"), "(error) EXECABORT Transaction discarded because of previous errors.")
	resptest.Expect(t, resptest.Dial(t, r.Addr).Do("GET", "rma:k"), "<nil>")
}

func TestRefusedCommandsInTunnel(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	// A blocking command turns the session into a tunnel for good.
	resptest.Expect(t, c.DoTimeout(3*time.Second, "BLPOP", "tun:none", "0.1"), "<nil>")
	for _, cmd := range stRefused {
		stExpectRefused(t, c.Do(cmd...), cmd)
	}
	stAssertTopologyUntouched(t, r)
	c.Write(resptest.Cmds([]string{"SET", "tun:k", "1"}, []string{"SLAVEOF", "127.0.0.1", "1"}, []string{"INCR", "tun:k"}))
	resptest.Expect(t, c.Read(), "OK")
	stExpectRefused(t, c.Read(), []string{"SLAVEOF"})
	resptest.Expect(t, c.Read(), "2")
	resptest.Expect(t, c.Do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"), "OK")
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
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("SET", "rw:k", "v"), "OK")
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
		resptest.Expect(t, c.Do("GET", "rw:k"), `"v"`)
	}
	expectGets("10 sequential GETs", 0, 5, 5)
	// A pipeline's reads go to one replica, in one write, replies in
	// order; the next pipeline takes the next replica.
	var pipe [][]string
	for i := 0; i < 10; i++ {
		pipe = append(pipe, []string{"GET", "rw:k"})
	}
	for round := 0; round < 2; round++ {
		c.Write(resptest.Cmds(pipe...))
		for i := 0; i < 10; i++ {
			resptest.Expect(t, c.Read(), `"v"`)
		}
	}
	expectGets("2 pipelines of 10 GETs", 0, 15, 15)

	for i := 0; i < 4; i++ {
		resptest.Expect(t, c.Do("SET", "rw:w"+strconv.Itoa(i), "x"), "OK")
	}
	if n := stCmdStat(t, m, "set"); n != 4 {
		t.Fatalf("SET calls on the master = %d, want 4", n)
	}
	// Inside a transaction everything goes to the master.
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("GET", "rw:k"), "QUEUED")
	resptest.Expect(t, c.Do("GET", "rw:w0"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), `["v","x"]`)
	expectGets("GETs inside MULTI", 2, 15, 15)
	// So does a read while a WATCH holds the connection.
	resptest.Expect(t, c.Do("WATCH", "rw:k"), "OK")
	resptest.Expect(t, c.Do("GET", "rw:k"), `"v"`)
	resptest.Expect(t, c.Do("UNWATCH"), "OK")
	expectGets("GET under WATCH", 3, 15, 15)

	// With no replica in the topology, reads go to the master.
	solo := redistest.Start(t)
	tp2 := startProxy(t, Config{ReadFrom: ReadFromReplicas}, solo.Addr)
	c2 := resptest.Dial(t, tp2.Addr)
	resptest.Expect(t, c2.Do("SET", "rw:k", "solo"), "OK")
	for i := 0; i < 6; i++ {
		resptest.Expect(t, c2.Do("GET", "rw:k"), `"solo"`)
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
	c := resptest.Dial(t, tp.Addr)
	const n = 1000
	var pipe [][]string
	for i := 0; i < n; i++ {
		pipe = append(pipe, []string{"SET", "scan:" + strconv.Itoa(i), "v"})
	}
	c.Write(resptest.Cmds(pipe...))
	for i := 0; i < n; i++ {
		resptest.Expect(t, c.Read(), "OK")
	}
	for _, rep := range []*redistest.Server{r1, r2} {
		poll.Until(t, 5*time.Second, "keys replicated to "+rep.Addr, func() bool {
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
		v := c.Do("SCAN", cursor, "COUNT", "10")
		if v.Type != '*' || len(v.Elems) != 2 {
			t.Fatalf("SCAN reply %s", v)
		}
		for _, k := range v.Elems[1].Elems {
			seen[k.Str] = true
		}
		cursor = v.Elems[0].Str
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
	c := resptest.Dial(t, addr)
	resptest.Expect(t, c.Do("PING"), "PONG") // accepted and counted before it starts
	return stMeasure(stop, func(i int) error {
		var req []byte
		for j := 0; j < 10; j++ {
			req = append(req, resptest.Cmd("SET", fmt.Sprintf("good:%d", j), strconv.Itoa(i))...)
			req = append(req, resptest.Cmd("GET", fmt.Sprintf("good:%d", j))...)
		}
		if err := c.TryWrite(req); err != nil {
			return err
		}
		for j := 0; j < 10; j++ {
			v, err := c.TryRead(5 * time.Second)
			if err != nil || v.String() != "OK" {
				return fmt.Errorf("SET reply %s %v", v, err)
			}
			v, err = c.TryRead(5 * time.Second)
			if err != nil || v.Str != strconv.Itoa(i) {
				return fmt.Errorf("GET reply %s %v, want %d", v, err, i)
			}
		}
		return nil
	})
}

// stUntilEOF writes req to a new connection and returns what comes back
// until the server closes it (failing after 2s).
func stUntilEOF(t testing.TB, addr string, req []byte) []byte {
	t.Helper()
	c := resptest.Dial(t, addr)
	c.Write(req)
	return c.ExpectClosed(2 * time.Second)
}

func TestMalformedRequestGetsProtocolErrorAndClose(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	stop := make(chan struct{})
	good := stGoodClient(t, tp.Addr, stop)
	for _, raw := range []string{"*1\r\n$x\r\n", "*2\r\n$3\r\nGET\r\n:1\r\n"} {
		got := sameAsRedis(t, stUntilEOF, r.Addr, tp.Addr, []byte(raw))
		if !bytes.HasPrefix(got, []byte("-ERR Protocol error")) {
			t.Fatalf("%q: proxy answered %q, want ERR Protocol error... and a close", raw, got)
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
	sameAsRedis(t, stUntilEOF, r.Addr, tp.Addr, []byte(raw))
}

func TestOversizedBulkRefusedBeforeBody(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{MaxBulk: 1024}, r.Addr)

	c := resptest.Dial(t, tp.Addr)
	val := strings.Repeat("x", 1024)
	resptest.Expect(t, c.Do("SET", "bulk:ok", val), "OK")
	resptest.Expect(t, c.Do("GET", "bulk:ok"), strconv.Quote(val))

	// Only the header of the oversized argument is sent: the error must
	// come without waiting for the 2048 bytes.
	big := resptest.Dial(t, tp.Addr)
	big.Write([]byte("*3\r\n$3\r\nSET\r\n$8\r\nbulk:big\r\n$2048\r\n"))
	v := big.ReadTimeout(2 * time.Second)
	resptest.Expect(t, v, "(error) ERR Protocol error: invalid bulk length")
	big.ExpectClosed(2 * time.Second)

	// Requests before it in the same write are answered first.
	mixed := resptest.Dial(t, tp.Addr)
	mixed.Write(append(resptest.Cmd("PING"), "*3\r\n$3\r\nSET\r\n$8\r\nbulk:big\r\n$2048\r\n"...))
	resptest.Expect(t, mixed.ReadTimeout(2*time.Second), "PONG")
	resptest.Expect(t, mixed.ReadTimeout(2*time.Second), "(error) ERR Protocol error: invalid bulk length")
	mixed.ExpectClosed(2 * time.Second)
	resptest.Expect(t, c.Do("EXISTS", "bulk:big"), "0")

	// The same header against Redis's own limit gives the same bytes.
	ref := redistest.Start(t, "--proto-max-bulk-len", "1048576")
	tp2 := startProxy(t, Config{MaxBulk: 1 << 20}, r.Addr)
	hdr := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n"
	sameAsRedis(t, stUntilEOF, ref.Addr, tp2.Addr, []byte(hdr))
}

func TestMaxClients(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{MaxClients: 3}, r.Addr)
	var conns []*resptest.Conn
	for i := 0; i < 3; i++ {
		c := resptest.Dial(t, tp.Addr)
		resptest.Expect(t, c.Do("PING"), "PONG")
		conns = append(conns, c)
	}
	got := stUntilEOF(t, tp.Addr, nil)
	if string(got) != "-ERR max number of clients reached\r\n" {
		t.Fatalf("4th client got %q, want Redis's max clients error and a close", got)
	}
	for _, c := range conns {
		resptest.Expect(t, c.Do("PING"), "PONG")
	}
	conns[0].Close()
	poll.Until(t, 2*time.Second, "client count back to 2", func() bool { return tp.clients.Load() == 2 })
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("PING"), "PONG")
}

// stDialSmallBuffer opens a client connection with a small receive buffer,
// so a client that does not read stops the proxy's writes quickly.
func stDialSmallBuffer(t *testing.T, addr string) *resptest.Conn {
	t.Helper()
	c := resptest.Dial(t, addr)
	c.NetConn().(*net.TCPConn).SetReadBuffer(4096)
	return c
}

// stNonReader connects a client that does not read (stDialSmallBuffer),
// waits until tp counts it, and has it send n GETs of key at once. base is
// the count of clients without it.
func stNonReader(t *testing.T, tp *testProxy, key string, n int) (c *resptest.Conn, base int64) {
	t.Helper()
	base = tp.clients.Load()
	c = stDialSmallBuffer(t, tp.Addr)
	poll.Until(t, 2*time.Second, "the client accepted", func() bool { return tp.clients.Load() == base+1 })
	var pipe []byte
	for range n {
		pipe = resptest.AppendCmd(pipe, "GET", key)
	}
	c.Write(pipe)
	return c, base
}

func TestMaxOutputDisconnectsNonReadingClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	const writeTimeout = 10 * time.Second
	tp := startProxy(t, Config{MaxOutput: 1 << 20, WriteTimeout: writeTimeout}, r.Addr)
	setup := resptest.Dial(t, tp.Addr)
	// Replies of 512 KiB: a new client's first window (4 requests, on
	// either path) already passes the 1 MiB limit.
	big := strings.Repeat("v", 512<<10)
	resptest.Expect(t, setup.Do("SET", "mo:big", big), "OK")

	stop := make(chan struct{})
	good := stGoodClient(t, tp.Addr, stop)
	const n = 200 // 200 x 512 KiB = 100 MiB of replies
	bad, base := stNonReader(t, tp, "mo:big", n)
	start := time.Now()
	poll.Until(t, 3*time.Second, "the non-reading client disconnected", func() bool { return tp.clients.Load() == base })
	t.Logf("dropped after %v", time.Since(start))
	got := bad.ExpectClosed(3 * time.Second)
	if replies := bytes.Count(got, []byte("$524288\r\n")); replies >= n {
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
	resptest.Expect(t, setup.Do("STRLEN", "mo:big"), strconv.Itoa(len(big)))
}

func TestWriteTimeoutDropsNonReadingClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{WriteTimeout: 300 * time.Millisecond}, r.Addr)
	setup := resptest.Dial(t, tp.Addr)
	big := strings.Repeat("v", 64<<10)
	resptest.Expect(t, setup.Do("SET", "wt:big", big), "OK")
	_, base := stNonReader(t, tp, "wt:big", 400) // 25 MiB of replies: far more than the socket buffers hold
	start := time.Now()
	poll.Until(t, 5*time.Second, "the non-reading client dropped", func() bool { return tp.clients.Load() == base })
	d := time.Since(start)
	t.Logf("dropped after %v", d)
	if d < 200*time.Millisecond {
		t.Fatalf("dropped after %v, before the write timeout could pass", d)
	}
	// (The client socket is closed; the kernel may still be draining what
	// it had queued, so the client side is not read to EOF here.)
	resptest.Expect(t, setup.Do("STRLEN", "wt:big"), strconv.Itoa(len(big)))
}

// A subscriber that stops reading while messages keep coming is dropped
// after WriteTimeout; the publisher is not held up.
func TestWriteTimeoutDropsNonReadingSubscriber(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	// A publisher held up by the subscriber would wait about WriteTimeout.
	tp := startProxy(t, Config{WriteTimeout: 3 * time.Second}, r.Addr)
	pub := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, pub.Do("PING"), "PONG") // accepted and counted
	base := tp.clients.Load()
	sub := stDialSmallBuffer(t, tp.Addr)
	sub.Send("SUBSCRIBE", "wts:ch")
	resptest.Expect(t, sub.Read(), `["subscribe","wts:ch",1]`)
	if n := tp.clients.Load(); n != base+1 {
		t.Fatalf("clients = %d, want %d", n, base+1)
	}
	msg := strings.Repeat("m", 64<<10)
	start := time.Now()
	var worst time.Duration
	for i := 0; i < 400 && tp.clients.Load() > base; i++ {
		t0 := time.Now()
		v := pub.Do("PUBLISH", "wts:ch", msg)
		worst = max(worst, time.Since(t0))
		if v.Type != ':' {
			t.Fatalf("PUBLISH: %s", v)
		}
	}
	poll.Until(t, 5*time.Second, "the non-reading subscriber dropped", func() bool {
		return tp.clients.Load() == base && tp.pinned.Load() == 0
	})
	t.Logf("dropped after %v; worst PUBLISH %v", time.Since(start), worst)
	if worst > 1500*time.Millisecond {
		t.Fatalf("PUBLISH took up to %v while a subscriber did not read", worst)
	}
	// (The client socket is closed; the kernel may still be draining what
	// it had queued to a client that reads this slowly, so the client side
	// is not read to EOF here.)
	poll.Until(t, 3*time.Second, "the subscription gone from Redis", func() bool { return stNumSub(t, r, "wts:ch") == 0 })
}

// Past MaxPinned, a command that needs a dedicated connection gets an error
// at once; the session stays usable and gets one once a pin is free.
func TestMaxPinned(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{MaxPinned: 2}, r.Addr)
	subs := []*resptest.Conn{resptest.Dial(t, tp.Addr), resptest.Dial(t, tp.Addr)}
	for i, s := range subs {
		s.Send("SUBSCRIBE", fmt.Sprintf("mp:%d", i))
		resptest.Expect(t, s.Read(), fmt.Sprintf(`["subscribe","mp:%d",1]`, i))
	}
	c := resptest.Dial(t, tp.Addr)
	v := c.Do("MULTI")
	if v.Type != '-' || !strings.Contains(v.Str, "too many pinned connections") {
		t.Fatalf("MULTI past MaxPinned: %s", v)
	}
	resptest.Expect(t, c.Do("SET", "mp:k", "1"), "OK")
	resptest.Expect(t, c.Do("EXEC"), "(error) ERR EXEC without MULTI")
	subs[0].Close()
	poll.Until(t, 2*time.Second, "a pin freed", func() bool { return tp.pinned.Load() == 1 })
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("INCR", "mp:k"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), "[2]")
}

func TestTooBigInlineRequestLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	raw := strings.Repeat("a", 70000)
	sameAsRedis(t, stUntilEOF, r.Addr, tp.Addr, []byte(raw))
}

func TestIdleTimeoutClosesOnlyIdleClients(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	// Generous against a loaded machine: the active client pings ten times
	// per idle period.
	const idle = time.Second
	tp := startProxy(t, Config{IdleTimeout: idle}, r.Addr)

	idler := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, idler.Do("PING"), "PONG")
	active := resptest.Dial(t, tp.Addr)
	sub := resptest.Dial(t, tp.Addr)
	sub.Send("SUBSCRIBE", "idle:ch")
	resptest.Expect(t, sub.Read(), `["subscribe","idle:ch",1]`)
	blocked := resptest.Dial(t, tp.Addr)
	blocked.Send("BLPOP", "idle:list", "0")
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
			// Not active.Do: it fails the test, which only this
			// goroutine's caller may do.
			if err := active.TryWrite(resptest.Cmd("PING")); err != nil {
				pinged <- fmt.Errorf("active client: PING: %v", err)
				return
			}
			if v, err := active.TryRead(5 * time.Second); err != nil || v.String() != "PONG" {
				pinged <- fmt.Errorf("active client: PING got %s, %v", v, err)
				return
			}
			time.Sleep(idle / 10)
		}
	}()
	time.Sleep(2 * idle)
	// The idle client was closed by the proxy (the read sees EOF, not a
	// timeout), the others were not.
	idler.ExpectClosed(time.Second)
	close(stop)
	if err := <-pinged; err != nil {
		t.Fatal(err)
	}
	resptest.Expect(t, active.Do("PING"), "PONG")
	resptest.Expect(t, active.Do("PUBLISH", "idle:ch", "still-here"), "1")
	resptest.Expect(t, sub.Read(), `["message","idle:ch","still-here"]`)
	resptest.Expect(t, active.Do("RPUSH", "idle:list", "x"), "1")
	resptest.Expect(t, blocked.ReadTimeout(2*time.Second), `["idle:list","x"]`)
}
