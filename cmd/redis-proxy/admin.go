package main

// The admin API (/metrics, /healthz, /topology, POST /switchover, /servers,
// and the console: /events and the status page, console.go) and the
// subcommands that call it (healthcheck, status, switchover, servers:
// members.go).
//
// Who may call it: adminPolicy.authorize decides each request from its
// method, path, TCP peer address and Authorization header, with no I/O;
// adminGuard wraps the whole mux with that decision, so a route added
// later is protected unless it is a GET (reads are open by default,
// REDIS_PROXY_ADMIN_PROTECT_READS closes them too, /healthz and the status
// page's shell excepted).

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redis-proxy/redis-proxy/proxy"
	"github.com/redis-proxy/redis-proxy/replication"
	"github.com/redis-proxy/redis-proxy/vip"
)

// adminPolicy is who may call the admin API.
type adminPolicy struct {
	// tokenHash is the SHA-256 of REDIS_PROXY_ADMIN_TOKEN when hasToken.
	// Comparing hashes in constant time reveals neither the token's
	// characters nor its length.
	tokenHash [sha256.Size]byte
	hasToken  bool
	// protectReads puts reads (GET, HEAD) other than /healthz under the
	// same rule as the state-changing requests.
	protectReads bool
}

func newAdminPolicy(token string, protectReads bool) adminPolicy {
	p := adminPolicy{protectReads: protectReads}
	if token != "" {
		p.tokenHash, p.hasToken = sha256.Sum256([]byte(token)), true
	}
	return p
}

// Reasons a request is refused: the label of redis_proxy_admin_refused_total.
const (
	refusedNoToken     = "no_token"     // 401: a token is configured and none was sent
	refusedBadToken    = "bad_token"    // 401: the token sent is not the configured one
	refusedNotLoopback = "not_loopback" // 403: no token is configured and the peer is not loopback
)

// verdict is authorize's decision; the zero verdict lets the request through.
type verdict struct {
	status int    // 401 or 403 when refused
	reason string // refusedNoToken, ...
	msg    string // the one-line JSON error's text
}

func (v verdict) allowed() bool { return v.status == 0 }

// authorize decides one admin request. peer is the TCP peer (never a
// header such as X-Forwarded-For, which any client can write); authz is
// the Authorization header. Reads (GET, HEAD) are open unless protectReads,
// and /healthz and the status page's shell (no data: it asks for the token)
// always are; everything else needs the bearer token when one is
// configured, and a loopback peer when none is. It performs no I/O.
func (p adminPolicy) authorize(method, path string, peer netip.Addr, authz string) verdict {
	read := method == http.MethodGet || method == http.MethodHead
	if read && (!p.protectReads || path == "/healthz" || isPageShell(path)) {
		return verdict{}
	}
	if !p.hasToken {
		if peer.Unmap().IsLoopback() {
			return verdict{}
		}
		return verdict{http.StatusForbidden, refusedNotLoopback,
			envPrefix + "_ADMIN_TOKEN is not set on this proxy: this request is accepted from loopback only"}
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(authz), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return verdict{http.StatusUnauthorized, refusedNoToken,
			"this request needs the admin token: Authorization: Bearer <" + envPrefix + "_ADMIN_TOKEN>"}
	}
	h := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(h[:], p.tokenHash[:]) != 1 {
		return verdict{http.StatusUnauthorized, refusedBadToken, "the admin token is not valid"}
	}
	return verdict{}
}

// peerAddr is the IP of a request's RemoteAddr, which net/http sets from
// the accepted connection; the zero Addr (not loopback) if it is not an
// IP:port.
func peerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// adminGuard applies an adminPolicy to every request of a handler, counts
// refusals, and logs them (at most one line every refusalLogEvery, with
// the number left out, so a flood of refused requests cannot flood the
// log).
type adminGuard struct {
	policy  atomic.Pointer[adminPolicy] // a reload may replace it (setPolicy)
	refused *prometheus.CounterVec
	log     *slog.Logger

	mu         sync.Mutex
	lastLog    time.Time
	suppressed int
}

const refusalLogEvery = 10 * time.Second

