package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

const testToken = "admin-token-0123456789abcdef"

// TestAdminAuthorize: the whole rule, as a table over the policy and the
// request (method, path, TCP peer, Authorization header).
func TestAdminAuthorize(t *testing.T) {
	var (
		loop4   = netip.MustParseAddr("127.0.0.1")
		loop4b  = netip.MustParseAddr("127.0.0.2") // all of 127/8 is loopback
		loop6   = netip.MustParseAddr("::1")
		mapped  = netip.MustParseAddr("::ffff:127.0.0.1")
		remote  = netip.MustParseAddr("172.29.0.1")
		remote6 = netip.MustParseAddr("fd00::1")
		none    netip.Addr // RemoteAddr that did not parse
	)
	open := newAdminPolicy("", false)
	openReadsLocked := newAdminPolicy("", true)
	tok := newAdminPolicy(testToken, false)
	tokReads := newAdminPolicy(testToken, true)
	bearer := "Bearer " + testToken
	for _, tc := range []struct {
		name         string
		p            adminPolicy
		method, path string
		peer         netip.Addr
		authz        string
		status       int
		reason       string
	}{
		// No token configured: changes from loopback only, reads open.
		{"no token, POST from 127.0.0.1", open, "POST", "/switchover", loop4, "", 0, ""},
		{"no token, POST from 127.0.0.2", open, "POST", "/switchover", loop4b, "", 0, ""},
		{"no token, POST from ::1", open, "POST", "/switchover", loop6, "", 0, ""},
		{"no token, POST from v4-mapped loopback", open, "POST", "/switchover", mapped, "", 0, ""},
		{"no token, POST from the network", open, "POST", "/switchover", remote, "", 403, refusedNotLoopback},
		{"no token, POST from the network (v6)", open, "POST", "/switchover", remote6, "", 403, refusedNotLoopback},
		{"no token, POST from an unparsed peer", open, "POST", "/switchover", none, "", 403, refusedNotLoopback},
		{"no token, a bearer does not help", open, "POST", "/switchover", remote, bearer, 403, refusedNotLoopback},
		{"no token, any other method", open, "DELETE", "/topology", remote, "", 403, refusedNotLoopback},
		{"no token, a future POST route", open, "POST", "/anything", remote, "", 403, refusedNotLoopback},
		{"no token, GET /topology from the network", open, "GET", "/topology", remote, "", 0, ""},
		{"no token, HEAD /metrics from the network", open, "HEAD", "/metrics", remote, "", 0, ""},
		{"no token, reads locked: GET /topology from the network", openReadsLocked, "GET", "/topology", remote, "", 403, refusedNotLoopback},
		{"no token, reads locked: GET /metrics from loopback", openReadsLocked, "GET", "/metrics", loop4, "", 0, ""},
		{"no token, reads locked: /healthz stays open", openReadsLocked, "GET", "/healthz", remote, "", 0, ""},

		// A token configured: changes need it from everyone, loopback too.
		{"token, POST without it", tok, "POST", "/switchover", remote, "", 401, refusedNoToken},
		{"token, POST without it from loopback", tok, "POST", "/switchover", loop4, "", 401, refusedNoToken},
		{"token, POST with it", tok, "POST", "/switchover", remote, bearer, 0, ""},
		{"token, scheme in any case, spaces around", tok, "POST", "/switchover", remote, "  bearer   " + testToken + " ", 0, ""},
		{"token, wrong token", tok, "POST", "/switchover", remote, "Bearer " + testToken + "x", 401, refusedBadToken},
		{"token, a prefix of it", tok, "POST", "/switchover", remote, "Bearer " + testToken[:10], 401, refusedBadToken},
		{"token, basic auth is not a bearer", tok, "POST", "/switchover", remote, "Basic " + testToken, 401, refusedNoToken},
		{"token, the bare token without a scheme", tok, "POST", "/switchover", remote, testToken, 401, refusedNoToken},
		{"token, Bearer with nothing", tok, "POST", "/switchover", remote, "Bearer ", 401, refusedNoToken},
		{"token, GET /topology open", tok, "GET", "/topology", remote, "", 0, ""},
		{"token, reads locked: GET /topology without it", tokReads, "GET", "/topology", remote, "", 401, refusedNoToken},
		{"token, reads locked: GET /metrics from loopback without it", tokReads, "GET", "/metrics", loop4, "", 401, refusedNoToken},
		{"token, reads locked: GET /metrics with it", tokReads, "GET", "/metrics", remote, bearer, 0, ""},
		{"token, reads locked: /healthz open", tokReads, "GET", "/healthz", remote, "", 0, ""},
		{"token, reads locked: POST /healthz is not a read", tokReads, "POST", "/healthz", remote, "", 401, refusedNoToken},

		// The status page's shell (no data) loads with reads locked, to
		// ask for the token; its data does not.
		{"token, reads locked: GET / open", tokReads, "GET", "/", remote, "", 0, ""},
		{"token, reads locked: GET /ui/app.js open", tokReads, "GET", "/ui/app.js", remote, "", 0, ""},
		{"token, reads locked: GET /events without it", tokReads, "GET", "/events", remote, "", 401, refusedNoToken},
		{"token, reads locked: GET /events with it", tokReads, "GET", "/events", remote, bearer, 0, ""},
		{"token, reads locked: GET /uix is not the shell", tokReads, "GET", "/uix", remote, "", 401, refusedNoToken},
		{"token, reads locked: POST / is not a read", tokReads, "POST", "/", remote, "", 401, refusedNoToken},
		{"no token, reads locked: GET / from the network", openReadsLocked, "GET", "/", remote, "", 0, ""},
		{"no token, reads locked: GET /events from the network", openReadsLocked, "GET", "/events", remote, "", 403, refusedNotLoopback},
	} {
		v := tc.p.authorize(tc.method, tc.path, tc.peer, tc.authz)
		if v.status != tc.status || v.reason != tc.reason {
			t.Errorf("%s: got %d %q, want %d %q", tc.name, v.status, v.reason, tc.status, tc.reason)
		}
		if !v.allowed() && (v.msg == "" || strings.Contains(v.msg, testToken)) {
			t.Errorf("%s: message %q: want a reason that does not repeat the token", tc.name, v.msg)
		}
	}
}

func TestPeerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000": "127.0.0.1", "[::1]:80": "::1", "172.29.0.1:33000": "172.29.0.1",
		"127.0.0.1": "invalid IP", "": "invalid IP", "localhost:80": "invalid IP",
	} {
		if got := peerAddr(in).String(); got != want {
			t.Errorf("peerAddr(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestAdminGuardAnswers: what a refused client receives (status,
// WWW-Authenticate, one line of JSON), that the route never runs, and the
// refusal counter; with a fake RemoteAddr, as net/http sets it.
func TestAdminGuardAnswers(t *testing.T) {
	for _, tc := range []struct {
		name          string
		token         string
		remote, authz string
		status        int
		wwwAuth       string
		reason        string
	}{
		{"no token configured, remote", "", "172.29.0.1:40000", "", 403, "", refusedNotLoopback},
		{"no token configured, X-Forwarded-For is not the peer", "", "172.29.0.1:40000", "", 403, "", refusedNotLoopback},
		{"no token configured, loopback", "", "127.0.0.1:40000", "", 200, "", ""},
		{"token, none sent", testToken, "172.29.0.1:40000", "", 401, `Bearer realm="redis-proxy"`, refusedNoToken},
		{"token, wrong", testToken, "172.29.0.1:40000", "Bearer nope-nope-nope-nope", 401, `Bearer realm="redis-proxy", error="invalid_token"`, refusedBadToken},
		{"token, right", testToken, "172.29.0.1:40000", "Bearer " + testToken, 200, "", ""},
	} {
		reg := prometheus.NewRegistry()
		var logs bytes.Buffer
		g := newAdminGuard(newAdminPolicy(tc.token, false), reg, slog.New(slog.NewTextHandler(&logs, nil)))
		ran := false
		h := g.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ran = true
			io.WriteString(w, "switched\n")
		}))
		req := httptest.NewRequest("POST", "/switchover?target=x:1", nil)
		req.RemoteAddr = tc.remote
		req.Header.Set("X-Forwarded-For", "127.0.0.1")
		req.Header.Set("X-Real-IP", "127.0.0.1")
		if tc.authz != "" {
			req.Header.Set("Authorization", tc.authz)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, rec.Code, tc.status)
		}
		if ran != (tc.status == 200) {
			t.Errorf("%s: the route ran: %v, want %v", tc.name, ran, tc.status == 200)
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != tc.wwwAuth {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tc.name, got, tc.wwwAuth)
		}
		for _, r := range []string{refusedNoToken, refusedBadToken, refusedNotLoopback} {
			want := 0.0
			if r == tc.reason {
				want = 1
			}
			if got := testutil.ToFloat64(g.refused.WithLabelValues(r)); got != want {
				t.Errorf("%s: redis_proxy_admin_refused_total{reason=%q} = %v, want %v", tc.name, r, got, want)
			}
		}
		if tc.status == 200 {
			continue
		}
		body := rec.Body.String()
		var e struct{ Error string }
		if rec.Header().Get("Content-Type") != "application/json" || strings.Count(body, "\n") != 1 ||
			!strings.HasSuffix(body, "\n") || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("%s: body %q (%s): want one line of JSON {\"error\": ...}", tc.name, body, rec.Header().Get("Content-Type"))
		}
		if strings.Contains(logs.String(), testToken) || strings.Contains(logs.String(), "nope-nope") || strings.Contains(body, "nope-nope") {
			t.Errorf("%s: a token was repeated: log %q body %q", tc.name, logs.String(), body)
		}
		if !strings.Contains(logs.String(), "admin request refused") {
			t.Errorf("%s: the refusal was not logged: %q", tc.name, logs.String())
		}
	}
}

