package replication

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/events"
)

// history derives the operator's events (see package events) from the
// actions the manager applies: what Decide decided, read with the state it
// returned with them. It performs no I/O and never reads the clock; only
// the manager's Run goroutine uses it.
type history struct {
	lostAt  time.Time        // when the master was declared lost: splits a failover into detection and promotion
	pending map[string]int64 // bytes a REPLICAOF sent to a master will discard, until its result is known
}

// noted is an event and the log line that reports it. The message of the
// log line is short and stable (tests and operators search for it); the
// event's Message is the sentence for a human.
type noted struct {
	ev    events.Event
	msg   string
	attrs []any
}

// eventMessages are the log messages of Decide's events.
var eventMessages = map[string]string{
	EventDown:            "server down",
	EventUp:              "server up",
	EventDiscovered:      "unconfigured replica discovered",
	EventForgotten:       "discovered replica forgotten",
	EventMaster:          "master confirmed",
	EventMasterChanged:   "master changed",
	EventMasterLost:      "master lost",
	EventNoMaster:        "no master",
	EventPromoteFailed:   "promotion failed",
	EventActionFailed:    "action failed",
	EventDataLost:        "replication stream discarded",
	EventSwitchoverAbort: "switchover aborted",
	EventStall:           "stall detected",
	EventStallOver:       "acting again after stall",
	EventBusy:            "server busy running a long command: alive",
	EventAdded:           "server added: it is made a replica of the master and serves reads once it has caught up",
	EventRemoved:         "server removed: no longer routed or checked",
	EventCaughtUp:        "added server caught up with the master: it may serve reads",
	EventLagging:         "replica lagging: out of the read rotation until it is within the bound again",
	EventReplicaCaughtUp: "replica caught up: back in the read rotation",
	EventPromotionHeld:   "promotion held: a replica that may hold acknowledged writes is unreachable",
	EventAckedAtRisk:     "promoted without a replica that may hold acknowledged writes: they may be lost",
}

// note returns the event for a, an action Decide returned with st, at now;
// false if a is not one (a publication, a switchover's start or refusal,
// which its caller hears about).
func (h *history) note(st State, a Action, now time.Time) (noted, bool) {
	ev := events.Event{Time: now, Epoch: st.Epoch, Level: slog.LevelInfo}
	if a.Addr != "" {
		ev.Servers = []string{a.Addr}
	}
	n := noted{attrs: []any{"addr", a.Addr}}
	switch a.Kind {
	case ActPromote:
		ev.Kind, ev.Level, n.msg = events.Promotion, slog.LevelWarn, "promoting replica"
		ev.Message = "promoting " + a.Addr + " to master (REPLICAOF NO ONE)"
		if from := st.Promotion.From; from != "" && st.Promotion.Target == a.Addr {
			ev.Message += ": " + from + " was lost"
		}
	case ActReplicaOf:
		n.attrs = append(n.attrs, "master", a.Master)
		ev.Servers = []string{a.Addr, a.Master}
		wasMaster := a.LostBytes > 0 || st.Nodes[a.Addr].Info.Role == RoleMaster
		lost := ""
		if a.LostBytes > 0 {
			n.attrs = append(n.attrs, "lost_bytes", a.LostBytes)
			ev.Level = slog.LevelWarn
			lost = fmt.Sprintf("; the %d bytes of writes it has that %s never got will be discarded", a.LostBytes, a.Master)
			if h.pending == nil {
				h.pending = map[string]int64{}
			}
			h.pending[a.Addr] = a.LostBytes
		}
		switch {
		case wasMaster && a.Addr == st.LastFailover.From:
			ev.Kind = events.Demotion
			ev.Message = "old master " + a.Addr + " is back: made a replica of " + a.Master + lost
		case wasMaster && st.Nodes[a.Addr].Joining:
			// A server added at run time that ran as a master of its own:
			// its data is replaced by design, no split brain.
			ev.Kind = events.Repoint
			ev.Message = "added server " + a.Addr + " (a master of its own until now) pointed at the master " + a.Master
		case wasMaster:
			ev.Kind, ev.Level = events.SplitBrain, slog.LevelWarn
			ev.Message = "split brain resolved: " + a.Addr + " was a master too; made a replica of " + a.Master + lost
		default:
			ev.Kind = events.Repoint
			ev.Message = a.Addr + " pointed at the master " + a.Master
		}
		switch {
		case a.LostBytes > 0:
			n.msg = "demoting master; its unreplicated writes will be discarded"
		case wasMaster:
			n.msg = "demoting master"
		default:
			n.msg = "pointing server at master"
		}
	case ActEvent:
		h.fromDecide(st, a, &ev, &n)
	default:
		return noted{}, false
	}
	n.ev = ev
	n.attrs = append(n.attrs, "event", ev.Kind, "epoch", ev.Epoch)
	if ev.Duration > 0 {
		n.attrs = append(n.attrs, "duration", ev.Duration)
	}
	return n, true
}

