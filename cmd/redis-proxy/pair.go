package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/internal/events"
	"github.com/redis-proxy/redis-proxy/replication"
	"github.com/redis-proxy/redis-proxy/vip"
)

// pairConfig builds the vip package's configuration, or nil when no peer
// is configured (a standalone proxy, which is always the authority). It
// checks only what the conversion needs; vip's Validate does the rest.
func (c Config) pairConfig() (*vip.Config, error) {
	if c.Peers == "" {
		if c.VIP != "" {
			return nil, &usageError{envPrefix + "_VIP is set but " + envPrefix + "_PEERS is empty: a VIP needs a peer proxy (want both or neither)"}
		}
		return nil, nil
	}
	peers, err := vip.ParsePeers(c.Peers)
	if err != nil {
		return nil, badVar("Peers", c.Peers, accepts("Peers"))
	}
	vc := &vip.Config{
		Interface:    c.VIPInterface,
		Peers:        peers,
		Port:         c.HeartbeatPort,
		Interval:     c.AdvertInterval,
		NoPreempt:    !c.Preempt,
		PreemptDelay: c.PreemptDelay,
		Secret:       []byte(c.HeartbeatSecret),
	}
	if c.Priority < 1 || c.Priority > 254 {
		return nil, badVar("Priority", fmt.Sprint(c.Priority), accepts("Priority"))
	}
	vc.Priority = uint8(c.Priority)
	if c.VIP != "" {
		p, err := netip.ParsePrefix(c.VIP)
		if err != nil {
			return nil, badVar("VIP", c.VIP, accepts("VIP"))
		}
		vc.VIP = p
	}
	if c.Address != "" {
		a, err := netip.ParseAddr(c.Address)
		if err != nil {
			return nil, badVar("Address", c.Address, accepts("Address"))
		}
		vc.Address = a
	}
	switch c.Track {
	case "demote":
		vc.Track = vip.TrackDemote
	case "fault":
		vc.Track = vip.TrackFault
	default:
		return nil, badVar("Track", c.Track, accepts("Track"))
	}
	if err := vc.Validate(); err != nil {
		return nil, c.varError(err)
	}
	return vc, nil
}

// pair couples a VIP node to the replication manager: only the node that
// holds the VIP (MASTER) may change the replication topology; a node that
// reaches no Redis tells the election (tracking); the current epoch and
// master ride on the adverts so a node taking over inherits them, and so
// does the membership (members.go).
type pair struct {
	node    *vip.Node
	mgr     *replication.Manager
	members *members
	log     *slog.Logger
	tick    time.Duration
	// The event history (nil: none): this proxy's role changes and the
	// other proxy heard or lost, each logged here with its kind; silence
	// is how long without an advert the peer counts as lost.
	history *events.Ring
	vipAddr string
	silence time.Duration
}

func (pr *pair) run(ctx context.Context) {
	changes, cancel := pr.node.Subscribe()
	defer cancel()
	pr.mgr.SetAuthority(pr.node.IsMaster())
	t := time.NewTicker(pr.tick)
	defer t.Stop()
	var heard peerSample
	for {
		select {
		case <-ctx.Done():
			pr.mgr.SetAuthority(false)
			return
		case c := <-changes:
			master := c.To == vip.Master
			if peer, ok := pr.node.Peer(); ok && master {
				// The previous holder's list first (its last advert): the
				// new authority must not act on an older one (re-point a
				// server just removed). At the same version, its list is
				// the one that held until now.
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				pr.members.adopt(actx, peer, false)
				cancel()
			}
			pr.mgr.SetAuthority(master)
			if pr.history == nil {
				pr.log.Info("replication authority", "authority", master, "vip_role", c.To.String(), "reason", c.Reason)
				continue
			}
			epoch := pr.mgr.Status().Epoch
			// What the other proxy says (or its silence) explains this
			// change, so it is recorded first, as seen by this proxy not
			// holding the VIP (before it took it, or once it gave it up);
			// but a yield or release (priority 0) heard since answers the
			// change: it waits for the next tick.
			cur := pr.samplePeer(c.At)
			cur.role = c.From
			if c.From == vip.Master {
				cur.role = c.To
			}
			if !cur.ok || cur.peer.Priority != 0 || !cur.peer.HeardAt.After(c.At) {
				heard = pr.notePeer(ctx, heard, cur, epoch)
			}
			ev := pr.history.Add(vipEvent(c, pr.vipAddr, epoch, heard))
			// The event's log line (the node logs the transition itself).
			pr.log.Log(ctx, ev.Level, "replication authority", "authority", master, "vip_role", c.To.String(), "reason", c.Reason,
				"event", ev.Kind, "epoch", epoch)
		case now := <-t.C:
			st := pr.mgr.Status()
			if pr.history != nil {
				heard = pr.notePeer(ctx, heard, pr.samplePeer(now), st.Epoch)
			}
			up := false
			for _, s := range st.Servers {
				up = up || s.Up
			}
			pr.node.SetHealthy(up)
			if peer, ok := pr.node.Peer(); ok {
				pr.mgr.InheritEpoch(peer.Payload.Epoch)
				pr.members.offer(peer, pr.node.IsMaster())
			}
			if st.Master != "" {
				if err := pr.node.SetPayload(st.Epoch, st.Master); err != nil {
					pr.log.Warn("advert payload", "err", err)
				}
			}
		}
	}
}

