package vip

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Node runs one member of the VIP pair: the state machine (Step), its UDP
// transport and, with a VIP configured, the address and gratuitous ARP.
// Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	bootID uint64
	key    []byte
	open   func() (*deps, error) // production: openDeps; tests swap it

	running atomic.Bool
	role    atomic.Uint32 // Role, for IsMaster on hot paths

	notify chan struct{} // SetHealthy/SetPayload wake the loop (cap 1)

	mu         sync.Mutex
	wantHealth bool
	wantPay    Payload
	wantGen    uint64     // bumped by SetPayload
	members    Membership // main's, sent in every advert (SetMembership)
	snap       State      // the loop's state after the last Step
	peer       PeerInfo
	stats      Stats
	subs       map[int]chan Change
	nextSub    int
	pending    []Change // transitions of the batch being applied
	logLimit   map[string]*limitState

	// Owned by the Run goroutine.
	d          *deps
	st         State
	seq        uint64
	txbuf      []byte
	filter     sourceFilter
	rcv        *receiver
	rx         []datagram
	backlog    bool   // the last read filled its batch: more may be queued
	dropped    uint32 // the transport's drop counter when last read
	timer      *time.Timer
	loopCtx    context.Context
	wg         sync.WaitGroup
	garpCancel context.CancelFunc
	appliedGen uint64
}

// deps are the Node's ways out; tests pass fakes.
type deps struct {
	tr    transport
	owner addrOwner   // nil without a VIP
	ann   announcer   // nil without a VIP
	watch addrWatcher // may be nil
	close func()
}

// Change is a role transition, delivered to subscribers after its effects
// are applied: on a change to Master the VIP has been added (and the GARP
// burst started); on a change from Master to Backup or Fault, and from
// Releasing to Init, it has been removed. Master → Releasing (a graceful
// stop) keeps it until the peer claims it.
type Change struct {
	From, To Role
	Reason   string
	At       time.Time
}

// PeerInfo is what the latest accepted advert said. Only a master (or a node
// releasing the VIP) sends adverts, so a master normally hears nothing: its
// PeerInfo is from the last time the peer held or released the VIP.
type PeerInfo struct {
	Addr     netip.Addr
	Role     Role
	Priority uint8
	Healthy  bool
	Payload  Payload
	// Membership is the list of servers the peer advertised (version 0:
	// none, or a build that does not send one).
	Membership Membership
	HeardAt    time.Time
}

// Stats are the Node's counters and state, for export as metrics.
type Stats struct {
	Role     Role
	Healthy  bool
	Priority uint8
	// HoldsVIP is whether the VIP was on the interface at the last add,
	// remove or check.
	HoldsVIP bool
	// Payload is the replication decision this node advertises.
	Payload Payload

	Transitions    uint64
	TransitionsTo  map[Role]uint64
	LastTransition time.Time

	AdvertsSent      uint64
	AdvertSendErrors uint64
	// AdvertsReceived counts accepted adverts.
	AdvertsReceived uint64
	// Rejected counts dropped packets by reason; every Reason is present.
	// Packets from addresses other than the peers' count as
	// ReasonNotPeer, and are dropped before any decoding.
	Rejected map[Reason]uint64
	// RecvBuffer is the advert socket's receive buffer in bytes, as the
	// kernel reports it (twice what it lets the queue hold, for its
	// bookkeeping); 0 where unknown. See DefaultRecvBuffer.
	RecvBuffer int
	// RecvDropped counts datagrams the kernel discarded unread, nearly
	// always because the receive queue was full: a flood faster than the
	// node reads. Each loss defers a backup's takeover (TakeoverDeferrals).
	RecvDropped uint64
	// TakeoverDeferrals counts the times a backup moved its master-down
	// deadline out because the master's adverts may have been among
	// dropped datagrams (at most Params.LossHold after it last heard them).
	TakeoverDeferrals uint64

	GARPsSent  uint64
	GARPErrors uint64
	VIPAdds    uint64
	VIPRemoves uint64
	VIPErrors  uint64
	// VIPRepairs counts corrections by the reconcile loop: the VIP restored
	// on a master or removed from a non-master.
	VIPRepairs uint64
}

