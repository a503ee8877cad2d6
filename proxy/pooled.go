package proxy

import (
	"context"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The goroutine path's stateless commands: each batch is cut into
// segments, runs of local replies or of commands for one server; each
// server's commands go to a shared connection as one request (backend.go),
// and the replies are written in order once all have come.

// segment is a run of a pooled batch: local replies, or commands forwarded
// together to one server.
type segment struct {
	req    *request // nil for local replies
	pool   *pool
	lo, hi int            // local: range of g.local; forwarded: range of g.infos
	filter command.Filter // the segment's one command's reply is rewritten first
	busy   int64          // its long commands' key in the pool's busyTracker (0: none)
	ack    ackKind        // its writes wait for the replicas (acks.go)
}

// serve runs a batch: on the session's pinned connection while it has
// one, else over shared connections, until the session becomes a tunnel
// or the client is closing.
func (g *gclient) serve(cmds []resp.Command) {
	start := time.Now()
	for i := 0; i < len(cmds) && !g.closing && g.s.st.Conn != command.Tunnel; {
		if g.pin != nil {
			i = g.runPinned(cmds, i, start)
		} else {
			i = g.runPooled(cmds, i, start)
		}
	}
}

// routesFor waits for routes that can serve commands, until the hold
// deadline of a batch that started at start.
func (g *gclient) routesFor(start time.Time) (*routes, string) {
	return g.p.hold(context.Background(), start.Add(g.p.cfg().HoldTimeout), (*routes).ready)
}

// enter returns routes that are ready, with the batch counted in flight
// (see Proxy.Pause) until the caller calls p.flight.done(1).
func (g *gclient) enter(start time.Time) (*routes, string) {
	for {
		if rt := g.p.flight.enter(&g.p.routes); rt != nil {
			return rt, ""
		}
		if _, msg := g.routesFor(start); msg != "" {
			return nil, msg
		}
	}
}

// runPooled runs cmds[i:] over shared connections until a command needs a
// dedicated connection, and returns the index of the first command it did
// not run.
func (g *gclient) runPooled(cmds []resp.Command, i int, start time.Time) int {
	rt, msg := g.enter(start)
	if msg != "" {
		for ; i < len(cmds); i++ {
			g.out = resp.AppendError(g.out, msg)
		}
		return i
	}
	g.segs, g.local, g.infos = g.segs[:0], g.local[:0], g.infos[:0]
	nreq := 0
	var d command.Decision
	for ; i < len(cmds); i++ {
		lo := len(g.local)
		d, g.local = g.s.decide(rt.table, cmds[i], g.local)
		if d.Kind != command.Local && d.Kind != command.Forward && d.Kind != command.Read && d.Kind != command.ReadCursor {
			break
		}
		g.s.commit(&d, cmds[i].Args)
		if d.Kind == command.Local {
			g.addLocal(d.Info, lo)
			continue
		}
		pl := rt.target(d.Kind, g.s.st.ID, &g.p.rr)
		// A command whose reply is rewritten has a segment of its own.
		if n := len(g.segs); n > 0 && g.segs[n-1].req != nil && g.segs[n-1].pool == pl && d.Filter == 0 && g.segs[n-1].filter == 0 {
			seg := &g.segs[n-1]
			seg.req.cmds = append(seg.req.cmds, d.Raw)
			seg.hi++
		} else {
			req := g.request(nreq)
			nreq++
			req.cmds = append(req.cmds, d.Raw)
			g.segs = append(g.segs, segment{req: req, pool: pl, lo: len(g.infos), hi: len(g.infos) + 1, filter: d.Filter})
		}
		g.infos = append(g.infos, d.Info)
	}
	g.ackSegments(rt, start)
	g.flushPooled(rt, start)
	g.p.flight.done(1)
	if i == len(cmds) || g.closing {
		return len(cmds)
	}
	return g.dedicate(cmds, i, d, start)
}

// dedicate carries out a decision that the pooled path cannot: QUIT,
// RESET, or a command that needs a connection of the session's own (d is
// the last decision of cmds[i]). It returns the index of the next command
// to run.
func (g *gclient) dedicate(cmds []resp.Command, i int, d command.Decision, start time.Time) int {
	switch d.Kind {
	case command.Close:
		g.quit()
		return len(cmds)
	case command.Renew:
		g.renew(&d, cmds[i].Args)
		return i + 1
	case command.Ask:
		g.s.commit(&d, cmds[i].Args)
		lo := len(g.out)
		var self bool
		g.out, self = g.p.ask(g.s, cmds[i].Args, g.out)
		d.Info.Count(g.out[lo] == '-')
		g.closing = g.closing || self // it killed itself: closed after the reply, as Redis does
		return i + 1
	}
	// Pin or Open: cmds[i] runs on a dedicated connection, classified
	// again there.
	if g.pin == nil {
		var target *pool // the master
		if d.Info.Special == command.KillScript {
			target = g.p.routes.Load().busyPool()
		}
		if msg := g.acquirePin(start, target); msg != "" {
			g.out = resp.AppendError(g.out, msg)
			return i + 1
		}
	}
	if d.Kind == command.Open {
		g.tunnel(cmds[i:], true)
		return len(cmds)
	}
	return i
}

func (g *gclient) addLocal(info *command.Info, lo int) {
	info.Count(g.local[lo] == '-')
	if n := len(g.segs); n > 0 && g.segs[n-1].req == nil && g.segs[n-1].hi == lo {
		g.segs[n-1].hi = len(g.local)
		return
	}
	g.segs = append(g.segs, segment{lo: lo, hi: len(g.local)})
}

func (g *gclient) request(k int) *request {
	for len(g.reqs) <= k {
		g.reqs = append(g.reqs, newRequest())
	}
	r := g.reqs[k]
	r.reset(g.p.cfg().MaxOutput)
	return r
}

// flushPooled sends every forwarded segment, then writes all replies in
// order. It waits for every request it sent, even after a failure, so no
// backend connection still refers to a request when it is reused.
func (g *gclient) flushPooled(rt *routes, start time.Time) {
	for k := range g.segs {
		if seg := &g.segs[k]; seg.req != nil {
			if anyLong(g.infos[seg.lo:seg.hi]) {
				seg.busy = seg.pool.busy.start(time.Now())
			}
			g.dispatch(rt, seg, start)
		}
	}
	overflow := false
	for k := range g.segs {
		seg := &g.segs[k]
		if seg.req == nil {
			g.out = append(g.out, g.local[seg.lo:seg.hi]...)
			continue
		}
		<-seg.req.done
		seg.req.settle()
		seg.pool.busy.done(seg.busy)
		overflow = overflow || seg.req.overflow
		switch r := seg.req; {
		case overflow:
		case seg.ack != ackNone:
			out, isErr := g.acked(seg, r, start)
			g.out = append(g.out, out...)
			g.account(isErr, g.infos[seg.lo:seg.hi], start)
		case r.failed != nil && rerunErr(r.failed):
			overflow = g.rerun(seg, g.segs[k+1:], start)
		case seg.filter != command.FilterNone:
			g.out = append(g.out, g.p.filter(seg.filter, r.out)...)
			g.account(r.isErr, g.infos[seg.lo:seg.hi], start)
		default:
			g.out = append(g.out, r.out...)
			g.account(r.isErr, g.infos[seg.lo:seg.hi], start)
		}
		seg.req.release()
	}
	if overflow {
		g.drop("output_limit")
	}
}

// rerun writes the replies seg's request got before its connection died,
// and for the unanswered commands that may run again (see rerunFrom) runs
// them again, once, on the master (waiting for one as any command does);
// the others get the error the connection's failure gave them. It reports
// whether the replies passed the output limit.
func (g *gclient) rerun(seg *segment, later []segment, start time.Time) (overflow bool) {
	r := seg.req
	unanswered := g.infos[seg.lo+r.answered : seg.hi]
	from := len(unanswered)
	if laterReadsOnly(later, g.infos) {
		from = rerunFrom(len(unanswered), func(j int) bool { return unanswered[j].FastRead() })
	}
	// The replies before the re-run: those that came, then the errors.
	cut := r.answeredOut
	for range from {
		cut += lostLen(r.out[cut:])
	}
	g.out = append(g.out, r.out[:cut]...)
	g.account(r.isErr[:r.answered+from], g.infos[seg.lo:seg.lo+r.answered+from], start)
	if from == len(unanswered) {
		return false
	}
	g.writeOut() // what came before, and the errors, go now: the re-run may wait
	if g.again == nil {
		g.again = newRequest()
	}
	again := g.again
	again.reset(g.p.cfg().MaxOutput)
	again.cmds = append(again.cmds, r.cmds[r.answered+from:]...)
	g.p.m.requeued.WithLabelValues("yes").Add(float64(len(again.cmds)))
	if rt, msg := g.routesFor(start); msg != "" {
		again.failWith(msg)
	} else {
		g.dispatch(rt, &segment{req: again, pool: rt.master}, start)
	}
	<-again.done
	again.settle()
	defer again.release()
	if again.overflow {
		return true
	}
	g.out = append(g.out, again.out...)
	g.account(again.isErr, unanswered[from:], start)
	return false
}

// laterReadsOnly reports whether the forwarded segments later in the batch
// hold reads only: a write among them may already have run and changed
// what a read that runs again would see.
func laterReadsOnly(later []segment, infos []*command.Info) bool {
	for _, seg := range later {
		if seg.req == nil {
			continue
		}
		for _, info := range infos[seg.lo:seg.hi] {
			if !info.Has(command.Readonly) {
				return false
			}
		}
	}
	return true
}

// dispatch sends seg's request. A replica that cannot take it sends it to
// the master instead; a master that cannot take it is waited for until the
// hold deadline, and then the commands get the hold error.
func (g *gclient) dispatch(rt *routes, seg *segment, start time.Time) {
	r := seg.req
	hint := uint64(g.s.st.ID)
	if seg.pool.send(hint, r) {
		return
	}
	for {
		if rt.master != nil && rt.master.send(hint, r) {
			return
		}
		cur := rt
		var msg string
		rt, msg = g.p.hold(context.Background(), start.Add(g.p.cfg().HoldTimeout), func(n *routes) bool {
			return n != cur && n.ready()
		})
		if msg != "" {
			r.failWith(msg)
			return
		}
	}
}

func (g *gclient) account(isErr []bool, infos []*command.Info, start time.Time) {
	d := time.Since(start).Seconds()
	for j, info := range infos {
		info.Count(isErr[j])
		g.p.m.latency.Observe(d)
	}
}

// anyLong reports whether infos hold a script or function (see busy.go).
func anyLong(infos []*command.Info) bool {
	for _, info := range infos {
		if info.Long {
			return true
		}
	}
	return false
}
