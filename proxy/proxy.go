package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
	"github.com/redis-proxy/redis-proxy/replication"
)

// Proxy is a RESP proxy in front of one Redis master and its replicas.
// Create it with New, give it a topology with SetTopology, and Serve a
// listener. It owns every backend connection; Close ends them. Its
// methods are safe to call from any goroutine.
type Proxy struct {
	// conf is the configuration, with defaults applied; Reload replaces
	// it (reload.go), so it is read through cfg() where it is used.
	conf   atomic.Pointer[Config]
	log    *slog.Logger
	m      *metrics
	dialer *dialer
	env    atomic.Pointer[command.Env] // what the classifier reads besides the session; Reload replaces it

	mu      sync.Mutex // serialises topology changes and pools
	paused  bool       // Pause was called and Resume not yet
	pools   map[string]*pool
	routes  atomic.Pointer[routes]
	lns     []net.Listener
	serving bool
	loops   []*evloop
	// loopsv is loops for those who may not take mu (pools call in with
	// mu held).
	loopsv atomic.Pointer[[]*evloop]
	// returnAfter is loopReturnAfter (tests lower it).
	returnAfter atomic.Int64
	closed      bool
	loading     bool // a command-table load is running
	// lastMaster is the pool of the last master published, kept across a
	// topology with no master (as a failover or switchover publishes).
	lastMaster *pool
	// conns are the goroutine path's client connections, closed by Close.
	conns sync.Map

	clients atomic.Int64
	flight  inflight
	pinned  atomic.Int64
	held    atomic.Int64
	nextID  atomic.Int64
	nloop   atomic.Uint64
	rr      atomic.Uint64 // replica round-robin
	tunnels sync.Map      // client id -> server-side id of its tunnel connection
	table   clientTable   // the clients CLIENT LIST shows (clients.go)
	// The opener's queue (opener.go).
	openMu   sync.Mutex
	openQ    []*opened
	openOnce sync.Once
	openWake chan struct{}
	done     chan struct{} // closed by Close
	lastOpen atomic.Int64  // when the last blocking command was written (unix ns; opener.go)
	// readYourWrites is Config.ReadYourWrites with reads on replicas.
	readYourWrites atomic.Bool
	scripts        *scriptMirror
	mem            *semaphore.Weighted // Config.MaxInflightMemory, for large requests (bigreq.go)
	freed          atomic.Int64        // bytes of large requests' buffers dropped since the last collection (bigreq.go)
	gcing          atomic.Bool
}

// New validates cfg and returns a Proxy with no topology yet: until
// SetTopology names a master, client commands are held and then refused.
// An invalid cfg gets a *config.FieldError naming the field.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Proxy{
		log: cfg.Logger,
		m:   newMetrics(cfg.Registerer),
		dialer: &dialer{
			username: cfg.BackendUsername,
			password: cfg.BackendPassword,
			name:     "redis-proxy",
			tls:      cfg.BackendTLS,
		},
		pools: make(map[string]*pool),
		done:  make(chan struct{}),
	}
	p.setConfig(&cfg)
	p.mem = semaphore.NewWeighted(cfg.MaxInflightMemory)
	p.routes.Store(&routes{changed: make(chan struct{})})
	p.returnAfter.Store(loopReturnAfter)
	p.scripts = newScriptMirror(p)
	return p, nil
}

// tunnelID returns the server's id for the tunnel connection of the client
// the proxy knows as id.
func (p *Proxy) tunnelID(id int64) (int64, bool) {
	v, ok := p.tunnels.Load(id)
	if !ok {
		return 0, false
	}
	return v.(int64), true
}

// Serve accepts clients on ln until Close, and closes ln then. It returns
// nil after Close. It may serve several listeners at once (a plain one and
// a TLS one, say), each on its own call. A listener whose connections are
// *tls.Conn (tls.NewListener) has its clients served by goroutines (see
// tls.go).
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.lns = append(p.lns, ln)
	if p.serving {
		p.mu.Unlock()
		return p.accept(ln)
	}
	p.serving = true
	for i := 0; i < p.cfg().EventLoops; i++ {
		l, err := newEvloop(p)
		if err != nil {
			p.mu.Unlock()
			return fmt.Errorf("proxy: %w", err)
		}
		p.loops = append(p.loops, l)
		go l.run()
	}
	loops := p.loops
	p.loopsv.Store(&loops)
	for _, pl := range p.pools {
		p.eachLoop(func(l *evloop) { l.conn(pl) })
	}
	p.mu.Unlock()
	return p.accept(ln)
}