// TestAdminGuardLogsAFloodOnce: 100 refused requests in a row make one log
// line, and all 100 are counted.
func TestAdminGuardLogsAFloodOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	g := newAdminGuard(newAdminPolicy(testToken, false), reg, slog.New(slog.NewTextHandler(&logs, nil)))
	h := g.wrap(http.NotFoundHandler())
	for range 100 {
		req := httptest.NewRequest("POST", "/switchover", nil)
		req.RemoteAddr = "10.0.0.9:1234"
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if n := strings.Count(logs.String(), "admin request refused"); n != 1 {
		t.Errorf("%d log lines for 100 refusals within %v, want 1:\n%s", n, refusalLogEvery, logs.String())
	}
	if got := testutil.ToFloat64(g.refused.WithLabelValues(refusedNoToken)); got != 100 {
		t.Errorf("refusals counted: %v, want 100", got)
	}
}

// nonLoopbackIP is an address of this machine that is not loopback, for
// tests that need a TCP peer that is not 127.0.0.1 (connecting to a local
// address from the same host uses it as the source). The test skips when
// the machine has none.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("interface addresses: %v", err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			ln, err := net.Listen("tcp", net.JoinHostPort(p.Addr().String(), "0"))
			if err != nil {
				continue
			}
			ln.Close()
			return p.Addr().String()
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address to connect from")
	return ""
}

