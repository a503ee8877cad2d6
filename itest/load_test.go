package itest

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// load is the scenario's client: workers that SET a unique key through the
// VIP, then GET it back, for the whole scenario, recording every
// acknowledged write and every error. One connection per worker, redialled
// after a transport error, like an application's client library.
type load struct {
	addr     string
	stopc    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu       sync.Mutex
	acked    map[string]string // key → value, for every SET answered OK
	writeOK  []time.Time       // completion time of every acknowledged SET
	errs     []opError
	mismatch int       // GETs of a just-acknowledged key that returned something else
	slow     []opError // acknowledged writes that took longer than slowOp (held, retransmitted)
}

// slowOp is the latency past which an acknowledged write is listed.
const slowOp = 500 * time.Millisecond

type opError struct {
	at  time.Time
	op  string
	msg string
	dur time.Duration // how long the operation took
}

// opTimeout exceeds the proxy's hold timeout (5s), so a held command is
// seen as slow, not as a client-side timeout.
const opTimeout = 8 * time.Second

// startLoad starts workers writing through addr until stop, or until t
// ends (so a failed scenario leaves no client running).
func startLoad(t *testing.T, addr string, workers int) *load {
	l := &load{addr: addr, stopc: make(chan struct{}), acked: map[string]string{}}
	t.Cleanup(l.stop)
	run := time.Now().UnixNano()
	for w := range workers {
		l.wg.Add(1)
		go l.worker(fmt.Sprintf("itest:%x:%d", run, w))
	}
	return l
}

func (l *load) stopped() bool {
	select {
	case <-l.stopc:
		return true
	default:
		return false
	}
}

