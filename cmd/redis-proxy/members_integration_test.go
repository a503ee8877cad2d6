package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/writetest"
)

// runServe runs serve with cfg until the returned stop is called (or the
// test ends), and checks it returned cleanly.
func runServe(t *testing.T, cfg Config, logs *logWatch) (stop func()) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, logs) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not return 10s after its context was cancelled")
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("redis-proxy log (last 80 lines):\n%s", logs.tail(80))
		}
	})
	return stop
}

// serversOf calls GET /servers.
func serversOf(a adminEnv) (serversView, error) {
	var v serversView
	var out, errb bytes.Buffer
	if rc := serversCmd(a, nil, &out, &errb); rc != 0 {
		return v, fmt.Errorf("redis-proxy servers: exit %d: %s", rc, errb.String())
	}
	return v, json.Unmarshal(out.Bytes(), &v)
}

func (v serversView) record(addr string) serverRecord {
	for _, r := range v.Status {
		if r.Addr == addr {
			return r
		}
	}
	return serverRecord{}
}

// getCalls is how many GETs s has run (INFO commandstats), whether its
// replication link is up, and its replication offset.
func getCalls(s *redistest.Server) (calls int64, linkUp bool, offset int64, err error) {
	stats, err := redis.String(s.Do("INFO", "commandstats"))
	if err != nil {
		return 0, false, 0, err
	}
	for _, line := range strings.Split(stats, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_get:calls="); ok {
			calls, _ = strconv.ParseInt(v[:strings.IndexByte(v, ',')], 10, 64)
		}
	}
	repl, err := redis.String(s.Do("INFO", "replication"))
	return calls, strings.Contains(repl, "master_link_status:up"), replOffset(repl), err
}

