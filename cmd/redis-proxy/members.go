package main

// The membership: which Redis servers this proxy manages, changed at run
// time through the admin API (GET/POST /servers, DELETE /servers/{addr})
// and the `servers` subcommand.
//
// Where it lives and why (docs/operations.md: "Adding and removing
// servers"):
//
//   - A versioned list. REDIS_PROXY_SERVERS is version 0. Every change adds
//     one to the version; a change is made only by the node with
//     authority (standalone, or the VIP holder of a pair).
//   - Each proxy keeps its list in REDIS_PROXY_STATE_DIR/servers.json,
//     written atomically (a temporary file, fsync, rename, fsync of the
//     directory) before the change takes effect. On start a state file, if
//     any, is used instead of REDIS_PROXY_SERVERS, and the log says so.
//     Without a state directory changes are refused: they would be undone
//     by the next restart.
//   - The pair agrees through the heartbeat: the holder's adverts carry its
//     list (authenticated by the same HMAC, bounded to one datagram), and a
//     node adopts a peer's list with a higher version, or one of the same
//     version that differs while it does not hold the VIP (the holder
//     wins), and persists it. A node that takes the VIP over adopts the
//     previous holder's list (its last advert) by the same rule, as if it
//     were still the standby, before it is given authority.
//   - Not Redis: its keys are writable by every client of the proxy, which
//     must not be able to choose the servers the proxy trusts.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy"
	"github.com/redis-proxy/redis-proxy/replication"
	"github.com/redis-proxy/redis-proxy/vip"
)

// membership is the list of servers with the version that orders changes.
type membership struct {
	Version uint64   `json:"version"`
	Servers []string `json:"servers"`
}

func (m membership) equal(o membership) bool {
	return m.Version == o.Version && slices.Equal(m.Servers, o.Servers)
}

// membersError is a refusal with the HTTP status the admin API answers.
type membersError struct {
	code int
	msg  string
}

func (e *membersError) Error() string { return e.msg }

func refuse(code int, format string, args ...any) error {
	return &membersError{code: code, msg: fmt.Sprintf(format, args...)}
}

// checkMembership reports what is wrong with a list a change or a peer
// would give: what the replication manager accepts (host:port, each once,
// at least one), and what an advert can carry.
func checkMembership(m membership) error {
	if len(m.Servers) == 0 {
		return errors.New("no servers")
	}
	for i, s := range m.Servers {
		if err := replication.ValidateAddr(s); err != nil {
			return err
		}
		if strings.ContainsAny(s, ", ") {
			return fmt.Errorf("%q holds a comma or a space", s)
		}
		if slices.Contains(m.Servers[:i], s) {
			return fmt.Errorf("%q is listed twice", s)
		}
	}
	if err := (vip.Membership{Version: max(m.Version, 1), Servers: m.Servers}).Check(); err != nil {
		return fmt.Errorf("too many servers for the pair's heartbeat: %w", err)
	}
	return nil
}

// withServer is m with addr added at the end, one version later.
func withServer(m membership, addr string) (membership, error) {
	if slices.Contains(m.Servers, addr) {
		return m, refuse(http.StatusConflict, "%s is already one of the servers", addr)
	}
	next := membership{Version: m.Version + 1, Servers: append(slices.Clone(m.Servers), addr)}
	if err := checkMembership(next); err != nil {
		return m, refuse(http.StatusBadRequest, "cannot add %q: %v", addr, err)
	}
	return next, nil
}

// withoutServer is m with addr removed, one version later.
func withoutServer(m membership, addr string) (membership, error) {
	i := slices.Index(m.Servers, addr)
	if i < 0 {
		return m, refuse(http.StatusNotFound, "%s is not one of the servers %s", addr, strings.Join(m.Servers, ","))
	}
	if len(m.Servers) == 1 {
		return m, refuse(http.StatusConflict, "%s is the only server: add another one first", addr)
	}
	return membership{Version: m.Version + 1, Servers: slices.Delete(slices.Clone(m.Servers), i, i+1)}, nil
}

// shouldAdopt decides whether a node holding own adopts peer, the list the
// other proxy advertised: a higher version always; the same version with
// other servers only when keep is false. The two made different changes
// under the same version (one active while the other was down or cut off):
// the active proxy keeps its own (keep), the standby takes the active
// one's, and so does a node taking the VIP over from the one that held it
// until then. Version 0 (REDIS_PROXY_SERVERS, never changed) is never
// adopted.
func shouldAdopt(own, peer membership, keep bool) bool {
	switch {
	case peer.Version == 0 || peer.Version < own.Version:
		return false
	case peer.Version > own.Version:
		return true
	}
	return !keep && !slices.Equal(own.Servers, peer.Servers)
}

// ---- the state file ----------------------------------------------------------

