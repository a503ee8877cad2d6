//go:build linux

// Package netns runs the proxy pair end to end in Linux network namespaces:
// the real redis-proxy binary (built from this module by the test), real
// redis-server processes, the kernel's addresses, ARP and TCP. It is the
// privileged layer (root, no Docker) that the vip package's namespace tests
// cannot be: those drive vip.Node directly, this drives the product.
//
// Topology, rebuilt for every scenario (all addresses exist only inside the
// namespaces the test creates):
//
//	redis    eth0 10.77.0.10   redis-server :6379 (master), :6380 (replica)
//	proxy-a  eth0 10.77.0.21   redis-proxy, priority 150, MAC 02:00:00:77:00:21
//	proxy-b  eth0 10.77.0.22   redis-proxy, priority 100, MAC 02:00:00:77:00:22
//	client   eth0 10.77.0.30   this test binary re-executed as a client
//	switch   br0, one veth port per namespace above
//	VIP      10.77.0.100/24, held by the VRRP MASTER
//
// The client sets a unique key and reads it back through the VIP every 5 ms
// (200 ms timeout per command, a new connection after a transport error)
// and reports every command as a JSON line. Each scenario (SIGKILL, SIGTERM,
// and SIGKILL again with the client's ARP entry watched in detail) signals
// the active proxy and measures, from the signal, the first successful
// command served by the new holder; checks that the client's neighbour entry
// for the VIP was moved by the new holder's gratuitous ARP (the client's
// reachable time is raised to 60 s, so expiry cannot explain it); that
// exactly one proxy holds the VIP at the end (after a SIGKILL, once the
// killed proxy was restarted: a dead process cannot remove its address);
// and that every acknowledged write is on the Redis master.
//
// The tests skip when not root, without iproute2's ip, without
// redis-server, when namespaces cannot be created, and under -short.
// REDIS_PROXY_BIN runs a given binary instead of building one.
package netns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/proxybin"
	"github.com/redis-proxy/redis-proxy/internal/writetest"
)

const (
	helperEnv = "REDIS_PROXY_NETNS_HELPER" // "client" or "redis"
	helperArg = "REDIS_PROXY_NETNS_ARG"    // the helper's argument

	vipAddr   = "10.77.0.100"
	vipPrefix = vipAddr + "/24"
	redisIP   = "10.77.0.10"
	secret    = "netns-e2e-heartbeat-secret-0123456789"

	opTimeout = 200 * time.Millisecond // per dial and per command
	opPace    = 5 * time.Millisecond   // one SET+GET round every 5 ms

	nsPrefix = "rpe" // namespace names: rpe<pid>-<seq>-<role>
)

// nodes of the topology: namespace role → address and MAC.
var nodes = []struct {
	role, ip, mac string
}{
	{"redis", redisIP, "02:00:00:77:00:10"},
	{"proxy-a", "10.77.0.21", "02:00:00:77:00:21"},
	{"proxy-b", "10.77.0.22", "02:00:00:77:00:22"},
	{"client", "10.77.0.30", "02:00:00:77:00:30"},
}

func macOf(role string) string {
	for _, n := range nodes {
		if n.role == role {
			return n.mac
		}
	}
	return ""
}

func ipOf(role string) string {
	for _, n := range nodes {
		if n.role == role {
			return n.ip
		}
	}
	return ""
}

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "client":
		os.Exit(helperClient(os.Getenv(helperArg)))
	case "redis":
		os.Exit(helperRedis(os.Getenv(helperArg)))
	}
	os.Exit(m.Run())
}

// --- helpers run inside the namespaces (this binary, re-executed) ---

// helperClient writes and reads unique keys through addr until its stdin
// closes, printing each command as a JSON writetest.Op. A round (SET, then
// GET of the key) starts every opPace; each dial and command has opTimeout.
func helperClient(addr string) int {
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	c := writetest.Client{Addr: addr, Prefix: fmt.Sprintf("netns:%d", time.Now().UnixNano()), ReadBack: true,
		DialTimeout: opTimeout, Timeout: opTimeout, Pace: opPace}
	c.Run(ctx, func(o writetest.Op) {
		enc.Encode(o)
		w.Flush()
	})
	return 0
}

// readback is what the redis helper reports in "readback" mode.
type readback struct {
	Roles  map[string]string `json:"roles"` // addr → master, slave, or the error
	Master string            `json:"master"`
	writetest.Readback
}

