package itest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tcexec "github.com/testcontainers/testcontainers-go/exec"
)

// The admin API attacks of the security review, against the real images.
// The test runs on the Docker host: its requests reach a proxy from the
// bridge's gateway address, which is not loopback for the container, as a
// client on the appliance's network would.

// attack is one kind of unauthenticated POST /switchover.
type attack struct {
	name    string
	ip      string            // where it is sent (a proxy or the VIP), port 9736
	headers map[string]string // besides none, a wrong Authorization or a forged peer
}

// postSwitchover sends POST /switchover?target=... to ip:9736 with headers
// and returns the status, the WWW-Authenticate header and the body.
func postSwitchover(ip, target string, headers map[string]string) (int, string, string, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+ip+":9736/switchover?target="+target, nil)
	if err != nil {
		return 0, "", "", err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body), nil
}

// oneLineJSONError reports whether body is one line {"error": "..."}.
func oneLineJSONError(body string) bool {
	var e struct{ Error string }
	return strings.Count(body, "\n") == 1 && strings.HasSuffix(body, "\n") && json.Unmarshal([]byte(body), &e) == nil && e.Error != ""
}

// snapshot is what a switchover would change, as both proxies and Redis
// itself see it.
type snapshot struct {
	master    [2]string // routing master of proxy-a, proxy-b
	epoch     [2]uint64 // routing epoch of proxy-a, proxy-b
	failovers uint64    // proxy-a's changes of master
	masters   []string  // Redis servers answering ROLE master
}

func (c *cluster) snapshot() snapshot {
	c.t.Helper()
	var s snapshot
	for i, p := range []*node{c.proxyA, c.proxyB} {
		tp, err := c.topology(p)
		if err != nil {
			c.t.Fatal(err)
		}
		s.master[i], s.epoch[i] = tp.Routing.Master, tp.Routing.Epoch
		if i == 0 {
			s.failovers = tp.Replication.Failovers
		}
	}
	s.masters = c.masters()
	return s
}

func (s snapshot) String() string {
	return fmt.Sprintf("routing master %s/%s epoch %d/%d (proxy-a/proxy-b), failovers %d, ROLE master: %v",
		s.master[0], s.master[1], s.epoch[0], s.epoch[1], s.failovers, s.masters)
}

// refused reads redis_proxy_admin_refused_total by reason from p's /metrics.
func refused(p *node) (map[string]float64, error) {
	resp, err := httpClient.Get("http://" + p.ip + ":9736/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s GET /metrics: %s", p.name, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), `redis_proxy_admin_refused_total{reason="`)
		if !ok {
			continue
		}
		reason, v, _ := strings.Cut(rest, `"} `)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q", sc.Text())
		}
		m[reason] = f
	}
	return m, sc.Err()
}

// exec runs the proxy binary with args in n's container (the image has no
// shell), as an operator's `docker exec` would, and returns its exit code
// and output.
func (c *cluster) exec(n *node, args ...string) (int, string) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	code, r, err := n.ctr.Exec(ctx, append([]string{"/usr/local/bin/redis-proxy"}, args...), tcexec.Multiplexed())
	if err != nil {
		c.t.Fatalf("docker exec %s redis-proxy %s: %v", n.name, strings.Join(args, " "), err)
	}
	out, _ := io.ReadAll(r)
	return code, string(out)
}

// cliSwitchover runs `redis-proxy switchover` in p's container.
func (c *cluster) cliSwitchover(p, target *node) {
	c.t.Helper()
	if rc, out := c.exec(p, "switchover", target.addr()); rc != 0 {
		c.t.Fatalf("docker exec %s redis-proxy switchover %s: exit %d: %s", p.name, target.addr(), rc, out)
	}
	c.logf("switchover to %s via the CLI in %s", target.name, p.name)
}

// switchPhase runs move, a switchover to master, and returns how clients
// fared until proxy-a routes to master, replica follows it caught up, and
// writes have resumed.
func switchPhase(t *testing.T, c *cluster, l *load, name string, master, replica *node, move func()) report {
	t.Helper()
	return phase(t, l, name, name, func() {
		move()
		c.routedTo(c.proxyA, master, 10*time.Second)
		c.replicaOf(replica, master, 30*time.Second)
	})
}

