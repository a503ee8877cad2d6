package main

// Helpers for the end-to-end failover tests (failover_test.go): real
// redis-server processes, the whole binary (proxy, replication manager,
// admin API) running in-process through serve(), and clients that record
// every command they send with its timing and outcome, so the tests can
// measure what a user sees: how long writes were unavailable, which
// commands failed, and which acknowledged writes are gone.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
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

// testConfig is the configuration loadConfig returns with nothing set but
// the servers (the defaults of the envconfig tags; TestFailoverConfigDefaults
// keeps the two in step), except that logs are JSON so the tests can follow
// the proxy's routing decisions.
func testConfig() Config {
	return Config{
		Listen:             ":6379",
		ReadFrom:           "master",
		AdminListen:        ":9736",
		PoolSize:           2,
		EventLoops:         1,
		BusyPoll:           100 * time.Microsecond,
		Coalesce:           true,
		MaxClients:         10000,
		MaxPinned:          1000,
		MaxBulk:            512 << 20,
		ClientOutputLimit:  256 << 20,
		MaxInflightMemory:  1 << 30,
		OperatorUser:       "redis-proxy-operator",
		IdleTimeout:        0,
		ClientWriteTimeout: 60 * time.Second,
		HoldTimeout:        5 * time.Second,
		MaxHeld:            10000,
		DialTimeout:        time.Second,
		TLSReloadInterval:  5 * time.Second,
		CheckInterval:      250 * time.Millisecond,
		DownAfter:          time.Second,
		JoinMaxLag:         time.Second,
		WriteAckTimeout:    time.Second,
		PromotionWait:      5 * time.Second,
		VIPInterface:       "eth0",
		Priority:           100,
		AdvertInterval:     200 * time.Millisecond,
		Preempt:            true,
		PreemptDelay:       0,
		HeartbeatPort:      5405,
		Track:              "demote",
		LogLevel:           "info",
		LogFormat:          "json",
	}
}

// fastTimers shortens failure detection for tests that are not about the
// default timings.
func fastTimers(c *Config) {
	c.CheckInterval = 100 * time.Millisecond
	c.DownAfter = 500 * time.Millisecond
}

// cluster is n redis-servers (the first the master, the others its
// replicas) behind one redis-proxy running in-process.
type cluster struct {
	t    *testing.T
	srv  []*redistest.Server
	cfg  Config
	logs *logWatch
	stop context.CancelFunc // stops serve before the test ends (start sets it)
}

func freeAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
}

// startCluster starts the servers and serve(), and returns once the proxy
// routes to the first server with every replica linked. serve is stopped
// (its context cancelled, and it must return) when the test ends, before
// the servers are killed.
func startCluster(t *testing.T, n int, tune func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, logs: &logWatch{}}
	for i := 0; i < n; i++ {
		c.srv = append(c.srv, redistest.Start(t))
	}
	for _, r := range c.srv[1:] {
		r.ReplicaOf(c.srv[0])
	}
	// After a full sync Redis may hold back the stream to a replica for up
	// to a second (until the replica's first REPLCONF ACK), although the
	// link says up. Tests start from replicas that have caught up.
	if n > 1 {
		if _, err := c.srv[0].Do("SET", "cluster:started", "1"); err != nil {
			t.Fatalf("SET on the master: %v", err)
		}
		for _, r := range c.srv[1:] {
			waitInSync(t, r, c.srv[0], 10*time.Second)
		}
	}
	c.cfg = testConfig()
	c.cfg.Listen, c.cfg.AdminListen = freeAddr(t), freeAddr(t)
	for _, r := range c.srv {
		c.cfg.Servers = append(c.cfg.Servers, r.Addr)
	}
	if tune != nil {
		tune(&c.cfg)
	}
	c.start()
	return c
}

// start runs the proxy with c.cfg until the test ends, and waits for it
// to find the first server master with every other one its replica, and
// to be ready.
func (c *cluster) start() {
	t := c.t
	t.Helper()
	if err := c.cfg.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c.cfg, c.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not return 10s after its context was cancelled")
		}
		if t.Failed() {
			t.Logf("redis-proxy log (last 120 lines):\n%s", c.logs.tail(120))
		}
	})
	var replicas []string
	for _, r := range c.srv[1:] {
		replicas = append(replicas, r.Addr)
	}
	c.waitTopology(10*time.Second, "the first server master with every replica linked", func(tv topologyView) bool {
		return tv.Routing.Master == c.srv[0].Addr && slices.Equal(tv.Routing.Replicas, replicas)
	})
	poll.Until(t, 10*time.Second, "/healthz 200", func() bool { return c.healthz() == http.StatusOK })
}

