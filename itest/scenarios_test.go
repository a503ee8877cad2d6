package itest

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// clientWorkers is the number of client connections writing through the VIP.
const clientWorkers = 2

// warmUp starts the client and waits for it to have written through the VIP.
func warmUp(t *testing.T, c *cluster, workers int) *load {
	t.Helper()
	l := startLoad(t, c.vip+":6379", workers)
	t0 := time.Now()
	if !l.waitWrites(100, 15*time.Second) {
		t.Fatalf("the client could not write through the VIP %s before the fault", c.vip)
	}
	time.Sleep(time.Until(t0.Add(1500 * time.Millisecond)))
	return l
}

// resumed waits until 100 more writes are acknowledged after a fault, and
// lets the client run at least a second more.
func resumed(t *testing.T, l *load, what string) {
	t.Helper()
	t0 := time.Now()
	if !l.waitWrites(100, 20*time.Second) {
		t.Fatalf("writes through the VIP did not resume after %s", what)
	}
	time.Sleep(time.Until(t0.Add(time.Second)))
}

// phase runs fault, waits until writes resume after it (see resumed; what
// names the fault there) and returns how clients fared from its start.
func phase(t *testing.T, l *load, name, what string, fault func()) report {
	t.Helper()
	t0 := time.Now()
	fault()
	resumed(t, l, what)
	return l.measure(name, t0, time.Now())
}

// crashMaster kills redis-a and waits until proxy-a routes to redis-b and
// writes resume.
func crashMaster(t *testing.T, c *cluster, l *load) report {
	t.Helper()
	return phase(t, l, "kill redis-a → writes resume", "the master crashed", func() {
		c.kill(c.redisA)
		c.routedTo(c.proxyA, c.redisB, 20*time.Second)
	})
}

// restartProxyA starts proxy-a again after it was killed or stopped and
// waits until it has taken the VIP back (preempt) and writes resume.
func restartProxyA(t *testing.T, c *cluster, l *load) report {
	t.Helper()
	return phase(t, l, "restart proxy-a → preempts VIP", "proxy-a took the VIP back", func() {
		c.start(c.proxyA)
		c.waitSteady(30*time.Second, "proxy-a back and holding the VIP")
	})
}

// 1. Master crash (docker kill): the replica is promoted and writes resume
// through the VIP.
func TestScenario1MasterCrash(t *testing.T) {
	c := newCluster(t, 1, "master-crash")
	l := warmUp(t, c, clientWorkers)
	ph := crashMaster(t, c, l)
	tp, err := c.topology(c.proxyA)
	if err != nil {
		t.Fatal(err)
	}
	finish(t, c, l, ph)
	if tp.Routing.Epoch == 0 {
		t.Errorf("routing epoch is still 0 after a promotion")
	}
	t.Logf("after the crash: routing %+v, failovers=%d", tp.Routing, tp.Replication.Failovers)
}

// 2. The old master comes back after a failover: it becomes a replica of
// the new master and gets its data; the master stays the new one.
func TestScenario2OldMasterReturns(t *testing.T) {
	c := newCluster(t, 2, "old-master")
	l := warmUp(t, c, clientWorkers)
	crash := crashMaster(t, c, l)

	// redis-a restarts with its AOF and no replicaof on its command line:
	// a master with a stale copy of the data, which the proxy must demote.
	t1 := time.Now()
	c.start(c.redisA)
	c.replicaOf(c.redisA, c.redisB, 30*time.Second)
	resumed(t, l, "the old master came back")
	back := l.measure("redis-a returns → replica of b", t1, time.Now())
	tp, err := c.topology(c.proxyA)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Routing.Master != c.redisB.addr() {
		t.Errorf("after redis-a returned, proxy-a routes to %s, want the new master %s", tp.Routing.Master, c.redisB.addr())
	}
	if !slices.Contains(tp.Routing.Replicas, c.redisA.addr()) {
		t.Errorf("after redis-a returned, proxy-a routes replicas %v, want %s among them", tp.Routing.Replicas, c.redisA.addr())
	}
	lost := finish(t, c, l, crash, back)
	// The returning server must hold every write the new master holds:
	// read it directly.
	acked, missing := missingOn(t, l, c.redisA)
	if len(missing) != lost {
		t.Errorf("redis-a (now a replica) lacks %d of %d acknowledged writes, the master lacks %d: it is not a full copy",
			len(missing), acked, lost)
	}
	t.Logf("redis-a holds %d of %d acknowledged writes; failovers=%d lost_bytes=%d (the old master's unreplicated stream)",
		acked-len(missing), acked, tp.Replication.Failovers, tp.Replication.LostBytes)
}

