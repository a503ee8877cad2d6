package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/redcon"

	"github.com/redis-proxy/redis-proxy/replication"
)

// ReadFrom says where read-only commands go.
type ReadFrom int

const (
	// ReadFromMaster sends every command to the master.
	ReadFromMaster ReadFrom = iota
	// ReadFromReplicas sends read-only commands outside transactions
	// round-robin to replicas whose link is up, and to the master when
	// there is none.
	ReadFromReplicas
)

func (r ReadFrom) String() string {
	if r == ReadFromReplicas {
		return "replicas"
	}
	return "master"
}

// ParseReadFrom parses "master" or "replicas".
func ParseReadFrom(s string) (ReadFrom, error) {
	switch s {
	case "master", "":
		return ReadFromMaster, nil
	case "replicas":
		return ReadFromReplicas, nil
	}
	return 0, fmt.Errorf("read-from %q: want master or replicas", s)
}

// Config configures a Proxy. The zero value of every field is usable.
type Config struct {
	// PoolSize is the number of shared connections to each Redis server:
	// one per event loop, the rest (at least one) for sessions served by
	// goroutines. If zero, 2 is used.
	PoolSize int
	// MaxClients bounds client connections; past it new clients get
	// Redis's "max number of clients reached" error. If zero, 10000.
	MaxClients int
	// MaxPinned bounds dedicated backend connections held by stateful
	// sessions (transactions, blocking commands, pub/sub, ...); past it
	// such a command gets an error. If zero, 1000.
	MaxPinned int
	// ClientPassword, if set, must be given with AUTH (or HELLO ... AUTH)
	// before any other command, as with Redis's requirepass.
	ClientPassword string
	// BackendUsername and BackendPassword are the proxy's own credentials
	// for the Redis servers.
	BackendUsername string
	BackendPassword string
	// ReadFrom is where read-only commands go. The zero value is master.
	ReadFrom ReadFrom
	// MaxBulk bounds one bulk string in a request, in bytes, as Redis's
	// proto-max-bulk-len. If zero, 512 MiB.
	MaxBulk int64
	// MaxOutput bounds the replies buffered for one client, in bytes; a
	// client whose pending replies pass it is disconnected. If zero, 256 MiB.
	MaxOutput int
	// IdleTimeout closes a client that sends nothing for this long (not
	// subscribers or blocked clients). If zero, clients are never closed
	// for being idle.
	IdleTimeout time.Duration
	// WriteTimeout disconnects a client that does not read its replies for
	// this long. If zero, 60s.
	WriteTimeout time.Duration
	// HoldTimeout is how long commands wait for a master (during a
	// failover, or before one is known) before getting an error. If zero, 5s.
	HoldTimeout time.Duration
	// MaxHeld bounds the sessions waiting for a master at once; past it,
	// commands get an error at once. If zero, 10000.
	MaxHeld int
	// DialTimeout bounds connecting and authenticating to Redis. If zero, 1s.
	DialTimeout time.Duration
	// EventLoops is the number of event loops (threads) serving clients
	// whose commands are stateless; each has its own shared connection to
	// each server. A client that needs a dedicated connection moves to a
	// goroutine of its own. -1 serves every client with its own goroutine
	// from the start. If zero, 1. (Event loops exist on Linux only.)
	EventLoops int
	// BusyPoll is how long an event loop serving one or two clients keeps
	// polling for their next command, or Redis's reply, before it sleeps:
	// it trades up to that much CPU per request for a lower latency. If
	// zero, 100µs; negative: never.
	BusyPoll time.Duration
	// WriteAtOnce makes an event loop send every request to Redis as soon
	// as it has read it. By default, while more than eight of a loop's
	// clients await replies, requests for a connection whose last write is
	// not yet answered wait for those replies and go out together in one
	// write: less CPU in Redis and the proxy per request, for a wait of at
	// most one round trip to Redis (long when Redis is across a slow link,
	// where WriteAtOnce is the better choice).
	WriteAtOnce bool
	// Logger receives the proxy's logs. If nil, nothing is logged.
	Logger *slog.Logger
	// Registerer, if set, gets the proxy's Prometheus collectors.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.PoolSize, 2)
	def(&c.MaxClients, 10000)
	def(&c.MaxPinned, 1000)
	def(&c.MaxOutput, 256<<20)
	def(&c.MaxHeld, 10000)
	def(&c.EventLoops, 1)
	if c.EventLoops < 0 || !loopsSupported {
		c.EventLoops = 0
	}
	if c.MaxBulk == 0 {
		c.MaxBulk = 512 << 20
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.HoldTimeout == 0 {
		c.HoldTimeout = 5 * time.Second
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = time.Second
	}
	if c.BusyPoll == 0 {
		c.BusyPoll = 100 * time.Microsecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case c.PoolSize < 0 || c.PoolSize > 64:
		return fmt.Errorf("pool size %d: want 1 to 64", c.PoolSize)
	case c.EventLoops > 64:
		return fmt.Errorf("event loops %d: want -1 to 64", c.EventLoops)
	case c.BusyPoll > 10*time.Millisecond:
		return fmt.Errorf("busy poll %s: want at most 10ms", c.BusyPoll)
	case c.MaxClients < 0, c.MaxPinned < 0, c.MaxOutput < 0, c.MaxHeld < 0, c.MaxBulk < 0:
		return errors.New("limits must not be negative")
	case c.IdleTimeout < 0, c.WriteTimeout < 0, c.HoldTimeout < 0, c.DialTimeout < 0:
		return errors.New("timeouts must not be negative")
	case c.BackendUsername != "" && c.BackendPassword == "":
		return errors.New("a backend username needs a backend password")
	}
	return nil
}

// routes is what sessions route by: an immutable snapshot, replaced as a
// whole when the topology, the command table or a pool's readiness changes.
// changed is closed when the snapshot is replaced, which wakes held sessions.
type routes struct {
	topo     replication.Topology
	master   *pool
	replicas []*pool
	table    *cmdTable
	paused   bool // a planned switchover: hold new commands
	changed  chan struct{}
}

// ready reports whether commands can be routed now.
func (r *routes) ready() bool { return r.master != nil && r.table != nil && !r.paused }

// Proxy is a RESP proxy in front of one Redis master and its replicas.
// Create it with New, give it a topology with SetTopology, and Serve a
// listener. It owns every backend connection; Close ends them.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	dialer *dialer

	mu     sync.Mutex // serialises topology changes and pools
	paused bool       // Pause was called and Resume not yet
	pools  map[string]*pool
	routes atomic.Pointer[routes]
	srv    *redcon.Server
	ln     net.Listener
	loops  []*evloop
	// loopsv is loops for those who may not take mu (pools call in with
	// mu held).
	loopsv atomic.Pointer[[]*evloop]
	// handoffs feeds redcon the clients served by a goroutine each: new
	// ones when there are no event loops, and those a loop hands over.
	handoffs *chanListener
	// returnAfter is loopReturnAfter (tests lower it).
	returnAfter atomic.Int64
	closed      bool
	loading     bool // a command-table load is running
	// lastMaster is the pool of the last master published, kept across a
	// topology with no master (as a failover or switchover publishes).
	lastMaster *pool

	clients atomic.Int64
	active  atomic.Int64 // batches between routing and their last reply
	pinned  atomic.Int64
	held    atomic.Int64
	nextID  atomic.Int64
	nloop   atomic.Uint64
	rr      atomic.Uint64 // replica round-robin
	tunnels sync.Map      // client id -> server-side id of its tunnel connection
	scripts *scriptMirror
}

