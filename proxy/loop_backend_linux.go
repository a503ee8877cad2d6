//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The event loop's server side: its own shared connection to each server,
// dialed in the background; requests written once per wake-up; replies
// found with the one reply scanner and delivered to the clients owed them;
// and what happens to those still owed when a connection dies.

// lconn is a loop's own shared connection to one server.
type lconn struct {
	pl      *pool
	fd      int
	in      []byte
	scan    resp.ReplyScanner
	wbuf    obuf
	waiters []waiter
	head    int
	queued  bool // in the loop's towrite list
	// waiters[head:sent] were written; their replies are awaited. held:
	// requests wait in wbuf until those replies are in (coalescing).
	// unsent: the bytes at the end of wbuf of waiters[sent:], which no
	// write has tried yet.
	sent   int
	held   bool
	unsent int
	// flight holds a copy of the written requests that may run again
	// should the connection die before answering them (rerunnable), in
	// order; its first flightOff bytes are those of answered ones.
	flight    []byte
	flightOff int
	writing   bool // EPOLLOUT registered
	dead      bool
	retired   bool
	// Dialing state, for a connection not yet (or no longer) up.
	dialing   bool
	nextDial  time.Time
	backoff   time.Duration
	lastError error
}

// waiter is a reply owed to a client.
type waiter struct {
	c      *lclient
	info   *command.Info
	start  time.Time
	n      int            // bytes of its request in the write buffer (0: the rest of a transaction block)
	filter command.Filter // what to do to the reply first (command.Decision.Filter)
	busy   int64          // a long command's key in the pool's busyTracker (0: none)
	passed int            // bytes of its reply already passed on to the client (pass)
	// group: a write whose reply waits for the replicas (acks.go); ack:
	// this is the proxy's WAIT for that group (c is nil).
	group *ackGroup
	ack   *ackGroup
}

// conn returns the loop's live connection to pl, starting a dial if there
// is none.
func (l *evloop) conn(pl *pool) *lconn {
	b := l.conns[pl]
	if b != nil && !b.dead && !b.retired && b.fd >= 0 {
		return b
	}
	if b == nil || b.dead || b.retired {
		if b != nil && b.fd >= 0 && len(b.waiters) > b.head {
			// A retired connection still answering: wait for it.
			return nil
		}
		nb := &lconn{pl: pl, fd: -1, backoff: minBackoff}
		if b != nil && b.fd < 0 {
			nb.backoff, nb.nextDial = b.backoff, b.nextDial
		}
		b = nb
		l.conns[pl] = b
	}
	if !b.dialing && !l.now.Before(b.nextDial) {
		l.dial(b)
	}
	return nil
}

func (l *evloop) dial(b *lconn) {
	b.dialing = true
	pl := b.pl
	go func() {
		bc, err := pl.d.dial(pl.ctx, pl.addr, true)
		nc, br := bc.nc, bc.br
		if err == nil && !loopable(nc) {
			nc, br, err = relayTLS(nc, br) // the loop owns raw sockets
		}
		fd := -1
		if err == nil {
			if br.Buffered() > 0 {
				err = errors.New("unexpected bytes after the handshake")
			} else {
				fd, err = dupConn(nc)
			}
			nc.Close()
		}
		l.post(func() {
			b.dialing = false
			if l.stopped || l.conns[pl] != b || pl.ctx.Err() != nil {
				if fd >= 0 {
					unix.Close(fd)
				}
				return
			}
			if err != nil {
				if b.lastError == nil {
					l.p.log.Warn("backend connection failed", "server", pl.addr, "loop", true, "err", err)
				}
				b.lastError = err
				if errors.Is(err, errLoading) {
					b.nextDial = time.Now().Add(loadingRetry)
					return
				}
				b.nextDial = time.Now().Add(b.backoff)
				b.backoff = min(2*b.backoff, maxBackoff)
				return
			}
			if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
				unix.Close(fd)
				b.nextDial = time.Now().Add(b.backoff)
				return
			}
			if b.lastError != nil {
				l.p.log.Info("backend connection restored", "server", pl.addr, "loop", true)
			}
			b.fd, b.lastError, b.backoff = fd, nil, minBackoff
			l.byFD[fd] = b
			l.p.m.backendConns.WithLabelValues(pl.addr).Inc()
		})
	}()
}