func newAdminGuard(policy adminPolicy, reg prometheus.Registerer, log *slog.Logger) *adminGuard {
	g := &adminGuard{log: log,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_proxy_admin_refused_total",
			Help: "Admin API requests refused: no_token and bad_token (401), not_loopback (403: no token configured).",
		}, []string{"reason"})}
	for _, r := range []string{refusedNoToken, refusedBadToken, refusedNotLoopback} {
		g.refused.WithLabelValues(r) // exported at 0 from the start
	}
	reg.MustRegister(g.refused)
	g.setPolicy(policy)
	return g
}

// setPolicy makes p the policy of the requests from now on.
func (g *adminGuard) setPolicy(p adminPolicy) { g.policy.Store(&p) }

// wrap returns next behind the policy. A refused request gets its status
// (401 with WWW-Authenticate: Bearer, or 403) and a one-line JSON error.
func (g *adminGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := peerAddr(r.RemoteAddr)
		v := g.policy.Load().authorize(r.Method, r.URL.Path, peer, r.Header.Get("Authorization"))
		if v.allowed() {
			next.ServeHTTP(w, r)
			return
		}
		g.refused.WithLabelValues(v.reason).Inc()
		g.noteRefusal(r, peer, v)
		switch v.reason {
		case refusedNoToken:
			w.Header().Set("WWW-Authenticate", `Bearer realm="redis-proxy"`)
		case refusedBadToken:
			w.Header().Set("WWW-Authenticate", `Bearer realm="redis-proxy", error="invalid_token"`)
		}
		writeJSONError(w, v.status, v.msg)
	})
}

func (g *adminGuard) noteRefusal(r *http.Request, peer netip.Addr, v verdict) {
	g.mu.Lock()
	now := time.Now()
	if !g.lastLog.IsZero() && now.Sub(g.lastLog) < refusalLogEvery {
		g.suppressed++
		g.mu.Unlock()
		return
	}
	n := g.suppressed
	g.lastLog, g.suppressed = now, 0
	g.mu.Unlock()
	g.log.Warn("admin request refused", "peer", peer.String(), "method", r.Method, "path", r.URL.Path,
		"status", v.status, "reason", v.reason, "not_logged_before", n)
}

// writeJSONError answers {"error": msg} on one line.
func writeJSONError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // "<REDIS_PROXY_ADMIN_TOKEN>" as written; the type is JSON, not HTML
	enc.Encode(map[string]string{"error": msg})
}

// adminHandler serves /metrics, /healthz, /topology, POST /switchover,
// /servers and the console's routes, every route behind guard. A route
// that changes anything must not be a GET: reads are what the guard may
// leave open.
func adminHandler(p *proxy.Proxy, mgr *replication.Manager, node *vip.Node, reg *prometheus.Registry, guard *adminGuard, con *console, ms *members) http.Handler {
	mux := http.NewServeMux()
	con.routes(mux)
	ms.routes(mux, p)
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
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, replication.ErrSwitchoverRefused) {
				code = http.StatusConflict
			}
			writeJSONError(w, code, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /topology", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		var pairState *pairStatus
		if node != nil {
			st := node.Stats()
			ps := pairStatus{Role: st.Role.String(), VIP: con.vipAddr, HoldsVIP: st.HoldsVIP, Healthy: st.Healthy, Priority: st.Priority,
				Epoch: st.Payload.Epoch, Master: st.Payload.Master, Transitions: st.Transitions,
				AdvertsSent: st.AdvertsSent, AdvertsReceived: st.AdvertsReceived, Rejected: map[string]uint64{}}
			for r, n := range st.Rejected {
				ps.Rejected[r.String()] = n
			}
			if peer, ok := node.Peer(); ok {
				ps.Peer = &peerStatus{Addr: peer.Addr.String(), Role: peer.Role.String(), Priority: peer.Priority,
					Healthy: peer.Healthy, Epoch: peer.Payload.Epoch, Master: peer.Payload.Master, HeardAt: peer.HeardAt,
					Hearing: time.Since(peer.HeardAt) < con.peerSilence}
			}
			pairState = &ps
		}
		var tr *traffic
		if con.traffic != nil {
			t := con.traffic.read(time.Now())
			tr = &t
		}
		enc.Encode(struct {
			Now         time.Time            `json:"now"`
			Routing     replication.Topology `json:"routing"`
			Replication replication.Status   `json:"replication"`
			Pair        *pairStatus          `json:"pair,omitempty"`
			Traffic     *traffic             `json:"traffic,omitempty"`
			Members     *membersStatus       `json:"members,omitempty"`
		}{time.Now(), p.Topology(), mgr.Status(), pairState, tr, membersStatusOf(ms)})
	})
	return secureHeaders(guard.wrap(mux))
}