// server returns the test's server at addr.
func (c *cluster) server(addr string) *redistest.Server {
	c.t.Helper()
	for _, r := range c.srv {
		if r.Addr == addr {
			return r
		}
	}
	c.t.Fatalf("no server at %q", addr)
	return nil
}

// topologyView is the admin API's GET /topology.
type topologyView struct {
	Routing     replication.Topology `json:"routing"`
	Replication replication.Status   `json:"replication"`
	Pair        *pairStatus          `json:"pair"`
}

var httpc = &http.Client{Timeout: 5 * time.Second}

func (c *cluster) adminURL(path string) string {
	u, err := adminURL(c.cfg.adminEnv(), path)
	if err != nil {
		c.t.Fatalf("admin url: %v", err)
	}
	return u
}

// adminGet is a GET of the admin API, with the token if one is set (reads
// may be protected).
func (c *cluster) adminGet(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, c.adminURL(path), nil)
	if err != nil {
		return nil, err
	}
	if c.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.AdminToken)
	}
	return httpc.Do(req)
}

func (c *cluster) topology() (topologyView, error) {
	var tv topologyView
	resp, err := c.adminGet("/topology")
	if err != nil {
		return tv, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return tv, fmt.Errorf("GET /topology: %s", resp.Status)
	}
	return tv, json.NewDecoder(resp.Body).Decode(&tv)
}

