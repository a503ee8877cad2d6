package proxy

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// Blocked clients are served in the order they sent their blocking
// commands, through the proxy as on Redis: clients each send BLPOP on one
// key 1 ms after the previous one, none waiting for a reply, on fresh
// connections (the first blocking command of a client is the one that
// needs a connection of its own); one RPUSH then serves them, and client i
// must get element i. Redis's MONITOR (on a connection of the test's own)
// gives the time each BLPOP reached Redis, which the test reports beside
// the same figure for Redis direct.
//
// Only an event loop keeps the order: it reads every client's socket on one
// thread, as Redis does, and writes the blocking command to a spare
// connection before it reads the next client (openNow). A goroutine per
// client (TLS clients; -eventloops=-1) is woken by Go's scheduler, which
// keeps no order between goroutines: measured 4 to 6 rounds of 200 out of
// order with 10 clients on a loaded 2-core machine (docs/architecture.md,
// "What clients see of themselves").
//
// The order is a matter of timing: the test runs in a layer of its own
// (scripts/test.sh, "order"), alone and without the race detector, which
// slows the proxy's code several times; under -race it is skipped.
func TestBlockingOrder(t *testing.T) {
	needEventLoops(t)
	if raceDetector {
		t.Skip("timing: runs in the order layer, without -race (scripts/test.sh)")
	}
	rounds := 200
	if testing.Short() {
		rounds = 20
	}
	srv := redistest.Start(t)
	tp := startProxy(t, Config{}, srv.Addr)
	for _, n := range []int{2, 10} {
		t.Run(fmt.Sprintf("clients=%d", n), func(t *testing.T) {
			direct := blockOrder(t, srv, srv.Addr, n, rounds, "direct")
			proxied := blockOrder(t, srv, tp.Addr, n, rounds, "proxy")
			t.Logf("%d clients x %d rounds: out of order: direct %d, proxy %d", n, rounds, direct.wrong, proxied.wrong)
			t.Logf("send -> Redis has the BLPOP: direct p50 %v p90 %v p99 %v; proxy p50 %v p90 %v p99 %v",
				direct.pct(50), direct.pct(90), direct.pct(99), proxied.pct(50), proxied.pct(90), proxied.pct(99))
			if proxied.wrong != 0 {
				t.Errorf("through the proxy, %d of %d rounds served blocked clients out of the order they sent (direct: %d)", proxied.wrong, rounds, direct.wrong)
			}
		})
	}
}

type orderRun struct {
	wrong  int
	delays []time.Duration
}

func (r *orderRun) pct(p int) time.Duration {
	if len(r.delays) == 0 {
		return 0
	}
	slices.Sort(r.delays)
	return r.delays[(len(r.delays)-1)*p/100]
}

// blockOrder runs rounds of n clients blocking on one key at addr, with
// srv's MONITOR timing their arrival.
func blockOrder(t *testing.T, srv *redistest.Server, addr string, n, rounds int, label string) *orderRun {
	t.Helper()
	mon := newMonitor(t, srv.Addr)
	run := &orderRun{}
	for r := range rounds {
		key := fmt.Sprintf("order:%s:%d:%d", label, n, r)
		conns := make([]*resptest.Conn, n)
		for i := range conns {
			conns[i] = resptest.Dial(t, addr)
		}
		sent := make([]time.Time, n)
		for i, c := range conns {
			if i > 0 {
				time.Sleep(time.Millisecond)
			}
			sent[i] = time.Now()
			c.Send("BLPOP", key, "0")
		}
		arrived := mon.waitFor(t, key, n)
		for i := range n {
			run.delays = append(run.delays, arrived[i].Sub(sent[i]))
		}
		push := resptest.Dial(t, srv.Addr)
		args := []string{"RPUSH", key}
		for i := range n {
			args = append(args, strconv.Itoa(i))
		}
		resptest.Expect(t, push.Do(args...), strconv.Itoa(n))
		push.Close()
		inOrder := true
		for i, c := range conns {
			v := c.ReadTimeout(5 * time.Second)
			if len(v.Elems) != 2 {
				t.Fatalf("%s round %d client %d: BLPOP answered %v", label, r, i, v)
			}
			if v.Elems[1].Str != strconv.Itoa(i) {
				inOrder = false
			}
			c.Close()
		}
		if !inOrder {
			run.wrong++
			var offs []string
			for i := range n {
				offs = append(offs, fmt.Sprintf("+%v->+%v", sent[i].Sub(sent[0]).Round(time.Microsecond), arrived[i].Sub(sent[0]).Round(time.Microsecond)))
			}
			t.Logf("%s round %d out of order; sent -> arrived (the i-th arrival): %s", label, r, strings.Join(offs, " "))
		}
	}
	return run
}

// monitor reads a Redis server's MONITOR stream and keeps, per key, the
// times BLPOPs on it ran (the server's clock, which is this host's).
type monitor struct {
	mu    sync.Mutex
	cond  *sync.Cond
	times map[string][]time.Time
}

func newMonitor(t *testing.T, addr string) *monitor {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	m := &monitor{times: map[string][]time.Time{}}
	m.cond = sync.NewCond(&m.mu)
	nc.Write([]byte("MONITOR\r\n"))
	br := bufio.NewReader(nc)
	if line, err := br.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("MONITOR: %q %v", line, err)
	}
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			// +1700000000.123456 [0 127.0.0.1:5000] "BLPOP" "key" "0"
			ts, rest, ok := strings.Cut(strings.TrimPrefix(line, "+"), " ")
			if !ok || !strings.Contains(rest, `"BLPOP" "`) {
				continue
			}
			f, err := strconv.ParseFloat(ts, 64)
			if err != nil {
				continue
			}
			key := strings.SplitN(rest[strings.Index(rest, `"BLPOP" "`)+9:], `"`, 2)[0]
			at := time.Unix(0, int64(f*1e6)*1e3)
			m.mu.Lock()
			m.times[key] = append(m.times[key], at)
			m.cond.Broadcast()
			m.mu.Unlock()
		}
	}()
	return m
}

// waitFor returns the times of the first n BLPOPs on key, waiting for
// them.
func (m *monitor) waitFor(t *testing.T, key string, n int) []time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	wake := time.AfterFunc(10*time.Second, func() { m.mu.Lock(); m.cond.Broadcast(); m.mu.Unlock() })
	defer wake.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.times[key]) < n {
		if time.Now().After(deadline) {
			t.Fatalf("Redis had %d of %d BLPOPs on %s after 10s", len(m.times[key]), n, key)
		}
		m.cond.Wait()
	}
	return m.times[key][:n]
}
