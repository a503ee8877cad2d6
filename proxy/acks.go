package proxy

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// Durable writes (Config.WriteAcks): the reply to a write reaches its
// client only once WriteAcks replicas have the write. Redis's own WAIT,
// sent after each batch of commands written to a master connection that
// holds a write, is the group commit: one WAIT covers every write of the
// batch (Redis counts a replica as having them once it acknowledged the
// connection's last write offset), so the cost is one more round trip per
// batch, not per command. Until the WAIT's reply comes, the batch's write
// replies, and every later reply of the same clients, are held; replies
// to other clients' reads are not. A WAIT that counts fewer than
// WriteAcks replicas within WriteAckTimeout (or a connection that dies
// before it answers) turns each held write's success into errNotReplicated:
// the write is on the master, and a failover may lose it. Never a silent
// success.
//
// Writes are commands with Redis's write flag, scripts and functions that
// are not read-only, and EXEC. A session in a tunnel (RESP3, blocking
// commands, CLIENT TRACKING) is covered by framing its replies
// (tunnel_acks.go).

// ackGroup is one batch's WAIT: the writes written with it wait for its
// reply.
type ackGroup struct {
	done   bool
	failed string // the reply a held write's success turns into ("" : replicated)
	sent   time.Time
}

// errNotReplicated is a write's reply when too few replicas confirmed it.
func errNotReplicated(acks, got int, timeout time.Duration) string {
	return fmt.Sprintf("NOTREPLICATED redis-proxy: the write is on the master, but %d of the %d replicas it must reach confirmed it within %v; a failover now may lose it", got, acks, timeout)
}

// errNoReplicas is a write's reply when the topology has fewer replicas
// than WriteAcks: it fails at once instead of waiting.
func errNoReplicas(acks, have int) string {
	return fmt.Sprintf("NOTREPLICATED redis-proxy: the write is on the master, but only %d replicas are linked and %d must confirm it; a failover now may lose it", have, acks)
}

// noReplicas settles g, a batch of writes that cannot wait for the
// replicas: the topology rt has fewer linked than WriteAcks.
func (p *Proxy) noReplicas(g *ackGroup, rt *routes) {
	g.done, g.failed = true, errNoReplicas(p.cfg().WriteAcks, len(rt.topo.Replicas))
	p.m.ackTimeouts.Inc()
}

// unconfirmable is the outcome of writes a MULTI follows in the same
// batch: a WAIT after them would be queued in the transaction.
var unconfirmable = &ackGroup{done: true, failed: "NOTREPLICATED redis-proxy: the write is on the master, but it cannot be confirmed: a MULTI followed it in the same batch"}

// isAckWrite reports whether the reply to a command of info waits for
// the replicas.
func isAckWrite(info *command.Info) bool {
	return info.Has(command.Write) || info.Long && !info.Has(command.Readonly) || info.Special == command.Exec
}

// waitCommand is the WAIT the proxy sends after a batch of writes.
func (p *Proxy) waitCommand() []byte {
	c := p.cfg()
	return resp.AppendCommand(nil, "WAIT", strconv.Itoa(c.WriteAcks), strconv.FormatInt(c.WriteAckTimeout.Milliseconds(), 10))
}

// ackOutcome reads WAIT's reply (nil: none came, the connection died)
// into the group's outcome.
func (p *Proxy) ackOutcome(g *ackGroup, reply []byte, now time.Time) {
	c := p.cfg()
	g.done = true
	p.m.ackWait.Observe(now.Sub(g.sent).Seconds())
	got := -1
	if len(reply) > 3 && reply[0] == ':' {
		if n, ok := resp.ParseInt(reply[1 : len(reply)-2]); ok {
			got = int(n)
		}
	}
	if got >= c.WriteAcks {
		return
	}
	p.m.ackTimeouts.Inc()
	g.failed = errNotReplicated(c.WriteAcks, max(got, 0), c.WriteAckTimeout)
}

// replicatedReply is the reply a held write gets once its group is done:
// its own, unless the group failed and it was a success (an error reply,
// "outcome unknown" among them, stays as it is).
func replicatedReply(g *ackGroup, reply []byte) []byte {
	if g == nil || g.failed == "" || len(reply) == 0 || reply[0] == '-' {
		return reply
	}
	return resp.AppendError(nil, g.failed)
}

type ackMetrics struct {
	ackWaiting  prometheus.Gauge
	ackWait     prometheus.Histogram
	ackTimeouts prometheus.Counter
}

func newAckMetrics() ackMetrics {
	return ackMetrics{
		ackWaiting: gauge("redis_proxy_write_acks_waiting", "Write replies held until the replicas confirm them (REDIS_PROXY_WRITE_ACKS)."),
		ackWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "redis_proxy_write_ack_wait_seconds",
			Help:    "Time from sending a batch's WAIT to its reply (REDIS_PROXY_WRITE_ACKS).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		ackTimeouts: counter("redis_proxy_write_ack_failures_total", "Batches of writes fewer replicas confirmed than REDIS_PROXY_WRITE_ACKS in time, or with too few replicas linked: their clients got NOTREPLICATED."),
	}
}

// ackKind is what a goroutine's segment to the master does for its writes.
type ackKind uint8

