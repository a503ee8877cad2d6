package proxy

import (
	"fmt"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// ccBackendWatch samples, every few milliseconds, how many connections the
// proxy holds to srv (CLIENT LIST entries named redis-proxy), and reports
// every sample that differs from want.
type ccBackendWatch struct {
	stop    chan struct{}
	done    chan struct{}
	samples atomic.Int64
	mu      sync.Mutex
	bad     []string
}

func ccCountProxyConns(c redis.Conn) (int, string, error) {
	list, err := redis.String(c.Do("CLIENT", "LIST"))
	if err != nil {
		return 0, "", err
	}
	return strings.Count(list, " name=redis-proxy "), list, nil
}

func ccWatchBackend(t *testing.T, srv *redistest.Server, want int) *ccBackendWatch {
	t.Helper()
	c := srv.Dial()
	// The pool dials its slots in the background; wait for all of them.
	poll.UntilNil(t, 5*time.Second, fmt.Sprintf("the proxy holding %d connections to redis before the test", want), func() error {
		n, list, err := ccCountProxyConns(c)
		if err != nil {
			t.Fatalf("CLIENT LIST: %v", err)
		}
		if n != want {
			return fmt.Errorf("%d connections:\n%s", n, list)
		}
		return nil
	})
	w := &ccBackendWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			n, list, err := ccCountProxyConns(c)
			w.samples.Add(1)
			if err != nil || n != want {
				w.mu.Lock()
				w.bad = append(w.bad, fmt.Sprintf("%d proxy connections (err %v):\n%s", n, err, list))
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// check stops sampling and fails the test on any bad sample.
func (w *ccBackendWatch) check(t *testing.T, want int) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.bad) > 0 {
		t.Errorf("%d of %d samples of CLIENT LIST did not show exactly %d proxy connections; first: %s", len(w.bad), w.samples.Load(), want, w.bad[0])
	}
	if w.samples.Load() < 5 {
		t.Errorf("only %d samples of CLIENT LIST were taken", w.samples.Load())
	}
}

// ccOp is one pipelined command and the exact reply it must get.
type ccOp struct {
	cmd    dtCmd
	want   string // exact reply, unless global
	global bool   // INCR of the shared counter: a value checked at the end
}

// TestConcurrentPipelines: 50 clients each send 2,000 commands in pipelines
// of 1 to 200 through one proxy with two shared connections. Every reply
// must be the one for its own request (values carry the client and command
// number), the shared counter's replies must be exactly 1..N once each, and
// the proxy must hold exactly its two connections to Redis all along.
func TestConcurrentPipelines(t *testing.T) {
	const (
		clients   = 50
		perClient = 2000
		poolSize  = 2
	)
	srv := redistest.Start(t)
	tp := startProxy(t, Config{PoolSize: poolSize}, srv.Addr)
	watch := ccWatchBackend(t, srv, poolSize)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		globals []int64
		sent    atomic.Int64
	)
	start := time.Now()
	for c := 0; c < clients; c++ {
		conn := resptest.Dial(t, tp.Addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed + int64(c)))
			vals := map[string]string{} // what this client set, by key
			counter := 0
			var mine []int64
			for done := 0; done < perClient; {
				depth := min(1+r.Intn(200), perClient-done)
				ops := make([]ccOp, 0, depth)
				for len(ops) < depth {
					i := done + len(ops)
					switch r.Intn(5) {
					case 0, 1:
						key := fmt.Sprintf("key-%d-%d", c, i)
						val := fmt.Sprintf("val-%d-%d-", c, i) + strings.Repeat("v", r.Intn(700))
						if r.Intn(100) == 0 {
							val += strings.Repeat("w", 20<<10)
						}
						vals[key] = val
						ops = append(ops, ccOp{cmd: dtCmd{args: []string{"SET", key, val}}, want: "+OK\r\n"})
					case 2:
						key := fmt.Sprintf("key-%d-%d", c, r.Intn(i+1))
						want := "$-1\r\n"
						if v, ok := vals[key]; ok {
							want = "$" + strconv.Itoa(len(v)) + "\r\n" + v + "\r\n"
						}
						ops = append(ops, ccOp{cmd: dtCmd{args: []string{"GET", key}}, want: want})
					case 3:
						counter++
						ops = append(ops, ccOp{cmd: dtCmd{args: []string{"INCR", fmt.Sprintf("counter-%d", c)}}, want: ":" + strconv.Itoa(counter) + "\r\n"})
					case 4:
						ops = append(ops, ccOp{cmd: dtCmd{args: []string{"INCR", "counter-global"}}, global: true})
					}
				}
				var req []byte
				for _, op := range ops {
					req = op.cmd.encode(req)
				}
				replies, err := conn.Pipeline(req, len(ops), 30*time.Second)
				if err != nil {
					t.Errorf("client %d, commands %d..%d: %v (after %d replies)", c, done, done+len(ops)-1, err, len(replies))
					return
				}
				for j, op := range ops {
					got := string(replies[j])
					if op.global {
						n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(got, ":"), "\r\n"), 10, 64)
						if err != nil || got[0] != ':' {
							t.Errorf("client %d, command %d %s: reply %s, want an integer", c, done+j, op.cmd, resptest.Quote(replies[j]))
							return
						}
						mine = append(mine, n)
						continue
					}
					if got != op.want {
						t.Errorf("client %d, command %d %s (pipeline of %d):\n  got  %s\n  want %s", c, done+j, op.cmd, len(ops), resptest.Quote(replies[j]), resptest.Quote([]byte(op.want)))
						return
					}
				}
				done += len(ops)
				sent.Add(int64(len(ops)))
			}
			mu.Lock()
			globals = append(globals, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	watch.check(t, poolSize)
	slices.Sort(globals)
	for i, v := range globals {
		if v != int64(i+1) {
			t.Fatalf("the shared counter's replies are not 1..%d once each: position %d holds %d", len(globals), i, v)
		}
	}
	if v, err := redis.Int(srv.Do("GET", "counter-global")); err != nil || v != len(globals) {
		t.Errorf("counter-global in redis is %d (%v), the clients got %d increments", v, err, len(globals))
	}
	t.Logf("%d commands from %d clients in %v", sent.Load(), clients, elapsed.Round(time.Millisecond))
}

