//go:build linux

package proxy

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The event loop's client side: adopting, reading and writing client
// sockets, parking clients that wait for a master, and handing clients
// to the goroutine path. All of it runs on the loop's goroutine except
// adopt.

// lclient is a client connection served by a loop.
type lclient struct {
	fd     int
	s      *session
	parser resp.Parser
	in     []byte // read and not yet run: a partial command, or those behind a barrier
	out    obuf   // replies not yet written
	// after is a reply the proxy made while replies were still owed: it is
	// written, and the commands behind it run, once they have arrived.
	after    []byte
	owed     int
	on       *lconn    // the connection the owed replies come from
	holdFrom time.Time // parked since (zero: not parked)
	protoErr string    // error reply owed after what came before it; then close
	stop     bool      // a barrier, a park or a hand-off: run nothing more now
	full     bool      // more than outPause of its replies unwritten: nothing sent, nothing read
	avgReply int       // its replies' average size (window.go)
	handoff  bool      // move to the goroutine path once nothing is owed
	open     *opened   // the tunnel openNow began, for the hand-off
	// ackq: replies held for the replicas (acks.go), in order: a write's
	// until its group's WAIT answers, and every later one behind it.
	ackq     []heldReply
	ackBytes int
	closing  bool // close once the output is written
	eof      bool // the client sent EOF: answer what it sent, then close
	dead     bool
	reading  bool // EPOLLIN registered
	writing  bool // EPOLLOUT registered
	isDirty  bool
	blocked  time.Time // output pending since (zero: all written)
	lastRead time.Time
	epoch    uint32 // the loop's window in which it was last read
	// A transaction arriving in pieces: where txBlock goes on (0: none),
	// its commands so far, and the parser's place in the one arriving.
	txOff    int
	txInfos  []*command.Info
	txParser resp.Parser
	// retried: reads of this client in flight on a connection that died
	// were given back to run again, and no reply from a server has come
	// since; if the next connection dies too, they fail (a read that
	// brings servers down must not go round them all).
	retried bool
}

// adopt takes over nc (already counted as a client) for session s, with
// in, bytes read from it and not yet run, and the parser's place in them
// (a client back from the goroutine path). The socket is duplicated and nc
// closed, so Go's poller forgets it. Any goroutine may call it.
func (l *evloop) adopt(nc net.Conn, s *session, in []byte, parser resp.Parser) error {
	fd, err := dupConn(nc)
	if err == nil {
		s.entry.setFD(fd) // before nc's descriptor closes: CLIENT KILL always finds one open
	}
	nc.Close()
	if err != nil {
		return err
	}
	l.post(func() {
		if l.stopped {
			s.entry.setFD(-1)
			unix.Close(fd)
			s.end()
			return
		}
		c := &lclient{fd: fd, s: s, parser: parser, in: in, lastRead: time.Now(), avgReply: initialReplySize}
		l.clients[fd] = c
		c.reading = true
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
			l.closeClient(c)
			return
		}
		if len(c.in) > 0 {
			l.runClient(c)
		}
	})
	return nil
}

func (l *evloop) readClient(c *lclient) {
	if c.eof {
		// Only a hang-up or an error can wake a client after its EOF.
		if _, err := unix.Read(c.fd, l.rbuf[:1]); err != nil && err != unix.EAGAIN && err != unix.EINTR {
			l.closeClient(c)
		}
		return
	}
	n, err := rawRead(c.fd, l.rbuf)
	if n <= 0 {
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
		case n == 0 && err == nil:
			// A half-close (the client shut its side down after its last
			// command): as on Redis, the commands it sent are answered.
			c.eof = true
			if len(c.in) > 0 && !c.stop {
				l.runClient(c) // a transaction still arriving runs as sent so far
			} else {
				l.afterRun(c)
			}
		default:
			l.closeClient(c)
		}
		return
	}
	c.lastRead = l.now
	if c.epoch != l.epoch {
		c.epoch = l.epoch
		l.epochClients++
	}
	chunk := l.rbuf[:n]
	if len(c.in) > 0 || c.stop {
		c.in = append(c.in, chunk...)
		// Without a barrier, c.in held part of a command: the parser goes
		// on from where it stopped, so running it again costs only the
		// new bytes.
		if !c.stop {
			l.runClient(c)
		}
	} else {
		rest := l.exec(c, chunk)
		c.in = append(c.in[:0], rest...)
		l.afterRun(c)
	}
	if c.protoErr != "" && !c.dead {
		l.setReading(c, false)
	}
}

