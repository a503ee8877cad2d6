//go:build linux

package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// dtBlock makes one step of the commands (space-separated words, no
// quoting) encoded as multibulk, as client libraries write them, sent in
// one write.
func dtBlock(client int, cmds ...string) []dtStep {
	var b []byte
	for _, c := range cmds {
		b = resptest.AppendCmd(b, strings.Fields(c)...)
	}
	return []dtStep{{client, string(b), len(cmds)}}
}

// A transaction a client sends whole (MULTI through EXEC or DISCARD, in
// multibulk, as client libraries pipeline it) runs on the loop's shared
// connection, replies the same as Redis's, and leaves the client on the
// loop; one that needs a connection of its own (a queued SELECT, CLIENT,
// WATCH, SUBSCRIBE, a nested MULTI, an EXEC with arguments, or a client
// waiting for replies in between) moves to a goroutine, as before.
func TestTransactionBlocksOnTheLoop(t *testing.T) {
	needEventLoops(t)
	direct, backend := dtRedisPair(t)
	cases := []struct {
		name   string
		onLoop bool
		steps  func(k string) []dtStep
	}{
		{"exec", true, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "SET "+k+" a", "INCR "+k+":n", "GET "+k, "EXEC", "GET "+k+":n")
		}},
		{"discard", true, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "SET "+k+" a", "DISCARD", "GET "+k)
		}},
		{"empty", true, func(k string) []dtStep { return dtBlock(0, "MULTI", "EXEC") }},
		{"unknown command aborts it", true, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "NOSUCHCMD x", "SET "+k+" a", "EXEC", "GET "+k)
		}},
		{"arity error aborts it", true, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "GET", "SET "+k+" a", "EXEC", "GET "+k)
		}},
		{"error at run time", true, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "SET "+k+" a", "INCR "+k, "APPEND "+k+" b", "EXEC", "GET "+k)
		}},
		{"blocking pop and script inside", true, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "BLPOP "+k+":l 0", "EVAL return(redis.call('incr',KEYS[1])) 1 "+k+":n", "EXEC")
		}},
		{"two blocks and plain commands in one write", true, func(k string) []dtStep {
			return dtBlock(0, "SET "+k+" a", "MULTI", "APPEND "+k+" b", "EXEC", "GET "+k, "MULTI", "APPEND "+k+" c", "DISCARD", "GET "+k)
		}},
		{"sent in two writes cut inside a command", true, func(k string) []dtStep {
			s := dtBlock(0, "MULTI", "SET "+k+" a", "INCR "+k+":n", "EXEC")[0].send
			cut := strings.Index(s, "INCR") + 2
			return []dtStep{{0, s[:cut], 0}, {0, s[cut:], 4}}
		}},
		{"one by one", false, func(k string) []dtStep {
			return append(append(dtBlock(0, "MULTI"), dtBlock(0, "SET "+k+" a")...), dtBlock(0, "EXEC")...)
		}},
		{"select inside", false, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "SELECT 1", "SET "+k+" a", "EXEC", "GET "+k)
		}},
		{"client setname inside", false, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "CLIENT SETNAME tx", "EXEC", "CLIENT GETNAME")
		}},
		{"watch inside", false, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "WATCH "+k, "SET "+k+" a", "EXEC")
		}},
		{"nested multi", false, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "MULTI", "SET "+k+" a", "EXEC", "GET "+k)
		}},
		{"exec with an argument", false, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "SET "+k+" a", "EXEC x", "GET "+k)
		}},
		{"subscribe inside", false, func(k string) []dtStep {
			return dtBlock(0, "MULTI", "SUBSCRIBE "+k, "EXEC")
		}},
		{"inline", false, func(k string) []dtStep {
			return dtPipelined(0, "MULTI", "SET "+k+" a", "EXEC", "GET "+k)
		}},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			tp := startProxy(t, Config{}, backend)
			dtScenario(t, direct, tp.Addr, c.steps("tx"+strconv.Itoa(i)))
			handoffs := testutil.ToFloat64(tp.m.handoffs)
			pinned := testutil.ToFloat64(tp.m.pinned)
			if c.onLoop && (handoffs != 0 || pinned != 0) {
				t.Errorf("the client left the loop (%v hand-offs, %v pinned connections); want it served on the loop", handoffs, pinned)
			}
			if !c.onLoop && handoffs != 1 {
				t.Errorf("%v hand-offs; want the client moved to a dedicated connection", handoffs)
			}
		})
	}
}

