package replication

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/certtest"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/tlsfiles"
)

// tlsPair starts two TLS-only servers, b a replica of a over TLS, each
// requiring client certificates of ca.
func tlsPair(t *testing.T, ca *certtest.CA, dir string) (a, b *redistest.Server) {
	t.Helper()
	caFile := ca.Write(t, dir, "ca")
	helper := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{ca.Issue(t, certtest.Options{Name: "helper"}).TLS(t)}}
	start := func(name string) *redistest.Server {
		cert, key := ca.Issue(t, certtest.Options{}).Write(t, dir, name)
		return redistest.StartTLS(t, helper, "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", caFile,
			"--tls-replication", "yes")
	}
	a, b = start("a"), start("b")
	b.ReplicaOf(a)
	return a, b
}

// TestTLSFailover: over TLS only, the manager finds the master and its
// replica, promotes the replica when the master is killed, and makes the
// restarted old master its replica.
func TestTLSFailover(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test CA")
	a, b := tlsPair(t, ca, dir)
	cert, key := ca.Issue(t, certtest.Options{Name: "redis-proxy"}).Write(t, dir, "manager")
	st, err := tlsfiles.Load(tlsfiles.Files{Cert: cert, Key: key, CA: dir + "/ca.crt"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := startManagerCfg(t, Config{Authority: true, TLS: st.Client}, a, b)
	h.waitTopology("a with b", 10*time.Second, is(a.Addr, b.Addr))
	if _, err := a.Do("SET", "before", "1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b caught up", 10*time.Second, func() bool {
		v, _ := redis.String(b.Do("GET", "before"))
		return v == "1"
	})
	a.Kill()
	h.waitTopology("b promoted", 10*time.Second, func(tp Topology) bool { return tp.Master == b.Addr })
	a.Restart()
	h.waitTopology("a back as a replica of b", 10*time.Second, is(b.Addr, a.Addr))
	waitUntil(t, "a has b's data over TLS replication", 10*time.Second, func() bool {
		v, _ := redis.String(a.Do("GET", "before"))
		return v == "1"
	})
}

// TestTLSRefusedServers: a manager that trusts another CA, or presents
// no client certificate, reaches no server: all are down, with the TLS
// error, and nothing is published or changed.
func TestTLSRefusedServers(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test CA")
	a, b := tlsPair(t, ca, dir)
	other := certtest.NewCA(t, "other CA")
	for name, cfg := range map[string]*tls.Config{
		"unknown CA":            {RootCAs: other.Pool(), Certificates: []tls.Certificate{ca.Issue(t, certtest.Options{}).TLS(t)}},
		"no client certificate": {RootCAs: ca.Pool()},
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			h := startManagerCfg(t, Config{Authority: true, TLS: func() *tls.Config { return cfg }}, a, b)
			waitUntil(t, "both servers checked and down", 10*time.Second, func() bool {
				st := h.m.Status()
				sa, sb := serverStatus(st, a.Addr), serverStatus(st, b.Addr)
				return sa.Error != "" && sb.Error != "" && !sa.Up && !sb.Up
			})
			time.Sleep(2 * testDownAfter)
			st := h.m.Status()
			t.Logf("%s: %s", a.Addr, serverStatus(st, a.Addr).Error)
			if tp := h.m.Topology(); tp.Master != "" {
				t.Errorf("published %+v through refused TLS", tp)
			}
			if r, _ := role(t, b); r != "slave" {
				t.Errorf("b's ROLE = %s: changed without a valid connection", r)
			}
		})
	}
}
