package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrSwitchoverRefused is returned (wrapped, with the reason) when a
// switchover is not started: no authority, no master, a target that is not
// a linked replica, a failover in progress.
var ErrSwitchoverRefused = errors.New("switchover refused")

// Manager watches the configured servers, decides which one is master and,
// when it has authority, makes the servers follow that decision. Its
// methods are safe for concurrent use; Run must be called once.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	onChange func(Topology)
	timeout  time.Duration
	dial     func(addr string) node // a new node per call; the caller closes it

	authority atomic.Bool
	inherited atomic.Uint64 // highest epoch heard from a peer proxy
	running   atomic.Bool
	done      chan struct{} // closed when Run returns
	wake      chan struct{}
	switches  chan switchRequest
	members   chan serversRequest

	// carry holds action results the last step had no round left to feed
	// back; the next step starts with them. Only Run's goroutine uses it,
	// and hist.
	carry []Observation
	hist  history
	// refused is why the last step refused a change of servers ("" if it
	// did not). Only Run's goroutine uses it.
	refused string

	mu     sync.Mutex
	topo   Topology
	status Status
}

// maxRounds bounds how many times one step feeds action results back into
// Decide; a failover needs three.
const maxRounds = 8

// NewManager checks cfg (see Validate) and returns a manager. onChange, if
// not nil, is called from the manager's goroutine (never concurrently with
// itself) each time the routing Topology changes; it should return
// promptly.
func NewManager(cfg Config, onChange func(Topology)) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger,
		onChange: onChange,
		timeout:  checkTimeout(cfg.CheckInterval, cfg.DownAfter),
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		switches: make(chan switchRequest),
		members:  make(chan serversRequest),
	}
	m.dial = func(addr string) node {
		n := newRedisNode(addr, cfg.Username, cfg.Password, m.timeout)
		n.tls = cfg.TLS
		return n
	}
	m.authority.Store(cfg.Authority)
	m.status = statusOf(NewState(cfg.Servers, cfg.DownAfter, cfg.CheckInterval, cfg.Authority), time.Time{})
	return m, nil
}

// Topology returns the routing view last published.
func (m *Manager) Topology() Topology {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.topo
	t.Replicas = slices.Clone(t.Replicas)
	return t
}

// Status returns a snapshot for operators.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Replicas = slices.Clone(s.Replicas)
	s.Servers = slices.Clone(s.Servers)
	if s.LastFailover != nil {
		f := *s.LastFailover
		s.LastFailover = &f
	}
	return s
}

// SetAuthority grants or withdraws the right to change servers. Without it
// the manager keeps observing and publishing. It takes effect at the next
// decision, within a check interval.
func (m *Manager) SetAuthority(on bool) {
	if m.authority.Swap(on) != on {
		m.log.Info("authority changed", "authority", on)
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// Run checks every server each CheckInterval, decides, and applies the
// decisions, until ctx is done; then it returns nil. It returns an error
// at once if called twice.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("replication: Manager.Run called twice")
	}
	defer close(m.done)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	obs := make(chan Observation, 64)
	probes := map[string]context.CancelFunc{}
	follow := func(st State) { // one prober per server in the state, configured or discovered
		for addr := range st.Nodes {
			if _, ok := probes[addr]; !ok {
				pctx, stop := context.WithCancel(ctx)
				probes[addr] = stop
				wg.Add(1)
				go func() {
					defer wg.Done()
					m.probe(pctx, addr, obs)
				}()
			}
		}
		for addr, stop := range probes {
			if _, ok := st.Nodes[addr]; !ok {
				stop()
				delete(probes, addr)
			}
		}
	}

	m.log.Info("replication manager started", "servers", m.cfg.Servers, "authority", m.authority.Load(),
		"check_interval", m.cfg.CheckInterval, "down_after", m.cfg.DownAfter, "max_replica_lag", m.cfg.MaxReplicaLag, "write_acks", m.cfg.WriteAcks)
	st0 := NewState(m.cfg.Servers, m.cfg.DownAfter, m.cfg.CheckInterval, m.authority.Load())
	st0.BusyGrace = m.cfg.BusyGrace
	st0.JoinMaxLag = m.cfg.JoinMaxLag
	st0.MaxReplicaLag = m.cfg.MaxReplicaLag
	st0.WriteAcks, st0.PromotionWait = m.cfg.WriteAcks, m.cfg.PromotionWait
	st := m.step(ctx, st0, nil, nil)
	follow(st)
	tick := time.NewTicker(m.cfg.CheckInterval / 2)
	defer tick.Stop()
	for {
		var batch []Observation
		var req *switchRequest
		select {
		case <-ctx.Done():
			return nil
		case o := <-obs:
			batch = append(batch, o)
		drain:
			for {
				select {
				case o := <-obs:
					batch = append(batch, o)
				default:
					break drain
				}
			}
		case <-tick.C:
		case <-m.wake:
		case r := <-m.switches:
			req = &r
		case r := <-m.members:
			st = m.changeServers(ctx, st, r)
			follow(st)
			continue
		}
		st = m.step(ctx, st, batch, req)
		follow(st)
	}
}