func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// adminPost POSTs to the cluster's admin API with the given Authorization
// header (none if empty).
func (c *cluster) adminPost(path, authz string) (int, http.Header, []byte) {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.adminURL(path), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// unchanged checks that the master and the epoch are what they were: no
// switchover happened (asked of the proxy and of Redis itself).
func (c *cluster) unchanged(before topologyView, what string) {
	c.t.Helper()
	// A switchover that got through would have changed both by the time
	// its POST returned; wait a little for one that did not go through the
	// handler's return either.
	time.Sleep(300 * time.Millisecond)
	after, err := c.topology()
	if err != nil {
		c.t.Fatal(err)
	}
	if after.Routing.Master != before.Routing.Master || after.Routing.Epoch != before.Routing.Epoch ||
		after.Replication.Failovers != before.Replication.Failovers || after.Replication.Switchovers != before.Replication.Switchovers {
		c.t.Errorf("%s: the topology changed: master %s epoch %d failovers %d, was %s %d %d", what,
			after.Routing.Master, after.Routing.Epoch, after.Replication.Failovers,
			before.Routing.Master, before.Routing.Epoch, before.Replication.Failovers)
	}
	if r, err := role(c.server(before.Routing.Master)); err != nil || r.role != "master" {
		c.t.Errorf("%s: ROLE of %s: %v %v, want master", what, before.Routing.Master, r, err)
	}
}

// TestAdminSwitchoverFromTheNetwork is the attack on real sockets:
// the whole binary in-process with its admin API on a non-loopback
// address of this machine, so the test's requests come from a peer that is
// not loopback. Without a token configured a POST /switchover gets 403 and
// the master stays; the same POST over loopback goes through (the other
// tests' switchovers).
func TestAdminSwitchoverFromTheNetwork(t *testing.T) {
	ip := nonLoopbackIP(t)
	c := startCluster(t, 2, func(cfg *Config) {
		fastTimers(cfg)
		cfg.AdminListen = freeAddrOn(t, ip)
	})
	before, err := c.topology()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		code, hdr, body := c.adminPost("/switchover", "")
		if code != http.StatusForbidden || hdr.Get("WWW-Authenticate") != "" {
			t.Fatalf("POST /switchover from %s with no token configured: %d %s, want 403", ip, code, body)
		}
	}
	c.unchanged(before, "20 POSTs from "+ip)
	if n := refusedMetric(t, c, refusedNotLoopback); n != 20 {
		t.Errorf("redis_proxy_admin_refused_total{reason=\"not_loopback\"} = %v, want 20", n)
	}
	// The CLI from the same place is refused as well, and says why.
	var out, errb bytes.Buffer
	if rc := switchover(c.cfg.adminEnv(), "", &out, &errb); rc != 1 || !strings.Contains(errb.String(), "403") ||
		!strings.Contains(errb.String(), "REDIS_PROXY_ADMIN_TOKEN") {
		t.Errorf("redis-proxy switchover from %s: exit %d, stderr %q; want 1 and the 403", ip, rc, errb.String())
	}
	c.unchanged(before, "the CLI from "+ip)
}

// TestAdminSwitchoverWithToken: with REDIS_PROXY_ADMIN_TOKEN set, a POST
// without it or with a wrong one gets 401 and changes nothing; with it the
// switchover happens (epoch + 1), and the CLI sends it.
func TestAdminSwitchoverWithToken(t *testing.T) {
	ip := nonLoopbackIP(t)
	c := startCluster(t, 2, func(cfg *Config) {
		fastTimers(cfg)
		cfg.AdminListen = freeAddrOn(t, ip)
		cfg.AdminToken = testToken
	})
	a, b := c.srv[0], c.srv[1]
	before, err := c.topology()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ authz, wantAuth string }{
		{"", `Bearer realm="redis-proxy"`},
		{"Bearer wrong-token-0123456789", `Bearer realm="redis-proxy", error="invalid_token"`},
		{"Basic " + testToken, `Bearer realm="redis-proxy"`},
	} {
		code, hdr, body := c.adminPost("/switchover?target="+b.Addr, tc.authz)
		if code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != tc.wantAuth {
			t.Errorf("POST /switchover with Authorization %q: %d (WWW-Authenticate %q) %s, want 401 (%s)",
				tc.authz, code, hdr.Get("WWW-Authenticate"), body, tc.wantAuth)
		}
	}
	c.unchanged(before, "POSTs without the right token")
	if n := refusedMetric(t, c, refusedNoToken); n != 2 {
		t.Errorf("redis_proxy_admin_refused_total{reason=\"no_token\"} = %v, want 2", n)
	}
	if n := refusedMetric(t, c, refusedBadToken); n != 1 {
		t.Errorf("redis_proxy_admin_refused_total{reason=\"bad_token\"} = %v, want 1", n)
	}
	// A wrong token through the CLI: refused, exit 1.
	var out, errb bytes.Buffer
	if rc := switchover(adminEnv{Listen: c.cfg.AdminListen, Token: "wrong-token-0123456789"}, b.Addr, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "401") {
		t.Errorf("redis-proxy switchover with a wrong token: exit %d, stderr %q; want 1 and 401", rc, errb.String())
	}
	c.unchanged(before, "the CLI with a wrong token")

	code, _, body := c.adminPost("/switchover?target="+b.Addr, "Bearer "+testToken)
	if code != http.StatusOK {
		t.Fatalf("POST /switchover with the token: %d %s", code, body)
	}
	waitReplicaOf(t, a, b, 5*time.Second)
	tv := c.waitTopology(5*time.Second, "master b, a its linked replica", func(tv topologyView) bool {
		return tv.Routing.Master == b.Addr && slices.Equal(tv.Routing.Replicas, []string{a.Addr})
	})
	if tv.Routing.Epoch != before.Routing.Epoch+1 {
		t.Errorf("epoch after the switchover %d, want %d", tv.Routing.Epoch, before.Routing.Epoch+1)
	}
	// And back through the CLI, which sends the token.
	out.Reset()
	errb.Reset()
	if rc := switchover(c.cfg.adminEnv(), a.Addr, &out, &errb); rc != 0 {
		t.Fatalf("redis-proxy switchover with the token: exit %d: %s", rc, errb.String())
	}
	waitReplicaOf(t, b, a, 5*time.Second)
	// Reads stay open without the token.
	if _, err := c.topology(); err != nil {
		t.Errorf("GET /topology without a token: %v", err)
	}
}

