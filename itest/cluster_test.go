package itest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dnetwork "github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/gomodule/redigo/redis"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
)

// The hardened appliance's secrets, as make up generates them into .env.
const (
	heartbeatSecret = "itest-heartbeat-secret-0123456789" // the pair's adverts
	redisPassword   = "itest-redis-password-0123456789"   // requirepass and masterauth; the proxies' BACKEND_PASSWORD
	clientPassword  = "itest-client-password-0123456789"  // REDIS_PROXY_PASSWORD: what clients give AUTH
	adminToken      = "itest-admin-token-0123456789abcd"  // REDIS_PROXY_ADMIN_TOKEN
)

// secretDir is where proxy-b finds its secrets as files (REDIS_PROXY_*_FILE);
// proxy-a gets them as variables, so both ways run in every scenario.
const secretDir = "/secrets"

// clusterOption changes one scenario's appliance from the hardened default.
type clusterOption func(*clusterOpts)

type clusterOpts struct {
	noAdminToken bool // the proxies run without REDIS_PROXY_ADMIN_TOKEN
}

// withoutAdminToken starts the proxies with no admin token: their admin
// APIs then accept changes from loopback peers only.
func withoutAdminToken(o *clusterOpts) { o.noAdminToken = true }

func networkListOptions(f filters.Args) dnetwork.ListOptions { return dnetwork.ListOptions{Filters: f} }

// node is one container of the appliance, at a fixed address.
type node struct {
	name string // redis-a, redis-b, proxy-a, proxy-b
	ip   string
	ctr  *testcontainers.DockerContainer
}

// addr is the node's Redis-protocol address (Redis or proxy client port).
func (n *node) addr() string { return n.ip + ":6379" }

// cluster is one scenario's appliance: a bridge network with a fixed subnet
// (the VIP reserved from Docker's allocation), redis-a (master), redis-b
// (replica of redis-a), proxy-a (priority 150) and proxy-b (100).
type cluster struct {
	t      *testing.T
	scen   string
	net    *testcontainers.DockerNetwork
	ip     func(host int) string // an address of the scenario's subnet
	vip    string
	token  string // the proxies' admin token ("" with withoutAdminToken)
	redisA *node
	redisB *node
	proxyA *node
	proxyB *node
}