// New validates cfg and returns a Proxy with no topology yet: until
// SetTopology names a master, client commands are held and then refused.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	p := &Proxy{
		cfg: cfg,
		log: cfg.Logger,
		m:   newMetrics(cfg.Registerer),
		dialer: &dialer{
			timeout:  cfg.DialTimeout,
			username: cfg.BackendUsername,
			password: cfg.BackendPassword,
			name:     "redis-proxy",
		},
		pools: make(map[string]*pool),
	}
	p.routes.Store(&routes{changed: make(chan struct{})})
	p.returnAfter.Store(loopReturnAfter)
	p.scripts = newScriptMirror(p)
	return p, nil
}

// Serve accepts clients on ln until Close. It returns nil after Close.
func (p *Proxy) Serve(ln net.Listener) error {
	srv := redcon.NewServer("", p.handle, p.accept, p.closedConn)
	if p.cfg.IdleTimeout > 0 {
		srv.SetIdleClose(p.cfg.IdleTimeout)
	}
	p.mu.Lock()
	if p.closed || p.srv != nil {
		p.mu.Unlock()
		if p.srv != nil {
			return errors.New("proxy: Serve called twice")
		}
		return nil
	}
	p.srv, p.ln = srv, ln
	p.handoffs = newChanListener(ln.Addr())
	for i := 0; i < p.cfg.EventLoops; i++ {
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
	go srv.Serve(p.handoffs)
	err := p.acceptLoop(ln)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	return err
}

// acceptLoop accepts clients and gives each to an event loop, or to redcon
// when there are none.
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
		if n := uint64(len(p.loops)); n > 0 {
			l := p.loops[p.nloop.Add(1)%n]
			if err := l.adopt(nc, s); err != nil {
				p.log.Warn("client not adopted by the event loop", "err", err)
				s.end()
			}
			continue
		}
		lc := &limitConn{Conn: nc, scan: reqScanner{maxBulk: p.cfg.MaxBulk, unauth: !s.authed}, sess: s}
		s.scan = &lc.scan
		if !p.handoffs.push(lc) {
			nc.Close()
			s.end()
		}
	}
}

