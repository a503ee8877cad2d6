package main

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
)

// scrape returns the sample lines of the proxy's /metrics.
func (c *cluster) scrape() string {
	c.t.Helper()
	resp, err := httpc.Get(c.adminURL("/metrics"))
	if err != nil {
		c.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET /metrics: %s", resp.Status)
	}
	return string(b)
}

// sample returns the value of the series (name{labels} as exposed), or
// "" if there is none.
func sample(metrics, series string) string {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// expectSamples checks series against values; "" wants no such series.
func (c *cluster) expectSamples(what string, want map[string]string) {
	c.t.Helper()
	m := c.scrape()
	for s, v := range want {
		if got := sample(m, s); got != v {
			c.t.Errorf("%s: %s = %q, want %q", what, s, got, v)
		}
	}
}

// The per-server metrics follow the servers' roles; a planned switchover
// counts in redis_proxy_switchovers_total and not in
// redis_proxy_failovers_total, a failover the other way round.
func TestServerAndFailoverMetrics(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	a, b := c.srv[0], c.srv[1]
	// (The exposition sorts labels by name: role before server.)
	srv := func(name, addr string, labels ...string) string {
		return name + `{` + strings.Join(append(labels, `server="`+addr+`"`), ",") + `}`
	}
	poll.Until(t, 5*time.Second, "the replica's lag series", func() bool {
		return sample(c.scrape(), srv("redis_proxy_replica_lag_bytes", b.Addr)) != ""
	})
	c.expectSamples("at start", map[string]string{
		srv("redis_proxy_server_up", a.Addr):                     "1",
		srv("redis_proxy_server_up", b.Addr):                     "1",
		srv("redis_proxy_server_role", a.Addr, `role="master"`):  "1",
		srv("redis_proxy_server_role", a.Addr, `role="replica"`): "0",
		srv("redis_proxy_server_role", b.Addr, `role="master"`):  "0",
		srv("redis_proxy_server_role", b.Addr, `role="replica"`): "1",
		srv("redis_proxy_replica_link_up", b.Addr):               "1",
		srv("redis_proxy_replica_link_up", a.Addr):               "", // a master has no link
		srv("redis_proxy_replica_lag_bytes", a.Addr):             "",
		"redis_proxy_master_known":                               "1",
		"redis_proxy_failovers_total":                            "0",
		"redis_proxy_switchovers_total":                          "0",
	})
	if lag := sample(c.scrape(), srv("redis_proxy_replica_lag_bytes", b.Addr)); !regexp.MustCompile(`^[0-9]+$`).MatchString(lag) {
		t.Errorf("lag of the replica %q, want a number of bytes", lag)
	}

	if code, body := c.postSwitchover(b.Addr); code != http.StatusOK {
		t.Fatalf("POST /switchover: %d %s", code, body)
	}
	waitReplicaOf(t, a, b, 5*time.Second)
	poll.Until(t, 5*time.Second, "a, a replica, in the metrics", func() bool {
		return sample(c.scrape(), srv("redis_proxy_server_role", a.Addr, `role="replica"`)) == "1"
	})
	c.expectSamples("after a switchover", map[string]string{
		srv("redis_proxy_server_role", b.Addr, `role="master"`): "1",
		"redis_proxy_failovers_total":                           "0",
		"redis_proxy_switchovers_total":                         "1",
	})

	b.Kill()
	poll.Until(t, 10*time.Second, "a failover to a", func() bool {
		m := c.scrape()
		return sample(m, "redis_proxy_failovers_total") == "1" && sample(m, srv("redis_proxy_server_role", a.Addr, `role="master"`)) == "1"
	})
	c.expectSamples("after the master died", map[string]string{
		srv("redis_proxy_server_up", b.Addr):                    "0",
		srv("redis_proxy_server_role", b.Addr, `role="master"`): "0",
		"redis_proxy_switchovers_total":                         "1",
		"redis_proxy_master_known":                              "1",
	})
}

// `redis-proxy version` and --version print the version and revision set
// at link time, "dev" for those that are not.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		var out, errb bytes.Buffer
		if rc := run([]string{arg}, &out, &errb); rc != 0 || !strings.HasPrefix(out.String(), "redis-proxy dev (revision ") {
			t.Errorf("redis-proxy %s: exit %d, %q %q", arg, rc, out.String(), errb.String())
		}
	}
	version, revision = "v9.8.7", "0123abcd"
	defer func() { version, revision = "", "" }()
	var out bytes.Buffer
	run([]string{"version"}, &out, io.Discard)
	if want := "redis-proxy v9.8.7 (revision 0123abcd, " + runtime.Version() + ")\n"; out.String() != want {
		t.Errorf("redis-proxy version = %q, want %q", out.String(), want)
	}
}

// /metrics has the version and revision in redis_proxy_build_info.
func TestBuildInfoMetric(t *testing.T) {
	version, revision = "v9.8.7", "0123abcd"
	defer func() { version, revision = "", "" }()
	c := startCluster(t, 1, nil)
	c.expectSamples("build info", map[string]string{`redis_proxy_build_info{revision="0123abcd",version="v9.8.7"}`: "1"})
}
