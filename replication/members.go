package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Membership changes at run time: the configured servers are replaced by a
// new list (ObsServers), decided here like everything else.
//
//   - An added server is checked from the next round on and made a replica
//     of the master like any configured server that is not one (its own data
//     is replaced by the master's). Until it has caught up it is joining
//     (Node.Joining): never routed for reads, promoted, chosen by a
//     switchover, counted as a master by a node without authority, nor
//     waited for before a master is chosen. It has caught up once a check
//     finds it a replica of the master with its link up, holding everything
//     the master held JoinMaxLag before that check (caughtUp). From then on
//     it is a configured server like the others. An unreachable server is
//     accepted: it is shown down until it answers.
//   - A removed server leaves the published topology in the decision that
//     removes it, before the manager stops checking it; it is not re-pointed
//     or touched, and while it still replicates from the master it is not
//     rediscovered (State.Removed).
//   - Refused (CheckServers): an empty list, and removing the confirmed
//     master, the target of a failover in flight, or either end of a
//     switchover in flight.

// The answers to ObsServers (no I/O).
const (
	// ActServers: the configured servers are now Action.Servers (Detail:
	// +added -removed).
	ActServers ActionKind = ActReject + 1 + iota
	// ActServersRefused: the change asked for is refused because Detail.
	ActServersRefused
)

// DefaultJoinMaxLag is the JoinMaxLag of a zero Config and State.
const DefaultJoinMaxLag = time.Second

// maxSamples bounds State.MasterOffsets; maxRemoved bounds State.Removed.
const (
	maxSamples = 256
	maxRemoved = 64
)

// OffsetSample is the master's replication position at one check.
type OffsetSample struct {
	ReplID string
	Offset int64
	At     time.Time // when the check was sent
}

// ErrServersRefused is returned (wrapped, with the reason) when a change of
// the configured servers is refused.
var ErrServersRefused = errors.New("change of servers refused")

// CheckServers reports whether st may change its configured servers to
// servers: nil, or an error wrapping ErrServersRefused that says why. It is
// pure; Decide applies the same rule to an ObsServers observation.
func CheckServers(st State, servers []string) error {
	if len(servers) == 0 {
		return fmt.Errorf("%w: at least one server must remain", ErrServersRefused)
	}
	for i, a := range servers {
		if slices.Contains(servers[:i], a) {
			return fmt.Errorf("%w: %s is listed twice", ErrServersRefused, a)
		}
	}
	for _, a := range st.Servers {
		if slices.Contains(servers, a) {
			continue
		}
		switch a {
		case st.Master:
			return fmt.Errorf("%w: %s is the master: switch over to another server first (redis-proxy switchover)", ErrServersRefused, a)
		case st.Promotion.Target:
			return fmt.Errorf("%w: %s is being promoted by a failover", ErrServersRefused, a)
		case st.Switch.From, st.Switch.To:
			return fmt.Errorf("%w: %s takes part in a switchover in progress", ErrServersRefused, a)
		}
	}
	return nil
}

// changeServers applies an ObsServers observation: the list replaces the
// configured servers, or the change is refused (ActServersRefused).
func (d *decider) changeServers(servers []string) {
	st := d.st
	if err := CheckServers(*st, servers); err != nil {
		d.emit(Action{Kind: ActServersRefused, Detail: strings.TrimPrefix(err.Error(), ErrServersRefused.Error()+": ")})
		return
	}
	old := st.Servers
	st.Servers = slices.Clone(servers)
	var added, removed []string
	for _, a := range old {
		if slices.Contains(servers, a) {
			continue
		}
		removed = append(removed, a)
		n := st.Nodes[a]
		delete(st.Nodes, a)
		d.forget(a, n.Remote)
		d.event(EventRemoved, a, "")
	}
	for _, a := range servers {
		if slices.Contains(old, a) {
			continue
		}
		added = append(added, a)
		st.Removed = slices.DeleteFunc(st.Removed, func(r string) bool { return r == a })
		// A discovered replica of the same address starts afresh as a
		// configured one.
		st.Nodes[a] = Node{Addr: a, Since: d.now, Joining: true}
		d.event(EventAdded, a, "")
	}
	d.emit(Action{Kind: ActServers, Servers: slices.Clone(servers), Detail: describeChange(added, removed)})
}

