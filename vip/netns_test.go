package vip

// Root-only tests in real network namespaces. Each node is a separate
// process (this test binary, re-executed by TestMain in helper mode inside
// `ip netns exec`), so a kill is a real SIGKILL and the addresses, adverts
// and gratuitous ARPs are the kernel's.
//
// Topology (all addresses exist only inside the namespaces these tests
// create):
//
//	ns A: eth0 10.77.0.1/24 ─┐
//	ns B: eth0 10.77.0.2/24 ─┼─ ns C: bridge br0 10.77.0.3/24 (the "client")
//	VIP 10.77.0.100/24 ──────┘

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
)

const (
	helperEnv  = "VIP_TEST_HELPER" // a key of helpers
	helperConf = "VIP_TEST_CONFIG" // JSON helperConfig, for "node"
	helperDest = "VIP_TEST_SENDTO" // ip:port, for "send"
	nsVIP      = "10.77.0.100/24"
	nsSecret   = "netns-test-secret-0123456789"
	nsInterval = 200 * time.Millisecond
)

var nsMAC = map[string]string{"a": "02:00:00:77:00:01", "b": "02:00:00:77:00:02"}

// helpers are the modes of this test binary re-executed inside a namespace,
// by the value of helperEnv.
var helpers = map[string]func() int{"node": helperNode, "send": helperSend}

func TestMain(m *testing.M) {
	if h := helpers[os.Getenv(helperEnv)]; h != nil {
		os.Exit(h())
	}
	os.Exit(m.Run())
}

type helperConfig struct {
	Address   string
	Peer      string
	Priority  uint8
	NoPreempt bool
}

// helperEvent is one line a helper node prints on stdout.
type helperEvent struct {
	Ev     string // ready, role, stats, exit
	From   string `json:",omitempty"`
	To     string `json:",omitempty"`
	Reason string `json:",omitempty"`
	At     int64  // Unix nanoseconds
	Detail string `json:",omitempty"`
	Stats  *Stats `json:",omitempty"` // with "stats"
}

func helperNode() int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(helperConf)), &hc); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		return 2
	}
	peers, err := ParsePeers(hc.Peer)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := New(Config{
		Interface: "eth0", VIP: netip.MustParsePrefix(nsVIP), Peers: peers,
		Address: netip.MustParseAddr(hc.Address), Priority: hc.Priority, NoPreempt: hc.NoPreempt,
		Interval: nsInterval, Secret: []byte(nsSecret),
	}, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "new:", err)
		return 2
	}
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	emit := func(e helperEvent) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(e)
	}
	ch, _ := n.Subscribe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range ch {
			emit(helperEvent{Ev: "role", From: c.From.String(), To: c.To.String(), Reason: c.Reason, At: c.At.UnixNano()})
			if c.To == Init {
				return
			}
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	emit(helperEvent{Ev: "ready", At: time.Now().UnixNano()})
	err = n.Run(ctx)
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	st := n.Stats()
	emit(helperEvent{Ev: "stats", At: time.Now().UnixNano(), Stats: &st, Detail: fmt.Sprintf(
		"sent=%d recv=%d rejected=%v garps=%d adds=%d removes=%d repairs=%d transitions=%d recv_buffer=%d recv_dropped=%d takeover_deferrals=%d",
		st.AdvertsSent, st.AdvertsReceived, nonZero(st.Rejected), st.GARPsSent, st.VIPAdds, st.VIPRemoves, st.VIPRepairs, st.Transitions,
		st.RecvBuffer, st.RecvDropped, st.TakeoverDeferrals)})
	if err != nil {
		emit(helperEvent{Ev: "exit", At: time.Now().UnixNano(), Detail: err.Error()})
		return 1
	}
	emit(helperEvent{Ev: "exit", At: time.Now().UnixNano()})
	return 0
}

func nonZero(m map[Reason]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for r, n := range m {
		if n > 0 {
			out[r.String()] = n
		}
	}
	return out
}

func helperSend() int {
	c, err := net.Dial("udp", os.Getenv(helperDest))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// --- topology ---

var nsSeq atomic.Int32

type netnsTopo struct {
	t       *testing.T
	a, b, c string // namespace names
	exe     string
}

func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth pairs and a bridge")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	probe := fmt.Sprintf("rpvprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, bytes.TrimSpace(out))
	}
	exec.Command("ip", "netns", "del", probe).Run()
}