// New validates cfg (applying defaults), checks that the interface exists
// and, with a VIP, that the process has NET_ADMIN and NET_RAW. It opens
// nothing; Run does. A nil logger discards.
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	peers := cfg.Peers // as configured: a port only where one was named
	cfg = cfg.withDefaults()
	if cfg.VIP.IsValid() {
		if _, err := net.InterfaceByName(cfg.Interface); err != nil {
			return nil, fieldErr("Interface", "must name a network interface of this host, got %q: %v", cfg.Interface, err)
		}
		if err := CheckCapabilities(); err != nil {
			return nil, err
		}
	}
	if !cfg.Address.IsValid() {
		a, err := localAddrFor(cfg.Peers[0])
		if err != nil {
			return nil, fieldErr("Address", "not set and %v", err)
		}
		cfg.Address = a
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	n := newNode(cfg, logger)
	n.filter = newSourceFilter(peers)
	n.open = n.openDeps
	return n, nil
}

// newNode builds a Node from a defaulted, valid cfg without touching the
// system. Its peers all have ports by then, which the source filter
// requires; New relaxes that for the peers configured without one.
func newNode(cfg Config, logger *slog.Logger) *Node {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	n := &Node{
		cfg:        cfg,
		log:        logger,
		bootID:     binary.BigEndian.Uint64(b[:]),
		key:        cfg.Secret,
		notify:     make(chan struct{}, 1),
		wantHealth: true,
		subs:       make(map[int]chan Change),
		logLimit:   make(map[string]*limitState),
	}
	n.st = NewState(cfg.params())
	n.snap = n.st
	n.stats.Rejected = make(map[Reason]uint64)
	n.stats.TransitionsTo = make(map[Role]uint64)
	n.filter = newSourceFilter(cfg.Peers)
	n.rcv = newReceiver(n.key, cfg.Address, n.bootID, cfg.ReplayWindow)
	n.rx = newDatagrams(rxBatch, rxBufLen)
	return n
}

// openDeps opens the production transport and, with a VIP, the netlink
// owner and the ARP socket.
func (n *Node) openDeps() (*deps, error) {
	tr, err := listenUDP(netip.AddrPortFrom(n.cfg.Address, n.cfg.Port), n.cfg.Peers, DefaultRecvBuffer)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.stats.RecvBuffer = tr.RecvBuffer()
	n.mu.Unlock()
	d := &deps{tr: tr, close: func() {}}
	if !n.cfg.VIP.IsValid() {
		return d, nil
	}
	o, err := newNetlinkOwner(n.cfg.Interface)
	if err != nil {
		tr.Close()
		return nil, err
	}
	o.onErr = func(err error) {
		n.limited("watch", slog.LevelWarn, "vip: address updates unavailable; relying on the periodic check", "err", err)
	}
	g, err := newGARPSender(n.cfg.Interface)
	if err != nil {
		o.Close()
		tr.Close()
		return nil, err
	}
	d.owner, d.ann, d.watch = o, g, o
	d.close = func() { g.Close(); o.Close() }
	return d, nil
}