func (l *load) worker(prefix string) {
	defer l.wg.Done()
	var conn redis.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var began time.Time
	fail := func(op string, err error) {
		l.mu.Lock()
		l.errs = append(l.errs, opError{time.Now(), op, err.Error(), time.Since(began)})
		l.mu.Unlock()
		if conn != nil && conn.Err() != nil { // transport broken: redial
			conn.Close()
			conn = nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	for seq := 0; !l.stopped(); seq++ {
		began = time.Now()
		if conn == nil {
			c, err := redis.Dial("tcp", l.addr, redis.DialConnectTimeout(time.Second),
				redis.DialReadTimeout(opTimeout), redis.DialWriteTimeout(opTimeout))
			if err != nil {
				fail("dial", err)
				continue
			}
			conn = c
		}
		key := fmt.Sprintf("%s:%d", prefix, seq)
		val := fmt.Sprintf("%d", time.Now().UnixNano())
		r, err := redis.String(conn.Do("SET", key, val))
		if err == nil && r != "OK" {
			err = fmt.Errorf("SET answered %q", r)
		}
		if err != nil {
			fail("SET", err)
			continue
		}
		l.mu.Lock()
		l.acked[key] = val
		l.writeOK = append(l.writeOK, time.Now())
		if d := time.Since(began); d > slowOp {
			l.slow = append(l.slow, opError{time.Now(), "SET", "acknowledged", d})
		}
		l.mu.Unlock()
		got, err := redis.String(conn.Do("GET", key))
		if err != nil {
			fail("GET", err)
			continue
		}
		if got != val {
			l.mu.Lock()
			l.mismatch++
			l.mu.Unlock()
			fail("GET", fmt.Errorf("read %q after writing %q", got, val))
			continue
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the workers and waits for them; it may be called again.
func (l *load) stop() {
	l.stopOnce.Do(func() { close(l.stopc) })
	l.wg.Wait()
}

// writes is the number of acknowledged writes so far.
func (l *load) writes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.writeOK)
}

// waitWrites waits until n more writes are acknowledged than before, or d
// passes; it reports whether they were.
func (l *load) waitWrites(n int, d time.Duration) bool {
	target := l.writes() + n
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l.writes() >= target {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// window is the longest time in [from, to] during which no write was
// acknowledged, counted from the last acknowledged write before from: what
// a client saw of the disruption. An unrecovered service counts to "to".
func (l *load) window(from, to time.Time) time.Duration {
	l.mu.Lock()
	ts := slices.Clone(l.writeOK)
	l.mu.Unlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	prev := from
	if i := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(from) }); i > 0 {
		prev = ts[i-1]
	}
	var longest time.Duration
	for _, t := range ts {
		if t.Before(from) || t.After(to) {
			continue
		}
		longest = max(longest, t.Sub(prev))
		prev = t
	}
	return max(longest, to.Sub(prev))
}

// slowBetween lists the slow acknowledged writes and the slow errors in [from, to].
func (l *load) slowBetween(from, to time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range append(slices.Clone(l.slow), l.errs...) {
		if e.dur > slowOp && !e.at.Before(from) && !e.at.After(to) {
			out = append(out, fmt.Sprintf("%s %s after %v (%s)", e.at.Format("15:04:05.000"), e.op, e.dur.Round(time.Millisecond), errKind(e.msg)))
		}
	}
	sort.Strings(out)
	return out
}

// errorsBetween counts errors in [from, to] by kind.
func (l *load) errorsBetween(from, to time.Time) (int, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kinds := map[string]int{}
	n := 0
	for _, e := range l.errs {
		if e.at.Before(from) || e.at.After(to) {
			continue
		}
		n++
		kinds[e.op+" "+errKind(e.msg)]++
	}
	return n, kinds
}

var (
	reAddr  = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+(:\d+)?`)
	reDigit = regexp.MustCompile(`\d+`)
)

// errKind folds an error message into a class: addresses and numbers out.
func errKind(msg string) string {
	msg = reAddr.ReplaceAllString(msg, "ADDR")
	msg = reDigit.ReplaceAllString(msg, "N")
	if len(msg) > 90 {
		msg = msg[:90] + "…"
	}
	return msg
}

// lost reads back every acknowledged key through addr and returns the keys
// that are missing or hold another value.
func (l *load) lost(t *testing.T, addr string) (acked int, lost []string) {
	t.Helper()
	l.mu.Lock()
	keys := make([]string, 0, len(l.acked))
	for k := range l.acked {
		keys = append(keys, k)
	}
	want := l.acked
	l.mu.Unlock()
	sort.Strings(keys)
	var conn redis.Conn
	for try := 0; ; try++ {
		c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(opTimeout))
		if err == nil {
			conn = c
			break
		}
		if try == 20 {
			t.Fatalf("verify acknowledged writes: dial %s: %v", addr, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	defer conn.Close()
	for i := 0; i < len(keys); i += 500 {
		batch := keys[i:min(i+500, len(keys))]
		args := make([]any, len(batch))
		for j, k := range batch {
			args[j] = k
		}
		vals, err := redis.Strings(conn.Do("MGET", args...))
		if err != nil {
			t.Fatalf("verify acknowledged writes: MGET via %s: %v", addr, err)
		}
		for j, k := range batch {
			if vals[j] != want[k] {
				lost = append(lost, k)
			}
		}
	}
	return len(keys), lost
}

// report is one phase's outcome as a client saw it.
type report struct {
	name   string
	window time.Duration
	errors int
	kinds  map[string]int
	slow   []string
	// deliberate marks a phase whose outage the scenario caused on
	// purpose (every Redis down): it is not counted in the SUMMARY window.
	deliberate bool
}

// measure summarises [from, to] of l (lost writes are filled in by verify).
func (l *load) measure(name string, from, to time.Time) report {
	n, kinds := l.errorsBetween(from, to)
	return report{name: name, window: l.window(from, to), errors: n, kinds: kinds, slow: l.slowBetween(from, to)}
}

func (r report) String() string {
	var kinds []string
	for k, n := range r.kinds {
		kinds = append(kinds, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(kinds)
	s := fmt.Sprintf("window=%v errors=%d", r.window.Round(time.Millisecond), r.errors)
	if len(kinds) > 0 {
		s += " [" + strings.Join(kinds, "; ") + "]"
	}
	return s
}

// finish stops the load, verifies every acknowledged write through the VIP,
// logs each phase and the scenario's SUMMARY line, and returns the number
// of lost acknowledged writes.
func finish(t *testing.T, c *cluster, l *load, phases ...report) int {
	t.Helper()
	l.stop()
	acked, lost := l.lost(t, c.vip+":6379")
	var worst time.Duration
	for _, p := range phases {
		t.Logf("phase %-34s %s", p.name+":", p)
		for i, s := range p.slow {
			if i == 5 {
				t.Logf("      … %d more slow operations", len(p.slow)-i)
				break
			}
			t.Logf("      slow: %s", s)
		}
		if !p.deliberate {
			worst = max(worst, p.window)
		}
	}
	l.mu.Lock()
	mismatch := l.mismatch
	allErrs := len(l.errs)
	l.mu.Unlock()
	if len(lost) > 0 {
		t.Logf("lost acknowledged writes (first %d): %v", min(len(lost), 10), lost[:min(len(lost), 10)])
	}
	line := fmt.Sprintf("SUMMARY %-28s window=%-8v errors=%-4d acked=%-6d lost=%-3d stale_reads=%d",
		t.Name(), worst.Round(time.Millisecond), allErrs, acked, len(lost), mismatch)
	t.Log(line)
	addSummary(line)
	return len(lost)
}

// missingOn returns the acknowledged keys that n (read directly, not through
// a proxy) does not hold with the acknowledged value.
func missingOn(t *testing.T, l *load, n *node) (int, []string) {
	t.Helper()
	return l.lost(t, n.addr())
}

// firstWriteAfter is how long after t the first write was acknowledged.
func (l *load) firstWriteAfter(t time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, w := range l.writeOK {
		if w.After(t) && (first.IsZero() || w.Before(first)) {
			first = w
		}
	}
	if first.IsZero() {
		return -1
	}
	return first.Sub(t)
}
