package itest

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/writetest"
)

// load is the scenario's client: workers that SET a unique key through the
// VIP, then GET it back, for the whole scenario, recording every command.
// One connection per worker, redialled after a transport error, like an
// application's client library.
type load struct {
	*writetest.Load
	rec *writetest.Recorder // every worker's ops
}

// slowOp is the latency past which an acknowledged write is listed.
const slowOp = 500 * time.Millisecond

// opTimeout exceeds the proxy's hold timeout (5s), so a held command is
// seen as slow, not as a client-side timeout.
const opTimeout = 8 * time.Second

// startLoad starts workers writing through addr until Stop, or until t
// ends (so a failed scenario leaves no client running). Each starts a round
// every 5ms, and waits 20ms after a failure.
func startLoad(t *testing.T, addr string, workers int) *load {
	l := &load{Load: writetest.NewLoad(), rec: &writetest.Recorder{}}
	t.Cleanup(l.Stop)
	run := time.Now().UnixNano()
	for w := range workers {
		l.Go(writetest.Client{Addr: addr, Password: clientPassword, Prefix: fmt.Sprintf("itest:%x:%d", run, w), ReadBack: true,
			Timeout: opTimeout, Pace: 5 * time.Millisecond, Retry: 20 * time.Millisecond}, l.rec)
	}
	return l
}

// writes is the number of acknowledged writes so far.
func (l *load) writes() int {
	return l.rec.Count(func(o writetest.Op) bool { return o.Cmd == "SET" && o.Err == nil })
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
	writes := writetest.Writes(l.rec.Ops())
	gap, _ := writetest.Outage(writes, writetest.LastAck(writes, from), to)
	return gap
}

// slowBetween lists the slow acknowledged writes and the slow errors that
// ended in [from, to].
func (l *load) slowBetween(from, to time.Time) []string {
	var out []string
	for _, o := range l.rec.Ops() {
		if o.Latency() <= slowOp || o.Err == nil && o.Cmd != "SET" || o.Done.Before(from) || o.Done.After(to) {
			continue
		}
		msg := "acknowledged"
		if o.Err != nil {
			msg = o.Err.Error()
		}
		out = append(out, fmt.Sprintf("%s %s after %v (%s)", o.Done.Format("15:04:05.000"), o.Cmd, o.Latency().Round(time.Millisecond), errKind(msg)))
	}
	sort.Strings(out)
	return out
}

// errorsBetween counts the errors that ended in [from, to] by kind.
func (l *load) errorsBetween(from, to time.Time) (int, map[string]int) {
	kinds := map[string]int{}
	n := 0
	for _, o := range writetest.Failed(l.rec.Ops()) {
		if o.Done.Before(from) || o.Done.After(to) {
			continue
		}
		n++
		kinds[o.Cmd+" "+errKind(o.Err.Error())]++
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

// lost reads back every acknowledged key through addr (authenticating
// with password) and returns the keys that are missing or hold another
// value.
func (l *load) lost(t *testing.T, addr, password string) (acked int, lost []string) {
	t.Helper()
	want := writetest.AckedWrites(l.rec.Ops())
	rb, err := writetest.ReadBack(addr, want, redis.DialPassword(password))
	if err != nil {
		t.Fatalf("verify acknowledged writes via %s: %v", addr, err)
	}
	return len(want), rb.Lost()
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
	l.Stop()
	acked, lost := l.lost(t, c.vip+":6379", clientPassword)
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
	mismatch := l.rec.Count(writetest.Op.Stale)
	allErrs := len(writetest.Failed(l.rec.Ops()))
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
	return l.lost(t, n.addr(), redisPassword)
}

// firstWriteAfter is how long after t the first write was acknowledged
// (-1 if none was).
func (l *load) firstWriteAfter(t time.Time) time.Duration {
	o, ok := writetest.FirstAck(writetest.Writes(l.rec.Ops()), t)
	if !ok {
		return -1
	}
	return o.Done.Sub(t)
}
