package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// Process tests: real redis-server processes on 127.0.0.1, killed with
// SIGKILL and stopped with SIGSTOP. Short timings keep the suite fast.
const (
	testInterval  = 100 * time.Millisecond
	testDownAfter = 500 * time.Millisecond
)

type harness struct {
	t    *testing.T
	m    *Manager
	mu   sync.Mutex
	seen []Topology // every topology onChange received, in order
}

func startManager(t *testing.T, authority bool, servers ...*redistest.Server) *harness {
	t.Helper()
	return startManagerCfg(t, Config{Authority: authority}, servers...)
}

func startManagerCfg(t *testing.T, cfg Config, servers ...*redistest.Server) *harness {
	t.Helper()
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, s.Addr)
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = testInterval
	}
	if cfg.DownAfter == 0 {
		cfg.DownAfter = testDownAfter
	}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	h := &harness{t: t}
	m, err := NewManager(cfg, func(tp Topology) {
		h.mu.Lock()
		h.seen = append(h.seen, tp)
		h.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func (h *harness) published() []Topology {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen)
}

// waitTopology waits until the published topology satisfies ok and returns
// how long that took.
func (h *harness) waitTopology(what string, within time.Duration, ok func(Topology) bool) time.Duration {
	h.t.Helper()
	start := time.Now()
	for {
		tp := h.m.Topology()
		if ok(tp) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			h.t.Fatalf("waited %v for %s; topology is %+v\nstatus: %+v", within, what, tp, h.m.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func is(master string, replicas ...string) func(Topology) bool {
	return func(t Topology) bool { return t.Master == master && slices.Equal(t.Replicas, replicas) }
}

func waitUntil(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func serverStatus(s Status, addr string) ServerStatus {
	for _, ss := range s.Servers {
		if ss.Addr == addr {
			return ss
		}
	}
	return ServerStatus{}
}

// role returns ROLE's first element and, for a replica, its master's port.
func role(t *testing.T, s *redistest.Server) (string, string) {
	t.Helper()
	vs, err := redis.Values(s.Do("ROLE"))
	if err != nil {
		t.Fatalf("ROLE %s: %v", s.Addr, err)
	}
	r, _ := redis.String(vs[0], nil)
	if r == "slave" {
		port, _ := redis.Int64(vs[2], nil)
		return r, fmt.Sprint(port)
	}
	return r, ""
}

func infoField(t *testing.T, s *redistest.Server, field string) string {
	t.Helper()
	text, err := redis.String(s.Do("INFO", "replication"))
	if err != nil {
		t.Fatalf("INFO %s: %v", s.Addr, err)
	}
	return parseInfo(text)[field]
}

// Stage 1: observe only. A master with two replicas is published as such;
// a killed replica leaves the replicas after DownAfter; a SIGSTOPped master
// is detected down like a dead one, and nothing is promoted.
func TestObserveMasterAndReplicas(t *testing.T) {
	a, b, c := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	c.ReplicaOf(a)
	h := startManager(t, false, a, b, c)

	h.waitTopology("a with replicas b, c", 3*time.Second, is(a.Addr, b.Addr, c.Addr))
	st := h.m.Status()
	if sa, sb := serverStatus(st, a.Addr), serverStatus(st, b.Addr); sa.Role != RoleMaster || !sa.Up ||
		sb.Role != RoleReplica || sb.MasterAddr != a.Addr || !sb.LinkUp || sb.RunID == "" {
		t.Errorf("status of a, b: %+v, %+v", sa, sb)
	}
	if st.Authority || st.Epoch != 0 {
		t.Errorf("status: authority=%v epoch=%d, want false 0", st.Authority, st.Epoch)
	}

	c.Kill()
	took := h.waitTopology("c dropped from the replicas", 2*time.Second, is(a.Addr, b.Addr))
	t.Logf("killed replica left the topology after %v (DownAfter %v)", took, testDownAfter)
	// DownAfter counts from when its last good check was sent, up to an
	// interval (more under load) before the kill; but never at the first
	// failed check.
	if took < testDownAfter/2 {
		t.Errorf("replica dropped after %v, long before DownAfter %v", took, testDownAfter)
	}

	a.Pause()
	took = h.waitTopology("no master while a is stopped", 2*time.Second, is(""))
	t.Logf("SIGSTOPped master detected down after %v", took)
	if sa := serverStatus(h.m.Status(), a.Addr); sa.Up || sa.Error == "" {
		t.Errorf("stopped master's status: %+v, want down with an error", sa)
	}
	time.Sleep(2 * testDownAfter)
	if r, port := role(t, b); r != "slave" || port != fmt.Sprint(a.Port) {
		t.Fatalf("observe-only manager changed b: ROLE %s %s", r, port)
	}

	a.Resume()
	h.waitTopology("a back with b", 3*time.Second, is(a.Addr, b.Addr))
	if got := h.m.Topology().Epoch; got != 0 {
		t.Errorf("epoch %d after the same master returned, want 0", got)
	}
}

// A replica the master reports but that is not configured is shown in
// Status as discovered, and never routed.
func TestDiscoveredReplica(t *testing.T) {
	a, b, d := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	d.ReplicaOf(a)
	h := startManager(t, true, a, b)
	h.waitTopology("a with b only", 3*time.Second, is(a.Addr, b.Addr))
	waitUntil(t, "d discovered and checked", 3*time.Second, func() bool {
		sd := serverStatus(h.m.Status(), d.Addr)
		return sd.Discovered && sd.Up && sd.Role == RoleReplica && sd.MasterAddr == a.Addr
	})
	if tp := h.m.Topology(); slices.Contains(tp.Replicas, d.Addr) {
		t.Errorf("discovered replica routed: %+v", tp)
	}
}

// Kill -9 the master: the best replica (replica-priority) is promoted within
// DownAfter plus a few check intervals, the other replica follows it, and
// the old master, restarted, becomes a replica with the new master's data.
func TestFailoverOnKill(t *testing.T) {
	a := redistest.Start(t)
	b := redistest.Start(t, "--replica-priority", "10")
	c := redistest.Start(t)
	b.ReplicaOf(a)
	c.ReplicaOf(a)
	h := startManager(t, true, a, b, c)
	h.waitTopology("a with b, c", 3*time.Second, is(a.Addr, b.Addr, c.Addr))
	if _, err := a.Do("SET", "before", "1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "replicas caught up", 2*time.Second, func() bool {
		v, _ := redis.String(c.Do("GET", "before"))
		w, _ := redis.String(b.Do("GET", "before"))
		return v == "1" && w == "1"
	})

	a.Kill()
	took := h.waitTopology("b published as master", 5*time.Second, func(tp Topology) bool { return tp.Master == b.Addr })
	t.Logf("kill -9 master: b published as master %v after the kill (DownAfter %v, check interval %v)", took, testDownAfter, testInterval)
	if limit := testDownAfter + 4*testInterval; took > limit {
		t.Errorf("failover took %v, want at most DownAfter + 4 intervals = %v", took, limit)
	}
	if tp := h.m.Topology(); tp.Epoch != 1 {
		t.Errorf("epoch after failover = %d, want 1", tp.Epoch)
	}
	if r, _ := role(t, b); r != "master" {
		t.Fatalf("b's ROLE = %s, want master", r)
	}
	h.waitTopology("c re-pointed to b", 5*time.Second, is(b.Addr, c.Addr))
	if r, port := role(t, c); r != "slave" || port != fmt.Sprint(b.Port) {
		t.Fatalf("c's ROLE = %s of port %s, want replica of %d", r, port, b.Port)
	}
	if _, err := b.Do("SET", "after", "2"); err != nil {
		t.Fatal(err)
	}

	// No publication named a master that was not confirmed: a until the
	// kill, then none, then b.
	for _, tp := range h.published() {
		if tp.Master != "" && tp.Master != a.Addr && tp.Master != b.Addr {
			t.Errorf("published unexpected master: %+v", tp)
		}
	}

	a.Restart() // empty: the helper runs without persistence
	h.waitTopology("a back as a replica of b", 5*time.Second, is(b.Addr, a.Addr, c.Addr))
	if r, port := role(t, a); r != "slave" || port != fmt.Sprint(b.Port) {
		t.Fatalf("a's ROLE = %s of port %s, want replica of %d", r, port, b.Port)
	}
	for _, k := range []string{"before", "after"} {
		if v, err := redis.String(a.Do("GET", k)); err != nil || v == "" {
			t.Errorf("restarted old master lacks %q from the new master: %q %v", k, v, err)
		}
	}
	st := h.m.Status()
	if f := st.LastFailover; f == nil || f.From != a.Addr || f.To != b.Addr || f.Epoch != 1 || f.Kind != "failover" {
		t.Errorf("last failover = %+v", f)
	} else {
		t.Logf("status: failover %s -> %s, no master for %v (from last reply of a to confirmation of b)", f.From, f.To, f.Duration)
	}
	if st.LostBytes != 0 {
		t.Errorf("lost bytes = %d, want 0 (the old master returned empty)", st.LostBytes)
	}
}

// SIGSTOP the master after it took a write its replica never got: the
// replica is promoted; on SIGCONT the old master is demoted before it is
// routable, and exactly the bytes it had beyond the fork are reported.
func TestFailoverOnStopCountsLostBytes(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	h := startManager(t, true, a, b)
	h.waitTopology("a with b", 3*time.Second, is(a.Addr, b.Addr))
	if _, err := a.Do("SET", "shared", "1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b has the shared key", 2*time.Second, func() bool {
		v, _ := redis.String(b.Do("GET", "shared"))
		return v == "1"
	})

	// Cut b off from a's stream for good: a refuses (P)SYNC, then drops the link.
	mustDo(t, a, "ACL", "SETUSER", "default", "-psync", "-sync")
	mustDo(t, a, "CLIENT", "KILL", "TYPE", "replica")
	waitUntil(t, "b's link down", 2*time.Second, func() bool { return infoField(t, b, "master_link_status") == "down" })
	mustDo(t, a, "SET", "unreplicated", "x")
	aOffset := atoi(infoField(t, a, "master_repl_offset"), -1)

	a.Pause()
	took := h.waitTopology("b published as master", 5*time.Second, func(tp Topology) bool { return tp.Master == b.Addr })
	t.Logf("SIGSTOP master: b published as master %v after the stop", took)
	second := atoi(infoField(t, b, "second_repl_offset"), -1)
	want := aOffset - (second - 1)
	if want <= 0 {
		t.Fatalf("test set-up: a at %d, b forked at %d: no unreplicated bytes", aOffset, second)
	}

	a.Resume()
	h.waitTopology("a demoted and following b", 5*time.Second, is(b.Addr, a.Addr))
	if v, _ := redis.String(a.Do("GET", "unreplicated")); v != "" {
		t.Errorf("old master still has the unreplicated key after resync: %q", v)
	}
	st := h.m.Status()
	if st.LostBytes != want {
		t.Errorf("lost bytes = %d, want %d (a's offset %d minus b's fork point %d)", st.LostBytes, want, aOffset, second-1)
	}
	if f := st.LastFailover; f == nil || f.LostBytes != want || f.From != a.Addr {
		t.Errorf("last failover = %+v, want lost bytes %d from %s", f, want, a.Addr)
	}
	t.Logf("lost bytes reported: %d", st.LostBytes)
	// a was never published as anything but a replica of b after the stop.
	stopped := false
	for _, tp := range h.published() {
		if tp.Master == b.Addr {
			stopped = true
		}
		if stopped && tp.Master == a.Addr {
			t.Errorf("old master published again: %+v", tp)
		}
	}
}

func mustDo(t *testing.T, s *redistest.Server, cmd string, args ...any) {
	t.Helper()
	if _, err := s.Do(cmd, args...); err != nil {
		t.Fatalf("%s %v on %s: %v", cmd, args, s.Addr, err)
	}
}

// Without authority nothing is promoted; granting it at run time fails over.
func TestSetAuthority(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	h := startManager(t, false, a, b)
	h.waitTopology("a with b", 3*time.Second, is(a.Addr, b.Addr))
	a.Kill()
	h.waitTopology("no master", 2*time.Second, is(""))
	time.Sleep(testDownAfter)
	if r, _ := role(t, b); r != "slave" {
		t.Fatalf("b's ROLE = %s without authority, want slave", r)
	}
	h.m.SetAuthority(true)
	took := h.waitTopology("b promoted once authority is granted", 2*time.Second, is(b.Addr))
	t.Logf("promoted %v after authority was granted", took)
	if !h.m.Status().Authority {
		t.Error("status does not show authority")
	}
}

// Fresh servers all start as masters: the first configured becomes master,
// the other its replica, and nothing is lost.
func TestStartWithTwoMasters(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	h := startManager(t, true, a, b)
	h.waitTopology("a with b", 5*time.Second, is(a.Addr, b.Addr))
	if r, port := role(t, b); r != "slave" || port != fmt.Sprint(a.Port) {
		t.Fatalf("b's ROLE = %s of %s, want replica of %d", r, port, a.Port)
	}
	if st := h.m.Status(); st.Epoch != 0 || st.LostBytes != 0 {
		t.Errorf("epoch %d lost %d, want 0 0", st.Epoch, st.LostBytes)
	}
}

type recordingPauser struct {
	m      *Manager
	mu     sync.Mutex
	events []string
}

func (p *recordingPauser) Pause(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, "pause master="+p.m.Topology().Master)
	return nil
}

func (p *recordingPauser) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, "resume master="+p.m.Topology().Master)
}

// A planned switchover while a client keeps writing to the master directly:
// every write the old master acknowledged is on the new master; writes
// caught by the pause are refused, not lost. The other replica follows.
func TestSwitchoverLosesNoWrites(t *testing.T) {
	a, b, c := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	c.ReplicaOf(a)
	p := &recordingPauser{}
	h := startManagerCfg(t, Config{Authority: true, Pauser: p}, a, b, c)
	p.m = h.m
	h.waitTopology("a with b, c", 3*time.Second, is(a.Addr, b.Addr, c.Addr))

	if _, err := h.m.Switchover(context.Background(), c.Addr+"x"); !errors.Is(err, ErrSwitchoverRefused) {
		t.Errorf("switchover to an unknown server: %v, want ErrSwitchoverRefused", err)
	}

	conn := a.Dial()
	var (
		acked   []int
		refused error
		wg      sync.WaitGroup
		stop    = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := conn.Do("SET", fmt.Sprintf("k%d", i), i); err != nil {
				refused = err
				return
			}
			acked = append(acked, i)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	res, err := h.m.Switchover(context.Background(), b.Addr)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("switchover: %v", err)
	}
	t.Logf("switchover %+v; writer: %d acknowledged writes, stopped by %v", res, len(acked), refused)
	if res.From != a.Addr || res.To != b.Addr || res.Epoch != 1 {
		t.Errorf("result %+v", res)
	}
	if refused != nil && !strings.HasPrefix(refused.Error(), "READONLY") {
		t.Errorf("write during the switch failed with %v, want READONLY", refused)
	}
	if len(acked) < 10 {
		t.Fatalf("only %d writes before the switch; the test proves nothing", len(acked))
	}
	nb := b.Dial()
	for _, i := range acked {
		v, err := redis.Int(nb.Do("GET", fmt.Sprintf("k%d", i)))
		if err != nil || v != i {
			t.Fatalf("acknowledged write k%d missing on the new master: %v %v", i, v, err)
		}
	}
	if tp := h.m.Topology(); tp.Master != b.Addr || tp.Epoch != 1 {
		t.Errorf("topology after switchover: %+v", tp)
	}
	h.waitTopology("a and c follow b", 5*time.Second, is(b.Addr, a.Addr, c.Addr))
	p.mu.Lock()
	events := slices.Clone(p.events)
	p.mu.Unlock()
	if want := []string{"pause master=", "resume master=" + b.Addr}; !slices.Equal(events, want) {
		t.Errorf("pauser saw %q, want %q", events, want)
	}
	if st := h.m.Status(); st.LostBytes != 0 || st.LastFailover == nil || st.LastFailover.Kind != "switchover" {
		t.Errorf("status after switchover: lost %d, last %+v", st.LostBytes, st.LastFailover)
	}
}

func TestSwitchoverNeedsAuthority(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	h := startManager(t, false, a, b)
	h.waitTopology("a with b", 3*time.Second, is(a.Addr, b.Addr))
	if _, err := h.m.Switchover(context.Background(), b.Addr); !errors.Is(err, ErrSwitchoverRefused) {
		t.Fatalf("switchover without authority: %v, want ErrSwitchoverRefused", err)
	}
	if r, _ := role(t, b); r != "slave" {
		t.Errorf("b's ROLE = %s, want slave", r)
	}
}

// A proxy that takes over from its peer continues the peer's epoch: the
// next promotion is one above what the peer advertised, not 1.
func TestInheritedEpochContinues(t *testing.T) {
	a := redistest.Start(t)
	b := redistest.Start(t)
	b.ReplicaOf(a)
	h := startManager(t, true, a, b)
	h.waitTopology("a master with b", 5*time.Second, is(a.Addr, b.Addr))
	h.m.InheritEpoch(7)
	h.m.InheritEpoch(3) // lower: ignored
	a.Kill()
	h.waitTopology("b promoted", 5*time.Second, func(tp Topology) bool { return tp.Master == b.Addr })
	if got := h.m.Topology().Epoch; got != 8 {
		t.Fatalf("epoch after promotion = %d, want 8 (inherited 7, plus one)", got)
	}
}
