package main

// Metrics an operator alerts on, read at scrape time: each Redis server
// as the replication manager last saw it, whether a master is known, and
// the TLS certificates' expiry. (The proxy's own metrics are in
// proxy/metrics.go, the pair's in pair.go; docs/operations.md lists them
// all with the alerts built on them.)

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/internal/tlsfiles"
	"github.com/redis-proxy/redis-proxy/replication"
)

var (
	serverUpDesc = prometheus.NewDesc("redis_proxy_server_up",
		"1 while the Redis server answers the manager's checks.", []string{"server"}, nil)
	serverRoleDesc = prometheus.NewDesc("redis_proxy_server_role",
		"1 for the role the Redis server reported at its last check (master or replica), 0 for the other; both 0 while it is down or unknown.",
		[]string{"server", "role"}, nil)
	replicaLagDesc = prometheus.NewDesc("redis_proxy_replica_lag_bytes",
		"Replication bytes a replica of the master is behind it (master offset minus the replica's); only for replicas of the current master.",
		[]string{"server"}, nil)
	replicaLinkDesc = prometheus.NewDesc("redis_proxy_replica_link_up",
		"1 while the replica's link to its master is up (master_link_status:up); only for replicas.", []string{"server"}, nil)
)

// serverCollector exports one series per server and label from the
// manager's status at each scrape, so a server that is removed has no
// stale series.
type serverCollector struct{ mgr *replication.Manager }

func (c serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- serverUpDesc
	ch <- serverRoleDesc
	ch <- replicaLagDesc
	ch <- replicaLinkDesc
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.mgr.Status().Servers {
		ch <- prometheus.MustNewConstMetric(serverUpDesc, prometheus.GaugeValue, boolValue(s.Up), s.Addr)
		for _, r := range []replication.Role{replication.RoleMaster, replication.RoleReplica} {
			ch <- prometheus.MustNewConstMetric(serverRoleDesc, prometheus.GaugeValue, boolValue(s.Up && s.Role == r), s.Addr, string(r))
		}
		if s.Role == replication.RoleReplica {
			ch <- prometheus.MustNewConstMetric(replicaLinkDesc, prometheus.GaugeValue, boolValue(s.Up && s.LinkUp), s.Addr)
		}
		if s.Following {
			ch <- prometheus.MustNewConstMetric(replicaLagDesc, prometheus.GaugeValue, float64(s.LagBytes), s.Addr)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// registerServerMetrics exports each server's state, and whether the
// manager knows a master.
func registerServerMetrics(reg prometheus.Registerer, mgr *replication.Manager) {
	reg.MustRegister(serverCollector{mgr}, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "redis_proxy_master_known",
		Help: "1 while the replication manager has a master to route writes to; 0 during a failover or with none reachable.",
	}, func() float64 { return boolValue(mgr.Status().Master != "") }))
}

// registerTLSMetrics exports when each certificate in use expires.
func registerTLSMetrics(reg prometheus.Registerer, ts tlsSetup) {
	for _, st := range []struct {
		side  string
		store *tlsfiles.Store
	}{{"clients", ts.clients}, {"backend", ts.backend}} {
		if st.store == nil || st.store.Leaf() == nil {
			continue // no certificate of the proxy's own on that side
		}
		store := st.store
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "redis_proxy_tls_certificate_expiry_timestamp_seconds",
			Help:        "When the certificate the proxy presents expires (NotAfter), as Unix time; side is clients (the TLS listener) or backend (the client certificate to Redis).",
			ConstLabels: prometheus.Labels{"side": st.side},
		}, func() float64 {
			if l := store.Leaf(); l != nil {
				return float64(l.NotAfter.Unix())
			}
			return 0
		}))
	}
}
