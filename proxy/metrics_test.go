package proxy

import (
	"fmt"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
)

// commandSeriesOf returns the redis_proxy_commands_total series of reg as
// "command/result=value".
func commandSeriesOf(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "redis_proxy_commands_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out = append(out, fmt.Sprintf("%s/%s=%g", l["command"], l["result"], m.GetCounter().GetValue()))
		}
	}
	slices.Sort(out)
	return out
}

// The command table holds some 480 commands: only those a client ran
// have series, and a command that ran has both its ok and its error
// series.
func TestCommandSeriesOnlyForCommandsRun(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	reg := prometheus.NewRegistry()
	tp := startProxy(t, Config{Registerer: reg}, srv.Addr)
	if got := commandSeriesOf(t, reg); len(got) != 0 {
		t.Fatalf("redis_proxy_commands_total before any command: %d series (%v...), want none", len(got), got[:min(len(got), 5)])
	}
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("SET", "m:k", "v"), "OK")
	resptest.Expect(t, c.Do("GET", "m:k"), `"v"`)
	resptest.Expect(t, c.Do("GET", "m:k"), `"v"`)
	resptest.Expect(t, c.Do("INCR", "m:k"), "(error) ERR value is not an integer or out of range")
	want := []string{"get/error=0", "get/ok=2", "incr/error=1", "incr/ok=0", "set/error=0", "set/ok=1"}
	if got := commandSeriesOf(t, reg); !slices.Equal(got, want) {
		t.Errorf("redis_proxy_commands_total = %v, want %v", got, want)
	}
}

// Counting a reply allocates nothing, the first one (which makes the
// series) aside.
func TestCommandCountAllocatesNothing(t *testing.T) {
	m := newMetrics(nil)
	ok, fail := m.commandCounters("get")
	ok.Inc()
	if n := testing.AllocsPerRun(1000, func() { ok.Inc(); fail.Inc() }); n != 0 {
		t.Errorf("a count allocates %v times, want 0", n)
	}
}

// BenchmarkCommandCount is the cost of counting one reply, against the
// prometheus counter alone (what the table held before its series were
// made on first use).
func BenchmarkCommandCount(b *testing.B) {
	m := newMetrics(nil)
	ok, _ := m.commandCounters("get")
	var direct command.Counter = m.commands.WithLabelValues("get", "ok")
	for _, bc := range []struct {
		name string
		c    command.Counter
	}{{"made-on-first-use", ok}, {"counter-alone", direct}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.c.Inc()
			}
		})
	}
}
