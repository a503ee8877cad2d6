//go:build linux

package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/tidwall/redcon"
	"golang.org/x/sys/unix"
)

// The event loop is the fast path for stateless traffic. One goroutine,
// locked to its thread, waits in epoll on client sockets and on its own
// shared backend connections together: a readable client's commands are
// appended to the backend's write buffer, every backend written once per
// wake-up, and replies parsed from the backend's read buffer go straight
// into each client's output buffer, written once per wake-up. No goroutine
// is woken on the way, which is what a goroutine per client (redcon's model)
// costs on every request.
//
// A client stays on the loop while its commands are stateless: forwarded,
// read from a replica, or answered by the proxy. The first command that
// needs a dedicated connection (MULTI, WATCH, SELECT n, a blocking command,
// SUBSCRIBE, ...) hands the socket, with the bytes not yet run, to the
// goroutine path (session.serve over redcon) for the rest of its life.
//
// Ordering: a client's replies come from one backend connection at a time.
// A command for another connection, or one the proxy answers, waits until
// every reply owed to the client has arrived (a barrier), so replies are
// always in request order.

const (
	loopReadSize = 64 << 10 // bytes read from a socket at a time
	loopMaxOwed  = 4096     // replies owed to one client before it is read no more
	loopTick     = 2 * time.Millisecond

	// Busy polling (Config.BusyPoll) is for few clients at a time: with
	// many, the wait in epoll is what gathers their commands into one
	// write to Redis, and polling would split them up. A loop polls while
	// at most spinMaxClients clients sent it commands in the last
	// spinWindow (or in the current one).
	spinMaxClients = 2
	spinWindow     = 10 * time.Millisecond
	// spinYieldMax: a sched_yield that took longer than this ran another
	// thread, which needed the CPU more than the poll: the loop sleeps.
	spinYieldMax = 10 * time.Microsecond

	// Coalescing (on unless Config.WriteAtOnce) is for many clients at a
	// time: while more than coalesceMinClients of a loop's clients await
	// replies, requests for a connection whose last write is not yet
	// answered wait for those replies and then go out together.
	// With fewer, Redis is not the bottleneck and a request that waited
	// would only be later (-c 4: about a tenth fewer requests/s).
	coalesceMinClients = 8
	// waitersCompactAt: answered entries at the start of a connection's
	// waiters that are dropped (when they are at least half of it) even
	// though some are still owed: a busy connection never runs dry.
	waitersCompactAt = 1024
	// flightCompactAt: bytes of answered requests at the start of a
	// connection's flight copy that are dropped (when they are at least
	// half of it) while it is never all answered; flightKeep: the most
	// capacity a drained flight copy keeps.
	flightCompactAt = 64 << 10
	flightKeep      = 1 << 20

	// txBlockMax bounds a transaction the loop sends on its shared
	// connection as one block (see txBlock); a larger one runs on a
	// dedicated connection.
	txBlockMax = 64 << 20
)

// evloop is one event loop; a Proxy runs Config.EventLoops of them.
type evloop struct {
	p   *Proxy
	ep  int // epoll
	efd int // eventfd: wakes the loop for tasks

	mu     sync.Mutex
	tasks  []func()
	exited bool // under mu: the loop is gone, its eventfd closed
	done   chan struct{}

	clients map[int]*lclient
	conns   map[*pool]*lconn
	byFD    map[int]*lconn
	parked  []*lclient // waiting for a master or a backend connection
	again   []*lclient // barrier lifted: run their buffered commands
	dirty   []*lclient // output to write
	towrite []*lconn   // requests to write
	events  []unix.EpollEvent
	rbuf    []byte
	args    [][]byte
	now     time.Time
	sweep   time.Time
	stopped bool
	// coalesce: see coalesceMinClients. waiting counts the clients that
	// are owed replies from a backend.
	coalesce bool
	waiting  int

	tid atomic.Int32 // the loop's thread (for tests reading its CPU time)

	// Busy polling: see wait.
	spin          time.Duration // Config.BusyPoll; 0: never
	lastEvent     time.Time
	epoch         uint32 // spinWindow counter
	epochStart    time.Time
	epochClients  int // clients read in the current window
	activeClients int // clients read in the previous window
}

