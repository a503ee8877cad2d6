// Package vip elects which proxy of an active/standby pair holds the
// virtual IP, and makes the interface agree.
//
// # Contract
//
// The election is VRRP-like (RFC 5798), over authenticated unicast UDP:
//
//   - Roles: INIT → BACKUP ⇄ MASTER, and FAULT; MASTER → RELEASING → INIT on
//     a graceful stop. Only the master sends adverts, every Interval
//     (default 200ms), to each peer (default port 5405).
//   - A backup that hears no advert for 3 × Interval + skew takes over, where
//     skew = (256 − Priority) × Interval / 256: MasterDownInterval and
//     SkewTime. With the defaults (priority 100) that is ≈722ms.
//   - Rank: a healthy node beats an unhealthy one; then higher Priority
//     (1–254); then, between two masters, the higher address.
//   - Preemption (default on): a backup that outranks the master's health and
//     priority takes over, after PreemptDelay if set. NoPreempt keeps it
//     backup — except against an unhealthy master, which always yields to a
//     healthy backup.
//   - Graceful stop (cancel Run's context): the master hands the VIP over.
//     It turns RELEASING (no longer master: IsMaster is false) but keeps the
//     VIP, and sends a priority-0 advert at once and every Interval after;
//     the backup takes over after its skew time only (≈122ms at priority
//     100). On the new master's first advert the old one removes the VIP
//     and Run returns, so some node holds the VIP throughout (both, for
//     about a one-way trip; clients follow the new master's GARPs). Without
//     a claim it removes the VIP after HandoverTimeout (default ≈1s: a
//     priority-1 peer's master-down interval plus one Interval). It neither
//     re-announces nor restores the VIP, nor contests anyone, meanwhile. A
//     backup (or faulty) node stops at once. A killed node stops
//     advertising and is replaced after the master-down interval; the VIP
//     it left on its interface is removed when it starts again.
//   - Tracking: SetHealthy(false) demotes the node below every healthy one
//     (TrackDemote, the default) or puts it in FAULT (TrackFault).
//   - Payload: every advert carries main's (epoch, master); a node adopts a
//     peer's payload when its epoch is higher, so whoever takes over
//     advertises the inherited decision. Payload and Peer expose it.
//   - Membership: main may give the node a list of servers with a version
//     (SetMembership); every advert carries it, and Peer returns the one the
//     peer sent. The node neither interprets nor adopts it: main decides.
//     It is bounded (MaxMembershipLen) so an advert stays one datagram.
//   - Adverts are signed with HMAC-SHA256 (Secret, required with a VIP) and
//     carry a per-process boot id, an increasing sequence number and the
//     sender's clock (ReplayWindow). Every rejected packet is counted by
//     Reason in Stats; none changes state. Packets from an address that is
//     not one of Peers (or from another port, for a peer given with one)
//     are dropped before they are decoded (ReasonNotPeer).
//   - Floods: the advert socket asks for a DefaultRecvBuffer (4 MiB)
//     receive buffer, past net.core.rmem_max with CAP_NET_ADMIN
//     (Stats.RecvBuffer). The node reads in batches and rejects without
//     allocating; a datagram that forges a peer's address costs at most one
//     HMAC. Before it acts on a timer it reads every datagram that arrived
//     before the timer fired (by the kernel's receive time), so an advert
//     queued behind a flood is handled late but never missed. Datagrams the
//     kernel drops because the queue is full (Stats.RecvDropped) may have
//     been the master's adverts: a backup then defers its takeover as if it
//     had just heard the master, for at most DefaultLossHold (ten
//     master-down intervals, ≈7.2s) after it last did, and counts each
//     deferral (Stats.TakeoverDeferrals, logged rate-limited). So a flood
//     moves the VIP only if it lets no advert through for that long, and a
//     master that dies while the backup's queue overflows is replaced up to
//     that much later.
//   - The master adds the VIP with netlink, announces it with GARPCount
//     gratuitous ARPs GARPSpacing apart and one more every GARPRefresh. A
//     reconcile loop (netlink address updates plus every ReconcileInterval)
//     restores the VIP on a master and removes it from a non-master.
//   - Split brain (two masters, e.g. after a partition heals): the outranked
//     one removes the VIP and sends a priority-0 advert; the other keeps it,
//     answers with an advert and sends the GARP burst again, so neighbours
//     that followed the loser's GARPs come back at once rather than at the
//     next refresh. It re-announces when a contest starts (a lower-ranked
//     master's advert after a master-down interval without one: once, however
//     long the rival keeps advertising) and when a peer releases (priority 0),
//     unless its own burst is still going out.
//
// The decisions are the pure function Step(State, Event, now) → (State,
// []Effect): no I/O, no clock. Node is the loop that feeds it events
// (timers, adverts, health) and applies its effects; it logs each transition
// once ("vip claimed", "vip handover: waiting for the peer to claim", "vip
// released", "became backup", "entered fault"). One goroutine runs Step,
// the timers and the reading of adverts; another only waits for the socket
// to be readable.
//
// IsMaster turns true only after the VIP is on the interface and false as
// soon as the node decides to step down, before the VIP is removed; a
// Change from Subscribe arrives after its effects are applied. So main can
// gate topology changes on IsMaster: it is never true while this node lacks
// the VIP. The converse does not hold during a graceful handover: the VIP
// outlives IsMaster until the peer claims it. (Two nodes that cannot hear
// each other are both master; VRRP cannot prevent that, and the payload
// epoch is the fencing token for it.)
//
// Limits: IPv4 VIPs only (no unsolicited neighbour advertisements for
// IPv6); adverts are not TTL-checked (authentication is by HMAC only), so
// an attacker on the segment can forge a peer's source address and make
// each datagram cost a MAC; node clocks must agree within ReplayWindow.
//
// Owning a VIP needs CAP_NET_ADMIN and CAP_NET_RAW; CheckCapabilities names
// the missing ones, and New calls it when a VIP is configured.
//
// # Typical use
//
//	peers, err := vip.ParsePeers("10.0.0.2")
//	n, err := vip.New(vip.Config{
//		Interface: "eth0",
//		VIP:       netip.MustParsePrefix("10.0.0.100/24"),
//		Peers:     peers,
//		Priority:  150,
//		Secret:    secret,
//	}, logger)
//	changes, cancel := n.Subscribe()
//	defer cancel()
//	go func() { errc <- n.Run(ctx) }() // returns after the graceful handover:
//	// keep serving clients on the VIP until then
//	n.SetHealthy(redisReachable)
//	n.SetPayload(topo.Epoch, topo.Master)
//	if n.IsMaster() { /* this node may change the replication topology */ }
//	st := n.Stats() // export as metrics
package vip
