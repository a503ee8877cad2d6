package main

// The VIP pair's part of the event history: this proxy's role changes
// (vip.Change) and the other proxy's adverts starting or stopping (from
// successive samples of vip.Node.Peer), both pure functions of what
// pair.run observes; pair.run logs and records them.

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/events"
	"github.com/redis-proxy/redis-proxy/vip"
)

// vipEvent is the event of one of this proxy's role changes. vipAddr is the
// VIP ("" when none is managed), epoch the replication epoch, peer what
// was last known of the other proxy before the change.
func vipEvent(c vip.Change, vipAddr string, epoch uint64, peer peerSample) events.Event {
	ev := events.Event{Time: c.At, Epoch: epoch, Level: slog.LevelInfo}
	the := "the VIP"
	if vipAddr != "" {
		the += " " + vipAddr
	}
	switch {
	case c.To == vip.Master:
		ev.Kind, ev.Message = events.VIPMaster, "this proxy holds "+the+" and decides for replication: "+c.Reason
		switch {
		case c.Reason != "master down":
		case peer.ok && peer.peer.Role == vip.Init && peer.peer.Priority == 0 && !peer.peer.HeardAt.After(c.At):
			ev.Message = "this proxy took " + the + ", handed over by the other proxy " + peer.peer.Addr.String() + " (it is shutting down)"
		default:
			ev.Level, ev.Message = slog.LevelWarn, "this proxy took "+the+": no advert from a proxy holding it (master down)"
		}
	case c.From == vip.Master && c.To == vip.Backup:
		// Only a master that hears a higher-ranked master steps down to
		// backup: a preemption, or two holders after a partition healed
		// (this side cannot tell which).
		ev.Kind, ev.Level = events.VIPYielded, slog.LevelWarn
		ev.Message = "this proxy gave " + the + " up to a higher-ranked proxy that claims it too (a preemption, or two holders after a partition): " + c.Reason
	case c.To == vip.Backup:
		ev.Kind, ev.Message = events.VIPBackup, "this proxy is the backup: "+c.Reason
	case c.To == vip.Fault:
		ev.Kind, ev.Level, ev.Message = events.VIPFault, slog.LevelWarn, "this proxy may not hold "+the+": "+c.Reason
	case c.To == vip.Releasing:
		ev.Kind, ev.Message = events.VIPReleased, "this proxy is handing "+the+" over: "+c.Reason
	case c.From == vip.Master || c.From == vip.Releasing:
		ev.Kind, ev.Message = events.VIPReleased, "this proxy released "+the+": "+c.Reason
	default:
		ev.Kind, ev.Message = events.VIPReleased, "this proxy left the election: "+c.Reason
	}
	return ev
}

// peerSample is what pair.run reads of the other proxy at one time.
type peerSample struct {
	at   time.Time
	peer vip.PeerInfo
	ok   bool     // an advert was ever heard
	role vip.Role // this proxy's role
}

// hearing: the other proxy's adverts arrive (the newest less than silence
// old: a backup takes over once its master is silent that long).
func (s peerSample) hearing(silence time.Duration) bool {
	return s.ok && s.at.Sub(s.peer.HeardAt) < silence
}

// peerEvent compares two samples: the other proxy heard after a silence (or
// for the first time) or in a new role, or its adverts stopped while it
// was a master, after silence without one (a master's master-down
// interval). Only a master advertises, so a silent peer is normal while
// this proxy holds the VIP; it is not reported as lost then, only when it
// stops advertising as master.
func peerEvent(prev, cur peerSample, silence time.Duration, epoch uint64) (events.Event, bool) {
	was, is := prev.hearing(silence), cur.hearing(silence)
	p := cur.peer
	ev := events.Event{Time: cur.at, Epoch: epoch, Level: slog.LevelInfo, Kind: events.PeerHeard, Servers: []string{p.Addr.String()}}
	switch {
	case is && (!was || p.Role != prev.peer.Role || (p.Priority == 0) != (prev.peer.Priority == 0)):
		health := ""
		if !p.Healthy {
			health = ", reaching no Redis"
		}
		switch {
		case p.Role == vip.Master && p.Priority > 0 && cur.role == vip.Master:
			// This proxy still holds the VIP: the other one is outranked
			// (or this one would have stepped down) and yields.
			ev.Kind, ev.Level = events.SplitBrain, slog.LevelWarn
			ev.Message = fmt.Sprintf("split brain: both proxies hold the VIP; the other proxy %s (priority %d%s) is outranked and yields", p.Addr, p.Priority, health)
		case p.Role == vip.Master && p.Priority > 0:
			ev.Message = fmt.Sprintf("the other proxy %s holds the VIP (priority %d%s)", p.Addr, p.Priority, health)
		case p.Role == vip.Init:
			ev.Message = fmt.Sprintf("the other proxy %s is shutting down and hands the VIP over", p.Addr)
		default:
			ev.Message = fmt.Sprintf("the other proxy %s gave the VIP up (it advertises %s)", p.Addr, p.Role)
		}
		return ev, true
	case was && !is && prev.peer.Role == vip.Master && prev.peer.Priority > 0:
		ev.Kind, ev.Level = events.PeerLost, slog.LevelWarn
		ev.Message = fmt.Sprintf("no advert from the other proxy %s for %s (it held the VIP)", p.Addr, cur.at.Sub(p.HeardAt).Round(time.Millisecond))
		return ev, true
	}
	return events.Event{}, false
}
