// Command redis-proxy serves Redis clients on one address and routes them to
// the current master of a Redis replication group, which it also manages.
//
// Configuration comes from REDIS_PROXY_* environment variables; run
// `redis-proxy --help` for the table.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redis-proxy/redis-proxy/proxy"
	"github.com/redis-proxy/redis-proxy/replication"
	"github.com/redis-proxy/redis-proxy/vip"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its outputs and exit code made explicit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "-h", "--help", "-help", "help":
		printUsage(stdout)
		return 0
	case "run", "healthcheck", "status", "switchover":
	default:
		fmt.Fprintf(stderr, "redis-proxy: unknown command %q (try --help)\n", cmd)
		return 2
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "redis-proxy: %v\n", err)
		return 2
	}
	switch cmd {
	case "healthcheck":
		return healthcheck(cfg, stderr)
	case "status":
		return status(cfg, stdout, stderr)
	case "switchover":
		target := ""
		if len(args) > 1 {
			target = args[1]
		}
		return switchover(cfg, target, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "redis-proxy: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			return 2 // a value only a package's New could judge
		}
		return 1
	}
	return 0
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	level, _ := cfg.logLevel()
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the proxy, the replication manager and the admin server until
// ctx is done.
func serve(ctx context.Context, cfg Config, logw io.Writer) error {
	log := newLogger(cfg, logw)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ts, err := cfg.loadTLS(log)
	if err != nil {
		return err
	}
	pcfg := cfg.proxyConfig(log)
	pcfg.Registerer = reg
	pcfg.BackendTLS = ts.backendTLS()
	p, err := proxy.New(pcfg)
	if err != nil {
		return cfg.varError(err)
	}
	vcfg, err := cfg.pairConfig()
	if err != nil {
		return err
	}
	var node *vip.Node
	if vcfg != nil {
		if node, err = vip.New(*vcfg, log.With("component", "vip")); err != nil {
			// A field error (no such interface) names its variable; the
			// others name themselves ("vip needs capabilities ...").
			return cfg.varError(err)
		}
		registerPairMetrics(reg, node)
	}
	rcfg := cfg.replicationConfig()
	rcfg.Authority = node == nil // in a pair, only the VIP holder acts
	rcfg.Pauser = p
	rcfg.Logger = log.With("component", "replication")
	rcfg.TLS = ts.backendTLS()
	mgr, err := replication.NewManager(rcfg, p.SetTopology)
	if err != nil {
		return cfg.varError(err)
	}
	registerReplicationMetrics(reg, mgr)

	lns, err := cfg.listen(ts)
	if err != nil {
		return err
	}
	var admin *http.Server
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return fmt.Errorf("admin listen on %s: %w", cfg.AdminListen, err)
		}
		admin = &http.Server{Handler: adminHandler(p, mgr, node, reg), ReadHeaderTimeout: 5 * time.Second}
		go admin.Serve(aln)
	}
	log.Info("redis-proxy started", "listen", listenAddrs(lns), "admin", cfg.AdminListen,
		"servers", cfg.Servers, "read_from", cfg.ReadFrom, "pool_size", cfg.PoolSize, "backend_tls", cfg.BackendTLS)
	ts.watch(ctx, cfg.TLSReloadInterval)

	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Run(ctx) }()
	vipDone := make(chan error, 1)
	if node != nil {
		pr := &pair{node: node, mgr: mgr, log: log.With("component", "pair"), tick: cfg.CheckInterval}
		go pr.run(ctx)
		// On SIGTERM the node advertises priority 0 and releases the VIP
		// before Run returns, so the peer takes over after its skew only.
		go func() { vipDone <- node.Run(ctx) }()
	}
	srvDone := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { srvDone <- p.Serve(ln) }()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-srvDone:
		runErr = fmt.Errorf("serve clients: %w", err)
	case err := <-mgrDone:
		if err != nil && !errors.Is(err, context.Canceled) {
			runErr = fmt.Errorf("replication manager: %w", err)
		}
	case err := <-vipDone:
		runErr = fmt.Errorf("vip: %w", err)
	}
	log.Info("redis-proxy stopping")
	if node != nil && runErr == nil {
		// ctx is done: wait (bounded) for the VIP to be released.
		select {
		case err := <-vipDone:
			if err != nil {
				log.Warn("vip release", "err", err)
			}
		case <-time.After(2 * time.Second):
			log.Warn("vip release timed out")
		}
	}
	p.Close()
	if admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		admin.Shutdown(sctx)
		cancel()
	}
	return runErr
}