// newCluster starts the appliance for one scenario on 172.29.<16+idx>.0/24
// (compose.yaml uses 172.29.0.0/24) and waits until proxy-a holds the VIP,
// redis-a is master with redis-b linked, and the VIP answers PING. Every
// container and the network are removed when t ends, whatever its outcome;
// when t failed, the containers' logs are written to the test log first.
//
// The appliance is the hardened one compose.yaml runs: Redis with a
// password (requirepass, masterauth), the proxies authenticating to it,
// clients giving REDIS_PROXY_PASSWORD, the admin API's changes behind
// REDIS_PROXY_ADMIN_TOKEN.
func newCluster(t *testing.T, idx int, scen string, options ...clusterOption) *cluster {
	t.Helper()
	needAppliance(t)
	var opts clusterOpts
	for _, o := range options {
		o(&opts)
	}
	ctx := context.Background()
	base := fmt.Sprintf("172.29.%d.", 16+idx)
	ip := func(host int) string { return fmt.Sprintf("%s%d", base, host) }
	c := &cluster{t: t, scen: scen, ip: ip, vip: ip(100), token: adminToken,
		redisA: &node{name: "redis-a", ip: ip(11)}, redisB: &node{name: "redis-b", ip: ip(12)},
		proxyA: &node{name: "proxy-a", ip: ip(21)}, proxyB: &node{name: "proxy-b", ip: ip(22)}}
	if opts.noAdminToken {
		c.token = ""
	}

	nw, err := network.New(ctx,
		network.WithLabels(map[string]string{labelKey: scen}),
		network.WithIPAM(&dnetwork.IPAM{Driver: "default", Config: []dnetwork.IPAMConfig{{
			Subnet:     base + "0/24",
			Gateway:    ip(1),
			IPRange:    base + "128/25", // Docker allocates only from the upper half
			AuxAddress: map[string]string{"vip": c.vip},
		}}}))
	testcontainers.CleanupNetwork(t, nw) // runs after the containers' cleanups
	if err != nil {
		t.Fatalf("create network %s0/24: %v", base, err)
	}
	c.net = nw

	// As compose.yaml runs them: a password, and protected mode left on.
	redisCmd := []string{"redis-server", "--requirepass", redisPassword, "--masterauth", redisPassword,
		"--appendonly", "yes", "--save", "", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
	redisEnv := map[string]string{"REDISCLI_AUTH": redisPassword} // the image's health check
	servers := c.redisA.addr() + "," + c.redisB.addr()
	secrets := map[string]string{
		"REDIS_PROXY_HEARTBEAT_SECRET": heartbeatSecret,
		"REDIS_PROXY_BACKEND_PASSWORD": redisPassword,
		"REDIS_PROXY_PASSWORD":         clientPassword,
	}
	if c.token != "" {
		secrets["REDIS_PROXY_ADMIN_TOKEN"] = c.token
	}
	proxyEnv := func(prio int, self, peer *node) map[string]string {
		return map[string]string{
			"REDIS_PROXY_SERVERS":  servers,
			"REDIS_PROXY_VIP":      c.vip + "/24",
			"REDIS_PROXY_PEERS":    peer.ip,
			"REDIS_PROXY_ADDRESS":  self.ip,
			"REDIS_PROXY_PRIORITY": fmt.Sprint(prio),
		}
	}
	envA, envB := proxyEnv(150, c.proxyA, c.proxyB), proxyEnv(100, c.proxyB, c.proxyA)
	var filesB []testcontainers.ContainerFile
	for k, v := range secrets {
		envA[k] = v
		path := secretDir + "/" + strings.ToLower(strings.TrimPrefix(k, "REDIS_PROXY_"))
		envB[k+"_FILE"] = path
		filesB = append(filesB, testcontainers.ContainerFile{Reader: strings.NewReader(v + "\n"), ContainerFilePath: path, FileMode: 0o400})
	}
	type spec struct {
		n     *node
		image string
		cmd   []string
		env   map[string]string
		caps  []string
		files []testcontainers.ContainerFile
	}
	// Redis first (the proxies' first check then finds a master), then the
	// pair; each group starts concurrently.
	groups := [][]spec{
		{{c.redisA, redisImage, redisCmd, redisEnv, nil, nil},
			{c.redisB, redisImage, append(slices.Clone(redisCmd), "--replicaof", c.redisA.ip, "6379"), redisEnv, nil, nil}},
		{{c.proxyA, proxyImage, nil, envA, []string{"NET_ADMIN", "NET_RAW"}, nil},
			{c.proxyB, proxyImage, nil, envB, []string{"NET_ADMIN", "NET_RAW"}, filesB}},
	}
	for _, g := range groups {
		var wg sync.WaitGroup
		errs := make([]error, len(g))
		for i, s := range g {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = c.run(ctx, s.n, s.image, s.cmd, s.env, s.caps, s.files...)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	c.waitSteady(60*time.Second, "appliance ready (proxy-a holds the VIP, redis-a master, redis-b linked)")
	return c
}

// run creates and starts one container at its fixed address, with files
// copied in before it starts.
func (c *cluster) run(ctx context.Context, n *node, image string, cmd []string, env map[string]string, caps []string, files ...testcontainers.ContainerFile) error {
	t := c.t
	req := testcontainers.ContainerRequest{
		Image:    image,
		Name:     fmt.Sprintf("rp-itest-%s-%s", c.scen, n.name),
		Cmd:      cmd,
		Env:      env,
		Files:    files,
		Labels:   map[string]string{labelKey: c.scen},
		Networks: []string{c.net.Name},
		EndpointSettingsModifier: func(m map[string]*dnetwork.EndpointSettings) {
			es := m[c.net.Name]
			if es == nil {
				es = &dnetwork.EndpointSettings{}
				m[c.net.Name] = es
			}
			es.IPAMConfig = &dnetwork.EndpointIPAMConfig{IPv4Address: n.ip}
		},
		HostConfigModifier: func(hc *container.HostConfig) { hc.CapAdd = caps },
	}
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req, Started: true, Logger: quietLogger{}})
	testcontainers.CleanupContainer(t, ctr)
	if ctr != nil {
		n.ctr = ctr.(*testcontainers.DockerContainer)
		t.Cleanup(func() { c.dumpLogsOnFailure(n) })
	}
	if err != nil {
		return fmt.Errorf("start %s (%s at %s): %w", n.name, image, n.ip, err)
	}
	return nil
}

func (c *cluster) dumpLogsOnFailure(n *node) {
	if !c.t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := docker.ContainerLogs(ctx, n.ctr.GetContainerID(), container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "80", Timestamps: false})
	if err != nil {
		c.t.Logf("logs of %s: %v", n.name, err)
		return
	}
	defer rc.Close()
	var buf bytes.Buffer
	stdcopy.StdCopy(&buf, &buf, rc)
	c.t.Logf("---- last lines of %s (%s) ----\n%s", n.name, n.ip, buf.String())
}