// helperRedis, in the redis namespace: "wait" waits until the master
// answers and the replica's link is up; "readback" reads the JSON map
// key → value on stdin from the master and prints a readback.
func helperRedis(mode string) int {
	addrs := []string{redisIP + ":6379", redisIP + ":6380"}
	dial := func(a string) (redis.Conn, error) {
		return redis.Dial("tcp", a, redis.DialConnectTimeout(time.Second),
			redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(5*time.Second))
	}
	switch mode {
	case "wait":
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok := false
			if c, err := dial(addrs[1]); err == nil {
				info, _ := redis.String(c.Do("INFO", "replication"))
				ok = strings.Contains(info, "master_link_status:up")
				c.Close()
			}
			if ok {
				return 0
			}
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "replica link not up after 10s")
				return 1
			}
			time.Sleep(20 * time.Millisecond)
		}
	case "readback":
		var want map[string]string
		if err := json.NewDecoder(os.Stdin).Decode(&want); err != nil {
			fmt.Fprintln(os.Stderr, "readback input:", err)
			return 2
		}
		rb := readback{Roles: map[string]string{}}
		for _, a := range addrs {
			c, err := dial(a)
			if err != nil {
				rb.Roles[a] = err.Error()
				continue
			}
			role, err := redis.Values(c.Do("ROLE"))
			if err != nil || len(role) == 0 {
				rb.Roles[a] = fmt.Sprintf("ROLE: %v", err)
			} else {
				r, _ := redis.String(role[0], nil)
				rb.Roles[a] = r
				if r == "master" && rb.Master == "" {
					rb.Master = a
				}
			}
			c.Close()
		}
		if rb.Master == "" {
			json.NewEncoder(os.Stdout).Encode(rb)
			return 0
		}
		var err error
		if rb.Readback, err = writetest.ReadBack(rb.Master, want); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		json.NewEncoder(os.Stdout).Encode(rb)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown redis helper mode %q\n", mode)
	return 2
}

// --- environment ---

func requireEnv(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end namespace test: skipped under -short (the unit layer)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth pairs and a bridge, and runs the proxies with NET_ADMIN/NET_RAW")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("needs redis-server (apt-get install -y redis-server)")
	}
	probe := fmt.Sprintf("%sprobe%d", nsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, bytes.TrimSpace(out))
	}
	exec.Command("ip", "netns", "del", probe).Run()
	removeStaleNamespaces()
}

// removeStaleNamespaces deletes namespaces left by a run that was killed
// before its cleanups (its pid is gone).
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		pid, _, ok := strings.Cut(strings.TrimPrefix(f[0], nsPrefix), "-")
		if _, err := strconv.Atoi(pid); !ok || err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
}

// --- topology ---

var nsSeq int

type topo struct {
	t   *testing.T
	ns  map[string]string // role → namespace name
	exe string            // this test binary
	bin string            // redis-proxy
	dir string

	procs []*proc // every process started, checked by eventually
}

func newTopo(t *testing.T, bin string) *topo {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	nsSeq++
	id := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsSeq)
	tp := &topo{t: t, ns: map[string]string{}, exe: exe, bin: bin, dir: t.TempDir()}
	roles := []string{"switch"}
	for _, n := range nodes {
		roles = append(roles, n.role)
	}
	for _, r := range roles {
		name := id + "-" + r
		tp.ns[r] = name
		tp.ip("netns", "add", name)
		// Registered first, so it runs after every process is killed.
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		tp.ip("-n", name, "link", "set", "lo", "up")
	}
	sw := tp.ns["switch"]
	tp.ip("-n", sw, "link", "add", "br0", "type", "bridge")
	tp.ip("-n", sw, "link", "set", "br0", "up")
	for i, n := range nodes {
		port := fmt.Sprintf("p%d", i)
		tp.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", tp.ns[n.role])
		tp.ip("-n", sw, "link", "set", port, "master", "br0")
		tp.ip("-n", sw, "link", "set", port, "up")
		tp.ip("-n", tp.ns[n.role], "link", "set", "eth0", "address", n.mac)
		tp.ip("-n", tp.ns[n.role], "addr", "add", n.ip+"/24", "dev", "eth0")
		tp.ip("-n", tp.ns[n.role], "link", "set", "eth0", "up")
	}
	// Neighbour entries the client confirms stay REACHABLE for 30-90 s, so
	// only an ARP from the new holder can move the VIP's entry in a test.
	path := "/proc/sys/net/ipv4/neigh/eth0/base_reachable_time_ms"
	tp.nsExec("client", "sh", "-c", "echo 60000 > "+path)
	if got := strings.TrimSpace(tp.nsExec("client", "cat", path)); got != "60000" {
		t.Fatalf("client base_reachable_time_ms = %q after setting 60000", got)
	}
	return tp
}

