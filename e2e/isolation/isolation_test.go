// Package isolation tests that one client cannot stall the others or
// exhaust the proxy's memory: the real binary, as a process of its own
// (its memory is measured from /proc), in front of a real redis-server.
package isolation

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/proxybin"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// proxyProc is the binary running in front of a Redis.
type proxyProc struct {
	addr, admin string
	pid         int
	log         *logBuf
}

// metric returns the value of the sample of /metrics that begins with
// name (with its labels), 0 if there is none.
func (p *proxyProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// logBuf keeps what the proxy logs (and shows it on the test's stderr).
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	os.Stderr.Write(p)
	return l.buf.Write(p)
}

// noTopologyChange fails t if the proxy logged that it lost its master
// or judged a server down: one client's load must not look like a failure.
func (p *proxyProc) noTopologyChange(t *testing.T) {
	t.Helper()
	p.log.mu.Lock()
	defer p.log.mu.Unlock()
	for _, line := range strings.Split(p.log.buf.String(), "\n") {
		if strings.Contains(line, `msg="server down"`) || strings.Contains(line, `msg="master lost"`) {
			t.Errorf("the proxy judged its server down: %s", line)
		}
	}
}

// startProxy runs bin (proxybin.Build) in front of the Redis at redisAddr,
// with env added to the environment.
func startProxy(t *testing.T, bin, redisAddr string, env ...string) *proxyProc {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads the proxy's memory from /proc")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "REDIS_PROXY_LISTEN="+addr, "REDIS_PROXY_ADMIN_LISTEN="+admin,
		"REDIS_PROXY_SERVERS="+redisAddr, "REDIS_PROXY_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	logs := &logBuf{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	poll.Until(t, 10*time.Second, "the proxy's /healthz 200", func() bool {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return &proxyProc{addr: addr, admin: admin, pid: cmd.Process.Pid, log: logs}
}

// memKiB reads a field (VmRSS, VmHWM) of the proxy's /proc status.
func (p *proxyProc) memKiB(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, p.pid)
	return 0
}

