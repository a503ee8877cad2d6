package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// Redial backoff of a pool slot whose connection failed.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
	maxSpares  = 8 // clean dedicated connections kept for the next pin
	// warmSpares is how many of them the master's pool dials ahead, so a
	// blocking command, a subscription or a transaction finds a connection
	// ready: it reaches the server with no dial and no handshake before
	// it, and blocked clients are served in the order they sent.
	warmSpares = 8
)

// pool holds the shared (multiplexed) connections to one Redis server and
// hands out dedicated connections for pinned sessions. Each shared slot has a
// goroutine that dials it, waits for it to fail, and dials again with
// exponential backoff, so a pool heals by itself once the server is back.
type pool struct {
	owner  *Proxy // its event loops keep a connection of their own here
	addr   string
	d      *dialer
	log    *slog.Logger
	m      *metrics
	slots  []atomic.Pointer[backendConn]
	ready  func() // called when a slot (re)connects
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	spares  []*dedicated
	warming atomic.Bool // a warm goroutine is dialing spares
	pinned  map[*dedicated]struct{}

	busy busyTracker // scripts and functions in flight on the server
}

// size counts the shared connections the pool dials itself; event loops
// add one each (see Proxy.poolLocked).
func newPool(addr string, size int, d *dialer, log *slog.Logger, m *metrics, ready func()) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{
		addr:   addr,
		d:      d,
		log:    log.With("server", addr),
		m:      m,
		slots:  make([]atomic.Pointer[backendConn], size),
		ready:  ready,
		ctx:    ctx,
		cancel: cancel,
		pinned: make(map[*dedicated]struct{}),
	}
	for i := range p.slots {
		go p.supervise(i)
	}
	return p
}

func (p *pool) supervise(i int) {
	backoff := minBackoff
	failures := 0
	for p.ctx.Err() == nil {
		bc, err := p.d.dial(p.ctx, p.addr, true)
		if err != nil {
			failures++
			if failures == 1 {
				p.log.Warn("backend connection failed", "slot", i, "err", err)
			} else {
				p.log.Debug("backend connection failed", "slot", i, "err", err, "attempt", failures)
			}
			wait := backoff
			if errors.Is(err, errLoading) {
				wait = loadingRetry
			} else {
				backoff = min(2*backoff, maxBackoff)
			}
			select {
			case <-time.After(wait):
			case <-p.ctx.Done():
			}
			continue
		}
		if failures > 0 {
			p.log.Info("backend connection restored", "slot", i, "after_attempts", failures)
		}
		failures, backoff = 0, minBackoff
		c := newBackendConn(p.addr, bc.nc, bc.br, p.failed)
		p.slots[i].Store(c)
		p.m.backendConns.WithLabelValues(p.addr).Inc()
		p.ready()
		select {
		case <-c.dead:
		case <-p.ctx.Done():
			c.close()
			<-c.dead
		}
		p.slots[i].CompareAndSwap(c, nil)
		p.m.backendConns.WithLabelValues(p.addr).Dec()
		if !byProxy(c.err) {
			p.m.backendErrors.WithLabelValues(p.addr).Inc()
			p.log.Warn("backend connection lost", "slot", i, "err", c.err)
		}
	}
}

// failed is called by a shared connection that failed: unless the proxy
// closed it on purpose, its siblings are retired (see backendConn.retire).
func (p *pool) failed(c *backendConn, err error) {
	if byProxy(err) {
		return
	}
	for i := range p.slots {
		if o := p.slots[i].Load(); o != nil && o != c {
			o.retire()
		}
	}
	if c != nil && p.owner != nil { // not from a loop, which retires itself
		p.owner.eachLoop(func(l *evloop) { l.retire(p) })
	}
}

// failShared fails every shared connection at once: the server stopped
// being master, and a command still waiting on it (it may be hung) must get
// its "outcome unknown" error now, not when the server wakes up.
func (p *pool) failShared() {
	for i := range p.slots {
		if c := p.slots[i].Load(); c != nil {
			c.fail(errMasterChanged)
		}
	}
	if p.owner != nil {
		p.owner.eachLoop(func(l *evloop) { l.failPool(p, errMasterChanged) })
	}
}

// send queues r on a live shared connection, starting at slot hint, and
// reports whether one took it.
func (p *pool) send(hint uint64, r *request) bool {
	n := uint64(len(p.slots))
	for k := uint64(0); k < n; k++ {
		if c := p.slots[(hint+k)%n].Load(); c != nil && c.send(r) {
			return true
		}
	}
	return false
}