// 3. Active proxy crash (docker kill): the VIP moves to the other proxy and
// the clients carry on; the restarted proxy takes the VIP back (preempt).
func TestScenario3ActiveProxyCrash(t *testing.T) {
	c := newCluster(t, 3, "proxy-crash")
	l := warmUp(t, c, clientWorkers)
	crash := phase(t, l, "kill proxy-a → proxy-b serves", "the active proxy crashed", func() {
		c.kill(c.proxyA)
		c.holdsVIP(c.proxyB, 15*time.Second)
	})
	noFailover(t, c, c.proxyB)

	back := restartProxyA(t, c, l)
	noFailover(t, c, c.proxyA)
	if lost := finish(t, c, l, crash, back); lost > 0 {
		t.Errorf("%d acknowledged writes lost to a proxy crash (Redis was untouched)", lost)
	}
	if crash.window > 5*time.Second {
		t.Errorf("clients were without service for %v after the active proxy crashed, want < 5s", crash.window)
	}
}

// 4. Active proxy graceful stop (docker stop: SIGTERM): the proxy releases
// the VIP and the other takes over after its skew time only.
func TestScenario4ActiveProxyGracefulStop(t *testing.T) {
	c := newCluster(t, 4, "proxy-stop")
	l := warmUp(t, c, clientWorkers)
	t0 := time.Now()
	c.stop(c.proxyA)
	takeover := time.Since(t0) + c.holdsVIP(c.proxyB, 15*time.Second)
	resumed(t, l, "the active proxy stopped")
	stop := l.measure("stop proxy-a → proxy-b serves", t0, time.Now())
	noFailover(t, c, c.proxyB)
	c.logf("proxy-b held the VIP %v after docker stop was sent", takeover.Round(time.Millisecond))

	back := restartProxyA(t, c, l)
	if lost := finish(t, c, l, stop, back); lost > 0 {
		t.Errorf("%d acknowledged writes lost to a graceful proxy stop", lost)
	}
	if stop.window > 3*time.Second {
		t.Errorf("a graceful stop left clients without service for %v, want < 3s", stop.window)
	}
}

// 5. Both Redis servers down: clients get errors (after the proxy's hold
// timeout, not a hang); one server comes back and the service recovers
// with no operator; then the other rejoins as its replica.
func TestScenario5BothRedisDown(t *testing.T) {
	c := newCluster(t, 5, "both-down")
	l := warmUp(t, c, clientWorkers)
	t0 := time.Now()
	// Both at once: killed one after the other on a busy Docker host (a
	// docker kill can take a second), the proxy rightly fails over to
	// redis-b in between and acknowledges writes there.
	c.killTogether(c.redisA, c.redisB)
	killed := time.Now()
	// Past the hold timeout (5s), every held command has been answered.
	time.Sleep(7 * time.Second)
	t1 := time.Now()
	down := l.measure("both killed (7s, errors expected)", t0, t1)
	down.deliberate = true
	if n := l.writes(); down.errors == 0 {
		t.Errorf("no client errors while both Redis servers were down (%d writes acknowledged in all)", n)
	}
	// A reply already on its way when the kill landed may still arrive.
	if w := l.firstWriteAfter(killed.Add(500 * time.Millisecond)); w >= 0 && w < t1.Sub(killed) {
		t.Errorf("a write was acknowledged %v after both Redis servers were killed", w+500*time.Millisecond)
	}
	for _, p := range []*node{c.proxyA, c.proxyB} {
		if code := healthz(p); code == 200 {
			t.Errorf("%s /healthz answers 200 with no Redis up", p.name)
		}
	}

	// redis-b comes back first: a replica (of the dead redis-a) by its
	// command line, with its AOF; the proxy must promote it.
	c.start(c.redisB)
	c.routedTo(c.proxyA, c.redisB, 30*time.Second)
	resumed(t, l, "redis-b came back")
	recovery := l.firstWriteAfter(t1)
	up := l.measure("redis-b back → first write", t1, time.Now())
	up.window = recovery // not the outage before t1
	c.logf("first write acknowledged %v after redis-b was started", recovery.Round(time.Millisecond))

	t2 := time.Now()
	c.start(c.redisA)
	c.replicaOf(c.redisA, c.redisB, 30*time.Second)
	resumed(t, l, "redis-a came back")
	rejoin := l.measure("redis-a back → replica of b", t2, time.Now())
	lost := finish(t, c, l, down, up, rejoin)
	t.Logf("recovery: first write %v after the first server came back; lost=%d (acknowledged by redis-a, not yet replicated when both died)",
		recovery.Round(time.Millisecond), lost)
	if recovery < 0 || recovery > 15*time.Second {
		t.Errorf("service took %v to recover after a Redis server came back, want < 15s", recovery)
	}
}