// lclient is a client connection served by a loop.
type lclient struct {
	fd   int
	s    *session
	scan reqScanner
	in   []byte // read and not yet run: a partial command, or those behind a barrier
	out  []byte
	// after is a reply the proxy made while replies were still owed: it is
	// written, and the commands behind it run, once they have arrived.
	after    []byte
	owed     int
	on       *lconn    // the connection the owed replies come from
	holdFrom time.Time // parked since (zero: not parked)
	protoErr string    // error reply owed after what came before it; then close
	stop     bool      // a barrier, a park or a hand-off: run nothing more now
	handoff  bool      // move to the goroutine path once nothing is owed
	closing  bool      // close once the output is written
	eof      bool      // the client sent EOF: answer what it sent, then close
	dead     bool
	reading  bool // EPOLLIN registered
	writing  bool // EPOLLOUT registered
	isDirty  bool
	blocked  time.Time // output pending since (zero: all written)
	lastRead time.Time
	epoch    uint32 // the loop's window in which it was last read
	// A transaction arriving in pieces: where txBlock goes on (0: none),
	// and its commands so far.
	txOff   int
	txInfos []*cmdInfo
	// retried: reads of this client in flight on a connection that died
	// were given back to run again, and no reply from a server has come
	// since; if the next connection dies too, they fail (a read that
	// brings servers down must not go round them all).
	retried bool
}

// lconn is a loop's own shared connection to one server.
type lconn struct {
	pl      *pool
	fd      int
	in      []byte
	scan    replyScan
	wbuf    []byte
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
	c     *lclient
	info  *cmdInfo
	start time.Time
	n     int // bytes of its request in the write buffer (0: the rest of a transaction block)
}

func newEvloop(p *Proxy) (*evloop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		unix.Close(ep)
		unix.Close(efd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	return &evloop{
		p:       p,
		ep:      ep,
		efd:     efd,
		done:    make(chan struct{}),
		clients: make(map[int]*lclient),
		conns:   make(map[*pool]*lconn),
		byFD:    make(map[int]*lconn),
		events:  make([]unix.EpollEvent, 512),
		rbuf:    make([]byte, loopReadSize),
		spin:    max(p.cfg.BusyPoll, 0),

		coalesce: !p.cfg.WriteAtOnce,
	}, nil
}

// post runs f on the loop's goroutine.
func (l *evloop) post(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exited {
		return
	}
	l.tasks = append(l.tasks, f)
	var one = [8]byte{1}
	unix.Write(l.efd, one[:])
}

// stop closes every client and connection of the loop and waits for it.
func (l *evloop) stop() {
	l.post(func() { l.stopped = true })
	<-l.done
}

// exit closes the loop's own descriptors; tasks posted later are dropped.
func (l *evloop) exit() {
	l.mu.Lock()
	l.exited = true
	tasks := l.tasks
	l.tasks = nil
	unix.Close(l.ep)
	unix.Close(l.efd)
	l.mu.Unlock()
	for _, f := range tasks {
		f() // adopted clients and dialed connections are closed by stopped
	}
}

// adopt takes over nc (already counted as a client) for session s. The
// socket is duplicated and nc closed, so Go's poller forgets it.
func (l *evloop) adopt(nc net.Conn, s *session) error {
	fd, err := dupConn(nc)
	nc.Close()
	if err != nil {
		return err
	}
	l.post(func() {
		if l.stopped {
			unix.Close(fd)
			s.end()
			return
		}
		c := &lclient{fd: fd, s: s, lastRead: time.Now()}
		c.scan = reqScanner{maxBulk: l.p.cfg.MaxBulk, unauth: !s.authed}
		s.scan = &c.scan
		l.clients[fd] = c
		c.reading = true
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
			l.closeClient(c)
		}
	})
	return nil
}

