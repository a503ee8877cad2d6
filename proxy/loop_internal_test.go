//go:build linux

package proxy

// Tests of the event loop's pieces: busy polling, coalescing, running
// again after a connection dies, returning to the loop, and a benchmark of
// the per-command work.

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// TestSpinningDecision: a loop polls only with busy polling on, for one or
// two recently active clients, within the polling period of its last event.
func TestSpinningDecision(t *testing.T) {
	const us = time.Microsecond
	for _, tc := range []struct {
		spin       time.Duration
		clients    int
		sinceEvent time.Duration
		want       bool
	}{
		{100 * us, 1, 10 * us, true},
		{100 * us, 2, 99 * us, true},
		{100 * us, 1, 100 * us, false}, // the period is over: sleep
		{100 * us, 3, 10 * us, false},  // many clients: the wait gathers their commands
		{100 * us, 50, 0, false},
		{100 * us, 0, 10 * us, false}, // no client traffic (a task, a backend event)
		{0, 1, 0, false},              // off
	} {
		if got := spinning(tc.spin, tc.clients, tc.sinceEvent); got != tc.want {
			t.Errorf("spinning(%v, %d, %v) = %v, want %v", tc.spin, tc.clients, tc.sinceEvent, got, tc.want)
		}
	}
}

// threadCPU is the CPU time a thread of this process has used.
func threadCPU(t *testing.T, tid int32) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		t.Fatalf("thread stat: %v", err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	// After the name: state is field 3, utime 14 and stime 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// With busy polling, a loop serving one client polls between its requests
// (the metric shows it), and once the client goes quiet the loop sleeps:
// its thread uses (almost) no CPU. With polling off, it never polls.
func TestBusyPollPollsThenSleeps(t *testing.T) {
	needEventLoops(t)
	r := redistest.Start(t)
	for _, tc := range []struct {
		spin    time.Duration
		polling bool
	}{{2 * time.Millisecond, true}, {-1, false}} {
		tp := startProxy(t, Config{BusyPoll: tc.spin, EventLoops: 1}, r.Addr)
		c := resptest.Dial(t, tp.Addr)
		for i := 0; i < 300; i++ {
			resptest.Expect(t, c.Do("GET", "bp:missing"), "<nil>")
		}
		polled := testutil.ToFloat64(tp.m.busyPoll)
		t.Logf("BusyPoll %v: polled %.1f ms over 300 requests", tc.spin, polled*1000)
		if (polled > 0) != tc.polling {
			t.Fatalf("BusyPoll %v: polled %v s, want polling %v", tc.spin, polled, tc.polling)
		}
		tid := tp.loops[0].tid.Load()
		before := threadCPU(t, tid)
		time.Sleep(500 * time.Millisecond)
		idle := threadCPU(t, tid) - before
		t.Logf("BusyPoll %v: loop thread CPU over 500 ms idle: %v", tc.spin, idle)
		if idle > 50*time.Millisecond {
			t.Fatalf("BusyPoll %v: the idle loop used %v of CPU in 500 ms: it did not go to sleep", tc.spin, idle)
		}
	}
}

// BenchmarkParseAndClassify parses what redis-benchmark -P 16 sends for
// SET and classifies each command, as the event loop does per command
// before it queues it: the request parser, the lookup cache and the
// classifier, with a table of Redis's size.
func BenchmarkParseAndClassify(b *testing.B) {
	var chunk []byte
	for i := 0; i < 16; i++ {
		chunk = append(chunk, "*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n"...)
	}
	entry := func(name string, arity int64, flags ...any) []any {
		return []any{[]byte(name), arity, flags, int64(1), int64(1), int64(1), []any{}, []any{}, []any{}, []any{}}
	}
	reply := []any{entry("set", -3, []byte("write"))}
	for i := 0; i < 240; i++ {
		reply = append(reply, entry("cmd"+strconv.Itoa(i), 2, []byte("readonly")))
	}
	p, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	tbl, err := command.Build("bench", reply, p.m.commandCounters)
	if err != nil {
		b.Fatal(err)
	}
	s := &session{p: p}
	s.st.Authed = true
	var parser resp.Parser
	var local []byte
	b.ReportAllocs()
	for b.Loop() {
		for buf := chunk; len(buf) > 0; {
			cmd, n, err := parser.Next(buf)
			if n == 0 || err != nil {
				b.Fatal("parse failed")
			}
			d, l := s.decide(tbl, cmd, local[:0])
			if d.Kind != command.Forward || d.Info.Name != "set" {
				b.Fatalf("decided %v for %s", d.Kind, d.Info.Name)
			}
			s.commit(&d, cmd.Args)
			local = l
			buf = buf[n:]
		}
	}
}

// batches reads the loop's commands-per-write histogram: how many writes,
// how many commands, and how many writes carried at most two and at most
// four commands.
func batches(t *testing.T, tp *testProxy) (writes, commands, upTo2, upTo4 int) {
	t.Helper()
	var m dto.Metric
	if err := tp.m.backendBatch.Write(&m); err != nil {
		t.Fatalf("histogram: %v", err)
	}
	h := m.GetHistogram()
	for _, b := range h.GetBucket() {
		switch b.GetUpperBound() {
		case 2:
			upTo2 = int(b.GetCumulativeCount())
		case 4:
			upTo4 = int(b.GetCumulativeCount())
		}
	}
	return int(h.GetSampleCount()), int(h.GetSampleSum()), upTo2, upTo4
}

// loopWaiting reads, on the loop's own goroutine, how many clients it
// counts as awaiting replies.
func loopWaiting(t *testing.T, tp *testProxy) int {
	return onLoop(t, tp, func(l *evloop) int { return l.waiting })
}

// onLoop returns f of the proxy's first loop, run on the loop's goroutine.
func onLoop(t *testing.T, tp *testProxy, f func(*evloop) int) int {
	t.Helper()
	ch := make(chan int, 1)
	tp.loops[0].post(func() { ch <- f(tp.loops[0]) })
	select {
	case n := <-ch:
		return n
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not run a task within 5s")
		return 0
	}
}

// heldSETs: the SETs of setsBehindScript that wait for the script's reply.
const heldSETs = 5

// setsBehindScript starts a script of about a second in Redis through tp,
// then sends a SET from each of coalesceMinClients-1+heldSETs other
// clients, one at a time: the script's client waits, and each SET adds one
// more, so with coalescing the first SETs go at once and the last heldSETs
// wait for the script's reply. SET i sets co:i to i. running, if set, is
// called once the script runs, before the SETs.
func setsBehindScript(t *testing.T, tp *testProxy, running func()) (slow *resptest.Conn, clients []*resptest.Conn) {
	t.Helper()
	slow = resptest.Dial(t, tp.Addr)
	clients = make([]*resptest.Conn, coalesceMinClients-1+heldSETs)
	for i := range clients {
		clients[i] = resptest.Dial(t, tp.Addr)
		resptest.Expect(t, clients[i].Do("PING"), "PONG") // connected and on the loop
	}
	slow.Send(slowScript(1000)...)
	time.Sleep(50 * time.Millisecond) // the script is running
	if running != nil {
		running()
	}
	for i, c := range clients {
		c.Send("SET", "co:"+strconv.Itoa(i), strconv.Itoa(i))
		time.Sleep(20 * time.Millisecond) // read on its own
	}
	return slow, clients
}

// While a write is unanswered (a slow script runs in Redis) and more than
// two clients await replies, the loop holds further requests and sends
// them as one write once the script's reply is in; with WriteAtOnce each
// goes out when it is read. Either way every client gets its own reply,
// and the loop's count of waiting clients returns to zero, also after a
// client that closed before its reply came.
func TestCoalescingHoldsRequestsBehindAnUnansweredWrite(t *testing.T) {
	needEventLoops(t)
	r := redistest.Start(t)
	for _, atOnce := range []bool{false, true} {
		t.Run(fmt.Sprintf("WriteAtOnce=%v", atOnce), func(t *testing.T) {
			tp := startProxy(t, Config{EventLoops: 1, WriteAtOnce: atOnce}, r.Addr)
			var w0, c0, s0, f0 int
			slow, clients := setsBehindScript(t, tp, func() { w0, c0, s0, f0 = batches(t, tp) })
			n := len(clients)
			resptest.Expect(t, slow.ReadTimeout(10*time.Second), "1")
			for _, c := range clients {
				resptest.Expect(t, c.Read(), "OK")
			}
			w1, c1, s1, f1 := batches(t, tp)
			writes, commands, upTo2, upTo4 := w1-w0, c1-c0, s1-s0, f1-f0
			t.Logf("%d SETs behind a 1 s script: %d commands in %d writes (%d of at most two, %d of at most four)",
				n, commands, writes, upTo2, upTo4)
			if commands != n {
				t.Fatalf("%d commands written, want %d", commands, n)
			}
			// Each SET is read on its own, normally; a stalled machine may
			// read two together, never the five that waited.
			if atOnce && upTo2 != writes {
				t.Fatalf("%d writes, %d of them of more than two commands: want each SET at once", writes, writes-upTo2)
			}
			if !atOnce && (writes-upTo4 != 1 || writes > n-heldSETs+1) {
				t.Fatalf("%d writes (%d of more than four commands), want at most %d: the first SETs alone, then the %d behind them together",
					writes, writes-upTo4, n-heldSETs+1, heldSETs)
			}
			for i := range clients {
				got, err := redis.String(r.Do("GET", "co:"+strconv.Itoa(i)))
				if err != nil || got != strconv.Itoa(i) {
					t.Fatalf("co:%d = %q (%v) in Redis, want %d", i, got, err, i)
				}
			}

			// A client that goes away (a reset, not a half-close, which
			// is answered first) while it is owed a reply is no longer
			// counted as waiting.
			gone := resptest.Dial(t, tp.Addr)
			gone.Send(slowScript(300)...)
			time.Sleep(20 * time.Millisecond)
			gone.NetConn().(*net.TCPConn).SetLinger(0)
			gone.Close()
			time.Sleep(100 * time.Millisecond) // the loop saw the reset while the script runs
			poll.UntilNil(t, 5*time.Second, "no client waiting after every reply and close", func() error {
				if n := loopWaiting(t, tp); n != 0 {
					return fmt.Errorf("the loop counts %d clients waiting", n)
				}
				return nil
			})
		})
	}
}

// compact drops answered waiters: all once none is owed, the answered
// ones once they are many and at least half, and nothing otherwise; the
// written mark moves with them.
func TestWaitersCompact(t *testing.T) {
	infos := make([]command.Info, 5000)
	mk := func(n, head, sent int) *lconn {
		b := &lconn{head: head, sent: sent}
		for i := 0; i < n; i++ {
			b.waiters = append(b.waiters, waiter{info: &infos[i]})
		}
		return b
	}
	for _, tc := range []struct {
		n, head, sent            int
		wantLen, wantHead, wSent int
	}{
		{10, 10, 10, 0, 0, 0},                // all answered
		{3000, 2000, 2500, 1000, 0, 500},     // many answered, at least half
		{3000, 1000, 2500, 3000, 1000, 2500}, // a third answered: later
		{2500, 1500, 2500, 1000, 0, 1000},
		{1000, 600, 1000, 1000, 600, 1000}, // too few to bother
	} {
		b := mk(tc.n, tc.head, tc.sent)
		first := b.waiters[tc.head:]
		var want *command.Info
		if len(first) > 0 {
			want = first[0].info
		}
		b.compact()
		if len(b.waiters) != tc.wantLen || b.head != tc.wantHead || b.sent != tc.wSent {
			t.Errorf("compact(%d waiters, head %d, sent %d): %d waiters, head %d, sent %d; want %d, %d, %d",
				tc.n, tc.head, tc.sent, len(b.waiters), b.head, b.sent, tc.wantLen, tc.wantHead, tc.wSent)
			continue
		}
		if want != nil && b.waiters[b.head].info != want {
			t.Errorf("compact(%d, %d, %d): the first owed waiter moved out of place", tc.n, tc.head, tc.sent)
		}
	}
}

// Requests held by coalescing were never sent: when the connection dies
// (Redis killed while the script runs) they wait for a connection again
// and run once Redis is back, instead of failing like those Redis had; a
// transaction block among them runs whole. A client with a reply of the
// proxy's own behind its held request gets the error, as before, so that
// its replies stay in order.
func TestCoalescedRequestsRunAgainAfterTheConnectionDies(t *testing.T) {
	needEventLoops(t)
	r := redistest.Start(t)
	tp := startProxy(t, Config{EventLoops: 1, HoldTimeout: 20 * time.Second}, r.Addr)
	slow, clients := setsBehindScript(t, tp, nil)
	tx, local := resptest.Dial(t, tp.Addr), resptest.Dial(t, tp.Addr)
	tx.Write(resptest.Cmds([]string{"MULTI"}, []string{"INCR", "co:tx"}, []string{"INCR", "co:tx"}, []string{"EXEC"}))
	local.Write(resptest.Cmds([]string{"SET", "co:local", "x"}, []string{"SELECT", "0"}))
	time.Sleep(50 * time.Millisecond) // held too
	r.Kill()
	stExpectLost(t, slow.Read(), "the script, sent when Redis died")
	sent := len(clients) - heldSETs
	for _, c := range clients[:sent] {
		stExpectLost(t, c.Read(), "a SET sent behind the script")
	}
	stExpectLost(t, local.Read(), "a held SET with SELECT's reply behind it")
	resptest.Expect(t, local.Read(), "OK")
	time.Sleep(200 * time.Millisecond) // the held SETs wait for a connection
	r.Restart()
	for i, c := range clients[sent:] {
		resptest.Expect(t, c.ReadTimeout(15*time.Second), "OK")
		resptest.Expect(t, c.Do("GET", "co:"+strconv.Itoa(sent+i)), strconv.Quote(strconv.Itoa(sent+i)))
	}
	for _, want := range []string{"OK", "QUEUED", "QUEUED", "[1,2]"} {
		resptest.Expect(t, tx.Read(), want)
	}
	if n := loopWaiting(t, tp); n != 0 {
		t.Fatalf("the loop counts %d clients waiting after every reply", n)
	}
}

// giveBack: which requests of a dead connection run again. Those never
// written always; written fast reads when nothing but such reads or unwritten
// requests of the same client follows them, once per client between
// replies; nothing of a client that is gone or has a reply of the proxy's
// own queued behind.
func TestGiveBack(t *testing.T) {
	get := &command.Info{Name: "get", Flags: command.Readonly | command.Fast}
	set := &command.Info{Name: "set", Flags: command.Write}
	keys := &command.Info{Name: "keys", Flags: command.Readonly}
	multi := &command.Info{Name: "multi"}
	a, b := &lclient{}, &lclient{}
	retried := &lclient{retried: true}
	gone := &lclient{dead: true}
	after := &lclient{after: []byte("+OK\r\n")}
	r := func(c *lclient) waiter { return waiter{c: c, info: get, n: 20} }
	w := func(c *lclient) waiter { return waiter{c: c, info: set, n: 30} }
	for _, tc := range []struct {
		name  string
		ws    []waiter
		sent  int
		reads bool
		want  []bool
	}{
		{"never written: back", []waiter{w(a), r(a), w(b)}, 0, false, []bool{true, true, true}},
		{"written, not a lost connection: fail", []waiter{r(a), w(a), r(a)}, 2, false, []bool{false, false, true}},
		{"reads in flight: back", []waiter{r(a), r(b), r(a)}, 3, true, []bool{true, true, true}},
		{"reads behind a write: back", []waiter{w(a), r(a), r(a)}, 3, true, []bool{false, true, true}},
		{"a read ahead of a write: fails", []waiter{r(a), w(a), r(a)}, 3, true, []bool{false, false, true}},
		{"each client's last run", []waiter{r(a), w(a), r(b), r(a), w(b)}, 5, true, []bool{false, false, false, true, false}},
		{"unwritten behind a failing write", []waiter{r(a), w(a), w(a), r(a)}, 2, true, []bool{false, false, true, true}},
		{"reads followed by unwritten ones", []waiter{r(a), r(a), w(a)}, 2, true, []bool{true, true, true}},
		{"once between replies", []waiter{r(retried), r(retried), w(retried)}, 2, true, []bool{false, false, true}},
		{"client gone", []waiter{r(gone), r(gone)}, 1, true, []bool{false, false}},
		{"proxy's reply behind", []waiter{r(after), w(after)}, 1, true, []bool{false, false}},
		{"a slow read: fails", []waiter{{c: a, info: keys, n: 20}, r(a), {c: b, info: keys, n: 20}}, 3, true, []bool{false, true, false}},
		{"transaction", []waiter{{c: a, info: multi, n: 60}, {c: a, info: get}, {c: a, info: get}}, 3, true, []bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := giveBack(tc.ws, tc.sent, tc.reads); !slices.Equal(got, tc.want) {
				t.Fatalf("giveBack = %v, want %v", got, tc.want)
			}
		})
	}
}