const (
	ackNone          ackKind = iota
	ackWait                  // a WAIT follows its commands
	ackFailFast              // too few replicas: its writes fail at once
	ackUnconfirmable         // a MULTI follows its writes (unconfirmable)
)

// failedAck is the outcome of a group of kind k that sent no WAIT.
func (p *Proxy) failedAck(k ackKind) *ackGroup {
	if k == ackUnconfirmable {
		return unconfirmable
	}
	g := &ackGroup{}
	p.noReplicas(g, p.routes.Load())
	return g
}

// ackSegments makes each segment to the master that holds a write wait
// for the replicas: a WAIT after its commands, in the same request.
func (g *gclient) ackSegments(rt *routes, start time.Time) {
	cfg := g.p.cfg()
	if cfg.WriteAcks == 0 {
		return
	}
	for k := range g.segs {
		seg := &g.segs[k]
		if seg.req == nil || seg.pool != rt.master || !anyAckWrite(g.infos[seg.lo:seg.hi]) {
			continue
		}
		if have := len(rt.topo.Replicas); have < cfg.WriteAcks {
			seg.ack = ackFailFast
			continue
		}
		if g.waitCmd == nil {
			g.waitCmd = g.p.waitCommand()
		}
		seg.ack = ackWait
		seg.req.cmds = append(seg.req.cmds, g.waitCmd)
	}
}

func anyAckWrite(infos []*command.Info) bool {
	for _, info := range infos {
		if isAckWrite(info) {
			return true
		}
	}
	return false
}

// acked returns the replies of seg's commands (r's, without the WAIT's)
// and whether each is an error, the writes' successes turned into
// NOTREPLICATED when too few replicas confirmed them.
func (g *gclient) acked(seg *segment, r *request, start time.Time) ([]byte, []bool) {
	n := seg.hi - seg.lo
	out := r.out
	var wait []byte // the WAIT's reply (or its lost error), a line, the last
	if len(r.isErr) > n {
		wait = lastLine(out)
		out = out[:len(out)-len(wait)]
	}
	grp := &ackGroup{sent: start}
	switch {
	case seg.ack != ackWait:
		grp = g.p.failedAck(seg.ack)
	case r.failed == nil:
		g.p.ackOutcome(grp, wait, time.Now())
	default: // the connection died: nothing is known replicated
		g.p.ackOutcome(grp, nil, time.Now())
	}
	isErr := r.isErr[:n]
	if grp.failed == "" {
		return out, isErr
	}
	var sc resp.ReplyScanner
	res := make([]byte, 0, len(out))
	for k := 0; k < n && len(out) > 0; k++ {
		end, err := sc.Next(out)
		if err != nil || end == 0 {
			res = append(res, out...)
			break
		}
		one := out[:end]
		out = out[end:]
		if isAckWrite(g.infos[seg.lo+k]) {
			if rep := replicatedReply(grp, one); len(rep) != len(one) || rep[0] != one[0] {
				one, isErr[k] = rep, true
			}
		}
		res = append(res, one...)
	}
	return res, isErr
}

// lastLine is the last line of b (which ends in CRLF).
func lastLine(b []byte) []byte {
	return b[bytes.LastIndexByte(b[:len(b)-2], '\n')+1:]
}

// pinnedAck adds a WAIT to a pinned group that holds a write to the master
// (the batch is not written yet).
func (g *gclient) pinnedAck() ackKind {
	cfg := g.p.cfg()
	if cfg.WriteAcks == 0 {
		return ackNone
	}
	rt := g.p.routes.Load()
	if g.pin.p != rt.master {
		return ackNone
	}
	write := false
	for _, it := range g.items {
		write = write || !it.local && it.write
	}
	switch {
	case !write:
		return ackNone
	case g.s.st.Tx.InMulti:
		return ackUnconfirmable
	case len(rt.topo.Replicas) < cfg.WriteAcks:
		return ackFailFast
	}
	if g.waitCmd == nil {
		g.waitCmd = g.p.waitCommand()
	}
	g.batch.add(g.waitCmd)
	return ackWait
}

// pinnedAcked reads the WAIT's reply after a pinned group's replies
// (g.out from g.starts[0] on) and turns the writes' successes into
// NOTREPLICATED when too few replicas confirmed them.
func (g *gclient) pinnedAcked(ack ackKind, start time.Time) error {
	grp := &ackGroup{sent: start}
	if ack != ackWait {
		grp = g.p.failedAck(ack)
	} else {
		reply, _, err := g.pin.rr.AppendValue(nil, 4096)
		if err != nil {
			return err
		}
		g.p.ackOutcome(grp, reply, time.Now())
	}
	if grp.failed == "" || len(g.starts) == 0 {
		return nil
	}
	from := g.starts[0]
	replies := bytes.Clone(g.out[from:])
	g.out = g.out[:from]
	for k, it := range g.items {
		lo := g.starts[k] - from
		hi := len(replies)
		if k+1 < len(g.starts) {
			hi = g.starts[k+1] - from
		}
		one := replies[lo:hi]
		if !it.local && it.write {
			one = replicatedReply(grp, one)
		}
		g.out = append(g.out, one...)
	}
	return nil
}
