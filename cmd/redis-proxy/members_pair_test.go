package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/proxybin"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// pairProxy is one redis-proxy process of a pair on loopback: the built
// binary, its own heartbeat address (127.0.0.1 or 127.0.0.2, so the two
// tell each other apart), no VIP (the election decides authority without
// an address to move), its own state directory.
type pairProxy struct {
	t    *testing.T
	name string
	bin  string
	env  []string
	adm  adminEnv
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer // stderr of every run, appended
	runs int
}

// newPair returns the two proxies of a pair for servers, not started: a
// (priority 150) on 127.0.0.1, b (priority 100) on 127.0.0.2.
func newPair(t *testing.T, servers []string) (a, b *pairProxy) {
	bin := proxybin.Build(t)
	ipA, ipB := "127.0.0.1", "127.0.0.2"
	hbA, hbB := int(freeUDPPort(t, ipA)), int(freeUDPPort(t, ipB))
	mk := func(name, ip string, hb int, peer string, peerHB, prio int) *pairProxy {
		p := &pairProxy{t: t, name: name, bin: bin, dir: filepath.Join(t.TempDir(), "state"), out: &bytes.Buffer{},
			adm: adminEnv{Listen: net.JoinHostPort(ip, strconv.Itoa(redistest.FreePort(t)))}}
		p.env = []string{
			"REDIS_PROXY_LISTEN=" + net.JoinHostPort(ip, strconv.Itoa(redistest.FreePort(t))),
			"REDIS_PROXY_ADMIN_LISTEN=" + p.adm.Listen,
			"REDIS_PROXY_SERVERS=" + strings.Join(servers, ","),
			"REDIS_PROXY_STATE_DIR=" + p.dir,
			"REDIS_PROXY_ADDRESS=" + ip,
			"REDIS_PROXY_HEARTBEAT_PORT=" + strconv.Itoa(hb),
			"REDIS_PROXY_PEERS=" + net.JoinHostPort(peer, strconv.Itoa(peerHB)),
			"REDIS_PROXY_PRIORITY=" + strconv.Itoa(prio),
			"REDIS_PROXY_HEARTBEAT_SECRET=pair-test-heartbeat-secret-0123456789",
			"REDIS_PROXY_ADVERT_INTERVAL=100ms",
			"REDIS_PROXY_CHECK_INTERVAL=100ms",
			"REDIS_PROXY_DOWN_AFTER=500ms",
			"REDIS_PROXY_LOG_FORMAT=json",
		}
		t.Cleanup(func() {
			p.stop(syscall.SIGKILL)
			if t.Failed() {
				p.mu.Lock()
				lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
				p.mu.Unlock()
				t.Logf("%s log (last 60 lines):\n%s", name, strings.Join(lines[max(0, len(lines)-60):], "\n"))
			}
		})
		return p
	}
	return mk("proxy-a", ipA, hbA, ipB, hbB, 150), mk("proxy-b", ipB, hbB, ipA, hbA, 100)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *pairProxy) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin)
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envPrefix+"_") })
	cmd.Env = append(env, p.env...)
	cmd.Stderr = lockedWriter{&p.mu, p.out}
	cmd.Stdout = cmd.Stderr
	p.mu.Lock()
	p.runs++
	fmt.Fprintf(p.out, "---- run %d\n", p.runs)
	p.mu.Unlock()
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	poll.Until(p.t, 10*time.Second, p.name+" admin API up", func() bool {
		_, err := serversOf(p.adm)
		return err == nil
	})
}

// stop signals the process and waits for it to exit.
func (p *pairProxy) stop(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		p.t.Errorf("%s did not exit within 10s of %v", p.name, sig)
	}
}

func (p *pairProxy) servers() serversView {
	p.t.Helper()
	v, err := serversOf(p.adm)
	if err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	return v
}

// active reports whether the proxy is the pair's active node (VRRP MASTER).
func (p *pairProxy) active() bool {
	resp, err := httpc.Get("http://" + p.adm.Listen + "/topology")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var tv struct {
		Pair *pairStatus `json:"pair"`
	}
	return json.NewDecoder(resp.Body).Decode(&tv) == nil && tv.Pair != nil && tv.Pair.Role == "MASTER"
}

// stateFile is what the proxy's state file holds (zero if none).
func (p *pairProxy) stateFile() membership {
	m, _, _, _ := loadMembership(p.dir)
	return m
}