// attackSwitchover sends each attack rounds times, paced like the review's
// attack (100 POSTs in about 15 s, here in about 5), and checks every answer
// is status, with WWW-Authenticate when 401, and a one-line JSON error. It
// returns the number sent to each address.
func (c *cluster) attackSwitchover(attacks []attack, rounds, status int, target *node) map[string]int {
	c.t.Helper()
	sent := map[string]int{}
	for range rounds {
		for _, a := range attacks {
			code, wwwAuth, body, err := postSwitchover(a.ip, target.addr(), a.headers)
			if err != nil {
				c.t.Fatalf("%s: %v", a.name, err)
			}
			sent[a.ip]++
			if code != status || (status == http.StatusUnauthorized) != strings.HasPrefix(wwwAuth, "Bearer") || !oneLineJSONError(body) {
				c.t.Fatalf("%s: POST /switchover answered %d (WWW-Authenticate %q) %q; want %d and a one-line JSON error",
					a.name, code, wwwAuth, body, status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c.logf("%d unauthenticated POST /switchover, every one refused with %d", rounds*len(attacks), status)
	return sent
}

// 8. The hardened appliance's admin API under the review's attack: POST
// /switchover from the client network without the token, with a wrong one
// or with a forged loopback X-Forwarded-For, to either proxy or the VIP, is
// refused (401) and moves nothing while clients write through the VIP; with
// the token it moves the master (epoch + 1), and the CLI in a container
// sends the token from the environment (proxy-a) or a file (proxy-b).
func TestScenario8AdminToken(t *testing.T) {
	c := newCluster(t, 8, "admin-token")
	l := warmUp(t, c, clientWorkers)
	before := c.snapshot()
	refusedBefore, err := refused(c.proxyA)
	if err != nil {
		t.Fatal(err)
	}

	t0 := time.Now()
	attacks := []attack{
		{"no token, to proxy-a", c.proxyA.ip, nil},
		{"no token, to the VIP", c.vip, nil},
		{"no token, to the standby proxy-b", c.proxyB.ip, nil},
		{"wrong token, to proxy-a", c.proxyA.ip, map[string]string{"Authorization": "Bearer " + strings.Repeat("x", len(adminToken))}},
		{"no token, forged loopback peer headers", c.proxyA.ip, map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"}},
	}
	sent := c.attackSwitchover(attacks, 20, http.StatusUnauthorized, c.redisB)
	time.Sleep(time.Second) // a switchover that got through would have shown by now
	after := c.snapshot()
	attackPhase := l.measure("100 POST /switchover without the token", t0, time.Now())
	if after.String() != before.String() {
		t.Errorf("unauthenticated POSTs changed the topology:\n before %v\n after  %v", before, after)
	}
	c.logf("after the attack: %v", after)
	refusedAfter, err := refused(c.proxyA)
	if err != nil {
		t.Fatal(err)
	}
	// The VIP is proxy-a's: what was sent to it counts there.
	wantA := float64(sent[c.proxyA.ip] + sent[c.vip])
	gotA := refusedAfter["no_token"] + refusedAfter["bad_token"] - refusedBefore["no_token"] - refusedBefore["bad_token"]
	if gotA != wantA || refusedAfter["bad_token"]-refusedBefore["bad_token"] != 20 {
		t.Errorf("proxy-a counted %v refusals (%v → %v), want %v of which 20 bad_token", gotA, refusedBefore, refusedAfter, wantA)
	}

	// proxy-b read its token from a file: with it, the standby gets past
	// the guard and is refused by the replication manager instead (it has
	// no authority), 409 and not 401.
	code, _, body, err := postSwitchover(c.proxyB.ip, c.redisB.addr(), map[string]string{"Authorization": "Bearer " + adminToken})
	if err != nil || code != http.StatusConflict {
		t.Errorf("POST /switchover to the standby proxy-b with the token: %d %q %v; want 409 (token accepted, no authority)", code, body, err)
	}

	// With the token, from the host: the master moves.
	withToken := switchPhase(t, c, l, "POST /switchover with the token", c.redisB, c.redisA, func() {
		c.switchover(c.proxyA, c.redisB)
	})
	moved := c.snapshot()
	if moved.epoch[0] != before.epoch[0]+1 {
		t.Errorf("after the authorized switchover: %v; want epoch %d", moved, before.epoch[0]+1)
	}

	// And back with the CLI inside proxy-a's container, which reads only
	// the admin variables and sends the token from its environment.
	cli := switchPhase(t, c, l, "redis-proxy switchover in proxy-a", c.redisA, c.redisB, func() {
		c.cliSwitchover(c.proxyA, c.redisA)
	})
	if rc, out := c.exec(c.proxyB, "status"); rc != 0 || !strings.Contains(out, `"routing"`) {
		t.Errorf("docker exec proxy-b redis-proxy status: exit %d: %s", rc, out)
	}
	if lost := finish(t, c, l, attackPhase, withToken, cli); lost > 0 {
		t.Errorf("%d acknowledged writes lost", lost)
	}
}

// 9. Proxies with no admin token: POST /switchover from the client network
// gets 403 and moves nothing (a bearer does not help), while the CLI in the
// container, over loopback, moves the master. A proxy started with
// REDIS_PROXY_ADMIN_LISTEN set to the empty string listens on no admin port.
func TestScenario9AdminWithoutToken(t *testing.T) {
	c := newCluster(t, 9, "admin-no-token", withoutAdminToken)
	l := warmUp(t, c, clientWorkers)
	before := c.snapshot()

	t0 := time.Now()
	attacks := []attack{
		{"to proxy-a", c.proxyA.ip, nil},
		{"to the VIP", c.vip, nil},
		{"to proxy-a with a bearer", c.proxyA.ip, map[string]string{"Authorization": "Bearer " + adminToken}},
		{"to proxy-a with forged loopback peer headers", c.proxyA.ip, map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}},
	}
	sent := c.attackSwitchover(attacks, 25, http.StatusForbidden, c.redisB)
	time.Sleep(time.Second)
	after := c.snapshot()
	attackPhase := l.measure("100 POST /switchover from the network", t0, time.Now())
	if after.String() != before.String() {
		t.Errorf("POSTs from the network changed the topology:\n before %v\n after  %v", before, after)
	}
	if r, err := refused(c.proxyA); err != nil || r["not_loopback"] != float64(sent[c.proxyA.ip]+sent[c.vip]) {
		t.Errorf("proxy-a refusals %v (%v), want not_loopback=%d", r, err, sent[c.proxyA.ip]+sent[c.vip])
	}

	// Over loopback, in the container: accepted.
	loopback := switchPhase(t, c, l, "redis-proxy switchover in proxy-a", c.redisB, c.redisA, func() {
		c.cliSwitchover(c.proxyA, c.redisB)
	})
	if s := c.snapshot(); s.epoch[0] != before.epoch[0]+1 {
		t.Errorf("after the loopback switchover: %v; want epoch %d", s, before.epoch[0]+1)
	}

	// A third proxy with the admin API disabled. It is given a server that
	// does not exist, so it has nothing to manage; it serves clients, and
	// nothing answers on 9736.
	off := &node{name: "proxy-off", ip: c.ip(23)}
	if err := c.run(t.Context(), off, proxyImage, nil, map[string]string{
		"REDIS_PROXY_SERVERS":      "127.0.0.1:1",
		"REDIS_PROXY_ADMIN_LISTEN": "",
	}, nil); err != nil {
		t.Fatal(err)
	}
	c.waitFor(15*time.Second, "proxy-off accepts clients on 6379", func() (bool, string) {
		conn, err := net.DialTimeout("tcp", off.addr(), time.Second)
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	})
	_, err := net.DialTimeout("tcp", off.ip+":9736", 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("proxy-off with REDIS_PROXY_ADMIN_LISTEN empty: dial 9736: %v, want connection refused", err)
	}
	if !running(c, off) {
		t.Errorf("proxy-off is not running")
	}
	if rc, out := c.exec(off, "healthcheck"); rc != 2 || !strings.Contains(out, "admin API is disabled") {
		t.Errorf("docker exec proxy-off redis-proxy healthcheck: exit %d: %q; want 2, the admin API is disabled", rc, out)
	}
	if lost := finish(t, c, l, attackPhase, loopback); lost > 0 {
		t.Errorf("%d acknowledged writes lost", lost)
	}
}