func (c *cluster) logf(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// ---- faults ------------------------------------------------------------------

func (c *cluster) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// kill sends SIGKILL (docker kill): a crash.
func (c *cluster) kill(n *node) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := docker.ContainerKill(ctx, n.ctr.GetContainerID(), "KILL"); err != nil {
		c.t.Fatalf("docker kill %s: %v", n.name, err)
	}
	c.logf("killed %s", n.name)
}

// killTogether sends SIGKILL to every node at once, and returns when all
// are dead.
func (c *cluster) killTogether(ns ...*node) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	errs := make([]error, len(ns))
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Go(func() { errs[i] = docker.ContainerKill(ctx, n.ctr.GetContainerID(), "KILL") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.t.Fatalf("docker kill %s: %v", ns[i].name, err)
		}
		c.logf("killed %s", ns[i].name)
	}
}

// stop sends SIGTERM and waits for the container to exit (docker stop).
func (c *cluster) stop(n *node) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	timeout := 10
	t0 := time.Now()
	if err := docker.ContainerStop(ctx, n.ctr.GetContainerID(), container.StopOptions{Timeout: &timeout}); err != nil {
		c.t.Fatalf("docker stop %s: %v", n.name, err)
	}
	c.logf("stopped %s (SIGTERM, exited after %v)", n.name, time.Since(t0).Round(time.Millisecond))
}

// start starts a stopped or killed container again, at the same address
// with the same command line and file system.
func (c *cluster) start(n *node) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := docker.ContainerStart(ctx, n.ctr.GetContainerID(), container.StartOptions{}); err != nil {
		c.t.Fatalf("docker start %s: %v", n.name, err)
	}
	c.logf("started %s", n.name)
}

func (c *cluster) pause(n *node) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := docker.ContainerPause(ctx, n.ctr.GetContainerID()); err != nil {
		c.t.Fatalf("docker pause %s: %v", n.name, err)
	}
	c.logf("paused %s", n.name)
}

func (c *cluster) unpause(n *node) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := docker.ContainerUnpause(ctx, n.ctr.GetContainerID()); err != nil {
		c.t.Fatalf("docker unpause %s: %v", n.name, err)
	}
	c.logf("unpaused %s", n.name)
}

// pid is the container's init process, for nsenter.
func (c *cluster) pid(n *node) int {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	ins, err := docker.ContainerInspect(ctx, n.ctr.GetContainerID())
	if err != nil || ins.State == nil || ins.State.Pid == 0 {
		c.t.Fatalf("inspect %s: no running process (%v)", n.name, err)
	}
	return ins.State.Pid
}