// TestConcurrentRequestResponse: 200 clients, each waiting for every reply
// before sending the next command, through one proxy with two shared
// connections.
func TestConcurrentRequestResponse(t *testing.T) {
	const (
		clients   = 200
		perClient = 150
		poolSize  = 2
	)
	srv := redistest.Start(t)
	tp := startProxy(t, Config{PoolSize: poolSize}, srv.Addr)
	watch := ccWatchBackend(t, srv, poolSize)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		conn := tp.dial(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				key, val := fmt.Sprintf("rr-%d-%d", c, i), fmt.Sprintf("value-%d-%d", c, i)
				var err error
				var got any
				switch i % 3 {
				case 0:
					got, err = redis.String(conn.Do("SET", key, val))
					if err == nil && got != "OK" {
						err = fmt.Errorf("SET %s: %q", key, got)
					}
				case 1:
					prev := fmt.Sprintf("rr-%d-%d", c, i-1)
					got, err = redis.String(conn.Do("GET", prev))
					if want := fmt.Sprintf("value-%d-%d", c, i-1); err == nil && got != want {
						err = fmt.Errorf("GET %s: %q, want %q", prev, got, want)
					}
				case 2:
					got, err = redis.Int(conn.Do("INCR", fmt.Sprintf("rr-counter-%d", c)))
					if err == nil && got != i/3+1 {
						err = fmt.Errorf("INCR rr-counter-%d: %v, want %d", c, got, i/3+1)
					}
				}
				if err != nil {
					t.Errorf("client %d, command %d: %v", c, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	watch.check(t, poolSize)
	t.Logf("%d round trips from %d clients in %v", clients*perClient, clients, elapsed.Round(time.Millisecond))
}