// refusedMetric reads redis_proxy_admin_refused_total{reason} from /metrics.
func refusedMetric(t *testing.T, c *cluster, reason string) float64 {
	t.Helper()
	resp, err := httpc.Get(c.adminURL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	prefix := `redis_proxy_admin_refused_total{reason="` + reason + `"} `
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q", line)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", prefix)
	return 0
}

// TestAdminListenEmptyDisables: REDIS_PROXY_ADMIN_LISTEN set to the empty
// string turns the admin API off (only this variable distinguishes empty
// from unset); unset keeps the default.
func TestAdminListenEmptyDisables(t *testing.T) {
	setEnv(t, map[string]string{"SERVERS": "a:1", "ADMIN_LISTEN": ""})
	c, err := loadConfig()
	if err != nil || c.AdminListen != "" {
		t.Fatalf("ADMIN_LISTEN=\"\": AdminListen %q (%v), want empty: disabled", c.AdminListen, err)
	}
	// Called again (the first call must not have unset it on the way).
	if c, err := loadConfig(); err != nil || c.AdminListen != "" {
		t.Fatalf("second loadConfig: AdminListen %q (%v), want empty", c.AdminListen, err)
	}
	if a, err := loadAdminEnv(); err != nil || a.Listen != "" {
		t.Fatalf("loadAdminEnv with ADMIN_LISTEN=\"\": %+v %v", a, err)
	}
	var out, errb bytes.Buffer
	for _, cmd := range []string{"healthcheck", "status", "switchover"} {
		errb.Reset()
		if rc := run([]string{cmd}, &out, &errb); rc != 2 || !strings.Contains(errb.String(), "admin API is disabled") || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%s with the admin API disabled: exit %d, stderr %q; want 2 and one line saying so", cmd, rc, errb.String())
		}
	}
	setEnv(t, map[string]string{"SERVERS": "a:1"})
	if c, err := loadConfig(); err != nil || c.AdminListen != ":9736" {
		t.Fatalf("ADMIN_LISTEN unset: AdminListen %q (%v), want :9736", c.AdminListen, err)
	}
	setEnv(t, map[string]string{"SERVERS": "a:1", "ADMIN_LISTEN": "9736"})
	if _, err := loadConfig(); err == nil || err.Error() != `REDIS_PROXY_ADMIN_LISTEN="9736": want host:port, or empty to disable` {
		t.Errorf("ADMIN_LISTEN=9736: %v", err)
	}
}

// TestAdminDisabledListensNowhere runs the binary's serve() with the admin
// API disabled and checks that nothing answers on the default admin port
// while the proxy serves clients.
func TestAdminDisabledListensNowhere(t *testing.T) {
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:9736", time.Second); err == nil {
		conn.Close()
		t.Skip("something on this machine already listens on 127.0.0.1:9736")
	}
	r := redistest.Start(t)
	cfg := testConfig()
	cfg.Listen, cfg.AdminListen, cfg.Servers = freeAddr(t), "", []string{r.Addr}
	var logs logWatch
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, &logs) }()
	defer func() {
		cancel()
		<-done
	}()
	poll.Until(t, 10*time.Second, "PING through the proxy", func() bool {
		conn, err := redis.Dial("tcp", cfg.Listen, redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
		if err != nil {
			return false
		}
		defer conn.Close()
		s, err := redis.String(conn.Do("PING"))
		return err == nil && s == "PONG"
	})
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:9736", time.Second); err == nil {
		conn.Close()
		t.Errorf("with REDIS_PROXY_ADMIN_LISTEN empty, 127.0.0.1:9736 accepts connections")
	}
	if !strings.Contains(logs.tail(20), `"admin":"disabled"`) {
		t.Errorf("the start line does not say the admin API is disabled:\n%s", logs.tail(20))
	}
}