// nsIP runs `ip args...` in n's network namespace (the images have no shell
// and no ip; the host's is used through nsenter).
func (c *cluster) nsIP(n *node, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(c.pid(n)), "-n", "ip"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nsenter %s ip %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// partition cuts the heartbeat between the proxies (and only it: both keep
// reaching Redis and the clients) with blackhole routes in each one's
// network namespace.
func (c *cluster) partition() {
	c.t.Helper()
	for _, p := range [][2]*node{{c.proxyA, c.proxyB}, {c.proxyB, c.proxyA}} {
		if _, err := c.nsIP(p[0], "route", "add", "blackhole", p[1].ip+"/32"); err != nil {
			c.t.Fatal(err)
		}
	}
	c.logf("heartbeat partitioned (blackhole routes between proxy-a and proxy-b)")
}

func (c *cluster) heal() {
	c.t.Helper()
	for _, p := range [][2]*node{{c.proxyA, c.proxyB}, {c.proxyB, c.proxyA}} {
		if _, err := c.nsIP(p[0], "route", "del", "blackhole", p[1].ip+"/32"); err != nil {
			c.t.Fatal(err)
		}
	}
	c.logf("heartbeat partition healed")
}

// hasVIP reports whether the VIP is on n's eth0, as the kernel sees it.
func (c *cluster) hasVIP(n *node) bool {
	c.t.Helper()
	out, err := c.nsIP(n, "-4", "-o", "addr", "show", "dev", "eth0")
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.Contains(out, " "+c.vip+"/")
}

// ---- observations ------------------------------------------------------------

// topology is the part of the admin API's /topology the scenarios read.
type topology struct {
	Routing struct {
		Epoch    uint64   `json:"epoch"`
		Master   string   `json:"master"`
		Replicas []string `json:"replicas"`
	} `json:"routing"`
	Replication struct {
		Epoch     uint64 `json:"epoch"`
		Master    string `json:"master"`
		Authority bool   `json:"authority"`
		Failovers uint64 `json:"failovers"`
		LostBytes int64  `json:"lost_bytes"`
		Servers   []struct {
			Addr       string `json:"addr"`
			Up         bool   `json:"up"`
			Role       string `json:"role"`
			MasterAddr string `json:"master_addr"`
			LinkUp     bool   `json:"link_up"`
			Offset     int64  `json:"offset"`
		} `json:"servers"`
	} `json:"replication"`
	Pair *struct {
		Role     string `json:"role"`
		HoldsVIP bool   `json:"holds_vip"`
		Healthy  bool   `json:"healthy"`
		Epoch    uint64 `json:"advertised_epoch"`
		Master   string `json:"advertised_master"`
	} `json:"pair"`
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func (c *cluster) topology(p *node) (*topology, error) {
	resp, err := httpClient.Get("http://" + p.ip + ":9736/topology")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var tp topology
	if err := json.NewDecoder(resp.Body).Decode(&tp); err != nil {
		return nil, fmt.Errorf("%s /topology: %w", p.name, err)
	}
	if tp.Pair == nil {
		return nil, fmt.Errorf("%s /topology: no pair state (REDIS_PROXY_PEERS ignored?)", p.name)
	}
	return &tp, nil
}

// switchover asks p's admin API to make target the master.
func (c *cluster) switchover(p, target *node) {
	c.t.Helper()
	cl := &http.Client{Timeout: 30 * time.Second}
	t0 := time.Now()
	resp, err := c.adminPost(cl, p.ip, "/switchover?target="+target.addr(), c.token)
	if err != nil {
		c.t.Fatalf("POST %s /switchover?target=%s: %v", p.name, target.addr(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("POST %s /switchover?target=%s: %s: %s", p.name, target.addr(), resp.Status, body)
	}
	c.logf("switchover to %s via %s took %v: %s", target.name, p.name, time.Since(t0).Round(time.Millisecond), bytes.TrimSpace(body))
}

// adminPost POSTs to the admin API at ip:9736 with token as the bearer
// ("" sends no Authorization header).
func (c *cluster) adminPost(cl *http.Client, ip, path, token string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+ip+":9736"+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return cl.Do(req)
}

// redisRole is what ROLE says: "master", or "slave" with whom it follows.
type redisRole struct {
	role, masterIP, state string
	offset                int64
}

func roleOf(n *node) (redisRole, error) {
	conn, err := redis.Dial("tcp", n.addr(), redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(2*time.Second), redis.DialWriteTimeout(2*time.Second), redis.DialPassword(redisPassword))
	if err != nil {
		return redisRole{}, err
	}
	defer conn.Close()
	v, err := redis.Values(conn.Do("ROLE"))
	if err != nil || len(v) == 0 {
		return redisRole{}, fmt.Errorf("ROLE on %s: %v", n.name, err)
	}
	r := redisRole{}
	r.role, _ = redis.String(v[0], nil)
	switch {
	case r.role == "master" && len(v) >= 2:
		r.offset, _ = redis.Int64(v[1], nil)
	case r.role == "slave" && len(v) >= 5:
		r.masterIP, _ = redis.String(v[1], nil)
		r.state, _ = redis.String(v[3], nil)
		r.offset, _ = redis.Int64(v[4], nil)
	}
	return r, nil
}

// steady reports whether the appliance is in its normal shape: active holds
// the VIP (by its own account and on its interface) and the other proxy is
// BACKUP; both route to master, whose replica is linked and caught up; the
// VIP answers PING.
func (c *cluster) steady(active, master, replica *node) (bool, string) {
	standby := c.proxyB
	if active == c.proxyB {
		standby = c.proxyA
	}
	ta, err := c.topology(active)
	if err != nil {
		return false, err.Error()
	}
	tb, err := c.topology(standby)
	if err != nil {
		return false, err.Error()
	}
	switch {
	case ta.Pair.Role != "MASTER" || !ta.Pair.HoldsVIP:
		return false, fmt.Sprintf("%s is %s (holds_vip=%v)", active.name, ta.Pair.Role, ta.Pair.HoldsVIP)
	case tb.Pair.Role != "BACKUP" || tb.Pair.HoldsVIP:
		return false, fmt.Sprintf("%s is %s (holds_vip=%v)", standby.name, tb.Pair.Role, tb.Pair.HoldsVIP)
	case ta.Routing.Master != master.addr() || tb.Routing.Master != master.addr():
		return false, fmt.Sprintf("routing master: %s=%q %s=%q, want %s", active.name, ta.Routing.Master, standby.name, tb.Routing.Master, master.addr())
	case !slices.Contains(ta.Routing.Replicas, replica.addr()):
		return false, fmt.Sprintf("%s routes replicas %v, want %s among them", active.name, ta.Routing.Replicas, replica.addr())
	}
	mr, err := roleOf(master)
	if err != nil || mr.role != "master" {
		return false, fmt.Sprintf("%s ROLE %+v %v", master.name, mr, err)
	}
	rr, err := roleOf(replica)
	if err != nil || rr.role != "slave" || rr.masterIP != master.ip || rr.state != "connected" {
		return false, fmt.Sprintf("%s ROLE %+v %v", replica.name, rr, err)
	}
	if rr.offset < mr.offset-1024 { // caught up, give or take a ping
		return false, fmt.Sprintf("%s at offset %d, master at %d", replica.name, rr.offset, mr.offset)
	}
	if !c.hasVIP(active) || c.hasVIP(standby) {
		return false, fmt.Sprintf("VIP on interfaces: %s=%v %s=%v", active.name, c.hasVIP(active), standby.name, c.hasVIP(standby))
	}
	if err := ping(c.vip + ":6379"); err != nil {
		return false, "PING via VIP: " + err.Error()
	}
	return true, ""
}

// ping sends PING as a client of the proxies would (with their password).
func ping(addr string) error {
	conn, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(2*time.Second),
		redis.DialPassword(clientPassword))
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := redis.String(conn.Do("PING"))
	if err == nil && s != "PONG" {
		err = fmt.Errorf("PING answered %q", s)
	}
	return err
}

// waitFor polls cond every 100ms until it holds or d passes (then the test
// fails with cond's last explanation). It returns how long it waited.
func (c *cluster) waitFor(d time.Duration, what string, cond func() (bool, string)) time.Duration {
	c.t.Helper()
	t0 := time.Now()
	last := ""
	for {
		ok, why := cond()
		if ok {
			c.logf("%s after %v", what, time.Since(t0).Round(time.Millisecond))
			return time.Since(t0)
		}
		if why != last {
			last = why
		}
		if time.Since(t0) > d {
			c.t.Fatalf("timed out after %v waiting for %s: %s", d, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSteady waits up to d for the appliance's normal shape (see steady):
// proxy-a active, redis-a master, redis-b its replica.
func (c *cluster) waitSteady(d time.Duration, what string) {
	c.t.Helper()
	c.waitFor(d, what, func() (bool, string) {
		return c.steady(c.proxyA, c.redisA, c.redisB)
	})
}

// vipHolders are the proxies whose eth0 carries the VIP.
func (c *cluster) vipHolders() []string {
	var h []string
	for _, p := range []*node{c.proxyA, c.proxyB} {
		if c.hasVIP(p) {
			h = append(h, p.name)
		}
	}
	return h
}

// masters are the Redis servers that answer ROLE with master.
func (c *cluster) masters() []string {
	var m []string
	for _, r := range []*node{c.redisA, c.redisB} {
		if rr, err := roleOf(r); err == nil && rr.role == "master" {
			m = append(m, r.name)
		}
	}
	return m
}

// routedTo waits until p routes to master and master answers ROLE master.
func (c *cluster) routedTo(p, master *node, d time.Duration) time.Duration {
	c.t.Helper()
	return c.waitFor(d, p.name+" routes to "+master.name+" (ROLE master)", func() (bool, string) {
		tp, err := c.topology(p)
		if err != nil {
			return false, err.Error()
		}
		if tp.Routing.Master != master.addr() {
			return false, "routing master " + tp.Routing.Master
		}
		r, err := roleOf(master)
		if err != nil || r.role != "master" {
			return false, "ROLE of " + master.name + ": " + r.role + " " + errString(err)
		}
		return true, ""
	})
}

// holdsVIP waits until p is the only proxy with the VIP on its interface
// and says it is MASTER.
func (c *cluster) holdsVIP(p *node, d time.Duration) time.Duration {
	c.t.Helper()
	other := c.proxyB
	if p == c.proxyB {
		other = c.proxyA
	}
	return c.waitFor(d, p.name+" holds the VIP", func() (bool, string) {
		tp, err := c.topology(p)
		if err != nil {
			return false, err.Error()
		}
		if tp.Pair.Role != "MASTER" || !c.hasVIP(p) {
			return false, p.name + " is " + tp.Pair.Role
		}
		if running(c, other) && c.hasVIP(other) {
			return false, other.name + " still has the VIP"
		}
		return true, ""
	})
}

// running reports whether n's container is running (not stopped or killed).
func running(c *cluster, n *node) bool {
	ctx, cancel := c.ctx()
	defer cancel()
	ins, err := docker.ContainerInspect(ctx, n.ctr.GetContainerID())
	return err == nil && ins.State != nil && ins.State.Running && !ins.State.Paused
}

// noFailover checks that a proxy fault left Redis alone: redis-a is still
// the master at epoch 0 and redis-b its replica.
func noFailover(t *testing.T, c *cluster, p *node) {
	t.Helper()
	tp, err := c.topology(p)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Routing.Master != c.redisA.addr() || tp.Routing.Epoch != 0 {
		t.Errorf("a proxy fault changed the Redis master: %s routes to %s at epoch %d, want %s at 0",
			p.name, tp.Routing.Master, tp.Routing.Epoch, c.redisA.addr())
	}
}

// replicaOf waits until r is a replica of master with its link up and
// caught up to master's offset.
func (c *cluster) replicaOf(r, master *node, d time.Duration) time.Duration {
	c.t.Helper()
	return c.waitFor(d, r.name+" replica of "+master.name+", caught up", func() (bool, string) {
		rr, err := roleOf(r)
		if err != nil {
			return false, err.Error()
		}
		if rr.role != "slave" || rr.masterIP != master.ip || rr.state != "connected" {
			return false, r.name + " ROLE " + rr.role + " of " + rr.masterIP + " " + rr.state
		}
		mr, err := roleOf(master)
		if err != nil {
			return false, err.Error()
		}
		if rr.offset < mr.offset-1024 {
			return false, "behind the master"
		}
		return true, ""
	})
}

// oneOfEach waits until exactly one proxy holds the VIP (on its interface)
// and exactly one Redis server is master, and the appliance is steady with
// proxy-a (the higher priority) active. It returns the master.
func (c *cluster) oneOfEach(d time.Duration) *node {
	c.t.Helper()
	var master *node
	c.waitFor(d, "one VIP holder (proxy-a), one master", func() (bool, string) {
		if h := c.vipHolders(); len(h) != 1 {
			return false, fmt.Sprintf("VIP holders %v", h)
		}
		m := c.masters()
		if len(m) != 1 {
			return false, fmt.Sprintf("masters %v", m)
		}
		master, replica := c.redisA, c.redisB
		if m[0] == c.redisB.name {
			master, replica = c.redisB, c.redisA
		}
		return c.steady(c.proxyA, master, replica)
	})
	for _, r := range []*node{c.redisA, c.redisB} {
		if rr, _ := roleOf(r); rr.role == "master" {
			master = r
		}
	}
	c.logf("master is %s", master.name)
	return master
}

func healthz(p *node) int {
	resp, err := httpClient.Get("http://" + p.ip + ":9736/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