func (p *pairProxy) serversCmd(args ...string) (int, string) {
	var out, errb bytes.Buffer
	rc := serversCmd(p.adm, args, &out, &errb)
	return rc, out.String() + errb.String()
}

// agreement watches both proxies' GET /servers until stopped, and reports
// any version that the two ever showed with different servers.
type agreement struct {
	seen     map[uint64][]string
	conflict []string
	polls    int
	stop     chan struct{}
	done     chan struct{}
}

func watchAgreement(ps ...*pairProxy) *agreement {
	ag := &agreement{seen: map[uint64][]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(ag.done)
		for {
			for _, p := range ps {
				v, err := serversOf(p.adm)
				if err != nil {
					continue // restarting
				}
				ag.polls++
				if prev, ok := ag.seen[v.Version]; ok && !slices.Equal(prev, v.Servers) {
					ag.conflict = append(ag.conflict, fmt.Sprintf("%s: version %d is %v, elsewhere %v", p.name, v.Version, v.Servers, prev))
				}
				ag.seen[v.Version] = v.Servers
			}
			select {
			case <-ag.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return ag
}

func (ag *agreement) end() { close(ag.stop); <-ag.done }

// waitAgree waits until both proxies show version with servers, and their
// state files hold it, and returns how long after since that was.
func waitAgree(t *testing.T, since time.Time, version uint64, servers []string, ps ...*pairProxy) time.Duration {
	t.Helper()
	poll.Until(t, 10*time.Second, fmt.Sprintf("both proxies at version %d %v", version, servers), func() bool {
		for _, p := range ps {
			v, err := serversOf(p.adm)
			if err != nil || v.Version != version || !slices.Equal(v.Servers, servers) {
				return false
			}
			if f := p.stateFile(); f.Version != version || !slices.Equal(f.Servers, servers) {
				return false
			}
		}
		return true
	})
	return time.Since(since)
}

// TestServersPairAgree runs the pair as two real binaries on loopback
// (heartbeat over UDP between 127.0.0.1 and 127.0.0.2, authenticated, no
// VIP) against real Redis servers. Changes are refused on the standby with
// the active proxy's address, made on the active one, and reach the
// standby's list and state file; neither ever shows a version with other
// servers than the other shows for it. The list survives restarting both,
// the standby catches up with a change it missed while down, and a change
// made by the standby while it was active reaches the returning proxy,
// which then takes the VIP back and manages the added server.
func TestServersPairAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary against real redis-server processes: skipped under -short (the unit layer)")
	}
	r1, r2, r3 := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	r2.ReplicaOf(r1)
	env := []string{r1.Addr, r2.Addr}
	a, b := newPair(t, env)
	a.start()
	b.start()
	poll.Until(t, 10*time.Second, "proxy-a active, proxy-b standby", func() bool { return a.active() && !b.active() })
	ag := watchAgreement(a, b)
	defer func() {
		ag.end()
		t.Logf("agreement: %d polls of GET /servers on both proxies; versions seen %v", ag.polls, slices.Sorted(func(yield func(uint64) bool) {
			for v := range ag.seen {
				if !yield(v) {
					return
				}
			}
		}))
		for _, c := range ag.conflict {
			t.Errorf("disagreement: %s", c)
		}
	}()

	// On the standby: refused, naming the active proxy.
	if rc, out := b.serversCmd("add", r3.Addr); rc != 1 || !strings.Contains(out, "409") || !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("add on the standby: exit %d, %q; want a 409 naming 127.0.0.1", rc, out)
	}
	if v := b.servers(); v.MayChange || v.Peer == nil || v.Peer.Role != "MASTER" {
		t.Errorf("standby's GET /servers: %+v", v)
	}

	// On the active proxy: the standby follows.
	three := []string{r1.Addr, r2.Addr, r3.Addr}
	t0 := time.Now()
	if rc, out := a.serversCmd("add", r3.Addr); rc != 0 {
		t.Fatalf("add on the active proxy: exit %d: %s", rc, out)
	}
	t.Logf("add: the standby's list and state file agree %v after the command was sent", waitAgree(t, t0, 1, three, a, b).Round(time.Millisecond))
	waitReplicaOf(t, r3, r1, 10*time.Second)
	poll.Until(t, 10*time.Second, "both proxies route reads to r3 too", func() bool {
		return slices.Equal(routedReplicas(a), []string{r2.Addr, r3.Addr}) && slices.Equal(routedReplicas(b), []string{r2.Addr, r3.Addr})
	})
	t0 = time.Now()
	if rc, out := a.serversCmd("remove", r2.Addr); rc != 0 {
		t.Fatalf("remove on the active proxy: exit %d: %s", rc, out)
	}
	t.Logf("remove: agreed after %v", waitAgree(t, t0, 2, []string{r1.Addr, r3.Addr}, a, b).Round(time.Millisecond))

	// Both restarted: both start from their state files.
	a.stop(syscall.SIGTERM)
	b.stop(syscall.SIGTERM)
	a.start()
	b.start()
	poll.Until(t, 10*time.Second, "proxy-a active again", func() bool { return a.active() && !b.active() })
	for _, p := range []*pairProxy{a, b} {
		if v := p.servers(); v.Version != 2 || !slices.Equal(v.Servers, []string{r1.Addr, r3.Addr}) || !strings.HasPrefix(v.Source, "state file") {
			t.Errorf("%s after restarting both: %+v", p.name, v)
		}
	}

	// The standby misses a change while it is down, and catches up.
	b.stop(syscall.SIGKILL)
	if rc, out := a.serversCmd("add", r2.Addr); rc != 0 {
		t.Fatalf("add while the standby is down: exit %d: %s", rc, out)
	}
	back := []string{r1.Addr, r3.Addr, r2.Addr}
	t0 = time.Now()
	b.start()
	t.Logf("standby restarted after missing a change: agreed %v after its start", waitAgree(t, t0, 3, back, a, b).Round(time.Millisecond))

	// The active proxy dies; the standby takes over and removes r3; the
	// returning proxy (version 3 on its volume) adopts version 4, takes
	// the VIP back (higher priority) and keeps r3 out.
	a.stop(syscall.SIGKILL)
	poll.Until(t, 10*time.Second, "proxy-b active", b.active)
	if rc, out := b.serversCmd("remove", r3.Addr); rc != 0 {
		t.Fatalf("remove on proxy-b, now active: exit %d: %s", rc, out)
	}
	t0 = time.Now()
	a.start()
	t.Logf("old active proxy returned with an older list: agreed %v after its start", waitAgree(t, t0, 4, []string{r1.Addr, r2.Addr}, a, b).Round(time.Millisecond))
	poll.Until(t, 10*time.Second, "proxy-a active again", func() bool { return a.active() && !b.active() })
	// It adopted version 4 before it was given authority: never did it
	// act on version 3, which still held r3.
	adopted, authority := a.logIndex("servers adopted from the peer", ""), a.logIndex("authority changed", `"authority":true`)
	if adopted < 0 || authority < 0 || adopted > authority {
		t.Errorf("proxy-a's last run: adoption at log line %d, authority at line %d; want the adoption first", adopted, authority)
	}
	if v := a.servers(); v.Version != 4 || v.record(r3.Addr).Addr != "" {
		t.Errorf("proxy-a, active again: %+v", v)
	}
	if r, err := role(r3); err != nil || r.role != "slave" || r.masterPort != r1.Port {
		t.Errorf("r3 after its removal and the takeovers: ROLE %v (%v), want left a replica of %s", r, err, r1.Addr)
	}
	// And a change on the returned active proxy still reaches the standby.
	t0 = time.Now()
	if rc, out := a.serversCmd("add", r3.Addr); rc != 0 {
		t.Fatalf("add on proxy-a: exit %d: %s", rc, out)
	}
	t.Logf("add after the takeovers: agreed after %v", waitAgree(t, t0, 5, three, a, b).Round(time.Millisecond))
}

// logIndex is the line number, in the proxy's last run, of the first log
// line with message msg that contains also, or -1.
func (p *pairProxy) logIndex(msg, also string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	runs := strings.Split(p.out.String(), "---- run ")
	for i, line := range strings.Split(runs[len(runs)-1], "\n") {
		if strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, also) {
			return i
		}
	}
	return -1
}

// routedReplicas is the proxy's routing replicas (GET /topology).
func routedReplicas(p *pairProxy) []string {
	resp, err := httpc.Get("http://" + p.adm.Listen + "/topology")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var tv topologyView
	if json.NewDecoder(resp.Body).Decode(&tv) != nil {
		return nil
	}
	return tv.Routing.Replicas
}