// Reads that a connection had written and not answered when it died run
// again once a connection is up (here: once Redis is back), so their
// clients see a pause, not an error: a pipeline of GETs, an MGET, a GET
// behind the client's own SET (whose outcome is unknown: an error). A GET
// followed by a write of the same client, or by a reply of the proxy's
// own, fails like what follows it, which keeps the client's replies in
// order; so does a slow read (a read-only script), which is not run
// again.
func TestReadsInFlightRunAgainAfterTheConnectionDies(t *testing.T) {
	needEventLoops(t)
	r, tp, blocker, pipe, setGet, getIncr, getSelect, mget, slowRead := inFlightAtCrash(t, Config{EventLoops: 1, WriteAtOnce: true, HoldTimeout: 20 * time.Second})
	stExpectLost(t, blocker.Read(), "the script in Redis")
	stExpectLost(t, setGet.Read(), "a SET in flight")
	stExpectLost(t, getIncr.Read(), "a GET with an INCR of its client behind it")
	stExpectLost(t, getIncr.Read(), "an INCR in flight")
	stExpectLost(t, getSelect.Read(), "a GET with the proxy's reply to SELECT behind it")
	resptest.Expect(t, getSelect.Read(), "OK")
	stExpectLost(t, slowRead.Read(), "a read-only script in flight")
	if n := testutil.ToFloat64(tp.m.requeued.WithLabelValues("yes")); n != 5 {
		t.Fatalf("%v reads given back, want 5 (3 GETs, the GET behind SET, MGET)", n)
	}
	time.Sleep(100 * time.Millisecond)
	r.Restart()
	// The restarted server has no rr:k: the nils say the reads ran there.
	for range 3 {
		resptest.Expect(t, pipe.ReadTimeout(15*time.Second), "<nil>")
	}
	resptest.Expect(t, setGet.ReadTimeout(15*time.Second), "<nil>")
	resptest.Expect(t, mget.ReadTimeout(15*time.Second), "[<nil>,<nil>]")
	if n := loopWaiting(t, tp); n != 0 {
		t.Fatalf("the loop counts %d clients waiting after every reply", n)
	}
}

