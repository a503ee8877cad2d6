package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// Pinned sessions: a client whose server-side state (a transaction, a
// database, an ACL user) lives on a connection of its own, request and
// reply, until the state ends and the connection goes back.

// pinItem is one command of a pinned group.
type pinItem struct {
	local  bool
	lo, hi int // a local reply: its range of g.local
	info   *command.Info
	op     command.Op
	arg    int
	filter command.Filter
	write  bool // its reply waits for the replicas (acks.go)
}

// runPinned runs cmds[i:] on the session's dedicated connection. Commands
// are sent in groups (one write each); a group ends after a command that
// may make the connection clean (command.EndsGroup), so the connection is
// given back as soon as it is.
func (g *gclient) runPinned(cmds []resp.Command, i int, start time.Time) int {
	rt := g.p.routes.Load()
	if rt.table == nil {
		var msg string
		if rt, msg = g.routesFor(start); msg != "" {
			g.out = resp.AppendError(g.out, msg)
			return i + 1
		}
	}
	g.items, g.local = g.items[:0], g.local[:0]
	var d command.Decision
	stopped := false
	for ; i < len(cmds) && !stopped; i++ {
		lo := len(g.local)
		d, g.local = g.s.decide(rt.table, cmds[i], g.local)
		switch d.Kind {
		case command.Local:
			g.s.commit(&d, cmds[i].Args)
			d.Info.Count(g.local[lo] == '-')
			g.items = append(g.items, pinItem{local: true, lo: lo, hi: len(g.local)})
		case command.Forward, command.Read, command.Pin:
			// In a transaction only EXEC's reply is a write's.
			write := isAckWrite(d.Info) && (!g.s.st.Tx.InMulti || d.Info.Special == command.Exec)
			g.s.commit(&d, cmds[i].Args)
			g.batch.add(d.Raw)
			g.items = append(g.items, pinItem{info: d.Info, op: d.Op, arg: d.Arg, filter: d.Filter, write: write})
			if command.EndsGroup(d.Op, d.Arg) {
				d.Kind, stopped = command.Forward, true
			}
		default:
			stopped = true
			i-- // not run here
		}
	}
	f, ok := g.exchange(start)
	if !ok {
		return len(cmds)
	}
	return g.afterGroup(cmds, i, d, f)
}

// exchange writes the group and gives the client each reply in order,
// following the connection's state. It reports false when the client is
// dropped (the connection failed, or the replies passed the output limit).
func (g *gclient) exchange(start time.Time) (f command.Followup, ok bool) {
	pin := g.pin
	busy := int64(0)
	if anyLongItem(g.items) {
		busy = pin.p.busy.start(time.Now())
	}
	defer pin.p.busy.done(busy)
	ack := g.pinnedAck()
	var err error
	err = g.batch.writeTo(pin.nc, gKeep)
	over := false
	g.starts = g.starts[:0]
	for _, it := range g.items {
		g.starts = append(g.starts, len(g.out))
		switch {
		case it.local:
			g.out = append(g.out, g.local[it.lo:it.hi]...)
			continue
		case err != nil || over:
			g.out = appendLost(g.out, pin.p.addr, err)
			it.info.Fail.Inc()
			continue
		}
		g.reply, over, err = pin.rr.AppendValue(g.reply[:0], g.p.cfg().MaxOutput)
		if err != nil || over {
			if err != nil {
				g.out = appendLost(g.out, pin.p.addr, err)
				it.info.Fail.Inc()
			}
			continue
		}
		st, fu := command.AfterReply(g.s.st, it.op, it.arg, g.reply)
		g.s.st = st
		reply := g.reply
		switch {
		case fu.Reply != nil:
			reply = fu.Reply
		case it.filter != command.FilterNone:
			reply = g.p.filter(it.filter, reply)
		}
		f.ReadDB, f.TunnelNow = f.ReadDB || fu.ReadDB, f.TunnelNow || fu.TunnelNow
		g.out = append(g.out, reply...)
		it.info.Count(reply[0] == '-')
		g.p.m.latency.Observe(time.Since(start).Seconds())
	}
	if ack != ackNone && err == nil && !over {
		err = g.pinnedAcked(ack, start)
	}
	if cap(g.reply) > gKeep {
		g.reply = nil
	}
	switch {
	case over:
		g.drop("output_limit")
		return f, false
	case err != nil:
		g.pinLost(err)
		return f, false
	}
	return f, true
}

