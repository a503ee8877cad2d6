package replication

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// State is everything Decide knows: the configuration it works under and
// what it has concluded so far. It is a plain value; Decide returns a new
// one and never changes the one it is given.
type State struct {
	// Configuration. The manager sets these; Decide only reads them.
	Servers       []string      // configured servers, in configured order
	DownAfter     time.Duration // a server is down after this long without a valid reply
	CheckInterval time.Duration // how often each server is checked; paces retries
	Authority     bool          // false: observe and publish, never act
	// BusyGrace: a server silent while running a long command the proxy
	// sent it (Observation.BusySince) counts as alive for this long after
	// the command was sent (0: never). See busyExcused.
	BusyGrace time.Duration
	// JoinMaxLag: a server added at run time serves reads once it is at
	// most this far behind the master (0: DefaultJoinMaxLag). See members.go.
	JoinMaxLag time.Duration
	// MaxReplicaLag: a replica serves reads only while it is shown to hold
	// everything the master held this long before (0: no bound). See lag.go.
	MaxReplicaLag time.Duration
	// WriteAcks: the data path acknowledges a write only once this many
	// replicas have it (0: it does not wait). With 1 or more, a failover
	// waits up to PromotionWait for a replica that may hold acknowledged
	// writes the best reachable one lacks (see acked.go).
	WriteAcks int
	// PromotionWait bounds that wait (0: DefaultPromotionWait).
	PromotionWait time.Duration

	Started   time.Time       // the first Decide call
	Epoch     uint64          // increases with every change of master (see Topology.Epoch)
	Master    string          // confirmed master; "" while there is none
	Previous  string          // the last confirmed master, kept after it is lost
	Published Topology        // the last topology published
	Nodes     map[string]Node // configured and discovered servers, by address

	Promotion Promotion // a failover waiting for the promoted server's ROLE
	Switch    Switch    // a planned switchover the manager is carrying out

	MasterLastSeen time.Time // last valid reply of the master that was lost
	Waiting        string    // why no master could be chosen, reported once

	// The manager's own timeline. A gap longer than stallAfter between two
	// decisions (the process frozen, the loop blocked) is a stall: the
	// silence of the servers during it is not evidence against them.
	LastDecide time.Time // now of the newest Decide
	Resumed    time.Time // the decision that found the newest stall; no server's down clock starts earlier
	Holding    bool      // after a stall: no action until a round of checks sent since Resumed (holdOver)

	Failovers    uint64   // unplanned changes of master since start (every kind but switchover)
	Switchovers  uint64   // planned changes of master (switchovers) since start
	LastFailover Failover // zero until the first change of master, of any kind
	LostBytes    int64    // stream bytes discarded by demoting servers, in total
	Lineage      []Link   // replication-ID forks seen, newest last

	MasterOffsets []OffsetSample // the master's positions while a server is joining, oldest first
	Removed       []string       // servers removed at run time (and the ip:port they were reached at): never rediscovered

	// With WriteAcks (acked.go): the replicas linked to the master at its
	// newest valid check (LinkedAt), and when a failover began waiting for
	// one that may hold acknowledged writes (zero: not waiting).
	Linked   []LinkedReplica
	LinkedAt time.Time
	AckWait  time.Time
}

// Node is what is known about one server.
type Node struct {
	Addr        string
	Discovered  bool      // reported by a master, not configured: watched and shown, never acted on
	Since       time.Time // monitoring began
	LastObs     time.Time // the check time of the newest observation applied
	LastOK      time.Time // the check time of the newest valid reply
	Err         string    // why the newest check failed; "" if it was valid
	Reply       string    // the newest check got a LOADING, MASTERDOWN or BUSY reply, or the server was busy (see busyExcused)
	Info        Info      // from the newest check that returned one (Role "" if none, or LOADING)
	Remote      string    // ip:port the server was last reached at
	Down        bool      // as of the last Decide
	ActedAt     time.Time // when an action was last sent to it
	PendingLost int64     // bytes a REPLICAOF in flight will discard
	ReportedAt  time.Time // discovered: last time a master listed it
	// BusyUntil: its newest check found it silent while running a long
	// command the proxy sent it; it is not down before this (busyExcused).
	BusyUntil time.Time
	// Joining: added at run time and not yet caught up with the master;
	// not routed, promoted or waited for (see members.go).
	Joining bool
	// With MaxReplicaLag (lag.go): HeldAt is the check of the master whose
	// position this replica's newest check covers (zero: none); Lagging
	// says it is out of the read rotation because HeldAt is too old.
	HeldAt  time.Time
	Lagging bool
}

