package main

// End-to-end failover tests: real redis-server processes killed (SIGKILL),
// hung (SIGSTOP) and restarted under the whole binary running in-process
// (proxy + replication manager + admin API, through serve()), with clients
// that record every command. They assert what a user relies on: how long
// writes are unavailable, which commands fail, and that no acknowledged
// write is lost except, after a crash, the last ones the dead master had
// not yet replicated (Redis replicates asynchronously).
//
// Measured values are logged (t.Logf; run with -v to see them). Bounds are
// generous: the machine these run on is small and noisy.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/writetest"
	"github.com/redis-proxy/redis-proxy/replication"
)

// inFlightSlack is how long after a crash a command may still have been
// sent over a shared connection the proxy had not yet seen die (the
// connection's reader goroutine must be scheduled to notice the EOF).
// Such a command is "in flight at the crash" and may fail with "outcome
// unknown"; anything sent later must be held, not failed.
const inFlightSlack = 100 * time.Millisecond

// TestFailoverConfigDefaults keeps testConfig in step with the envconfig
// defaults, so that the test that claims to run with the defaults does.
func TestFailoverConfigDefaults(t *testing.T) {
	clearEnv(t)
	t.Setenv(envPrefix+"_SERVERS", "127.0.0.1:6379")
	got, err := loadConfig()
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	want := testConfig()
	want.Servers = []string{"127.0.0.1:6379"}
	want.LogFormat = "text" // testConfig logs JSON on purpose
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := 0; i < gv.NumField(); i++ {
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			t.Errorf("testConfig().%s = %v, but its default is %v", gv.Type().Field(i).Name, wv.Field(i).Interface(), gv.Field(i).Interface())
		}
	}
}

// checkLost reads every write a client had acknowledged back from the new
// master and returns how many are missing. What is honest to demand:
//
//   - A write acknowledged after the new master was promoted (promoted)
//     was acknowledged by it (or, if the proxy let a command reach the old
//     master after the failover, by the wrong server): none of these may
//     be missing.
//   - A write the old master acknowledged before the crash may be missing:
//     Redis acknowledges before its replicas have the write. But a replica
//     holds a prefix of its master's stream, and a writer doing one command
//     (or one pipeline) at a time puts its writes in the stream in the
//     order they were acknowledged, so the missing ones must be the last
//     ones acknowledged, with no gap.
//   - How many: as many as the replica was behind at the crash. On
//     loopback the master writes the stream to its replica in the same
//     event-loop pass in which it writes the reply, so we expect 0; a
//     descheduled replica can fall behind by whatever the master acked in
//     that time. The bound asserted, "acknowledged within window before
//     the crash", is a sanity bound, not a guarantee of the design.
func checkLost(t *testing.T, name string, ops []writetest.Op, nw *redistest.Server, crash, promoted time.Time, window time.Duration) int {
	t.Helper()
	ack := writetest.Acked(ops)
	keys := make([]string, len(ack))
	for i, o := range ack {
		keys[i] = o.Key
	}
	lost := map[string]bool{}
	for _, k := range missing(t, nw, keys) {
		lost[k] = true
	}
	var before, lostBefore, lostAfter []writetest.Op
	recent := 0
	for _, o := range ack {
		if o.Done.Before(promoted) {
			before = append(before, o)
			if !o.Done.Before(crash.Add(-window)) {
				recent++
			}
			if lost[o.Key] {
				lostBefore = append(lostBefore, o)
			}
		} else if lost[o.Key] {
			lostAfter = append(lostAfter, o)
		}
	}
	t.Logf("%s: %d writes acknowledged (%d before the failover, %d after); lost: %d acknowledged by the old master before the crash, %d acknowledged after the failover",
		name, len(ack), len(before), len(ack)-len(before), len(lostBefore), len(lostAfter))
	if len(lostAfter) > 0 {
		t.Errorf("%s: %d writes acknowledged after the failover to %s are not on it:%s",
			name, len(lostAfter), nw.Addr, writetest.Describe(lostAfter, crash))
	}
	if n := len(lostBefore); n > 0 {
		tail := before[len(before)-n:]
		if !slices.EqualFunc(tail, lostBefore, func(a, b writetest.Op) bool { return a.Key == b.Key }) {
			t.Errorf("%s: the lost writes are not the last ones acknowledged before the crash (a replica holds a prefix of the stream):%s",
				name, writetest.Describe(lostBefore, crash))
		}
		if n > recent {
			t.Errorf("%s: %d writes lost, more than the %d acknowledged in the last %v before the crash:%s",
				name, n, recent, window, writetest.Describe(lostBefore, crash))
		}
	}
	return len(lostBefore) + len(lostAfter)
}