func (tp *topo) ip(args ...string) string {
	tp.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nsExec runs a command in the namespace of role and returns its output.
func (tp *topo) nsExec(role string, argv ...string) string {
	tp.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", tp.ns[role]}, argv...)...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("in %s: %s: %v: %s", role, strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// holdsVIP reports whether the proxy's eth0 carries the VIP. It does not
// fail the test (it also runs in pollers).
func (tp *topo) holdsVIP(role string) bool {
	out, err := exec.Command("ip", "-n", tp.ns[role], "-4", "-o", "addr", "show", "dev", "eth0").Output()
	return err == nil && strings.Contains(string(out), "inet "+vipPrefix+" ")
}

// neigh is the client's neighbour entry for the VIP: "MAC STATE", or the
// state alone when there is no address (or "" when there is no entry).
func (tp *topo) neigh() string {
	out, err := exec.Command("ip", "-n", tp.ns["client"], "neigh", "show", vipAddr, "dev", "eth0").Output()
	if err != nil {
		return "error: " + err.Error()
	}
	f := strings.Fields(string(out))
	mac := ""
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			mac = f[i+1]
		}
	}
	if len(f) == 0 {
		return ""
	}
	return strings.TrimSpace(mac + " " + f[len(f)-1])
}

// holders lists the proxies whose eth0 carries the VIP.
func (tp *topo) holders() []string {
	var h []string
	for _, r := range []string{"proxy-a", "proxy-b"} {
		if tp.holdsVIP(r) {
			h = append(h, r)
		}
	}
	return h
}

// --- processes ---

// proc is a process the test started in a namespace. `ip netns exec`
// execs the program, so cmd.Process is the program itself and a signal
// reaches it directly.
type proc struct {
	name     string
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
	stopping atomic.Bool // the test is ending it; an exit is expected

	mu  sync.Mutex
	log bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs argv in role's namespace. The process is killed when the test
// ends (and by the kernel if the test process dies: Pdeathsig); its output
// is written to the test log when the test failed.
func (tp *topo) start(name, role string, env []string, stdin io.Reader, stdout io.Writer, argv ...string) *proc {
	t := tp.t
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", tp.ns[role]}, argv...)...)
	p.cmd.Env = env
	p.cmd.Dir = tp.dir
	p.cmd.Stderr = p
	p.cmd.Stdout = p
	p.cmd.Stdin = stdin
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tp.procs = append(tp.procs, p)
	t.Cleanup(func() {
		p.stopping.Store(true)
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s output:\n%s", p.name, p.logText())
		}
	})
	return p
}

func (tp *topo) startRedis() {
	tp.t.Helper()
	// A diskless sync without Redis 7's 5 s delay, so the replica is
	// linked at once.
	common := []string{"--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no",
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
	tp.start("redis-6379", "redis", []string{"PATH=" + os.Getenv("PATH")}, nil, nil,
		append([]string{"redis-server", "--port", "6379", "--dir", tp.dir, "--dbfilename", "m.rdb"}, common...)...)
	tp.start("redis-6380", "redis", []string{"PATH=" + os.Getenv("PATH")}, nil, nil,
		append([]string{"redis-server", "--port", "6380", "--dir", tp.dir, "--dbfilename", "r.rdb",
			"--replicaof", redisIP, "6379"}, common...)...)
	cmd := exec.Command("ip", "netns", "exec", tp.ns["redis"], tp.exe)
	cmd.Env = append(os.Environ(), helperEnv+"=redis", helperArg+"=wait")
	if out, err := cmd.CombinedOutput(); err != nil {
		tp.t.Fatalf("redis not ready: %v: %s", err, out)
	}
}

// proxyEnv is the whole environment of a proxy (nothing inherited, so no
// REDIS_PROXY_* of the caller's shell leaks in).
func proxyEnv(role string) []string {
	peer, prio := ipOf("proxy-b"), "150"
	if role == "proxy-b" {
		peer, prio = ipOf("proxy-a"), "100"
	}
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"REDIS_PROXY_SERVERS=" + redisIP + ":6379," + redisIP + ":6380",
		"REDIS_PROXY_LISTEN=0.0.0.0:6379",
		"REDIS_PROXY_ADMIN_LISTEN=127.0.0.1:9736",
		"REDIS_PROXY_PEERS=" + peer,
		"REDIS_PROXY_VIP=" + vipPrefix,
		"REDIS_PROXY_VIP_INTERFACE=eth0",
		"REDIS_PROXY_PRIORITY=" + prio,
		"REDIS_PROXY_HEARTBEAT_SECRET=" + secret,
	}
}