// adminHandler serves /metrics, /healthz and /topology.
func adminHandler(p *proxy.Proxy, mgr *replication.Manager, node *vip.Node, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !p.Ready() {
			http.Error(w, "no master available", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("POST /switchover", func(w http.ResponseWriter, r *http.Request) {
		target := r.URL.Query().Get("target")
		res, err := mgr.Switchover(r.Context(), target)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, replication.ErrSwitchoverRefused) {
				code = http.StatusConflict
			}
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /topology", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		var pairState *pairStatus
		if node != nil {
			st := node.Stats()
			ps := pairStatus{Role: st.Role.String(), HoldsVIP: st.HoldsVIP, Healthy: st.Healthy, Priority: st.Priority,
				Epoch: st.Payload.Epoch, Master: st.Payload.Master, Transitions: st.Transitions,
				AdvertsSent: st.AdvertsSent, AdvertsReceived: st.AdvertsReceived, Rejected: map[string]uint64{}}
			for r, n := range st.Rejected {
				ps.Rejected[r.String()] = n
			}
			if peer, ok := node.Peer(); ok {
				ps.Peer = &peerStatus{Addr: peer.Addr.String(), Role: peer.Role.String(), Priority: peer.Priority,
					Healthy: peer.Healthy, Epoch: peer.Payload.Epoch, Master: peer.Payload.Master, HeardAt: peer.HeardAt}
			}
			pairState = &ps
		}
		enc.Encode(struct {
			Routing     replication.Topology `json:"routing"`
			Replication replication.Status   `json:"replication"`
			Pair        *pairStatus          `json:"pair,omitempty"`
		}{p.Topology(), mgr.Status(), pairState})
	})
	return mux
}

// pairStatus is the election's part of /topology.
type pairStatus struct {
	Role            string            `json:"role"`
	HoldsVIP        bool              `json:"holds_vip"`
	Healthy         bool              `json:"healthy"`
	Priority        uint8             `json:"priority"`
	Epoch           uint64            `json:"advertised_epoch"`
	Master          string            `json:"advertised_master"`
	Transitions     uint64            `json:"transitions"`
	AdvertsSent     uint64            `json:"adverts_sent"`
	AdvertsReceived uint64            `json:"adverts_received"`
	Rejected        map[string]uint64 `json:"adverts_rejected"`
	Peer            *peerStatus       `json:"peer,omitempty"`
}

// peerStatus is the latest advert heard from the other proxy.
type peerStatus struct {
	Addr     string    `json:"addr"`
	Role     string    `json:"role"`
	Priority uint8     `json:"priority"`
	Healthy  bool      `json:"healthy"`
	Epoch    uint64    `json:"epoch"`
	Master   string    `json:"master"`
	HeardAt  time.Time `json:"heard_at"`
}

// adminURL is where this node's admin API answers, from the address it
// listens on (a wildcard host means this machine).
func adminURL(cfg Config, path string) (string, error) {
	if cfg.AdminListen == "" {
		return "", &usageError{envPrefix + "_ADMIN_LISTEN is empty: the admin API is disabled"}
	}
	host, port, _ := net.SplitHostPort(cfg.AdminListen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

func adminGet(cfg Config, path string) (*http.Response, error) {
	u, err := adminURL(cfg, path)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: 2 * time.Second}
	return c.Get(u)
}

func healthcheck(cfg Config, stderr io.Writer) int {
	resp, err := adminGet(cfg, "/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "redis-proxy: healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		fmt.Fprintf(stderr, "redis-proxy: healthcheck: %s: %s", resp.Status, b)
		return 1
	}
	return 0
}

func status(cfg Config, stdout, stderr io.Writer) int {
	resp, err := adminGet(cfg, "/topology")
	if err != nil {
		fmt.Fprintf(stderr, "redis-proxy: status: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	io.Copy(stdout, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

// switchover asks this node's admin API to move the master role to target
// (or, if empty, to the best replica) and prints the result.
func switchover(cfg Config, target string, stdout, stderr io.Writer) int {
	u, err := adminURL(cfg, "/switchover?target="+url.QueryEscape(target))
	if err != nil {
		fmt.Fprintf(stderr, "redis-proxy: switchover: %v\n", err)
		return 2
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post(u, "", nil)
	if err != nil {
		fmt.Fprintf(stderr, "redis-proxy: switchover: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "redis-proxy: switchover: %s: %s", resp.Status, body)
		return 1
	}
	stdout.Write(body)
	return 0
}

// registerReplicationMetrics exports the manager's view at scrape time.
func registerReplicationMetrics(reg prometheus.Registerer, mgr *replication.Manager) {
	gauge := func(name, help string, f func(replication.Status) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(mgr.Status()) })
	}
	counter := func(name, help string, f func(replication.Status) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(mgr.Status()) })
	}
	reg.MustRegister(
		gauge("redis_proxy_replication_epoch", "Promotions made by this deployment (the epoch of the current master).",
			func(s replication.Status) float64 { return float64(s.Epoch) }),
		counter("redis_proxy_failovers_total", "Changes of master since this proxy started.",
			func(s replication.Status) float64 { return float64(s.Failovers) }),
		counter("redis_proxy_failover_lost_bytes_total", "Replication bytes a returning old master had that the new master never got (writes lost to failovers).",
			func(s replication.Status) float64 { return float64(s.LostBytes) }),
		gauge("redis_proxy_replication_authority", "1 when this node may change the replication topology.",
			func(s replication.Status) float64 {
				if s.Authority {
					return 1
				}
				return 0
			}),
		gauge("redis_proxy_servers_up", "Configured or discovered Redis servers answering checks.",
			func(s replication.Status) float64 {
				n := 0
				for _, sv := range s.Servers {
					if sv.Up {
						n++
					}
				}
				return float64(n)
			}),
	)
}
