package main

// Traffic figures for the status page: clients, commands per second,
// latency, held sessions, read from the proxy's own Prometheus collectors
// (so the page and /metrics never disagree) and turned into rates over the
// last second or so.

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// traffic is the data path's part of /topology.
type traffic struct {
	Clients      int64  `json:"clients"`       // connections open now
	Held         int64  `json:"held"`          // client sessions waiting for a master
	Pinned       int64  `json:"pinned"`        // dedicated backend connections
	Commands     uint64 `json:"commands"`      // answered since start
	HoldTimeouts uint64 `json:"hold_timeouts"` // commands failed waiting for a master, since start
	// Over the window (0: no rate yet, the first sample):
	Window         time.Duration `json:"window_ns"`
	CommandsPerSec float64       `json:"commands_per_sec"`
	LatencyMean    time.Duration `json:"latency_mean_ns"` // 0: no command in the window
	LatencyP99     time.Duration `json:"latency_p99_ns"`  // interpolated within the histogram's bucket
}

// trafficSample is one reading of the collectors.
type trafficSample struct {
	at                     time.Time
	clients, held, pinned  float64
	commands, holdTimeouts float64
	latCount               uint64
	latSum                 float64
	latUpper               []float64 // bucket upper bounds (seconds), ascending
	latCumulative          []uint64  // commands at or under each bound
}

// Names of the proxy's collectors read here (proxy/metrics.go).
const (
	metricClients      = "redis_proxy_clients"
	metricHeld         = "redis_proxy_held_sessions"
	metricPinned       = "redis_proxy_pinned_connections"
	metricCommands     = "redis_proxy_commands_total"
	metricHoldTimeouts = "redis_proxy_hold_timeouts_total"
	metricLatency      = "redis_proxy_command_duration_seconds"
)

// sampleOf reads a gathered registry.
func sampleOf(mfs []*dto.MetricFamily, at time.Time) trafficSample {
	s := trafficSample{at: at}
	for _, mf := range mfs {
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		switch mf.GetName() {
		case metricClients:
			s.clients = sum
		case metricHeld:
			s.held = sum
		case metricPinned:
			s.pinned = sum
		case metricCommands:
			s.commands = sum
		case metricHoldTimeouts:
			s.holdTimeouts = sum
		case metricLatency:
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				s.latCount, s.latSum = h.GetSampleCount(), h.GetSampleSum()
				for _, b := range h.GetBucket() {
					s.latUpper = append(s.latUpper, b.GetUpperBound())
					s.latCumulative = append(s.latCumulative, b.GetCumulativeCount())
				}
			}
		}
	}
	return s
}

// trafficOf is cur's figures, with rates since base (none if base is not
// older than cur).
func trafficOf(base, cur trafficSample) traffic {
	t := traffic{Clients: int64(cur.clients), Held: int64(cur.held), Pinned: int64(cur.pinned),
		Commands: uint64(cur.commands), HoldTimeouts: uint64(cur.holdTimeouts)}
	dt := cur.at.Sub(base.at)
	if dt <= 0 {
		return t
	}
	t.Window = dt
	t.CommandsPerSec = max(0, cur.commands-base.commands) / dt.Seconds()
	if n := cur.latCount - min(base.latCount, cur.latCount); n > 0 {
		t.LatencyMean = seconds((cur.latSum - base.latSum) / float64(n))
		if len(base.latCumulative) == len(cur.latCumulative) {
			delta := make([]uint64, len(cur.latCumulative))
			for i := range delta {
				delta[i] = cur.latCumulative[i] - min(base.latCumulative[i], cur.latCumulative[i])
			}
			t.LatencyP99 = seconds(quantile(0.99, cur.latUpper, delta, n))
		}
	}
	return t
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// quantile estimates the q-quantile of n observations from cumulative
// bucket counts, as Prometheus's histogram_quantile does: linearly within
// the bucket that holds it (the first bucket starts at 0). Past the last
// bound it is the last bound.
func quantile(q float64, upper []float64, cumulative []uint64, n uint64) float64 {
	if n == 0 || len(upper) == 0 {
		return 0
	}
	rank := q * float64(n)
	lower, below := 0.0, uint64(0)
	for i, c := range cumulative {
		if float64(c) >= rank {
			in := c - below
			if in == 0 || math.IsInf(upper[i], 1) {
				return lower
			}
			return lower + (upper[i]-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = upper[i], c
	}
	return upper[len(upper)-1]
}

// trafficMeter reads the registry when asked, at most every minGap, and
// keeps the readings of the last keep, so rates cover about a second
// however often (or rarely, or by how many viewers) the figures are asked.
type trafficMeter struct {
	gather func() ([]*dto.MetricFamily, error)

	mu      sync.Mutex
	samples []trafficSample // oldest first
}

const (
	trafficMinGap = 250 * time.Millisecond
	trafficWindow = time.Second
	trafficKeep   = 10 * time.Second
)

func newTrafficMeter(g prometheus.Gatherer) *trafficMeter { return &trafficMeter{gather: g.Gather} }

// read returns the figures as of now.
func (m *trafficMeter) read(now time.Time) traffic {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.samples); n == 0 || now.Sub(m.samples[n-1].at) >= trafficMinGap {
		mfs, _ := m.gather() // a failed collector spoils only its own family
		m.samples = append(m.samples, sampleOf(mfs, now))
	}
	drop := 0
	for drop < len(m.samples)-1 && now.Sub(m.samples[drop].at) > trafficKeep {
		drop++
	}
	m.samples = m.samples[drop:]
	return trafficOf(rateBase(m.samples, trafficWindow), m.samples[len(m.samples)-1])
}

// rateBase picks the sample to measure rates from: the newest at least
// window older than the newest, else the oldest.
func rateBase(samples []trafficSample, window time.Duration) trafficSample {
	cur := samples[len(samples)-1]
	for i := len(samples) - 2; i >= 0; i-- {
		if cur.at.Sub(samples[i].at) >= window {
			return samples[i]
		}
	}
	return samples[0]
}