func (tp *topo) startProxy(role string) *proc {
	tp.t.Helper()
	return tp.start(role, role, proxyEnv(role), nil, nil, tp.bin)
}

// healthy runs `redis-proxy healthcheck` in the proxy's namespace.
func (tp *topo) healthy(role string) bool {
	cmd := exec.Command("ip", "netns", "exec", tp.ns[role], tp.bin, "healthcheck")
	cmd.Env = proxyEnv(role)
	return cmd.Run() == nil
}

// signal sends sig to p, whose exit is then expected.
func (p *proc) signal(sig syscall.Signal) error {
	p.stopping.Store(true)
	return p.cmd.Process.Signal(sig)
}

// checkAlive fails the test if a process exited that the test did not
// stop (a crash, or something outside the test killing it).
func (tp *topo) checkAlive() {
	tp.t.Helper()
	for _, p := range tp.procs {
		if p.exited() && !p.stopping.Load() {
			tp.t.Fatalf("%s exited unexpectedly (%v): the test did not stop it", p.name, p.err)
		}
	}
}

// eventually polls cond every 10 ms until it holds or d passes, checking
// that no process died behind the test's back.
func (tp *topo) eventually(d time.Duration, what string, cond func() bool) time.Time {
	tp.t.Helper()
	return poll.Until(tp.t, d, what, func() bool {
		tp.checkAlive()
		return cond()
	})
}

// --- the client ---

type client struct {
	tp    *topo
	p     *proc
	stdin io.WriteCloser
	read  chan struct{} // closed when stdout is consumed
	rec   writetest.Recorder
}

func (tp *topo) startClient() *client {
	tp.t.Helper()
	c := &client{tp: tp, read: make(chan struct{})}
	pr, pw := io.Pipe()
	env := append(os.Environ(), helperEnv+"=client", helperArg+"="+vipAddr+":6379")
	// The client runs until its stdin closes (also when this process dies).
	inR, inW, err := os.Pipe()
	if err != nil {
		tp.t.Fatal(err)
	}
	c.stdin = inW
	tp.t.Cleanup(func() { inW.Close() })
	c.p = tp.start("client", "client", env, inR, pw, tp.exe)
	inR.Close()
	go func() {
		defer close(c.read)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var o writetest.Op
			if json.Unmarshal(sc.Bytes(), &o) == nil && o.Cmd != "" {
				c.rec.Add(o)
			} else {
				c.p.Write(append(sc.Bytes(), '\n'))
			}
		}
	}()
	go func() {
		<-c.p.done
		pw.Close()
	}()
	return c
}

// firstSuccessAfter is the first successful command that started at or
// after t0 (a command started before the signal may have been answered by
// the old holder).
func (c *client) firstSuccessAfter(t0 time.Time) (writetest.Op, bool) {
	for _, o := range c.rec.Ops() {
		if o.Err == nil && !o.Sent.Before(t0) {
			return o, true
		}
	}
	return writetest.Op{}, false
}

func (c *client) successesAfter(t0 time.Time) int {
	return c.rec.Count(func(o writetest.Op) bool { return o.Err == nil && !o.Sent.Before(t0) })
}

func (c *client) waitSuccesses(t *testing.T, t0 time.Time, n int, d time.Duration, what string) {
	t.Helper()
	c.tp.eventually(d, fmt.Sprintf("%d successful commands through the VIP %s", n, what), func() bool {
		return c.successesAfter(t0) >= n
	})
}

// stop ends the client and waits for its last records.
func (c *client) stop(t *testing.T) {
	t.Helper()
	c.p.stopping.Store(true)
	if c.stdin != nil {
		c.stdin.Close()
	}
	select {
	case <-c.p.done:
	case <-time.After(3 * time.Second):
		c.p.cmd.Process.Kill()
		<-c.p.done
	}
	<-c.read
}

// stats summarises the client's records.
type stats struct {
	sets, gets, errors int
	acked              map[string]string
	byKind             map[string]int
	mismatches         int
}

func summarize(ops []writetest.Op, from, to time.Time) stats {
	s := stats{acked: writetest.AckedWrites(ops), byKind: map[string]int{}}
	for _, o := range ops {
		if o.Sent.Before(from) || o.Sent.After(to) {
			continue
		}
		switch {
		case o.Err != nil:
			s.errors++
			s.byKind[errKind(o.Err.Error())]++
			if o.Stale() {
				s.mismatches++
			}
		case o.Cmd == "SET":
			s.sets++
		default:
			s.gets++
		}
	}
	return s
}