// accept runs acceptLoop on ln; after Close its error is nil.
func (p *Proxy) accept(ln net.Listener) error {
	err := p.acceptLoop(ln)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	return err
}

// acceptLoop accepts clients and gives each to an event loop, or to a
// goroutine of its own when there are none.
func (p *Proxy) acceptLoop(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(interface{ Temporary() bool }); ok && ne.Temporary() && !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors, say: wait as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				p.log.Warn("accept failed", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s := p.newSession(nc)
		if s == nil {
			continue
		}
		if tc, ok := nc.(*tls.Conn); ok {
			go p.serveTLS(s, tc)
			continue
		}
		if n := uint64(len(p.loops)); n > 0 {
			l := p.loops[p.nloop.Add(1)%n]
			if err := l.adopt(nc, s, nil, p.newParser()); err != nil {
				p.log.Warn("client not adopted by the event loop", "err", err)
				s.end()
			}
			continue
		}
		p.goServe(s, nc, nil, p.newParser(), "", nil)
	}
}

// newParser returns a request parser with the configured limits.
func (p *Proxy) newParser() resp.Parser { return resp.Parser{MaxBulk: p.cfg().MaxBulk} }

// goServe serves the client on a goroutine of its own (see
// serveGoroutine), unless the proxy is closed.
func (p *Proxy) goServe(s *session, nc net.Conn, in []byte, parser resp.Parser, protoErr string, open *opened) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		nc.Close()
		if open != nil {
			open.drop(p)
		}
		s.end()
		return
	}
	p.conns.Store(nc, struct{}{})
	p.mu.Unlock()
	s.entry.setConn(nc)
	go func() {
		defer p.conns.Delete(nc)
		p.serveGoroutine(s, nc, in, parser, protoErr, open)
	}()
}

// newSession counts a new client and returns its session, or refuses it
// (nil) past MaxClients.
func (p *Proxy) newSession(nc net.Conn) *session {
	if p.clients.Add(1) > int64(p.cfg().MaxClients) {
		p.clients.Add(-1)
		p.m.rejected.WithLabelValues("max_clients").Inc()
		go func() {
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(nc, "-ERR max number of clients reached\r\n")
			nc.Close()
		}()
		return nil
	}
	p.m.clients.Inc()
	p.m.clientsTotal.Inc()
	s := &session{p: p}
	s.st.ID = p.nextID.Add(1)
	s.st.Authed = p.env.Load().Password == ""
	s.entry = newClientEntry(s.st.ID, nc)
	p.table.add(s.entry)
	return s
}

// Close stops serving, disconnects every client and closes every backend
// connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.scripts.close()
	lns, loops := p.lns, p.loops
	for _, pl := range p.pools {
		pl.close()
	}
	p.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for _, l := range loops {
		l.stop()
	}
	p.conns.Range(func(nc, _ any) bool {
		rawConn(nc.(net.Conn)).Close() // a TLS client's close_notify could block
		return true
	})
	return nil
}

// eachLoop runs f on every event loop's goroutine.
func (p *Proxy) eachLoop(f func(*evloop)) {
	loops := p.loopsv.Load()
	if loops == nil {
		return
	}
	for _, l := range *loops {
		l.post(func() { f(l) })
	}
}

// Topology returns the topology the proxy routes by now.
func (p *Proxy) Topology() replication.Topology { return p.routes.Load().topo }

// Ready reports whether a master is known and its command table loaded.
func (p *Proxy) Ready() bool {
	r := p.routes.Load()
	return r.ready() && r.master.connected()
}

