package proxy

import (
	"bufio"
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

// What clients see when the Redis server behind the proxy dies: error
// replies that say the outcome is unknown, never a hang, and service again
// once the server is back.

func stExpectLost(t *testing.T, v resptest.Value, what string) {
	t.Helper()
	if v.Type != '-' || !strings.Contains(v.Str, "lost") {
		t.Fatalf("%s: reply %s, want an error saying the connection was lost", what, v)
	}
}

func TestBackendKilledWithCommandsInFlight(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "--enable-debug-command", "local")
	tp := startProxy(t, Config{PoolSize: 2, OperatorPassword: "ops"}, r.Addr)
	a := resptest.Dial(t, tp.Addr)
	b := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, a.Do("AUTH", "redis-proxy-operator", "ops"), "OK") // DEBUG is the operator's
	resptest.Expect(t, b.Do("SET", "fail:k", "v"), "OK")

	// Redis sleeps on A's command; B's pipeline of writes waits behind it.
	// (Reads in flight on an event loop run again instead: see
	// TestReadsInFlightRunAgainAfterTheConnectionDies.)
	a.Send("DEBUG", "SLEEP", "3")
	time.Sleep(100 * time.Millisecond)
	const n = 4 // a new client's window: all of them are written (see windowBytes)
	var pipe [][]string
	for i := 0; i < n; i++ {
		pipe = append(pipe, []string{"INCR", "fail:w"})
	}
	b.Write(resptest.Cmds(pipe...))
	time.Sleep(100 * time.Millisecond)

	r.Kill()
	killed := time.Now()
	stExpectLost(t, a.ReadTimeout(2*time.Second), "DEBUG SLEEP in flight")
	for i := 0; i < n; i++ {
		stExpectLost(t, b.ReadTimeout(2*time.Second), "INCR in flight")
	}
	if d := time.Since(killed); d > 2*time.Second {
		t.Fatalf("in-flight commands answered %v after the kill", d)
	}

	// The pool heals by itself once the server is back.
	r.Restart()
	restarted := time.Now()
	c := resptest.Dial(t, tp.Addr)
	poll.Until(t, 5*time.Second, "SET through the proxy after the restart", func() bool {
		v, err := c.TryDo("SET", "fail:k2", "back")
		return err == nil && v.String() == "OK"
	})
	t.Logf("served again %v after the restart", time.Since(restarted))
	// The clients that saw the errors are still connected and served.
	resptest.Expect(t, a.Do("GET", "fail:k2"), `"back"`)
	resptest.Expect(t, b.Do("GET", "fail:k2"), `"back"`)
	for i := 0; i < 20; i++ {
		resptest.Expect(t, b.Do("INCR", "fail:n"), strconv.Itoa(i+1))
	}
}

func TestPinnedSessionServerDies(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("SET", "pin:k", "v"), "QUEUED")
	r.Kill()
	killed := time.Now()
	stExpectLost(t, c.DoTimeout(2*time.Second, "EXEC"), "EXEC after the server died")
	c.ExpectClosed(2 * time.Second)
	if d := time.Since(killed); d > 2*time.Second {
		t.Fatalf("the pinned client learned of the loss %v after the kill", d)
	}
	poll.Until(t, time.Second, "pinned back to 0", func() bool { return tp.pinned.Load() == 0 })

	r.Restart()
	c2 := resptest.Dial(t, tp.Addr)
	poll.Until(t, 5*time.Second, "a transaction through the proxy after the restart", func() bool {
		v, err := c2.TryDo("MULTI")
		if err != nil || v.String() != "OK" {
			return false
		}
		c2.TryDo("SET", "pin:k", "again")
		v, err = c2.TryDo("EXEC")
		return err == nil && v.String() == "[OK]"
	})
	resptest.Expect(t, c2.Do("GET", "pin:k"), `"again"`)
}

func TestSubscriberServerDies(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	sub := resptest.Dial(t, tp.Addr)
	sub.Send("SUBSCRIBE", "dies")
	resptest.Expect(t, sub.Read(), `["subscribe","dies",1]`)
	r.Kill()
	// The subscriber's connection ends, as it would with Redis itself,
	// instead of waiting for messages that will never come.
	sub.ExpectClosed(2 * time.Second)
	poll.Until(t, time.Second, "pinned back to 0", func() bool { return tp.pinned.Load() == 0 })
}