// probe checks one server every CheckInterval over its own control
// connection, until ctx is done. A check that hangs (SIGSTOP) is cut off by
// the check timeout and reported as a failure.
func (m *Manager) probe(ctx context.Context, addr string, out chan<- Observation) {
	n := m.dial(addr)
	defer n.Close()
	t := time.NewTicker(m.cfg.CheckInterval)
	defer t.Stop()
	for {
		o := m.check(ctx, n, addr)
		if o.Err != "" {
			m.log.Debug("check failed", "addr", addr, "err", o.Err)
		}
		select {
		case out <- o:
		case <-ctx.Done():
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (m *Manager) check(ctx context.Context, n node, addr string) Observation {
	o := Observation{Kind: ObsCheck, Addr: addr, At: time.Now()}
	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	in, err := n.Check(cctx)
	if err != nil {
		o.Err, o.Reply, o.Silent = classify(fmt.Errorf("check %s: %w", addr, err))
		if o.Silent && m.cfg.Busy != nil {
			if since, ok := m.cfg.Busy.Busy(addr); ok && since.Before(o.At) {
				o.BusySince = since
			}
		}
		return o
	}
	o.Info = in
	return o
}

type switchRequest struct {
	target string
	reply  chan switchReply // buffered: the loop never blocks on it
}

type switchReply struct {
	res Result
	err error
}

// Result describes a completed switchover.
type Result struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"`
	// Offset is the old master's replication offset once writes were
	// paused; the new master had every byte up to it before promotion.
	Offset int64 `json:"offset"`
	// Held is how long writes were held, from the publication of "no
	// master" to the publication of the new master.
	Held time.Duration `json:"held_ns"`
}

// InheritEpoch records an epoch the peer proxy advertised; the next
// decision continues from it if it is higher than this manager's own.
func (m *Manager) InheritEpoch(epoch uint64) {
	for {
		cur := m.inherited.Load()
		if epoch <= cur || m.inherited.CompareAndSwap(cur, epoch) {
			return
		}
	}
}

// Switchover makes target, a replica of the master with its link up, the
// new master without losing acknowledged writes: it publishes a topology
// with no master (the proxy holds new commands), calls Config.Pauser if
// set, pauses writes on the old master (CLIENT PAUSE WRITE), waits until
// target has the master's whole stream, promotes it, makes the old master
// its replica, publishes the new topology and resumes. Writes that were
// waiting inside the old master's pause are refused with READONLY, never
// acknowledged. Needs authority. ctx bounds the wait for the manager to
// take the request; Config.SwitchoverTimeout bounds the switch itself.
func (m *Manager) Switchover(ctx context.Context, target string) (Result, error) {
	if !m.running.Load() {
		return Result{}, fmt.Errorf("switchover to %s: manager is not running", target)
	}
	req := switchRequest{target: target, reply: make(chan switchReply, 1)}
	select {
	case m.switches <- req:
	case <-m.done:
		return Result{}, fmt.Errorf("switchover to %s: manager has stopped", target)
	case <-ctx.Done():
		return Result{}, fmt.Errorf("switchover to %s: %w", target, ctx.Err())
	}
	r := <-req.reply
	return r.res, r.err
}

// run holds what happened during one step that the caller of Switchover
// must hear about.
type switchRun struct {
	err     error
	handled bool
	from    string
	offset  int64
	held    time.Time
	resume  func()
}

// step runs one decision: Decide on the observations, apply the actions,
// feed their results back, until there is nothing more to do.
func (m *Manager) step(ctx context.Context, st State, obs []Observation, req *switchRequest) State {
	st.Authority = m.authority.Load()
	if e := m.inherited.Load(); e > st.Epoch {
		// A peer proxy made promotions this process has not seen (it was
		// down or standby): continue its count, so the epoch stays a
		// fencing number across the pair.
		st.Epoch = e
	}
	if req != nil {
		if req.target == "" {
			req.target = SwitchTarget(st)
		}
		obs = append(obs, Observation{Kind: ObsSwitchover, Addr: req.target, At: time.Now()})
	}
	var sw switchRun
	obs, m.carry = append(m.carry, obs...), nil
	st, acts := Decide(st, obs, time.Now())
	for round := 0; ; round++ {
		fb := m.apply(ctx, st, acts, &sw)
		if len(fb) == 0 {
			break
		}
		if round == maxRounds {
			m.carry = fb
			break
		}
		st, acts = Decide(st, fb, time.Now())
	}
	if sw.resume != nil {
		sw.resume()
	}
	if req != nil {
		req.reply <- m.switchOutcome(st, req.target, sw)
	}
	m.mu.Lock()
	m.status = statusOf(st, time.Now())
	m.mu.Unlock()
	return st
}

func (m *Manager) switchOutcome(st State, target string, sw switchRun) switchReply {
	switch {
	case sw.err != nil:
		return switchReply{err: fmt.Errorf("switchover to %s: %w", target, sw.err)}
	case !sw.handled:
		return switchReply{err: fmt.Errorf("switchover to %s: %w: not taken up", target, ErrSwitchoverRefused)}
	case st.Master != target:
		return switchReply{err: fmt.Errorf("switchover to %s: %s is not master after it", target, target)}
	}
	// The switchover's event (and log line) came with the new master.
	return switchReply{res: Result{From: sw.from, To: target, Epoch: st.Epoch, Offset: sw.offset, Held: time.Since(sw.held)}}
}

// apply carries out actions, which Decide returned with st, in order and
// returns the observations they produced: each action's result, then a
// fresh check of the server. Events, promotions and REPLICAOF are noted
// (logged, and given to Config.OnEvent) before they are carried out.
func (m *Manager) apply(ctx context.Context, st State, acts []Action, sw *switchRun) []Observation {
	var fb []Observation
	for _, a := range acts {
		m.note(st, a)
		switch a.Kind {
		case ActPublish:
			m.publish(a.Topology)
		case ActPromote:
			fb = append(fb, m.act(ctx, a, func(ctx context.Context, n node) error { return n.Promote(ctx) })...)
		case ActReplicaOf:
			fb = append(fb, m.act(ctx, a, func(ctx context.Context, n node) error { return n.ReplicaOf(ctx, a.Master) })...)
		case ActSwitchover:
			sw.handled = true
			fb = append(fb, m.runSwitchover(ctx, a.From, a.Addr, sw)...)
		case ActReject:
			sw.handled = true
			sw.err = fmt.Errorf("%w: %s", ErrSwitchoverRefused, a.Detail)
		case ActServers:
			m.log.Info("servers changed", "servers", a.Servers, "change", a.Detail)
		case ActServersRefused:
			m.refused = a.Detail
			m.log.Warn("change of servers refused", "reason", a.Detail)
		}
	}
	return fb
}

func (m *Manager) act(ctx context.Context, a Action, f func(context.Context, node) error) []Observation {
	n := m.dial(a.Addr)
	defer n.Close()
	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	err := f(cctx, n)
	cancel()
	res := Observation{Kind: ObsResult, Addr: a.Addr, Action: a.Kind, At: time.Now()}
	if err != nil {
		res.Err = err.Error()
		m.log.Warn("action failed", "action", a.String(), "err", err)
		return []Observation{res}
	}
	return []Observation{res, m.check(ctx, n, a.Addr)}
}

func (m *Manager) publish(t Topology) {
	m.mu.Lock()
	m.topo = t
	m.mu.Unlock()
	m.log.Info("topology published", "epoch", t.Epoch, "master", t.Master, "replicas", t.Replicas)
	if m.onChange != nil {
		m.onChange(Topology{Epoch: t.Epoch, Master: t.Master, Replicas: slices.Clone(t.Replicas)})
	}
}

// note logs the event of action a, decided with st, if it is one, and
// hands it to Config.OnEvent: one log line per event.
func (m *Manager) note(st State, a Action) {
	n, ok := m.hist.note(st, a, time.Now())
	if !ok {
		return
	}
	m.log.Log(context.Background(), n.ev.Level, n.msg, n.attrs...)
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(n.ev)
	}
}

// runSwitchover carries out ActSwitchover and reports its outcome and fresh
// checks of both servers.
func (m *Manager) runSwitchover(ctx context.Context, from, to string, sw *switchRun) []Observation {
	m.log.Info("switchover: writes held", "from", from, "to", to)
	sw.from, sw.held = from, time.Now()
	sctx, cancel := context.WithTimeout(ctx, m.cfg.SwitchoverTimeout)
	promoted, err := m.switchover(sctx, from, to, sw)
	cancel()
	res := Observation{Kind: ObsSwitchoverResult, Addr: to, At: time.Now(), Promoted: promoted}
	if err != nil {
		res.Err = err.Error()
		sw.err = err
		m.log.Warn("switchover failed", "from", from, "to", to, "promoted", promoted, "err", err)
	}
	fb := []Observation{res}
	for _, addr := range []string{from, to} {
		n := m.dial(addr)
		fb = append(fb, m.check(ctx, n, addr))
		n.Close()
	}
	return fb
}

func (m *Manager) switchover(ctx context.Context, from, to string, sw *switchRun) (promoted bool, err error) {
	if p := m.cfg.Pauser; p != nil {
		if err := p.Pause(ctx); err != nil {
			return false, fmt.Errorf("pause clients: %w", err)
		}
		sw.resume = p.Resume
	}
	old, nw := m.dial(from), m.dial(to)
	defer old.Close()
	defer nw.Close()

	// Stop writes at the source too, so that clients that bypass the proxy
	// cannot write after the offset is read.
	if err := old.PauseWrites(ctx, m.cfg.SwitchoverTimeout); err != nil {
		return false, fmt.Errorf("pause writes on %s: %w", from, err)
	}
	unpause := true
	defer func() {
		if !unpause {
			return // left paused: CLIENT PAUSE expires by itself
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.timeout)
		defer cancel()
		if err := old.Unpause(uctx); err != nil {
			m.log.Warn("switchover: unpause old master", "addr", from, "err", err)
		}
	}()

	oi, err := old.Check(ctx)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", from, err)
	}
	if oi.Role != RoleMaster {
		return false, fmt.Errorf("%s is no longer master", from)
	}
	sw.offset = oi.Offset
	for {
		ni, err := nw.Check(ctx)
		if err != nil {
			return false, fmt.Errorf("check %s: %w", to, err)
		}
		if ni.Role != RoleReplica {
			return false, fmt.Errorf("%s is no longer a replica", to)
		}
		if ni.Offset >= oi.Offset {
			break
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("wait for %s to reach offset %d (at %d): %w", to, oi.Offset, ni.Offset, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := nw.Promote(ctx); err != nil {
		// The command may have run although its reply was lost.
		if ni, cerr := nw.Check(ctx); cerr != nil || ni.Role != RoleMaster {
			return false, fmt.Errorf("promote %s: %w", to, err)
		}
	}
	if err := old.ReplicaOf(ctx, to); err != nil {
		// Keep the old master paused: the next decision demotes it.
		unpause = false
		m.log.Warn("switchover: demote old master", "addr", from, "err", err)
	}
	return true, nil
}