// Transactions sent whole by many clients at once, among plain commands
// on the same keys, run atomically: in every EXEC's reply the counter
// moved by exactly one between its two increments, whatever the other
// clients did. No client leaves the loop.
func TestTransactionBlocksAreAtomicOnTheSharedConnection(t *testing.T) {
	needEventLoops(t)
	_, backend := dtRedisPair(t)
	tp := startProxy(t, Config{}, backend)
	const txClients, plainClients, rounds = 8, 4, 200
	block := resptest.Cmds([]string{"MULTI"}, []string{"INCR", "atomic:n"}, []string{"INCR", "atomic:n"}, []string{"EXEC"})
	plain := resptest.Cmd("INCR", "atomic:n")
	var wg sync.WaitGroup
	errs := make(chan error, txClients+plainClients)
	for i := 0; i < txClients+plainClients; i++ {
		c := resptest.Dial(t, tp.Addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if i >= txClients {
					if err := c.TryWrite(plain); err != nil {
						errs <- err
						return
					}
					if v, err := c.TryRead(5 * time.Second); err != nil || v.Type != ':' {
						errs <- fmt.Errorf("INCR: %v %v", v, err)
						return
					}
					continue
				}
				if err := c.TryWrite(block); err != nil {
					errs <- err
					return
				}
				var got []resptest.Value
				for j := 0; j < 4; j++ {
					v, err := c.TryRead(5 * time.Second)
					if err != nil {
						errs <- fmt.Errorf("transaction reply %d: %v", j, err)
						return
					}
					got = append(got, v)
				}
				if got[0].String() != "OK" || got[1].String() != "QUEUED" || got[2].String() != "QUEUED" {
					errs <- fmt.Errorf("replies %v, want OK, QUEUED, QUEUED, then EXEC's", got)
					return
				}
				if e := got[3].Elems; len(e) != 2 || e[0].Type != ':' || e[1].Type != ':' || e[1].Int != e[0].Int+1 {
					errs <- fmt.Errorf("EXEC replied %v: want two consecutive counts", got[3])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if h, p := testutil.ToFloat64(tp.m.handoffs), testutil.ToFloat64(tp.m.pinned); h != 0 || p != 0 {
		t.Fatalf("%v hand-offs, %v pinned connections: want every client on the loop", h, p)
	}
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("GET", "atomic:n"), strconv.Quote(strconv.Itoa(txClients*rounds*2+plainClients*rounds)))
}

// A client that shuts its side down in the middle of a transaction's
// block gets what Redis gives it: the replies to the complete commands
// (MULTI's OK, QUEUED), then the close; the transaction never runs.
func TestTransactionHalfClosedMidBlock(t *testing.T) {
	direct, backend := dtRedisPair(t)
	tp := startProxy(t, Config{}, backend)
	s := string(resptest.Cmds([]string{"MULTI"}, []string{"SET", "half:k", "a"}, []string{"INCR", "half:n"}))
	s = s[:len(s)-5]
	var got [2][]byte
	for i, addr := range []string{direct, tp.Addr} {
		c := resptest.Dial(t, addr)
		c.Write([]byte(s))
		time.Sleep(50 * time.Millisecond) // read as a block still arriving
		if err := c.NetConn().(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var closed bool
		if got[i], closed = c.ReadUntilClosed(5 * time.Second); !closed {
			t.Fatalf("%s: still open 5s after the half-close; read %q", addr, got[i])
		}
	}
	if string(got[0]) != string(got[1]) {
		t.Fatalf("after a half-close mid-transaction: redis sent %q, the proxy %q", got[0], got[1])
	}
	rc, err := redis.Dial("tcp", backend)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if r, err := redis.Int(rc.Do("EXISTS", "half:k")); err != nil || r != 0 {
		t.Fatalf("EXISTS half:k = %v (%v) behind the proxy: the transaction ran", r, err)
	}
}

// txBlocks generates commands of the families that keep a session on the
// event loop, a third of them in transactions of up to five commands, and
// marks where each plain command or whole transaction ends. (Scripts come
// outside transactions only: see inTx.)
func (g *dtGen) txBlocks(n int) (cmds []dtCmd, ends map[int]bool) {
	fams := []func(){g.strings, g.counters, g.lists, g.hashes, g.sets, g.zsets, g.streams,
		g.bitmaps, g.hll, g.geo, g.keyspace, g.scripts,
		func() { g.cmd(g.pick("NOSUCHCMD", "nosuchcmd", "CONFIG"), g.val()) }} // (a CLIENT subcommand would need a dedicated connection)
	// SCRIPT LOAD and FLUSH take a transaction to a connection of its own
	// (the proxy remembers scripts), so scripts stay out of transactions.
	inTx := append(fams[:11:11], fams[12])
	ends = map[int]bool{}
	for len(g.out) < n {
		if g.chance(3) {
			g.multi(func() { inTx[g.r.Intn(len(inTx))]() })
		} else {
			fams[g.r.Intn(len(fams))]()
		}
		ends[len(g.out)] = true
	}
	for i := range g.out {
		g.out[i].inline = false // as client libraries write them
	}
	return g.out, ends
}

// A random sequence over twelve command families and unknown commands, with transactions,
// each sent whole (in batches of random sizes that never cut one): the
// proxy's replies equal Redis's, and the session never leaves the loop.
func TestDifferentialTransactionBlocks(t *testing.T) {
	needEventLoops(t)
	seed := dtSeed(t)
	direct, backend := dtRedisPair(t)
	tp := startProxy(t, Config{}, backend)
	cmds, ends := newDTGen(seed, "tb:", false, false).txBlocks(dtCount(5000))
	txs := 0
	for _, c := range cmds {
		if c.args[0] == "MULTI" {
			txs++
		}
	}
	start := time.Now()
	if !dtRun(t, "sequence", seed, cmds, resptest.Dial(t, direct), resptest.Dial(t, tp.Addr), ends) {
		return
	}
	t.Logf("%d commands (%d transactions), identical replies, %v", len(cmds), txs, time.Since(start).Round(time.Millisecond))
	if h := testutil.ToFloat64(tp.m.handoffs); h != 0 {
		t.Fatalf("%v hand-offs: the session left the loop", h)
	}
}

// A transaction of 600 000 commands (16 MB), read in many pieces, is scanned once
// (each read goes on where the last stopped) and runs on the loop: it
// takes about as long through the proxy as on Redis.
func TestHugeTransactionIsScannedOnce(t *testing.T) {
	needEventLoops(t)
	direct, backend := dtRedisPair(t)
	tp := startProxy(t, Config{}, backend)
	const n = 600000
	cmds := [][]string{{"MULTI"}}
	want := []byte("+OK\r\n")
	for i := 0; i < n; i++ {
		cmds = append(cmds, []string{"INCR", "huge:tx"})
		want = append(want, "+QUEUED\r\n"...)
	}
	cmds = append(cmds, []string{"EXEC"}, []string{"DEL", "huge:tx"})
	want = fmt.Appendf(want, "*%d\r\n", n)
	for i := 1; i <= n; i++ {
		want = fmt.Appendf(want, ":%d\r\n", i)
	}
	want = append(want, ":1\r\n"...)
	req := resptest.Cmds(cmds...)
	// Measured: 1.8x (7x with -race); scanning the block again on every
	// read: 16x (139x with -race).
	asFastAsRedis(t, fmt.Sprintf("%d-command transaction (%d bytes)", n, len(req)), direct, tp.Addr, req, want)
	if h := testutil.ToFloat64(tp.m.handoffs); h != 0 {
		t.Fatalf("%v hand-offs: the transaction left the loop", h)
	}
}

// With reads split to replicas, a transaction sent whole right after
// reads goes to the master once the replica has answered them, inside
// the transaction reads run on the master too, and the replies keep the
// order of the requests.
func TestTransactionBlockAfterReplicaReads(t *testing.T) {
	needEventLoops(t)
	m := redistest.Start(t)
	r1 := redistest.Start(t)
	r1.ReplicaOf(m)
	tp := startProxy(t, Config{ReadFrom: ReadFromReplicas}, m.Addr, r1.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("SET", "txr:k", "old"), "OK")
	poll.Until(t, 5*time.Second, "txr:k replicated", func() bool {
		v, err := redis.String(r1.Do("GET", "txr:k"))
		return err == nil && v == "old"
	})
	for _, s := range []*redistest.Server{m, r1} {
		if _, err := s.Do("CONFIG", "RESETSTAT"); err != nil {
			t.Fatal(err)
		}
	}
	c.Write(resptest.Cmds([]string{"GET", "txr:k"}, []string{"MULTI"}, []string{"SET", "txr:k", "new"}, []string{"GET", "txr:k"},
		[]string{"EXEC"}, []string{"INCR", "txr:n"}))
	for _, want := range []string{`"old"`, "OK", "QUEUED", "QUEUED", `[OK,"new"]`, "1"} {
		resptest.Expect(t, c.Read(), want)
	}
	if got := stCmdStat(t, r1, "get"); got != 1 {
		t.Fatalf("GET calls on the replica = %d, want 1 (the read before the transaction)", got)
	}
	if got := stCmdStat(t, m, "get"); got != 1 {
		t.Fatalf("GET calls on the master = %d, want 1 (the read inside the transaction)", got)
	}
	if h := testutil.ToFloat64(tp.m.handoffs); h != 0 {
		t.Fatalf("%v hand-offs: the client left the loop", h)
	}
}

// An inline transaction never goes to the shared connection as written:
// Redis reads inline lines its own way (it looks for a line's end only up
// to a NUL byte, and would wait for more forever, holding up every other
// client's commands behind it on that connection). The proxy runs an
// inline transaction on a connection of its own, in multibulk form, and
// answers a line with a NUL byte as Redis does in the end (too big inline
// request), at once.
func TestInlineTransactionDoesNotReachTheSharedConnection(t *testing.T) {
	tp := startProxy(t, Config{}, redistest.Start(t).Addr)
	a, b, c := resptest.Dial(t, tp.Addr), resptest.Dial(t, tp.Addr), resptest.Dial(t, tp.Addr)
	a.Write([]byte("MULTI\r\nSET inl:k \"a b\"\r\nEXEC\r\n"))
	for _, want := range []string{"OK", "QUEUED", `[OK]`} {
		resptest.Expect(t, a.Read(), want)
	}
	resptest.Expect(t, a.Do("STRLEN", "inl:k"), "3")
	c.Write([]byte("MULTI\r\nSET inl:k a\x00b\r\nEXEC\r\n"))
	resptest.Expect(t, c.Read(), "OK")
	resptest.Expect(t, c.Read(), "(error) ERR Protocol error: too big inline request")
	c.ExpectClosed(2 * time.Second)
	for i := 0; i < 3; i++ {
		v, err := b.TryDo("INCR", "inl:n")
		if err != nil || v.String() != strconv.Itoa(i+1) {
			t.Fatalf("another client's INCR after the inline transactions: %v, %v", v, err)
		}
	}
	resptest.Expect(t, b.Do("GET", "inl:k"), `"a b"`)
}