// A dedicated connection kept as a spare (after a transaction, or dialed
// ahead) may be closed by the server while idle (CLIENT KILL, Redis's
// timeout, a restart). The next session must get a working connection, not
// a dead one.
func TestDeadSpareConnectionNotHandedOut(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("INCR", "spare:n"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), "[1]")

	// Kill every spare: the proxy's unnamed connections (its shared ones
	// are named redis-proxy), once the warm ones are dialed.
	direct := resptest.Dial(t, r.Addr)
	spares := func() []string {
		var out []string
		for _, line := range strings.Split(direct.Do("CLIENT", "LIST").Str, "\n") {
			if strings.Contains(line, " name= ") && !strings.Contains(line, " cmd=client|list ") {
				out = append(out, line)
			}
		}
		return out
	}
	poll.Until(t, 5*time.Second, "the warm spares dialed", func() bool { return len(spares()) >= warmSpares })
	killed := 0
	for _, line := range spares() {
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		resptest.Expect(t, direct.Do("CLIENT", "KILL", "ID", id), "1")
		killed++
	}
	if killed < warmSpares {
		t.Fatalf("killed %d spare connections, want at least %d", killed, warmSpares)
	}
	time.Sleep(50 * time.Millisecond)

	c2 := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c2.Do("MULTI"), "OK")
	resptest.Expect(t, c2.Do("INCR", "spare:n"), "QUEUED")
	resptest.Expect(t, c2.Do("EXEC"), "[2]")
}

