package replication

import (
	"fmt"
	"time"
)

// Replica reads within a bound: State.MaxReplicaLag (Config.MaxReplicaLag,
// REDIS_PROXY_MAX_REPLICA_LAG). Zero: no bound, replicas serve reads
// whenever their link is up.
//
// With a bound L, the master's position (replication ID and offset) is
// sampled at each of its valid checks (State.MasterOffsets, the buffer that
// also serves joining servers, members.go). A replica's newest valid check
// found it at offset o; the newest sample of the same history whose offset
// is at most o was taken at HeldAt (heldAt). Since a master's offset only
// grows, the master held no more at HeldAt than that sample says, and a
// replica's offset only grows too, so from that check on the replica holds
// everything the master held at HeldAt. A replica of the master that is up
// and linked stays in the read rotation (Topology.Replicas) only while
// now - HeldAt <= L at each decision (withinLag).
//
// The guarantee: every replica a decision publishes in the rotation holds
// everything the master held L before that decision. The manager decides
// every CheckInterval/2 and publishes at once a topology a replica has
// left, so at any moment a replica in the published rotation holds every
// write the master had acknowledged L + CheckInterval before, while the
// manager's decisions are not delayed (a stall of its process, an action
// in flight: each is bounded by the check timeout). A client that reads
// from the master for L + CheckInterval after its write reads its write
// from whichever replica it is routed to after that.
//
// The measure is conservative: it rounds up to the master's checks, so a
// replica that keeps up under a steady write load shows a lag of up to
// about two check intervals (measured: 107 to 202ms at 100ms checks), and
// would flap in and out of a bound that close. Config.Validate requires L
// >= 3 CheckInterval; choose four or more. While the master does not answer its checks,
// no replica can be shown current: all leave the rotation once its newest
// sample is L old. A replica that stops answering its own checks (SIGSTOP,
// a partition) keeps its last offset and leaves once writes go on past it,
// long before it is declared down when L < DownAfter.
//
// A replica with no sample to compare with yet (the first checks, a new
// master's history, just after its link came up) is kept out of the
// rotation without an event until one shows it within L; one judged
// behind (the samples reach back L and it holds less) is Lagging: event
// "replica-lagging" when it leaves, "replica-caught-up" when it returns.
// A replica that is down, whose link is down, or that no longer follows
// the master is out of the rotation for that reason, not lagging. After a
// stall of the manager (State.Holding) the samples are as old as the
// stall: replicas stay out until a check shows them current, but are not
// judged lagging on that evidence.

// lagVerdict is how a replica stands against the bound.
type lagVerdict uint8

const (
	lagUnknown lagVerdict = iota // no sample reaches back far enough to judge
	lagWithin                    // holds what the master held at most the bound before
	lagBeyond                    // holds less than what the master held the bound before
)

// heldAt returns the newest of the master's samples, in history replID,
// whose offset a replica at offset holds: the replica holds everything the
// master held when that sample's check was sent. false if there is none.
func heldAt(samples []OffsetSample, replID string, offset int64) (OffsetSample, bool) {
	var best OffsetSample
	ok := false
	for _, s := range samples {
		if s.ReplID == replID && s.Offset <= offset && (!ok || s.At.After(best.At)) {
			best, ok = s, true
		}
	}
	return best, ok
}

// replicaLag judges a replica in history replID at offset against maxLag
// at now: within if it holds what the master held at most maxLag before;
// beyond if not and a sample of that history at least maxLag old shows the
// samples reach back far enough to say so; unknown otherwise. held is what
// heldAt returned (zero if nothing).
func replicaLag(samples []OffsetSample, replID string, offset int64, now time.Time, maxLag time.Duration) (OffsetSample, lagVerdict) {
	held, ok := heldAt(samples, replID, offset)
	if ok && now.Sub(held.At) <= maxLag {
		return held, lagWithin
	}
	for _, s := range samples {
		if s.ReplID == replID && now.Sub(s.At) >= maxLag {
			return held, lagBeyond
		}
	}
	return held, lagUnknown
}

// withinLag reports whether n may serve reads as far as the bound on lag
// goes: no bound, or lag (run earlier in the decision) found it within.
func (d *decider) withinLag(n Node) bool {
	l := d.st.MaxReplicaLag
	return l <= 0 || (!n.HeldAt.IsZero() && d.now.Sub(n.HeldAt) <= l)
}

// lag judges every replica of the master that is up and linked against
// MaxReplicaLag, records HeldAt, and reports those leaving or rejoining
// the read rotation because of it. It runs after the master of this
// decision is known, before the topology is published.
func (d *decider) lag() {
	st := d.st
	if st.MaxReplicaLag <= 0 {
		return
	}
	var m Node
	if st.Master != "" {
		m = st.Nodes[st.Master]
		// The master's newest check, if it was valid and not sampled when
		// observed (it was not the confirmed master yet: the first
		// decision, a failover): replicas are compared with it at once.
		if k := len(st.MasterOffsets); m.fresh() && (k == 0 || st.MasterOffsets[k-1].At.Before(m.LastOK)) {
			d.sample(st.Master, m.Info, m.LastOK)
		}
	}
	for _, a := range st.Servers {
		n, ok := st.Nodes[a]
		if !ok {
			continue
		}
		if st.Master == "" || a == st.Master || !d.linked(n, m) {
			n.HeldAt, n.Lagging = time.Time{}, false
			st.Nodes[a] = n
			continue
		}
		held, v := replicaLag(st.MasterOffsets, n.Info.ReplID, n.Info.Offset, d.now, st.MaxReplicaLag)
		if v == lagBeyond && st.Holding {
			// The checks are as old as the manager's stall, not evidence
			// against the replica: out of the rotation until one shows it
			// current, but not judged lagging.
			v = lagUnknown
		}
		n.HeldAt = held.At
		switch {
		case v == lagBeyond && !n.Lagging:
			n.Lagging = true
			d.event(EventLagging, a, "%s", d.lagDetail(n, held))
		case v == lagWithin && n.Lagging:
			n.Lagging = false
			d.event(EventReplicaCaughtUp, a, "%s", d.lagDetail(n, held))
		}
		st.Nodes[a] = n
	}
}

// lagDetail says where n stands, for its event: what it holds against the
// master's samples, and the bound.
func (d *decider) lagDetail(n Node, held OffsetSample) string {
	st := d.st
	verdict := "back in the read rotation"
	if n.Lagging {
		verdict = "left the read rotation"
	}
	if held.At.IsZero() {
		oldest := d.now
		for _, s := range st.MasterOffsets {
			if s.ReplID == n.Info.ReplID && s.At.Before(oldest) {
				oldest = s.At
			}
		}
		return fmt.Sprintf("%s: at offset %d it holds less than the master held %v before (bound %v)",
			verdict, n.Info.Offset, d.now.Sub(oldest), st.MaxReplicaLag)
	}
	return fmt.Sprintf("%s: at offset %d it holds what the master held %v before, at offset %d (bound %v)",
		verdict, n.Info.Offset, d.now.Sub(held.At), held.Offset, st.MaxReplicaLag)
}