// expectInFlightErrors checks a client's failed commands: at most max, each
// sent before the crash was noticed, each saying the outcome is unknown.
func expectInFlightErrors(t *testing.T, name string, ops []writetest.Op, crash time.Time, max int) {
	t.Helper()
	bad := writetest.Failed(ops)
	t.Logf("%s: %d commands, %d errors%s", name, len(ops), len(bad), writetest.Describe(bad, crash))
	if len(bad) > max {
		t.Errorf("%s: %d commands failed, want at most %d (one command at a time: only a write in flight at the crash may fail)", name, len(bad), max)
	}
	for _, o := range bad {
		if o.Sent.After(crash.Add(inFlightSlack)) || o.Err == nil || !strings.Contains(o.Err.Error(), "outcome unknown") {
			t.Errorf("%s: command sent %v after the crash failed with %v; only commands in flight at the crash may fail, with \"outcome unknown\"",
				name, o.Sent.Sub(crash).Round(time.Millisecond), o.Err)
		}
	}
}

// expectNoRouteTo checks that after the failover the proxy never routed to
// the old master again.
func expectNoRouteTo(t *testing.T, c *cluster, old string, since time.Time) {
	t.Helper()
	for _, e := range c.logs.routesSince(since) {
		if e.master == old {
			t.Errorf("the proxy routed to the old master %s again %v after the failover (epoch %d)", old, e.at.Sub(since).Round(time.Millisecond), e.epoch)
		}
	}
}

// 1. kill -9 the master under a steady writer and reader, with the
// default timers (CheckInterval 250ms, DownAfter 1s): the goal is writes
// back within 2s, at most the in-flight command failing per client.
func TestFailoverMasterKilled(t *testing.T) {
	c := startCluster(t, 3, nil)
	old := c.srv[0]
	const readKey = "failover:read"
	c.set(readKey, "v")
	for _, r := range c.srv[1:] {
		waitInSync(t, r, old, 5*time.Second)
	}
	// A script loaded through the proxy reaches the replicas (Redis does
	// not replicate SCRIPT LOAD), so EVALSHA works on the new master.
	sha, err := redis.String(c.dial(5*time.Second).Do("SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])"))
	if err != nil {
		t.Fatalf("SCRIPT LOAD through the proxy: %v", err)
	}
	for _, r := range c.srv[1:] {
		poll.Until(t, 5*time.Second, "the script copied to "+r.Addr, func() bool {
			v, err := redis.Ints(r.Do("SCRIPT", "EXISTS", sha))
			return err == nil && v[0] == 1
		})
	}

	l := writetest.NewLoad()
	w := c.writer(l, "kill", 1, 10*time.Second)
	r := c.reader(l, readKey, "v", 10*time.Second)
	time.Sleep(time.Second)

	crash := time.Now()
	old.Kill()
	ev := c.waitRoute(crash, 10*time.Second, "a new master", func(e routeEvent) bool { return e.master != "" && e.master != old.Addr })
	nw := c.server(ev.master)
	time.Sleep(time.Second)
	l.Stop()
	halted := time.Now()
	wops, rops := w.Ops(), r.Ops()

	gap, back := writetest.Outage(wops, crash, halted)
	t.Logf("master killed: new master %s routed %v after the kill (epoch %d); writes unavailable for %v (longest time without an acknowledgement), acknowledged again %v after the kill",
		nw.Addr, ev.at.Sub(crash).Round(time.Millisecond), ev.epoch, gap.Round(time.Millisecond), back.Sub(crash).Round(time.Millisecond))
	if gap > 4*time.Second {
		t.Errorf("writes were unavailable for %v after the master was killed, want at most 4s (goal 2s)", gap)
	}
	rgap, rback := writetest.Outage(rops, crash, halted)
	t.Logf("reads unavailable for %v, served again %v after the kill", rgap.Round(time.Millisecond), rback.Sub(crash).Round(time.Millisecond))
	if rgap > 4*time.Second {
		t.Errorf("reads unavailable for %v after the master was killed, want at most 4s", rgap)
	}
	expectInFlightErrors(t, "writer", wops, crash, 1)
	// The read in flight at the crash runs again on the new master.
	expectInFlightErrors(t, "reader", rops, crash, 0)
	checkLost(t, "writer", wops, nw, crash, c.promoted(crash, nw.Addr), c.cfg.DownAfter)
	expectNoRouteTo(t, c, old.Addr, ev.at)

	// The surviving replica follows the new master.
	for _, s := range c.srv[1:] {
		if s != nw {
			waitReplicaOf(t, s, nw, 5*time.Second)
		}
	}
	if r, err := role(nw); err != nil || r.role != "master" {
		t.Errorf("ROLE on the new master %s: %v %v", nw.Addr, r, err)
	}
	if v, err := redis.String(c.dial(5*time.Second).Do("EVALSHA", sha, 1, readKey)); err != nil || v != "v" {
		t.Errorf("EVALSHA of a script loaded before the failover: %q, %v", v, err)
	}
}

