package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics are the proxy's Prometheus collectors. They are always counted;
// Config.Registerer decides whether anyone can scrape them.
type metrics struct {
	commands      *prometheus.CounterVec
	latency       prometheus.Histogram
	clients       prometheus.Gauge
	clientsTotal  prometheus.Counter
	rejected      *prometheus.CounterVec
	backendConns  *prometheus.GaugeVec
	backendErrors *prometheus.CounterVec
	pinned        prometheus.Gauge
	held          prometheus.Gauge
	holdTimeouts  prometheus.Counter
	topologyEpoch prometheus.Gauge
	busyPoll      prometheus.Counter
	backendBatch  prometheus.Histogram
	handoffs      prometheus.Counter
	loopReturns   prometheus.Counter
	requeued      *prometheus.CounterVec
	scripts       prometheus.Gauge
	scriptLoads   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_proxy_commands_total",
			Help: "Commands answered, by command name and result (ok or error reply).",
		}, []string{"command", "result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "redis_proxy_command_duration_seconds",
			Help:    "Time from reading a command to having its reply, per command.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_proxy_clients",
			Help: "Client connections open now.",
		}),
		clientsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redis_proxy_client_connections_total",
			Help: "Client connections accepted.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_proxy_client_errors_total",
			Help: "Clients refused or disconnected by the proxy, by reason.",
		}, []string{"reason"}),
		backendConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redis_proxy_backend_connections",
			Help: "Shared (pooled) backend connections up, by server.",
		}, []string{"server"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_proxy_backend_errors_total",
			Help: "Shared backend connections lost, by server.",
		}, []string{"server"}),
		pinned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_proxy_pinned_connections",
			Help: "Dedicated backend connections held by stateful sessions.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_proxy_held_sessions",
			Help: "Client sessions waiting for a master.",
		}),
		holdTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redis_proxy_hold_timeouts_total",
			Help: "Commands answered with an error because no master appeared in time or the hold queue was full.",
		}),
		topologyEpoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_proxy_routing_epoch",
			Help: "Replication epoch of the topology the proxy routes by.",
		}),
		busyPoll: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redis_proxy_busy_poll_seconds_total",
			Help: "Time event loops spent polling for the next request instead of sleeping (REDIS_PROXY_BUSY_POLL).",
		}),
		backendBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "redis_proxy_backend_write_commands",
			Help:    "Commands per write of an event loop to a shared backend connection (REDIS_PROXY_COALESCE gathers more into one).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 to 1024
		}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redis_proxy_loop_handoffs_total",
			Help: "Clients moved from an event loop to a goroutine of their own by a command that needs a dedicated connection.",
		}),
		loopReturns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redis_proxy_loop_returns_total",
			Help: "Clients moved back to an event loop after running without a dedicated connection for a while on a goroutine of their own.",
		}),
		requeued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_proxy_requests_requeued_total",
			Help: "Requests owed by a shared backend connection that died, given back to their clients to run again instead of failing: written=no never reached the server, written=yes are reads it had not answered.",
		}, []string{"written"}),
		scripts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_proxy_scripts",
			Help: "Lua scripts loaded through the proxy (SCRIPT LOAD) that it copies to every server, so EVALSHA works after a failover.",
		}),
		scriptLoads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redis_proxy_script_copies_total",
			Help: "Scripts the proxy loaded on a server that lacked them (a replica, a new master, a restarted server).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.commands, m.latency, m.clients, m.clientsTotal, m.rejected,
			m.backendConns, m.backendErrors, m.pinned, m.held, m.holdTimeouts, m.topologyEpoch, m.busyPoll, m.backendBatch, m.handoffs, m.loopReturns, m.requeued,
			m.scripts, m.scriptLoads)
	}
	return m
}