// runClient executes the commands buffered in c.in.
func (l *evloop) runClient(c *lclient) {
	c.stop = false
	rest := l.exec(c, c.in)
	if len(rest) < len(c.in) {
		c.in = c.in[:copy(c.in, rest)]
	}
	if cap(c.in) > loopReadSize && len(c.in) < loopReadSize/4 {
		c.in = append([]byte(nil), c.in...)
	}
	l.afterRun(c)
}

// afterRun settles what follows a run: the protocol error once everything
// before it is answered, the hand-off, and whether to read more.
func (l *evloop) afterRun(c *lclient) {
	if c.dead {
		return
	}
	c.s.publish(l.now)
	if !c.stop && c.protoErr != "" && c.owed == 0 && len(c.after) == 0 {
		c.out.b = resp.AppendError(c.out.b, c.protoErr)
		c.protoErr = ""
		c.closing = true
		c.stop = true
		l.p.m.rejected.WithLabelValues("protocol_limit").Inc()
	}
	if !c.handoff && c.parser.Need() > bigRequest {
		// A large request is arriving: the goroutine path reads it, into
		// a buffer of its size (bigreq.go), once what is owed is in.
		c.handoff, c.stop = true, true
	}
	if c.handoff && c.owed == 0 && len(c.after) == 0 {
		l.handoff(c)
		return
	}
	if c.eof && !c.stop && c.owed == 0 && len(c.after) == 0 {
		c.closing = true
	}
	if c.out.pending() > 0 || c.closing {
		l.markDirty(c)
	}
	if c.out.pending() > l.p.cfg().MaxOutput {
		l.dropClient(c, "output_limit")
		return
	}
	l.setReading(c, c.wantRead())
}

// wantRead reports whether c's socket should be read now.
func (c *lclient) wantRead() bool {
	return !c.stop && !c.full && !c.closing && !c.eof && c.protoErr == "" && c.owed < loopMaxOwed
}

// window is how many requests c may have in flight on a shared
// connection.
func (c *lclient) window() int { return window(c.avgReply, loopMaxOwed) }

func (l *evloop) setReading(c *lclient, on bool) {
	if c.reading == on || c.dead {
		return
	}
	c.reading = on
	l.updateInterest(c)
}

func (l *evloop) updateInterest(c *lclient) {
	var ev uint32
	if c.reading {
		ev |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if c.writing {
		ev |= unix.EPOLLOUT
	}
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: ev, Fd: int32(c.fd)})

}

// park makes c wait for routes that are ready and a connection that is up.
func (l *evloop) park(c *lclient) {
	c.stop = true
	if c.holdFrom == (time.Time{}) {
		if l.p.held.Add(1) > int64(l.p.cfg().MaxHeld) {
			l.p.held.Add(-1)
			l.p.m.holdTimeouts.Inc()
			l.failBuffered(c, errHeldFull)
			return
		}
		l.p.m.held.Inc()
		c.holdFrom = l.now
		l.parked = append(l.parked, c)
	}
}

func (l *evloop) unpark(c *lclient) {
	c.holdFrom = time.Time{}
	l.p.held.Add(-1)
	l.p.m.held.Dec()
}

// retryParked runs the parked clients whose wait is over: the routes are
// ready again, or the hold timeout passed (their commands get the error).
func (l *evloop) retryParked() {
	rt := l.p.routes.Load()
	keep := l.parked[:0]
	for _, c := range l.parked {
		if c.dead {
			continue
		}
		switch {
		case rt.ready() && l.conn(rt.master) != nil:
			l.unpark(c)
			l.again = append(l.again, c)
		case l.now.Sub(c.holdFrom) >= l.p.cfg().HoldTimeout:
			l.unpark(c)
			l.p.m.holdTimeouts.Inc()
			l.failBuffered(c, fmt.Sprintf(errNoMaster, l.p.cfg().HoldTimeout))
		default:
			keep = append(keep, c)
		}
	}
	clear(l.parked[len(keep):])
	l.parked = keep
}