// With reads from replicas, reads in flight on a replica that dies run
// again elsewhere (on an event loop and on the goroutine path): here the only replica dies under a read-only script (a
// slow read: it fails) and a pipeline of GETs, which run again on the
// master, which has the data.
func TestReadsInFlightOnADeadReplicaRunOnTheMaster(t *testing.T) {
	m, rep := redistest.Start(t), redistest.Start(t)
	rep.ReplicaOf(m)
	if _, err := m.Do("SET", "rr:k", "v"); err != nil {
		t.Fatal(err)
	}
	expectReplicated(t, "rr:k", rep)
	tp := startProxy(t, Config{ReadFrom: ReadFromReplicas, HoldTimeout: 20 * time.Second}, m.Addr, rep.Addr)
	blocker, reader := resptest.Dial(t, tp.Addr), resptest.Dial(t, tp.Addr)
	script := slowScript(1000)
	script[0] = "EVAL_RO"
	blocker.Send(script...)
	time.Sleep(50 * time.Millisecond)
	reader.Write(resptest.Cmds([]string{"GET", "rr:k"}, []string{"GET", "rr:k"}, []string{"GET", "rr:k"}))
	time.Sleep(100 * time.Millisecond)
	rep.Kill()
	stExpectLost(t, blocker.ReadTimeout(5*time.Second), "a read-only script on the replica")
	for range 3 {
		resptest.Expect(t, reader.ReadTimeout(15*time.Second), `"v"`)
	}
	if n := stCmdStat(t, m, "get"); n != 3 {
		t.Fatalf("GET calls on the master = %d, want 3", n)
	}
	if n := testutil.ToFloat64(tp.m.requeued.WithLabelValues("yes")); n != 3 {
		t.Fatalf("%v reads given back, want 3", n)
	}
}