// 2. SIGSTOP the master: it is failed over like a dead one; on SIGCONT it
// is demoted to a replica of the new master, and no client command goes to
// it after the failover. A hung master may never come back, so nothing may
// wait for it once the new master is routed.
func TestFailoverMasterHung(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	old, nw := c.srv[0], c.srv[1]
	const readKey = "hung:read"
	c.set(readKey, "v")
	waitInSync(t, nw, old, 5*time.Second)

	l := writetest.NewLoad()
	// A long read timeout: the client waits as long as the proxy makes it.
	w := c.writer(l, "hung", 1, 20*time.Second)
	r := c.reader(l, readKey, "v", 20*time.Second)
	time.Sleep(500 * time.Millisecond)

	crash := time.Now()
	old.Pause()
	ev := c.waitRoute(crash, 10*time.Second, nw.Addr, func(e routeEvent) bool { return e.master == nw.Addr })
	// Keep the old master hung well past the failover.
	const hungAfter = 3 * time.Second
	time.Sleep(hungAfter)
	resumed := time.Now()
	old.Resume()
	demoted := waitReplicaOf(t, old, nw, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	l.Stop()
	halted := time.Now()
	wops, rops := w.Ops(), r.Ops()

	t.Logf("master hung: %s routed %v after SIGSTOP (epoch %d); SIGCONT %v later; old master a connected replica %v after SIGCONT",
		nw.Addr, ev.at.Sub(crash).Round(time.Millisecond), ev.epoch, resumed.Sub(ev.at).Round(time.Millisecond), demoted.Sub(resumed).Round(time.Millisecond))
	if d := ev.at.Sub(crash); d > c.cfg.DownAfter+2*time.Second {
		t.Errorf("failover of a hung master took %v, want at most DownAfter (%v) + 2s", d, c.cfg.DownAfter)
	}
	expectNoRouteTo(t, c, old.Addr, ev.at)

	for _, rec := range []*writetest.Recorder{w, r} {
		ops := rec.Ops()
		gap, back := writetest.Outage(ops, crash, halted)
		t.Logf("%s: unavailable for %v around the hang, served again %v after SIGSTOP", rec.Name, gap.Round(time.Millisecond), back.Sub(crash).Round(time.Millisecond))
		if gap > c.cfg.DownAfter+2*time.Second {
			t.Errorf("%s: unavailable for %v after the master hung, want at most DownAfter (%v) + 2s, however long the old master stays hung",
				rec.Name, gap.Round(time.Millisecond), c.cfg.DownAfter)
		}
		// A command sent to the old master before the failover must not be
		// left waiting for it: it would run there (and be acknowledged) only
		// when the hung server resumes, after the new master took over.
		for _, o := range ops {
			if o.Sent.Before(ev.at) && o.Done.After(resumed) {
				t.Errorf("%s: %s sent %v after SIGSTOP was answered only after SIGCONT, %v later (%v): it waited for the hung old master after the failover",
					rec.Name, o.Key, o.Sent.Sub(crash).Round(time.Millisecond), o.Latency().Round(time.Millisecond), errOrOK(o.Err))
			}
		}
	}
	expectInFlightErrors(t, "writer", wops, crash, 1)
	// The read in flight at the crash runs again on the new master.
	expectInFlightErrors(t, "reader", rops, crash, 0)
	// A command left waiting on the hung master is acknowledged by it on
	// SIGCONT, after the failover; if the old master had not run it before
	// SIGSTOP, that acknowledged write is then discarded by its demotion.
	checkLost(t, "writer", wops, nw, crash, c.promoted(crash, nw.Addr), c.cfg.DownAfter)

	// After its resync the old master holds exactly the new master's data:
	// no write reached it after the failover.
	waitInSync(t, old, nw, 10*time.Second)
	if a, b := keysOf(t, old), keysOf(t, nw); !slices.Equal(a, b) {
		t.Errorf("after resync the old master has %d keys, the new master %d", len(a), len(b))
	}
	st, err := c.topology()
	if err == nil {
		t.Logf("status: epoch %d, failovers %d, lost_bytes %d", st.Replication.Epoch, st.Replication.Failovers, st.Replication.LostBytes)
	}
}

func errOrOK(err error) string {
	if err == nil {
		return "acknowledged"
	}
	return err.Error()
}

// 3. A killed old master that is restarted becomes a replica of the new
// master and gets its data, including what was written after the failover.
func TestFailoverOldMasterRestarts(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	old, nw := c.srv[0], c.srv[1]
	pc := c.dial(5 * time.Second)
	var keys []string
	set := func(prefix string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("%s:%d", prefix, i)
			if v, err := redis.String(pc.Do("SET", k, k)); err != nil || v != "OK" {
				t.Fatalf("SET %s through the proxy: %q %v", k, v, err)
			}
			keys = append(keys, k)
		}
	}
	set("before", 100)
	waitInSync(t, nw, old, 5*time.Second)

	crash := time.Now()
	old.Kill()
	ev := c.waitRoute(crash, 10*time.Second, nw.Addr, func(e routeEvent) bool { return e.master == nw.Addr })
	set("after", 100)

	// A client keeps writing while the old master comes back.
	l := writetest.NewLoad()
	w := c.writer(l, "restart", 1, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	old.Restart()
	restarted := time.Now()
	demoted := waitReplicaOf(t, old, nw, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	l.Stop()
	t.Logf("old master restarted (empty: no persistence); a connected replica of %s %v later", nw.Addr, demoted.Sub(restarted).Round(time.Millisecond))

	wops := w.Ops()
	if bad := writetest.Failed(wops); len(bad) > 0 {
		t.Errorf("writer: %d of %d commands failed while the old master returned:%s", len(bad), len(wops), writetest.Describe(bad, restarted))
	}
	for _, o := range writetest.Acked(wops) {
		keys = append(keys, o.Key)
	}
	expectNoRouteTo(t, c, old.Addr, ev.at)
	waitInSync(t, old, nw, 10*time.Second)
	if m := missing(t, nw, keys); len(m) > 0 {
		t.Errorf("%d acknowledged writes missing on the new master %s, e.g. %q", len(m), nw.Addr, m[0])
	}
	if m := missing(t, old, keys); len(m) > 0 {
		t.Errorf("%d acknowledged writes missing on the returned old master %s after its sync, e.g. %q", len(m), old.Addr, m[0])
	}
	if a, b := keysOf(t, old), keysOf(t, nw); !slices.Equal(a, b) {
		t.Errorf("the returned old master has %d keys, the new master %d", len(a), len(b))
	}
	st, err := c.topology()
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	t.Logf("status: epoch %d, failovers %d, lost_bytes %d, routing %+v", st.Replication.Epoch, st.Replication.Failovers, st.Replication.LostBytes, st.Routing)
	c.waitTopology(5*time.Second, "the old master listed as a replica", func(tv topologyView) bool {
		return tv.Routing.Master == nw.Addr && slices.Equal(tv.Routing.Replicas, []string{old.Addr})
	})
}

// 4. A planned switchover under load, once through the admin API and once
// through the CLI: no client error, no acknowledged write lost, roles
// swapped. Clients see a pause.
func TestSwitchoverUnderLoad(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	a, b := c.srv[0], c.srv[1]
	const readKey = "switch:read"
	c.set(readKey, "v")
	l := writetest.NewLoad()
	recs := []*writetest.Recorder{
		c.writer(l, "seq", 1, 10*time.Second),
		c.writer(l, "pipe", 10, 10*time.Second),
		c.reader(l, readKey, "v", 10*time.Second),
	}
	time.Sleep(500 * time.Millisecond)

	// Through the admin API, to b.
	t0 := time.Now()
	code, body := c.postSwitchover(b.Addr)
	t1 := time.Now()
	if code != http.StatusOK {
		l.Stop()
		t.Fatalf("POST /switchover?target=%s: %d %s", b.Addr, code, body)
	}
	var res1 replication.Result
	if err := json.Unmarshal(body, &res1); err != nil || res1.From != a.Addr || res1.To != b.Addr {
		t.Errorf("POST /switchover result %s (%v): want from %s to %s", body, err, a.Addr, b.Addr)
	}
	t.Logf("POST /switchover took %v: %s", t1.Sub(t0).Round(time.Millisecond), bytes.TrimSpace(body))
	if r, err := role(b); err != nil || r.role != "master" {
		t.Errorf("ROLE on %s after the switchover: %v %v, want master", b.Addr, r, err)
	}
	waitReplicaOf(t, a, b, 5*time.Second)
	// Everything acknowledged so far is on the new master.
	var upToNow []string
	for _, rec := range recs[:2] {
		for _, o := range writetest.Acked(rec.Ops()) {
			if o.Done.Before(t1) {
				upToNow = append(upToNow, o.Key)
			}
		}
	}
	if m := missing(t, b, upToNow); len(m) > 0 {
		t.Errorf("after the switchover to %s, %d of %d acknowledged writes are missing on it, e.g. %q", b.Addr, len(m), len(upToNow), m[0])
	}
	c.waitTopology(5*time.Second, "the old master a linked replica", func(tv topologyView) bool {
		return tv.Routing.Master == b.Addr && slices.Equal(tv.Routing.Replicas, []string{a.Addr})
	})
	time.Sleep(300 * time.Millisecond)

	// Through the CLI, back to a.
	var out, errb bytes.Buffer
	t2 := time.Now()
	rc := switchover(c.cfg.adminEnv(), a.Addr, &out, &errb)
	t3 := time.Now()
	time.Sleep(300 * time.Millisecond)
	l.Stop()
	if rc != 0 {
		t.Fatalf("redis-proxy switchover: exit %d: %s", rc, errb.String())
	}
	var res2 replication.Result
	if err := json.Unmarshal(out.Bytes(), &res2); err != nil || res2.From != b.Addr || res2.To != a.Addr {
		t.Errorf("redis-proxy switchover printed %s (%v): want from %s to %s", out.String(), err, b.Addr, a.Addr)
	}
	t.Logf("redis-proxy switchover took %v: %s", t3.Sub(t2).Round(time.Millisecond), bytes.TrimSpace(out.Bytes()))
	if r, err := role(a); err != nil || r.role != "master" {
		t.Errorf("ROLE on %s after the second switchover: %v %v, want master", a.Addr, r, err)
	}
	waitReplicaOf(t, b, a, 5*time.Second)

	var keys []string
	for _, rec := range recs {
		ops := rec.Ops()
		steady := writetest.MaxLatency(ops, t0.Add(-400*time.Millisecond), t0.Add(-time.Millisecond))
		t.Logf("%s: %d commands; max latency: %v before, %v during the API switchover (held %v), %v during the CLI switchover (held %v)",
			rec.Name, len(ops), steady.Round(time.Microsecond), writetest.MaxLatency(ops, t0, t1).Round(time.Millisecond), res1.Held.Round(time.Millisecond),
			writetest.MaxLatency(ops, t2, t3).Round(time.Millisecond), res2.Held.Round(time.Millisecond))
		if bad := writetest.Failed(ops); len(bad) > 0 {
			t.Errorf("%s: %d of %d commands failed across planned switchovers, want 0:%s", rec.Name, len(bad), len(ops), writetest.Describe(bad, t0))
		}
		if rec.Name != "reader" {
			for _, o := range writetest.Acked(ops) {
				keys = append(keys, o.Key)
			}
		}
	}
	m := missing(t, a, keys)
	t.Logf("%d acknowledged writes, %d missing on the final master %s", len(keys), len(m), a.Addr)
	if len(m) > 0 {
		t.Errorf("%d acknowledged writes lost across planned switchovers, want 0, e.g. %q", len(m), m[0])
	}
}

// The CLI without a target moves the master to the best replica, as its
// usage says ("to the given replica or the best one").
func TestSwitchoverCLIBestReplica(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	b := c.srv[1]
	var out, errb bytes.Buffer
	if rc := switchover(c.cfg.adminEnv(), "", &out, &errb); rc != 0 {
		t.Fatalf("redis-proxy switchover (no target): exit %d: %s", rc, errb.String())
	}
	var res replication.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.To != b.Addr {
		t.Errorf("redis-proxy switchover (no target) printed %s (%v): want the only replica %s as the new master", out.String(), err, b.Addr)
	}
	if r, err := role(b); err != nil || r.role != "master" {
		t.Errorf("ROLE on %s after the switchover: %v %v, want master", b.Addr, r, err)
	}
}

// 5. All servers down: commands get -TRYAGAIN after HoldTimeout; when one
// server comes back, service recovers by itself.
func TestFailoverAllServersDown(t *testing.T) {
	c := startCluster(t, 2, func(cfg *Config) {
		fastTimers(cfg)
		cfg.HoldTimeout = time.Second
	})
	a, b := c.srv[0], c.srv[1]
	l := writetest.NewLoad()
	w := c.writer(l, "down", 1, 10*time.Second)
	time.Sleep(300 * time.Millisecond)

	crash := time.Now()
	a.Kill()
	b.Kill()
	c.waitRoute(crash, 5*time.Second, "no master", func(e routeEvent) bool { return e.master == "" })
	time.Sleep(2*c.cfg.HoldTimeout + 500*time.Millisecond)
	if code := c.healthz(); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz with every server down: %d, want 503", code)
	}

	a.Restart()
	restarted := time.Now()
	poll.Until(t, 10*time.Second, "a write acknowledged after a server came back", func() bool {
		_, ok := writetest.FirstAck(w.Ops(), restarted)
		return ok
	})
	time.Sleep(300 * time.Millisecond)
	l.Stop()
	ops := w.Ops()

	var tryAgain, other []writetest.Op
	for _, o := range writetest.Failed(ops) {
		if strings.HasPrefix(o.Err.Error(), "TRYAGAIN") {
			tryAgain = append(tryAgain, o)
		} else {
			other = append(other, o)
		}
	}
	var lat []string
	for _, o := range tryAgain {
		lat = append(lat, o.Latency().Round(time.Millisecond).String())
		if o.Latency() < c.cfg.HoldTimeout-50*time.Millisecond || o.Latency() > c.cfg.HoldTimeout+1500*time.Millisecond {
			t.Errorf("TRYAGAIN after %v, want about HoldTimeout (%v)", o.Latency(), c.cfg.HoldTimeout)
		}
	}
	t.Logf("all down: %d TRYAGAIN replies, after %s; e.g. %v", len(tryAgain), strings.Join(lat, " "), firstErr(tryAgain))
	if len(tryAgain) < 2 {
		t.Errorf("got %d TRYAGAIN replies while every server was down for %v, want at least 2", len(tryAgain), restarted.Sub(crash))
	}
	expectInFlightErrors(t, "writer (other than TRYAGAIN)", other, crash, 1)

	back, _ := writetest.FirstAck(ops, restarted)
	rec := back.Done.Sub(restarted)
	t.Logf("service back %v after the server restarted", rec.Round(time.Millisecond))
	if rec > 5*time.Second {
		t.Errorf("service came back %v after a server restarted, want at most 5s", rec)
	}
	if code := c.healthz(); code != http.StatusOK {
		t.Errorf("/healthz after recovery: %d, want 200", code)
	}
	if r, err := role(a); err != nil || r.role != "master" {
		t.Errorf("ROLE on the server that came back: %v %v, want master", r, err)
	}
}

func firstErr(ops []writetest.Op) error {
	if len(ops) == 0 {
		return nil
	}
	return ops[0].Err
}

// 6. A client that sends a command while there is no master (after the
// crash, before the promotion) gets its reply after the promotion, not an
// error: each command here is sent on its own idle connection (its own
// session), every 20ms, from the kill until after the new master is
// routed; one more connection pipelines a command every 20ms without
// waiting for replies.
func TestFailoverClientsWaitNotFail(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	old, nw := c.srv[0], c.srv[1]
	const conns = 100
	idle := make([]redis.Conn, conns)
	for i := range idle {
		idle[i] = c.dial(10 * time.Second)
		if _, err := idle[i].Do("PING"); err != nil {
			t.Fatalf("PING through the proxy: %v", err)
		}
	}

	// The pipelining client.
	pipe := c.dial(10 * time.Second)
	pipeRec := &writetest.Recorder{Name: "pipelined"}
	type pending struct {
		key  string
		sent time.Time
	}
	sentq := make(chan pending, 10000)
	stopPipe := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Add(2)
	go func() {
		defer pwg.Done()
		defer close(sentq)
		for i := 0; ; i++ {
			select {
			case <-stopPipe:
				return
			case <-time.After(20 * time.Millisecond):
			}
			k := fmt.Sprintf("pipe:%d", i)
			pipe.Send("SET", k, k)
			sent := time.Now()
			if err := pipe.Flush(); err != nil {
				pipeRec.Add(writetest.Op{Cmd: "SET", Key: k, Value: k, Sent: sent, Done: time.Now(), Err: err})
				return
			}
			sentq <- pending{k, sent}
		}
	}()
	go func() {
		defer pwg.Done()
		for p := range sentq {
			v, err := redis.String(pipe.Receive())
			if err == nil && v != "OK" {
				err = fmt.Errorf("SET replied %q", v)
			}
			pipeRec.Add(writetest.Op{Cmd: "SET", Key: p.key, Value: p.key, Sent: p.sent, Done: time.Now(), Err: err})
		}
	}()
	time.Sleep(300 * time.Millisecond)

	crash := time.Now()
	old.Kill()
	held := &writetest.Recorder{Name: "one command per connection"}
	var wg sync.WaitGroup
	routed := func() (routeEvent, bool) {
		for _, e := range c.logs.routesSince(crash) {
			if e.master == nw.Addr {
				return e, true
			}
		}
		return routeEvent{}, false
	}
	for i := 0; i < conns; i++ {
		if e, ok := routed(); ok && time.Since(e.at) > 200*time.Millisecond {
			break
		}
		wg.Add(1)
		go func(conn redis.Conn, k string) {
			defer wg.Done()
			sent := time.Now()
			v, err := redis.String(conn.Do("SET", k, k))
			if err == nil && v != "OK" {
				err = fmt.Errorf("SET replied %q", v)
			}
			held.Add(writetest.Op{Cmd: "SET", Key: k, Value: k, Sent: sent, Done: time.Now(), Err: err})
		}(idle[i], fmt.Sprintf("held:%d", i))
		time.Sleep(20 * time.Millisecond)
	}
	ev := c.waitRoute(crash, 10*time.Second, nw.Addr, func(e routeEvent) bool { return e.master == nw.Addr })
	wg.Wait()
	close(stopPipe)
	pwg.Wait()

	promoted := c.promoted(crash, nw.Addr)
	var noMaster time.Time // when the proxy was told there is no master
	for _, e := range c.logs.routesSince(crash) {
		if e.master == "" && e.at.Before(ev.at) {
			noMaster = e.at
			break
		}
	}
	t.Logf("new master %s routed %v after the kill; \"no master\" routed %v after the kill",
		nw.Addr, ev.at.Sub(crash).Round(time.Millisecond), noMaster.Sub(crash).Round(time.Millisecond))
	for _, rec := range []*writetest.Recorder{held, pipeRec} {
		ops := rec.Ops()
		var inWindow, inNoMaster int
		var maxWait time.Duration
		for _, o := range ops {
			if o.Sent.Before(crash.Add(inFlightSlack)) || !o.Sent.Before(ev.at) {
				continue
			}
			inWindow++
			if !noMaster.IsZero() && !o.Sent.Before(noMaster) {
				inNoMaster++
			}
			switch {
			case o.Err != nil:
				t.Errorf("%s: %s sent %v after the kill, before the new master was routed, failed after %v: %v",
					rec.Name, o.Key, o.Sent.Sub(crash).Round(time.Millisecond), o.Latency().Round(time.Millisecond), o.Err)
			case o.Done.Before(promoted):
				t.Errorf("%s: %s sent while there was no master was acknowledged %v before the new master was promoted", rec.Name, o.Key, promoted.Sub(o.Done))
			}
			maxWait = max(maxWait, o.Latency())
		}
		t.Logf("%s: %d commands sent between the kill (+%v) and the new master, %d of them after \"no master\" was routed; all answered after the promotion, longest wait %v",
			rec.Name, inWindow, inFlightSlack, inNoMaster, maxWait.Round(time.Millisecond))
		if inWindow < 5 {
			t.Errorf("%s: only %d commands were sent while there was no master; the test did not test much", rec.Name, inWindow)
		}
		expectInFlightErrors(t, rec.Name, ops, crash, 1)
		checkLost(t, rec.Name, ops, nw, crash, promoted, c.cfg.DownAfter)
	}
}

// 7. A subscriber and a MULTI session pinned to the master that dies are
// ended with an error (never moved silently to the new master); a
// re-subscribe right after works on the new master as soon as it is
// routed.
func TestFailoverPinnedSessions(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	old, nw := c.srv[0], c.srv[1]
	sub := c.dial(10 * time.Second)
	if err := sub.Send("SUBSCRIBE", "news"); err != nil {
		t.Fatal(err)
	}
	sub.Flush()
	if v, err := redis.Values(sub.Receive()); err != nil || len(v) != 3 {
		t.Fatalf("SUBSCRIBE through the proxy: %v %v", v, err)
	}
	tx := c.dial(10 * time.Second)
	if v, err := redis.String(tx.Do("MULTI")); err != nil || v != "OK" {
		t.Fatalf("MULTI: %q %v", v, err)
	}
	if v, err := redis.String(tx.Do("SET", "tx:k", "v")); err != nil || v != "QUEUED" {
		t.Fatalf("SET in MULTI: %q %v", v, err)
	}

	crash := time.Now()
	old.Kill()
	// The subscriber's connection ends, as it would with Redis itself.
	v, err := sub.Receive()
	closed := time.Now()
	var re redis.Error
	if err == nil || errors.As(err, &re) {
		t.Fatalf("subscriber after the master died: got %v %v, want the connection closed", v, err)
	}
	t.Logf("subscriber closed %v after the kill (%v)", closed.Sub(crash).Round(time.Millisecond), err)
	if d := closed.Sub(crash); d > 2*time.Second {
		t.Errorf("subscriber closed %v after the kill, want at once", d)
	}

	// Re-subscribe at once: held until the new master is routed, then live.
	sub2 := c.dial(10 * time.Second)
	sub2.Send("SUBSCRIBE", "news")
	sub2.Flush()
	sv, err := redis.Values(sub2.Receive())
	confirmed := time.Now()
	if err != nil || len(sv) != 3 {
		t.Fatalf("re-SUBSCRIBE through the proxy after the crash: %v %v", sv, err)
	}
	ev := c.waitRoute(crash, 10*time.Second, nw.Addr, func(e routeEvent) bool { return e.master == nw.Addr })
	t.Logf("re-subscribe sent %v after the kill, confirmed %v after the new master was routed",
		closed.Sub(crash).Round(time.Millisecond), confirmed.Sub(ev.at).Round(time.Millisecond))
	if d := confirmed.Sub(ev.at); d > time.Second {
		t.Errorf("re-subscribe confirmed %v after the new master was routed, want at once", d)
	}
	pub := c.dial(5 * time.Second)
	if n, err := redis.Int(pub.Do("PUBLISH", "news", "hello")); err != nil || n != 1 {
		t.Errorf("PUBLISH through the proxy after the failover reached %d subscribers (%v), want 1", n, err)
	}
	if m, err := redis.Strings(sub2.Receive()); err != nil || !slices.Equal(m, []string{"message", "news", "hello"}) {
		t.Errorf("re-subscribed client got %q %v, want the message", m, err)
	}
	if ns, err := redis.Values(nw.Do("PUBSUB", "NUMSUB", "news")); err != nil || len(ns) != 2 || ns[1] != int64(1) {
		t.Errorf("PUBSUB NUMSUB news on the new master: %v %v, want 1 subscriber", ns, err)
	}

	// The transaction's connection died with the master: EXEC must fail
	// with "outcome unknown" and the session end, not run elsewhere.
	ev2, err := tx.Do("EXEC")
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "lost") {
		t.Errorf("EXEC after the master died: %v %v, want an error saying the connection was lost", ev2, err)
	} else {
		t.Logf("EXEC after the failover: %v", err)
	}
	if _, err := tx.Do("PING"); err == nil || errors.As(err, &re) {
		t.Errorf("the transaction's client connection is still open after EXEC failed (PING: %v)", err)
	}
	if n, err := redis.Int(nw.Do("EXISTS", "tx:k")); err != nil || n != 0 {
		t.Errorf("the dead master's transaction ran on the new master: EXISTS tx:k = %d %v", n, err)
	}
	// A new transaction works on the new master.
	tx2 := c.dial(5 * time.Second)
	tx2.Send("MULTI")
	tx2.Send("INCR", "tx:n")
	tx2.Send("EXEC")
	tx2.Flush()
	for i, want := range []string{"OK", "QUEUED"} {
		if v, err := redis.String(tx2.Receive()); err != nil || v != want {
			t.Errorf("new transaction, reply %d: %q %v, want %s", i, v, err, want)
		}
	}
	if v, err := redis.Ints(tx2.Receive()); err != nil || !slices.Equal(v, []int{1}) {
		t.Errorf("new transaction EXEC: %v %v, want [1]", v, err)
	}
}