// forget remembers a removed server's address, and the ip:port it was last
// reached at, so that discover does not bring it back while it still
// replicates from the master.
func (d *decider) forget(addr, remote string) {
	st := d.st
	for _, a := range []string{addr, remote} {
		if a != "" && !slices.Contains(st.Removed, a) {
			st.Removed = append(st.Removed, a)
		}
	}
	if len(st.Removed) > maxRemoved {
		st.Removed = slices.Delete(st.Removed, 0, len(st.Removed)-maxRemoved)
	}
}

func describeChange(added, removed []string) string {
	var parts []string
	for _, a := range added {
		parts = append(parts, "+"+a)
	}
	for _, a := range removed {
		parts = append(parts, "-"+a)
	}
	if len(parts) == 0 {
		return "unchanged"
	}
	return strings.Join(parts, " ")
}

// joining reports whether any configured server is still joining.
func (d *decider) joining() bool {
	for _, a := range d.st.Servers {
		if d.st.Nodes[a].Joining {
			return true
		}
	}
	return false
}

// sampling reports whether the master's positions are recorded: while a
// server is joining (caughtUp compares with them) and whenever replica
// reads are bounded (MaxReplicaLag: replicaLag compares with them).
func (d *decider) sampling() bool { return d.st.MaxReplicaLag > 0 || d.joining() }

// sampleWindow is how far back samples are kept: a comparison looks back
// at most the larger bound, from a replica's newest valid check, which is
// at most DownAfter old (else the replica is down).
func (st State) sampleWindow() time.Duration {
	return max(st.joinMaxLag(), st.MaxReplicaLag) + st.DownAfter
}

// sampleSpacing is the least time between two kept samples but the newest.
func (st State) sampleSpacing() time.Duration { return st.sampleWindow() / (maxSamples / 2) }

// sample records the master's position from a valid check of it while
// sampling. Samples are of one replication history, the master's newest
// (those of an older one say nothing of its replicas), and spaced about
// sampleSpacing apart but for the newest, which replaces the previous
// newest when closer: so the window holds about maxSamples/2 of them
// however often the master is checked (maxSamples is a hard cap), and a
// comparison is never off by more than the spacing.
func (d *decider) sample(addr string, in Info, at time.Time) {
	st := d.st
	if addr != st.Master || in.Role != RoleMaster || !d.sampling() {
		return
	}
	s := OffsetSample{ReplID: in.ReplID, Offset: in.Offset, At: at}
	k := len(st.MasterOffsets)
	switch {
	case k > 0 && st.MasterOffsets[k-1].ReplID != in.ReplID:
		st.MasterOffsets = append(st.MasterOffsets[:0], s)
	case k >= 2 && at.Sub(st.MasterOffsets[k-2].At) < st.sampleSpacing():
		st.MasterOffsets[k-1] = s
	default:
		st.MasterOffsets = append(st.MasterOffsets, s)
	}
}

// catchUp ends the joining of servers that have caught up, and forgets the
// master's samples once no server is joining, or when too old to be
// compared with any check still to come.
func (d *decider) catchUp() {
	st := d.st
	lag := st.joinMaxLag()
	var m Node
	if st.Master != "" {
		m = st.Nodes[st.Master]
	}
	for _, a := range st.Servers {
		n := st.Nodes[a]
		if !n.Joining || st.Master == "" || a == st.Master || n.Down || !n.fresh() || !n.Info.LinkUp || !d.replicaOf(n, m) {
			continue
		}
		if s, ok := caughtUp(st.MasterOffsets, n.Info.ReplID, n.Info.Offset, n.LastOK, lag); ok {
			n.Joining = false
			st.Nodes[a] = n
			d.event(EventCaughtUp, a, "offset=%d master_offset=%d (the master's, checked %v before)", n.Info.Offset, s.Offset, n.LastOK.Sub(s.At).Round(time.Millisecond))
		}
	}
	if !d.sampling() {
		st.MasterOffsets = nil
		return
	}
	// The newest sample is kept whatever its age: replicaLag needs one to
	// judge a replica behind.
	keep := d.now.Add(-st.sampleWindow())
	i := 0
	for i < len(st.MasterOffsets)-1 && st.MasterOffsets[i].At.Before(keep) {
		i++
	}
	if over := len(st.MasterOffsets) - i - maxSamples; over > 0 {
		i += over
	}
	if i > 0 {
		st.MasterOffsets = slices.Delete(st.MasterOffsets, 0, i)
	}
}

