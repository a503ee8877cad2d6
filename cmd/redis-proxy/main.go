// Command redis-proxy serves Redis clients on one address and routes them to
// the current master of a Redis replication group, which it also manages.
//
// Configuration comes from REDIS_PROXY_* environment variables; run
// `redis-proxy --help` for the table.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/redis-proxy/redis-proxy/internal/events"
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
	case "version", "-version", "--version":
		printVersion(stdout)
		return 0
	case "healthcheck", "status", "switchover", "servers", "reload":
		// These only call the admin API: they read its address and token,
		// not the whole configuration.
		a, err := loadAdminSettings(stderr)
		if err != nil {
			fmt.Fprintf(stderr, "redis-proxy: %v\n", err)
			return 2
		}
		switch cmd {
		case "healthcheck":
			return healthcheck(a, stderr)
		case "status":
			return status(a, stdout, stderr)
		case "servers":
			return serversCmd(a, args[1:], stdout, stderr)
		case "reload":
			return reloadCmd(a, stdout, stderr)
		}
		target := ""
		if len(args) > 1 {
			target = args[1]
		}
		return switchover(a, target, stdout, stderr)
	case "run":
	default:
		fmt.Fprintf(stderr, "redis-proxy: unknown command %q (try --help)\n", cmd)
		return 2
	}
	// SIGHUP reloads the configuration; caught from here on, so one sent
	// while the proxy starts waits for it instead of killing it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "redis-proxy: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serveFrom(ctx, cfg, stderr, loadConfig, hup); err != nil {
		fmt.Fprintf(stderr, "redis-proxy: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			return 2 // a value only a package's New could judge
		}
		return 1
	}
	return 0
}

// newLogger returns the process's logger, at the level of level (which a
// reload may change).
func newLogger(cfg Config, w io.Writer, level *slog.LevelVar) *slog.Logger {
	l, _ := cfg.logLevel()
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the proxy, the replication manager and the admin server until
// ctx is done, with cfg for all its life (no reload).
func serve(ctx context.Context, cfg Config, logw io.Writer) error {
	return serveFrom(ctx, cfg, logw, nil, nil)
}

// serveFrom is serve with reloads: each signal on hup, and each POST
// /reload, reads the configuration again with load and applies what can
// change (reload.go). With a nil load there are none.
func serveFrom(ctx context.Context, cfg Config, logw io.Writer, load func() (Config, error), hup <-chan os.Signal) error {
	level := new(slog.LevelVar)
	log := newLogger(cfg, logw, level)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(reg)

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
	mem, memSource, err := startMembership(cfg, log.With("component", "servers"))
	if err != nil {
		return err
	}
	rcfg.Servers = mem.Servers
	rcfg.Authority = node == nil // in a pair, only the VIP holder acts
	rcfg.Pauser = p
	rcfg.Busy = p // a master silent with a script of the proxy's in flight is busy, not down
	rcfg.Logger = log.With("component", "replication")
	rcfg.TLS = ts.backendTLS()
	history := events.NewRing(historySize)
	rcfg.OnEvent = func(e events.Event) { history.Add(e) }
	mgr, err := replication.NewManager(rcfg, p.SetTopology)
	if err != nil {
		return cfg.varError(err)
	}
	registerReplicationMetrics(reg, mgr)
	members := newMembers(cfg.StateDir, mem, memSource, mgr, node, log.With("component", "servers"))
	registerServerMetrics(reg, mgr)

	lns, err := cfg.listen(ts)
	if err != nil {
		return err
	}
	var rl *reloader
	if load != nil {
		rl = newReloader(cfg, load, reg, log.With("component", "reload"))
		rl.p, rl.level, rl.tls = p, level, ts
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
		guard := newAdminGuard(newAdminPolicy(cfg.AdminToken, cfg.AdminProtectReads), reg, log.With("component", "admin"))
		con := &console{history: history, traffic: newTrafficMeter(reg), vipAddr: cfg.VIP, stop: ctx.Done()}
		if vcfg != nil {
			con.peerSilence = vip.MasterDownInterval(vcfg.Priority, vcfg.Interval)
		}
		h := adminHandler(p, mgr, node, reg, guard, con, members)
		if rl != nil {
			rl.guard = guard
			h = rl.route(h, guard)
		}
		admin = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10}
		go admin.Serve(aln)
		if cfg.AdminToken == "" {
			log.Info("admin API: no " + envPrefix + "_ADMIN_TOKEN, so POST /switchover and other changes are accepted from loopback only")
		}
	}
	adminAddr := cfg.AdminListen
	if adminAddr == "" {
		adminAddr = "disabled"
	}
	log.Info("redis-proxy started", "listen", listenAddrs(lns), "admin", adminAddr, "admin_token", cfg.AdminToken != "",
		"servers", mem.Servers, "read_from", cfg.ReadFrom, "pool_size", cfg.PoolSize, "backend_tls", cfg.BackendTLS)
	ts.watch(ctx, cfg.TLSReloadInterval)
	registerTLSMetrics(reg, ts)
	if rl != nil && hup != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					rl.reload("SIGHUP") //nolint:errcheck // logged by reload
				}
			}
		}()
	}

	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Run(ctx) }()
	vipDone := make(chan error, 1)
	if node != nil {
		pr := &pair{node: node, mgr: mgr, members: members, log: log.With("component", "pair"), tick: cfg.CheckInterval,
			history: history, vipAddr: cfg.VIP, silence: vip.MasterDownInterval(vcfg.Priority, vcfg.Interval)}
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
		counter("redis_proxy_failovers_total", "Unplanned changes of master since this proxy started (planned ones: redis_proxy_switchovers_total).",
			func(s replication.Status) float64 { return float64(s.Failovers) }),
		counter("redis_proxy_switchovers_total", "Planned changes of master (switchovers) since this proxy started.",
			func(s replication.Status) float64 { return float64(s.Switchovers) }),
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
		gauge("redis_proxy_replicas_lagging", "Replicas of the master out of the read rotation because they trail it by more than MAX_REPLICA_LAG.",
			func(s replication.Status) float64 {
				n := 0
				for _, sv := range s.Servers {
					if sv.Lagging {
						n++
					}
				}
				return float64(n)
			}),
	)
}