// newSession counts a new client and returns its session, or refuses it
// (nil) past MaxClients.
func (p *Proxy) newSession(nc net.Conn) *session {
	if p.clients.Add(1) > int64(p.cfg.MaxClients) {
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
	return &session{
		p:      p,
		id:     p.nextID.Add(1),
		authed: p.cfg.ClientPassword == "",
	}
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
	p.scripts.close()
	srv, ln, loops := p.srv, p.ln, p.loops
	for _, pl := range p.pools {
		pl.close()
	}
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, l := range loops {
		l.stop()
	}
	if srv != nil {
		return srv.Close()
	}
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
	if p.cfg.ReadFrom == ReadFromReplicas {
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
	for p.active.Load() > 0 {
		select {
		case <-ctx.Done():
			p.setPaused(false)
			return fmt.Errorf("pause: %d batches still in flight: %w", p.active.Load(), ctx.Err())
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
		pl = newPool(addr, max(p.cfg.PoolSize-p.cfg.EventLoops, 1), p.dialer, p.log, p.m, p.poolReady)
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
				p.log.Info("command table loaded", "server", addr, "commands", len(t.cmds))
				return
			}
			p.mu.Unlock()
			p.log.Warn("command table not loaded", "server", addr, "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, maxBackoff)
		}
	}()
}

// errNoMaster and errHeldFull are the replies to commands that could not be
// routed: during a failover that outlasted HoldTimeout, or with too many
// sessions already waiting.
const (
	errNoMaster = "TRYAGAIN redis-proxy: no master available (waited %s)"
	errHeldFull = "TRYAGAIN redis-proxy: too many clients waiting for a master"
)

// hold waits until the routes can serve commands or the deadline passes. It
// returns the routes, or "" and the error reply.
func (p *Proxy) hold(ctx context.Context, deadline time.Time, ok func(*routes) bool) (*routes, string) {
	r := p.routes.Load()
	if ok(r) {
		return r, ""
	}
	if p.held.Add(1) > int64(p.cfg.MaxHeld) {
		p.held.Add(-1)
		p.m.holdTimeouts.Inc()
		return nil, errHeldFull
	}
	p.m.held.Inc()
	defer func() {
		p.held.Add(-1)
		p.m.held.Dec()
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case <-r.changed:
		case <-timer.C:
			p.m.holdTimeouts.Inc()
			return nil, fmt.Sprintf(errNoMaster, p.cfg.HoldTimeout)
		case <-ctx.Done():
			return nil, fmt.Sprintf(errNoMaster, p.cfg.HoldTimeout)
		}
		r = p.routes.Load()
		if ok(r) {
			return r, ""
		}
	}
}

// chanListener is the listener redcon serves: the clients that get a
// goroutine each arrive on it.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn, 1024), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// push hands c to redcon; false if the listener is closed.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// accept binds a connection redcon accepted to the session that came with
// it (counted as a client when it first connected).
func (p *Proxy) accept(conn redcon.Conn) bool {
	lc, _ := conn.NetConn().(*limitConn)
	if lc == nil || lc.sess == nil {
		return false
	}
	s := lc.sess
	s.conn = conn
	s.lc = lc
	s.scan = &lc.scan
	conn.SetContext(s)
	return true
}

func (p *Proxy) closedConn(conn redcon.Conn, err error) {
	s, _ := conn.Context().(*session)
	if s == nil {
		return
	}
	if errors.Is(err, errLimit) {
		p.m.rejected.WithLabelValues("protocol_limit").Inc()
	}
	s.end()
}
