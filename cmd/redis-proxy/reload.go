package main

// Reload: SIGHUP and POST /reload read the configuration again (the
// environment, REDIS_PROXY_CONFIG_FILE, the secrets' files, the TLS files),
// validate all of it as at startup, and apply what a running proxy can
// change without dropping a client. A bad value changes nothing; a
// changed value that needs a restart is named, and kept as it was.

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/internal/tlsfiles"
	"github.com/redis-proxy/redis-proxy/proxy"
)

// ownReloadable are the variables (Config fields) that serve itself
// applies at a reload. The proxy package's are those whose every field
// proxy.Reloadable accepts (reloadableVar).
var ownReloadable = []string{"LogLevel", "AdminToken", "AdminProtectReads"}

// reloadableVar reports whether a reload applies the variable of field.
// A variable that also feeds another package (BACKEND_PASSWORD: the pools
// and the replication manager) is reloadable only if every use of it is.
func reloadableVar(field string) bool {
	if slices.Contains(ownReloadable, field) {
		return true
	}
	used := false
	for pf, f := range fieldVars {
		if f != field {
			continue
		}
		if pf.pkg != "proxy" || !proxy.Reloadable(pf.field) {
			return false
		}
		used = true
	}
	return used
}

// configDiff is what differs between two configurations, by field: those a
// reload applies and those that need a restart, in the order of Config.
type configDiff struct {
	apply, restart []string
}

// diffConfig compares the configuration in force with the one read again.
// It performs no I/O.
func diffConfig(cur, next Config) configDiff {
	var d configDiff
	cv, nv := reflect.ValueOf(cur), reflect.ValueOf(next)
	for i := 0; i < cv.NumField(); i++ {
		if reflect.DeepEqual(cv.Field(i).Interface(), nv.Field(i).Interface()) {
			continue
		}
		f := cv.Type().Field(i).Name
		if reloadableVar(f) {
			d.apply = append(d.apply, f)
		} else {
			d.restart = append(d.restart, f)
		}
	}
	return d
}

// describe names each field's variable for a log line: a secret by its
// name alone, another with its old and new values.
func describe(cur, next Config, fields []string) []string {
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		name := envPrefix + "_" + envName(f)
		sf, _ := reflect.TypeOf(cur).FieldByName(f)
		if sf.Tag.Get("secret") == "true" {
			out = append(out, name+" (secret)")
			continue
		}
		out = append(out, fmt.Sprintf("%s=%q (was %q)", name, valueString(next, f), valueString(cur, f)))
	}
	return out
}

func valueString(c Config, field string) string {
	v := reflect.ValueOf(c).FieldByName(field).Interface()
	switch x := v.(type) {
	case []string:
		return fmt.Sprint(x)
	case ByteSize:
		return fmt.Sprint(int64(x))
	}
	return fmt.Sprint(v)
}

func varNames(fields []string) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = envPrefix + "_" + envName(f)
	}
	return out
}

// reloadResult is POST /reload's answer: the variables applied and those
// that changed but need a restart (they keep their old values until then).
type reloadResult struct {
	Changed       []string `json:"changed"`
	RestartNeeded []string `json:"restart_needed"`
}

// reloader re-reads and applies the configuration. Its reloads are
// serialised.
type reloader struct {
	load  func() (Config, error)
	p     *proxy.Proxy
	guard *adminGuard // nil without the admin API
	level *slog.LevelVar
	tls   tlsSetup
	log   *slog.Logger

	reloads  *prometheus.CounterVec
	lastOK   prometheus.Gauge
	lastTime prometheus.Gauge
	pending  prometheus.Gauge

	mu  sync.Mutex
	cur Config // in force: what the process started with, and the reloads applied since
}

func newReloader(cfg Config, load func() (Config, error), reg prometheus.Registerer, log *slog.Logger) *reloader {
	r := &reloader{load: load, cur: cfg, log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_proxy_config_reloads_total",
			Help: "Configuration reloads (SIGHUP, POST /reload), by result: ok, or error (a bad value: nothing changed).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_proxy_config_last_reload_successful",
			Help: "1 if the last configuration reload was applied (or none was tried), 0 if it was refused.",
		}),
		lastTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_proxy_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last read successfully (the start, or the last reload applied), as Unix time.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_proxy_config_restart_pending",
			Help: "Variables whose new value a reload read but could not apply: they take effect at the next restart.",
		}),
	}
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("error")
	r.lastOK.Set(1)
	r.lastTime.Set(float64(time.Now().UnixNano()) / 1e9)
	reg.MustRegister(r.reloads, r.lastOK, r.lastTime, r.pending)
	return r
}

