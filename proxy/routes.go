package proxy

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/replication"
)

// routes is what clients route by: an immutable snapshot, replaced as a
// whole (Proxy.swapLocked) when the topology, the command table, a pause
// or a pool's readiness changes. changed is closed when the snapshot is
// replaced, which wakes the clients held waiting for it.
type routes struct {
	topo     replication.Topology
	master   *pool
	replicas []*pool
	table    *command.Table
	paused   bool // a planned switchover: hold new commands
	changed  chan struct{}
}

// ready reports whether commands can be routed now.
func (r *routes) ready() bool { return r.master != nil && r.table != nil && !r.paused }

// target is the server a command classified as k goes to: reads take
// turns over the replicas (rr counts the turns), a SCAN-family read goes
// to the replica of the session's cursors (by its id), everything else to
// the master.
func (r *routes) target(k command.Kind, id int64, rr *atomic.Uint64) *pool {
	n := uint64(len(r.replicas))
	switch {
	case n == 0:
	case k == command.Read:
		return r.replicas[rr.Add(1)%n]
	case k == command.ReadCursor:
		return r.replicas[uint64(id)%n]
	}
	return r.master
}

// inflight counts the work routed and not yet answered — a batch on the
// goroutine path, a request on an event loop — so that Pause can wait
// until none is. It is the one place that counts it.
type inflight struct{ n atomic.Int64 }

// enter counts one unit of work in flight and returns the routes if they
// are ready; otherwise it takes the count back and returns nil. The count
// is taken before the routes are read, so Pause, which publishes paused
// routes and then waits for the count to drain, either sees this work or
// this work sees the pause.
func (f *inflight) enter(r *atomic.Pointer[routes]) *routes {
	f.n.Add(1)
	if rt := r.Load(); rt.ready() {
		return rt
	}
	f.n.Add(-1)
	return nil
}

// add counts n more units in flight; done counts n answered.
func (f *inflight) add(n int)    { f.n.Add(int64(n)) }
func (f *inflight) done(n int)   { f.n.Add(-int64(n)) }
func (f *inflight) count() int64 { return f.n.Load() }

// errNoMaster and errHeldFull are the replies to commands that could not be
// routed: during a failover that outlasted HoldTimeout, or with too many
// sessions already waiting.
const (
	errNoMaster = "TRYAGAIN redis-proxy: no master available (waited %s)"
	errHeldFull = "TRYAGAIN redis-proxy: too many clients waiting for a master"
)

// hold waits until the routes satisfy ok or the deadline passes. It
// returns the routes, or nil and the error reply. (Event loops do not
// wait here: they park the client and look again on their own tick.)
func (p *Proxy) hold(ctx context.Context, deadline time.Time, ok func(*routes) bool) (*routes, string) {
	r := p.routes.Load()
	if ok(r) {
		return r, ""
	}
	if p.held.Add(1) > int64(p.cfg().MaxHeld) {
		p.held.Add(-1)
		p.m.holdTimeouts.Inc()
		return nil, errHeldFull
	}
	p.m.held.Inc()
	defer func() {
		p.held.Add(-1)
		p.m.held.Dec()
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case <-r.changed:
		case <-timer.C:
			p.m.holdTimeouts.Inc()
			return nil, fmt.Sprintf(errNoMaster, p.cfg().HoldTimeout)
		case <-ctx.Done():
			return nil, fmt.Sprintf(errNoMaster, p.cfg().HoldTimeout)
		}
		r = p.routes.Load()
		if ok(r) {
			return r, ""
		}
	}
}