// membershipFile is the state file's name in REDIS_PROXY_STATE_DIR.
const membershipFile = "servers.json"

// stateRecord is the state file's content.
type stateRecord struct {
	Version   uint64    `json:"version"`
	Servers   []string  `json:"servers"`
	Change    string    `json:"change"` // what made this version
	UpdatedAt time.Time `json:"updated_at"`
}

// prepareStateDir creates dir if needed and checks that a file can be
// written in it, so a read-only or missing volume is found at start, not at
// the first change.
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &usageError{fmt.Sprintf("%s_STATE_DIR=%q: %v", envPrefix, dir, err)}
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &usageError{fmt.Sprintf("%s_STATE_DIR=%q: cannot write in it: %v", envPrefix, dir, err)}
	}
	f.Close()
	return os.Remove(f.Name())
}

// loadMembership reads dir's state file; ok is false when there is none.
func loadMembership(dir string) (m membership, rec stateRecord, ok bool, err error) {
	path := filepath.Join(dir, membershipFile)
	b, err := readSmallFile(path, 1<<20)
	if errors.Is(err, os.ErrNotExist) {
		return m, rec, false, nil
	}
	if err != nil {
		return m, rec, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return m, rec, false, fmt.Errorf("%s is not a state file (%v): move it away to start from %s_SERVERS", path, err, envPrefix)
	}
	m = membership{Version: rec.Version, Servers: rec.Servers}
	if err := checkMembership(m); err != nil || m.Version == 0 {
		return m, rec, false, fmt.Errorf("%s holds no valid list of servers (version %d: %v): move it away to start from %s_SERVERS",
			path, m.Version, err, envPrefix)
	}
	return m, rec, true, nil
}

// saveMembership writes dir's state file so that a crash at any moment
// leaves the old file or the new one, whole: a temporary file in the same
// directory, synced, renamed over the old one, and the directory synced.
func saveMembership(dir string, m membership, change string) error {
	b, err := json.MarshalIndent(stateRecord{Version: m.Version, Servers: m.Servers, Change: change, UpdatedAt: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, membershipFile), append(b, '\n'))
}

func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil // renamed; only the directory's durability is in doubt
	}
	defer d.Close()
	d.Sync()
	return nil
}

// ---- the controller ----------------------------------------------------------

// members is this proxy's membership: the admin API changes it (with
// authority), the pair loop adopts the peer's, and every change goes
// through the replication manager, which refuses what it must (removing
// the master) before the change is persisted.
type members struct {
	dir  string // REDIS_PROXY_STATE_DIR; "" when changes are refused
	mgr  *replication.Manager
	node *vip.Node // nil when standalone
	log  *slog.Logger

	mu sync.Mutex // one change or adoption at a time; held while the manager decides

	state  sync.Mutex // guards cur and source, for readers that must not wait on a change
	cur    membership
	source string // where cur came from, for GET /servers

	adopting atomic.Bool // an adoption runs in the background
	warned   atomic.Uint64
}

// startMembership decides the membership a proxy starts with: its state
// file if there is one, else REDIS_PROXY_SERVERS (version 0); and logs
// which.
func startMembership(cfg Config, log *slog.Logger) (membership, string, error) {
	env := membership{Servers: slices.Clone(cfg.Servers)}
	if cfg.StateDir == "" {
		log.Info("servers from "+envPrefix+"_SERVERS; no "+envPrefix+"_STATE_DIR, so changes to them at run time are refused",
			"servers", env.Servers)
		return env, envPrefix + "_SERVERS", nil
	}
	if err := prepareStateDir(cfg.StateDir); err != nil {
		return env, "", err
	}
	m, rec, ok, err := loadMembership(cfg.StateDir)
	if err != nil {
		return env, "", err
	}
	if !ok {
		log.Info("servers from "+envPrefix+"_SERVERS (no state file yet)", "servers", env.Servers,
			"state_file", filepath.Join(cfg.StateDir, membershipFile))
		return env, envPrefix + "_SERVERS", nil
	}
	path := filepath.Join(cfg.StateDir, membershipFile)
	log.Info("servers from the state file, not "+envPrefix+"_SERVERS", "state_file", path, "version", m.Version,
		"servers", m.Servers, "change", rec.Change, "updated_at", rec.UpdatedAt)
	if !slices.Equal(m.Servers, env.Servers) {
		log.Warn(envPrefix+"_SERVERS differs from the state file and is not used (remove the file to start from it)",
			"env_servers", env.Servers, "state_file", path)
	}
	return m, "state file " + path, nil
}

func newMembers(dir string, cur membership, source string, mgr *replication.Manager, node *vip.Node, log *slog.Logger) *members {
	ms := &members{dir: dir, mgr: mgr, node: node, log: log, cur: cur, source: source}
	ms.advertise(cur)
	return ms
}