// connected reports whether at least one shared connection is up.
func (p *pool) connected() bool {
	for i := range p.slots {
		if c := p.slots[i].Load(); c != nil && c.alive() {
			return true
		}
	}
	return false
}

// close ends the slots and every dedicated connection of the pool.
func (p *pool) close() {
	p.cancel()
	if p.owner != nil {
		p.owner.eachLoop(func(l *evloop) { l.failPool(p, errConnClosed) })
	}
	p.closePinned()
	p.mu.Lock()
	for _, d := range p.spares {
		d.nc.Close()
	}
	p.spares = nil
	p.mu.Unlock()
}

// dedicated is a connection owned by one pinned session. The session does
// synchronous request/reply on it, or hands it to a tunnel.
type dedicated struct {
	p  *pool
	nc net.Conn
	rr resp.Reader
	id int64 // the server's id for it (CLIENT ID)
}

// acquire returns a dedicated connection: a clean spare if one is alive,
// else a new one. The caller must give it back with release.
func (p *pool) acquire(ctx context.Context) (*dedicated, error) {
	if d := p.spare(); d != nil {
		return d, nil
	}
	c, err := p.d.dial(ctx, p.addr, false)
	if err != nil {
		return nil, err
	}
	d := p.newDedicated(c)
	p.track(d)
	p.warm()
	return d, nil
}

// newDedicated wraps a connection dial opened for a session's own use.
func (p *pool) newDedicated(c conn) *dedicated {
	return &dedicated{p: p, nc: c.nc, rr: resp.Reader{R: c.br}, id: c.id}
}

// spare is acquire without a dial: a live spare, or nil. It never blocks,
// so an event loop may call it.
func (p *pool) spare() *dedicated {
	for {
		p.mu.Lock()
		var d *dedicated
		if n := len(p.spares); n > 0 {
			d = p.spares[n-1]
			p.spares = p.spares[:n-1]
		}
		p.mu.Unlock()
		if d == nil {
			p.warm()
			return nil
		}
		if d.idleAlive() {
			p.track(d)
			p.warm()
			return d
		}
		d.nc.Close()
	}
}

// warm dials spares in the background until warmSpares are kept, the
// missing ones at once (one round of dials at a time; a failed dial ends
// the round, and the next acquire starts another).
func (p *pool) warm() {
	if !p.warming.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.warming.Store(false)
		for p.ctx.Err() == nil {
			p.mu.Lock()
			missing := warmSpares - len(p.spares)
			p.mu.Unlock()
			if missing <= 0 {
				return
			}
			var wg sync.WaitGroup
			var failed atomic.Bool
			for range missing {
				wg.Go(func() {
					if !p.addSpare() {
						failed.Store(true)
					}
				})
			}
			wg.Wait()
			if failed.Load() {
				return
			}
		}
	}()
}

// addSpare dials one spare and keeps it; false if the dial failed.
func (p *pool) addSpare() bool {
	ctx, cancel := context.WithTimeout(p.ctx, p.d.dialTimeout())
	c, err := p.d.dial(ctx, p.addr, false)
	cancel()
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil || len(p.spares) >= maxSpares {
		c.nc.Close()
		return true
	}
	p.spares = append(p.spares, p.newDedicated(c))
	return true
}

func (p *pool) track(d *dedicated) {
	p.mu.Lock()
	p.pinned[d] = struct{}{}
	p.mu.Unlock()
}

// release takes d back. A connection whose server-side state is known to be
// clean is kept as a spare; any other is closed.
func (p *pool) release(d *dedicated, clean bool) {
	p.mu.Lock()
	_, mine := p.pinned[d]
	delete(p.pinned, d)
	if clean && mine && p.ctx.Err() == nil && len(p.spares) < maxSpares && d.rr.R.Buffered() == 0 {
		p.spares = append(p.spares, d)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	d.nc.Close()
}

// closePinned closes every dedicated connection in use, which ends the
// sessions pinned to them with an error. It is used when the server stops
// being master: a transaction or subscription there must not go on.
func (p *pool) closePinned() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for d := range p.pinned {
		d.nc.Close()
	}
	for _, d := range p.spares {
		d.nc.Close()
	}
	p.spares = nil
}

// idleAlive reports whether an idle connection is still open, without
// blocking: a non-blocking peek that would block means alive; EOF, an error
// or data (which an idle Redis connection never sends) means it must be
// dropped. (A read deadline in the past cannot tell: Go fails such a read
// before looking at the socket.)
func (d *dedicated) idleAlive() bool {
	if d.rr.R.Buffered() > 0 {
		return false
	}
	sc, ok := rawConn(d.nc).(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK)
		return true // never wait for readiness
	})
	return err == nil && alive
}