// afterGroup follows up a group's replies: the database EXEC left, a
// tunnel EXEC opened, the connection given back once clean, and the
// command that ended the group if it was not run. It returns the index of
// the next command to run.
func (g *gclient) afterGroup(cmds []resp.Command, i int, d command.Decision, f command.Followup) int {
	if f.ReadDB {
		if err := g.readDB(); err != nil {
			g.pinLost(err)
			return len(cmds)
		}
	}
	if f.TunnelNow {
		// EXEC ran SUBSCRIBE, HELLO 3 or the like. A RESP2 subscriber
		// accepts no handshake (nor CLIENT GETNAME, so the name need not
		// be given); otherwise the handshake goes as usual.
		g.tunnel(cmds[i:], !g.s.st.Tx.SubscribedAtExec)
		return len(cmds)
	}
	if g.s.st.Tx.Clean() {
		g.releasePin(true)
	}
	if i == len(cmds) || d.Kind == command.Forward || d.Kind == command.Local {
		return i
	}
	if d.Kind == command.Open && g.pin == nil {
		// The state ended in this batch (a refused SELECT, say) and its
		// connection went back: runPooled takes one for the tunnel.
		return i
	}
	return g.dedicate(cmds, i, d, time.Now())
}

// pinLost ends a session whose dedicated connection failed: its
// server-side state (transaction, database) is gone with the connection,
// and the client must learn that, as with Redis itself.
func (g *gclient) pinLost(err error) {
	g.p.log.Warn("pinned connection lost", "client", g.s.st.ID, "server", g.pin.p.addr, "err", err)
	g.drop("backend_lost")
}

// readDB asks the server which database the pinned connection is in.
func (g *gclient) readDB() error {
	pin := g.pin
	g.wbuf = resp.AppendCommand(g.wbuf[:0], "CLIENT", "INFO")
	if _, err := pin.nc.Write(g.wbuf); err != nil {
		return err
	}
	reply, _, err := pin.rr.AppendValue(nil, 64<<10)
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(reply)) {
		if v, ok := strings.CutPrefix(f, "db="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				g.s.st.Tx.DB = n
				return nil
			}
		}
	}
	return fmt.Errorf("CLIENT INFO without db: %q", reply)
}

// acquirePin gives the session a dedicated connection to the master (or
// to target, if not nil), waiting (like any command) for a master during
// a failover. It returns the error reply when it cannot.
func (g *gclient) acquirePin(start time.Time, target *pool) string {
	p := g.p
	limit := int64(p.cfg().MaxPinned)
	if p.pinned.Add(1) > limit {
		p.pinned.Add(-1)
		p.m.rejected.WithLabelValues("max_pinned").Inc()
		return fmt.Sprintf("ERR redis-proxy: too many pinned connections (max %d), retry later", limit)
	}
	deadline := start.Add(p.cfg().HoldTimeout)
	rt := p.routes.Load()
	for {
		pl := rt.master
		if target != nil {
			pl = target
		}
		if pl != nil {
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg().DialTimeout)
			d, err := pl.acquire(ctx)
			cancel()
			if err == nil {
				g.pin = d
				g.s.dedicated(d)
				g.s.st.Conn, g.s.st.Tx = command.Pinned, command.Tx{}
				p.m.pinned.Inc()
				return ""
			}
			p.log.Debug("dedicated connection failed", "server", pl.addr, "err", err)
		}
		cur := rt
		var msg string
		rt, msg = p.hold(context.Background(), deadline, func(n *routes) bool { return n != cur && n.ready() })
		if msg != "" {
			p.pinned.Add(-1)
			return msg
		}
	}
}

// releasePin gives the dedicated connection back; clean says whether its
// server-side state is known to be clean so it may serve another session.
func (g *gclient) releasePin(clean bool) {
	if g.pin == nil {
		return
	}
	g.pin.p.release(g.pin, clean)
	g.pin = nil
	g.s.dedicated(nil)
	g.s.st.Conn, g.s.st.Tx = command.Shared, command.Tx{}
	g.p.pinned.Add(-1)
	g.p.m.pinned.Dec()
}

// anyLongItem reports whether a pinned group holds a script or function.
func anyLongItem(items []pinItem) bool {
	for _, it := range items {
		if !it.local && it.info.Long {
			return true
		}
	}
	return false
}