func (ms *members) get() (membership, string) {
	ms.state.Lock()
	defer ms.state.Unlock()
	return membership{Version: ms.cur.Version, Servers: slices.Clone(ms.cur.Servers)}, ms.source
}

// set records m, from source, as this node's membership and advertises it.
// The caller holds mu.
func (ms *members) set(m membership, source string) {
	ms.state.Lock()
	ms.cur, ms.source = m, source
	ms.state.Unlock()
	ms.advertise(m)
}

// advertise puts m in this node's adverts (a pair only; version 0 is not
// sent).
func (ms *members) advertise(m membership) {
	if ms.node == nil || m.Version == 0 {
		return
	}
	if err := ms.node.SetMembership(vip.Membership{Version: m.Version, Servers: m.Servers}); err != nil {
		ms.log.Warn("membership not advertised", "err", err) // not reached: checkMembership bounds it
	}
}

// mayChange says why this node may not change the membership, or nil.
func (ms *members) mayChange() error {
	if ms.node != nil && !ms.node.IsMaster() {
		active := "the other proxy of the pair, once it is active"
		if p, ok := ms.node.Peer(); ok && p.Role == vip.Master {
			active = "the other proxy of the pair, " + p.Addr.String() + " (its admin API), which is active"
		}
		return refuse(http.StatusConflict, "this proxy is not the active one of the pair (it is %s, without the VIP): servers are added and removed on %s; this proxy follows its list",
			ms.node.Role(), active)
	}
	if ms.dir == "" {
		return refuse(http.StatusConflict, "changes to the servers are refused: %s_STATE_DIR is not set on this proxy, so a change would be undone by its next restart", envPrefix)
	}
	return nil
}

// change applies op to the membership on the operator's behalf.
func (ms *members) change(ctx context.Context, op func(membership) (membership, error), what string) (membership, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if err := ms.mayChange(); err != nil {
		return ms.cur, err
	}
	next, err := op(ms.cur)
	if err != nil {
		return ms.cur, err
	}
	err = ms.mgr.SetServers(ctx, next.Servers, func() error { return saveMembership(ms.dir, next, what) })
	switch {
	case errors.Is(err, replication.ErrServersRefused):
		return ms.cur, refuse(http.StatusConflict, "%s", err.Error())
	case err != nil:
		return ms.cur, refuse(http.StatusInternalServerError, "%s: %v", what, err)
	}
	ms.set(next, "changed at run time: "+what)
	ms.log.Info("servers changed", "change", what, "version", next.Version, "servers", next.Servers)
	return next, nil
}

// offer hands the pair loop's latest peer advert to adoption, in the
// background: the pair loop must not wait on the replication manager.
// holder: this node is active (its list stands at an equal version).
func (ms *members) offer(peer vip.PeerInfo, holder bool) {
	if !ms.adopting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer ms.adopting.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ms.adopt(ctx, peer, holder)
	}()
}

// adopt makes the peer's list this node's if shouldAdopt says so (keep:
// this node's list stands at an equal version). It returns at once when a
// change is in progress (the next advert will do).
func (ms *members) adopt(ctx context.Context, peer vip.PeerInfo, keep bool) {
	if !ms.mu.TryLock() {
		return
	}
	defer ms.mu.Unlock()
	pm := membership{Version: peer.Membership.Version, Servers: peer.Membership.Servers}
	if !shouldAdopt(ms.cur, pm, keep) {
		return
	}
	if err := checkMembership(pm); err != nil {
		if ms.warned.Swap(pm.Version) != pm.Version {
			ms.log.Warn("peer's servers not adopted: invalid", "peer", peer.Addr, "version", pm.Version, "err", err)
		}
		return
	}
	what := fmt.Sprintf("adopted version %d from the peer %s", pm.Version, peer.Addr)
	var commit func() error
	if ms.dir != "" {
		commit = func() error { return saveMembership(ms.dir, pm, what) }
	}
	if err := ms.mgr.SetServers(ctx, pm.Servers, commit); err != nil {
		if ms.warned.Swap(pm.Version) != pm.Version {
			ms.log.Warn("peer's servers not adopted yet (retried with each advert)", "peer", peer.Addr, "version", pm.Version,
				"servers", pm.Servers, "err", err)
		}
		return
	}
	prev := ms.cur
	ms.set(pm, what)
	ms.log.Info("servers adopted from the peer", "peer", peer.Addr, "version", pm.Version, "servers", pm.Servers,
		"previous_version", prev.Version, "previous_servers", prev.Servers, "persisted", ms.dir != "")
}

// ---- the admin API -----------------------------------------------------------