// Clients pipelining reads and writes while the server crashes and comes
// back, three times: every request gets exactly one reply, in its order
// (each GET asks for a key of its own, whose value names it, so a reply
// that belongs to another request shows), and the only errors are the
// "outcome unknown" of writes in flight. Reads never fail on an event
// loop or on the goroutine path: those in flight at a crash run again once
// the server is back (answered nil there: the restarted server is empty).
func TestPipelinesThroughServerCrashes(t *testing.T) {
	r := redistest.Start(t)
	tp := startProxy(t, Config{HoldTimeout: 20 * time.Second}, r.Addr)
	const readers, writers, keys, depth = 8, 3, 200, 20
	setup := r.Dial()
	for c := range readers {
		for j := range keys {
			setup.Send("SET", fmt.Sprintf("pc:%d:%d", c, j), fmt.Sprintf("%d:%d", c, j))
		}
	}
	if _, err := setup.Do(""); err != nil {
		t.Fatal(err)
	}

	type tally struct {
		replies, nils, lost int
		bad                 []string
	}
	stop := make(chan struct{})
	results := make([]tally, readers+writers)
	var wg sync.WaitGroup
	for c := range readers + writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[c]
			nc, err := net.Dial("tcp", tp.Addr)
			if err != nil {
				res.bad = append(res.bad, err.Error())
				return
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				var req [][]string
				for i := range depth {
					if c < readers {
						j := (round*depth + i) % keys
						req = append(req, []string{"GET", fmt.Sprintf("pc:%d:%d", c, j)})
					} else {
						req = append(req, []string{"INCR", fmt.Sprintf("pc:w:%d", c)})
					}
				}
				nc.SetDeadline(time.Now().Add(25 * time.Second))
				if _, err := nc.Write(resptest.Cmds(req...)); err != nil {
					res.bad = append(res.bad, err.Error())
					return
				}
				for i := range depth {
					v, err := resptest.ReadValue(br)
					if err != nil {
						res.bad = append(res.bad, fmt.Sprintf("reply %d of round %d: %v", i, round, err))
						return
					}
					res.replies++
					switch {
					case v.Type == '-' && strings.Contains(v.Str, "lost"):
						res.lost++
					case v.Null:
						res.nils++
					case c < readers && v.Type == '$' && v.Str == fmt.Sprintf("%d:%d", c, (round*depth+i)%keys):
					case c >= readers && v.Type == ':':
					default:
						res.bad = append(res.bad, fmt.Sprintf("%v to %v", v, req[i]))
					}
				}
			}
		}()
	}
	probe := resptest.Dial(t, tp.Addr)
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		r.Kill()
		time.Sleep(50 * time.Millisecond)
		r.Restart()
		poll.Until(t, 10*time.Second, "the proxy serving after the restart", func() bool {
			v, err := probe.TryDo("GET", "pc:probe")
			return err == nil && v.Null
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	var readLost, nils int
	for c, res := range results {
		if len(res.bad) > 0 {
			t.Errorf("client %d: %d replies, then: %v", c, res.replies, res.bad[:min(len(res.bad), 5)])
		}
		if c < readers {
			readLost += res.lost
			nils += res.nils
		}
		t.Logf("client %d: %d replies, %d nil, %d lost", c, res.replies, res.nils, res.lost)
	}
	t.Logf("reads given back to run again: %v", testutil.ToFloat64(tp.m.requeued.WithLabelValues("yes")))
	if nils == 0 {
		t.Errorf("no read was answered by a restarted server: the test did not test much")
	}
	if readLost > 0 {
		t.Errorf("%d reads failed with the connection; they should have run again", readLost)
	}
}

// rerunFrom: of a client's written, unanswered commands, the trailing
// run of those that may run again does (the rule both paths follow; see
// rerun.go).
func TestRerunFrom(t *testing.T) {
	cases := []struct {
		cmds string // r: rerunnable, w: not
		want int
	}{
		{"", 0},
		{"r", 0},
		{"rr", 0},
		{"w", 1},
		{"wr", 1},
		{"rw", 2},
		{"rwr", 2},
		{"rwrr", 2},
		{"wrw", 3},
	}
	for _, tc := range cases {
		got := rerunFrom(len(tc.cmds), func(i int) bool { return tc.cmds[i] == 'r' })
		if got != tc.want {
			t.Errorf("rerunFrom(%q) = %d, want %d", tc.cmds, got, tc.want)
		}
	}
}

// slowScript runs about ms milliseconds in Redis (it watches the clock, so
// a slow machine does not shorten it).
func slowScript(ms int) []string {
	return []string{"EVAL", `local s = redis.call('TIME')
repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) >= tonumber(ARGV[1]) * 1000
return 1`, "0", strconv.Itoa(ms)}
}

// On the goroutine path too, reads a shared connection had written and not
// answered when it died run again once a connection is up, by the same
// rule as on an event loop: a pipeline of GETs, an MGET, a GET after its
// client's SET (which fails), and a GET followed by the proxy's own reply
// to SELECT 0 (the session writes replies in order itself, which a loop
// cannot). A GET with a write of its client after it fails with it, as
// does a slow read (a read-only script).
func TestReadsInFlightRunAgainOnTheGoroutinePath(t *testing.T) {
	r, tp, blocker, pipe, setGet, getIncr, getSelect, mget, slowRead := inFlightAtCrash(t, Config{EventLoops: -1, HoldTimeout: 20 * time.Second})
	stExpectLost(t, blocker.Read(), "the script in Redis")
	stExpectLost(t, setGet.Read(), "a SET in flight")
	stExpectLost(t, getIncr.Read(), "a GET with an INCR of its client behind it")
	stExpectLost(t, getIncr.Read(), "an INCR in flight")
	stExpectLost(t, slowRead.Read(), "a read-only script in flight")
	poll.Until(t, 5*time.Second, "6 reads given back", func() bool {
		return testutil.ToFloat64(tp.m.requeued.WithLabelValues("yes")) == 6
	})
	time.Sleep(100 * time.Millisecond)
	r.Restart()
	// The restarted server has no rr:k: the nils say the reads ran there.
	for range 3 {
		resptest.Expect(t, pipe.ReadTimeout(15*time.Second), "<nil>")
	}
	resptest.Expect(t, setGet.ReadTimeout(15*time.Second), "<nil>")
	resptest.Expect(t, getSelect.ReadTimeout(15*time.Second), "<nil>")
	resptest.Expect(t, getSelect.Read(), "OK")
	resptest.Expect(t, mget.ReadTimeout(15*time.Second), "[<nil>,<nil>]")
	if n := testutil.ToFloat64(tp.m.requeued.WithLabelValues("yes")); n != 6 {
		t.Fatalf("%v reads given back, want 6 (3 GETs, the GET after SET, the GET before SELECT, MGET)", n)
	}
}

// inFlightAtCrash starts Redis and a proxy with cfg, has seven clients
// send their requests while a script of a second holds Redis (so all of
// them are in flight), and kills Redis: blocker ran the script; pipe sent
// three GETs, setGet SET+GET, getIncr GET+INCR, getSelect GET+SELECT 0,
// mget an MGET, slowRead a read-only script. Redis had rr:k = "before".
func inFlightAtCrash(t *testing.T, cfg Config) (r *redistest.Server, tp *testProxy, blocker, pipe, setGet, getIncr, getSelect, mget, slowRead *resptest.Conn) {
	t.Helper()
	r = redistest.Start(t)
	if _, err := r.Do("SET", "rr:k", "before"); err != nil {
		t.Fatal(err)
	}
	tp = startProxy(t, cfg, r.Addr)
	conns := make([]*resptest.Conn, 7)
	for i := range conns {
		conns[i] = resptest.Dial(t, tp.Addr)
		resptest.Expect(t, conns[i].Do("PING"), "PONG")
	}
	blocker, pipe, setGet, getIncr, getSelect, mget, slowRead = conns[0], conns[1], conns[2], conns[3], conns[4], conns[5], conns[6]
	blocker.Send(slowScript(1000)...)
	time.Sleep(50 * time.Millisecond) // the script runs; the rest waits behind it in Redis
	pipe.Write(resptest.Cmds([]string{"GET", "rr:k"}, []string{"GET", "rr:k"}, []string{"GET", "rr:k"}))
	setGet.Write(resptest.Cmds([]string{"SET", "rr:w", "x"}, []string{"GET", "rr:k"}))
	getIncr.Write(resptest.Cmds([]string{"GET", "rr:k"}, []string{"INCR", "rr:n"}))
	getSelect.Write(resptest.Cmds([]string{"GET", "rr:k"}, []string{"SELECT", "0"}))
	mget.Send("MGET", "rr:k", "rr:x")
	slowRead.Send("EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "rr:k")
	time.Sleep(100 * time.Millisecond)
	r.Kill()
	return r, tp, blocker, pipe, setGet, getIncr, getSelect, mget, slowRead
}

// A server restarted under load answers -LOADING while it loads its
// dataset: through the proxy, clients wait as while no master is known and
// then go on; no -LOADING reaches them.
func TestNoLoadingErrorsAfterRestart(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "--enable-debug-command", "yes")
	setup := r.Dial(redis.DialReadTimeout(time.Minute))
	if _, err := setup.Do("DEBUG", "POPULATE", "1000000", "load", "100"); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Do("SAVE"); err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, Config{HoldTimeout: 20 * time.Second}, r.Addr)
	stop := make(chan struct{})
	type tally struct{ ok, loading, other int }
	results := make(chan tally)
	for w := range 4 {
		go func() {
			var n tally
			defer func() { results <- n }()
			c, err := net.Dial("tcp", tp.Addr)
			if err != nil {
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := c.Write(resptest.Cmd("SET", fmt.Sprintf("w%d:%d", w, i), "v")); err != nil {
					return
				}
				line, err := br.ReadString('\n')
				switch {
				case err != nil:
					// The client was dropped (a write in flight at the
					// crash): another connection goes on.
					c.Close()
					if c, err = net.Dial("tcp", tp.Addr); err != nil {
						return
					}
					br = bufio.NewReader(c)
				case strings.HasPrefix(line, "-LOADING"):
					n.loading++
				case strings.HasPrefix(line, "-"):
					n.other++
					t.Logf("writer %d: %q", w, line)
				default:
					n.ok++
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	r.Kill()
	r.RestartLoading()
	// It loads for a while: -LOADING to a direct client meanwhile.
	loadingSeen := false
	for range 100 {
		if _, err := r.Do("PING"); err != nil && strings.HasPrefix(err.Error(), "LOADING") {
			loadingSeen = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	poll.Until(t, 30*time.Second, "the server loaded", func() bool {
		_, err := r.Do("PING")
		return err == nil
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	var sum tally
	for range 4 {
		n := <-results
		sum.ok, sum.loading, sum.other = sum.ok+n.ok, sum.loading+n.loading, sum.other+n.other
	}
	t.Logf("writes: %d ok, %d -LOADING, %d other errors; the server answered -LOADING directly while loading: %v", sum.ok, sum.loading, sum.other, loadingSeen)
	if !loadingSeen {
		t.Fatal("the restarted server never answered -LOADING: the test proves nothing")
	}
	if sum.loading > 0 {
		t.Errorf("%d -LOADING replies reached clients", sum.loading)
	}
}