// fromDecide fills in the event of one of Decide's ActEvent.
func (h *history) fromDecide(st State, a Action, ev *events.Event, n *noted) {
	n.msg = eventMessages[a.Event]
	if n.msg == "" {
		n.msg = a.Event
	}
	n.attrs = append(n.attrs, "detail", a.Detail)
	ev.Kind = a.Event
	ev.Message = n.msg
	if a.Addr != "" {
		ev.Message = a.Addr + ": " + n.msg
	}
	if a.Detail != "" {
		ev.Message += " (" + tidy(a.Detail) + ")"
	}
	switch a.Event {
	case EventDown, EventMasterLost, EventNoMaster, EventPromoteFailed, EventActionFailed, EventDataLost, EventSwitchoverAbort, EventStall,
		EventLagging, EventPromotionHeld, EventAckedAtRisk:
		ev.Level = slog.LevelWarn
	}
	switch a.Event {
	case EventDown:
		// A failed check's error starts "check ADDR: ".
		ev.Kind, ev.Message = events.Down, a.Addr+" is down: "+strings.TrimPrefix(a.Detail, "check "+a.Addr+": ")
	case EventUp:
		ev.Kind, ev.Message = events.Up, a.Addr+" is up"
	case EventMasterLost:
		h.lostAt = ev.Time
		ev.Kind, ev.Message = events.MasterLost, "master "+a.Addr+" lost: "+a.Detail
	case EventNoMaster:
		ev.Kind, ev.Message = events.NoMaster, "no master: "+a.Detail
	case EventMaster:
		ev.Kind, ev.Message = events.Master, fmt.Sprintf("%s is master (epoch %d)", a.Addr, st.Epoch)
	case EventDataLost:
		bytes := h.pending[a.Addr]
		delete(h.pending, a.Addr)
		ev.Kind = events.LostBytes
		ev.Message = fmt.Sprintf("%d bytes of writes discarded on %s: it had them as a master, the master %s never got them", bytes, a.Addr, st.Master)
		if st.Master == "" {
			ev.Message = fmt.Sprintf("%d bytes of writes discarded on %s: it had them as a master, the new master never got them", bytes, a.Addr)
		}
	case EventMasterChanged:
		h.masterChanged(st, a, ev, n)
	case EventLagging, EventReplicaCaughtUp:
		ev.Message = a.Addr + " " + tidy(a.Detail)
	case EventPromotionHeld:
		ev.Message = "promotion of " + a.Addr + " held: " + tidy(a.Detail)
	case EventAckedAtRisk:
		ev.Message = "promoting " + a.Addr + " " + tidy(a.Detail)
	}
}

// masterChanged describes a new master from the failover Decide recorded.
func (h *history) masterChanged(st State, a Action, ev *events.Event, n *noted) {
	f := st.LastFailover
	if f.To != a.Addr {
		return // not Decide's record of it: keep the generic message
	}
	ev.Servers = []string{f.From, f.To}
	if f.From == "" {
		ev.Servers = []string{f.To}
	}
	ev.Epoch, ev.Duration = f.Epoch, f.Duration
	from := f.From
	if from == "" {
		from = "none"
	}
	switch f.Kind {
	case "failover":
		ev.Kind, ev.Level = events.Failover, slog.LevelWarn
		ev.Message = fmt.Sprintf("failover from %s to %s, epoch %d: %s without a master", from, f.To, f.Epoch, round(f.Duration))
		if !h.lostAt.IsZero() && !h.lostAt.Before(f.Began) && !h.lostAt.After(f.Completed) {
			ev.Message += fmt.Sprintf(" (lost detected after %s, new master confirmed %s later)",
				round(h.lostAt.Sub(f.Began)), round(f.Completed.Sub(h.lostAt)))
		}
	case "switchover":
		ev.Kind = events.Switchover
		ev.Message = fmt.Sprintf("switchover from %s to %s, epoch %d: writes held %s", from, f.To, f.Epoch, round(f.Duration))
	case "adopted": // the first server back after all were lost
		ev.Kind, ev.Level = events.MasterChanged, slog.LevelWarn
		ev.Message = fmt.Sprintf("%s is master, epoch %d: the first server back, after %s without a master (it was %s)", f.To, f.Epoch, round(f.Duration), from)
	default: // observed: another proxy decided
		ev.Kind = events.MasterChanged
		ev.Message = fmt.Sprintf("%s is master, epoch %d, as observed (this proxy has no authority; it was %s)", f.To, f.Epoch, from)
	}
	h.lostAt = time.Time{}
	n.attrs = append(n.attrs, "from", f.From, "kind", f.Kind)
}

// round shortens a duration for a message: milliseconds.
func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

var durationText = regexp.MustCompile(`[0-9][0-9.hmsµun]*`)

// tidy rounds the durations in one of Decide's details to milliseconds,
// for a human ("after 491.834402ms" reads "after 492ms").
func tidy(detail string) string {
	return durationText.ReplaceAllStringFunc(detail, func(w string) string {
		d, err := time.ParseDuration(w)
		if err != nil || d < time.Millisecond {
			return w
		}
		return round(d).String()
	})
}