func newNetnsTopo(t *testing.T) *netnsTopo {
	requireNetns(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("rpv%d-%d", os.Getpid(), nsSeq.Add(1))
	tp := &netnsTopo{t: t, a: id + "-a", b: id + "-b", c: id + "-c", exe: exe}
	for _, ns := range []string{tp.a, tp.b, tp.c} {
		tp.ip("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		tp.ip("-n", ns, "link", "set", "lo", "up")
	}
	tp.ip("-n", tp.c, "link", "add", "br0", "type", "bridge")
	tp.ip("-n", tp.c, "link", "set", "br0", "up")
	tp.ip("-n", tp.c, "addr", "add", "10.77.0.3/24", "dev", "br0")
	for i, x := range []string{"a", "b"} {
		ns, port := tp.ns(x), "p"+x
		tp.ip("-n", tp.c, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		tp.ip("-n", tp.c, "link", "set", port, "master", "br0")
		tp.ip("-n", tp.c, "link", "set", port, "up")
		tp.ip("-n", ns, "link", "set", "eth0", "address", nsMAC[x])
		tp.ip("-n", ns, "addr", "add", fmt.Sprintf("10.77.0.%d/24", i+1), "dev", "eth0")
		tp.ip("-n", ns, "link", "set", "eth0", "up")
	}
	return tp
}

func (tp *netnsTopo) ns(x string) string {
	return map[string]string{"a": tp.a, "b": tp.b, "c": tp.c}[x]
}

func (tp *netnsTopo) ip(args ...string) string {
	tp.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// holdsVIP reports whether node x's eth0 carries the VIP.
func (tp *netnsTopo) holdsVIP(x string) bool {
	tp.t.Helper()
	return strings.Contains(tp.ip("-n", tp.ns(x), "-4", "addr", "show", "dev", "eth0"), "inet "+nsVIP+" ")
}

// clientNeighMAC is the client's neighbour entry for the VIP ("" if none).
func (tp *netnsTopo) clientNeighMAC() string {
	tp.t.Helper()
	f := strings.Fields(tp.ip("-n", tp.c, "neigh", "show", "10.77.0.100", "dev", "br0"))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}

// clientSend makes the client send one datagram to the VIP, so that its
// kernel resolves the VIP with ARP.
func (tp *netnsTopo) clientSend() {
	tp.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", tp.c, tp.exe)
	cmd.Env = append(os.Environ(), helperEnv+"=send", helperDest+"=10.77.0.100:9")
	if out, err := cmd.CombinedOutput(); err != nil {
		tp.t.Fatalf("client send: %v: %s", err, out)
	}
}

// --- node processes ---

type nodeProc struct {
	name   string
	cmd    *exec.Cmd
	events chan helperEvent
	exited chan struct{}
	err    error
	logs   bytes.Buffer
	mu     sync.Mutex
}

func (tp *netnsTopo) startNode(x string, prio uint8, noPreempt bool) *nodeProc {
	t := tp.t
	t.Helper()
	self, peer := "10.77.0.1", "10.77.0.2"
	if x == "b" {
		self, peer = peer, self
	}
	conf, _ := json.Marshal(helperConfig{Address: self, Peer: peer, Priority: prio, NoPreempt: noPreempt})
	p := &nodeProc{name: x, events: make(chan helperEvent, 256), exited: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", tp.ns(x), tp.exe)
	p.cmd.Env = append(os.Environ(), helperEnv+"=node", helperConf+"="+string(conf))
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.logs.Write(b)
	})
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e helperEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				p.events <- e
			}
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("node %s log:\n%s", p.name, p.logs.String())
			p.mu.Unlock()
		}
	})
	p.wait(t, 5*time.Second, "ready", "")
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// wait returns the next event of kind ev (and role to, if set).
func (p *nodeProc) wait(t *testing.T, d time.Duration, ev, to string) helperEvent {
	t.Helper()
	match := func(e helperEvent) bool {
		if e.Ev == "stats" {
			t.Logf("node %s: %s", p.name, e.Detail)
		}
		return e.Ev == ev && (to == "" || e.To == to)
	}
	timeout := time.After(d)
	for {
		select {
		case e := <-p.events:
			if match(e) {
				return e
			}
		case <-p.exited:
			for { // what it printed before exiting is already queued
				select {
				case e := <-p.events:
					if match(e) {
						return e
					}
				default:
					t.Fatalf("node %s exited (%v) before %s %s", p.name, p.err, ev, to)
				}
			}
		case <-timeout:
			t.Fatalf("node %s: no %s %s within %v", p.name, ev, to, d)
		}
	}
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *nodeProc) terminate(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 5*time.Second, "exit", "")
	<-p.exited
	if p.err != nil {
		t.Fatalf("node %s exit: %v", p.name, p.err)
	}
}

