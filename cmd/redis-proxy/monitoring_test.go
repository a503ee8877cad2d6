package main

// The monitoring the repository ships (docs/prometheus, docs/grafana) is
// checked here: the alert rules by promtool (syntax, and their own unit
// tests), the dashboard's queries parsed by promtool, and every metric and
// label they name exported by the binary, so neither can rot as metrics
// change.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/certtest"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

const (
	alertRules = "../../docs/prometheus/redis-proxy-alerts.yml"
	alertTests = "../../docs/prometheus/redis-proxy-alerts_test.yml"
	dashboard  = "../../docs/grafana/redis-proxy.json"
)

// promtool returns the path of promtool (Debian's prometheus package; .ci/run
// installs it), or skips the test when the machine has none.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (apt-get install -y prometheus): the rules and the dashboard's queries are not checked")
	}
	return p
}

func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// TestAlertRules: the rules load, and each alert fires (and stays quiet)
// as its unit tests say.
func TestAlertRules(t *testing.T) {
	runPromtool(t, ".", "check", "rules", alertRules)
	runPromtool(t, filepath.Dir(alertTests), "test", "rules", filepath.Base(alertTests))
}

// dashboardPanel is what the test reads of a Grafana panel.
type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) []dashboardPanel {
	t.Helper()
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string           `json:"uid"`
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	if d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: no uid or no panels", dashboard)
	}
	return d.Panels
}

// dashboardQueries are the panels' PromQL expressions, with Grafana's
// variables replaced by values Prometheus accepts.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	var qs []string
	for _, p := range readDashboard(t) {
		for _, tg := range p.Targets {
			q := strings.NewReplacer("$__rate_interval", "5m", "$job", "redis-proxy", "$instance", ".*").Replace(tg.Expr)
			qs = append(qs, q)
		}
	}
	return qs
}

// TestDashboard: every panel is laid out on the grid, reads the
// dashboard's data source, and has queries promtool can parse.
func TestDashboard(t *testing.T) {
	ids := map[int]bool{}
	for _, p := range readDashboard(t) {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q, %d queries; want ${datasource} and at least one", p.Title, p.Datasource.UID, len(p.Targets))
		}
	}
	// promtool parses PromQL in rule files: each query becomes a
	// recording rule of a file of its own.
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range dashboardQueries(t) {
		b, _ := json.Marshal(q)
		fmt.Fprintf(&rules, "      - record: dashboard:query%d\n        expr: %s\n", i, b)
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, ".", "check", "rules", f)
}

// alertExprs are the expressions of the alert rules.
func alertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	// The rules' expr lines are one line each (checked: every alert has one).
	var exprs []string
	for _, l := range strings.Split(string(b), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "expr: "); ok {
			exprs = append(exprs, e)
		}
	}
	if n := strings.Count(string(b), "- alert: "); n != len(exprs) || n == 0 {
		t.Fatalf("%s: %d alerts, %d one-line expr", alertRules, n, len(exprs))
	}
	return exprs
}

var (
	metricName = regexp.MustCompile(`\b(?:redis_proxy|process|go)_[a-zA-Z0-9_]+`)
	selector   = regexp.MustCompile(`\b(redis_proxy_[a-zA-Z0-9_]+)\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// TestMonitoringNamesExported runs the binary as a pair member with TLS
// clients and a replica, so that every kind of metric exists, and checks
// that each metric the alert rules and the dashboard name is one it
// exports, and each label value they select on is one it has.
func TestMonitoringNamesExported(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t)
	replica.ReplicaOf(master)
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test CA")
	cert, key := ca.Issue(t, certtest.Options{}).Write(t, dir, "proxy")
	listen := freeAddr(t)
	pr := startBinary(t, map[string]string{
		"REDIS_PROXY_SERVERS":          master.Addr + "," + replica.Addr,
		"REDIS_PROXY_LISTEN":           listen,
		adminListenVar:                 freeAddr(t),
		"REDIS_PROXY_TLS_LISTEN":       freeAddr(t),
		"REDIS_PROXY_TLS_CERT_FILE":    cert,
		"REDIS_PROXY_TLS_KEY_FILE":     key,
		"REDIS_PROXY_PEERS":            "127.0.0.1:" + fmt.Sprint(redistest.FreePort(t)), // a peer that never answers: this node becomes MASTER
		"REDIS_PROXY_HEARTBEAT_PORT":   fmt.Sprint(redistest.FreePort(t)),
		"REDIS_PROXY_HEARTBEAT_SECRET": "monitoring-test-secret",
	})
	c, err := redis.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	c.Do("GET", "monitoring:k") // redis_proxy_commands_total has series once a command ran
	c.Close()

	names := map[string]bool{}
	values := map[string]map[string]map[string]bool{} // metric -> label -> values
	for _, l := range strings.Split(pr.get("/metrics"), "\n") {
		m := sampleLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		names[m[1]] = true
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			if values[m[1]] == nil {
				values[m[1]] = map[string]map[string]bool{}
			}
			if values[m[1]][lp[1]] == nil {
				values[m[1]][lp[1]] = map[string]bool{}
			}
			values[m[1]][lp[1]][lp[2]] = true
		}
	}
	for _, want := range []string{"redis_proxy_vip_master", "redis_proxy_replica_lag_bytes", "redis_proxy_tls_certificate_expiry_timestamp_seconds", "redis_proxy_commands_total"} {
		if !names[want] {
			t.Fatalf("the binary exports no %s: the test's set-up does not make every kind of metric", want)
		}
	}

	check := func(source string, exprs []string) {
		t.Helper()
		used := 0
		for _, e := range exprs {
			for _, n := range metricName.FindAllString(e, -1) {
				used++
				if !names[n] {
					t.Errorf("%s names %s, which the binary does not export: %s", source, n, e)
				}
			}
			for _, s := range selector.FindAllStringSubmatch(e, -1) {
				for _, m := range matcher.FindAllStringSubmatch(s[2], -1) {
					label, op, val := m[1], m[2], m[3]
					if label == "job" || label == "instance" || label == "pair" {
						continue // Prometheus's labels, not the binary's
					}
					have := values[s[1]][label]
					if have == nil {
						t.Errorf("%s selects %s on label %s, which it does not have: %s", source, s[1], label, e)
						continue
					}
					if op != "=" && op != "=~" {
						continue
					}
					for _, v := range strings.Split(val, "|") {
						if !have[v] {
							t.Errorf("%s selects %s{%s=%q}: the binary has %s values %v", source, s[1], label, v, label, slices.Sorted(mapKeys(have)))
						}
					}
				}
			}
		}
		if used == 0 {
			t.Errorf("%s: no metric names found", source)
		}
		t.Logf("%s: %d expressions, %d metric names checked", source, len(exprs), used)
	}
	check(alertRules, alertExprs(t))
	check(dashboard, dashboardQueries(t))
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
