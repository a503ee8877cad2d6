package proxy

import (
	"bytes"
	"sync"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// Durable writes in a tunnel (acks.go): the reader, which forwards the
// client's commands, notes what reply each will get (expectation) and ends
// a batch that holds a write with a WAIT; the copier frames the server's
// replies, passes RESP3 pushes at once, and holds a write's reply, and
// every reply after it, until the WAIT's reply says whether the replicas
// have it. Only with Config.WriteAcks on, and for a tunnel to the master:
// otherwise the copier passes bytes as they come, as it always did.
//
// Where the proxy cannot tell replies apart any more, it stops framing
// once the replies it expects are in: a RESP2 subscriber (messages are
// arrays, like replies) and MONITOR; Redis refuses writes in both. CLIENT
// REPLY OFF|SKIP, which leaves replies out, is refused with durable writes
// on. A write followed by MULTI in the same batch cannot be confirmed (a
// WAIT would be queued in the transaction): its success becomes
// NOTREPLICATED.

type expect uint8

const (
	expPlain expect = iota
	expWrite        // held until the batch's WAIT
	expFail         // a write that cannot be confirmed
	expWait         // the proxy's WAIT: not for the client
)

type tunnelAcks struct {
	mu     sync.Mutex
	q      []expectation
	stop   bool // no new expectations; framing ends once q is empty
	framed bool // the copier frames (false once stopped and drained)
	resp3  bool
	multi  bool

	// The copier's own.
	scan    resp.ReplyScanner
	pending []byte
	held    []heldTunnel
}

type expectation struct {
	e  expect
	at time.Time // a WAIT's: when it was sent
}

type heldTunnel struct {
	b     []byte
	write bool
	fail  bool
}

// newTunnelAcks returns the framing of a tunnel to the master when
// durable writes are on, else nil.
func (g *gclient) newTunnelAcks() *tunnelAcks {
	cfg := g.p.cfg()
	if cfg.WriteAcks == 0 || g.pin.p != g.p.routes.Load().master {
		return nil
	}
	return &tunnelAcks{framed: true}
}

// note records the reply a forwarded command will get, and reports
// whether it is a write's.
func (ta *tunnelAcks) note(info *command.Info, args [][]byte) bool {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if ta.stop {
		return false
	}
	name := ""
	if info != nil {
		name = info.Name
	}
	switch {
	case info == nil:
	case info.Special == command.Subscribe && name != "monitor", info.Special == command.Unsubscribe:
		if ta.resp3 {
			return false // pushes, not replies
		}
		ta.stop = true
		return false
	case name == "monitor": // (a monitor cannot write)
		ta.stop = true
		return false
	case info.Special == command.Hello && len(args) > 1:
		ta.resp3 = string(args[1]) == "3"
	case info.Special == command.Reset: // back to RESP2, out of a transaction
		ta.resp3, ta.multi = false, false
	case info.Special == command.Multi:
		ta.multi = true
	case info.Special == command.Discard:
		ta.multi = false
	}
	write := info != nil && isAckWrite(info) && (!ta.multi || info.Special == command.Exec)
	if info != nil && info.Special == command.Exec {
		ta.multi = false
	}
	if write {
		ta.q = append(ta.q, expectation{e: expWrite})
	} else {
		ta.q = append(ta.q, expectation{e: expPlain})
	}
	return write
}

// endBatch ends a batch that held writes: a WAIT after it, or, with a
// transaction open, its writes marked as unconfirmable. It reports whether
// the WAIT is to be sent.
func (ta *tunnelAcks) endBatch(writes int) bool {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if ta.multi || ta.stop {
		for i, k := len(ta.q)-1, writes; i >= 0 && k > 0; i-- {
			if ta.q[i].e == expWrite {
				ta.q[i].e, k = expFail, k-1
			}
		}
		return false
	}
	ta.q = append(ta.q, expectation{e: expWait, at: time.Now()})
	return true
}

// next is the expectation of the next reply; ok false once framing ended.
func (ta *tunnelAcks) next() (e expectation, framed bool) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if len(ta.q) == 0 {
		if ta.stop {
			ta.framed = false
		}
		return expectation{}, ta.framed
	}
	e = ta.q[0]
	ta.q = ta.q[1:]
	return e, true
}

// frame takes bytes from the server and returns what goes to the client
// now (appended to out). It reports false if the server broke the
// protocol or the held bytes passed max.
func (g *gclient) frame(ta *tunnelAcks, in, out []byte, max int) ([]byte, bool) {
	data := append(ta.pending, in...)
	for len(data) > 0 {
		ta.mu.Lock()
		raw := !ta.framed
		ta.mu.Unlock()
		if raw {
			out = append(out, data...)
			data = data[:0]
			break
		}
		end, err := ta.scan.Next(data)
		if err != nil {
			return out, false
		}
		if end == 0 {
			break
		}
		r := data[:end]
		data = data[end:]
		if r[0] == '>' { // a push: not a reply
			out = append(out, r...)
			continue
		}
		x, framed := ta.next()
		e := x.e
		switch {
		case !framed:
			out = append(out, r...)
		case e == expWait:
			grp := ackGroup{sent: x.at}
			g.p.ackOutcome(&grp, r, time.Now())
			for _, h := range ta.held {
				b := h.b
				switch {
				case h.fail:
					b = replicatedReply(unconfirmable, b)
				case h.write:
					b = replicatedReply(&grp, b)
					g.p.m.ackWaiting.Dec()
				}
				out = append(out, b...)
			}
			clear(ta.held)
			ta.held = ta.held[:0]
		case e == expPlain && len(ta.held) == 0:
			out = append(out, r...)
		case e == expFail && len(ta.held) == 0:
			out = append(out, replicatedReply(unconfirmable, r)...)
		default:
			ta.held = append(ta.held, heldTunnel{b: bytes.Clone(r), write: e == expWrite, fail: e == expFail})
			if e == expWrite {
				g.p.m.ackWaiting.Inc()
			}
		}
	}
	ta.pending = append(ta.pending[:0], data...)
	held := len(ta.pending)
	for _, h := range ta.held {
		held += len(h.b)
	}
	return out, held <= max
}

// tunnelAcksDone counts the writes still held when the tunnel ends out of the
// waiting gauge: their clients are gone.
func (g *gclient) tunnelAcksDone(ta *tunnelAcks) {
	for _, h := range ta.held {
		if h.write {
			g.p.m.ackWaiting.Dec()
		}
	}
	ta.held = nil
}