// samplePeer reads what this node knows of the other proxy, as of at.
func (pr *pair) samplePeer(at time.Time) peerSample {
	s := peerSample{at: at, role: pr.node.Role()}
	s.peer, s.ok = pr.node.Peer()
	return s
}

// notePeer records (and logs) the event of the other proxy's change from
// prev to cur, if any, and returns cur.
func (pr *pair) notePeer(ctx context.Context, prev, cur peerSample, epoch uint64) peerSample {
	if ev, ok := peerEvent(prev, cur, pr.silence, epoch); ok {
		pr.log.Log(ctx, ev.Level, strings.ReplaceAll(ev.Kind, "-", " "), "peer", cur.peer.Addr.String(), "peer_role", cur.peer.Role.String(),
			"peer_priority", cur.peer.Priority, "event", ev.Kind, "detail", ev.Message)
		pr.history.Add(ev)
	}
	return cur
}

// registerPairMetrics exports the election's state at scrape time.
func registerPairMetrics(reg prometheus.Registerer, n *vip.Node) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "redis_proxy_vip_master", Help: "1 while this node holds the virtual IP (VRRP MASTER).",
	}, func() float64 {
		if n.IsMaster() {
			return 1
		}
		return 0
	}))
	counter := func(name, help string, f func(vip.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(n.Stats())) }))
	}
	counter("redis_proxy_vip_transitions_total", "Election state changes.", func(s vip.Stats) uint64 { return s.Transitions })
	counter("redis_proxy_vip_adverts_sent_total", "Heartbeat adverts sent.", func(s vip.Stats) uint64 { return s.AdvertsSent })
	counter("redis_proxy_vip_adverts_received_total", "Heartbeat adverts accepted.", func(s vip.Stats) uint64 { return s.AdvertsReceived })
	for _, r := range vip.Reasons {
		r := r
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "redis_proxy_vip_adverts_rejected_total", Help: "Heartbeat packets dropped (not from a peer, forged, stale, replayed, malformed), by reason.",
			ConstLabels: prometheus.Labels{"reason": r.String()},
		}, func() float64 { return float64(n.Stats().Rejected[r]) }))
	}
	counter("redis_proxy_vip_garps_sent_total", "Gratuitous ARPs sent for the VIP.", func(s vip.Stats) uint64 { return s.GARPsSent })
	counter("redis_proxy_vip_recv_dropped_total", "Heartbeat datagrams the kernel dropped unread (receive queue full: a flood).",
		func(s vip.Stats) uint64 { return s.RecvDropped })
	counter("redis_proxy_vip_takeover_deferrals_total", "Times a backup put off its takeover because adverts may have been among dropped datagrams.",
		func(s vip.Stats) uint64 { return s.TakeoverDeferrals })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "redis_proxy_vip_recv_buffer_bytes", Help: "The heartbeat socket's receive buffer, as the kernel reports it.",
	}, func() float64 { return float64(n.Stats().RecvBuffer) }))
}