// reload reads the configuration again and applies it; trigger says who
// asked (SIGHUP, POST /reload) for the log. On error nothing changed.
func (r *reloader) reload(trigger string) (reloadResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, err := r.reloadLocked()
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		r.lastOK.Set(0)
		r.log.Warn("configuration not reloaded; nothing changed", "trigger", trigger, "err", err)
		return res, err
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.lastOK.Set(1)
	r.lastTime.Set(float64(time.Now().UnixNano()) / 1e9)
	r.pending.Set(float64(len(res.RestartNeeded)))
	return res, nil
}

func (r *reloader) reloadLocked() (reloadResult, error) {
	res := reloadResult{Changed: []string{}, RestartNeeded: []string{}}
	next, err := r.load() // validated as at startup
	if err != nil {
		return res, err
	}
	// The TLS files are read again by their stores; first check that
	// what they hold now is usable, so that a bad file refuses the whole
	// reload. (Their paths need a restart.)
	if _, err := r.cur.loadTLS(slog.New(slog.DiscardHandler)); err != nil {
		return res, err
	}
	d := diffConfig(r.cur, next)
	if slices.ContainsFunc(d.apply, func(f string) bool { return !slices.Contains(ownReloadable, f) }) {
		if _, err := r.p.Reload(next.proxyConfig(r.log)); err != nil {
			return res, next.varError(err) // next passed Validate: not expected
		}
	}
	applied := r.cur
	av, nv := reflect.ValueOf(&applied).Elem(), reflect.ValueOf(next)
	for _, f := range d.apply {
		av.FieldByName(f).Set(nv.FieldByName(f))
	}
	if applied.LogLevel != r.cur.LogLevel {
		l, _ := applied.logLevel()
		r.level.Set(l)
	}
	if r.guard != nil && (applied.AdminToken != r.cur.AdminToken || applied.AdminProtectReads != r.cur.AdminProtectReads) {
		r.guard.setPolicy(newAdminPolicy(applied.AdminToken, applied.AdminProtectReads))
	}
	var tlsReloaded []string
	for _, st := range []struct {
		name string
		s    *tlsfiles.Store
	}{{"clients", r.tls.clients}, {"backend", r.tls.backend}} {
		if st.s == nil {
			continue
		}
		if changed, err := st.s.Reload(); err != nil {
			r.log.Warn("TLS files not reloaded", "tls", st.name, "err", err)
		} else if changed {
			tlsReloaded = append(tlsReloaded, st.name)
		}
	}
	old := r.cur
	r.cur = applied
	res.Changed = append(res.Changed, varNames(d.apply)...)
	res.RestartNeeded = append(res.RestartNeeded, varNames(d.restart)...)
	r.log.Info("configuration reloaded", "changed", describe(old, next, d.apply), "tls_reloaded", tlsReloaded)
	if len(d.restart) > 0 {
		r.log.Warn("settings changed that need a restart; they keep their old values until then",
			"restart_needed", describe(old, next, d.restart))
	}
	return res, nil
}

// serveHTTP is POST /reload: 200 with the reloadResult, or 400 with the
// error (nothing changed).
func (r *reloader) serveHTTP(w http.ResponseWriter, _ *http.Request) {
	res, err := r.reload("POST /reload")
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// route adds POST /reload, behind guard, to the admin handler h.
func (r *reloader) route(h http.Handler, guard *adminGuard) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /reload", guard.wrap(http.HandlerFunc(r.serveHTTP)))
	mux.Handle("/", h)
	return mux
}

// reloadCmd is `redis-proxy reload`: POST /reload to this node's admin API,
// printing what changed.
func reloadCmd(a adminEnv, stdout, stderr io.Writer) int {
	return callAdmin(a, "reload", http.MethodPost, "/reload", 30*time.Second, stdout, stderr)
}
