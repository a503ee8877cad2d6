package main

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQuantile(t *testing.T) {
	upper := []float64{.001, .01, .1}
	for _, tc := range []struct {
		name       string
		q          float64
		cumulative []uint64
		n          uint64
		want       float64
	}{
		{"none", .99, []uint64{0, 0, 0}, 0, 0},
		{"all in the first bucket: from 0", .5, []uint64{10, 10, 10}, 10, .0005},
		{"in the second bucket", .99, []uint64{50, 100, 100}, 100, .001 + .009*(99-50)/50},
		{"exactly at a bound", .5, []uint64{50, 100, 100}, 100, .001},
		{"past the last bound", .99, []uint64{10, 20, 30}, 100, .1},
		{"third bucket", .9, []uint64{0, 0, 10}, 10, .01 + .09*.9},
	} {
		if got := quantile(tc.q, upper, tc.cumulative, tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: quantile(%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestTrafficOf(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	base := trafficSample{at: t0, commands: 1000, latCount: 1000, latSum: 1, clients: 3,
		latUpper: []float64{.001, .01}, latCumulative: []uint64{900, 1000}}
	cur := trafficSample{at: t0.Add(2 * time.Second), commands: 5000, latCount: 5000, latSum: 3, clients: 4, held: 2, pinned: 1, holdTimeouts: 7,
		latUpper: []float64{.001, .01}, latCumulative: []uint64{4860, 5000}}
	got := trafficOf(base, cur)
	want := traffic{Clients: 4, Held: 2, Pinned: 1, Commands: 5000, HoldTimeouts: 7, Window: 2 * time.Second,
		CommandsPerSec: 2000, LatencyMean: 500 * time.Microsecond,
		// 4000 commands in the window, 3960 under 1ms: the 99th (3960th) is at 1ms.
		LatencyP99: time.Millisecond}
	if got != want {
		t.Errorf("trafficOf:\n got %+v\nwant %+v", got, want)
	}
	// No older sample: figures, no rates.
	if got := trafficOf(cur, cur); got.Window != 0 || got.CommandsPerSec != 0 || got.LatencyMean != 0 || got.Clients != 4 {
		t.Errorf("one sample: %+v", got)
	}
	// Idle: a window, a rate of 0, no latency.
	idle := cur
	idle.at = cur.at.Add(time.Second)
	if got := trafficOf(cur, idle); got.Window != time.Second || got.CommandsPerSec != 0 || got.LatencyMean != 0 || got.LatencyP99 != 0 {
		t.Errorf("idle: %+v", got)
	}
}

func TestRateBase(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms ...int) []trafficSample {
		var s []trafficSample
		for _, m := range ms {
			s = append(s, trafficSample{at: t0.Add(time.Duration(m) * time.Millisecond)})
		}
		return s
	}
	for _, tc := range []struct {
		samples []int
		want    int
	}{
		{[]int{0}, 0},
		{[]int{0, 300}, 0},                 // younger than the window: the oldest
		{[]int{0, 1000, 1500, 2100}, 1000}, // the newest at least a second older
		{[]int{0, 900, 2000}, 900},
	} {
		got := rateBase(at(tc.samples...), time.Second)
		if want := t0.Add(time.Duration(tc.want) * time.Millisecond); !got.at.Equal(want) {
			t.Errorf("rateBase(%v) = %v, want %v", tc.samples, got.at.Sub(t0), want.Sub(t0))
		}
	}
}

// TestTrafficMeter reads collectors named as the proxy's through a
// registry, as serve wires it.
func TestTrafficMeter(t *testing.T) {
	reg := prometheus.NewRegistry()
	clients := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricClients, Help: "h"})
	held := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricHeld, Help: "h"})
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricCommands, Help: "h"}, []string{"command", "result"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricLatency, Help: "h", Buckets: []float64{.001, .01}})
	reg.MustRegister(clients, held, commands, latency)
	m := newTrafficMeter(reg)
	t0 := time.Now()

	clients.Set(5)
	first := m.read(t0)
	if first.Clients != 5 || first.Window != 0 {
		t.Fatalf("first read: %+v", first)
	}
	commands.WithLabelValues("get", "ok").Add(30)
	commands.WithLabelValues("set", "error").Add(10)
	for i := 0; i < 40; i++ {
		latency.Observe(.002)
	}
	held.Set(2)
	// Within the minimum gap the last reading is reused.
	if again := m.read(t0.Add(100 * time.Millisecond)); again.Commands != 0 {
		t.Errorf("read within %v gathered again: %+v", trafficMinGap, again)
	}
	got := m.read(t0.Add(2 * time.Second))
	if got.Commands != 40 || got.Held != 2 || got.Window != 2*time.Second || got.CommandsPerSec != 20 ||
		got.LatencyMean != 2*time.Millisecond || got.LatencyP99 <= time.Millisecond || got.LatencyP99 > 10*time.Millisecond {
		t.Errorf("second read: %+v", got)
	}
	// Old readings are dropped.
	m.read(t0.Add(time.Minute))
	if n := len(m.samples); n != 1 {
		t.Errorf("%d readings kept after a minute, want 1", n)
	}
}