// dupConn returns a non-blocking duplicate of nc's socket.
func dupConn(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (l *evloop) run() {
	runtime.LockOSThread()
	l.tid.Store(int32(unix.Gettid()))
	defer close(l.done)
	l.now = time.Now()
	l.sweep = l.now
	for !l.stopped {
		timeout := 1000
		if len(l.parked) > 0 {
			timeout = int(loopTick / time.Millisecond)
		}
		n, err := l.wait(timeout)
		if err != nil && err != unix.EINTR {
			l.p.log.Error("event loop: epoll_wait failed", "err", err)
			break
		}
		l.now = time.Now()
		if n > 0 {
			l.lastEvent = l.now
		}
		if l.now.Sub(l.epochStart) >= spinWindow {
			l.activeClients, l.epochClients = l.epochClients, 0
			l.epoch++
			l.epochStart = l.now
		}
		for i := 0; i < n; i++ {
			ev := l.events[i]
			fd := int(ev.Fd)
			if fd == l.efd {
				l.runTasks()
				continue
			}
			if b := l.byFD[fd]; b != nil {
				if ev.Events&unix.EPOLLOUT != 0 {
					l.writeConn(b)
				}
				if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 && !b.dead {
					l.readConn(b)
				}
				continue
			}
			c := l.clients[fd]
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				l.writeClient(c)
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 && !c.dead {
				l.readClient(c)
			}
		}
		l.flush()
		if len(l.parked) > 0 {
			l.retryParked()
			l.flush()
		}
		if l.now.Sub(l.sweep) >= time.Second {
			l.sweep = l.now
			l.sweepClients()
		}
	}
	for _, c := range l.clients {
		l.closeClient(c)
	}
	for _, b := range l.conns {
		l.failConn(b, errConnClosed)
	}
	l.stopped = true
	l.exit()
}

// wait returns the number of ready events in l.events, waiting up to
// timeout milliseconds. With busy polling on, a loop serving one or two
// clients keeps polling for Config.BusyPoll after its last event instead
// of sleeping: the next command (or Redis's reply) is usually that close,
// and a sleeping thread's wake-up costs more than the request itself,
// above all on a virtual machine. Between polls the thread yields, and
// it sleeps as soon as another thread wants the CPU.
func (l *evloop) wait(timeout int) (int, error) {
	if spinning(l.spin, max(l.activeClients, l.epochClients), time.Since(l.lastEvent)) {
		start := time.Now()
		for {
			n, err := rawEpollPoll(l.ep, l.events)
			t := time.Now()
			if n != 0 || err != nil || t.Sub(l.lastEvent) >= l.spin || !yieldBriefly() {
				l.p.m.busyPoll.Add(t.Sub(start).Seconds())
				if n != 0 || err != nil {
					return n, err
				}
				break
			}
		}
	}
	return unix.EpollWait(l.ep, l.events, timeout)
}

// yieldBriefly lets another thread have the CPU and reports whether none
// needed it (the yield came back within spinYieldMax).
func yieldBriefly() bool {
	t := time.Now()
	unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	return time.Since(t) <= spinYieldMax
}

// spinning decides whether a loop polls instead of sleeping: busy polling
// is on, one or two clients sent commands lately, and the last event is
// more recent than the polling period.
func spinning(spin time.Duration, clients int, sinceEvent time.Duration) bool {
	return spin > 0 && clients >= 1 && clients <= spinMaxClients && sinceEvent < spin
}

func (l *evloop) runTasks() {
	var buf [8]byte
	unix.Read(l.efd, buf[:])
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f()
	}
}

// flush writes what the wake-up produced: requests first, then replies
// (including those a barrier released, whose commands run now).
//
// While many clients await replies, a connection whose last write is not
// yet answered gets no new write: its requests wait until readConn has
// those replies, then go out together. Redis runs a connection's commands
// in order anyway, so they are later by at most one round trip to Redis;
// in exchange Redis and the proxy make one read, one write and one
// wake-up for what would otherwise be many, and under load that CPU is
// what bounds throughput. With few clients waiting every request goes out
// at once.
func (l *evloop) flush() {
	l.runAgain()
	hold := l.coalesce && l.waiting > coalesceMinClients
	for _, b := range l.towrite {
		b.queued = false
		switch {
		case b.dead:
		case hold && b.head < b.sent && !b.writing:
			b.held = true
		default:
			l.writeConn(b)
		}
	}
	l.towrite = l.towrite[:0]
	l.runAgain() // a failed write answered some clients
	for _, c := range l.dirty {
		c.isDirty = false
		if !c.dead {
			l.writeClient(c)
		}
	}
	l.dirty = l.dirty[:0]
}

// runAgain runs the clients whose barrier was lifted.
func (l *evloop) runAgain() {
	for len(l.again) > 0 {
		again := l.again
		l.again = nil
		for _, c := range again {
			if !c.dead {
				l.runClient(c)
			}
		}
	}
}

func (l *evloop) markDirty(c *lclient) {
	if !c.isDirty {
		c.isDirty = true
		l.dirty = append(l.dirty, c)
	}
}