// pairStatus is the election's part of /topology.
type pairStatus struct {
	Role            string            `json:"role"`
	VIP             string            `json:"vip,omitempty"` // the address the pair manages
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
	// Hearing: its adverts arrive (the newest younger than this node's
	// master-down interval). Only the proxy holding the VIP advertises.
	Hearing bool `json:"hearing"`
}

// ---- the subcommands ---------------------------------------------------------

// adminEnv is all the admin subcommands (healthcheck, status, switchover)
// read: where this node's admin API listens and its token. They need
// nothing else, so a container's other settings (or their absence) can
// neither be required by them nor stop them.
type adminEnv struct {
	Listen string // "": the admin API is disabled
	Token  string // sent as a bearer token when set
}

// loadAdminEnv reads REDIS_PROXY_ADMIN_LISTEN (unset: the default; set to
// the empty string: disabled, as for the server) and REDIS_PROXY_ADMIN_TOKEN
// or REDIS_PROXY_ADMIN_TOKEN_FILE.
func loadAdminEnv() (adminEnv, error) {
	var a adminEnv
	listen, ok := os.LookupEnv(adminListenVar)
	if !ok {
		f, _ := reflect.TypeOf(Config{}).FieldByName("AdminListen")
		listen = f.Tag.Get("default")
	}
	if err := checkAdminListen(listen); err != nil {
		return a, err
	}
	a.Listen = listen
	name := envPrefix + "_" + envName("AdminToken")
	a.Token = os.Getenv(name)
	if v, ok, err := secretFromFile(name); err != nil {
		return a, err
	} else if ok {
		a.Token = v
	}
	return a, nil
}

// checkAdminListen checks REDIS_PROXY_ADMIN_LISTEN: host:port, or empty
// (the admin API disabled).
func checkAdminListen(listen string) error {
	if listen != "" && checkHostPort(listen) != nil {
		return badVar("AdminListen", listen, accepts("AdminListen"))
	}
	return nil
}

// adminURL is where this node's admin API answers, from the address it
// listens on (a wildcard host means this machine, reached over loopback).
func adminURL(a adminEnv, path string) (string, error) {
	if a.Listen == "" {
		return "", &usageError{adminListenVar + " is set to the empty string: the admin API is disabled"}
	}
	host, port, _ := net.SplitHostPort(a.Listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// adminDo sends one request to this node's admin API, with the token.
func adminDo(a adminEnv, method, path string, timeout time.Duration) (*http.Response, error) {
	u, err := adminURL(a, path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return nil, err
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	c := &http.Client{Timeout: timeout}
	return c.Do(req)
}

// callAdmin is one subcommand's request to this node's admin API, with the
// token. On 200 the body goes to stdout and it returns 0; on another status
// the status and body go to stderr and it returns 1; when there was no
// answer it reports the error and returns 1, or 2 for a usage error (the
// admin API is disabled).
func callAdmin(a adminEnv, cmd, method, path string, timeout time.Duration, stdout, stderr io.Writer) int {
	resp, err := adminDo(a, method, path, timeout)
	if err != nil {
		fmt.Fprintf(stderr, "redis-proxy: %s: %v\n", cmd, err)
		var ue *usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "redis-proxy: %s: %s: %s", cmd, resp.Status, body)
		return 1
	}
	stdout.Write(body)
	return 0
}

func healthcheck(a adminEnv, stderr io.Writer) int {
	return callAdmin(a, "healthcheck", http.MethodGet, "/healthz", 2*time.Second, io.Discard, stderr)
}

func status(a adminEnv, stdout, stderr io.Writer) int {
	return callAdmin(a, "status", http.MethodGet, "/topology", 2*time.Second, stdout, stderr)
}

// switchover asks this node's admin API to move the master role to target
// (or, if empty, to the best replica) and prints the result.
func switchover(a adminEnv, target string, stdout, stderr io.Writer) int {
	return callAdmin(a, "switchover", http.MethodPost, "/switchover?target="+url.QueryEscape(target), 30*time.Second, stdout, stderr)
}