// Run runs the node until ctx is cancelled, then stops gracefully. A master
// hands the VIP over: it stops being master at once (IsMaster false, role
// Releasing) but keeps the address, sends a priority-0 advert every interval
// so the peer takes over after its skew time only, and removes the VIP when
// it hears the peer's advert as master, or after Config.HandoverTimeout.
// Run returns nil once the VIP is removed (any other role: at once), or an
// error if it could not start (socket, netlink). Run may be called once.
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("vip: Run called twice")
	}
	d, err := n.open()
	if err != nil {
		return fmt.Errorf("vip: start: %w", err)
	}
	n.d = d
	loopCtx, stopLoop := context.WithCancel(context.Background())
	n.loopCtx = loopCtx
	defer func() {
		stopLoop()
		n.stopGARP()
		d.tr.Close()
		n.wg.Wait()
		d.close()
	}()

	// The waiter tells the loop when datagrams are queued, then waits to
	// be re-armed until the loop has read the queue empty; the loop reads
	// (and authenticates) them itself, a batch per turn, so a flood shares
	// it fairly with the timers and never queues between two goroutines.
	ready, rearm := make(chan struct{}, 1), make(chan struct{}, 1)
	armed := true // the waiter is watching the socket, not waiting for rearm
	n.dropped = d.tr.Dropped()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.waitLoop(loopCtx, ready, rearm)
	}()
	addrChanged := make(chan struct{}, 1)
	if d.watch != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			d.watch.Watch(loopCtx, addrChanged)
		}()
	}
	reconcile := time.NewTicker(n.cfg.ReconcileInterval)
	defer reconcile.Stop()
	n.timer = time.NewTimer(time.Hour)
	n.timer.Stop()
	defer n.timer.Stop()

	n.mu.Lock()
	rcvbuf := n.stats.RecvBuffer
	n.mu.Unlock()
	n.log.Info("vip node starting", "address", n.cfg.Address, "port", n.cfg.Port, "peers", n.cfg.Peers,
		"vip", n.cfg.VIP, "interface", n.cfg.Interface, "priority", n.cfg.Priority, "interval", n.cfg.Interval,
		"preempt", !n.cfg.NoPreempt, "preempt_delay", n.cfg.PreemptDelay, "track", n.cfg.Track, "recv_buffer", rcvbuf)
	n.syncInputs()
	n.step(Start{})
	n.reconcile()
	stop := ctx.Done()
	for {
		var more <-chan struct{}
		if n.backlog {
			more = closedChan
		}
		select {
		case <-stop:
			stop = nil // a master keeps running (Releasing) until the peer claims
			n.step(Shutdown{})
		case <-n.timer.C:
			n.catchUp(time.Now())
			n.step(Tick{})
		case <-ready:
			armed = false
			n.readBatch()
		case <-more:
			n.readBatch()
		case <-n.notify:
			n.syncInputs()
		case <-reconcile.C:
			n.reconcile()
		case <-addrChanged:
			n.reconcile()
		}
		if !n.backlog && !armed {
			rearm <- struct{}{}
			armed = true
		}
		if n.st.Stopped {
			n.log.Info("vip node stopped")
			return nil
		}
	}
}

