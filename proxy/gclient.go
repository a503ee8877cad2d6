package proxy

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The goroutine path: a client served by a goroutine of its own. Every
// client is, when there are no event loops; otherwise those an event loop
// hands over because a command needs a dedicated connection (a transaction
// sent a command at a time, WATCH, SELECT n, a blocking command, a
// subscription, ...), until they have run loopReturnAfter batches in a
// row without one.
//
// The goroutine reads with the same request parser as the loops
// (resp.Parser) and classifies with the same classifier (session.decide):
// it takes every complete command buffered as one batch, runs the batch
// (pooled.go, pinned.go, tunnel.go), writes the replies in one write, and
// reads again.

const (
	gReadSize = 16 << 10 // the least room a read is given
	gKeep     = 1 << 20  // buffers larger than this are dropped once empty
)

// loopReturnAfter is how many batches in a row a client moved off an
// event loop must run without a dedicated connection before it goes back
// to a loop: one that keeps using transactions stays where it is instead
// of moving at each one.
const loopReturnAfter = 16

// gclient is a client on the goroutine path. Its goroutine owns nc, the
// session and the dedicated connection (pin) until the client leaves, the
// session becomes a tunnel (whose two goroutines then own them), or the
// client goes back to an event loop (which then owns nc and the session).
type gclient struct {
	p      *Proxy
	s      *session
	nc     net.Conn
	parser resp.Parser
	in     []byte // read and not yet run: in[off:]
	off    int
	// protoErr is a protocol error owed after the replies to the
	// commands before it; then the connection closes.
	protoErr string
	eof      bool // the client shut its side down: answer, then close
	closing  bool
	out      []byte    // replies not yet written
	deadline time.Time // write deadline last set

	pin *dedicated // a connection of the session's own (Conn Pinned or Tunnel)
	// opened: pin is a tunnel an event loop began, its first command sent.
	opened *opened
	room   int64 // MaxInflightMemory held for in's large request (bigreq.go)
	// avgReply is the client's average reply size, which bounds a batch
	// (window.go).
	avgReply int
	// cleanBatches counts the batches run in a row without a dedicated
	// connection (see loopReturnAfter).
	cleanBatches int

	// The batch and scratch reused from batch to batch.
	cmds  []resp.Command
	args  [][]byte
	segs  []segment
	reqs  []*request
	infos []*command.Info
	items []pinItem
	local []byte
	wbuf  []byte // small commands of the proxy's own
	// waitCmd is the WAIT of durable writes (acks.go); starts: where each
	// reply of a pinned group begins in out.
	waitCmd []byte
	starts  []int
	// tacks frames a tunnel's replies for durable writes (tunnel_acks.go).
	tacks *tunnelAcks
	batch gather // the commands of a group or a tunnel's batch, for one write
	reply []byte
	again *request // unanswered reads of a dead connection, run again
}

// serveGoroutine serves the client on nc (counted already, with its
// session s) on the calling goroutine, starting with in, bytes read from
// it and not yet run, and the parser's place in them, and owed protoErr
// once they are answered (a hand-off from an event loop); with open, the
// tunnel that loop began.
func (p *Proxy) serveGoroutine(s *session, nc net.Conn, in []byte, parser resp.Parser, protoErr string, open *opened) {
	g := &gclient{p: p, s: s, nc: nc, in: in, parser: parser, protoErr: protoErr, avgReply: initialReplySize}
	if open != nil && open.wait() {
		g.pin, g.opened = open.pin, open
		g.s.dedicated(open.pin)
		g.s.st.Conn, g.s.st.Tx = command.Pinned, command.Tx{}
		g.s.entry.blockedSince.Store(time.Now().UnixNano())
		g.tunnel(nil, false)
		return
	}
	if open != nil { // the opener could not: the error a hand-off would have given
		g.out = resp.AppendError(g.out, open.err)
	}
	for g.next() {
		n, out := len(g.cmds), len(g.out)
		g.serve(g.cmds)
		g.s.publish(time.Now())
		g.avgReply = replySizes(g.avgReply, max(len(g.out)-out, 0)/n, n)
		clear(g.cmds)
		clear(g.args) // (no reference left to a large request's buffer: see unreserve)
		if g.s.st.Conn == command.Tunnel {
			return // the tunnel has ended the client
		}
		if !g.flush() || g.returnToLoop() {
			return
		}
	}
	g.finish()
}

// next gathers the next batch in g.cmds: the complete commands buffered,
// up to the client's window (window.go), reading until there is one. It returns false, after answering what it
// must, when the client is done.
func (g *gclient) next() bool {
	g.cmds, g.args = g.cmds[:0], g.args[:0]
	for !g.closing {
		g.parse()
		switch {
		case len(g.cmds) > 0:
			return true
		case g.protoErr != "":
			g.out = resp.AppendError(g.out, g.protoErr)
			g.p.m.rejected.WithLabelValues("protocol_limit").Inc()
			g.flush()
			return false
		case g.eof:
			return false
		}
		g.read()
	}
	return false
}

// parse moves the complete commands at in[off:] to the batch. Multibulk
// commands' arguments alias in, which is not touched until the batch has
// run; the parser reuses its argument slice, so the batch keeps its own.
func (g *gclient) parse() {
	g.parser.Unauth = !g.s.authed()
	for most := window(g.avgReply, gMaxBatch); g.protoErr == "" && g.off < len(g.in) && len(g.cmds) < most; {
		cmd, n, err := g.parser.Next(g.in[g.off:])
		var pe *resp.ProtocolError
		if errors.As(err, &pe) {
			g.protoErr = pe.Reply
			return
		}
		if n == 0 {
			return
		}
		g.off += n
		if len(cmd.Args) == 0 {
			continue
		}
		lo := len(g.args)
		g.args = append(g.args, cmd.Args...)
		cmd.Args = g.args[lo:len(g.args):len(g.args)]
		g.cmds = append(g.cmds, cmd)
	}
}