func replOffset(info string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// getSample is what getCalls returned, when its reply was in, and how far
// behind the master (read just before) the replica was.
type getSample struct {
	at     time.Time
	calls  int64
	linkUp bool
	lag    int64
}

// TestServersAddRemoveUnderLoad: a third Redis is added under a write and
// read load (reads on replicas) through `redis-proxy servers add`; it
// becomes a replica of the master and gets no read before the proxy logged
// that it caught up (its GET count, sampled every few milliseconds, is 0
// in every sample taken before), and reads after. Removed, it gets no read
// once the command returned and is left a replica, untouched. No client
// sees an error and no acknowledged write is lost. Added again, it is
// still there after the proxy restarts: the state file, not
// REDIS_PROXY_SERVERS, is what the proxy starts from.
func TestServersAddRemoveUnderLoad(t *testing.T) {
	a, b, d := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	// Data for the full sync to carry, and a key the reader reads.
	conn := a.Dial()
	for i := 0; i < 20000; i++ {
		conn.Send("SET", "bulk:"+strconv.Itoa(i), strings.Repeat("x", 1000))
	}
	const readKey = "members:read"
	conn.Send("SET", readKey, "v")
	if _, err := conn.Do(""); err != nil {
		t.Fatal(err)
	}
	mustSet(t, d, "d:own", "data d had before it was added")
	waitInSync(t, b, a, 10*time.Second)

	stateDir := t.TempDir()
	cfg := testConfig()
	fastTimers(&cfg)
	cfg.Listen, cfg.AdminListen = freeAddr(t), freeAddr(t)
	cfg.Servers = []string{a.Addr, b.Addr}
	cfg.ReadFrom = "replicas"
	cfg.StateDir = stateDir
	cfg.JoinMaxLag = cfg.CheckInterval
	logs := &logWatch{}
	stop := runServe(t, cfg, logs)
	c := &cluster{t: t, srv: []*redistest.Server{a, b}, cfg: cfg, logs: logs}
	c.waitTopology(10*time.Second, "a with its replica b", func(tv topologyView) bool {
		return tv.Routing.Master == a.Addr && slices.Equal(tv.Routing.Replicas, []string{b.Addr})
	})
	adm := cfg.adminEnv()
	if v, err := serversOf(adm); err != nil || v.Version != 0 || !slices.Equal(v.Servers, cfg.Servers) || !v.MayChange {
		t.Fatalf("GET /servers at start: %+v, %v", v, err)
	}

	l := writetest.NewLoad()
	recs := []*writetest.Recorder{
		c.writer(l, "seq", 1, 10*time.Second),
		c.writer(l, "pipe", 10, 10*time.Second),
		c.reader(l, readKey, "v", 10*time.Second),
		c.reader(l, readKey, "v", 10*time.Second),
	}
	time.Sleep(300 * time.Millisecond)

	// Add d, and watch its GET count until it serves reads.
	var out, errb bytes.Buffer
	tAdd := time.Now()
	if rc := serversCmd(adm, []string{"add", d.Addr}, &out, &errb); rc != 0 {
		l.Stop()
		t.Fatalf("redis-proxy servers add %s: exit %d: %s", d.Addr, rc, errb.String())
	}
	var added serversView
	if err := json.Unmarshal(out.Bytes(), &added); err != nil || added.Version != 1 || !slices.Equal(added.Servers, []string{a.Addr, b.Addr, d.Addr}) {
		t.Errorf("servers add printed %s (%v)", out.String(), err)
	}
	const caughtUpMsg = "added server caught up with the master: it may serve reads"
	var samples []getSample
	deadline := time.Now().Add(20 * time.Second)
	for {
		mi, _ := redis.String(a.Do("INFO", "replication"))
		calls, up, off, err := getCalls(d)
		if err == nil {
			samples = append(samples, getSample{time.Now(), calls, up, replOffset(mi) - off})
		}
		if calls > 0 && len(logs.since(tAdd, "replication", caughtUpMsg)) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(3 * time.Millisecond)
	}
	caught := logs.since(tAdd, "replication", caughtUpMsg)
	if len(caught) != 1 || caught[0].addr != d.Addr {
		l.Stop()
		t.Fatalf("caught-up events after the add: %+v", caught)
	}
	tCaught := caught[0].at
	var linkUp time.Time
	var behind int64 // the most d was behind the master with its link up, before it caught up
	for _, s := range samples {
		if s.at.Before(tCaught) && s.calls != 0 {
			t.Errorf("d ran %d GETs by %v after the add, before it caught up (%v after)", s.calls, s.at.Sub(tAdd).Round(time.Millisecond),
				tCaught.Sub(tAdd).Round(time.Millisecond))
		}
		if s.linkUp && linkUp.IsZero() {
			linkUp = s.at
		}
		if s.linkUp && s.at.Before(tCaught) {
			behind = max(behind, s.lag)
		}
	}
	last := samples[len(samples)-1]
	if last.calls == 0 {
		t.Errorf("d ran no GET within %v of catching up", last.at.Sub(tCaught))
	}
	t.Logf("add: link up %v after the add, caught up (reads allowed) %v after, first GETs seen %v after; %d samples of d's GET count, 0 in all before the catch-up; with its link up before then d was up to %d bytes behind the master",
		linkUp.Sub(tAdd).Round(time.Millisecond), tCaught.Sub(tAdd).Round(time.Millisecond), last.at.Sub(tAdd).Round(time.Millisecond), len(samples), behind)
	if r, err := role(d); err != nil || r.role != "slave" || r.masterPort != a.Port {
		t.Errorf("d after the add: ROLE %v (%v), want a replica of %s", r, err, a.Addr)
	}
	if n, _ := redis.Int(d.Do("EXISTS", "d:own")); n != 0 {
		t.Errorf("d kept its own data after becoming a replica")
	}
	c.waitTopology(5*time.Second, "d among the replicas", func(tv topologyView) bool {
		return slices.Equal(tv.Routing.Replicas, []string{b.Addr, d.Addr})
	})
	time.Sleep(300 * time.Millisecond)

	// Remove d under the same load.
	out.Reset()
	tRemove := time.Now()
	if rc := serversCmd(adm, []string{"remove", d.Addr}, &out, &errb); rc != 0 {
		l.Stop()
		t.Fatalf("redis-proxy servers remove %s: exit %d: %s", d.Addr, rc, errb.String())
	}
	removedAt := time.Now()
	time.Sleep(50 * time.Millisecond) // reads routed before the command returned have their replies
	before, _, _, _ := getCalls(d)
	time.Sleep(time.Second)
	after, _, _, _ := getCalls(d)
	if after != before {
		t.Errorf("d ran %d GETs between %v and %v after it was removed", after-before, 50*time.Millisecond, time.Second+50*time.Millisecond)
	}
	t.Logf("remove: took %v; d ran no GET in the second after", removedAt.Sub(tRemove).Round(time.Millisecond))
	if v, err := serversOf(adm); err != nil || v.Version != 2 || !slices.Equal(v.Servers, []string{a.Addr, b.Addr}) || v.record(d.Addr).Addr != "" {
		t.Errorf("GET /servers after the remove: %+v, %v", v, err)
	}
	if r, err := role(d); err != nil || r.role != "slave" || r.masterPort != a.Port {
		t.Errorf("d after the remove: ROLE %v (%v), want it left a replica of %s, untouched", r, err, a.Addr)
	}

	// The master cannot be removed; an unknown server neither.
	errb.Reset()
	if rc := serversCmd(adm, []string{"remove", a.Addr}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "409") ||
		!strings.Contains(errb.String(), "is the master: switch over") {
		t.Errorf("remove the master: exit %d, stderr %q", rc, errb.String())
	}
	errb.Reset()
	if rc := serversCmd(adm, []string{"remove", "127.0.0.1:1"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "404") {
		t.Errorf("remove a stranger: exit %d, stderr %q", rc, errb.String())
	}
	time.Sleep(300 * time.Millisecond)
	l.Stop()

	var keys []string
	for _, rec := range recs {
		ops := rec.Ops()
		t.Logf("%s: %d commands; max latency %v before the add, %v from the add to d's link up (the full sync), %v in the 500ms from its catch-up (routed), %v during the remove",
			rec.Name, len(ops), writetest.MaxLatency(ops, tAdd.Add(-300*time.Millisecond), tAdd).Round(time.Microsecond),
			writetest.MaxLatency(ops, tAdd, linkUp).Round(time.Microsecond),
			writetest.MaxLatency(ops, tCaught, tCaught.Add(500*time.Millisecond)).Round(time.Microsecond),
			writetest.MaxLatency(ops, tRemove, removedAt).Round(time.Microsecond))
		if bad := writetest.Failed(ops); len(bad) > 0 {
			t.Errorf("%s: %d of %d commands failed, want 0:%s", rec.Name, len(bad), len(ops), writetest.Describe(bad, tAdd))
		}
		if strings.HasPrefix(rec.Name, "reader") {
			continue
		}
		for _, o := range writetest.Acked(ops) {
			keys = append(keys, o.Key)
		}
	}
	if m := missing(t, a, keys); len(m) > 0 {
		t.Errorf("%d of %d acknowledged writes missing on the master, e.g. %q", len(m), len(keys), m[0])
	}

	// Add it again, then restart the proxy with the same environment.
	if rc := serversCmd(adm, []string{"add", d.Addr}, &out, &errb); rc != 0 {
		t.Fatalf("add d again: exit %d: %s", rc, errb.String())
	}
	c.waitTopology(10*time.Second, "d back among the replicas", func(tv topologyView) bool {
		return slices.Equal(tv.Routing.Replicas, []string{b.Addr, d.Addr})
	})
	stop()
	tRestart := time.Now()
	runServe(t, cfg, logs)
	c.waitTopology(10*time.Second, "a, b and d after the restart", func(tv topologyView) bool {
		return tv.Routing.Master == a.Addr && slices.Equal(tv.Routing.Replicas, []string{b.Addr, d.Addr})
	})
	v, err := serversOf(adm)
	if err != nil || v.Version != 3 || !slices.Equal(v.Servers, []string{a.Addr, b.Addr, d.Addr}) || !strings.HasPrefix(v.Source, "state file") {
		t.Errorf("GET /servers after the restart: %+v, %v", v, err)
	}
	if ev := logs.since(tRestart, "servers", "servers from the state file, not REDIS_PROXY_SERVERS"); len(ev) != 1 {
		t.Errorf("the restarted proxy did not log that it used the state file")
	}
	if ev := logs.since(tRestart, "servers", "REDIS_PROXY_SERVERS differs from the state file and is not used (remove the file to start from it)"); len(ev) != 1 {
		t.Errorf("the restarted proxy did not warn that REDIS_PROXY_SERVERS is not used")
	}
	poll.Until(t, 5*time.Second, "/healthz 200", func() bool { return c.healthz() == http.StatusOK })
}

// TestServersRefusedWithoutStateDir: with no REDIS_PROXY_STATE_DIR a change
// is refused (it would not survive a restart), and nothing changes; an
// unreachable server is accepted with one, shown down until it answers.
func TestServersRefusedWithoutStateDir(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	adm := c.cfg.adminEnv()
	var out, errb bytes.Buffer
	if rc := serversCmd(adm, []string{"add", "127.0.0.1:1"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "REDIS_PROXY_STATE_DIR is not set") {
		t.Fatalf("add without a state dir: exit %d, stderr %q", rc, errb.String())
	}
	if v, err := serversOf(adm); err != nil || v.Version != 0 || len(v.Servers) != 2 || v.MayChange || v.WhyNot == "" {
		t.Fatalf("GET /servers: %+v, %v", v, err)
	}
}

// TestServersAddUnreachable: a server that does not answer is accepted,
// shown down, never routed; once it starts it is made a replica and serves
// reads.
func TestServersAddUnreachable(t *testing.T) {
	c := startCluster(t, 2, func(cfg *Config) {
		fastTimers(cfg)
		cfg.StateDir = t.TempDir()
		cfg.ReadFrom = "replicas"
	})
	a, b := c.srv[0], c.srv[1]
	d := redistest.Start(t)
	d.Kill()
	adm := c.cfg.adminEnv()
	var out, errb bytes.Buffer
	if rc := serversCmd(adm, []string{"add", d.Addr}, &out, &errb); rc != 0 {
		t.Fatalf("add an unreachable server: exit %d: %s", rc, errb.String())
	}
	poll.Until(t, 5*time.Second, "d shown down", func() bool {
		v, err := serversOf(adm)
		r := v.record(d.Addr)
		return err == nil && r.Addr == d.Addr && !r.Up && r.Joining && r.Error != ""
	})
	if tv, _ := c.topology(); slices.Contains(tv.Routing.Replicas, d.Addr) {
		t.Fatalf("unreachable d routed: %+v", tv.Routing)
	}
	d.Restart()
	c.waitTopology(10*time.Second, "d routed once it runs", func(tv topologyView) bool {
		return tv.Routing.Master == a.Addr && slices.Equal(tv.Routing.Replicas, []string{b.Addr, d.Addr})
	})
	if r, err := role(d); err != nil || r.role != "slave" || r.masterPort != a.Port {
		t.Errorf("d: ROLE %v (%v), want a replica of %s", r, err, a.Addr)
	}
}

func mustSet(t *testing.T, s *redistest.Server, k, v string) {
	t.Helper()
	if _, err := s.Do("SET", k, v); err != nil {
		t.Fatalf("SET on %s: %v", s.Addr, err)
	}
}
