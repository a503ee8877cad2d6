//go:build linux

package proxy

import (
	"bytes"
	"errors"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// Running a loop client's commands: each is parsed (resp.Parser),
// classified (session.decide) and carried out here — queued for a
// backend connection, answered, or left for the goroutine path.

// exec runs the complete commands at the start of buf and returns the
// bytes it did not run: a partial command, or everything from the first
// command that must wait. It is where the loop counts work in flight (see
// inflight): the entry it takes becomes the requests it queues, and each
// reply (deliver, failConn) gives one back.
func (l *evloop) exec(c *lclient, buf []byte) []byte {
	if c.holdFrom != (time.Time{}) || c.handoff || c.closing {
		c.stop = true
		return buf
	}
	rt := l.p.flight.enter(&l.p.routes)
	if rt == nil {
		if l.complete(c, buf) {
			l.park(c)
		}
		return buf
	}
	rest, queued := l.runCommands(c, rt, buf)
	l.p.flight.add(queued - 1)
	if cap(l.local) > 1<<20 {
		l.local = nil
	}
	return rest
}

// complete reports whether buf starts with a command to answer (a whole
// one, or a broken one), without moving c's parser.
func (l *evloop) complete(c *lclient, buf []byte) bool {
	l.probe.Reset()
	l.probe.MaxBulk, l.probe.Unauth = c.parser.MaxBulk, !c.s.authed()
	_, n, err := l.probe.Next(buf)
	return n > 0 || err != nil
}

// runCommands runs commands from buf until one must wait, and returns what
// it did not run and how many requests it queued.
func (l *evloop) runCommands(c *lclient, rt *routes, buf []byte) ([]byte, int) {
	queued := 0
	for len(buf) > 0 && !c.stop {
		if c.out.pending() > outPause {
			// It is not reading its replies: send nothing more of it.
			c.full, c.stop = true, true
			break
		}
		c.parser.Unauth = !c.s.authed()
		cmd, n, err := c.parser.Next(buf)
		var pe *resp.ProtocolError
		if errors.As(err, &pe) {
			// The stream is broken from here: answer what came before,
			// then the error, then close.
			c.protoErr = pe.Reply
			return buf[:0], queued
		}
		if n == 0 {
			break
		}
		if len(cmd.Args) == 0 { // an empty request, which Redis ignores
			buf = buf[n:]
			continue
		}
		used, q := l.runCommand(c, rt, cmd, buf, n)
		queued += q
		if used == 0 {
			break
		}
		buf = buf[used:]
	}
	return buf, queued
}

// runCommand carries out the decision on cmd, the command of n bytes at
// the start of buf. It returns how many bytes of buf it used (0: cmd did
// not run and c stops, or waits for more bytes) and how many requests it
// queued.
func (l *evloop) runCommand(c *lclient, rt *routes, cmd resp.Command, buf []byte, n int) (used, queued int) {
	s := c.s
	d, local := s.decide(rt.table, cmd, l.local[:0])
	l.local = local
	switch d.Kind {
	case command.Local:
		s.commit(&d, cmd.Args)
		d.Info.Count(local[0] == '-')
		l.answer(c, local)
		return n, 0
	case command.Forward, command.Read, command.ReadCursor:
		b := l.route(rt, d.Kind, c)
		if !l.mayQueue(c, b) {
			return 0, 0
		}
		s.commit(&d, cmd.Args)
		queued := l.queue(c, b, d.Raw, d.Info)
		b.waiters[len(b.waiters)-1].filter = d.Filter
		return n, queued
	case command.Close, command.Renew:
		if c.owed > 0 {
			c.stop = true // after the replies owed
			return 0, 0
		}
		s.commit(&d, cmd.Args)
		l.closeOrRenew(c, d.Kind)
		return n, 0
	}
	// Pin or Open: the goroutine path from this command on, unless it
	// opens a transaction the client sent whole.
	if d.Op == command.OpMulti && !c.eof && c.protoErr == "" {
		return l.block(c, rt, buf, n, d.Info)
	}
	c.handoff, c.stop = true, true
	if d.Kind == command.Open && l.openNow(c, rt, d.Info, cmd.Raw) {
		return n, 0
	}
	return 0, 0
}

// openNow hands a blocking command to the proxy's opener (opener.go) at
// once, from the loop, when the client is owed nothing (so the hand-off
// follows at once): the opener writes it to the master on a connection of
// its own in the order the loop read it, ahead of any client's read after
// it, with no hand-off, dial or handshake before it. The goroutine path
// then takes the client with that connection as its tunnel
// (gclient.opened). It reports whether it did; if not, the hand-off does it
// all as for any Open.
func (l *evloop) openNow(c *lclient, rt *routes, info *command.Info, raw []byte) bool {
	early := info.Special == command.XRead || info.Special == command.None && info.Has(command.Blocking)
	if !early || c.owed > 0 || len(c.after) > 0 || c.out.pending() > 0 || rt.master == nil || len(raw) > openNowMax {
		return false
	}
	p := l.p
	if p.pinned.Add(1) > int64(p.cfg().MaxPinned) {
		p.pinned.Add(-1) // the hand-off refuses it
		return false
	}
	o := &opened{id: c.s.st.ID, named: c.s.st.Name != "", info: info}
	b := raw
	if o.named {
		b = append(resp.AppendCommand(nil, "CLIENT", "SETNAME", c.s.st.Name), raw...)
	}
	o.raw = bytes.Clone(b)
	p.queueOpen(o)
	c.open = o
	return true
}

// openNowMax bounds the blocking commands openNow writes from the loop.
const openNowMax = 16 << 10

// answer gives c a reply the proxy made: now, or after the replies it is
// still owed, with nothing of c's run until then.
func (l *evloop) answer(c *lclient, reply []byte) {
	if c.owed > 0 {
		c.after = append(c.after, reply...)
		c.stop = true
		return
	}
	c.out.b = append(c.out.b, reply...)
}

// closeOrRenew carries out QUIT (+OK, then close) or RESET (the session
// is new again; a loop client holds no connection of its own).
func (l *evloop) closeOrRenew(c *lclient, k command.Kind) {
	if k == command.Close {
		c.out.b = append(c.out.b, "+OK\r\n"...)
		c.closing, c.stop = true, true
		return
	}
	c.out.b = append(c.out.b, "+RESET\r\n"...)
}

// mayQueue reports whether c's next request can go to b now; if not, c
// stops: b is not up (c waits for it, parked, unless replies are owed),
// or c is owed replies from another connection (they come first).
func (l *evloop) mayQueue(c *lclient, b *lconn) bool {
	if b == nil || (c.owed > 0 && b != c.on) {
		c.stop = true
		if b == nil && c.owed == 0 {
			l.park(c)
		}
		return false
	}
	return true
}

// queue adds raw, the requests whose entries are infos, to b's next write,
// and returns how many they are.
func (l *evloop) queue(c *lclient, b *lconn, raw []byte, infos ...*command.Info) int {
	if b.wbuf.pending() == 0 && !b.queued {
		b.queued = true
		l.towrite = append(l.towrite, b)
	}
	b.wbuf.b = append(b.wbuf.b, raw...)
	b.unsent += len(raw)
	for i, info := range infos {
		w := waiter{c: c, info: info, start: l.now}
		if i == 0 {
			w.n = len(raw)
		}
		if info.Long {
			w.busy = b.pl.busy.start(l.now)
		}
		b.waiters = append(b.waiters, w)
	}
	if c.owed == 0 {
		l.waiting++
	}
	c.owed += len(infos)
	c.on = b
	if c.owed >= c.window() {
		c.stop = true // the rest after these replies
	}
	return len(infos)
}

// route picks the loop connection for a forwarded command, or nil when
// it must wait: the master's is not up, or a replica's is still making its
// first connection (falling back to the master then would send a SCAN's
// cursor, or a read meant for replicas, to the wrong server). Reads take
// turns over the replicas (routes.target), except that the reads of one
// pipeline stay on the replica its first read went to: one write, replies
// in order.
func (l *evloop) route(rt *routes, k command.Kind, c *lclient) *lconn {
	if k == command.Read && c.owed > 0 && len(rt.replicas) > 0 && c.on.pl != rt.master && !c.on.retired {
		return c.on
	}
	if pl := rt.target(k, c.s.st.ID, &l.p.rr); pl != rt.master {
		if b := l.conn(pl); b != nil {
			return b
		}
		if b := l.conns[pl]; b != nil && b.fd < 0 && b.dialing && b.lastError == nil {
			return nil
		}
	}
	return l.conn(rt.master)
}