func errKind(e string) string {
	for _, k := range []string{"connection refused", "i/o timeout", "connection reset", "EOF", "broken pipe", "no route", "read back", "TRYAGAIN", "outcome unknown"} {
		if strings.Contains(e, k) {
			return k
		}
	}
	return e
}

func kinds(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s×%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// --- observation of changes ---

// timeline records the values a probe returned, at the times they changed.
type timeline struct {
	mu      sync.Mutex
	changes []change
	done    chan struct{}
}

type change struct {
	at  time.Time
	val string
}

func watch(ctx context.Context, probe func() string) *timeline {
	tl := &timeline{done: make(chan struct{})}
	go func() {
		defer close(tl.done)
		prev := "\x00"
		for ctx.Err() == nil {
			v := probe()
			if v != prev {
				tl.mu.Lock()
				tl.changes = append(tl.changes, change{time.Now(), v})
				tl.mu.Unlock()
				prev = v
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return tl
}

// first is the first time at or after t0 the probe returned a value
// satisfying ok.
func (tl *timeline) first(t0 time.Time, ok func(string) bool) (time.Time, bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, c := range tl.changes {
		if !c.at.Before(t0) && ok(c.val) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

// since lists the changes from t0 on, in ms relative to ref (the value
// current at t0 first).
func (tl *timeline) since(t0, ref time.Time) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var b strings.Builder
	for i, c := range tl.changes {
		if c.at.Before(t0) && (i+1 < len(tl.changes) && !tl.changes[i+1].at.After(t0)) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%+dms %q", c.at.Sub(ref).Milliseconds(), c.val)
	}
	return b.String()
}

// logTime is the time= of the first line of p's log containing msg (slog
// text format) at or after t0.
func logTime(p *proc, msg string, t0 time.Time) (time.Time, string, bool) {
	for _, line := range strings.Split(p.logText(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err == nil && !at.Before(t0.Truncate(time.Millisecond)) {
			return at, line, true
		}
	}
	return time.Time{}, "", false
}

// notable are the log lines of a proxy worth reading in every run: the
// election, routing and anything at WARN or ERROR.
func notable(p *proc) string {
	var b strings.Builder
	for _, line := range strings.Split(p.logText(), "\n") {
		for _, k := range []string{"level=WARN", "level=ERROR", "vip claimed", "vip released", "became backup", "entered fault", "redis-proxy stopping", "vip node stopped", "panic", "DATA RACE"} {
			if strings.Contains(line, k) {
				fmt.Fprintf(&b, "    %s\n", line)
				break
			}
		}
	}
	return b.String()
}

// --- scenarios ---

type scenario struct {
	name     string
	sig      syscall.Signal
	limit    time.Duration // asserted bound on the kill → first success time
	goal     time.Duration // the product's goal, logged
	arpFocus bool          // scenario 3: the client's ARP entry in detail
}

type result struct {
	scenario string
	took     time.Duration // signal → first successful command through the new holder
	gap      time.Duration // the client's longest time without a success, around the takeover
	claimed  time.Duration // signal → the new holder's "vip claimed" log line
	arpMoved time.Duration // the new holder's claim → client's entry shows its MAC
	errors   int           // failed commands between the signal and the first success
	kinds    string
	total    int // failed commands in the whole scenario
	acked    int
	lost     int
	extra    string
}

var (
	resultsMu sync.Mutex
	results   []result
)

// TestNetnsPair runs the three failover scenarios in turn, each on a fresh
// topology with fresh processes, and logs a summary line per scenario.
func TestNetnsPair(t *testing.T) {
	requireEnv(t)
	bin := proxybin.Build(t)
	scens := []scenario{
		{name: "SIGKILL", sig: syscall.SIGKILL, limit: 2 * time.Second, goal: time.Second},
		{name: "SIGTERM", sig: syscall.SIGTERM, limit: time.Second, goal: 300 * time.Millisecond},
		{name: "GARP", sig: syscall.SIGKILL, limit: 2 * time.Second, goal: time.Second, arpFocus: true},
	}
	resultsMu.Lock()
	results = nil
	resultsMu.Unlock()
	for _, sc := range scens {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, bin, sc) })
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	t.Log("SUMMARY (took: signal → end of the first successful command started after the new holder's claim; gap: longest time without a successful command around it; claim: signal → new holder's `vip claimed`; arp: claim → client's neighbour entry shows the new MAC)")
	for _, r := range results {
		t.Logf("SUMMARY %-8s took=%-6v gap=%-6v claim=%-6v arp=%-6v errors=%d [%s] scenario-errors=%d acked=%d lost=%d %s",
			r.scenario, r.took.Round(time.Millisecond), r.gap.Round(time.Millisecond), r.claimed.Round(time.Millisecond), r.arpMoved.Round(time.Millisecond),
			r.errors, r.kinds, r.total, r.acked, r.lost, r.extra)
	}
}

func runScenario(t *testing.T, bin string, sc scenario) {
	res := result{scenario: sc.name}
	tp := newTopo(t, bin)
	tp.startRedis()
	started := time.Now()
	a := tp.startProxy("proxy-a")
	b := tp.startProxy("proxy-b")
	t.Cleanup(func() {
		t.Logf("proxy-a notable log lines:\n%s", notable(a))
		t.Logf("proxy-b notable log lines:\n%s", notable(b))
	})
	tp.eventually(10*time.Second, "proxy-a holds the VIP, both proxies healthy", func() bool {
		return tp.holdsVIP("proxy-a") && tp.healthy("proxy-a") && tp.healthy("proxy-b")
	})
	if h := tp.holders(); !slices.Equal(h, []string{"proxy-a"}) {
		t.Fatalf("VIP holders at start: %v, want [proxy-a]", h)
	}
	t.Logf("pair ready %v after the proxies started", time.Since(started).Round(time.Millisecond))

	cl := tp.startClient()
	clientStart := time.Now()
	cl.waitSuccesses(t, clientStart, 100, 10*time.Second, "before the fault")
	time.Sleep(500 * time.Millisecond)
	pre := tp.neigh()
	if !strings.HasPrefix(pre, macOf("proxy-a")+" ") {
		t.Fatalf("client's neighbour entry for the VIP before the fault: %q, want proxy-a's MAC %s", pre, macOf("proxy-a"))
	}
	if sc.arpFocus && !strings.HasSuffix(pre, " REACHABLE") {
		t.Fatalf("client's neighbour entry before the fault is %q: want REACHABLE (so that only an ARP can change it)", pre)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	neighTL := watch(ctx, tp.neigh)
	vipB := watch(ctx, func() string { return strconv.FormatBool(tp.holdsVIP("proxy-b")) })
	tp.eventually(time.Second, "first probes of the watchers", func() bool {
		_, n := neighTL.first(time.Time{}, func(string) bool { return true })
		_, v := vipB.first(time.Time{}, func(string) bool { return true })
		return n && v
	})

	fault := time.Now()
	if err := a.signal(sc.sig); err != nil {
		t.Fatalf("signal proxy-a: %v", err)
	}
	// The takeover: proxy-b's claim (its log line, or the VIP seen on its
	// eth0, whichever is earlier), then the first command the client
	// started after it that succeeded. proxy-a no longer serves the VIP by
	// then (killed, or its address removed before proxy-b could claim), so
	// that command was served by proxy-b. A command that succeeded between
	// the signal and the claim was answered by the old holder.
	var claimLog, vipOnB time.Time
	var claimLine string
	tp.eventually(5*time.Second, "proxy-b claims the VIP", func() bool {
		var ok1, ok2 bool
		claimLog, claimLine, ok1 = logTime(b, "vip claimed", fault)
		vipOnB, ok2 = vipB.first(fault, func(v string) bool { return v == "true" })
		return ok1 && ok2
	})
	res.claimed = claimLog.Sub(fault)
	claim := claimLog
	if vipOnB.Before(claim) {
		claim = vipOnB
	}
	var first writetest.Op
	tp.eventually(5*time.Second, "a successful command through the VIP after proxy-b's claim", func() bool {
		var ok bool
		first, ok = cl.firstSuccessAfter(claim)
		return ok
	})
	res.took = first.Done.Sub(fault)
	if early, ok := cl.firstSuccessAfter(fault); ok && early.Sent.Before(first.Sent) {
		t.Logf("proxy-a still answered a command started %+dms after the signal (ended %+dms)",
			early.Sent.Sub(fault).Milliseconds(), early.Done.Sub(fault).Milliseconds())
	}
	cl.waitSuccesses(t, fault, 100, 5*time.Second, "after the fault")

	// The client's entry.
	tp.eventually(2*time.Second, "client's neighbour entry shows proxy-b's MAC", func() bool {
		_, ok := neighTL.first(fault, func(v string) bool { return strings.HasPrefix(v, macOf("proxy-b")+" ") })
		return ok
	})
	moved, _ := neighTL.first(fault, func(v string) bool { return strings.HasPrefix(v, macOf("proxy-b")+" ") })
	res.arpMoved = moved.Sub(claim)
	t.Logf("%s of proxy-a: first successful command through the new holder %v after the signal (goal ≤ %v, asserted ≤ %v): %s %s started %+dms, ended %+dms",
		sc.name, res.took.Round(time.Millisecond), sc.goal, sc.limit, first.Cmd, first.Key,
		first.Sent.Sub(fault).Milliseconds(), first.Done.Sub(fault).Milliseconds())
	t.Logf("proxy-b claimed %v after the signal (log), VIP seen on its eth0 at %+dms: %s",
		res.claimed.Round(time.Millisecond), vipOnB.Sub(fault).Milliseconds(), strings.TrimSpace(claimLine))
	t.Logf("client neighbour entry for %s (ms from the signal): %s", vipAddr, neighTL.since(fault, fault))
	t.Logf("client entry moved to proxy-b's MAC %v after the claim", res.arpMoved.Round(time.Millisecond))
	if res.took > sc.limit {
		t.Errorf("%s: first successful command %v after the signal, want ≤ %v", sc.name, res.took, sc.limit)
	}
	if res.arpMoved > 500*time.Millisecond {
		t.Errorf("client's entry moved %v after proxy-b's claim, want ≤ 500ms (the gratuitous ARP)", res.arpMoved)
	}

	ops := cl.rec.Ops()
	var failed []writetest.Op
	byKind := map[string]int{}
	for _, o := range ops {
		if o.Err != nil && !o.Done.Before(fault) && o.Sent.Before(first.Sent) {
			failed = append(failed, o)
			byKind[errKind(o.Err.Error())]++
		}
	}
	res.errors, res.kinds = len(failed), kinds(byKind)
	// The longest time without a successful command completing.
	gap, _ := writetest.Outage(ops, fault.Add(-time.Second), first.Done)
	res.gap = gap
	t.Logf("client: longest time without a successful command around the takeover %v; %d failed commands (ended after the signal, started before that success): %s",
		gap.Round(time.Millisecond), len(failed), res.kinds)
	for i, r := range failed {
		if i < 3 || i >= len(failed)-3 {
			t.Logf("  %s started %+dms ended %+dms: %s", r.Cmd,
				r.Sent.Sub(fault).Milliseconds(), r.Done.Sub(fault).Milliseconds(), r.Err)
		} else if i == 3 {
			t.Logf("  ...")
		}
	}

	switch sc.sig {
	case syscall.SIGTERM:
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("proxy-a did not exit within 5s of SIGTERM")
		}
		if a.err != nil {
			t.Errorf("proxy-a exit after SIGTERM: %v", a.err)
		}
		if rel, line, ok := logTime(a, "vip released", fault); ok {
			t.Logf("proxy-a released %v after SIGTERM: %s", rel.Sub(fault).Round(time.Millisecond), strings.TrimSpace(line))
		} else {
			t.Errorf("proxy-a logged no `vip released` after SIGTERM")
		}
		time.Sleep(300 * time.Millisecond)
		tp.exactlyOne(t, "proxy-b")
	case syscall.SIGKILL:
		<-a.done
		stale := tp.holdsVIP("proxy-a")
		t.Logf("after SIGKILL proxy-a's namespace still has the VIP: %v (a killed process cannot remove it; the restarted proxy must)", stale)
		res.extra = fmt.Sprintf("stale-vip-on-killed=%v", stale)
		if !tp.holdsVIP("proxy-b") {
			t.Fatalf("proxy-b does not hold the VIP after the takeover")
		}
		if sc.arpFocus {
			// The killed node's namespace still answers ARP for the VIP;
			// the client's entry must stay on proxy-b.
			time.Sleep(1500 * time.Millisecond)
			if n := tp.neigh(); !strings.HasPrefix(n, macOf("proxy-b")+" ") {
				t.Errorf("client's entry 1.5s after the takeover: %q, want proxy-b's MAC", n)
			}
			if flips := neighTL.since(moved, fault); strings.Contains(flips, macOf("proxy-a")) {
				t.Errorf("client's entry went back to proxy-a's MAC after the takeover: %s", flips)
			}
		}
		// Restart proxy-a as a supervisor would, with the same
		// configuration: it removes its stale VIP and, having the higher
		// priority, takes the VIP back.
		restart := time.Now()
		a2 := tp.startProxy("proxy-a")
		t.Cleanup(func() { t.Logf("restarted proxy-a notable log lines:\n%s", notable(a2)) })
		tp.eventually(10*time.Second, "restarted proxy-a takes the VIP back, proxy-b lets it go", func() bool {
			return tp.holdsVIP("proxy-a") && !tp.holdsVIP("proxy-b")
		})
		time.Sleep(300 * time.Millisecond)
		tp.exactlyOne(t, "proxy-a")
		reclaim, _, ok := logTime(a2, "vip claimed", restart)
		if !ok {
			t.Fatalf("restarted proxy-a logged no `vip claimed`")
		}
		tp.eventually(2*time.Second, "client's entry back on proxy-a's MAC", func() bool {
			return strings.HasPrefix(tp.neigh(), macOf("proxy-a")+" ")
		})
		back, _ := neighTL.first(restart, func(v string) bool { return strings.HasPrefix(v, macOf("proxy-a")+" ") })
		cl.waitSuccesses(t, time.Now(), 50, 5*time.Second, "after proxy-a took the VIP back")
		time.Sleep(200 * time.Millisecond)
		ops := cl.rec.Ops()
		pst := summarize(ops, restart, time.Now())
		gap, _ := writetest.Outage(ops, restart, time.Now())
		if ready, _, ok := logTime(a2, "command table loaded", restart); ok {
			t.Logf("restarted proxy-a loaded its command table %v after start, %+dms from its claim",
				ready.Sub(restart).Round(time.Millisecond), ready.Sub(reclaim).Milliseconds())
		} else {
			t.Logf("restarted proxy-a logged no `command table loaded`")
		}
		t.Logf("restart of proxy-a: claimed %v after start; client entry back on its MAC %v after that claim; client: longest gap without a success %v, %d errors (%s)",
			reclaim.Sub(restart).Round(time.Millisecond), back.Sub(reclaim).Round(time.Millisecond), gap.Round(time.Millisecond), pst.errors, kinds(pst.byKind))
		res.extra += fmt.Sprintf(" preempt-gap=%v preempt-errors=%d", gap.Round(time.Millisecond), pst.errors)
		if sc.arpFocus && back.Sub(reclaim) > 500*time.Millisecond {
			t.Errorf("client's entry moved back %v after restarted proxy-a's claim, want ≤ 500ms", back.Sub(reclaim))
		}
	}

	cl.stop(t)
	cancel()
	<-neighTL.done
	<-vipB.done
	ops = cl.rec.Ops()
	all := summarize(ops, clientStart, time.Now())
	res.total, res.acked = all.errors, len(all.acked)
	if all.mismatches > 0 {
		t.Errorf("%d GETs returned something other than the value just acknowledged", all.mismatches)
	}
	t.Logf("client over the whole scenario: %d SET ok, %d GET ok, %d errors (%s)", all.sets, all.gets, all.errors, kinds(all.byKind))

	rb := tp.readback(all.acked)
	res.lost = len(rb.Missing) + len(rb.Mismatched)
	t.Logf("read back on the Redis master %s (roles %v): %d acknowledged writes, %d missing, %d different",
		rb.Master, rb.Roles, len(all.acked), len(rb.Missing), len(rb.Mismatched))
	if rb.Master != redisIP+":6379" {
		t.Errorf("Redis master at the end is %q, want %s:6379 (nothing failed on the Redis side)", rb.Master, redisIP)
	}
	if res.lost > 0 {
		t.Errorf("acknowledged writes lost: %d missing (e.g. %v), %d different", len(rb.Missing), rb.Missing[:min(5, len(rb.Missing))], len(rb.Mismatched))
	}
	resultsMu.Lock()
	results = append(results, res)
	resultsMu.Unlock()
}

// exactlyOne asserts, over 300 ms, that want is the only VIP holder.
func (tp *topo) exactlyOne(t *testing.T, want string) {
	t.Helper()
	for range 4 {
		if h := tp.holders(); !slices.Equal(h, []string{want}) {
			t.Fatalf("VIP holders: %v, want exactly [%s]", h, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tp *topo) readback(acked map[string]string) readback {
	tp.t.Helper()
	in, err := json.Marshal(acked)
	if err != nil {
		tp.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", tp.ns["redis"], tp.exe)
	cmd.Env = append(os.Environ(), helperEnv+"=redis", helperArg+"=readback")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tp.t.Fatalf("read back from Redis: %v: %s", err, stderr.Bytes())
	}
	var rb readback
	if err := json.Unmarshal(out, &rb); err != nil {
		tp.t.Fatalf("read back output %q: %v", out, err)
	}
	return rb
}