func (l *evloop) writeConn(b *lconn) {
	l.ackBatch(b)
	if n := len(b.waiters) - b.sent; n > 0 {
		l.p.m.backendBatch.Observe(float64(n))
		b.keepReads()
	}
	if err := b.wbuf.writeTo(b.fd, 4<<20); err != nil {
		l.failConn(b, fmt.Errorf("write: %w", err))
		return
	}
	b.sent, b.unsent = len(b.waiters), 0
	want := b.wbuf.pending() > 0
	if want != b.writing {
		b.writing = want
		ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP)
		if want {
			ev |= unix.EPOLLOUT
		}
		unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, b.fd, &unix.EpollEvent{Events: ev, Fd: int32(b.fd)})
	}
}

func (l *evloop) readConn(b *lconn) {
	if cap(b.in)-len(b.in) < loopReadSize/4 {
		nb := make([]byte, len(b.in), max(2*cap(b.in), loopReadSize))
		copy(nb, b.in)
		b.in = nb
	}
	n, err := rawRead(b.fd, b.in[len(b.in):cap(b.in)])
	if n <= 0 {
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		if err == nil {
			err = io.EOF
		}
		l.failConn(b, fmt.Errorf("read: %w", err))
		return
	}
	b.in = b.in[:len(b.in)+n]
	buf := b.in
	answered := 0
	for len(buf) > 0 {
		end, err := b.scan.Next(buf)
		if err != nil {
			l.p.flight.done(answered)
			l.failConn(b, fmt.Errorf("read: %w", err))
			return
		}
		if end == 0 {
			break
		}
		if b.head == len(b.waiters) {
			l.p.flight.done(answered)
			l.failConn(b, errors.New("reply without a request"))
			return
		}
		w := b.waiters[b.head]
		b.waiters[b.head] = waiter{}
		b.head++
		if w.ack != nil {
			l.ackDone(w.ack, buf[:end])
			buf = buf[end:]
			continue
		}
		answered++
		b.pl.busy.done(w.busy)
		if rerunnable(&w) {
			b.flightOff += w.n
		}
		w.c.retried = false
		l.deliver(w, buf[:end])
		buf = buf[end:]
	}
	l.p.flight.done(answered)
	if len(buf) >= passFrom && b.head < len(b.waiters) {
		buf = l.pass(b, buf)
	}
	if b.held && b.head >= b.sent {
		b.held = false
		b.queued = true
		l.towrite = append(l.towrite, b)
	}
	if b.head == len(b.waiters) && b.retired {
		l.failConn(b, errRetired)
		return
	}
	b.compact()
	b.in = b.in[:copy(b.in, buf)]
	if cap(b.in) > 4*loopReadSize && len(b.in) < loopReadSize {
		b.in = append(make([]byte, 0, loopReadSize), b.in...)
	}
}

// pass gives the client owed the reply arriving at the front of buf what
// has come of it so far, when that is much: a reply larger than a read
// (a big GET, an MGET of many values, a KEYS) is never held whole here,
// but goes through the loop a read at a time, as Redis writes it, into the
// client's output buffer. It returns what stays of buf: the part of the
// reply not yet passable (a header line cut short, a blob's CRLF).
//
// A reply the proxy must see whole (a filter) is held. Once part of a
// reply is passed, nothing else can be sent to its client in its place:
// should the connection die before the rest, the client is dropped
// (failConn) rather than given an error or a rerun after the part.
func (l *evloop) pass(b *lconn, buf []byte) []byte {
	w := &b.waiters[b.head]
	if w.filter != command.FilterNone || w.ack != nil || w.group != nil || w.c != nil && len(w.c.ackq) > 0 {
		return buf // seen whole, or held for the replicas
	}
	k := b.scan.Passable(len(buf))
	if k < passFrom/2 {
		return buf
	}
	if w.passed == 0 {
		w.info.Count(buf[0] == '-')
	}
	w.passed += k
	if c := w.c; c != nil && !c.dead {
		if c.out.pending()+k > l.p.cfg().MaxOutput {
			l.dropClient(c, "output_limit")
		} else {
			c.out.add(buf[:k])
			l.markDirty(c)
		}
	}
	b.scan.Drop(k)
	return buf[k:]
}

// compact drops the answered waiters from the start of b.waiters: all of
// them once none is owed, else when they are many and at least half; and
// likewise the answered requests' copies from b.flight.
func (b *lconn) compact() {
	switch {
	case b.head == len(b.waiters):
		b.waiters, b.head, b.sent = b.waiters[:0], 0, 0
	case b.head >= waitersCompactAt && 2*b.head >= len(b.waiters):
		n := copy(b.waiters, b.waiters[b.head:])
		clear(b.waiters[n:])
		b.waiters = b.waiters[:n]
		b.sent -= b.head
		b.head = 0
	}
	switch {
	case b.head == b.sent: // every written request is answered
		b.flight, b.flightOff = b.flight[:0], 0
		if cap(b.flight) > flightKeep {
			b.flight = nil
		}
	case b.flightOff >= flightCompactAt && 2*b.flightOff >= len(b.flight):
		b.flight = b.flight[:copy(b.flight, b.flight[b.flightOff:])]
		b.flightOff = 0
	}
}

