package proxy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
)

// metrics are the proxy's Prometheus collectors. They are always counted;
// Config.Registerer decides whether anyone can scrape them.
type metrics struct {
	commands       *prometheus.CounterVec
	latency        prometheus.Histogram
	clients        prometheus.Gauge
	clientsTotal   prometheus.Counter
	rejected       *prometheus.CounterVec
	backendConns   *prometheus.GaugeVec
	backendErrors  *prometheus.CounterVec
	pinned         prometheus.Gauge
	held           prometheus.Gauge
	holdTimeouts   prometheus.Counter
	topologyEpoch  prometheus.Gauge
	busyPoll       prometheus.Counter
	backendBatch   prometheus.Histogram
	handoffs       prometheus.Counter
	loopReturns    prometheus.Counter
	requeued       *prometheus.CounterVec
	scripts        prometheus.Gauge
	scriptLoads    prometheus.Counter
	inflightMemory prometheus.Gauge
	ackMetrics
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		commands: counterVec("redis_proxy_commands_total", "Commands answered, by command name and result (ok or error reply).", "command", "result"),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "redis_proxy_command_duration_seconds",
			Help:    "Time from reading a command to having its reply, per command.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		clients:       gauge("redis_proxy_clients", "Client connections open now."),
		clientsTotal:  counter("redis_proxy_client_connections_total", "Client connections accepted."),
		rejected:      counterVec("redis_proxy_client_errors_total", "Clients refused or disconnected by the proxy, by reason.", "reason"),
		backendConns:  gaugeVec("redis_proxy_backend_connections", "Shared (pooled) backend connections up, by server.", "server"),
		backendErrors: counterVec("redis_proxy_backend_errors_total", "Shared backend connections lost, by server.", "server"),
		pinned:        gauge("redis_proxy_pinned_connections", "Dedicated backend connections held by stateful sessions."),
		held:          gauge("redis_proxy_held_sessions", "Client sessions waiting for a master."),
		holdTimeouts:  counter("redis_proxy_hold_timeouts_total", "Commands answered with an error because no master appeared in time or the hold queue was full."),
		topologyEpoch: gauge("redis_proxy_routing_epoch", "Replication epoch of the topology the proxy routes by."),
		busyPoll:      counter("redis_proxy_busy_poll_seconds_total", "Time event loops spent polling for the next request instead of sleeping (REDIS_PROXY_BUSY_POLL)."),
		backendBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "redis_proxy_backend_write_commands",
			Help:    "Commands per write of an event loop to a shared backend connection (REDIS_PROXY_COALESCE gathers more into one).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 to 1024
		}),
		handoffs:       counter("redis_proxy_loop_handoffs_total", "Clients moved from an event loop to a goroutine of their own by a command that needs a dedicated connection."),
		loopReturns:    counter("redis_proxy_loop_returns_total", "Clients moved back to an event loop after running without a dedicated connection for a while on a goroutine of their own."),
		requeued:       counterVec("redis_proxy_requests_requeued_total", "Requests owed by a shared backend connection that died, given back to their clients to run again instead of failing: written=no never reached the server, written=yes are reads it had not answered.", "written"),
		scripts:        gauge("redis_proxy_scripts", "Lua scripts loaded through the proxy (SCRIPT LOAD) that it copies to every server, so EVALSHA works after a failover."),
		scriptLoads:    counter("redis_proxy_script_copies_total", "Scripts the proxy loaded on a server that lacked them (a replica, a new master, a restarted server)."),
		inflightMemory: gauge("redis_proxy_inflight_request_bytes", "Memory held for large requests being read (REDIS_PROXY_MAX_INFLIGHT_MEMORY bounds it)."),
		ackMetrics:     newAckMetrics(),
	}
	for _, r := range clientErrorReasons {
		m.rejected.WithLabelValues(r) // at 0 from the start, so an alert's increase() sees the first one
	}
	if reg != nil {
		reg.MustRegister(m.commands, m.latency, m.clients, m.clientsTotal, m.rejected,
			m.backendConns, m.backendErrors, m.pinned, m.held, m.holdTimeouts, m.topologyEpoch, m.busyPoll, m.backendBatch, m.handoffs, m.loopReturns, m.requeued,
			m.scripts, m.scriptLoads, m.inflightMemory, m.ackWaiting, m.ackWait, m.ackTimeouts)
	}
	return m
}

// clientErrorReasons are the reasons of redis_proxy_client_errors_total.
var clientErrorReasons = []string{"max_clients", "max_pinned", "output_limit", "write_timeout",
	"protocol_limit", "inflight_memory", "tls_handshake", "backend_lost"}

// commandCounters gives command.Build the counters of a command's replies.
// Their series are made by the command's first reply, not here: a table
// holds some 480 commands and subcommands, and a series for each that no
// client ever runs would be noise in every scrape.
func (m *metrics) commandCounters(label string) (ok, fail command.Counter) {
	c := &commandSeries{vec: m.commands, label: label}
	return okCounter{c}, failCounter{c}
}

// commandSeries are the two series of one command label, made together
// on the first reply (so a command that has run shows an error count of
// 0, not no series). After that a count is an atomic load and the
// counter's own increment: no allocation, no lock.
type commandSeries struct {
	vec   *prometheus.CounterVec
	label string
	p     atomic.Pointer[seriesPair]
}

type seriesPair struct{ ok, fail prometheus.Counter }

func (c *commandSeries) pair() *seriesPair {
	if p := c.p.Load(); p != nil {
		return p
	}
	// WithLabelValues returns the same child for the same labels, so two
	// first replies racing here count into the same series.
	p := &seriesPair{c.vec.WithLabelValues(c.label, "ok"), c.vec.WithLabelValues(c.label, "error")}
	c.p.Store(p)
	return p
}

type okCounter struct{ c *commandSeries }
type failCounter struct{ c *commandSeries }

func (o okCounter) Inc()   { o.c.pair().ok.Inc() }
func (f failCounter) Inc() { f.c.pair().fail.Inc() }

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}