// fakeAdmin is an admin API that records what it was sent.
type fakeAdmin struct {
	*httptest.Server
	got []*http.Request
}

func newFakeAdmin(t *testing.T) *fakeAdmin {
	f := &fakeAdmin{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.got = append(f.got, r)
		switch r.Method + " " + r.URL.Path {
		case "GET /healthz":
			io.WriteString(w, "ok\n")
		case "GET /topology":
			io.WriteString(w, `{"routing":{"master":"10.0.0.1:6379"}}`+"\n")
		case "POST /switchover":
			if r.Header.Get("Authorization") != "Bearer "+testToken {
				writeJSONError(w, 401, "no")
				return
			}
			io.WriteString(w, `{"from":"10.0.0.1:6379","to":"`+r.URL.Query().Get("target")+`"}`+"\n")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// TestSubcommandsNeedOnlyAdminVariables: healthcheck, status and switchover
// run with nothing but the admin address and token set, and unrelated bad
// variables do not stop them; switchover sends the token, read from a file
// here.
func TestSubcommandsNeedOnlyAdminVariables(t *testing.T) {
	f := newFakeAdmin(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No SERVERS (required by run), and a bad POOL_SIZE and VIP.
	setEnv(t, map[string]string{"ADMIN_LISTEN": f.Listener.Addr().String(), "ADMIN_TOKEN_FILE": tokenFile,
		"POOL_SIZE": "lots", "VIP": "nonsense", "PASSWORD_FILE": "/nonexistent"})
	var out, errb bytes.Buffer
	if rc := run([]string{"healthcheck"}, &out, &errb); rc != 0 {
		t.Errorf("healthcheck: exit %d: %s", rc, errb.String())
	}
	if rc := run([]string{"status"}, &out, &errb); rc != 0 || !strings.Contains(out.String(), "10.0.0.1:6379") {
		t.Errorf("status: exit %d, stdout %q: %s", rc, out.String(), errb.String())
	}
	out.Reset()
	if rc := run([]string{"switchover", "10.0.0.2:6379"}, &out, &errb); rc != 0 || !strings.Contains(out.String(), `"to":"10.0.0.2:6379"`) {
		t.Errorf("switchover: exit %d, stdout %q: %s", rc, out.String(), errb.String())
	}
	for _, r := range f.got {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			t.Errorf("%s %s sent Authorization %q, want the token from the file", r.Method, r.URL.Path, r.Header.Get("Authorization"))
		}
	}
	// The server still refuses to start with the same environment.
	errb.Reset()
	if rc := run(nil, &out, &errb); rc != 2 {
		t.Errorf("run with a bad POOL_SIZE: exit %d, want 2 (%s)", rc, errb.String())
	}

	// Without the token the switchover is refused, and says so.
	setEnv(t, map[string]string{"ADMIN_LISTEN": f.Listener.Addr().String()})
	errb.Reset()
	if rc := run([]string{"switchover"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "401") {
		t.Errorf("switchover with no token: exit %d, stderr %q; want 1 and the 401", rc, errb.String())
	}

	// The admin variables themselves are still checked: exit 2, one line.
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"ADMIN_LISTEN": "nohostport"}, `redis-proxy: REDIS_PROXY_ADMIN_LISTEN="nohostport": want host:port, or empty to disable` + "\n"},
		{map[string]string{"ADMIN_TOKEN": testToken, "ADMIN_TOKEN_FILE": tokenFile},
			"redis-proxy: REDIS_PROXY_ADMIN_TOKEN and REDIS_PROXY_ADMIN_TOKEN_FILE are both set: want one of them\n"},
		{map[string]string{"ADMIN_TOKEN_FILE": "/nonexistent/token"},
			`redis-proxy: REDIS_PROXY_ADMIN_TOKEN_FILE="/nonexistent/token": cannot read the file: no such file or directory` + "\n"},
	} {
		setEnv(t, tc.env)
		errb.Reset()
		if rc := run([]string{"status"}, &out, &errb); rc != 2 || errb.String() != tc.want {
			t.Errorf("status with %v: exit %d, stderr %q; want 2, %q", tc.env, rc, errb.String(), tc.want)
		}
	}
}

// TestSecretFiles: every secret variable can be read from its _FILE, with
// trailing newlines dropped; both at once, an unreadable file and an empty
// one are one-line errors (exit 2) that name the variable and never show
// the secret.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const secret = "s3cret-value-0123456789"
	base := map[string]string{"SERVERS": "a:1", "PEERS": "10.0.0.2", "VIP": "10.0.0.100/24", "VIP_INTERFACE": "lo"}
	with := func(kv map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range kv {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		field func(Config) string
	}{
		{"PASSWORD", func(c Config) string { return c.Password }},
		{"BACKEND_PASSWORD", func(c Config) string { return c.BackendPassword }},
		{"HEARTBEAT_SECRET", func(c Config) string { return c.HeartbeatSecret }},
		{"ADMIN_TOKEN", func(c Config) string { return c.AdminToken }},
	} {
		extra := map[string]string{}
		if tc.name != "HEARTBEAT_SECRET" {
			extra["HEARTBEAT_SECRET"] = "heartbeat-secret-0123456789"
		}
		for _, content := range []string{secret, secret + "\n", secret + "\r\n", secret + "\n\n"} {
			kv := with(extra)
			kv[tc.name+"_FILE"] = write(tc.name, content)
			setEnv(t, kv)
			c, err := loadConfig()
			if err != nil {
				t.Fatalf("%s_FILE holding %q: %v", tc.name, content, err)
			}
			if got := tc.field(c); got != secret {
				t.Errorf("%s_FILE holding %q: the value is %q, want %q", tc.name, content, got, secret)
			}
		}
		file := write(tc.name, secret+"\n")
		empty := write(tc.name+"-empty", "\n")
		for _, bad := range []struct {
			env  map[string]string
			want string
		}{
			{map[string]string{tc.name: secret, tc.name + "_FILE": file},
				"REDIS_PROXY_" + tc.name + " and REDIS_PROXY_" + tc.name + "_FILE are both set: want one of them"},
			{map[string]string{tc.name + "_FILE": filepath.Join(dir, "missing")},
				"REDIS_PROXY_" + tc.name + `_FILE="` + filepath.Join(dir, "missing") + `": cannot read the file: no such file or directory`},
			{map[string]string{tc.name + "_FILE": dir},
				"REDIS_PROXY_" + tc.name + `_FILE="` + dir + `": cannot read the file: is a directory`},
			{map[string]string{tc.name + "_FILE": empty},
				"REDIS_PROXY_" + tc.name + `_FILE="` + empty + `": the file is empty (want the secret in it)`},
		} {
			kv := with(extra)
			for k, v := range bad.env {
				kv[k] = v
			}
			setEnv(t, kv)
			_, err := loadConfig()
			if err == nil || err.Error() != bad.want {
				t.Errorf("%v:\n got  %v\n want %s", bad.env, err, bad.want)
			}
			var out, errb bytes.Buffer
			if rc := run(nil, &out, &errb); rc != 2 || strings.Count(errb.String(), "\n") != 1 || strings.Contains(errb.String(), secret) {
				t.Errorf("run with %v: exit %d, stderr %q; want 2 and one line without the secret", bad.env, rc, errb.String())
			}
		}
	}
	// A file's secret is checked like the variable's, and not repeated.
	setEnv(t, with(map[string]string{"HEARTBEAT_SECRET": "heartbeat-secret-0123456789", "ADMIN_TOKEN_FILE": write("short", "hunter2\n")}))
	if _, err := loadConfig(); err == nil || err.Error() != "REDIS_PROXY_ADMIN_TOKEN: must be at least 16 characters, got 7" {
		t.Errorf("a short token from a file: %v", err)
	}
}