// keepReads copies the rerunnable requests among those b is about to
// write for the first time (waiters[sent:], the last unsent bytes of
// wbuf) to b.flight.
func (b *lconn) keepReads() {
	raw := b.wbuf.b[len(b.wbuf.b)-b.unsent:]
	for i := b.sent; i < len(b.waiters); i++ {
		w := &b.waiters[i]
		if rerunnable(w) {
			b.flight = append(b.flight, raw[:w.n]...)
		}
		raw = raw[w.n:]
	}
}

// rerunnable reports whether w's request may run a second time, on
// another connection, when the one it was written to dies before
// answering: a fast read (Redis's own readonly and fast flags: GET, MGET,
// HGET, EXISTS, …; not a transaction, whose entries after MULTI have no
// bytes of their own). Running it twice changes nothing, and the client
// gets one reply either way. Slow reads (KEYS, SCAN, LRANGE, SMEMBERS,
// EVAL_RO, …) are not run again: one may be what brought the server
// down (a reply too large for its memory, a script that never ends), and
// running it on the next server could do the same there.
func rerunnable(w *waiter) bool {
	return w.n > 0 && w.info.FastRead()
}

// deliver gives one reply to the client that is owed it.
func (l *evloop) deliver(w waiter, reply []byte) {
	if w.passed == 0 {
		w.info.Count(reply[0] == '-')
	}
	l.p.m.latency.Observe(l.now.Sub(w.start).Seconds())
	c := w.c
	if c.dead {
		return
	}
	if w.filter != command.FilterNone {
		reply = l.p.filter(w.filter, reply)
	}
	if w.group != nil || len(c.ackq) > 0 {
		if w.group == nil || !w.group.done || len(c.ackq) > 0 {
			l.hold(c, w.group, reply)
			return
		}
		reply = replicatedReply(w.group, reply)
	}
	l.give(c, reply, w.passed)
}

// give puts a reply in c's output: the owed reply it was (deliver), or one
// held for the replicas (release).
func (l *evloop) give(c *lclient, reply []byte, passed int) {
	if c.dead {
		return
	}
	if c.out.pending()+len(reply) > l.p.cfg().MaxOutput {
		// Over the limit: the client goes, and the reply is not copied
		// (the limit holds in memory, not only in a count).
		if c.owed--; c.owed == 0 {
			l.waiting--
		}
		l.dropClient(c, "output_limit")
		return
	}
	c.out.add(reply)
	c.avgReply = replySizes(c.avgReply, passed+len(reply), 1)
	if c.owed--; c.owed == 0 {
		l.waiting--
	}
	l.markDirty(c)
	if c.owed == 0 {
		c.on = nil
		if len(c.after) > 0 {
			c.out.b = append(c.out.b, c.after...)
			c.after = c.after[:0]
		}
		if c.stop && c.holdFrom == (time.Time{}) {
			l.again = append(l.again, c)
		} else {
			l.afterRun(c)
		}
	}
}

// failConn closes b after a failure: every reply it still owes becomes an
// error saying the outcome is unknown.
func (l *evloop) failConn(b *lconn, err error) {
	if b.dead {
		return
	}
	b.dead = true
	if b.fd >= 0 {
		unix.Close(b.fd)
		delete(l.byFD, b.fd)
		l.p.m.backendConns.WithLabelValues(b.pl.addr).Dec()
		if !byProxy(err) {
			l.p.m.backendErrors.WithLabelValues(b.pl.addr).Inc()
			l.p.log.Warn("backend connection lost", "server", b.pl.addr, "loop", true, "err", err)
			b.pl.failed(nil, err)
		}
	}
	if b.head < len(b.waiters) {
		if w := b.waiters[b.head]; w.passed > 0 && w.c != nil && !w.c.dead {
			// Part of its reply is out: nothing can follow that part.
			l.dropClient(w.c, "reply_cut")
		}
	}
	if err != errConnClosed && !l.stopped {
		l.requeue(b, rerunErr(err))
	}
	reply := appendLost(nil, b.pl.addr, err)
	owed := b.waiters[b.head:]
	n := 0
	for _, w := range owed {
		b.pl.busy.done(w.busy)
		switch {
		case w.ack != nil: // the proxy's WAIT: its writes are not known replicated
			l.ackDone(w.ack, nil)
		case w.c != nil: // (nil: given back by requeue)
			l.deliver(w, reply)
			n++
		default:
			n++
		}
	}
	l.p.flight.done(n)
	b.waiters, b.head, b.sent, b.unsent, b.in = nil, 0, 0, 0, nil
	b.wbuf.reset()
	b.flight, b.flightOff = nil, 0
	if l.conns[b.pl] == b {
		delete(l.conns, b.pl)
		if err != errConnClosed && !l.stopped {
			l.conn(b.pl) // dial again now, as the pool's slots do
		}
	}
}