// read reads more of the client's bytes after what is buffered. The
// buffer grows as a command still arriving needs (the parser has checked
// its sizes against the limits).
func (g *gclient) read() {
	if g.off > 0 {
		g.in = g.in[:copy(g.in, g.in[g.off:])]
		g.off = 0
	}
	if cap(g.in) > gKeep && len(g.in) <= gKeep/4 && g.parser.Need() <= bigRequest {
		// A large request was run: its buffer (and room) goes back.
		g.in = append([]byte(nil), g.in...)
		g.unreserve()
	}
	if !g.size() {
		return
	}
	if idle := g.p.cfg().IdleTimeout; idle > 0 && g.s.st.Conn != command.Tunnel {
		// (Subscribers and blocked clients are never idle.)
		g.nc.SetReadDeadline(time.Now().Add(idle))
	}
	n, err := g.nc.Read(g.in[len(g.in):cap(g.in)])
	g.in = g.in[:len(g.in)+n]
	switch {
	case err == io.EOF:
		// A half-close after the last command: as Redis, answer it.
		g.eof = true
	case err != nil:
		g.closing = true
	}
}

// flush writes the replies (writeOut) and reports whether the client is
// still there; if not, it is finished.
func (g *gclient) flush() bool {
	g.writeOut()
	if g.closing {
		g.finish()
		return false
	}
	return true
}

// writeOut writes the replies, keeping a deadline on the write so a client
// that stops reading is dropped after about WriteTimeout instead of
// holding its goroutine for ever. (Moving a deadline costs a timer update,
// so it moves only when half of it has passed.)
func (g *gclient) writeOut() {
	if len(g.out) == 0 {
		return
	}
	now := time.Now()
	if wt := g.p.cfg().WriteTimeout; now.Add(wt / 2).After(g.deadline) {
		g.deadline = now.Add(wt)
		g.nc.SetWriteDeadline(g.deadline)
	}
	if _, err := g.nc.Write(g.out); err != nil {
		g.closing = true
	}
	g.out = g.out[:0]
	if cap(g.out) > gKeep {
		g.out = nil
	}
}

// returnToLoop gives the client back to an event loop, which serves it
// from its next request on, when it has run loopReturnAfter batches in a
// row without a dedicated connection; it reports whether it did. The
// replies are written, and the bytes not yet run go with it.
func (g *gclient) returnToLoop() bool {
	if g.pin != nil {
		g.cleanBatches = 0
		return false
	}
	g.cleanBatches++
	loops := g.p.loopsv.Load()
	if loops == nil || len(*loops) == 0 || int64(g.cleanBatches) < g.p.returnAfter.Load() || g.eof || g.protoErr != "" || !loopable(g.nc) {
		return false
	}
	l := (*loops)[g.p.nloop.Add(1)%uint64(len(*loops))]
	g.nc.SetDeadline(time.Time{})
	rest := append([]byte(nil), g.in[g.off:]...)
	if err := l.adopt(g.nc, g.s, rest, g.parser); err != nil {
		g.p.log.Warn("client not returned to the event loop", "client", g.s.st.ID, "err", err)
		g.s.end()
		return true
	}
	g.p.m.loopReturns.Inc()
	return true
}

// size makes room in g.in for the next read: for a large request still
// arriving, its exact size once (its memory taken from
// MaxInflightMemory); else twice what it had. It reports false, with the
// client answered and closing, when no room was found in time.
func (g *gclient) size() bool {
	need := g.parser.Need()
	if need <= bigRequest {
		if cap(g.in)-len(g.in) < gReadSize {
			g.in = append(make([]byte, 0, max(2*cap(g.in), len(g.in)+gReadSize)), g.in...)
		}
		return true
	}
	if cap(g.in) >= need {
		return true
	}
	start := time.Now()
	if !g.reserve(need) {
		g.out = resp.AppendError(g.out, errNoRoom(g.p.cfg().MaxInflightMemory, time.Since(start)))
		g.p.m.rejected.WithLabelValues("inflight_memory").Inc()
		g.closing = true
		g.flush()
		return false
	}
	g.in = append(make([]byte, 0, need), g.in...)
	return true
}

// finish closes the client and releases what its session holds.
func (g *gclient) finish() {
	g.nc.Close()
	g.releasePin(false)
	g.in, g.off = nil, 0
	g.unreserve()
	g.s.end()
}

// quit is QUIT: +OK, then close.
func (g *gclient) quit() {
	g.out = append(g.out, "+OK\r\n"...)
	g.closing = true
}

// renew is RESET: as on Redis, the connection leaves every state and is
// de-authenticated, taking the state the classifier gave it (d, the last
// decision).
func (g *gclient) renew(d *command.Decision, args [][]byte) {
	g.releasePin(false)
	g.s.commit(d, args)
	g.out = append(g.out, "+RESET\r\n"...)
}

// drop disconnects the client, after what it has been answered, for a
// reason counted in the metrics.
func (g *gclient) drop(reason string) {
	g.p.m.rejected.WithLabelValues(reason).Inc()
	g.releasePin(false)
	g.closing = true
}