// startPair starts a (priority 150) and b (100) and waits until a holds the
// VIP and the client has resolved it to a's MAC.
func startPair(t *testing.T, tp *netnsTopo) (a, b *nodeProc) {
	started := time.Now()
	a = tp.startNode("a", 150, false)
	b = tp.startNode("b", 100, false)
	e := a.wait(t, 5*time.Second, "role", "MASTER")
	b.wait(t, time.Second, "role", "BACKUP")
	t.Logf("a (priority 150) elected master %v after the processes started", time.Unix(0, e.At).Sub(started).Round(time.Millisecond))
	poll.Until(t, 2*time.Second, "VIP on a's eth0", func() bool { return tp.holdsVIP("a") })
	if tp.holdsVIP("b") {
		t.Fatal("backup b holds the VIP too")
	}
	tp.clientSend()
	poll.Until(t, 2*time.Second, "client resolves the VIP to a's MAC", func() bool { return tp.clientNeighMAC() == nsMAC["a"] })
	return a, b
}

// TestNetnsKillTakeover: SIGKILL the master; the backup claims within
// 3×interval+skew and its gratuitous ARPs move the client's neighbour entry.
// The killed node's leftover VIP is removed when it starts again.
func TestNetnsKillTakeover(t *testing.T) {
	tp := newNetnsTopo(t)
	a, b := startPair(t, tp)
	time.Sleep(300 * time.Millisecond)

	killed := time.Now()
	a.cmd.Process.Kill()
	e := b.wait(t, 3*time.Second, "role", "MASTER")
	claimed := time.Unix(0, e.At)
	took := claimed.Sub(killed)
	down := MasterDownInterval(100, nsInterval)
	t.Logf("kill -9 of the master: backup claimed the VIP after %v (master-down interval %v)", took.Round(time.Millisecond), down)
	if took > down+400*time.Millisecond || took < down-nsInterval-100*time.Millisecond {
		t.Errorf("takeover after %v, want within [%v, %v]", took, down-nsInterval, down)
	}
	poll.Until(t, time.Second, "VIP on b's eth0", func() bool { return tp.holdsVIP("b") })
	seen := poll.Until(t, time.Second, "client's neighbour entry moves to b's MAC (gratuitous ARP)",
		func() bool { return tp.clientNeighMAC() == nsMAC["b"] })
	t.Logf("client neighbour entry showed b's MAC %v after the claim (no client traffic since)", seen.Sub(claimed).Round(time.Millisecond))

	// SIGKILL leaves the address behind; the restarted node removes it.
	if !tp.holdsVIP("a") {
		t.Log("note: a's VIP vanished with the process")
	}
	restarted := time.Now()
	a2 := tp.startNode("a", 150, true) // nopreempt: it must stay backup
	a2.wait(t, 2*time.Second, "role", "BACKUP")
	gone := poll.Until(t, 2*time.Second, "restarted a removes its stale VIP", func() bool { return !tp.holdsVIP("a") })
	t.Logf("restarted a removed its stale VIP %v after starting", gone.Sub(restarted).Round(time.Millisecond))
	time.Sleep(time.Second)
	if !tp.holdsVIP("b") || tp.holdsVIP("a") || tp.clientNeighMAC() != nsMAC["b"] {
		t.Fatalf("after a's restart: a holds %v, b holds %v, client → %s", tp.holdsVIP("a"), tp.holdsVIP("b"), tp.clientNeighMAC())
	}

	// Someone adds the VIP on the backup: the reconcile loop (netlink
	// subscription) removes it well before its 1s periodic check.
	added := time.Now()
	tp.ip("-n", tp.a, "addr", "add", nsVIP, "dev", "eth0")
	gone = poll.Until(t, 3*time.Second, "backup a removes a VIP added behind its back", func() bool { return !tp.holdsVIP("a") })
	t.Logf("stray VIP on the backup removed after %v", gone.Sub(added).Round(time.Millisecond))
	if gone.Sub(added) > 500*time.Millisecond {
		t.Errorf("stray VIP removed after %v: the address subscription did not fire", gone.Sub(added))
	}
	a2.terminate(t)
	b.terminate(t)
	if tp.holdsVIP("b") {
		t.Fatal("b kept the VIP after a graceful stop")
	}
}