// closedChan is always ready to receive from.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// waitLoop signals ready whenever the transport has datagrams queued, then
// waits for rearm: the loop sends it once it has read the queue empty.
func (n *Node) waitLoop(ctx context.Context, ready chan<- struct{}, rearm <-chan struct{}) {
	for {
		if err := n.d.tr.Wait(); err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			n.limited("recv", slog.LevelWarn, "vip: receive advert", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		select {
		case ready <- struct{}{}:
		case <-ctx.Done():
			return
		}
		select {
		case <-rearm:
		case <-ctx.Done():
			return
		}
	}
}

// catchUp handles every datagram that arrived before t, so that no timer
// fires on an advert that had arrived but still sat in the queue behind a
// flood. It stops at the first datagram that arrived at t or later, at an
// empty queue, or after one Interval of reading: a full receive buffer
// takes milliseconds to read, so that means the datagrams only look older
// than t, the clock having been stepped back.
func (n *Node) catchUp(t time.Time) {
	budget := time.Now().Add(n.cfg.Interval)
	for {
		last, full := n.readBatch()
		if !full || !last.Before(t) {
			return
		}
		if time.Now().After(budget) {
			n.limited("catch-up", slog.LevelWarn, "vip: still reading adverts that arrived before the timer; acting on it", "behind", time.Since(last).Round(time.Millisecond))
			return
		}
	}
}

// readBatch reads one batch of queued datagrams and handles them: drops
// those not from a peer (before any decoding), authenticates the rest,
// steps with the accepted adverts and counts the rejected ones by reason,
// logging at most one of each reason per batch (rate-limited). It returns
// when the last datagram read had arrived (zero if none was read) and
// whether the batch was full, so that more may be queued.
func (n *Node) readBatch() (last time.Time, full bool) {
	k, err := n.d.tr.Read(n.rx)
	n.backlog = err == nil && k == len(n.rx)
	if err != nil {
		if !errors.Is(err, net.ErrClosed) {
			n.limited("recv", slog.LevelWarn, "vip: receive advert", "err", err)
		}
		return time.Time{}, false
	}
	now := time.Now()
	var counts [lastReason + 1]uint64 // by Reason
	for i := range n.rx[:k] {
		p := &n.rx[i]
		b := p.buf[:p.n]
		var r Reason
		var a Advert
		if !n.filter.admits(p.from) {
			r = ReasonNotPeer
		} else if a, err = n.rcv.accept(b, now); err != nil {
			r = ReasonOf(err)
		}
		if r == 0 {
			n.heard(a, now)
			continue
		}
		if counts[r]++; counts[r] == 1 {
			if ok, suppressed := n.allowLog(rejectKeys[r]); ok {
				var detail error = r
				if r != ReasonNotPeer {
					detail = n.rcv.explain(b, now)
				}
				args := []any{"from", p.from, "reason", r.String(), "err", detail}
				if suppressed > 0 {
					args = append(args, "suppressed", suppressed)
				}
				n.log.Warn("vip: advert rejected", args...)
			}
		}
	}
	n.mu.Lock()
	for r, c := range counts {
		if c > 0 {
			n.stats.Rejected[Reason(r)] += c
			n.suppress(rejectKeys[r], c-1) // all but the first were not logged
		}
	}
	n.mu.Unlock()
	n.checkDropped()
	if k == 0 {
		return time.Time{}, false
	}
	last = n.rx[k-1].at
	if last.IsZero() {
		last = now // no receive time: assume it just arrived
	}
	return last, n.backlog
}

// rejectKeys are the rate-limiting keys of the rejection log, by Reason.
var rejectKeys = func() (k [lastReason + 1]string) {
	for _, r := range Reasons {
		k[r] = "reject-" + r.String()
	}
	return k
}()

// heard steps with an accepted advert.
func (n *Node) heard(a Advert, now time.Time) {
	n.mu.Lock()
	n.stats.AdvertsReceived++
	n.peer = PeerInfo{Addr: a.Sender, Role: a.Role, Priority: a.Priority, Healthy: a.Healthy, Payload: a.Payload,
		Membership: a.Membership, HeardAt: now}
	n.mu.Unlock()
	n.step(a.event())
}

// checkDropped feeds datagrams the kernel discarded unread to the machine,
// which then defers a backup's takeover: the master's adverts may have been
// among them.
func (n *Node) checkDropped() {
	cur := n.d.tr.Dropped()
	lost := cur - n.dropped // modulo 2³², as the counter
	if lost == 0 {
		return
	}
	n.dropped = cur
	n.mu.Lock()
	n.stats.RecvDropped += uint64(lost)
	rcvbuf := n.stats.RecvBuffer
	n.mu.Unlock()
	n.limited("dropped", slog.LevelWarn, "vip: receive queue overflowed: adverts may have been lost (a flood faster than this node reads?)",
		"dropped", lost, "recv_buffer", rcvbuf, "role", n.st.Role.String())
	n.step(PacketsDropped{N: uint64(lost)})
}

// syncInputs feeds main's latest health and payload to the machine.
func (n *Node) syncInputs() {
	n.mu.Lock()
	healthy, pay, gen := n.wantHealth, n.wantPay, n.wantGen
	n.mu.Unlock()
	if healthy != n.st.Healthy {
		n.step(TrackingChanged{Healthy: healthy})
	}
	if gen != n.appliedGen {
		n.appliedGen = gen
		n.step(PayloadSet{Payload: pay})
	}
}

// step runs Step and applies its effects, feeding back failures. Role()
// and subscribers see a change once its whole batch is applied (a new master
// already holds the VIP), except that leaving master shows at once.
func (n *Node) step(ev Event) {
	for ev != nil {
		now := time.Now()
		var effs []Effect
		n.st, effs = Step(n.st, ev, now)
		n.mu.Lock()
		n.snap = n.st
		n.mu.Unlock()
		ev = n.apply(effs)
		if ev == nil {
			n.role.Store(uint32(n.st.Role))
		}
		n.mu.Lock()
		for _, c := range n.pending {
			for _, ch := range n.subs {
				deliver(ch, c)
			}
		}
		n.pending = n.pending[:0]
		n.mu.Unlock()
	}
}

// apply performs effects in order. If adding the VIP fails it abandons the
// rest and returns AddFailed for the machine.
func (n *Node) apply(effs []Effect) Event {
	for _, e := range effs {
		switch e := e.(type) {
		case SendAdvert:
			n.sendAdvert(e)
		case AddVIP:
			if err := n.addVIP(); err != nil {
				return AddFailed{Err: err}
			}
		case RemoveVIP:
			n.removeVIP()
		case SendGARP:
			n.startGARP(e.Count)
		case SetTimer:
			n.timer.Stop()
			if !e.At.IsZero() {
				n.timer.Reset(time.Until(e.At))
			}
		case Transition:
			n.transition(e)
		case PayloadAdopted:
			n.log.Info("inherited replication decision from peer", "peer", e.From, "epoch", e.Payload.Epoch, "master", e.Payload.Master)
		case TakeoverDeferred:
			n.mu.Lock()
			n.stats.TakeoverDeferrals++
			n.mu.Unlock()
			n.limited("deferred", slog.LevelWarn, "vip: takeover deferred: the master's adverts may have been dropped unread",
				"master", n.st.CurrentMaster, "master_down_in", time.Until(e.Until).Round(time.Millisecond))
		}
	}
	return nil
}

func (n *Node) sendAdvert(e SendAdvert) {
	n.seq++
	n.mu.Lock()
	members := n.members
	n.mu.Unlock()
	a := Advert{Priority: e.Priority, Healthy: e.Healthy, Role: e.Role, Interval: n.cfg.Interval, Sender: n.cfg.Address,
		BootID: n.bootID, Seq: n.seq, Time: time.Now(), Payload: e.Payload, Membership: members}
	b, err := a.AppendMarshal(n.txbuf[:0], n.key)
	if err != nil {
		n.log.Error("vip: encode advert", "err", err)
		return
	}
	n.txbuf = b
	err = n.d.tr.Send(b)
	n.mu.Lock()
	n.stats.AdvertsSent++
	if err != nil {
		n.stats.AdvertSendErrors++
	}
	n.mu.Unlock()
	if err != nil {
		n.limited("send", slog.LevelWarn, "vip: send advert", "err", err)
	}
}

func (n *Node) addVIP() error {
	if n.d.owner == nil {
		return nil
	}
	err := n.d.owner.Add(n.cfg.VIP)
	n.mu.Lock()
	if err != nil {
		n.stats.VIPErrors++
	} else {
		n.stats.VIPAdds++
		n.stats.HoldsVIP = true
	}
	n.mu.Unlock()
	if err != nil {
		n.log.Error("vip: cannot add address; entering fault", "vip", n.cfg.VIP, "err", err)
	}
	return err
}

func (n *Node) removeVIP() {
	if n.d.owner == nil {
		return
	}
	err := n.d.owner.Del(n.cfg.VIP)
	n.mu.Lock()
	if err != nil {
		n.stats.VIPErrors++
	} else {
		n.stats.VIPRemoves++
		n.stats.HoldsVIP = false
	}
	n.mu.Unlock()
	if err != nil {
		n.log.Error("vip: cannot remove address", "vip", n.cfg.VIP, "err", err)
	}
}

// reconcile makes the interface agree with the role: the VIP is present
// exactly while master. While Releasing it leaves the address as it is: the
// handover neither restores nor re-announces it.
func (n *Node) reconcile() {
	if n.d.owner == nil {
		return
	}
	addrs, err := n.d.owner.List()
	if err != nil {
		n.mu.Lock()
		n.stats.VIPErrors++
		n.mu.Unlock()
		n.limited("list", slog.LevelWarn, "vip: check address", "err", err)
		return
	}
	present := hasAddr(addrs, n.cfg.VIP)
	n.mu.Lock()
	n.stats.HoldsVIP = present
	n.mu.Unlock()
	if n.st.Role == Releasing {
		return
	}
	switch master := n.st.Role == Master; {
	case master && !present:
		n.log.Warn("vip missing on master; restoring", "vip", n.cfg.VIP, "interface", n.cfg.Interface)
		n.countRepair()
		if err := n.addVIP(); err != nil {
			n.step(AddFailed{Err: err})
			return
		}
		n.startGARP(n.cfg.GARPCount)
	case !master && present:
		n.log.Warn("vip present but not master; removing", "vip", n.cfg.VIP, "interface", n.cfg.Interface, "role", n.st.Role)
		n.countRepair()
		n.removeVIP()
	}
}

func (n *Node) countRepair() {
	n.mu.Lock()
	n.stats.VIPRepairs++
	n.mu.Unlock()
}

// startGARP sends a burst of count gratuitous ARPs in the background,
// replacing any burst in progress.
func (n *Node) startGARP(count int) {
	if n.d.ann == nil || count <= 0 {
		return
	}
	n.stopGARP()
	ctx, cancel := context.WithCancel(n.loopCtx)
	n.garpCancel = cancel
	ip, spacing := n.cfg.VIP.Addr(), n.cfg.GARPSpacing
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for i := 0; i < count; i++ {
			if i > 0 {
				t := time.NewTimer(spacing)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			err := n.d.ann.Announce(ip)
			n.mu.Lock()
			if err != nil {
				n.stats.GARPErrors++
			} else {
				n.stats.GARPsSent++
			}
			n.mu.Unlock()
			if err != nil {
				n.limited("garp", slog.LevelWarn, "vip: gratuitous arp", "err", err)
			}
		}
	}()
}

func (n *Node) stopGARP() {
	if n.garpCancel != nil {
		n.garpCancel()
		n.garpCancel = nil
	}
}

func (n *Node) transition(t Transition) {
	now := time.Now()
	if t.From == Master {
		n.role.Store(uint32(t.To)) // stop acting as master before the VIP goes
		n.stopGARP()
	}
	n.mu.Lock()
	n.stats.Transitions++
	n.stats.TransitionsTo[t.To]++
	n.stats.LastTransition = now
	n.pending = append(n.pending, Change{From: t.From, To: t.To, Reason: t.Reason, At: now})
	n.mu.Unlock()
	attrs := []any{"from", t.From.String(), "to", t.To.String(), "reason", t.Reason, "priority", n.cfg.Priority}
	if n.cfg.VIP.IsValid() {
		attrs = append(attrs, "vip", n.cfg.VIP.String())
	}
	switch {
	case t.To == Master:
		n.log.Info("vip claimed", append(attrs, "epoch", n.st.Payload.Epoch, "master", n.st.Payload.Master)...)
	case t.To == Releasing:
		n.log.Info("vip handover: waiting for the peer to claim", append(attrs, "timeout", n.st.HandoverTimeout)...)
	case t.From == Master, t.From == Releasing:
		n.log.Info("vip released", attrs...)
	case t.To == Backup:
		n.log.Info("became backup", attrs...)
	case t.To == Fault:
		n.log.Warn("entered fault", attrs...)
	}
}

// deliver sends without blocking; a full channel loses its oldest change.
func deliver(ch chan Change, c Change) {
	for {
		select {
		case ch <- c:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// Subscribe returns a channel of role changes and a function that ends the
// subscription. Changes arrive in order; a subscriber more than 16 behind
// loses the oldest ones, so treat Role as the truth and the channel as a
// wake-up.
func (n *Node) Subscribe() (<-chan Change, func()) {
	ch := make(chan Change, 16)
	n.mu.Lock()
	id := n.nextSub
	n.nextSub++
	n.subs[id] = ch
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		delete(n.subs, id)
		n.mu.Unlock()
	}
}

// SetHealthy reports whether this node can reach a Redis server. An
// unhealthy node ranks below healthy ones (TrackDemote) or enters FAULT
// (TrackFault). A Node starts healthy. It never blocks.
func (n *Node) SetHealthy(ok bool) {
	n.mu.Lock()
	n.wantHealth = ok
	n.mu.Unlock()
	n.poke()
}

// SetPayload sets the replication decision carried in adverts. A master
// advertises it at once. An epoch lower than the one held (set earlier or
// inherited from a peer) is ignored. It never blocks.
func (n *Node) SetPayload(epoch uint64, master string) error {
	if len(master) > maxMasterLen {
		return fmt.Errorf("vip: set payload: master %d bytes, at most %d", len(master), maxMasterLen)
	}
	n.mu.Lock()
	n.wantPay = Payload{Epoch: epoch, Master: master}
	n.wantGen++
	n.mu.Unlock()
	n.poke()
	return nil
}

// SetMembership sets the list of servers every later advert carries (see
// Membership; the package does not interpret it). Adverts go out at the
// usual Interval: a master's next one carries it. It never blocks.
func (n *Node) SetMembership(m Membership) error {
	if err := m.Check(); err != nil {
		return fmt.Errorf("vip: set %w", err)
	}
	m.Servers = slices.Clone(m.Servers)
	n.mu.Lock()
	n.members = m
	n.mu.Unlock()
	return nil
}

func (n *Node) poke() {
	select {
	case n.notify <- struct{}{}:
	default:
	}
}

// Role returns the current role.
func (n *Node) Role() Role { return Role(n.role.Load()) }

// IsMaster reports whether this node is master. It turns true only once the
// VIP has been added, and false as soon as the node decides to step down,
// before the VIP is removed, so main never acts as master without the VIP.
func (n *Node) IsMaster() bool { return n.Role() == Master }

// Payload returns the replication decision this node holds and advertises:
// the newer of what SetPayload set and what a peer advertised.
func (n *Node) Payload() Payload {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.snap.Payload
}

// Peer returns the latest accepted advert's content, and false if none was
// heard yet.
func (n *Node) Peer() (PeerInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peer
	p.Membership.Servers = slices.Clone(p.Membership.Servers)
	return p, p.Addr.IsValid()
}

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stats
	s.Role = n.snap.Role
	s.Healthy = n.snap.Healthy
	s.Priority = n.cfg.Priority
	s.Payload = n.snap.Payload
	s.TransitionsTo = make(map[Role]uint64, 5)
	for _, r := range []Role{Init, Backup, Master, Fault, Releasing} {
		s.TransitionsTo[r] = n.stats.TransitionsTo[r]
	}
	s.Rejected = make(map[Reason]uint64, len(Reasons))
	for _, r := range Reasons {
		s.Rejected[r] = n.stats.Rejected[r]
	}
	return s
}

// limitState rate-limits a repeating log line.
type limitState struct {
	last       time.Time
	suppressed int
}

// limited logs the first occurrence of key, then at most one line every 10s
// saying how many were suppressed.
func (n *Node) limited(key string, level slog.Level, msg string, args ...any) {
	ok, suppressed := n.allowLog(key)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	n.log.Log(context.Background(), level, msg, args...)
}

// allowLog reports whether a line for key may be logged now (see limited),
// and how many were suppressed since the last one.
func (n *Node) allowLog(key string) (bool, int) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.limitFor(key)
	if !l.last.IsZero() && now.Sub(l.last) < 10*time.Second {
		l.suppressed++
		return false, 0
	}
	suppressed := l.suppressed
	l.last, l.suppressed = now, 0
	return true, suppressed
}

// suppress counts k more occurrences of key that were not offered to
// allowLog. n.mu must be held.
func (n *Node) suppress(key string, k uint64) {
	if k > 0 {
		n.limitFor(key).suppressed += int(k)
	}
}

// limitFor returns key's limiter state. n.mu must be held.
func (n *Node) limitFor(key string) *limitState {
	l := n.logLimit[key]
	if l == nil {
		l = &limitState{}
		n.logLimit[key] = l
	}
	return l
}