// loopClients reads, on the loop's own goroutine, how many clients it
// serves.
func loopClients(t *testing.T, tp *testProxy) int {
	return onLoop(t, tp, func(l *evloop) int { return len(l.clients) })
}

// A client moved off the event loop by WATCH (or an interactive MULTI)
// goes back to it after loopReturnAfter batches without a dedicated
// connection, and the next WATCH moves it off again; its replies are
// those of Redis throughout. It is not moved back while it holds a
// dedicated connection (here: a database other than 0). It goes back with
// what it sent and the proxy has not run yet (here: half a request, which
// the loop completes), and after inline commands (the parser is the same
// on both paths).
func TestClientReturnsToTheLoop(t *testing.T) {
	needEventLoops(t)
	r := redistest.Start(t)
	tp := startProxy(t, Config{EventLoops: 1}, r.Addr)
	moves := func() (off, back int) {
		return int(testutil.ToFloat64(tp.m.handoffs)), int(testutil.ToFloat64(tp.m.loopReturns))
	}
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("SET", "ret:n", "1"), "OK")
	transaction := func() {
		t.Helper()
		resptest.Expect(t, c.Do("WATCH", "ret:n"), "OK")
		resptest.Expect(t, c.Do("MULTI"), "OK")
		resptest.Expect(t, c.Do("INCR", "ret:n"), "QUEUED")
		v := c.Do("EXEC")
		if v.Type != '*' || len(v.Elems) != 1 {
			t.Fatalf("EXEC: %s, want one reply", v)
		}
	}
	transaction()
	if off, back := moves(); off != 1 || back != 0 || loopClients(t, tp) != 0 {
		t.Fatalf("after WATCH: %d moves off the loop, %d back, %d clients on the loop; want 1, 0, 0", off, back, loopClients(t, tp))
	}
	// The transaction's EXEC released the dedicated connection: one
	// batch without it so far.
	for i := 2; i < loopReturnAfter; i++ {
		resptest.Expect(t, c.Do("GET", "ret:n"), `"2"`)
	}
	// A PING and half a SET in one write: the batch (the PING) is the
	// last before the return, and the half request goes with the client.
	set := resptest.Cmd("SET", "ret:s", "whole")
	c.Write(append(resptest.Cmd("PING"), set[:9]...))
	resptest.Expect(t, c.Read(), "PONG")
	poll.Until(t, 5*time.Second, "the client back on the loop", func() bool { return loopClients(t, tp) == 1 })
	c.Write(set[9:])
	resptest.Expect(t, c.Read(), "OK")
	if off, back := moves(); off != 1 || back != 1 {
		t.Fatalf("%d moves off the loop, %d back; want 1 and 1", off, back)
	}
	resptest.Expect(t, c.Do("GET", "ret:s"), `"whole"`)
	resptest.Expect(t, c.Do("INCR", "ret:n"), "3")

	// Off again at the next WATCH, as often as it comes.
	transaction()
	if off, _ := moves(); off != 2 {
		t.Fatalf("%d moves off the loop, want 2", off)
	}
	// A database other than 0 holds a dedicated connection: no return.
	resptest.Expect(t, c.Do("SELECT", "1"), "OK")
	for range 2 * loopReturnAfter {
		resptest.Expect(t, c.Do("GET", "ret:n"), "<nil>")
	}
	if _, back := moves(); back != 1 {
		t.Fatalf("moved back to the loop while in database 1")
	}
	resptest.Expect(t, c.Do("SELECT", "0"), "OK")
	for range loopReturnAfter {
		resptest.Expect(t, c.Do("GET", "ret:n"), `"4"`)
	}
	poll.Until(t, 5*time.Second, "the client back on the loop", func() bool { return loopClients(t, tp) == 1 })
	if off, back := moves(); off != 2 || back != 2 {
		t.Fatalf("%d moves off the loop, %d back; want 2 and 2", off, back)
	}
	resptest.Expect(t, c.Do("GET", "ret:n"), `"4"`)

	// A client that sends inline commands goes back too.
	in := resptest.Dial(t, tp.Addr)
	in.Write([]byte("WATCH ret:n\r\n"))
	resptest.Expect(t, in.Read(), "OK")
	resptest.Expect(t, in.Do("UNWATCH"), "OK")
	for range loopReturnAfter {
		in.Write([]byte("GET ret:n\r\n"))
		resptest.Expect(t, in.Read(), `"4"`)
	}
	poll.Until(t, 5*time.Second, "the inline client back on the loop", func() bool { return loopClients(t, tp) == 2 })
	if off, back := moves(); off != 3 || back != 3 {
		t.Fatalf("%d moves off the loop, %d back; want 3 and 3", off, back)
	}
	in.Write([]byte("GET ret:n\r\n"))
	resptest.Expect(t, in.Read(), `"4"`)
}