// Both servers restart under load and load their datasets: while they do,
// clients wait (as while no master is known) and no -LOADING reaches them.
func TestBothServersRestartLoading(t *testing.T) {
	c := startCluster(t, 2, func(cfg *Config) {
		fastTimers(cfg)
		cfg.HoldTimeout = 15 * time.Second
	})
	a, b := c.srv[0], c.srv[1]
	// A dataset that takes a while to load, written in short commands so
	// the master never looks hung to the manager.
	fill := a.Dial(redis.DialReadTimeout(time.Minute))
	for i := range 1500 {
		args := make([]any, 0, 2000)
		for k := range 1000 {
			args = append(args, fmt.Sprintf("fill:%d:%d", i, k), "x")
		}
		fill.Send("MSET", args...)
	}
	fill.Flush()
	for range 1500 {
		if _, err := fill.Receive(); err != nil {
			t.Fatal(err)
		}
	}
	waitInSync(t, b, a, 30*time.Second)
	for _, s := range []*redistest.Server{a, b} {
		if _, err := s.Dial(redis.DialReadTimeout(time.Minute)).Do("SAVE"); err != nil {
			t.Fatal(err)
		}
	}
	l := writetest.NewLoad()
	w := c.writer(l, "loading", 1, 30*time.Second)
	time.Sleep(300 * time.Millisecond)

	crash := time.Now()
	a.Kill()
	b.Kill()
	a.RestartLoading()
	b.RestartLoading()
	restarted := time.Now()
	loading := false
	for range 200 {
		_, err := a.Do("PING")
		if err != nil && strings.HasPrefix(err.Error(), "LOADING") {
			loading = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	poll.Until(t, 30*time.Second, "a write acknowledged after the restart", func() bool {
		_, ok := writetest.FirstAck(w.Ops(), restarted)
		return ok
	})
	time.Sleep(500 * time.Millisecond)
	l.Stop()
	ops := w.Ops()
	var loadingErrs, other []writetest.Op
	for _, o := range writetest.Failed(ops) {
		if strings.HasPrefix(o.Err.Error(), "LOADING") {
			loadingErrs = append(loadingErrs, o)
		} else {
			other = append(other, o)
		}
	}
	back, _ := writetest.FirstAck(ops, restarted)
	t.Logf("%d writes, %d -LOADING, %d other errors (%v); service back %v after the restart; the server answered -LOADING directly: %v",
		len(ops), len(loadingErrs), len(other), firstErr(other), back.Done.Sub(restarted).Round(time.Millisecond), loading)
	if !loading {
		t.Fatal("the restarted server never answered -LOADING: the test proves nothing")
	}
	if len(loadingErrs) > 0 {
		t.Errorf("%d -LOADING replies reached the client, e.g. %v", len(loadingErrs), loadingErrs[0].Err)
	}
	expectInFlightErrors(t, "writer", other, crash, 1)
}