func (c *cluster) waitTopology(d time.Duration, what string, ok func(topologyView) bool) topologyView {
	c.t.Helper()
	var tv topologyView
	var err error
	deadline := time.Now().Add(d)
	for {
		tv, err = c.topology()
		if err == nil && ok(tv) {
			return tv
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("topology: waited %v for %s; last: %+v (err %v)", d, what, tv, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cluster) healthz() int {
	resp, err := httpc.Get(c.adminURL("/healthz"))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// postSwitchover calls POST /switchover and returns the status and body.
func (c *cluster) postSwitchover(target string) (int, []byte) {
	c.t.Helper()
	resp, err := httpc.Post(c.adminURL("/switchover?target="+target), "", nil)
	if err != nil {
		c.t.Fatalf("POST /switchover: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// dial opens a client connection to the proxy.
func (c *cluster) dial(readTimeout time.Duration) redis.Conn {
	c.t.Helper()
	conn, err := redis.Dial("tcp", c.cfg.Listen, redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(readTimeout),
		redis.DialWriteTimeout(5*time.Second))
	if err != nil {
		c.t.Fatalf("dial proxy: %v", err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return conn
}

// roleOf is ROLE asked of a server directly: "master", or "slave" with
// the master's port and the link state ("connected" once in sync).
type roleOf struct {
	role       string
	masterPort int
	state      string
}

func (r roleOf) String() string {
	if r.role == "slave" {
		return fmt.Sprintf("slave of port %d (%s)", r.masterPort, r.state)
	}
	return r.role
}

func role(s *redistest.Server) (roleOf, error) {
	v, err := redis.Values(s.Do("ROLE"))
	if err != nil {
		return roleOf{}, err
	}
	var r roleOf
	r.role, _ = redis.String(v[0], nil)
	if r.role == "slave" && len(v) >= 4 {
		r.masterPort, _ = redis.Int(v[2], nil)
		r.state, _ = redis.String(v[3], nil)
	}
	return r, nil
}

// waitReplicaOf waits until s says it is a replica of m with the link up.
func waitReplicaOf(t *testing.T, s, m *redistest.Server, d time.Duration) time.Time {
	t.Helper()
	var last roleOf
	var err error
	deadline := time.Now().Add(d)
	for {
		last, err = role(s)
		if err == nil && last.role == "slave" && last.masterPort == m.Port && last.state == "connected" {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: waited %v to be a connected replica of %s; ROLE says %v (err %v)", s.Addr, d, m.Addr, last, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// set sets key to value through the proxy.
func (c *cluster) set(key, value string) {
	c.t.Helper()
	if _, err := c.dial(5*time.Second).Do("SET", key, value); err != nil {
		c.t.Fatalf("SET through the proxy: %v", err)
	}
}

// waitInSync waits until replica r has all of master m's replication stream.
func waitInSync(t *testing.T, r, m *redistest.Server, d time.Duration) {
	t.Helper()
	offset := func(s *redistest.Server) int64 {
		info, err := redis.String(s.Do("INFO", "replication"))
		if err != nil {
			return -1
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return -1
	}
	poll.Until(t, d, r.Addr+" in sync with "+m.Addr, func() bool {
		mo, ro := offset(m), offset(r)
		return mo > 0 && mo == ro
	})
}

// missing returns the keys that s does not hold with their own name as
// value (every writer here sets key = value), sorted.
func missing(t *testing.T, s *redistest.Server, keys []string) []string {
	t.Helper()
	want := make(map[string]string, len(keys))
	for _, k := range keys {
		want[k] = k
	}
	rb, err := writetest.ReadBack(s.Addr, want)
	if err != nil {
		t.Fatalf("on %s: %v", s.Addr, err)
	}
	return rb.Lost()
}

func keysOf(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	keys, err := redis.Strings(s.Do("KEYS", "*"))
	if err != nil {
		t.Fatalf("KEYS on %s: %v", s.Addr, err)
	}
	slices.Sort(keys)
	return keys
}

// writer runs a client that writes unique keys (key = value = prefix:n)
// through the proxy until l stops, batch commands at a time: 1 is one
// command at a time, more is a pipeline sent in one write. A connection
// that fails is replaced, as a client library would.
func (c *cluster) writer(l *writetest.Load, prefix string, batch int, readTimeout time.Duration) *writetest.Recorder {
	rec := &writetest.Recorder{Name: prefix}
	l.Go(writetest.Client{Addr: c.cfg.Listen, Prefix: prefix, Batch: batch, Timeout: readTimeout, Retry: clientRetry}, rec)
	return rec
}

// reader runs a client that GETs key through the proxy, one command at a
// time, until l stops; a reply other than want is an error.
func (c *cluster) reader(l *writetest.Load, key, want string, readTimeout time.Duration) *writetest.Recorder {
	rec := &writetest.Recorder{Name: "reader"}
	l.Go(writetest.Client{Addr: c.cfg.Listen, Key: key, Want: want, Timeout: readTimeout, Retry: clientRetry}, rec)
	return rec
}

// clientRetry is how long a test client waits after a failure.
const clientRetry = 20 * time.Millisecond

// logEvent is one record serve logged, stamped when it was written.
type logEvent struct {
	at        time.Time
	msg       string
	component string
	epoch     uint64
	master    string // "routing": the master routed to
	addr      string // replication events: the server concerned
}

// routeEvent is a routing change the proxy logged ("routing"). It is
// written just after the change: sessions the change released may be
// answered a moment before it.
type routeEvent = logEvent

// logWatch is serve's log writer: it keeps the lines and the events.
type logWatch struct {
	mu     sync.Mutex
	buf    []byte
	lines  []string
	events []logEvent
}

func (w *logWatch) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		w.lines = append(w.lines, line)
		var rec struct {
			Msg       string `json:"msg"`
			Component string `json:"component"`
			Epoch     uint64 `json:"epoch"`
			Master    string `json:"master"`
			Addr      string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			w.events = append(w.events, logEvent{at: now, msg: rec.Msg, component: rec.Component, epoch: rec.Epoch, master: rec.Master, addr: rec.Addr})
		}
	}
	return len(p), nil
}

func (w *logWatch) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines[max(0, len(w.lines)-n):], "\n")
}

// since returns the events logged after t by component with message msg.
func (w *logWatch) since(t time.Time, component, msg string) []logEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []logEvent
	for _, e := range w.events {
		if e.at.After(t) && e.component == component && e.msg == msg {
			out = append(out, e)
		}
	}
	return out
}

// routesSince returns the routing changes logged after t.
func (w *logWatch) routesSince(t time.Time) []routeEvent { return w.since(t, "proxy", "routing") }

// waitRoute waits for the first routing change after t that satisfies ok.
func (c *cluster) waitRoute(after time.Time, d time.Duration, what string, ok func(routeEvent) bool) routeEvent {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, e := range c.logs.routesSince(after) {
			if ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waited %v for the proxy to route to %s; routing changes since: %+v", d, what, c.logs.routesSince(after))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// promoted returns when the manager confirmed addr as the new master after
// t ("master changed", logged once ROLE confirmed the promotion and before
// the proxy is told). No client can be answered by addr as master before.
func (c *cluster) promoted(after time.Time, addr string) time.Time {
	c.t.Helper()
	for _, e := range c.logs.since(after, "replication", "master changed") {
		if e.addr == addr {
			return e.at
		}
	}
	c.t.Fatalf("no \"master changed\" to %s logged", addr)
	return time.Time{}
}

// clearEnv removes every REDIS_PROXY_* variable for the test (they come
// back when it ends).
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envPrefix+"_") {
			unsetEnv(t, k)
		}
	}
}

// unsetEnv unsets k for the test: t.Setenv restores it when the test ends,
// and empty is not always unset (REDIS_PROXY_ADMIN_LISTEN=).
func unsetEnv(t *testing.T, k string) {
	t.Helper()
	t.Setenv(k, "")
	os.Unsetenv(k)
}

// adminEnv is the subcommands' part of a full configuration.
func (c Config) adminEnv() adminEnv { return adminEnv{Listen: c.AdminListen, Token: c.AdminToken} }