// SetTopology makes the proxy route by t. Pools for servers it has not seen
// are created; when the master changes, the command table is re-read from
// the new master and sessions pinned to the old master are ended (their
// transaction or subscription cannot go on elsewhere). It is safe to call
// from any goroutine.
func (p *Proxy) SetTopology(t replication.Topology) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	old := p.routes.Load()
	if old.topo.Equal(t) && (t.Master == "" || old.master != nil) {
		return
	}
	nr := &routes{topo: t, table: old.table, paused: p.paused, changed: make(chan struct{})}
	if t.Master != "" {
		nr.master = p.poolLocked(t.Master)
	}
	if p.cfg().ReadFrom == ReadFromReplicas {
		for _, a := range t.Replicas {
			nr.replicas = append(nr.replicas, p.poolLocked(a))
		}
	}
	if old.master != nil && old.master != nr.master {
		old.master.closePinned()
	}
	if nr.master != nil {
		// Not when no master is published: a planned switchover does that
		// first and then drains what is in flight (Pause).
		if p.lastMaster != nil && p.lastMaster != nr.master {
			p.lastMaster.failShared()
		}
		p.lastMaster = nr.master
		nr.master.warm()
	}
	masterChanged := old.topo.Master != t.Master
	p.swapLocked(nr)
	servers := slices.Clone(t.Replicas)
	if t.Master != "" {
		servers = append(servers, t.Master)
	}
	p.scripts.setServers(servers)
	p.m.topologyEpoch.Set(float64(t.Epoch))
	p.log.Info("routing", "epoch", t.Epoch, "master", t.Master, "replicas", t.Replicas)
	if t.Master != "" && (masterChanged || nr.table == nil) {
		p.loadTableLocked(t.Master)
	}
}

// Pause holds new commands and returns once no batch routed before it is
// still waiting for replies, so a planned switchover can move the master
// with nothing in flight. On error (ctx done first) the proxy resumes.
// Sessions pinned to the master are not waited for.
func (p *Proxy) Pause(ctx context.Context) error {
	p.setPaused(true)
	t := time.NewTicker(200 * time.Microsecond)
	defer t.Stop()
	for p.flight.count() > 0 {
		select {
		case <-ctx.Done():
			p.setPaused(false)
			return fmt.Errorf("pause: %d batches still in flight: %w", p.flight.count(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Resume releases the commands held by Pause.
func (p *Proxy) Resume() { p.setPaused(false) }

func (p *Proxy) setPaused(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused == on || p.closed {
		return
	}
	p.paused = on
	p.republishLocked(func(r *routes) { r.paused = on })
	p.log.Info("client commands", "held", on)
}

func (p *Proxy) poolLocked(addr string) *pool {
	pl := p.pools[addr]
	if pl == nil {
		// Each event loop has a shared connection of its own; the pool's
		// slots serve sessions on goroutines. PoolSize counts both.
		pl = newPool(addr, max(p.cfg().PoolSize-p.cfg().EventLoops, 1), p.dialer, p.log, p.m, p.poolReady)
		p.m.backendErrors.WithLabelValues(addr) // at 0 from the start, for increase() in alerts
		pl.owner = p
		p.eachLoop(func(l *evloop) { l.conn(pl) })
		p.pools[addr] = pl
	}
	return pl
}

// republishLocked publishes a copy of the current routes changed by mod,
// which wakes every held session, and returns it.
func (p *Proxy) republishLocked(mod func(*routes)) *routes {
	nr := *p.routes.Load()
	mod(&nr)
	nr.changed = make(chan struct{})
	p.swapLocked(&nr)
	return &nr
}

// swapLocked publishes nr and wakes everyone waiting on the old snapshot.
func (p *Proxy) swapLocked(nr *routes) {
	old := p.routes.Swap(nr)
	close(old.changed)
}

// poolReady wakes held sessions when a pool connects: the master may have
// been known but unreachable.
func (p *Proxy) poolReady() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	nr := p.republishLocked(func(*routes) {})
	if nr.master != nil && nr.table == nil {
		p.loadTableLocked(nr.topo.Master)
	}
}

// loadTableLocked reads the command table from addr in the background and
// publishes it if addr is still the master. Until a table exists, sessions
// are held: without it a blocking command could stall a shared connection.
func (p *Proxy) loadTableLocked(addr string) {
	if p.loading {
		return
	}
	p.loading = true
	go func() {
		backoff := minBackoff
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t, err := loadTable(ctx, addr, p.dialer, p.m)
			cancel()
			p.mu.Lock()
			cur := p.routes.Load()
			if p.closed || cur.topo.Master != addr {
				// The master moved on while loading; read the new one's.
				p.loading = false
				if !p.closed && cur.topo.Master != "" {
					p.loadTableLocked(cur.topo.Master)
				}
				p.mu.Unlock()
				return
			}
			if err == nil {
				p.republishLocked(func(r *routes) { r.table = t })
				p.loading = false
				p.mu.Unlock()
				p.log.Info("command table loaded", "server", addr, "commands", t.Len())
				return
			}
			p.mu.Unlock()
			p.log.Warn("command table not loaded", "server", addr, "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, maxBackoff)
		}
	}()
}
