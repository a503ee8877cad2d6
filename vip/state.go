package vip

import (
	"fmt"
	"net/netip"
	"time"
)

// Role is where a node stands in the election.
type Role uint8

const (
	// Init: not started yet, or stopped. Holds nothing, sends nothing.
	Init Role = iota
	// Backup: listens for the master's adverts and takes over when they stop.
	Backup
	// Master: holds the VIP and advertises every interval.
	Master
	// Fault: may not hold the VIP (unhealthy with TrackFault, or the address
	// could not be added). Sends nothing; returns to Backup when it clears.
	Fault
	// Releasing: a master stopping gracefully. It has given up mastership
	// (IsMaster is false) but keeps the VIP, and sends priority-0 adverts
	// every interval, until it hears the peer claim master or the handover
	// timeout passes; then it removes the VIP and stops (Init). Never sent
	// on the wire: its adverts say Init, as before this role existed.
	Releasing
)

func (r Role) String() string {
	switch r {
	case Init:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	case Releasing:
		return "RELEASING"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// TrackMode says what a node does while main reports it unhealthy (it cannot
// reach any Redis server).
type TrackMode uint8

const (
	// TrackDemote (the default): the node keeps running the election but
	// advertises itself as unhealthy, which ranks it below every healthy node
	// whatever the priorities. A healthy backup takes the VIP from an unhealthy
	// master at once, even with NoPreempt and regardless of PreemptDelay; when
	// no healthy node exists the VIP still has a holder.
	TrackDemote TrackMode = iota
	// TrackFault: the node enters Fault, releasing the VIP (with a priority-0
	// advert, so the peer takes over after its skew time) and staying out of
	// the election until it is healthy again. If both nodes are unhealthy,
	// nobody holds the VIP.
	TrackFault
)

func (m TrackMode) String() string {
	switch m {
	case TrackDemote:
		return "demote"
	case TrackFault:
		return "fault"
	}
	return fmt.Sprintf("TrackMode(%d)", uint8(m))
}

// Payload is main's opaque replication decision, carried in every advert so
// that a node taking over inherits it. Epochs only move forward: a payload
// with a lower epoch than the one held is ignored.
type Payload struct {
	// Epoch is the replication epoch (a fencing number).
	Epoch uint64
	// Master is the host:port of the Redis master, or "" when unknown.
	Master string
}

// Params are the fixed inputs of the state machine.
type Params struct {
	// Self is this node's address; it breaks priority ties (higher wins).
	Self netip.Addr
	// Priority is 1–254; higher wins.
	Priority uint8
	// Interval between adverts while Master.
	Interval time.Duration
	// Preempt: a backup that outranks the current master takes over.
	Preempt bool
	// PreemptDelay: how long a backup must keep seeing a master it outranks
	// before it takes over. Zero: at the first such advert.
	PreemptDelay time.Duration
	// Track is what an unhealthy node does.
	Track TrackMode
	// GARPCount is how many gratuitous ARPs to send on claiming the VIP
	// (and on re-announcing it against a rival, see State.RivalAt).
	GARPCount int
	// GARPSpacing is the gap between the ARPs of a burst; with GARPCount it
	// says how long a burst lasts.
	GARPSpacing time.Duration
	// GARPRefresh is the period of a single refreshing GARP while Master;
	// zero disables it.
	GARPRefresh time.Duration
	// FaultHold is how long a node stays in Fault after it failed to add the
	// VIP, before it may run for master again.
	FaultHold time.Duration
	// HandoverTimeout bounds Releasing: how long a master that is shutting
	// down keeps the VIP while it waits for the peer to claim it. Zero: it
	// removes the VIP at Shutdown (nobody holds it until the peer claims).
	HandoverTimeout time.Duration
	// LossHold bounds how long a backup whose receive queue overflows
	// (PacketsDropped) puts off its takeover: until at most LossHold after
	// it last heard its master (or became backup). Zero: dropped datagrams
	// never defer a takeover. See DefaultLossHold.
	LossHold time.Duration
}

// DefaultLossHold is the LossHold a Node uses: ten master-down intervals
// (≈7.2s at priority 100 and a 200ms interval). A flood that lets none of
// the master's adverts through for that long cannot be told from a dead
// master or a partition, and the backup takes over; one that lets one
// through now and then never moves the VIP.
func DefaultLossHold(priority uint8, interval time.Duration) time.Duration {
	return 10 * MasterDownInterval(priority, interval)
}

// State is the state machine's whole state. It is a plain value: Step returns
// a new one and never modifies its argument.
type State struct {
	Params

	Role    Role
	Healthy bool
	// Stopped is set when the node reaches Init after Shutdown (at once, or
	// when Releasing ends); every later event is ignored.
	Stopped bool
	// Payload is the replication decision this node advertises: the latest
	// of what main set and what it heard (higher epoch wins).
	Payload Payload

	// CurrentMaster is the master this backup last heard (invalid if none);
	// Self while Master.
	CurrentMaster netip.Addr
	// MasterInterval is the advert interval the current master announced; it
	// drives the master-down interval, as in VRRP.
	MasterInterval time.Duration

	MasterDownAt time.Time // Backup: take over at this time
	PreemptAt    time.Time // Backup: pending preemption fires at this time
	AdvertAt     time.Time // Master, Releasing: next periodic advert
	GARPAt       time.Time // Master: next refreshing GARP
	FaultUntil   time.Time // Fault: held after an address failure until then
	ReleaseAt    time.Time // Releasing: give up on the peer, remove the VIP
	// YieldUntil: a master that stepped down to a winner repeats its
	// priority-0 release (at AdvertAt) until then. A healing partition may
	// open one direction before the other; a single release sent into the
	// still-closed one is lost, and the winner would not re-announce the VIP
	// that our GARPs drew to our MAC.
	YieldUntil time.Time
	// ReleasedAt is when this master last heard a priority-0 advert; the
	// repeats of one release (within yieldRepeats+1 intervals) do not
	// re-announce again.
	ReleasedAt time.Time
	// GARPUntil is when the last GARP of the burst this master started most
	// recently goes out (a later burst or refresh replaces it).
	GARPUntil time.Time
	// RivalAt is when this master last heard a lower-ranked node claim
	// master (zero: no contest, or the rival released). A split brain
	// leaves neighbours following whichever GARP came last, possibly the
	// rival's, so a master re-sends its GARP burst when a contest starts
	// (a rival's master advert after at least MasterDownInterval without
	// one) and when a rival releases (a priority-0 advert) unless its own
	// burst is still in progress, i.e. will end after the rival's last GARP.
	// So a rival advertising every interval (a one-way partition) costs one
	// burst, not one per advert.
	RivalAt time.Time
	// LossHoldUntil (Backup) is the latest time to which dropped datagrams
	// may defer the takeover (see Params.LossHold); zero after the master
	// released the VIP, whose adverts there is then no reason to expect.
	LossHoldUntil time.Time
	// TimerAt is the earliest pending deadline (zero: none), last announced
	// with SetTimer.
	TimerAt time.Time
}

// NewState returns the state of a node that has not started: Init, healthy.
func NewState(p Params) State {
	return State{Params: p, Role: Init, Healthy: true, MasterInterval: p.Interval}
}

// SkewTime is VRRP's Skew_Time (RFC 5798 §6.1): a backup with a higher
// priority waits less before it takes over.
func SkewTime(priority uint8, interval time.Duration) time.Duration {
	return time.Duration(256-int(priority)) * interval / 256
}

// MasterDownInterval is VRRP's Master_Down_Interval: 3 × interval + skew.
func MasterDownInterval(priority uint8, interval time.Duration) time.Duration {
	return 3*interval + SkewTime(priority, interval)
}

// Event is an input to Step.
type Event interface{ isEvent() }

// Start begins the election: Init → Backup (or Fault).
type Start struct{}

// Tick reports that time has passed; the loop sends it when the SetTimer
// deadline is reached (an early Tick is harmless).
type Tick struct{}

// AdvertReceived is an authenticated, fresh advert from a peer (the loop
// drops forged, stale and replayed ones before Step).
type AdvertReceived struct {
	From     netip.Addr
	Priority uint8 // 0: the sender is releasing the VIP
	Healthy  bool
	Role     Role
	Interval time.Duration
	Payload  Payload
}

// TrackingChanged reports main's view of this node's health.
type TrackingChanged struct{ Healthy bool }

// PayloadSet is a new replication decision from main.
type PayloadSet struct{ Payload Payload }

// AddFailed reports that adding the VIP failed (after AddVIP).
type AddFailed struct{ Err error }

// PacketsDropped reports that the receive queue overflowed: N datagrams
// were discarded unread (a flood faster than the node reads), and the
// master's adverts may have been among them. A backup then treats its
// master as heard now, for at most Params.LossHold after it really was.
type PacketsDropped struct{ N uint64 }

// Shutdown stops the node gracefully. A master hands the VIP over: it turns
// Releasing, sends a priority-0 advert (so the peer takes over after its skew
// time only) and keeps the VIP until the peer's advert claims master, or
// HandoverTimeout passes; then it removes the VIP and stops. Any other role
// stops at once.
type Shutdown struct{}

func (Start) isEvent()           {}
func (Tick) isEvent()            {}
func (AdvertReceived) isEvent()  {}
func (TrackingChanged) isEvent() {}
func (PayloadSet) isEvent()      {}
func (AddFailed) isEvent()       {}
func (PacketsDropped) isEvent()  {}
func (Shutdown) isEvent()        {}

// Effect is an action Step asks the loop to apply, in order.
type Effect interface {
	isEffect()
	String() string
}

// SendAdvert: send an advert to every peer.
type SendAdvert struct {
	Priority uint8 // 0 announces a release
	Healthy  bool
	Role     Role
	Payload  Payload
}

// AddVIP: add the VIP to the interface (idempotent). On failure the loop
// feeds back AddFailed and abandons the rest of the batch.
type AddVIP struct{}

// RemoveVIP: remove the VIP from the interface (idempotent).
type RemoveVIP struct{}

// SendGARP: announce the VIP with Count gratuitous ARPs, spaced by the
// configured spacing; replaces any burst in progress.
type SendGARP struct{ Count int }

// SetTimer: deliver a Tick at At (zero: no timer).
type SetTimer struct{ At time.Time }

// Transition: the role changed.
type Transition struct {
	From, To Role
	Reason   string
}

// PayloadAdopted: a peer's advert carried a newer replication decision,
// which this node now holds and advertises.
type PayloadAdopted struct {
	From    netip.Addr
	Payload Payload
}

// TakeoverDeferred: after PacketsDropped, the backup moved its master-down
// deadline out to Until (for the log and a counter; the SetTimer follows).
type TakeoverDeferred struct{ Until time.Time }

func (SendAdvert) isEffect()       {}
func (AddVIP) isEffect()           {}
func (RemoveVIP) isEffect()        {}
func (SendGARP) isEffect()         {}
func (SetTimer) isEffect()         {}
func (Transition) isEffect()       {}
func (PayloadAdopted) isEffect()   {}
func (TakeoverDeferred) isEffect() {}

func (e SendAdvert) String() string {
	h := "healthy"
	if !e.Healthy {
		h = "unhealthy"
	}
	return fmt.Sprintf("send-advert prio %d %s %s epoch %d master %q", e.Priority, h, e.Role, e.Payload.Epoch, e.Payload.Master)
}
func (AddVIP) String() string     { return "add-vip" }
func (RemoveVIP) String() string  { return "remove-vip" }
func (e SendGARP) String() string { return fmt.Sprintf("send-garp x%d", e.Count) }
func (e SetTimer) String() string { return "set-timer " + e.At.Format(time.RFC3339Nano) }
func (e Transition) String() string {
	return fmt.Sprintf("transition %s -> %s (%s)", e.From, e.To, e.Reason)
}
func (e PayloadAdopted) String() string {
	return fmt.Sprintf("payload-adopted from %s epoch %d master %q", e.From, e.Payload.Epoch, e.Payload.Master)
}
func (e TakeoverDeferred) String() string {
	return "takeover-deferred until " + e.Until.Format(time.RFC3339Nano)
}

// Step returns the next state and the effects to apply, in order. It
// performs no I/O, never reads the clock and does not modify st (State holds
// no references).
func Step(st State, ev Event, now time.Time) (State, []Effect) {
	if st.Stopped {
		return st, nil
	}
	s := stepper{st: st, now: now}
	switch ev := ev.(type) {
	case Start:
		s.start()
	case Tick:
		s.tick()
	case AdvertReceived:
		s.advert(ev)
	case TrackingChanged:
		s.tracking(ev.Healthy)
	case PayloadSet:
		s.payload(ev.Payload)
	case AddFailed:
		s.addFailed()
	case PacketsDropped:
		s.dropped()
	case Shutdown:
		s.shutdown()
	}
	if s.st.Role == Init {
		return s.st, s.effs
	}
	next := s.st.nextDeadline()
	_, isTick := ev.(Tick)
	if isTick || !next.Equal(st.TimerAt) {
		s.st.TimerAt = next
		s.emit(SetTimer{At: next})
	}
	return s.st, s.effs
}

type stepper struct {
	st   State
	now  time.Time
	effs []Effect
}

func (s *stepper) emit(e ...Effect) { s.effs = append(s.effs, e...) }

// faulty reports whether the node must stay out of the election.
func (st *State) faulty(now time.Time) bool {
	return (st.Track == TrackFault && !st.Healthy) || now.Before(st.FaultUntil)
}

func (st *State) nextDeadline() time.Time {
	var at time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	switch st.Role {
	case Backup:
		consider(st.MasterDownAt)
		consider(st.PreemptAt)
		if !st.YieldUntil.IsZero() {
			consider(st.AdvertAt)
		}
	case Master:
		consider(st.AdvertAt)
		if st.GARPRefresh > 0 {
			consider(st.GARPAt)
		}
	case Fault:
		consider(st.FaultUntil)
	case Releasing:
		consider(st.AdvertAt)
		consider(st.ReleaseAt)
	}
	return at
}

func (s *stepper) start() {
	if s.st.Role != Init {
		return
	}
	// A VIP left behind by a killed earlier run must not answer ARP for us.
	s.emit(RemoveVIP{})
	if s.st.faulty(s.now) {
		s.toFault("start: unhealthy")
		return
	}
	s.toBackup("start", s.st.Interval)
}

func (s *stepper) tick() {
	now := s.now
	switch s.st.Role {
	case Backup:
		if !s.st.YieldUntil.IsZero() && !now.Before(s.st.AdvertAt) {
			if now.Before(s.st.YieldUntil) {
				s.sendYield()
			} else {
				s.st.YieldUntil, s.st.AdvertAt = time.Time{}, time.Time{}
			}
		}
		switch {
		case !s.st.PreemptAt.IsZero() && !now.Before(s.st.PreemptAt):
			s.toMaster(fmt.Sprintf("preempting %s after the preempt delay", s.st.CurrentMaster))
		case !s.st.MasterDownAt.IsZero() && !now.Before(s.st.MasterDownAt):
			s.toMaster("master down")
		}
	case Master:
		if !now.Before(s.st.AdvertAt) {
			s.advertise()
		}
		if s.st.GARPRefresh > 0 && !now.Before(s.st.GARPAt) {
			s.garp(1)
			s.st.GARPAt = now.Add(s.st.GARPRefresh)
		}
	case Fault:
		if !s.st.FaultUntil.IsZero() && !now.Before(s.st.FaultUntil) {
			s.st.FaultUntil = time.Time{}
			if !s.st.faulty(now) {
				s.toBackup("fault cleared", s.st.Interval)
			}
		}
	case Releasing:
		if !now.Before(s.st.ReleaseAt) {
			s.release(fmt.Sprintf("shutdown: no peer claimed the vip within %v", s.st.HandoverTimeout))
			return
		}
		if !now.Before(s.st.AdvertAt) {
			// The last release may have been lost: the peer would then wait
			// out its whole master-down interval.
			s.sendRelease()
		}
	}
}

// rank orders nodes: healthy before unhealthy, then priority, then address.
type rank struct {
	healthy bool
	prio    uint8
	addr    netip.Addr
}

// cmpPrio compares health then priority (not the address).
func cmpPrio(a, b rank) int {
	if a.healthy != b.healthy {
		if a.healthy {
			return 1
		}
		return -1
	}
	return int(a.prio) - int(b.prio)
}

// outranks reports whether a beats b when both claim to be master.
func outranks(a, b rank) bool {
	if c := cmpPrio(a, b); c != 0 {
		return c > 0
	}
	return a.addr.Compare(b.addr) > 0
}

func (st *State) rank() rank {
	// In TrackFault an unhealthy node is in Fault and never competes, so
	// health only ranks in TrackDemote.
	return rank{healthy: st.Healthy || st.Track == TrackFault, prio: st.Priority, addr: st.Self}
}

func (s *stepper) advert(a AdvertReceived) {
	if a.From == s.st.Self || s.st.Role == Init {
		return
	}
	if a.Payload.Epoch > s.st.Payload.Epoch {
		s.st.Payload = a.Payload
		s.emit(PayloadAdopted{From: a.From, Payload: a.Payload})
	}
	interval := a.Interval
	if interval <= 0 {
		interval = s.st.Interval
	}
	peer := rank{healthy: a.Healthy, prio: a.Priority, addr: a.From}
	switch s.st.Role {
	case Backup:
		if a.Priority == 0 {
			// The master is leaving: wait only the skew time (RFC 5798 §6.4.2).
			at := s.now.Add(SkewTime(s.st.Priority, s.st.MasterInterval))
			if at.Before(s.st.MasterDownAt) {
				s.st.MasterDownAt = at
			}
			s.st.PreemptAt = time.Time{}
			s.st.LossHoldUntil = time.Time{}
			return
		}
		if a.Role != Master {
			return // only masters advertise; ignore anything else
		}
		s.st.CurrentMaster = a.From
		s.st.MasterInterval = interval
		s.st.MasterDownAt = s.now.Add(MasterDownInterval(s.st.Priority, interval))
		s.holdOnLoss()
		me := s.st.rank()
		outranked := cmpPrio(me, peer) > 0
		demoted := s.st.Track == TrackDemote && me.healthy && !peer.healthy
		if !outranked || !(s.st.Preempt || demoted) {
			s.st.PreemptAt = time.Time{}
			return
		}
		if s.st.PreemptAt.IsZero() {
			delay := s.st.PreemptDelay
			if demoted {
				delay = 0 // an unhealthy master yields at once
			}
			s.st.PreemptAt = s.now.Add(delay)
		}
		if !s.now.Before(s.st.PreemptAt) {
			reason := fmt.Sprintf("preempting lower-priority master %s", a.From)
			if demoted {
				reason = fmt.Sprintf("preempting unhealthy master %s", a.From)
			}
			s.toMaster(reason)
		}
	case Master:
		if a.Priority != 0 && a.Role == Master && outranks(peer, s.st.rank()) {
			s.st.CurrentMaster = a.From
			s.st.MasterInterval = interval
			reason := fmt.Sprintf("master %s outranks us (priority %d vs %d)", a.From, a.Priority, s.st.Priority)
			if me := s.st.rank(); peer.healthy != me.healthy {
				reason = fmt.Sprintf("healthy master %s outranks us (unhealthy)", a.From)
			} else if a.Priority == s.st.Priority {
				reason = fmt.Sprintf("master %s wins the tie on address (priority %d)", a.From, a.Priority)
			}
			s.toBackup(reason, interval)
			// The winner may never have heard our adverts (its own reached
			// us first): a release makes it re-announce the VIP, which our
			// GARPs may have drawn to our MAC. It is repeated (see
			// State.YieldUntil).
			s.st.YieldUntil = s.now.Add(yieldRepeats * s.st.Interval)
			s.sendYield()
			return
		}
		// A lower-ranked node thinks it is master, or one is leaving: assert
		// ourselves now rather than at the next interval, and win back the
		// neighbours its GARPs took (rate limit: see State.RivalAt).
		s.advertise()
		switch {
		case a.Priority == 0:
			// A yielding rival repeats its release (State.YieldUntil): the
			// first one that arrives re-announces, the repeats do not.
			repeat := !s.st.ReleasedAt.IsZero() && s.now.Sub(s.st.ReleasedAt) <= (yieldRepeats+1)*interval
			s.st.RivalAt, s.st.ReleasedAt = time.Time{}, s.now
			if !repeat && !s.now.Before(s.st.GARPUntil) {
				s.garp(s.st.GARPCount)
			}
		case a.Role == Master:
			fresh := s.st.RivalAt.IsZero() || s.now.Sub(s.st.RivalAt) >= MasterDownInterval(s.st.Priority, interval)
			s.st.RivalAt = s.now
			if fresh {
				s.garp(s.st.GARPCount)
			}
		}
	case Releasing:
		// The peer's first advert after it claimed: it holds the VIP now.
		// Whoever it is, never contest it; a release (priority 0) is not a
		// claim.
		if a.Priority != 0 && a.Role == Master {
			s.release(fmt.Sprintf("shutdown: %s claimed the vip", a.From))
		}
	}
}

func (s *stepper) tracking(healthy bool) {
	if s.st.Healthy == healthy {
		return
	}
	s.st.Healthy = healthy
	switch s.st.Role {
	case Master:
		if s.st.faulty(s.now) {
			s.toFault("unhealthy")
			return
		}
		// Tell the backup at once so it can take over (or stand down).
		s.advertise()
	case Backup:
		if s.st.faulty(s.now) {
			s.toFault("unhealthy")
			return
		}
		if !healthy {
			s.st.PreemptAt = time.Time{}
		}
	case Fault:
		if !s.st.faulty(s.now) {
			s.toBackup("healthy again", s.st.Interval)
		}
	}
}

func (s *stepper) payload(p Payload) {
	if p.Epoch < s.st.Payload.Epoch || p == s.st.Payload {
		return
	}
	s.st.Payload = p
	if s.st.Role == Master {
		s.advertise() // the backup should inherit it without delay
	}
}

// dropped: datagrams were lost unread, possibly the master's adverts. A
// backup acts as if its master had just advertised, within LossHold of
// when it last really did: a flood the node cannot keep up with delays a
// takeover rather than causing one.
func (s *stepper) dropped() {
	if s.st.Role != Backup || s.st.LossHoldUntil.IsZero() {
		return
	}
	at := s.now.Add(MasterDownInterval(s.st.Priority, s.st.MasterInterval))
	if at.After(s.st.LossHoldUntil) {
		at = s.st.LossHoldUntil
	}
	if at.After(s.st.MasterDownAt) {
		s.st.MasterDownAt = at
		s.emit(TakeoverDeferred{Until: at})
	}
}

// holdOnLoss restarts the LossHold window: the master was heard now (or
// the node just became backup).
func (s *stepper) holdOnLoss() {
	if s.st.LossHold > 0 {
		s.st.LossHoldUntil = s.now.Add(s.st.LossHold)
	}
}

func (s *stepper) addFailed() {
	if s.st.Role != Master {
		return
	}
	s.st.FaultUntil = s.now.Add(s.st.FaultHold)
	s.toFault("cannot add vip")
}

func (s *stepper) shutdown() {
	switch {
	case s.st.Role == Releasing:
		return // already handing over
	case s.st.Role == Master && s.st.HandoverTimeout > 0:
		// Keep the VIP (and the clients it brings) until the peer holds it,
		// so that there is no time when nobody answers for it; clients
		// follow the peer's GARPs. Give up mastership now, though: only
		// the address is kept, not the authority over replication.
		s.clearTimers()
		s.transition(Releasing, "shutdown: handing the vip over")
		s.st.CurrentMaster = netip.Addr{}
		s.st.ReleaseAt = s.now.Add(s.st.HandoverTimeout)
		s.sendRelease()
		return
	case s.st.Role == Master:
		// No handover: release before announcing it, so the peer never
		// claims while we still answer ARP for the VIP.
		s.emit(RemoveVIP{})
		s.emit(SendAdvert{Priority: 0, Healthy: s.st.Healthy, Role: Init, Payload: s.st.Payload})
	}
	s.stop("shutdown")
}

// sendRelease sends the priority-0 advert of a node leaving the VIP, and
// schedules the next one. It says Init, which every version accepts.
// yieldRepeats is how many intervals a master that stepped down keeps
// repeating its release.
const yieldRepeats = 3

// sendYield sends the release of a master that stepped down to a winner.
func (s *stepper) sendYield() {
	s.emit(SendAdvert{Priority: 0, Healthy: s.st.Healthy, Role: Backup, Payload: s.st.Payload})
	s.st.AdvertAt = s.now.Add(s.st.Interval)
}

func (s *stepper) sendRelease() {
	s.emit(SendAdvert{Priority: 0, Healthy: s.st.Healthy, Role: Init, Payload: s.st.Payload})
	s.st.AdvertAt = s.now.Add(s.st.Interval)
}

// release ends Releasing: the VIP goes and the node stops.
func (s *stepper) release(reason string) {
	s.emit(RemoveVIP{})
	s.stop(reason)
}

// stop puts the node in Init for good.
func (s *stepper) stop(reason string) {
	s.transition(Init, reason)
	s.st.Stopped = true
	s.st.CurrentMaster = netip.Addr{}
	s.clearTimers()
	s.st.TimerAt = time.Time{}
	s.emit(SetTimer{})
}

func (s *stepper) advertise() {
	s.emit(SendAdvert{Priority: s.st.Priority, Healthy: s.st.Healthy, Role: Master, Payload: s.st.Payload})
	s.st.AdvertAt = s.now.Add(s.st.Interval)
}

// clearTimers clears the deadlines and the master's GARP bookkeeping, which
// start afresh in every role.
func (s *stepper) clearTimers() {
	s.st.MasterDownAt, s.st.PreemptAt, s.st.AdvertAt, s.st.GARPAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	s.st.GARPUntil, s.st.RivalAt, s.st.ReleaseAt, s.st.YieldUntil = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	s.st.ReleasedAt, s.st.LossHoldUntil = time.Time{}, time.Time{}
}

// garp sends count gratuitous ARPs, replacing any burst in progress.
func (s *stepper) garp(count int) {
	s.emit(SendGARP{Count: count})
	s.st.GARPUntil = s.now.Add(time.Duration(count-1) * s.st.GARPSpacing)
}

func (s *stepper) transition(to Role, reason string) {
	if s.st.Role == to {
		return
	}
	s.emit(Transition{From: s.st.Role, To: to, Reason: reason})
	s.st.Role = to
}

func (s *stepper) toMaster(reason string) {
	s.clearTimers()
	s.transition(Master, reason)
	s.st.CurrentMaster = s.st.Self
	s.emit(AddVIP{})
	s.garp(s.st.GARPCount)
	s.advertise()
	if s.st.GARPRefresh > 0 {
		s.st.GARPAt = s.now.Add(s.st.GARPRefresh)
	}
}

func (s *stepper) toBackup(reason string, masterInterval time.Duration) {
	wasMaster := s.st.Role == Master
	s.clearTimers()
	s.transition(Backup, reason)
	if wasMaster {
		s.emit(RemoveVIP{})
	}
	if s.st.CurrentMaster == s.st.Self {
		s.st.CurrentMaster = netip.Addr{}
	}
	s.st.MasterInterval = masterInterval
	s.st.MasterDownAt = s.now.Add(MasterDownInterval(s.st.Priority, masterInterval))
	s.holdOnLoss()
}

func (s *stepper) toFault(reason string) {
	wasMaster := s.st.Role == Master
	s.clearTimers()
	s.transition(Fault, reason)
	if wasMaster {
		s.emit(RemoveVIP{})
		s.emit(SendAdvert{Priority: 0, Healthy: s.st.Healthy, Role: Fault, Payload: s.st.Payload})
	}
	s.st.CurrentMaster = netip.Addr{}
}