// 6. Heartbeat partition between the proxies. (a) The heartbeat alone is
// cut (blackhole routes in both proxies' namespaces) while both still reach
// Redis and the clients: both become MASTER and claim the VIP, which VRRP
// cannot prevent; after healing there is one VIP holder and one master.
// (b) The active proxy is frozen (docker pause) and thawed.
func TestScenario6HeartbeatPartition(t *testing.T) {
	t.Run("cut", func(t *testing.T) {
		c := newCluster(t, 6, "partition")
		l := warmUp(t, c, clientWorkers)
		t0 := time.Now()
		c.partition()
		c.waitFor(15*time.Second, "both proxies MASTER with the VIP (split brain)", func() (bool, string) {
			h := c.vipHolders()
			return len(h) == 2, fmt.Sprintf("VIP holders %v", h)
		})
		time.Sleep(3 * time.Second) // let the split last a few adverts and GARP refreshes
		split := l.measure("heartbeat cut (split brain)", t0, time.Now())
		if m := c.masters(); len(m) != 1 {
			t.Errorf("during the partition the Redis masters are %v, want exactly one", m)
		}

		t1 := time.Now()
		c.heal()
		c.oneOfEach(20 * time.Second)
		resumed(t, l, "the partition healed")
		healed := l.measure("healed → one VIP holder", t1, time.Now())
		noFailover(t, c, c.proxyA)
		if lost := finish(t, c, l, split, healed); lost > 0 {
			t.Errorf("%d acknowledged writes lost to a heartbeat partition", lost)
		}
		// The proxy that stays MASTER must re-announce the VIP when the
		// split ends, or neighbours keep sending to the one that released
		// it until the next periodic gratuitous ARP.
		if healed.window > 3*time.Second {
			t.Errorf("clients were without service for %v after the partition healed, want < 3s", healed.window)
		}
	})
	t.Run("pause", func(t *testing.T) {
		c := newCluster(t, 60, "pause")
		l := warmUp(t, c, clientWorkers)
		t0 := time.Now()
		c.pause(c.proxyA)
		c.waitFor(15*time.Second, "proxy-b MASTER while proxy-a is frozen", func() (bool, string) {
			tp, err := c.topology(c.proxyB)
			if err != nil {
				return false, err.Error()
			}
			return tp.Pair.Role == "MASTER" && c.hasVIP(c.proxyB), "proxy-b is " + tp.Pair.Role
		})
		resumed(t, l, "the active proxy froze")
		frozen := l.measure("pause proxy-a → proxy-b serves", t0, time.Now())
		time.Sleep(2 * time.Second)

		t1 := time.Now()
		c.unpause(c.proxyA)
		c.oneOfEach(20 * time.Second)
		resumed(t, l, "proxy-a thawed")
		thawed := l.measure("unpause → one VIP holder", t1, time.Now())
		noFailover(t, c, c.proxyA)
		if lost := finish(t, c, l, frozen, thawed); lost > 0 {
			t.Errorf("%d acknowledged writes lost to a frozen proxy", lost)
		}
	})
}

// 7. Rolling maintenance under load: each Redis and each proxy is stopped
// and started in turn (docker stop: SIGTERM), the master only after a
// planned switchover through the active proxy's admin API. No acknowledged
// write may be lost.
func TestScenario7RollingMaintenance(t *testing.T) {
	c := newCluster(t, 7, "rolling")
	l := warmUp(t, c, 4)
	var phases []report
	step := func(name string, f func()) {
		t.Helper()
		phases = append(phases, phase(t, l, name, name, f))
	}

	step("restart replica redis-b", func() {
		c.stop(c.redisB)
		c.start(c.redisB)
		c.replicaOf(c.redisB, c.redisA, 30*time.Second)
	})
	phases = append(phases, switchPhase(t, c, l, "switchover redis-a → redis-b", c.redisB, c.redisA, func() {
		c.switchover(c.proxyA, c.redisB)
	}))
	step("restart replica redis-a", func() {
		c.stop(c.redisA)
		// Its command line makes it a master on start, with a copy of the
		// data: the proxy must keep redis-b and demote it.
		c.start(c.redisA)
		c.replicaOf(c.redisA, c.redisB, 30*time.Second)
		c.routedTo(c.proxyA, c.redisB, 10*time.Second)
	})
	phases = append(phases, switchPhase(t, c, l, "switchover redis-b → redis-a", c.redisA, c.redisB, func() {
		c.switchover(c.proxyA, c.redisA)
	}))
	step("restart standby proxy-b", func() {
		c.stop(c.proxyB)
		c.start(c.proxyB)
		c.waitSteady(30*time.Second, "proxy-b back as BACKUP")
	})
	step("restart active proxy-a", func() {
		c.stop(c.proxyA)
		c.holdsVIP(c.proxyB, 10*time.Second)
		c.start(c.proxyA)
		c.waitSteady(30*time.Second, "proxy-a back and holding the VIP")
	})
	tp, err := c.topology(c.proxyA)
	if err != nil {
		t.Fatal(err)
	}
	if lost := finish(t, c, l, phases...); lost > 0 {
		t.Errorf("rolling maintenance lost %d acknowledged writes, want 0", lost)
	}
	if tp.Replication.LostBytes != 0 {
		t.Errorf("the proxy discarded %d bytes of replication stream during planned maintenance", tp.Replication.LostBytes)
	}
	t.Logf("end: proxy-a routing %+v, advertised epoch %d, failovers=%d (after 2 planned switchovers and its own restart)",
		tp.Routing, tp.Pair.Epoch, tp.Replication.Failovers)
}
