//go:build linux

package proxy

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The event loop is the fast path for stateless traffic. One goroutine,
// locked to its thread, waits in epoll on client sockets and on its own
// shared backend connections together: a readable client's commands are
// appended to the backend's write buffer, every backend written once per
// wake-up, and replies found in the backend's read buffer go straight into
// each client's output buffer, written once per wake-up. No goroutine is
// woken on the way, which is what a goroutine per client costs on every
// request.
//
// The loop is split by role: this file runs the loop (epoll, tasks,
// polling, the write-out of each wake-up); loop_client_linux.go is the
// client side (reading, writing, hand-offs, parking), loop_exec_linux.go
// runs a client's commands (parse, classify, route, queue),
// loop_tx_linux.go the transactions sent whole, loop_backend_linux.go the
// server side (connections, replies, failures) and loop_sys_linux.go the
// raw system calls.
//
// Everything here runs on the loop's own goroutine, except post (any
// goroutine) and the dialing goroutines, which hand their result back
// through post. A client stays on the loop while its commands are
// stateless: forwarded, read from a replica, answered by the proxy, or a
// transaction sent whole. The first command that needs a dedicated
// connection hands the socket, with the bytes not yet run, to the
// goroutine path (gclient.go).
//
// Ordering: a client's replies come from one backend connection at a time.
// A command for another connection, or one the proxy answers, waits until
// every reply owed to the client has arrived (a barrier), so replies are
// always in request order.

const (
	loopReadSize = 64 << 10 // bytes read from a socket at a time
	passFrom     = 32 << 10 // a partial reply this large is passed on as it comes (pass)
	loopMaxOwed  = 4096     // replies owed to one client before it is read no more
	loopTick     = 2 * time.Millisecond

	// Flow control, so that a client cannot fill a shared connection (and
	// the proxy's memory) with replies it does not read, and hold up every
	// other client's replies behind them: a client's window (window.go)
	// bounds its requests in flight on a shared connection; and while more
	// than outPause bytes of its replies are unwritten (it is not reading
	// them), none of its requests is sent and it is not read, until they
	// are down to outResume.
	outPause  = 1 << 20
	outResume = 256 << 10

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
	local   []byte      // the proxy's reply to the command being run
	probe   resp.Parser // looks for a complete command without moving a client's parser
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
	// Durable writes (loop_acks_linux.go): the clients holding replies for
	// each group, and the WAIT command.
	ackHeld map[*ackGroup][]*lclient
	waitCmd []byte
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
		spin:    max(p.cfg().BusyPoll, 0),

		coalesce: !p.cfg().WriteAtOnce,
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
	// A client whose output drained (writeClient) may run again and queue
	// requests: go round until nothing is left to do.
	for round := 0; round == 0 || len(l.again) > 0 || len(l.towrite) > 0 || len(l.dirty) > 0; round++ {
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
		dirty := l.dirty
		l.dirty = nil
		for _, c := range dirty {
			c.isDirty = false
			if !c.dead {
				l.writeClient(c)
			}
		}
		clear(dirty)
		if l.dirty == nil {
			l.dirty = dirty[:0]
		}
	}
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

// loopsSupported reports whether this build has event loops.
const loopsSupported = true