// ---------------------------------------------------------------- clients

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
	cut, msg := c.scan.scan(chunk)
	if msg != "" {
		chunk = chunk[:cut]
		c.protoErr = msg
	}
	chunk = chunk[:dropSpans(chunk, c.scan.drops)]
	if len(c.in) > 0 || c.stop {
		c.in = append(c.in, chunk...)
		// Without a barrier, c.in held part of one command: run it once
		// a request ends (not on every read: a command of a million
		// arguments would be parsed again each time).
		if !c.stop && (c.scan.ended || c.protoErr != "") {
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
	if !c.stop && c.protoErr != "" && c.owed == 0 && len(c.after) == 0 {
		c.out = appendError(c.out, c.protoErr)
		c.protoErr = ""
		c.closing = true
		c.stop = true
		l.p.m.rejected.WithLabelValues("protocol_limit").Inc()
	}
	if c.handoff && c.owed == 0 && len(c.after) == 0 {
		l.handoff(c)
		return
	}
	if c.eof && !c.stop && c.owed == 0 && len(c.after) == 0 {
		c.closing = true
	}
	if len(c.out) > 0 || c.closing {
		l.markDirty(c)
	}
	if len(c.out) > l.p.cfg.MaxOutput {
		l.dropClient(c, "output_limit")
		return
	}
	l.setReading(c, c.wantRead())
}

// wantRead reports whether c's socket should be read now.
func (c *lclient) wantRead() bool {
	return !c.stop && !c.closing && !c.eof && c.protoErr == "" && c.owed < loopMaxOwed
}

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

// exec runs the complete commands at the start of buf and returns the
// bytes it did not run: a partial command, or everything from the first
// command that must wait.
func (l *evloop) exec(c *lclient, buf []byte) []byte {
	if c.holdFrom != (time.Time{}) || c.handoff || c.closing {
		c.stop = true
		return buf
	}
	s := c.s
	p := l.p
	p.active.Add(1)
	rt := p.routes.Load()
	if !rt.ready() {
		p.active.Add(-1)
		if len(buf) > 0 && commandEnd(buf) > 0 {
			l.park(c)
		}
		return buf
	}
	sent := 0
	for len(buf) > 0 && !c.stop {
		cmd, n, perr := l.parseCommand(buf)
		if n == 0 {
			break
		}
		if perr != "" {
			// The stream is broken from here: answer what came before,
			// then the error, then close.
			c.protoErr = perr
			buf = buf[:0]
			break
		}
		if len(cmd.Args) == 0 {
			buf = buf[n:] // an empty inline line
			continue
		}
		s.local = s.local[:0]
		k, info := s.classify(rt.table, cmd)
		switch k {
		case kLocal:
			info.count(s.local[0] == '-')
			if c.owed > 0 {
				c.after = append(c.after, s.local...)
				c.stop = true
			} else {
				c.out = append(c.out, s.local...)
			}
		case kForward, kRead, kScan:
			b := l.route(rt, k, c)
			if !l.mayQueue(c, b) {
				p.active.Add(int64(sent - 1))
				return buf
			}
			sent += l.queue(c, b, s.raw, info)
		case kQuit:
			if c.owed > 0 {
				c.stop = true
				p.active.Add(int64(sent - 1))
				return buf
			}
			c.out = append(c.out, "+OK\r\n"...)
			c.closing = true
			c.stop = true
		case kReset:
			if c.owed > 0 {
				c.stop = true
				p.active.Add(int64(sent - 1))
				return buf
			}
			s.resetState()
			c.out = append(c.out, "+RESET\r\n"...)
		default: // kPin, kTunnel: the goroutine path from this command on
			if s.op == opMulti && !c.eof && c.protoErr == "" {
				end := l.txBlock(c, rt.table, buf, n, info)
				if end == 0 { // the block is still arriving
					p.active.Add(int64(sent - 1))
					return buf
				}
				c.txOff = 0
				if end > 0 {
					b := l.conn(rt.master)
					if !l.mayQueue(c, b) {
						p.active.Add(int64(sent - 1))
						return buf
					}
					sent += l.queue(c, b, buf[:end], c.txInfos...)
					if cap(c.txInfos) > 1024 {
						c.txInfos = nil
					}
					buf = buf[end:]
					continue
				}
			}
			c.handoff = true
			c.stop = true
			p.active.Add(int64(sent - 1))
			return buf
		}
		buf = buf[n:]
	}
	p.active.Add(int64(sent - 1))
	if cap(s.local) > 1<<20 {
		s.local = nil
	}
	return buf
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
func (l *evloop) queue(c *lclient, b *lconn, raw []byte, infos ...*cmdInfo) int {
	if len(b.wbuf) == 0 && !b.queued {
		b.queued = true
		l.towrite = append(l.towrite, b)
	}
	b.wbuf = append(b.wbuf, raw...)
	b.unsent += len(raw)
	for i, info := range infos {
		w := waiter{c: c, info: info, start: l.now}
		if i == 0 {
			w.n = len(raw)
		}
		b.waiters = append(b.waiters, w)
	}
	if c.owed == 0 {
		l.waiting++
	}
	c.owed += len(infos)
	c.on = b
	if c.owed >= loopMaxOwed {
		c.stop = true
	}
	return len(infos)
}

// txBlock looks at the transaction that starts at buf with MULTI (n bytes,
// info its entry). When the client sent the whole of it (through EXEC or
// DISCARD) and nothing in it touches the connection's state or is the
// proxy's to answer, the block can go to the master's shared connection
// as one write: nothing else comes between its commands there, and EXEC
// or DISCARD leaves the connection as it was. txBlock returns the block's
// length then, with the entry of each of its commands in c.txInfos; 0 if
// a command of it is still arriving (the next call, on the same block with
// more bytes, goes on from there); -1 if it needs a dedicated connection:
// it is not all there (the client waits for replies in between), too
// large, or holds such a command, or an inline one: the block goes to
// Redis as the client wrote it, and Redis's reading of an inline line is
// not the proxy's (elsewhere the proxy forwards inline commands in
// multibulk form).
func (l *evloop) txBlock(c *lclient, t *cmdTable, buf []byte, n int, info *cmdInfo) int {
	if buf[0] != '*' {
		return -1
	}
	off := c.txOff
	if off == 0 {
		off = n
		c.txInfos = append(c.txInfos[:0], info)
	}
	for off < len(buf) {
		if off > txBlockMax || buf[off] != '*' {
			return -1
		}
		cmd, m, perr := l.parseCommand(buf[off:])
		switch {
		case perr != "":
			return -1
		case m == 0:
			c.txOff = off
			return 0
		case len(cmd.Args) == 0:
			return -1
		}
		ti := c.s.lookups.lookup(t, cmd.Args)
		c.txInfos = append(c.txInfos, ti)
		off += m
		switch {
		case ti.name == "exec" || ti.name == "discard":
			if len(cmd.Args) != 1 {
				return -1 // refused, and the transaction ends: let Redis say so on a connection of its own
			}
			return off
		case txStateful(ti.name):
			return -1
		}
	}
	// Read to a command's end inside the block: more is on its way if
	// the socket holds it (a large block comes in several reads); if not,
	// the client may be waiting for the replies so far.
	if unread, err := unix.IoctlGetInt(c.fd, unix.SIOCINQ); err == nil && unread > 0 && off <= txBlockMax {
		c.txOff = off
		return 0
	}
	return -1
}

// txStateful reports whether a command queued in a transaction changes the
// connection when EXEC runs it, is one the proxy answers or refuses itself
// (see classifyCommand), or waits for the connection's own writes (WAIT).
// Blocking commands do not block inside a transaction.
func txStateful(name string) bool {
	switch name {
	case "auth", "hello", "quit", "reset", "select", "multi", "watch", "unwatch",
		"subscribe", "psubscribe", "ssubscribe", "monitor", "unsubscribe", "punsubscribe", "sunsubscribe",
		"replicaof", "slaveof", "failover", "sync", "psync", "shutdown", "config|set", "wait", "waitaof":
		return true
	}
	return strings.HasPrefix(name, "client")
}

// route picks the loop connection for a forwarded command, or nil when
// it must wait: the master's is not up, or a replica's is still making its
// first connection (falling back to the master then would send a SCAN's
// cursor, or a read meant for replicas, to the wrong server). Reads take
// turns over the replicas, except that the reads of one pipeline stay on
// the replica its first read went to: one write, replies in order.
func (l *evloop) route(rt *routes, k kind, c *lclient) *lconn {
	if n := uint64(len(rt.replicas)); n > 0 && k != kForward {
		var pl *pool
		switch {
		case k == kRead && c.owed > 0 && c.on.pl != rt.master && !c.on.retired:
			return c.on
		case k == kRead:
			pl = rt.replicas[l.p.rr.Add(1)%n]
		default:
			pl = rt.replicas[uint64(c.s.id)%n]
		}
		if b := l.conn(pl); b != nil {
			return b
		}
		if b := l.conns[pl]; b != nil && b.fd < 0 && b.dialing && b.lastError == nil {
			return nil
		}
	}
	return l.conn(rt.master)
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
		nc, br, err := pl.d.dial(pl.ctx, pl.addr, true)
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

// park makes c wait for routes that are ready and a connection that is up.
func (l *evloop) park(c *lclient) {
	c.stop = true
	if c.holdFrom == (time.Time{}) {
		if l.p.held.Add(1) > int64(l.p.cfg.MaxHeld) {
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
		case l.now.Sub(c.holdFrom) >= l.p.cfg.HoldTimeout:
			l.unpark(c)
			l.p.m.holdTimeouts.Inc()
			l.failBuffered(c, fmt.Sprintf(errNoMaster, l.p.cfg.HoldTimeout))
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
		cmd, n, perr := l.parseCommand(buf)
		if n == 0 || perr != "" {
			break
		}
		if len(cmd.Args) == 0 {
			buf = buf[n:]
			continue
		}
		c.out = appendError(c.out, msg)
		buf = buf[n:]
	}
	c.in = c.in[:copy(c.in, buf)]
	c.stop = false
	l.afterRun(c)
}

// parseCommand parses the command at the start of b, which the request
// scanner has already checked for size limits. n is 0 when the command is
// not complete; perr is Redis's protocol error for a broken stream.
func (l *evloop) parseCommand(b []byte) (cmd redcon.Command, n int, perr string) {
	if b[0] != '*' {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return cmd, 0, ""
		}
		line := b[:i+1]
		if len(bytes.TrimSpace(line)) == 0 {
			return cmd, i + 1, ""
		}
		c, err := redcon.Parse(line)
		if err != nil {
			return cmd, i + 1, "ERR " + err.Error()
		}
		return c, i + 1, ""
	}
	if cmd, n := l.parsePlain(b); n > 0 {
		return cmd, n, ""
	}
	return l.parseMultibulk(b)
}

// parseMultibulk parses the multibulk command at the start of b byte by
// byte, as parseCommand does.
func (l *evloop) parseMultibulk(b []byte) (cmd redcon.Command, n int, perr string) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return cmd, 0, ""
	}
	if i < 2 {
		return cmd, i + 1, errMultiLen // "*\n"
	}
	count, ok := parseLen(b[1 : i-1])
	if !ok || b[i-1] != '\r' || count <= 0 {
		return cmd, i + 1, errMultiLen
	}
	args := l.args[:0]
	pos := i + 1
	for j := int64(0); j < count; j++ {
		if pos >= len(b) {
			return cmd, 0, ""
		}
		if b[pos] != '$' {
			return cmd, pos, "ERR Protocol error: expected '$', got '" + string(rune(b[pos])) + "'"
		}
		e := bytes.IndexByte(b[pos:], '\n')
		if e < 0 {
			return cmd, 0, ""
		}
		e += pos
		if e < pos+2 {
			return cmd, e + 1, errBulkLen // "$\n"
		}
		size, ok := parseLen(b[pos+1 : e-1])
		if !ok || b[e-1] != '\r' || size < 0 {
			return cmd, e + 1, errBulkLen
		}
		start := e + 1
		end := start + int(size)
		if end+2 > len(b) {
			return cmd, 0, ""
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return cmd, end + 2, errBulkLen
		}
		args = append(args, b[start:end])
		pos = end + 2
	}
	l.args = args
	return redcon.Command{Raw: b[:pos], Args: args}, pos, ""
}

// parsePlain parses the complete, plainly formed multibulk command at the
// start of b ("*N" and "$N" lines of digits, bodies ending in CRLF) a line
// at a time; n is 0 for anything else, which parseCommand then reads
// carefully.
func (l *evloop) parsePlain(b []byte) (cmd redcon.Command, n int) {
	if len(b) == 0 || b[0] != '*' {
		return cmd, 0
	}
	count, pos := digitLine(b, 0)
	if pos == 0 || count <= 0 || count > maxArgs {
		return cmd, 0
	}
	args := l.args[:0]
	for ; count > 0; count-- {
		if pos >= len(b) || b[pos] != '$' {
			return cmd, 0
		}
		size, start := digitLine(b, pos)
		if start == 0 || size > int64(len(b)-start) {
			return cmd, 0
		}
		end := start + int(size)
		if end+2 > len(b) || b[end] != '\r' || b[end+1] != '\n' {
			return cmd, 0
		}
		args = append(args, b[start:end])
		pos = end + 2
	}
	l.args = args
	return redcon.Command{Raw: b[:pos], Args: args}, pos
}

// commandEnd reports the length of the first command in b if it is
// complete (0 otherwise), without parsing it.
func commandEnd(b []byte) int {
	if b[0] != '*' {
		return bytes.IndexByte(b, '\n') + 1
	}
	var l evloop
	_, n, _ := l.parseCommand(b)
	return n
}

func (l *evloop) writeClient(c *lclient) {
	var err error
	if c.out, err = writeOut(c.fd, c.out, 1<<20); err != nil {
		l.closeClient(c)
		return
	}
	if len(c.out) > 0 {
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
	unix.Close(c.fd)
	c.in, c.out, c.after = nil, nil, nil
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
// and its session go to redcon, which serves it from the command that
// needed a dedicated connection on.
func (l *evloop) handoff(c *lclient) {
	if len(c.out) > 0 {
		// Write what it is owed first; the hand-off waits for that.
		l.writeClient(c)
		if c.dead || len(c.out) > 0 {
			return
		}
	}
	c.dead = true
	delete(l.clients, c.fd)
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, c.fd, nil)
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.p.log.Warn("client hand-off failed", "client", c.s.id, "err", err)
		c.s.end()
		return
	}
	c.s.cleanBatches = 0
	lc := &limitConn{Conn: nc, scan: c.scan, sess: c.s, prefix: append([]byte(nil), c.in...), pending: c.protoErr}
	c.s.scan = &lc.scan
	if !l.p.handoffs.push(lc) {
		nc.Close()
		c.s.end()
		return
	}
	l.p.m.handoffs.Inc()
}

// sweepClients closes idle clients and those that stopped reading.
func (l *evloop) sweepClients() {
	idle := l.p.cfg.IdleTimeout
	wt := l.p.cfg.WriteTimeout
	for _, c := range l.clients {
		switch {
		case c.blocked != (time.Time{}) && l.now.Sub(c.blocked) > wt:
			l.dropClient(c, "write_timeout")
		case idle > 0 && c.owed == 0 && len(c.out) == 0 && c.holdFrom == (time.Time{}) && l.now.Sub(c.lastRead) > idle:
			l.closeClient(c)
		}
	}
}

// ---------------------------------------------------------------- backends

func (l *evloop) writeConn(b *lconn) {
	if n := len(b.waiters) - b.sent; n > 0 {
		l.p.m.backendBatch.Observe(float64(n))
		b.keepReads()
	}
	var err error
	if b.wbuf, err = writeOut(b.fd, b.wbuf, 4<<20); err != nil {
		l.failConn(b, fmt.Errorf("write: %w", err))
		return
	}
	b.sent, b.unsent = len(b.waiters), 0
	want := len(b.wbuf) > 0
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
		end, err := b.scan.next(buf)
		if err != nil {
			l.p.active.Add(int64(-answered))
			l.failConn(b, fmt.Errorf("read: %w", err))
			return
		}
		if end == 0 {
			break
		}
		if b.head == len(b.waiters) {
			l.p.active.Add(int64(-answered))
			l.failConn(b, errors.New("reply without a request"))
			return
		}
		w := b.waiters[b.head]
		b.waiters[b.head] = waiter{}
		b.head++
		answered++
		if rerunnable(&w) {
			b.flightOff += w.n
		}
		w.c.retried = false
		l.deliver(w, buf[:end])
		buf = buf[end:]
	}
	l.p.active.Add(int64(-answered))
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
	raw := b.wbuf[len(b.wbuf)-b.unsent:]
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
	return w.n > 0 && w.info.fastRead()
}