// The three writes of testdata/redcon-split.hex (from a differential run;
// the first moves the client off the loop at its MULTI) once found a
// client moved back to the loop while the goroutine path's reader (redcon
// then) still held some of its commands, which were lost. With a return
// tried after every batch, every reply must equal Redis's, and the client
// must still go back to the loop.
func TestClientReturnsWithWhatItSent(t *testing.T) {
	needEventLoops(t)
	text, err := os.ReadFile("testdata/redcon-split.hex")
	if err != nil {
		t.Fatal(err)
	}
	var writes [][]byte
	for _, line := range strings.Fields(string(text)) {
		b, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		writes = append(writes, b)
	}
	direct, backend := dtRedisPair(t)
	tp := startProxy(t, Config{EventLoops: 1}, backend)
	tp.returnAfter.Store(1)
	a, b := resptest.Dial(t, direct), resptest.Dial(t, tp.Addr)
	// exchange writes w on c as one write and returns its replies: those
	// before the sentinel PING of Exchange, sent on its own once w has
	// surely been read.
	exchange := func(c *resptest.Conn, w []byte) []byte {
		t.Helper()
		c.Write(w)
		time.Sleep(50 * time.Millisecond)
		return c.Exchange(nil)
	}
	for i, w := range writes {
		// Each write is answered before the next goes.
		want, got := exchange(a, w), exchange(b, w)
		if !bytes.Equal(want, got) {
			t.Fatalf("write %d: replies differ\n redis: %.400q\n proxy: %.400q", i, want, got)
		}
	}
	if back := testutil.ToFloat64(tp.m.loopReturns); back < 1 {
		t.Fatalf("the client never went back to the loop (%v returns)", back)
	}
}