// serversView is GET /servers and the answer to a change.
type serversView struct {
	Version   uint64         `json:"version"`
	Servers   []string       `json:"servers"`
	Source    string         `json:"source"`
	StateFile string         `json:"state_file,omitempty"`
	MayChange bool           `json:"may_change"`        // this node takes changes (else: why_not)
	WhyNot    string         `json:"why_not,omitempty"` // why this node refuses changes
	Peer      *peerMembers   `json:"peer,omitempty"`
	Status    []serverRecord `json:"status"`
}

type peerMembers struct {
	Addr    string   `json:"addr"`
	Role    string   `json:"role"`
	Version uint64   `json:"version"`
	Servers []string `json:"servers"`
}

// serverRecord is one server as the replication manager sees it.
type serverRecord struct {
	Addr string `json:"addr"`
	Up   bool   `json:"up"`
	Role string `json:"role,omitempty"`
	// Joining: added and not caught up with the master yet (no reads).
	Joining bool `json:"joining,omitempty"`
	// ServesReads: a published replica, which gets reads with
	// READ_FROM=replicas.
	ServesReads bool   `json:"serves_reads,omitempty"`
	LinkUp      bool   `json:"link_up,omitempty"`
	LagBytes    int64  `json:"lag_bytes,omitempty"`
	Error       string `json:"error,omitempty"`
}

func (ms *members) view(p *proxy.Proxy) serversView {
	m, source := ms.get()
	v := serversView{Version: m.Version, Servers: m.Servers, Source: source, MayChange: true}
	if ms.dir != "" {
		v.StateFile = filepath.Join(ms.dir, membershipFile)
	}
	if err := ms.mayChange(); err != nil {
		v.MayChange, v.WhyNot = false, err.Error()
	}
	if ms.node != nil {
		if peer, ok := ms.node.Peer(); ok {
			v.Peer = &peerMembers{Addr: peer.Addr.String(), Role: peer.Role.String(), Version: peer.Membership.Version,
				Servers: peer.Membership.Servers}
		}
	}
	routed := p.Topology()
	st := ms.mgr.Status()
	for _, s := range st.Servers {
		if s.Discovered {
			continue
		}
		v.Status = append(v.Status, serverRecord{Addr: s.Addr, Up: s.Up, Role: string(s.Role), Joining: s.Joining,
			ServesReads: slices.Contains(routed.Replicas, s.Addr), LinkUp: s.LinkUp, LagBytes: s.LagBytes, Error: s.Error})
	}
	return v
}

// routes adds GET /servers, POST /servers?addr=HOST:PORT and
// DELETE /servers/{addr} to mux.
func (ms *members) routes(mux *http.ServeMux, p *proxy.Proxy) {
	answer := func(w http.ResponseWriter, err error) {
		if err != nil {
			code := http.StatusInternalServerError
			var me *membersError
			if errors.As(err, &me) {
				code = me.code
			}
			writeJSONError(w, code, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(ms.view(p))
	}
	mux.HandleFunc("GET /servers", func(w http.ResponseWriter, r *http.Request) { answer(w, nil) })
	mux.HandleFunc("POST /servers", func(w http.ResponseWriter, r *http.Request) {
		addr := r.URL.Query().Get("addr")
		if addr == "" {
			answer(w, refuse(http.StatusBadRequest, "POST /servers needs ?addr=HOST:PORT"))
			return
		}
		_, err := ms.change(r.Context(), func(m membership) (membership, error) { return withServer(m, addr) }, "added "+addr)
		answer(w, err)
	})
	mux.HandleFunc("DELETE /servers/{addr}", func(w http.ResponseWriter, r *http.Request) {
		addr := r.PathValue("addr")
		_, err := ms.change(r.Context(), func(m membership) (membership, error) { return withoutServer(m, addr) }, "removed "+addr)
		answer(w, err)
	})
}

// ---- the subcommand ----------------------------------------------------------

// serversCmd is `redis-proxy servers [add|remove HOST:PORT]`.
func serversCmd(a adminEnv, args []string, stdout, stderr io.Writer) int {
	const usage = "usage: redis-proxy servers [add HOST:PORT | remove HOST:PORT]"
	switch {
	case len(args) == 0:
		return callAdmin(a, "servers", http.MethodGet, "/servers", 5*time.Second, stdout, stderr)
	case len(args) == 2 && args[0] == "add":
		return callAdmin(a, "servers add", http.MethodPost, "/servers?addr="+url.QueryEscape(args[1]), 30*time.Second, stdout, stderr)
	case len(args) == 2 && args[0] == "remove":
		return callAdmin(a, "servers remove", http.MethodDelete, "/servers/"+url.PathEscape(args[1]), 30*time.Second, stdout, stderr)
	}
	fmt.Fprintln(stderr, "redis-proxy: "+usage)
	return 2
}
