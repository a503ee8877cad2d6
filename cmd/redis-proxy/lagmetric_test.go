package main

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/replication"
)

// gaugeValue reads one gauge from reg; -1 if it is not there.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestReplicasLaggingMetric: redis_proxy_replicas_lagging counts the
// replicas out of the read rotation for lag: 0, then 1 while a replica is
// stopped (SIGSTOP) and writes go on, 0 once it has caught up.
func TestReplicasLaggingMetric(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	mgr, err := replication.NewManager(replication.Config{Servers: []string{a.Addr, b.Addr}, Authority: true,
		CheckInterval: 100 * time.Millisecond, DownAfter: 5 * time.Second, MaxReplicaLag: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	registerReplicationMetrics(reg, mgr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Run(ctx) }()
	defer func() { cancel(); <-done }()

	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 5s for %s; status %+v", what, mgr.Status())
			}
		}
	}
	wait("b in the rotation", func() bool { return len(mgr.Topology().Replicas) == 1 })
	if v := gaugeValue(t, reg, "redis_proxy_replicas_lagging"); v != 0 {
		t.Fatalf("redis_proxy_replicas_lagging = %v with b current, want 0", v)
	}
	stop := make(chan struct{})
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		c := a.Dial()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if _, err := c.Do("SET", "k", i); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
	}()
	defer func() { close(stop); <-writer }()
	b.Pause()
	wait("b lagging", func() bool { return gaugeValue(t, reg, "redis_proxy_replicas_lagging") == 1 })
	if tp := mgr.Topology(); len(tp.Replicas) != 0 {
		t.Errorf("a lagging replica is published: %+v", tp)
	}
	b.Resume()
	wait("b caught up", func() bool { return gaugeValue(t, reg, "redis_proxy_replicas_lagging") == 0 })
}
