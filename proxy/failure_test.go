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

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// What clients see when the Redis server behind the proxy dies: error
// replies that say the outcome is unknown, never a hang, and service again
// once the server is back.

func stExpectLost(t *testing.T, v stValue, what string) {
	t.Helper()
	if v.typ != '-' || !strings.Contains(v.str, "lost") {
		t.Fatalf("%s: reply %s, want an error saying the connection was lost", what, v)
	}
}

func TestBackendKilledWithCommandsInFlight(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "--enable-debug-command", "local")
	tp := startProxy(t, Config{PoolSize: 2}, r.Addr)
	a := stDial(t, tp.Addr)
	b := stDial(t, tp.Addr)
	stExpect(t, b.do("SET", "fail:k", "v"), "OK")

	// Redis sleeps on A's command; B's pipeline of writes waits behind it.
	// (Reads in flight on an event loop run again instead: see
	// TestReadsInFlightRunAgainAfterTheConnectionDies.)
	a.send("DEBUG", "SLEEP", "3")
	time.Sleep(100 * time.Millisecond)
	const n = 10
	var pipe [][]string
	for i := 0; i < n; i++ {
		pipe = append(pipe, []string{"INCR", "fail:w"})
	}
	b.write(stCmds(pipe...))
	time.Sleep(100 * time.Millisecond)

	r.Kill()
	killed := time.Now()
	stExpectLost(t, a.readTimeout(2*time.Second), "DEBUG SLEEP in flight")
	for i := 0; i < n; i++ {
		stExpectLost(t, b.readTimeout(2*time.Second), "INCR in flight")
	}
	if d := time.Since(killed); d > 2*time.Second {
		t.Fatalf("in-flight commands answered %v after the kill", d)
	}

	// The pool heals by itself once the server is back.
	r.Restart()
	restarted := time.Now()
	c := stDial(t, tp.Addr)
	stEventually(t, 5*time.Second, "SET through the proxy after the restart", func() bool {
		v, err := c.tryDo("SET", "fail:k2", "back")
		return err == nil && v.String() == "OK"
	})
	t.Logf("served again %v after the restart", time.Since(restarted))
	// The clients that saw the errors are still connected and served.
	stExpect(t, a.do("GET", "fail:k2"), `"back"`)
	stExpect(t, b.do("GET", "fail:k2"), `"back"`)
	for i := 0; i < 20; i++ {
		stExpect(t, b.do("INCR", "fail:n"), strconv.Itoa(i+1))
	}
}

func TestPinnedSessionServerDies(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("SET", "pin:k", "v"), "QUEUED")
	r.Kill()
	killed := time.Now()
	stExpectLost(t, c.readAfter(2*time.Second, "EXEC"), "EXEC after the server died")
	c.expectClosed(2 * time.Second)
	if d := time.Since(killed); d > 2*time.Second {
		t.Fatalf("the pinned client learned of the loss %v after the kill", d)
	}
	stEventually(t, time.Second, "pinned back to 0", func() bool { return tp.pinned.Load() == 0 })

	r.Restart()
	c2 := stDial(t, tp.Addr)
	stEventually(t, 5*time.Second, "a transaction through the proxy after the restart", func() bool {
		v, err := c2.tryDo("MULTI")
		if err != nil || v.String() != "OK" {
			return false
		}
		c2.tryDo("SET", "pin:k", "again")
		v, err = c2.tryDo("EXEC")
		return err == nil && v.String() == "[OK]"
	})
	stExpect(t, c2.do("GET", "pin:k"), `"again"`)
}

func TestSubscriberServerDies(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	sub := stDial(t, tp.Addr)
	sub.send("SUBSCRIBE", "dies")
	stExpect(t, sub.read(), `["subscribe","dies",1]`)
	r.Kill()
	// The subscriber's connection ends, as it would with Redis itself,
	// instead of waiting for messages that will never come.
	sub.expectClosed(2 * time.Second)
	stEventually(t, time.Second, "pinned back to 0", func() bool { return tp.pinned.Load() == 0 })
}