// deliver gives one reply to the client that is owed it.
func (l *evloop) deliver(w waiter, reply []byte) {
	w.info.count(reply[0] == '-')
	l.p.m.latency.Observe(l.now.Sub(w.start).Seconds())
	c := w.c
	if c.dead {
		return
	}
	c.out = append(c.out, reply...)
	if c.owed--; c.owed == 0 {
		l.waiting--
	}
	if len(c.out) > l.p.cfg.MaxOutput {
		l.dropClient(c, "output_limit")
		return
	}
	l.markDirty(c)
	if c.owed == 0 {
		c.on = nil
		if len(c.after) > 0 {
			c.out = append(c.out, c.after...)
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
	if err != errConnClosed && !l.stopped {
		l.requeue(b, rerunErr(err))
	}
	reply := appendLost(nil, b.pl.addr, err)
	owed := b.waiters[b.head:]
	for _, w := range owed {
		if w.c != nil { // (nil: given back by requeue)
			l.deliver(w, reply)
		}
	}
	l.p.active.Add(int64(-len(owed)))
	b.waiters, b.head, b.sent, b.unsent, b.wbuf, b.in = nil, 0, 0, 0, nil, nil
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
	unsent := b.wbuf[len(b.wbuf)-b.unsent:]
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
// clients to run again (true) rather than fail with "outcome unknown".
// Those never written go back: the server never saw them. With reads
// (rerunErr), so do the written ones that are rerunnable, when nothing
// but rerunnable or unwritten requests of the same client follows them
// (its replies must stay in order, and a write's error comes now) and
// the client's reads were not already given back once since its last
// reply. Nothing of a client that is gone goes back, nor of one with a
// reply of the proxy's own queued behind (c.after), which must stay
// behind theirs.
func giveBack(ws []waiter, sent int, reads bool) []bool {
	back := make([]bool, len(ws))
	from := map[*lclient]int{} // a client's last run of rerunnable written requests starts here; -1: none
	for i := range ws[:sent] {
		w := &ws[i]
		switch f, seen := from[w.c]; {
		case !reads || !rerunnable(w) || w.c.retried:
			from[w.c] = -1
		case !seen || f < 0:
			from[w.c] = i
		}
	}
	for i := range ws {
		c := ws[i].c
		if c.dead || len(c.after) > 0 {
			continue
		}
		f, seen := from[c]
		back[i] = i >= sent || seen && f >= 0 && i >= f
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
// where it stopped when the buffer had only part of one.
type replyScan struct {
	pos     int   // offset of the next header to read
	pending int64 // values still to read for the current one (0: none begun)
}

// next returns the length of the complete value at the start of b, or 0
// if b holds only part of it.
func (r *replyScan) next(b []byte) (int, error) {
	if r.pending == 0 {
		r.pos, r.pending = 0, 1
	}
	for r.pending > 0 {
		if r.pos >= len(b) {
			return 0, nil
		}
		i := bytes.IndexByte(b[r.pos:], '\n')
		if i < 0 {
			if len(b)-r.pos > 64<<10 {
				return 0, errBadReply
			}
			return 0, nil
		}
		line := b[r.pos : r.pos+i+1]
		if len(line) < 3 || line[len(line)-2] != '\r' {
			return 0, errBadReply
		}
		body := line[1 : len(line)-2]
		next := r.pos + len(line)
		add := int64(0)
		switch line[0] {
		case '+', '-', ':', '_', ',', '#', '(':
		case '$', '!', '=':
			n, ok := parseLen(body)
			if !ok || n > maxReplyBulk {
				return 0, errBadReply
			}
			if n >= 0 {
				if int64(len(b)-next) < n+2 {
					return 0, nil
				}
				next += int(n)
				if b[next] != '\r' || b[next+1] != '\n' {
					return 0, errBadReply
				}
				next += 2
			}
		case '*', '~', '>':
			n, ok := parseLen(body)
			if !ok {
				return 0, errBadReply
			}
			add = max(n, 0)
		case '%':
			n, ok := parseLen(body)
			if !ok {
				return 0, errBadReply
			}
			add = 2 * max(n, 0)
		case '|':
			n, ok := parseLen(body)
			if !ok || n < 0 {
				return 0, errBadReply
			}
			add = 2*n + 1
		default:
			return 0, errBadReply
		}
		r.pos = next
		r.pending += add - 1
	}
	end := r.pos
	r.pos = 0
	return end, nil
}

// loopsSupported reports whether this build has event loops.
const loopsSupported = true

// The loop's sockets are non-blocking, so reading, writing and polling
// them never blocks: they are made as raw system calls, without telling
// the Go scheduler (which would otherwise treat each as a possibly
// blocking call, and its monitor thread would keep waking up to take the
// loop's processor away). Only the epoll wait that sleeps goes through
// the scheduler.

func rawRead(fd int, p []byte) (int, error)  { return rawIO(unix.SYS_READ, fd, p) }
func rawWrite(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO makes read or write (trap) on fd with p, returning -1 and the
// errno on failure, as unix.Read and unix.Write do.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// writeOut writes buf to the non-blocking fd once and returns what is
// left of it: nothing (its storage dropped if it grew past keep bytes),
// the rest after a partial write, or all of it when the socket is full.
// An error is any other failure of the write.
func writeOut(fd int, buf []byte, keep int) ([]byte, error) {
	if len(buf) == 0 {
		return buf, nil
	}
	n, err := rawWrite(fd, buf)
	switch {
	case n == len(buf):
		if cap(buf) > keep {
			return nil, nil
		}
		return buf[:0], nil
	case n > 0:
		return buf[:copy(buf, buf[n:])], nil
	case err == unix.EAGAIN || err == unix.EINTR:
		return buf, nil
	case err == nil:
		err = io.ErrShortWrite // nothing written, and no error said why
	}
	return buf, err
}

// rawEpollPoll is epoll_wait with a zero timeout.
func rawEpollPoll(ep int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
