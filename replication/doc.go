// Package replication decides which Redis server is master and, when it has
// authority, makes the servers follow that decision. It publishes the
// result as a Topology for the data path.
//
// # Shape
//
// The decision core is pure:
//
//	func Decide(st State, obs []Observation, now time.Time) (State, []Action)
//
// It performs no I/O, never reads the clock and never modifies st. Manager
// is the loop around it: one goroutine per server checks it every
// CheckInterval (ROLE and INFO replication, pipelined, over a control
// connection whose dial, read and write are bounded by a timeout, so a
// stopped server fails its checks like a dead one), the manager calls
// Decide with what arrived, applies the actions in order (publish,
// REPLICAOF NO ONE, REPLICAOF host port, a planned switchover) and feeds
// their results back: each action's outcome, then a fresh check of the
// server acted on. The golden files in testdata/ show the decisions step by
// step.
//
// # Contract
//
//   - A server is down after DownAfter without a valid reply, counted from
//     the moment its last valid check was sent. LOADING and MASTERDOWN
//     replies are valid (the server is alive) but say nothing of its role;
//     other error replies (NOAUTH, …) and transport errors are failures.
//   - Only silence while the manager runs counts. A gap of more than
//     max(DownAfter/2, CheckInterval) between two decisions (the process
//     frozen by docker pause or SIGSTOP, the loop blocked) is a stall, logged
//     "stall detected": servers that were up get their down clock restarted
//     from the decision that found it, servers already down stay down, and
//     nothing is promoted, demoted or re-pointed (switchovers are refused)
//     until a full round of checks sent after that decision has returned
//     (at least CheckInterval, so the VIP layer thawed with it can hear a
//     peer that took over), or DownAfter has passed since it. A master that
//     really died meanwhile is failed over DownAfter after the thaw.
//   - Topology.Master is "" whenever there is no confirmed master: at start
//     until every configured server has answered or is down, from the
//     moment a master is lost until its successor is confirmed, during a
//     switchover. The proxy holds client commands meanwhile.
//   - Topology.Replicas are configured replicas of Master that say their
//     link is up, and are not down, in configured order. With
//     MaxReplicaLag, only those a check shows holding everything the master
//     held MaxReplicaLag before: every published replica holds what the
//     master held MaxReplicaLag + CheckInterval before (lag.go,
//     Config.ReplicaStaleness).
//   - onChange is called from the manager's goroutine, never concurrently
//     with itself, each time the published Topology changes.
//   - Without authority (Config.Authority, SetAuthority) no server is ever
//     changed: a master is published only while exactly one configured
//     server is an up master.
//
// # Decisions (with authority)
//
//   - At start, what exists is honoured. One master: it is kept with its
//     replicas, no data moves. Several masters: a master whose replication
//     history another server forked from (its ID is that server's
//     master_replid2) holds older data and is not chosen; among the rest the
//     largest offset, then the first configured wins. The others become its
//     replicas. Because lineage comes from the servers, the choice survives
//     a restart of the proxy. No master but replicas: the best replica is
//     promoted. Nothing reachable: no master; keep checking.
//   - Master down: the best replica is promoted — lowest replica-priority
//     (0 never), then largest offset, then smallest run id — with REPLICAOF
//     NO ONE, confirmed by ROLE, every other configured server is pointed at
//     it, and only then it is published. With WriteAcks (writes
//     acknowledged by replicas), the largest offset comes first, and the
//     promotion waits up to PromotionWait for an unreachable replica that
//     was linked to the master and may hold acknowledged writes the best
//     reachable one lacks (acked.go).
//   - The epoch (Topology.Epoch, Status.Epoch) increases by one on every
//     promotion, and whenever a different server becomes master than the
//     last one (the first server back after all died, a change observed
//     without authority). It starts at 0 with each process.
//   - A server that says it is master but is not the chosen one (an old
//     master that returns, the loser of a split) is made a replica before it
//     is ever routable. The stream bytes it holds beyond the point the
//     master's history forked from its own (its master_repl_offset minus
//     the new master's second_repl_offset-1 for the shared ID; all of it if
//     the histories are unrelated) are reported as lost: logged, in
//     Status.LostBytes and in Status.LastFailover.LostBytes.
//   - All servers down: the first server back is master (promoted if it
//     comes back as a replica); the others follow as they return.
//   - Flapping: a master is failed over only after DownAfter without any
//     valid reply — a master that misses checks but answers within
//     DownAfter is kept — and a master that was replaced is never restored
//     by returning: it is demoted. A promotion that is not confirmed within
//     DownAfter is abandoned and another candidate may be chosen.
//   - Replicas that a master reports but that are not configured are
//     checked and shown in Status (Discovered), never routed, promoted or
//     re-pointed.
//
// # Changing the servers (members.go)
//
//   - SetServers replaces the configured servers at run time, decided like
//     everything else (Observation ObsServers; CheckServers is the rule).
//     Removing the confirmed master, or a server a failover or switchover
//     is moving, is refused; so is an empty list.
//   - An added server is checked and made a replica of the master (its own
//     data is replaced, and not counted as lost). Until a check finds it a
//     replica of the master with its link up, holding everything the master
//     held JoinMaxLag before, it is joining: not routed for reads, never
//     promoted or a switchover target, not waited for before a master is
//     chosen, and not counted as a second master without authority. An
//     unreachable server is accepted and shown down until it answers.
//   - A removed server leaves the published topology in the decision that
//     removes it; then the manager stops checking it. It is never re-pointed
//     or touched, and not rediscovered while it still replicates.
//
// Not decided here: whether this proxy should have authority (the VIP layer
// decides, through SetAuthority). A proxy that cannot reach the master but
// whose replicas can will fail over; the VIP layer must ensure only one
// proxy holds authority.
//
// # Typical use
//
//	m, err := replication.NewManager(replication.Config{
//		Servers:   []string{"redis-1:6379", "redis-2:6379", "redis-3:6379"},
//		Authority: true,
//		Logger:    logger,
//		Pauser:    proxy, // optional: drain in-flight writes around Switchover
//	}, proxy.SetTopology)
//	if err != nil {
//		return err
//	}
//	go m.Run(ctx)
//	// On VIP changes: m.SetAuthority(holding)
//	// Operator: res, err := m.Switchover(ctx, "redis-2:6379")
//	// err = m.SetServers(ctx, []string{"redis-1:6379", "redis-2:6379", "redis-3:6379", "redis-4:6379"}, persist)
//	// Health: json.Marshal(m.Status())
//
// During Switchover, writes a client sent straight to the old master while
// it was paused are refused with READONLY after the switch (never
// acknowledged, so never lost); a proxy that retries on READONLY against
// the new master hides this from clients.
package replication