func (st State) joinMaxLag() time.Duration {
	if st.JoinMaxLag > 0 {
		return st.JoinMaxLag
	}
	return DefaultJoinMaxLag
}

// caughtUp reports whether a replica of the master's history replID, whose
// check sent at at found it at offset, holds everything the master held at
// some check sent no more than maxLag before at (and not after it): then it
// was at most maxLag behind. It returns the oldest such sample, the weakest
// test, so a replica that keeps up under a steady write load passes however
// close together the two checks happened to be sent. samples are in the
// order taken.
func caughtUp(samples []OffsetSample, replID string, offset int64, at time.Time, maxLag time.Duration) (OffsetSample, bool) {
	for _, s := range samples {
		if s.ReplID != replID || s.At.After(at) || at.Sub(s.At) > maxLag {
			continue
		}
		return s, offset >= s.Offset
	}
	return OffsetSample{}, false
}

type serversRequest struct {
	servers []string
	commit  func() error
	reply   chan error // buffered: the loop never blocks on it
}

// SetServers replaces the configured servers with servers, the whole new
// list in order of preference (see members.go for what adding and removing
// do). The change is decided by the manager's loop: refused (an error
// wrapping ErrServersRefused) when CheckServers says so; otherwise commit,
// if not nil, is called from the loop before the change is applied (to
// record it durably: an error from commit cancels the change and is
// returned), then the change is applied in one decision, and SetServers
// returns nil. It needs no authority: a node without it follows the list
// of the node that has it. ctx bounds the wait for the loop.
func (m *Manager) SetServers(ctx context.Context, servers []string, commit func() error) error {
	if err := validateServers(servers); err != nil {
		return fmt.Errorf("%w: %v", ErrServersRefused, err)
	}
	if !m.running.Load() {
		return errors.New("set servers: manager is not running")
	}
	req := serversRequest{servers: slices.Clone(servers), commit: commit, reply: make(chan error, 1)}
	select {
	case m.members <- req:
	case <-m.done:
		return errors.New("set servers: manager has stopped")
	case <-ctx.Done():
		return fmt.Errorf("set servers: %w", ctx.Err())
	}
	return <-req.reply
}

// changeServers carries out a SetServers request in Run's goroutine.
func (m *Manager) changeServers(ctx context.Context, st State, r serversRequest) State {
	if err := CheckServers(st, r.servers); err != nil {
		r.reply <- err
		return st
	}
	if r.commit != nil {
		if err := r.commit(); err != nil {
			r.reply <- fmt.Errorf("set servers: %w", err)
			return st
		}
	}
	// Decided alone: results carried over from the last step (a
	// switchover's outcome) wait for the next one, so the decision sees
	// the state CheckServers saw.
	carry := m.carry
	m.carry, m.refused = nil, ""
	st = m.step(ctx, st, []Observation{{Kind: ObsServers, Servers: r.servers, At: time.Now()}}, nil)
	m.carry = append(carry, m.carry...)
	if m.refused != "" {
		// Not reached: CheckServers on the same state said yes. Should the
		// rules ever part, the caller hears it.
		r.reply <- fmt.Errorf("%w: %s", ErrServersRefused, m.refused)
		return st
	}
	r.reply <- nil
	return st
}