// Promotion is a failover in flight: REPLICAOF NO ONE was sent to Target.
type Promotion struct {
	Target  string
	From    string // the lost master, "" if none was ever confirmed
	Started time.Time
}

// Switch is a planned switchover in flight.
type Switch struct {
	From, To string
	Started  time.Time
}

// Failover describes one change of master.
type Failover struct {
	Kind  string `json:"kind"` // failover, switchover, adopted, observed
	Epoch uint64 `json:"epoch"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Began is when the old master was last seen healthy (failover), or when
	// writes were held (switchover); Completed is when the new master was
	// confirmed. Duration is the time between: how long there was no master.
	Began     time.Time     `json:"began"`
	Completed time.Time     `json:"completed"`
	Duration  time.Duration `json:"duration_ns"`
	LostBytes int64         `json:"lost_bytes"` // stream bytes the old master had that the new one never got
}

// ObsKind says what an Observation reports.
type ObsKind uint8

const (
	// ObsCheck is the result of a check (ROLE + INFO) of Addr at At. Err
	// means no valid reply (dial error, timeout, error reply other than
	// LOADING/MASTERDOWN/BUSY), and Silent that it timed out; Reply means
	// the server is alive but replied LOADING, MASTERDOWN or BUSY;
	// otherwise Info holds the reply.
	ObsCheck ObsKind = iota
	// ObsResult is the outcome of an action (Action, Addr, Err).
	ObsResult
	// ObsSwitchover asks for a planned switchover to Addr.
	ObsSwitchover
	// ObsSwitchoverResult is the outcome of ActSwitchover to Addr:
	// Promoted says whether Addr became master.
	ObsSwitchoverResult
	// ObsServers asks to replace the configured servers with Servers;
	// the answer is ActServers, or ActServersRefused (see CheckServers).
	ObsServers
)

// Observation is one fact for Decide, stamped with when it was gathered.
type Observation struct {
	Kind   ObsKind
	Addr   string
	At     time.Time // for a check: when it was sent (its data is at least this new)
	Err    string
	Silent bool // a failed check timed out: the server said nothing
	// BusySince: the proxy had a long command (a script, a function) in
	// flight on the server since then, unanswered when the check was sent.
	BusySince time.Time
	Reply     string
	Info      Info
	Action    ActionKind // ObsResult: which action
	Promoted  bool       // ObsSwitchoverResult
	Servers   []string   // ObsServers: the new configured servers, in order
}

// ActionKind says what an Action asks for.
type ActionKind uint8

const (
	ActEvent      ActionKind = iota // log Event about Addr; no I/O
	ActPublish                      // publish Topology to the proxy
	ActPromote                      // REPLICAOF NO ONE on Addr, then check it
	ActReplicaOf                    // REPLICAOF Master on Addr, then check it
	ActSwitchover                   // planned switchover From -> Addr; report ObsSwitchoverResult
	ActReject                       // refuse the switchover request for Addr because Detail
)

// Action is one thing the manager must do, in order.
type Action struct {
	Kind      ActionKind
	Addr      string
	From      string   // ActSwitchover: the current master
	Master    string   // ActReplicaOf: the master to follow
	Topology  Topology // ActPublish
	LostBytes int64    // ActReplicaOf: stream bytes Addr has that Master never got
	Event     string   // ActEvent: what happened
	Detail    string   // ActEvent, ActReject, ActServers, ActServersRefused: details
	Servers   []string // ActServers: the configured servers now
}

// Events reported as ActEvent.
const (
	EventDown            = "down"
	EventUp              = "up"
	EventDiscovered      = "discovered"
	EventForgotten       = "forgotten"
	EventMaster          = "master"         // a master was confirmed without a change of epoch
	EventMasterChanged   = "master-changed" // a new master, epoch increased
	EventMasterLost      = "master-lost"
	EventNoMaster        = "no-master"
	EventPromoteFailed   = "promote-failed"
	EventActionFailed    = "action-failed"
	EventDataLost        = "data-lost"
	EventSwitchoverAbort = "switchover-aborted"
	EventStall           = "stall"      // the manager did not decide for longer than stallAfter
	EventStallOver       = "stall-over" // the hold after a stall ended: acting again
	EventBusy            = "busy"       // silent or -BUSY while running a long command: alive
	EventAdded           = "added"      // a server was added to the configured servers
	EventRemoved         = "removed"    // a server was removed: no longer routed or checked
	EventCaughtUp        = "caught-up"  // an added server caught up with the master: it may serve reads
	// MaxReplicaLag (lag.go).
	EventLagging         = "replica-lagging"   // a replica left the read rotation: it trails the master by more than MaxReplicaLag
	EventReplicaCaughtUp = "replica-caught-up" // a lagging replica is back within MaxReplicaLag: it serves reads again
	// WriteAcks (acked.go).
	EventPromotionHeld = "promotion-held"       // a failover waits for a replica that may hold acknowledged writes
	EventAckedAtRisk   = "acked-writes-at-risk" // a replica is promoted without one that may hold acknowledged writes it lacks
)

func (a Action) String() string {
	switch a.Kind {
	case ActEvent:
		s := "event " + a.Event
		for _, part := range []string{a.Addr, a.Detail} {
			if part != "" {
				s += " " + part
			}
		}
		return s
	case ActPublish:
		return a.Topology.String()
	case ActPromote:
		return "promote " + a.Addr
	case ActReplicaOf:
		s := "replicaof " + a.Addr + " -> " + a.Master
		if a.LostBytes > 0 {
			s += fmt.Sprintf(" lost=%d", a.LostBytes)
		}
		return s
	case ActSwitchover:
		return "switchover " + a.From + " -> " + a.Addr
	case ActReject:
		return "reject switchover " + a.Addr + ": " + a.Detail
	case ActServers:
		return "servers " + strings.Join(a.Servers, ",") + " (" + a.Detail + ")"
	case ActServersRefused:
		return "refuse servers: " + a.Detail
	}
	return fmt.Sprintf("action(%d) %s", a.Kind, a.Addr)
}

// String renders a topology as the golden files show it.
func (t Topology) String() string {
	m, r := t.Master, strings.Join(t.Replicas, ",")
	if m == "" {
		m = "-"
	}
	if r == "" {
		r = "-"
	}
	return fmt.Sprintf("publish epoch=%d master=%s replicas=%s", t.Epoch, m, r)
}

// NewState returns the state Decide starts from.
func NewState(servers []string, downAfter, checkInterval time.Duration, authority bool) State {
	return State{
		Servers:       slices.Clone(servers),
		DownAfter:     downAfter,
		CheckInterval: checkInterval,
		Authority:     authority,
		Nodes:         map[string]Node{},
	}
}

// clone copies everything Decide may change. Slices held in Nodes (Info
// replica lists) are never changed in place, only replaced, so sharing them
// is safe.
func (st State) clone() State {
	st.Nodes = maps.Clone(st.Nodes)
	if st.Nodes == nil {
		st.Nodes = map[string]Node{}
	}
	st.Lineage = slices.Clone(st.Lineage)
	st.MasterOffsets = slices.Clone(st.MasterOffsets)
	st.Removed = slices.Clone(st.Removed)
	st.Linked = slices.Clone(st.Linked)
	st.Published.Replicas = slices.Clone(st.Published.Replicas)
	return st
}

// Decide returns the next state and the actions to apply, in order.
// It performs no I/O, never reads the clock (now is an input) and does not
// modify st. The manager applies the actions and feeds their results back
// as observations (ObsResult, then fresh ObsCheck of the servers acted on).
func Decide(st State, obs []Observation, now time.Time) (State, []Action) {
	next := st.clone()
	d := &decider{st: &next, now: now}
	d.begin()
	for _, o := range obs {
		d.observe(o)
	}
	for _, servers := range d.servers {
		d.changeServers(servers)
	}
	d.discover()
	d.liveness()
	d.endHold()
	d.catchUp()
	if next.Authority {
		d.authoritative()
	} else {
		d.observeOnly()
	}
	for _, target := range d.requests {
		d.reject(target, d.busy)
	}
	d.noteLinked()
	d.lag()
	d.publish()
	return next, d.acts
}

type decider struct {
	st       *State
	now      time.Time
	acts     []Action
	requests []string   // switchover targets not yet answered
	servers  [][]string // ObsServers lists, in order
	busy     string     // why pending requests are refused
}

func (d *decider) emit(a Action) { d.acts = append(d.acts, a) }

func (d *decider) event(ev, addr, format string, args ...any) {
	d.emit(Action{Kind: ActEvent, Event: ev, Addr: addr, Detail: fmt.Sprintf(format, args...)})
}

func (d *decider) begin() {
	st := d.st
	if st.Started.IsZero() {
		st.Started = d.now
	}
	if stalled(st.LastDecide, d.now, stallAfter(st.CheckInterval, st.DownAfter)) {
		st.Resumed, st.Holding = d.now, true
		d.event(EventStall, "", "no decision for %v", d.now.Sub(st.LastDecide))
	}
	st.LastDecide = d.now
	for _, a := range st.Servers {
		if _, ok := st.Nodes[a]; !ok {
			st.Nodes[a] = Node{Addr: a, Since: d.now}
		}
	}
	d.busy = "a failover is in progress"
}

// addrs lists configured servers in configured order, then discovered ones
// sorted, so that events come out in a stable order.
func (d *decider) addrs() []string {
	out := slices.Clone(d.st.Servers)
	var disc []string
	for a, n := range d.st.Nodes {
		if n.Discovered {
			disc = append(disc, a)
		}
	}
	slices.Sort(disc)
	return append(out, disc...)
}

// busy reports whether n's last check found it busy with a long command:
// answering -BUSY, or silent while running one the proxy sent it.
func (n Node) busy() bool {
	return strings.HasPrefix(n.Reply, "BUSY") || strings.HasPrefix(n.Reply, busySilent)
}

func (d *decider) observe(o Observation) {
	st := d.st
	switch o.Kind {
	case ObsCheck:
		n, ok := st.Nodes[o.Addr]
		if !ok || o.At.Before(n.LastObs) {
			return // unknown server, or older than what we already applied
		}
		n.LastObs = o.At
		wasBusy := n.busy()
		n.BusyUntil = time.Time{}
		switch {
		case o.Err != "" && busyExcused(o.Silent, o.BusySince, o.At, st.BusyGrace):
			// Silent because it runs a command the proxy sent it: alive,
			// and still what it was (a busy master stays master), until
			// the grace runs out. (Each such check takes its whole
			// timeout, so its news is old: the grace, not the check
			// time, says how long the server is up.)
			n.Err, n.Reply, n.LastOK = "", busySilent+o.At.Sub(o.BusySince).Round(time.Millisecond).String(), o.At
			n.BusyUntil = o.BusySince.Add(st.BusyGrace)
		case o.Err != "":
			n.Err, n.Reply = o.Err, ""
		case strings.HasPrefix(o.Reply, "BUSY"):
			// A script or function runs past busy-reply-threshold: alive,
			// and still what it was.
			n.Err, n.Reply, n.LastOK = "", o.Reply, o.At
		case o.Reply != "":
			// Alive (LOADING, MASTERDOWN) but not answering for its role.
			n.Err, n.Reply, n.LastOK, n.Info = "", o.Reply, o.At, Info{}
		default:
			n.Err, n.Reply, n.LastOK, n.Info = "", "", o.At, o.Info
			if o.Info.Remote != "" {
				n.Remote = o.Info.Remote
			}
			d.learn(o.Info.position())
			d.sample(o.Addr, o.Info, o.At)
		}
		if n.busy() && !wasBusy {
			d.event(EventBusy, o.Addr, "%s", n.Reply)
		}
		st.Nodes[o.Addr] = n
	case ObsResult:
		d.result(o)
	case ObsSwitchover:
		d.requests = append(d.requests, o.Addr)
	case ObsSwitchoverResult:
		d.switchResult(o)
	case ObsServers:
		d.servers = append(d.servers, slices.Clone(o.Servers))
	}
}

// learn remembers a fork of replication history, so that lineage can be
// compared even after the server that reported it is gone or promoted again.
func (d *decider) learn(p position) {
	l, ok := p.link()
	if !ok || slices.Contains(d.st.Lineage, l) {
		return
	}
	d.st.Lineage = append(d.st.Lineage, l)
	if len(d.st.Lineage) > maxLinks {
		d.st.Lineage = slices.Delete(d.st.Lineage, 0, len(d.st.Lineage)-maxLinks)
	}
}

func (d *decider) result(o Observation) {
	st := d.st
	n, ok := st.Nodes[o.Addr]
	if !ok {
		return
	}
	switch o.Action {
	case ActPromote:
		if o.Err != "" && st.Promotion.Target == o.Addr {
			d.event(EventPromoteFailed, o.Addr, "%s", o.Err)
			st.Promotion = Promotion{}
		}
	case ActReplicaOf:
		if o.Err != "" {
			d.event(EventActionFailed, o.Addr, "replicaof: %s", o.Err)
		} else if n.PendingLost > 0 {
			st.LostBytes += n.PendingLost
			if st.LastFailover.From == o.Addr {
				st.LastFailover.LostBytes += n.PendingLost
			}
			d.event(EventDataLost, o.Addr, "bytes=%d", n.PendingLost)
		}
		n.PendingLost = 0
		st.Nodes[o.Addr] = n
	}
}

// configured reports whether addr (as a master lists a replica) is one of
// the configured servers, by address or by the ip:port it was reached at.
func (d *decider) configured(addr string) bool {
	for _, a := range d.st.Servers {
		if a == addr || d.st.Nodes[a].Remote == addr {
			return true
		}
	}
	return false
}

// discover adds replicas that masters report but that are not configured,
// and forgets them once they are down and no master reports them.
func (d *decider) discover() {
	st := d.st
	for _, a := range st.Servers {
		m := st.Nodes[a]
		if !m.fresh() || m.Info.Role != RoleMaster {
			continue
		}
		for _, r := range m.Info.Replicas {
			if d.configured(r.Addr) || slices.Contains(st.Removed, r.Addr) {
				continue
			}
			n, ok := st.Nodes[r.Addr]
			if !ok {
				n = Node{Addr: r.Addr, Discovered: true, Since: d.now}
				d.event(EventDiscovered, r.Addr, "replica of %s", a)
			}
			n.ReportedAt = d.now
			st.Nodes[r.Addr] = n
		}
	}
	for _, a := range d.addrs() {
		n := st.Nodes[a]
		if n.Discovered && d.isDown(n) && d.now.Sub(n.ReportedAt) >= st.DownAfter {
			delete(st.Nodes, a)
			d.event(EventForgotten, a, "")
		}
	}
}

// isDown applies isDown to n. A server that was up before a stall has its
// down clock restarted when the manager resumed; one already down stays down
// until it answers.
func (d *decider) isDown(n Node) bool {
	if d.now.Before(n.BusyUntil) {
		return false
	}
	since := n.Since
	if !n.Down && d.st.Resumed.After(since) {
		since = d.st.Resumed
	}
	return isDown(n.LastOK, since, d.st.DownAfter, d.now)
}

func (d *decider) liveness() {
	st := d.st
	for _, a := range d.addrs() {
		n := st.Nodes[a]
		down := d.isDown(n)
		if down == n.Down {
			continue
		}
		n.Down = down
		st.Nodes[a] = n
		if down {
			why := n.Err
			if why == "" {
				why = "no reply"
			}
			d.event(EventDown, a, "%s", why)
		} else {
			d.event(EventUp, a, "")
		}
	}
}

// endHold ends the hold after a stall after a full round of checks sent since
// the manager resumed, or DownAfter after resuming (see holdOver).
func (d *decider) endHold() {
	st := d.st
	if !st.Holding {
		return
	}
	var oldest time.Time
	for i, a := range st.Servers {
		if t := st.Nodes[a].LastObs; i == 0 || t.Before(oldest) {
			oldest = t
		}
	}
	if holdOver(st.Resumed, oldest, d.now, st.CheckInterval, st.DownAfter) {
		st.Holding = false
		d.event(EventStallOver, "", "after %v", d.now.Sub(st.Resumed))
	}
}

// fresh: the newest check was valid and told the role.
func (n Node) fresh() bool { return n.Err == "" && n.Reply == "" && n.Info.Role != "" }

// answered: the newest check was a valid reply (possibly LOADING).
func (n Node) answered() bool { return !n.LastObs.IsZero() && n.Err == "" }

// replicaOf reports whether n replicates from m. n's own view decides; the
// master's list of replicas is used only when n names its master by an
// address matching no known server (a host name where we have an IP).
func (d *decider) replicaOf(n, m Node) bool {
	if n.Info.Role != RoleReplica {
		return false
	}
	if n.Info.MasterAddr == m.Addr || (m.Remote != "" && n.Info.MasterAddr == m.Remote) {
		return true
	}
	for _, o := range d.st.Nodes {
		if n.Info.MasterAddr == o.Addr || (o.Remote != "" && n.Info.MasterAddr == o.Remote) {
			return false
		}
	}
	for _, r := range m.Info.Replicas {
		if r.Addr == n.Addr || (n.Remote != "" && r.Addr == n.Remote) {
			return true
		}
	}
	return false
}

// linked reports whether n, a configured server, is a replica of the master
// m that is up, has caught up since it was added, and says its link is up:
// what the read rotation requires before the bound on lag (withinLag).
func (d *decider) linked(n, m Node) bool {
	return !n.Down && !n.Joining && n.Info.LinkUp && d.replicaOf(n, m)
}

func (d *decider) topology() Topology {
	st := d.st
	t := Topology{Epoch: st.Epoch, Master: st.Master}
	if st.Master == "" {
		return t
	}
	m := st.Nodes[st.Master]
	for _, a := range st.Servers {
		n := st.Nodes[a]
		if a != st.Master && d.linked(n, m) && d.withinLag(n) {
			t.Replicas = append(t.Replicas, a)
		}
	}
	return t
}

func (d *decider) publish() {
	t := d.topology()
	if t.Equal(d.st.Published) {
		return
	}
	d.st.Published = t
	t.Replicas = slices.Clone(t.Replicas)
	d.emit(Action{Kind: ActPublish, Topology: t})
}

// observeOnly publishes what it sees: a master only while exactly one
// configured server is an up master.
func (d *decider) observeOnly() {
	st := d.st
	st.Promotion = Promotion{}
	d.busy = "this node has no authority over the servers"
	var masters []string
	for _, a := range st.Servers {
		n := st.Nodes[a]
		if !n.Down && !n.Joining && n.Info.Role == RoleMaster {
			masters = append(masters, a)
		}
	}
	if len(masters) == 1 {
		d.setMaster(masters[0], "observed", false, st.MasterLastSeen)
		return
	}
	if st.Master != "" {
		d.loseMaster(fmt.Sprintf("%d masters up", len(masters)))
	}
	if len(masters) == 0 {
		d.wait("no master up")
	} else {
		d.wait("several masters up: " + strings.Join(masters, ","))
	}
}

func (d *decider) wait(why string) {
	if d.st.Waiting != why {
		d.st.Waiting = why
		d.event(EventNoMaster, "", "%s", why)
	}
}

func (d *decider) loseMaster(why string) {
	st := d.st
	d.event(EventMasterLost, st.Master, "%s", why)
	st.MasterLastSeen = st.Nodes[st.Master].LastOK
	st.Master = ""
	d.publish() // hold clients before anything else is done
}

// setMaster makes addr the confirmed master. The epoch increases on a
// promotion, and whenever the master differs from the previous one.
func (d *decider) setMaster(addr, kind string, promoted bool, began time.Time) {
	st := d.st
	st.Waiting = ""
	st.AckWait = time.Time{}
	if addr == st.Master {
		return
	}
	prev := st.Previous
	st.Master, st.Previous = addr, addr
	if !promoted && (prev == "" || prev == addr) {
		d.event(EventMaster, addr, "epoch=%d", st.Epoch)
		return
	}
	if began.IsZero() {
		began = st.Started
	}
	st.Epoch++
	if kind == "switchover" { // planned: counted apart, so an alert on failovers is not set off by maintenance
		st.Switchovers++
	} else {
		st.Failovers++
	}
	st.LastFailover = Failover{
		Kind: kind, Epoch: st.Epoch, From: prev, To: addr,
		Began: began, Completed: d.now, Duration: d.now.Sub(began),
	}
	d.event(EventMasterChanged, addr, "%s from=%s epoch=%d after=%v", kind, orDash(prev), st.Epoch, d.now.Sub(began))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (d *decider) authoritative() {
	st := d.st
	if st.Holding {
		// Nothing is promoted, demoted or re-pointed on the strength of
		// checks from before the stall.
		d.busy = "waiting for a round of checks after a stall of the manager"
		return
	}
	if p := st.Promotion; p.Target != "" {
		n := st.Nodes[p.Target]
		confirmed := n.LastObs.After(p.Started) && n.fresh()
		switch {
		case confirmed && n.Info.Role == RoleMaster:
			st.Promotion = Promotion{}
			d.setMaster(p.Target, "failover", true, st.MasterLastSeen)
		case confirmed, n.Down, promotionExpired(p.Started, d.now, st.DownAfter):
			d.event(EventPromoteFailed, p.Target, "not confirmed as master")
			st.Promotion = Promotion{}
		default:
			return // wait for the promoted server's ROLE
		}
	}
	if st.Switch.To != "" {
		return // the manager is carrying it out; its result comes as an observation
	}
	if st.Master != "" {
		m := st.Nodes[st.Master]
		switch {
		case m.Down:
			d.loseMaster("down")
		case m.fresh() && m.Info.Role != RoleMaster:
			d.loseMaster("now a replica of " + m.Info.MasterAddr)
		}
	}
	if st.Master == "" {
		d.elect()
	}
	if st.Master == "" {
		d.busy = "there is no confirmed master"
		return
	}
	d.repoint()
	d.busy = ""
	for _, target := range d.requests {
		d.requestSwitch(target)
	}
	d.requests = nil
}

// settled: every configured server has either answered its newest check or
// been declared down, so a choice of master will not be overturned by a
// server that has not been heard from yet.
func (d *decider) settled() bool {
	for _, a := range d.st.Servers {
		n := d.st.Nodes[a]
		if !n.Down && !n.Joining && !n.answered() {
			return false
		}
	}
	return true
}

// elect chooses a master when there is none: an existing master if one is
// up (the newest by lineage), else the best replica, which is promoted.
func (d *decider) elect() {
	st := d.st
	if !d.settled() {
		return
	}
	var cands []Node
	var joining []string
	for _, a := range st.Servers {
		switch n := st.Nodes[a]; {
		case n.Down || !n.fresh():
		case n.Joining:
			joining = append(joining, a)
		default:
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 && len(joining) > 0 {
		d.wait("no server reachable but servers still joining: " + strings.Join(joining, ","))
		return
	}
	if len(cands) == 0 {
		d.wait("no server reachable")
		return
	}
	// Servers whose history another candidate forked from hold older data.
	older := func(n Node) bool {
		for _, c := range cands {
			if c.Addr != n.Addr && descends(c.Info.position(), n.Info.position(), st.Lineage) {
				return true
			}
		}
		return false
	}
	var masters, replicas []Node
	for _, n := range cands {
		switch {
		case older(n):
		case n.Info.Role == RoleMaster:
			masters = append(masters, n)
		case n.Info.Role == RoleReplica && n.Info.Priority != 0 && retryDue(n.ActedAt, d.now, st.CheckInterval):
			replicas = append(replicas, n)
		}
	}
	if len(masters) > 0 {
		// The most data, then the first configured (so fresh servers elect
		// the first configured one).
		best := slices.MaxFunc(masters, func(a, b Node) int {
			if a.Info.Offset != b.Info.Offset {
				return cmpInt(a.Info.Offset, b.Info.Offset)
			}
			return cmpInt(d.index(b.Addr), d.index(a.Addr))
		})
		d.setMaster(best.Addr, "adopted", false, st.MasterLastSeen)
		return
	}
	if len(replicas) == 0 {
		d.wait("no promotable replica")
		return
	}
	order := betterReplica
	if st.WriteAcks > 0 {
		order = betterDurable
	}
	best := slices.MinFunc(replicas, order)
	if d.holdForAcked(best, replicas) {
		return
	}
	n := st.Nodes[best.Addr]
	n.ActedAt = d.now
	st.Nodes[best.Addr] = n
	st.Promotion = Promotion{Target: best.Addr, From: st.Previous, Started: d.now}
	d.emit(Action{Kind: ActPromote, Addr: best.Addr})
}

// betterReplica orders promotion candidates: lower replica-priority first,
// then the larger replication offset, then the smaller run id.
func betterReplica(a, b Node) int {
	if a.Info.Priority != b.Info.Priority {
		return cmpInt(int64(a.Info.Priority), int64(b.Info.Priority))
	}
	if a.Info.Offset != b.Info.Offset {
		return cmpInt(b.Info.Offset, a.Info.Offset)
	}
	if c := strings.Compare(a.Info.RunID, b.Info.RunID); c != 0 {
		return c
	}
	return strings.Compare(a.Addr, b.Addr)
}

func cmpInt[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (d *decider) index(addr string) int { return slices.Index(d.st.Servers, addr) }

// repoint makes every other configured server a replica of the master:
// other masters (an old master that returned, the losers of a split) and
// replicas of anything else.
func (d *decider) repoint() {
	st := d.st
	m := st.Nodes[st.Master]
	for _, a := range st.Servers {
		n := st.Nodes[a]
		if a == st.Master || n.Down || !n.fresh() || !retryDue(n.ActedAt, d.now, st.CheckInterval) {
			continue
		}
		act := Action{Kind: ActReplicaOf, Addr: a, Master: st.Master}
		switch {
		case n.Info.Role == RoleMaster && n.Joining:
			// An added server's own data was never this deployment's.
		case n.Info.Role == RoleMaster:
			act.LostBytes = lostBytes(n.Info.position(), m.Info.position(), st.Lineage)
		case d.replicaOf(n, m):
			continue
		}
		n.ActedAt = d.now
		n.PendingLost = act.LostBytes
		st.Nodes[a] = n
		d.emit(act)
	}
}

func (d *decider) reject(target, why string) {
	d.emit(Action{Kind: ActReject, Addr: target, Detail: why})
}

// SwitchTarget returns the replica a switchover with no named target goes
// to: of the configured replicas of the master that are up with their link
// up and a non-zero replica-priority, the one a failover would promote
// (see betterReplica). It returns "" when there is none or no master.
func SwitchTarget(st State) string {
	if st.Master == "" {
		return ""
	}
	d := &decider{st: &st}
	m := st.Nodes[st.Master]
	best := ""
	for _, a := range st.Servers {
		n, ok := st.Nodes[a]
		if !ok || a == st.Master || n.Discovered || n.Joining || n.Down || !n.fresh() || !n.Info.LinkUp ||
			n.Info.Priority == 0 || !d.replicaOf(n, m) {
			continue
		}
		if best == "" || betterReplica(n, st.Nodes[best]) < 0 {
			best = a
		}
	}
	return best
}

func (d *decider) requestSwitch(target string) {
	st := d.st
	n, ok := st.Nodes[target]
	m := st.Nodes[st.Master]
	switch {
	case st.Switch.To != "" || st.Promotion.Target != "":
		d.reject(target, "a failover is in progress")
	case target == st.Master:
		d.reject(target, "already the master")
	case !ok || n.Discovered:
		d.reject(target, "not a configured server")
	case n.Down || !n.fresh():
		d.reject(target, "not reachable")
	case n.Joining:
		d.reject(target, "added at run time and not caught up with "+st.Master+" yet")
	case !d.replicaOf(n, m) || !n.Info.LinkUp:
		d.reject(target, "not a replica of "+st.Master+" with its link up")
	case n.Info.Priority == 0:
		d.reject(target, "replica-priority is 0")
	default:
		st.Switch = Switch{From: st.Master, To: target, Started: d.now}
		st.Master = ""
		d.publish() // hold clients first
		d.emit(Action{Kind: ActSwitchover, Addr: target, From: st.Switch.From})
	}
}

func (d *decider) switchResult(o Observation) {
	st := d.st
	sw := st.Switch
	if sw.To == "" || sw.To != o.Addr {
		return
	}
	st.Switch = Switch{}
	if o.Promoted {
		st.MasterLastSeen = sw.Started
		d.setMaster(sw.To, "switchover", true, sw.Started)
		return
	}
	d.event(EventSwitchoverAbort, sw.To, "%s; %s stays master", o.Err, sw.From)
	st.Master = sw.From
}
