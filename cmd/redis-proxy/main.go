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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redis-proxy/redis-proxy/proxy"
	"github.com/redis-proxy/redis-proxy/replication"
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
	case "run", "healthcheck", "status":
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
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "redis-proxy: %v\n", err)
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

	pcfg := cfg.proxyConfig(log)
	pcfg.Registerer = reg
	p, err := proxy.New(pcfg)
	if err != nil {
		return err
	}
	mgr, err := replication.NewManager(replication.Config{
		Servers:       cfg.Servers,
		CheckInterval: cfg.CheckInterval,
		DownAfter:     cfg.DownAfter,
		Username:      cfg.BackendUsername,
		Password:      cfg.BackendPassword,
		Authority:     true,
		Logger:        log.With("component", "replication"),
	}, p.SetTopology)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	var admin *http.Server
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin listen on %s: %w", cfg.AdminListen, err)
		}
		admin = &http.Server{Handler: adminHandler(p, mgr, reg), ReadHeaderTimeout: 5 * time.Second}
		go admin.Serve(aln)
	}
	log.Info("redis-proxy started", "listen", ln.Addr().String(), "admin", cfg.AdminListen,
		"servers", cfg.Servers, "read_from", cfg.ReadFrom, "pool_size", cfg.PoolSize)

	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Run(ctx) }()
	srvDone := make(chan error, 1)
	go func() { srvDone <- p.Serve(ln) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-srvDone:
		runErr = fmt.Errorf("serve clients: %w", err)
	case err := <-mgrDone:
		if err != nil && !errors.Is(err, context.Canceled) {
			runErr = fmt.Errorf("replication manager: %w", err)
		}
	}
	log.Info("redis-proxy stopping")
	p.Close()
	if admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		admin.Shutdown(sctx)
		cancel()
	}
	return runErr
}

// adminHandler serves /metrics, /healthz and /topology.
func adminHandler(p *proxy.Proxy, mgr *replication.Manager, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !p.Ready() {
			http.Error(w, "no master available", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /topology", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Routing     replication.Topology `json:"routing"`
			Replication replication.Status   `json:"replication"`
		}{p.Topology(), mgr.Status()})
	})
	return mux
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
