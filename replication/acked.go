package replication

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// A failover that keeps acknowledged writes: State.WriteAcks
// (Config.WriteAcks, REDIS_PROXY_WRITE_ACKS). Zero: the data path
// acknowledges a write once the master has it, and a failover promotes the
// best reachable replica at once (betterReplica).
//
// With N >= 1 the data path acknowledges a write only once WAIT says N
// replicas have it. The replicas of one master hold prefixes of one
// stream, so of the replicas linked to the master when it died, the one
// with the largest offset holds every acknowledged write; but it may be
// unreachable when the failover is decided. So:
//
//   - At every valid check of the master the manager notes which configured
//     replicas were linked to it (State.Linked: listed online in its INFO
//     replication, or saying so themselves) and the offset the master says
//     each acknowledged.
//   - A failover orders candidates by offset first, then replica-priority
//     (betterDurable): a replica holding acknowledged writes another lacks
//     is promoted even if the operator preferred the other.
//   - It does not promote the best reachable replica B while a replica R
//     linked at the master's last valid check, promotable (not joining,
//     replica-priority not 0), is not among the candidates (down, not
//     answering, just acted on) and B's offset is below R's last known
//     offset — the larger of what the master said R acknowledged and R's
//     newest check — or that offset is unknown (R never reported one, or
//     in another history). It waits for R, which may be the only server
//     with some acknowledged writes (event "promotion-held"), for at most
//     PromotionWait from the first decision that held it; R returning in
//     time is a candidate like any other. After PromotionWait, B is
//     promoted and the event "acked-writes-at-risk" names every linked
//     replica whose last known offset B does not reach, with the offsets:
//     acknowledged writes may be lost. The same event reports a linked
//     replica that was never waited for because it may not be promoted.
//
// The guarantee: when the failover promotes without such an event, the new
// master holds every write acknowledged (by any N >= 1 configured
// replicas) up to the offsets the master and the replicas last reported
// before it was lost. Not covered: a write acknowledged only by replicas
// that failed together with the master, after the last of those reports
// (within about one check interval of the crash); a write acknowledged by
// a replica that is not configured (discovered: WAIT counts every
// replica, the manager promotes only configured ones).

// DefaultPromotionWait is the PromotionWait of a zero Config and State.
const DefaultPromotionWait = 5 * time.Second

// LinkedReplica is a configured replica linked to the master at its last
// valid check (State.Linked).
type LinkedReplica struct {
	Addr   string
	ReplID string // the master's replication ID at that check
	// Acked is the offset the master listed it at (the replica's last
	// acknowledgement); -1 if the master did not list it.
	Acked int64
	// Promotable: neither joining nor known to have replica-priority 0.
	Promotable bool
}

func (st State) promotionWait() time.Duration {
	if st.PromotionWait > 0 {
		return st.PromotionWait
	}
	return DefaultPromotionWait
}

// noteLinked records the replicas linked to the master from its newest
// check, if that check was valid and newer than the last one noted. It
// runs once the master of the decision is known.
func (d *decider) noteLinked() {
	st := d.st
	if st.WriteAcks <= 0 || st.Master == "" {
		return
	}
	m := st.Nodes[st.Master]
	if !m.fresh() || m.Info.Role != RoleMaster || !m.LastOK.After(st.LinkedAt) {
		return
	}
	var linked []LinkedReplica
	for _, a := range st.Servers {
		if a == st.Master {
			continue
		}
		n := st.Nodes[a]
		l := LinkedReplica{Addr: a, ReplID: m.Info.ReplID, Acked: -1,
			Promotable: !n.Joining && (n.Info.Role == "" || n.Info.Priority != 0)}
		listed := false
		for _, r := range m.Info.Replicas {
			if r.State == "online" && (r.Addr == a || (n.Remote != "" && r.Addr == n.Remote)) {
				listed, l.Acked = true, r.Offset
				break
			}
		}
		if listed || (n.fresh() && n.Info.LinkUp && d.replicaOf(n, m)) {
			linked = append(linked, l)
		}
	}
	st.Linked, st.LinkedAt = linked, m.LastOK
}

// lastKnown is the largest offset r is known to have reached in the
// history of the master it was linked to; false if none is known.
func (d *decider) lastKnown(r LinkedReplica) (int64, bool) {
	off := r.Acked
	if n := d.st.Nodes[r.Addr]; n.Info.ReplID == r.ReplID && n.Info.Offset > off {
		off = n.Info.Offset
	}
	return off, off >= 0
}

// atRisk lists the linked replicas other than best whose last known
// offset best does not reach, or whose offset is unknown or of another
// history, in the order noted.
func (d *decider) atRisk(best Node) []LinkedReplica {
	var out []LinkedReplica
	for _, r := range d.st.Linked {
		if r.Addr == best.Addr || !slices.Contains(d.st.Servers, r.Addr) {
			continue
		}
		if off, ok := d.lastKnown(r); !ok || best.Info.ReplID != r.ReplID || best.Info.Offset < off {
			out = append(out, r)
		}
	}
	return out
}

// holdForAcked decides whether the promotion of best, the candidate a
// failover chose, waits for a replica that may hold acknowledged writes
// best lacks (true: Waiting says why); when it goes ahead while such a
// replica exists, it reports the risk first. candidates are the replicas
// that could be promoted now.
func (d *decider) holdForAcked(best Node, candidates []Node) bool {
	st := d.st
	if st.WriteAcks <= 0 {
		return false
	}
	risk := d.atRisk(best)
	var wait []string
	for _, r := range risk {
		if r.Promotable && !slices.ContainsFunc(candidates, func(c Node) bool { return c.Addr == r.Addr }) {
			wait = append(wait, d.describeLinked(r))
		}
	}
	if len(wait) > 0 {
		if st.AckWait.IsZero() {
			st.AckWait = d.now
		}
		if d.now.Sub(st.AckWait) < st.promotionWait() {
			why := fmt.Sprintf("waiting up to %v for %s: it may hold acknowledged writes %s (offset %d) lacks",
				st.promotionWait(), strings.Join(wait, ", "), best.Addr, best.Info.Offset)
			if st.Waiting != why {
				st.Waiting = why
				d.event(EventPromotionHeld, best.Addr, "%s", why)
			}
			return true
		}
	}
	if len(risk) > 0 {
		var desc []string
		for _, r := range risk {
			desc = append(desc, d.describeLinked(r))
		}
		waited := ""
		if !st.AckWait.IsZero() {
			waited = fmt.Sprintf("; waited %v", d.now.Sub(st.AckWait))
		}
		d.event(EventAckedAtRisk, best.Addr, "at offset %d without %s, linked to the master: acknowledged writes it lacks may be lost%s",
			best.Info.Offset, strings.Join(desc, ", "), waited)
	}
	return false
}

// describeLinked renders r with its last known offset for an event.
func (d *decider) describeLinked(r LinkedReplica) string {
	if off, ok := d.lastKnown(r); ok {
		return fmt.Sprintf("%s (offset %d)", r.Addr, off)
	}
	return r.Addr + " (offset unknown)"
}

// betterDurable orders promotion candidates when writes are acknowledged
// by replicas: the larger replication offset first (it holds every write
// another candidate acknowledged), then as betterReplica.
func betterDurable(a, b Node) int {
	if a.Info.Offset != b.Info.Offset {
		return cmpInt(b.Info.Offset, a.Info.Offset)
	}
	return betterReplica(a, b)
}