// TestNetnsGracefulTakeover: SIGTERM the master; it keeps the VIP while
// the backup claims after about its skew time, and removes it only on the
// new master's first advert, so the VIP always has a holder.
func TestNetnsGracefulTakeover(t *testing.T) {
	tp := newNetnsTopo(t)
	a, b := startPair(t, tp)
	time.Sleep(300 * time.Millisecond)

	stopped := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	e := b.wait(t, 3*time.Second, "role", "MASTER")
	claimed := time.Unix(0, e.At)
	took := claimed.Sub(stopped)
	skew := SkewTime(100, nsInterval)
	t.Logf("graceful stop of the master: backup claimed the VIP after %v (skew %v)", took.Round(time.Millisecond), skew)
	if took > skew+300*time.Millisecond {
		t.Errorf("graceful takeover after %v, want about the skew %v", took, skew)
	}
	handing := time.Unix(0, a.wait(t, 3*time.Second, "role", "RELEASING").At)
	rel := a.wait(t, 3*time.Second, "role", "INIT")
	released := time.Unix(0, rel.At)
	t.Logf("  of which: SIGTERM to a's handover (not master, VIP kept) %v, to b's claim %v, b's claim to a's removal of the VIP %v",
		handing.Sub(stopped).Round(time.Millisecond), took.Round(time.Millisecond), released.Sub(claimed).Round(time.Millisecond))
	// b's claim is stamped before it adds the VIP and advertises; a's
	// release after it heard that advert and removed the VIP.
	if released.Before(claimed) {
		t.Errorf("a removed the VIP %v before b claimed it: nobody held it meanwhile", claimed.Sub(released))
	}
	if !strings.Contains(rel.Reason, "10.77.0.2 claimed") {
		t.Errorf("a released because %q, want b's claim", rel.Reason)
	}
	// Before waiting for a's process to exit, which takes its own time.
	seen := poll.Until(t, time.Second, "client's neighbour entry moves to b's MAC (gratuitous ARP)",
		func() bool { return tp.clientNeighMAC() == nsMAC["b"] })
	t.Logf("client neighbour entry showed b's MAC %v after the claim", seen.Sub(claimed).Round(time.Millisecond))
	a.wait(t, 3*time.Second, "exit", "")
	<-a.exited
	if a.err != nil {
		t.Fatalf("a exit: %v", a.err)
	}
	if tp.holdsVIP("a") {
		t.Fatal("a kept the VIP after a graceful stop")
	}
	poll.Until(t, time.Second, "VIP on b's eth0", func() bool { return tp.holdsVIP("b") })

	// Someone deletes the VIP from the master: restored at once (netlink
	// subscription), not at the next 1s periodic check.
	time.Sleep(300 * time.Millisecond)
	deleted := time.Now()
	tp.ip("-n", tp.b, "addr", "del", nsVIP, "dev", "eth0")
	back := poll.Until(t, 3*time.Second, "master b restores a deleted VIP", func() bool { return tp.holdsVIP("b") })
	t.Logf("VIP deleted from the master restored after %v", back.Sub(deleted).Round(time.Millisecond))
	if back.Sub(deleted) > 500*time.Millisecond {
		t.Errorf("VIP restored after %v: the address subscription did not fire", back.Sub(deleted))
	}
	b.terminate(t)
}
