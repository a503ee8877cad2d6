//go:build linux

package proxy

import (
	"bytes"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
)

// The event loop's side of durable writes (acks.go): a WAIT after each
// batch written to the master that holds a write, and the replies held
// until it answers.

// heldReply is a reply held for the replicas: a write's (its group's
// outcome decides it) or one behind it.
type heldReply struct {
	g     *ackGroup
	b     []byte
	write bool
}

// waitInfo is the entry of the proxy's own WAIT among a connection's
// waiters.
var waitInfo = &command.Info{Name: "wait"}

// ackBatch ends the batch about to be written to b with a WAIT when it
// holds a write and b is the master's: the batch's writes form its group.
func (l *evloop) ackBatch(b *lconn) {
	cfg := l.p.cfg()
	if cfg.WriteAcks == 0 || b.sent == len(b.waiters) {
		return
	}
	rt := l.p.routes.Load()
	if rt.master != b.pl {
		return
	}
	var g *ackGroup
	for i := b.sent; i < len(b.waiters); i++ {
		w := &b.waiters[i]
		// In a transaction block only EXEC's reply counts (the others
		// are +QUEUED).
		if w.c == nil || w.ack != nil || !isAckWrite(w.info) || w.n == 0 && w.info.Special != command.Exec {
			continue
		}
		if g == nil {
			g = &ackGroup{sent: l.now}
		}
		w.group = g
	}
	if g == nil {
		return
	}
	if len(rt.topo.Replicas) < cfg.WriteAcks {
		l.p.noReplicas(g, rt) // fail fast: no WAIT could succeed
		return
	}
	if l.waitCmd == nil {
		l.waitCmd = l.p.waitCommand()
	}
	b.wbuf.b = append(b.wbuf.b, l.waitCmd...)
	b.unsent += len(l.waitCmd)
	b.waiters = append(b.waiters, waiter{info: waitInfo, n: len(l.waitCmd), ack: g, start: l.now})
}

// hold keeps reply for c until g (a write's group, or nil for a reply
// behind held ones) is done.
func (l *evloop) hold(c *lclient, g *ackGroup, reply []byte) {
	write := g != nil
	if g == nil {
		g = c.ackq[len(c.ackq)-1].g
	}
	if c.ackBytes+len(reply) > l.p.cfg().MaxOutput {
		if c.owed--; c.owed == 0 {
			l.waiting--
		}
		l.dropClient(c, "output_limit")
		return
	}
	c.ackq = append(c.ackq, heldReply{g: g, b: bytes.Clone(reply), write: write})
	c.ackBytes += len(reply)
	if write {
		l.p.m.ackWaiting.Inc()
	}
	if hs := l.ackHeld[g]; len(hs) == 0 || hs[len(hs)-1] != c {
		if l.ackHeld == nil {
			l.ackHeld = map[*ackGroup][]*lclient{}
		}
		l.ackHeld[g] = append(hs, c)
	}
}

// ackDone takes the WAIT's reply (nil: none will come) for g and gives
// the clients what was held for it.
func (l *evloop) ackDone(g *ackGroup, reply []byte) {
	l.p.ackOutcome(g, reply, l.now)
	clients := l.ackHeld[g]
	delete(l.ackHeld, g)
	for _, c := range clients {
		l.release(c)
	}
}

// release gives c its held replies whose groups are done, in order.
func (l *evloop) release(c *lclient) {
	for len(c.ackq) > 0 && c.ackq[0].g.done {
		h := c.ackq[0]
		c.ackq[0] = heldReply{}
		c.ackq = c.ackq[1:]
		c.ackBytes -= len(h.b)
		if h.write {
			l.p.m.ackWaiting.Dec()
			h.b = replicatedReply(h.g, h.b)
		}
		if len(c.ackq) == 0 {
			c.ackq = nil
		}
		l.give(c, h.b, 0)
	}
}