// A dedicated connection kept as a spare after a transaction may be closed
// by the server while idle (CLIENT KILL, Redis's timeout, a restart). The
// next session must get a working connection, not the dead one.
func TestDeadSpareConnectionNotHandedOut(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("INCR", "spare:n"), "QUEUED")
	stExpect(t, c.do("EXEC"), "[1]")

	// Kill the connection that ran EXEC: the spare.
	direct := stDial(t, r.Addr)
	list := direct.do("CLIENT", "LIST")
	killed := 0
	for _, line := range strings.Split(list.str, "\n") {
		if !strings.Contains(line, " cmd=exec ") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		stExpect(t, direct.do("CLIENT", "KILL", "ID", id), "1")
		killed++
	}
	if killed != 1 {
		t.Fatalf("found %d spare connections to kill in CLIENT LIST:\n%s", killed, list.str)
	}
	time.Sleep(50 * time.Millisecond)

	c2 := stDial(t, tp.Addr)
	stExpect(t, c2.do("MULTI"), "OK")
	stExpect(t, c2.do("INCR", "spare:n"), "QUEUED")
	stExpect(t, c2.do("EXEC"), "[2]")
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
				if _, err := nc.Write(stCmds(req...)); err != nil {
					res.bad = append(res.bad, err.Error())
					return
				}
				for i := range depth {
					v, err := stReadValue(br)
					if err != nil {
						res.bad = append(res.bad, fmt.Sprintf("reply %d of round %d: %v", i, round, err))
						return
					}
					res.replies++
					switch {
					case v.typ == '-' && strings.Contains(v.str, "lost"):
						res.lost++
					case v.null:
						res.nils++
					case c < readers && v.typ == '$' && v.str == fmt.Sprintf("%d:%d", c, (round*depth+i)%keys):
					case c >= readers && v.typ == ':':
					default:
						res.bad = append(res.bad, fmt.Sprintf("%v to %v", v, req[i]))
					}
				}
			}
		}()
	}
	probe := stDial(t, tp.Addr)
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		r.Kill()
		time.Sleep(50 * time.Millisecond)
		r.Restart()
		stEventually(t, 10*time.Second, "the proxy serving after the restart", func() bool {
			v, err := probe.tryDo("GET", "pc:probe")
			return err == nil && v.null
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
	stExpectLost(t, blocker.read(), "the script in Redis")
	stExpectLost(t, setGet.read(), "a SET in flight")
	stExpectLost(t, getIncr.read(), "a GET with an INCR of its client behind it")
	stExpectLost(t, getIncr.read(), "an INCR in flight")
	stExpectLost(t, slowRead.read(), "a read-only script in flight")
	stEventually(t, 5*time.Second, "6 reads given back", func() bool {
		return testutil.ToFloat64(tp.m.requeued.WithLabelValues("yes")) == 6
	})
	time.Sleep(100 * time.Millisecond)
	r.Restart()
	// The restarted server has no rr:k: the nils say the reads ran there.
	for range 3 {
		stExpect(t, pipe.readTimeout(15*time.Second), "<nil>")
	}
	stExpect(t, setGet.readTimeout(15*time.Second), "<nil>")
	stExpect(t, getSelect.readTimeout(15*time.Second), "<nil>")
	stExpect(t, getSelect.read(), "OK")
	stExpect(t, mget.readTimeout(15*time.Second), "[<nil>,<nil>]")
	if n := testutil.ToFloat64(tp.m.requeued.WithLabelValues("yes")); n != 6 {
		t.Fatalf("%v reads given back, want 6 (3 GETs, the GET after SET, the GET before SELECT, MGET)", n)
	}
}

// inFlightAtCrash starts Redis and a proxy with cfg, has seven clients
// send their requests while a script of a second holds Redis (so all of
// them are in flight), and kills Redis: blocker ran the script; pipe sent
// three GETs, setGet SET+GET, getIncr GET+INCR, getSelect GET+SELECT 0,
// mget an MGET, slowRead a read-only script. Redis had rr:k = "before".
func inFlightAtCrash(t *testing.T, cfg Config) (r *redistest.Server, tp *testProxy, blocker, pipe, setGet, getIncr, getSelect, mget, slowRead *stConn) {
	t.Helper()
	r = redistest.Start(t)
	if _, err := r.Do("SET", "rr:k", "before"); err != nil {
		t.Fatal(err)
	}
	tp = startProxy(t, cfg, r.Addr)
	conns := make([]*stConn, 7)
	for i := range conns {
		conns[i] = stDial(t, tp.Addr)
		stExpect(t, conns[i].do("PING"), "PONG")
	}
	blocker, pipe, setGet, getIncr, getSelect, mget, slowRead = conns[0], conns[1], conns[2], conns[3], conns[4], conns[5], conns[6]
	blocker.send(slowScript(1000)...)
	time.Sleep(50 * time.Millisecond) // the script runs; the rest waits behind it in Redis
	pipe.write(stCmds([]string{"GET", "rr:k"}, []string{"GET", "rr:k"}, []string{"GET", "rr:k"}))
	setGet.write(stCmds([]string{"SET", "rr:w", "x"}, []string{"GET", "rr:k"}))
	getIncr.write(stCmds([]string{"GET", "rr:k"}, []string{"INCR", "rr:n"}))
	getSelect.write(stCmds([]string{"GET", "rr:k"}, []string{"SELECT", "0"}))
	mget.send("MGET", "rr:k", "rr:x")
	slowRead.send("EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "rr:k")
	time.Sleep(100 * time.Millisecond)
	r.Kill()
	return r, tp, blocker, pipe, setGet, getIncr, getSelect, mget, slowRead
}