// failBuffered answers every complete command buffered for c with msg, as
// a session held past its deadline does.
func (l *evloop) failBuffered(c *lclient, msg string) {
	buf := c.in
	for len(buf) > 0 {
		c.parser.Unauth = !c.s.authed()
		cmd, n, err := c.parser.Next(buf)
		if n == 0 || err != nil {
			break
		}
		if len(cmd.Args) > 0 {
			c.out.b = resp.AppendError(c.out.b, msg)
		}
		buf = buf[n:]
	}
	c.in = c.in[:copy(c.in, buf)]
	c.stop = false
	l.afterRun(c)
}

func (l *evloop) writeClient(c *lclient) {
	if err := c.out.writeTo(c.fd, 1<<20); err != nil {
		l.closeClient(c)
		return
	}
	if c.out.pending() > 0 {
		if c.blocked == (time.Time{}) {
			c.blocked = l.now
		}
		if !c.writing {
			c.writing = true
			l.updateInterest(c)
		}
		return
	}
	c.blocked = time.Time{}
	if c.writing {
		c.writing = false
		l.updateInterest(c)
	}
	if c.full && c.out.pending() <= outResume {
		// It read its replies: what it sent meanwhile runs now.
		c.full = false
		if c.owed == 0 && c.holdFrom == (time.Time{}) {
			l.again = append(l.again, c)
		}
	}
	if c.closing {
		l.closeClient(c)
		return
	}
	if c.handoff && c.owed == 0 && len(c.after) == 0 {
		l.handoff(c) // it waited for this output to be written
		return
	}
	l.setReading(c, c.wantRead())
}

// closeClient closes c's socket; replies still owed to it are dropped as
// they arrive.
func (l *evloop) closeClient(c *lclient) {
	if c.dead {
		return
	}
	c.dead = true
	if c.owed > 0 {
		l.waiting-- // its replies are dropped as they arrive
	}
	if c.holdFrom != (time.Time{}) {
		l.unpark(c)
	}
	delete(l.clients, c.fd)
	c.s.entry.setFD(-1)
	unix.Close(c.fd)
	c.in, c.after = nil, nil
	c.out.reset()
	if c.open != nil {
		c.open.drop(l.p)
		c.open = nil
	}
	for _, h := range c.ackq {
		if h.write {
			l.p.m.ackWaiting.Dec()
		}
	}
	c.ackq, c.ackBytes = nil, 0
	c.s.end()
}

// dropClient disconnects c for a reason counted in the metrics.
// Output not yet taken by the client is discarded at once (a reset):
// queued behind a full window, it would hold the socket open.
func (l *evloop) dropClient(c *lclient, reason string) {
	l.p.m.rejected.WithLabelValues(reason).Inc()
	if !c.dead {
		unix.SetsockoptLinger(c.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	l.closeClient(c)
}

// handoff moves c to the goroutine path: its socket, the bytes not yet run
// with the parser's place in them, and its session go to a goroutine of
// its own, which serves it from the command that needed a dedicated
// connection on.
func (l *evloop) handoff(c *lclient) {
	if c.out.pending() > 0 {
		// Write what it is owed first; the hand-off waits for that.
		l.writeClient(c)
		if c.dead || c.out.pending() > 0 {
			return
		}
	}
	c.dead = true
	delete(l.clients, c.fd)
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, c.fd, nil)
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f)
	if err == nil {
		c.s.entry.setConn(nc)
	} else {
		c.s.entry.setFD(-1)
	}
	f.Close()
	if err != nil {
		l.p.log.Warn("client hand-off failed", "client", c.s.st.ID, "err", err)
		if c.open != nil {
			c.open.drop(l.p)
		}
		c.s.end()
		return
	}
	l.p.m.handoffs.Inc()
	l.p.goServe(c.s, nc, append([]byte(nil), c.in...), c.parser, c.protoErr, c.open)
}

// sweepClients closes idle clients and those that stopped reading.
func (l *evloop) sweepClients() {
	idle := l.p.cfg().IdleTimeout
	wt := l.p.cfg().WriteTimeout
	for _, c := range l.clients {
		switch {
		case c.blocked != (time.Time{}) && l.now.Sub(c.blocked) > wt:
			l.dropClient(c, "write_timeout")
		case idle > 0 && c.owed == 0 && c.out.pending() == 0 && c.holdFrom == (time.Time{}) && l.now.Sub(c.lastRead) > idle:
			l.closeClient(c)
		}
	}
}