// requeue gives requests b owes replies to back to their clients, ahead
// of what they have not run yet, to run again on a connection that is up:
// after a failover, on the new master; meanwhile the clients wait as for
// any missing master (see giveBack for which). The rest get the error.
func (l *evloop) requeue(b *lconn, reads bool) {
	ws := b.waiters[b.head:]
	sent := b.sent - b.head
	if sent == len(ws) && !reads {
		return
	}
	back := giveBack(ws, sent, reads)
	unsent := b.wbuf.b[len(b.wbuf.b)-b.unsent:]
	flight := b.flight[b.flightOff:]
	pieces := map[*lclient][]byte{}
	var order []*lclient
	for i := range ws {
		w := &ws[i]
		var piece []byte // (empty for the rest of a transaction block)
		switch {
		case i >= sent:
			piece, unsent = unsent[:w.n], unsent[w.n:]
		case rerunnable(w):
			piece, flight = flight[:w.n], flight[w.n:]
		}
		if !back[i] {
			continue
		}
		c := w.c
		if _, ok := pieces[c]; !ok {
			order = append(order, c)
		}
		pieces[c] = append(pieces[c], piece...)
		w.c = nil
		if c.owed--; c.owed == 0 {
			l.waiting--
			c.on = nil
		}
		if i < sent {
			c.retried = true
			l.p.m.requeued.WithLabelValues("yes").Inc()
		} else {
			l.p.m.requeued.WithLabelValues("no").Inc()
		}
	}
	for _, c := range order {
		c.in = append(pieces[c], c.in...)
		c.stop = true // run again once what it is still owed has come
		if c.owed == 0 {
			l.again = append(l.again, c)
		}
	}
}

// giveBack decides which of ws, the requests a dead connection owes
// replies to (the first sent of them written to it), go back to their
// clients to run again (true) rather than fail with "outcome unknown" (see
// rerun.go). Those never written go back: the server never saw them. With
// reads (rerunErr), so do each client's trailing run of rerunnable written
// requests (rerunFrom), unless its reads were already given back once
// since its last reply. Nothing of a client that is gone goes back, nor of
// one with a reply of the proxy's own queued behind (c.after), which must
// stay behind theirs.
func giveBack(ws []waiter, sent int, reads bool) []bool {
	back := make([]bool, len(ws))
	written := map[*lclient][]int{} // each client's written requests, by index in ws
	for i := range ws[:sent] {
		if ws[i].c != nil { // (nil: the proxy's WAIT)
			written[ws[i].c] = append(written[ws[i].c], i)
		}
	}
	from := make(map[*lclient]int, len(written)) // index in ws from which a client's go back
	for c, idx := range written {
		k := len(idx)
		if reads && !c.retried {
			k = rerunFrom(len(idx), func(j int) bool { return rerunnable(&ws[idx[j]]) })
		}
		from[c] = sent
		if k < len(idx) {
			from[c] = idx[k]
		}
	}
	for i := range ws {
		c := ws[i].c
		if c == nil || c.dead || len(c.after) > 0 || len(c.ackq) > 0 {
			continue
		}
		f, ok := from[c]
		back[i] = i >= sent || ok && i >= f
	}
	return back
}

// retire stops new requests on the loop's connection to pl and closes it
// once it has answered what it was sent.
func (l *evloop) retire(pl *pool) {
	b := l.conns[pl]
	if b == nil || b.dead {
		return
	}
	if b.fd < 0 || b.head == len(b.waiters) {
		l.failConn(b, errRetired)
		return
	}
	b.retired = true
}

// failPool fails the loop's connection to pl (the server stopped being
// master, or the pool closed).
func (l *evloop) failPool(pl *pool, err error) {
	if b := l.conns[pl]; b != nil {
		l.failConn(b, err)
	}
}

// replyScan finds where complete RESP values end in a buffer, resuming