// goodClients runs n clients doing SET and GET in turn, one command at a
// time, for d, and returns their latencies, sorted.
func goodClients(t *testing.T, addr string, n int, d time.Duration) []time.Duration {
	t.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c, err := redis.Dial("tcp", addr, redis.DialReadTimeout(10*time.Second))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			var mine []time.Duration
			key := "good:" + strconv.Itoa(i)
			for end := time.Now().Add(d); time.Now().Before(end); {
				for _, cmd := range [][]any{{"SET", key, "v"}, {"GET", key}} {
					start := time.Now()
					if _, err := c.Do(cmd[0].(string), cmd[1:]...); err != nil {
						errs <- err
						return
					}
					mine = append(mine, time.Since(start))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a good client: %v", err)
	}
	slices.Sort(lat)
	return lat
}

func pct(lat []time.Duration, p float64) time.Duration {
	return lat[min(len(lat)-1, int(float64(len(lat))*p))]
}

// A client that pipelines 200 MGETs of about 10 MB of replies each (about
// 2 GB) and never reads them, while 5 well-behaved clients run: their
// p99 latency stays within twice their baseline (measured just before,
// in the same run), and the proxy's memory stays within the output limit
// plus a constant. (Through an earlier build, the other clients stalled
// for 10-25 s and the proxy grew to 4.7 GB.) On the event loop, and with
// every client on a goroutine of its own (the path of TLS clients and of
// sessions with state).
func TestNonReadingClientStallsNoOne(t *testing.T) {
	for _, path := range []struct{ name, loops string }{{"event loop", "1"}, {"goroutines", "0"}} {
		t.Run(path.name, func(t *testing.T) { nonReader(t, "REDIS_PROXY_EVENT_LOOPS="+path.loops) })
	}
}

func nonReader(t *testing.T, env string) {
	r := redistest.Start(t)
	rc := r.Dial()
	value := strings.Repeat("v", 1<<20)
	var keys []any
	for i := range 10 {
		k := "big:" + strconv.Itoa(i)
		if _, err := rc.Do("SET", k, value); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	const outputLimit = 256 << 20
	p := startProxy(t, proxybin.Build(t), r.Addr, "REDIS_PROXY_CLIENT_OUTPUT_LIMIT="+strconv.Itoa(outputLimit), env)
	rssBefore := p.memKiB(t, "VmRSS")

	const clients, phase = 5, 4 * time.Second
	base := goodClients(t, p.addr, clients, phase)

	bad := resptest.Dial(t, p.addr)
	bad.NetConn().(*net.TCPConn).SetReadBuffer(4096) // and never reads
	var pipe [][]string
	for range 200 {
		cmd := []string{"MGET"}
		for _, k := range keys {
			cmd = append(cmd, k.(string))
		}
		pipe = append(pipe, cmd)
	}
	bad.Write(resptest.Cmds(pipe...))
	under := goodClients(t, p.addr, clients, phase)
	hwm, rssAfter := p.memKiB(t, "VmHWM"), p.memKiB(t, "VmRSS")

	t.Logf("good clients' latency, %d requests each phase: baseline p50 %v p99 %v max %v; with the non-reader p50 %v p99 %v max %v",
		len(base), pct(base, .5), pct(base, .99), base[len(base)-1], pct(under, .5), pct(under, .99), under[len(under)-1])
	t.Logf("proxy memory: RSS %d MiB before, peak %d MiB, %d MiB after (output limit %d MiB)",
		rssBefore>>10, hwm>>10, rssAfter>>10, outputLimit>>20)
	if pct(under, .99) > 2*pct(base, .99) {
		t.Errorf("p99 %v with the non-reader, more than twice the baseline %v", pct(under, .99), pct(base, .99))
	}
	if hwm-rssBefore > outputLimit>>10+slack {
		t.Errorf("the proxy's memory peaked %d MiB over its start, past the output limit (%d MiB) and %d MiB",
			(hwm-rssBefore)>>10, outputLimit>>20, slack>>10)
	}
	p.noTopologyChange(t)
}

// slack is the memory the proxy may take beyond the limits under test, in
// KiB: the runtime, the buffers of the other clients, a read in flight.
const slack = 96 << 10

// Large values do not multiply in memory: four clients each SET a 500 MB
// value at once, with REDIS_PROXY_MAX_INFLIGHT_MEMORY at its default,
// 1 GiB (two at a time, the others wait unread); then a client GETs it (the reply goes
// through a read at a time, not held whole): the proxy's peak memory stays
// within the in-flight bound plus the slack. And through a proxy whose
// output limit is 16 MiB, a client that GETs it and never reads is
// dropped at the limit, with the proxy's memory within the limit plus the
// slack. (Through an earlier build, one 500 MB SET took the proxy to
// 2.1 GB, and four to 5.65 GB.)
func TestLargeValuesDoNotMultiply(t *testing.T) {
	r := redistest.Start(t)
	const size, inflight, outputLimit = 500_000_000, 1 << 30, 16 << 20
	// (An output limit above the value's size: a reply larger than the
	// limit reaches only a client that reads it as fast as it comes.)
	bin := proxybin.Build(t)
	p := startProxy(t, bin, r.Addr, "REDIS_PROXY_HOLD_TIMEOUT=120s", "REDIS_PROXY_CLIENT_OUTPUT_LIMIT=1GiB")
	p2 := startProxy(t, bin, r.Addr, "REDIS_PROXY_CLIENT_OUTPUT_LIMIT="+strconv.Itoa(outputLimit))
	rssBefore, rssBefore2 := p.memKiB(t, "VmRSS"), p2.memKiB(t, "VmRSS")

	value := bytes.Repeat([]byte{'x'}, size)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	start := time.Now()
	for i := range 4 {
		wg.Go(func() {
			c, err := redis.Dial("tcp", p.addr, redis.DialReadTimeout(120*time.Second), redis.DialWriteTimeout(120*time.Second))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if _, err := c.Do("SET", "large:"+strconv.Itoa(i%2), value); err != nil {
				errs <- fmt.Errorf("SET %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	setTook := time.Since(start)
	hwmSet := p.memKiB(t, "VmHWM")

	c, err := redis.Dial("tcp", p.addr, redis.DialReadTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := redis.Bytes(c.Do("GET", "large:1"))
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("GET large:1: %d bytes, %v", len(got), err)
	}
	got = nil
	hwmGet := p.memKiB(t, "VmHWM")

	bad := resptest.Dial(t, p2.addr)
	bad.NetConn().(*net.TCPConn).SetReadBuffer(4096)
	bad.Send("GET", "large:0") // and does not read
	time.Sleep(2 * time.Second)
	hwmBad := p2.memKiB(t, "VmHWM")
	out, closed := bad.ReadUntilClosed(20 * time.Second)
	dropped := p2.metric(t, `redis_proxy_client_errors_total{reason="output_limit"}`)
	if !closed || len(out) >= size || dropped != 1 {
		t.Errorf("the client that did not read its 500 MB reply was not dropped at the 16 MiB output limit (closed %v, %d bytes, %v dropped for output_limit)", closed, len(out), dropped)
	}
	t.Logf("4 concurrent SETs of %d MiB in %v: proxy RSS %d MiB before, peak %d MiB after the SETs, %d MiB after a GET of it",
		size>>20, setTook.Round(time.Millisecond), rssBefore>>10, hwmSet>>10, hwmGet>>10)
	t.Logf("a GET of it not read, output limit %d MiB: proxy RSS %d MiB before, peak %d MiB; the client was dropped after %d MiB",
		outputLimit>>20, rssBefore2>>10, hwmBad>>10, len(out)>>20)
	if hwmGet-rssBefore > inflight>>10+slack {
		t.Errorf("the SETs and the GET took the proxy %d MiB over its start: past the in-flight bound (%d MiB) and %d MiB", (hwmGet-rssBefore)>>10, inflight>>20, slack>>10)
	}
	if hwmBad-rssBefore2 > outputLimit>>10+slack {
		t.Errorf("the unread GET took the proxy %d MiB over its start: past the output limit (%d MiB) and %d MiB", (hwmBad-rssBefore2)>>10, outputLimit>>20, slack>>10)
	}
	// (No check of the topology here: Redis itself answers nobody while
	// it copies a 128 MiB reply into its buffers, 0.4-0.6 s measured
	// direct on a 2-core VM, and more when loaded: past DOWN_AFTER.)
}
