package proxy

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"
)

// kind is what a session does with one command.
type kind uint8

const (
	kForward kind = iota // to the master (or the pinned connection)
	kRead                // read-only: may go to a replica
	kLocal               // answered by the proxy; the reply is in s.local
	kPin                 // needs a dedicated connection, request/reply
	kTunnel              // needs a dedicated full-duplex connection for good
	kQuit                // reply +OK and close
	kReset               // RESET: drop all connection state
	kScan                // a SCAN-family read: to the session's own replica
)

// discardCommand replaces an EXEC that must abort.
var discardCommand = appendCommand(nil, "DISCARD")

// needsTunnel is for commands that change how the connection talks
// (pushes, no replies, RESP3): a tunnel, or inside a transaction, a queued
// command that makes the session a tunnel once EXEC runs it.
func (s *session) needsTunnel(info *cmdInfo) (kind, *cmdInfo) {
	switch {
	case s.tunneled:
		return kForward, info
	case s.st.inMulti:
		s.op = opTunnelLater
		return kForward, info
	}
	return kTunnel, info
}

// stateOp is how a forwarded command's reply changes the server-side state
// of a pinned connection.
type stateOp uint8

const (
	opNone stateOp = iota
	opMulti
	opExec
	opDiscard
	opWatch
	opUnwatch
	opSelect
	opAuthUser
	opExecAbort   // EXEC sent as DISCARD: a command was refused while queueing
	opTunnelLater // queued in MULTI; changes the connection's mode at EXEC
)

// endsGroup reports whether op may leave the connection clean (or change
// authentication), so the commands after it must be classified after its
// reply has been seen.
func (op stateOp) endsGroup(arg int) bool {
	switch op {
	case opExec, opExecAbort, opDiscard, opUnwatch, opAuthUser:
		return true
	case opSelect:
		return arg == 0
	}
	return false
}

// pinState is the server-side state of a pinned connection that the proxy
// tracks to know when the connection is clean again.
type pinState struct {
	// inMulti is set when MULTI is sent, not when its reply arrives, so
	// the commands pipelined after it are classified as queued ones. MULTI
	// fails only when already in a transaction, so this is exact.
	inMulti      bool
	execAbort    bool // a command was refused while queueing: EXEC aborts
	tunnelAtExec bool // a queued command (SUBSCRIBE, HELLO 3, ...) runs at EXEC
	watching     bool
	aclUser      bool // authenticated as another ACL user: never clean again
	db           int
	queuedDB     bool    // a SELECT was queued inside MULTI: EXEC may change the db
	queuedName   *string // CLIENT SETNAME queued inside MULTI, applied by EXEC
}

func (st pinState) clean() bool {
	return !st.inMulti && !st.watching && !st.aclUser && st.db == 0
}

// session is one client connection. Its methods run on the client's redcon
// goroutine only. Stateless commands go over shared connections; a session
// with server-side state (a transaction, a database, an ACL user) holds a
// dedicated connection (pin) until the state is gone; blocking commands,
// pub/sub, MONITOR, RESP3 and client-side caching turn the session into a
// tunnel to a dedicated connection for the rest of its life.
type session struct {
	p       *Proxy
	lookups lookupCache // the command last looked up
	conn    redcon.Conn // nil while an event loop serves the session
	scan    *reqScanner // the scanner of the client's requests
	id      int64
	authed  bool
	name    string

	pin       *dedicated
	st        pinState
	tunneled  bool
	tunnelNow bool // an EXEC ran a command that needs the tunnel
	// subscribedAtExec: that command subscribed (no more request/reply).
	subscribedAtExec bool
	dbUnknown        bool // an EXEC ran queued SELECTs: read the db back
	closing          bool
	ended            bool
	deadline         time.Time  // client write deadline last set
	lc               *limitConn // the connection redcon reads, on the goroutine path
	// cleanBatches counts the batches served in a row on the goroutine
	// path without a dedicated connection; at loopReturnAfter the client
	// goes back to an event loop.
	cleanBatches int

	// Per-batch scratch, reused to keep the hot path free of allocations.
	cmds  []redcon.Command
	segs  []segment
	reqs  []*request
	infos []*cmdInfo
	items []pinItem
	local []byte
	wbuf  []byte
	out   []byte
	again *request // unanswered reads of a dead connection, run again

	// Set by classify for the command it looked at.
	raw     []byte // bytes to forward: the client's own, or a rewrite
	op      stateOp
	opArg   int
	refusal bool // the local error is the proxy refusing the command
}

// segment is a run of a pooled batch: local replies, or commands forwarded
// together to one server.
type segment struct {
	req    *request // nil for local replies
	pool   *pool
	lo, hi int // local: range of s.local; forwarded: range of s.infos
}

// pinItem is one command of a pinned batch.
type pinItem struct {
	local  bool
	lo, hi int
	info   *cmdInfo
	op     stateOp
	arg    int
}

func (p *Proxy) handle(conn redcon.Conn, cmd redcon.Command) {
	s := conn.Context().(*session)
	s.cmds = append(s.cmds[:0], cmd)
	s.cmds = append(s.cmds, conn.ReadPipeline()...)
	if lc := s.lc; lc != nil {
		for _, c := range s.cmds {
			if len(c.Raw) > 0 && c.Raw[0] == '*' {
				lc.consumed += int64(len(c.Raw))
			} else {
				lc.inline = true
			}
		}
	}
	s.serve(s.cmds)
	clear(s.cmds)
	if s.pin != nil || s.tunneled || s.closing {
		s.cleanBatches = 0
	} else if s.cleanBatches++; int64(s.cleanBatches) >= p.returnAfter.Load() && s.returnToLoop(conn) {
		return
	}
	if !s.tunneled && !s.closing {
		s.refreshWriteDeadline()
	}
}

// loopReturnAfter is how many batches in a row a client moved off an
// event loop (by WATCH, an interactive MULTI, …) must run without a
// dedicated connection before it goes back to a loop: one that keeps
// using transactions stays where it is instead of moving at each one.
const loopReturnAfter = 16

// returnToLoop gives the client back to an event loop, which serves it
// from its next request on, and reports whether it did. Only when redcon
// holds none of the client's input: every byte it was given is in a
// command it handed over (redcon may keep complete commands for its next
// batch, and part of one still arriving); the replies of the batch are
// written first. A client that sent an inline command stays.
func (s *session) returnToLoop(conn redcon.Conn) bool {
	lc, loops := s.lc, s.p.loopsv.Load()
	if loops == nil || len(*loops) == 0 || lc == nil || lc.inline || len(lc.prefix) > 0 || lc.pending != "" || lc.delivered != lc.consumed {
		return false
	}
	dc := conn.Detach()  // redcon neither reads nor closes it any more
	conn.SetContext(nil) // and its close callback does not end the session
	s.cleanBatches = 0
	if err := dc.Flush(); err != nil {
		lc.Conn.Close()
		s.end()
		return true
	}
	s.conn, s.lc = nil, nil
	l := (*loops)[s.p.nloop.Add(1)%uint64(len(*loops))]
	if err := l.adopt(lc.Conn, s); err != nil {
		s.p.log.Warn("client not returned to the event loop", "client", s.id, "err", err)
		s.end()
		return true
	}
	s.p.m.loopReturns.Inc()
	return true
}

// refreshWriteDeadline keeps a deadline on writes to the client, so one that
// stops reading is dropped after about WriteTimeout instead of holding its
// goroutine for ever. Setting a deadline costs a timer update, so it is moved
// only when half of it has passed.
func (s *session) refreshWriteDeadline() {
	now := time.Now()
	wt := s.p.cfg.WriteTimeout
	if now.Add(wt / 2).After(s.deadline) {
		s.deadline = now.Add(wt)
		s.conn.NetConn().SetWriteDeadline(s.deadline)
	}
}

func (s *session) serve(cmds []redcon.Command) {
	start := time.Now()
	for i := 0; i < len(cmds) && !s.closing && !s.tunneled; {
		if s.pin != nil {
			i = s.runPinned(cmds, i, start)
		} else {
			i = s.runPooled(cmds, i, start)
		}
	}
}

func (s *session) routesFor(start time.Time) (*routes, string) {
	return s.p.hold(context.Background(), start.Add(s.p.cfg.HoldTimeout), (*routes).ready)
}

// enter returns routes that are ready, counting the batch as active until
// the caller calls s.p.active.Add(-1). The count is taken before the routes
// are read, so Pause, which sets paused and then waits for the count to
// drain, either sees this batch or this batch sees the pause.
func (s *session) enter(start time.Time) (*routes, string) {
	for {
		s.p.active.Add(1)
		if rt := s.p.routes.Load(); rt.ready() {
			return rt, ""
		}
		s.p.active.Add(-1)
		if _, msg := s.routesFor(start); msg != "" {
			return nil, msg
		}
	}
}

// runPooled runs cmds[i:] over shared connections until a command needs a
// dedicated connection, and returns the index of the first command it did
// not run.
func (s *session) runPooled(cmds []redcon.Command, i int, start time.Time) int {
	rt, msg := s.enter(start)
	if msg != "" {
		for ; i < len(cmds); i++ {
			s.conn.WriteError(msg)
		}
		return i
	}
	s.segs, s.local, s.infos = s.segs[:0], s.local[:0], s.infos[:0]
	nreq := 0
	k := kForward
	for ; i < len(cmds); i++ {
		var info *cmdInfo
		lo := len(s.local)
		k, info = s.classify(rt.table, cmds[i])
		if k == kLocal {
			s.addLocal(info, lo)
			continue
		}
		if k != kForward && k != kRead && k != kScan {
			break
		}
		pl := rt.master
		if n := uint64(len(rt.replicas)); n > 0 {
			switch k {
			case kRead:
				pl = rt.replicas[s.p.rr.Add(1)%n]
			case kScan:
				pl = rt.replicas[uint64(s.id)%n]
			}
		}
		if n := len(s.segs); n > 0 && s.segs[n-1].req != nil && s.segs[n-1].pool == pl {
			seg := &s.segs[n-1]
			seg.req.cmds = append(seg.req.cmds, s.raw)
			seg.hi++
		} else {
			req := s.request(nreq)
			nreq++
			req.cmds = append(req.cmds, s.raw)
			s.segs = append(s.segs, segment{req: req, pool: pl, lo: len(s.infos), hi: len(s.infos) + 1})
		}
		s.infos = append(s.infos, info)
	}
	s.flushPooled(rt, start)
	s.p.active.Add(-1)
	if i == len(cmds) || s.closing {
		return len(cmds)
	}
	switch k {
	case kQuit:
		s.quit()
		return len(cmds)
	case kReset:
		s.reset()
		return i + 1
	}
	// kPin or kTunnel: cmds[i] runs on a dedicated connection.
	if msg := s.acquirePin(start); msg != "" {
		s.conn.WriteError(msg)
		return i + 1
	}
	if k == kTunnel {
		s.tunnel(cmds[i:], true)
		return len(cmds)
	}
	return i
}

func (s *session) addLocal(info *cmdInfo, lo int) {
	info.count(s.local[lo] == '-')
	if n := len(s.segs); n > 0 && s.segs[n-1].req == nil && s.segs[n-1].hi == lo {
		s.segs[n-1].hi = len(s.local)
		return
	}
	s.segs = append(s.segs, segment{lo: lo, hi: len(s.local)})
}

func (s *session) request(k int) *request {
	for len(s.reqs) <= k {
		s.reqs = append(s.reqs, newRequest())
	}
	r := s.reqs[k]
	r.reset(s.p.cfg.MaxOutput)
	return r
}

// flushPooled sends every forwarded segment, then writes all replies in
// order. It waits for every request it sent, even after a failure, so no
// backend connection still refers to a request when it is reused.
func (s *session) flushPooled(rt *routes, start time.Time) {
	for k := range s.segs {
		if s.segs[k].req != nil {
			s.dispatch(rt, &s.segs[k], start)
		}
	}
	overflow := false
	for k := range s.segs {
		seg := &s.segs[k]
		if seg.req == nil {
			s.conn.WriteRaw(s.local[seg.lo:seg.hi])
			continue
		}
		<-seg.req.done
		if seg.req.overflow {
			overflow = true
		}
		if overflow {
			continue
		}
		r := seg.req
		if r.failed != nil && rerunErr(r.failed) && rerunPooled(s.infos[seg.lo+r.answered:seg.hi], s.segs[k+1:], s.infos) {
			overflow = s.rerun(seg, start)
			continue
		}
		s.conn.WriteRaw(r.out)
		s.account(r.isErr, s.infos[seg.lo:seg.hi], start)
	}
	if overflow {
		s.drop("output_limit")
	}
}

// rerunPooled reports whether the unanswered commands of a segment whose
// connection died may run again, as on an event loop: all of them are fast
// reads (cmdInfo.fastRead), and no command of the client after them can
// have run already and changed what they read (the later segments hold
// reads only).
func rerunPooled(unanswered []*cmdInfo, later []segment, infos []*cmdInfo) bool {
	if len(unanswered) == 0 {
		return false
	}
	for _, info := range unanswered {
		if !info.fastRead() {
			return false
		}
	}
	for _, seg := range later {
		if seg.req == nil {
			continue
		}
		for _, info := range infos[seg.lo:seg.hi] {
			if !info.has(flagReadonly) {
				return false
			}
		}
	}
	return true
}

// rerun writes the replies seg's request got before its connection died,
// then runs the unanswered commands again, once, on the master (waiting for
// one as any command does), and writes their replies. It reports whether
// their replies passed the output limit.
func (s *session) rerun(seg *segment, start time.Time) (overflow bool) {
	r := seg.req
	s.conn.WriteRaw(r.out[:r.answeredOut])
	s.account(r.isErr[:r.answered], s.infos[seg.lo:seg.lo+r.answered], start)
	if s.again == nil {
		s.again = newRequest()
	}
	again := s.again
	again.reset(s.p.cfg.MaxOutput)
	again.cmds = append(again.cmds, r.cmds[r.answered:]...)
	s.p.m.requeued.WithLabelValues("yes").Add(float64(len(again.cmds)))
	rt, msg := s.routesFor(start)
	if msg != "" {
		again.failWith(msg)
	} else {
		s.dispatch(rt, &segment{req: again, pool: rt.master}, start)
	}
	<-again.done
	if again.overflow {
		return true
	}
	s.conn.WriteRaw(again.out)
	s.account(again.isErr, s.infos[seg.lo+r.answered:seg.hi], start)
	return false
}

// dispatch sends seg's request. A replica that cannot take it sends it to
// the master instead; a master that cannot take it is waited for until the
// hold deadline, and then the commands get the hold error.
func (s *session) dispatch(rt *routes, seg *segment, start time.Time) {
	r := seg.req
	hint := uint64(s.id)
	if seg.pool.send(hint, r) {
		return
	}
	for {
		if rt.master != nil && rt.master.send(hint, r) {
			return
		}
		cur := rt
		var msg string
		rt, msg = s.p.hold(context.Background(), start.Add(s.p.cfg.HoldTimeout), func(n *routes) bool {
			return n != cur && n.ready()
		})
		if msg != "" {
			r.failWith(msg)
			return
		}
	}
}

func (s *session) account(isErr []bool, infos []*cmdInfo, start time.Time) {
	d := time.Since(start).Seconds()
	for j, info := range infos {
		info.count(isErr[j])
		s.p.m.latency.Observe(d)
	}
}

// runPinned runs cmds[i:] on the session's dedicated connection. Commands
// are sent in groups (one write each); a group ends after a command that may
// make the connection clean, so the pin is released as soon as it is.
func (s *session) runPinned(cmds []redcon.Command, i int, start time.Time) int {
	rt := s.p.routes.Load()
	if rt.table == nil {
		var msg string
		if rt, msg = s.routesFor(start); msg != "" {
			s.conn.WriteError(msg)
			return i + 1
		}
	}
	d := s.pin
	s.items, s.wbuf, s.local = s.items[:0], s.wbuf[:0], s.local[:0]
	k := kForward
group:
	for ; i < len(cmds); i++ {
		lo := len(s.local)
		var info *cmdInfo
		k, info = s.classify(rt.table, cmds[i])
		switch k {
		case kLocal:
			info.count(s.local[lo] == '-')
			s.items = append(s.items, pinItem{local: true, lo: lo, hi: len(s.local)})
		case kForward, kRead, kPin:
			s.wbuf = append(s.wbuf, s.raw...)
			s.items = append(s.items, pinItem{info: info, op: s.op, arg: s.opArg})
			if s.op.endsGroup(s.opArg) {
				i++
				k = kForward
				break group
			}
		default:
			break group
		}
	}
	var err error
	if len(s.wbuf) > 0 {
		_, err = d.nc.Write(s.wbuf)
	}
	over := false
	lost := func() string {
		return "ERR redis-proxy: connection to " + d.p.addr + " lost, outcome unknown"
	}
	for _, it := range s.items {
		if it.local {
			s.conn.WriteRaw(s.local[it.lo:it.hi])
			continue
		}
		if err != nil || over {
			s.conn.WriteError(lost())
			it.info.fail.Inc()
			continue
		}
		s.out, over, err = d.rr.appendValue(s.out[:0], s.p.cfg.MaxOutput)
		if err != nil || over {
			if err != nil {
				s.conn.WriteError(lost())
				it.info.fail.Inc()
			}
			continue
		}
		reply := s.applyOp(it, s.out)
		s.conn.WriteRaw(reply)
		it.info.count(reply[0] == '-')
		s.p.m.latency.Observe(time.Since(start).Seconds())
	}
	if cap(s.out) > 1<<20 {
		s.out = nil
	}
	switch {
	case over:
		s.drop("output_limit")
		return len(cmds)
	case err != nil:
		s.pinLost(err)
		return len(cmds)
	}
	if s.dbUnknown {
		s.dbUnknown = false
		if err := s.readDB(d); err != nil {
			s.pinLost(err)
			return len(cmds)
		}
	}
	if s.tunnelNow {
		// EXEC ran SUBSCRIBE, HELLO 3 or the like. A RESP2 subscriber
		// accepts no handshake (nor CLIENT GETNAME, so the name need not
		// be given); otherwise the handshake goes as usual.
		s.tunnelNow = false
		s.tunnel(cmds[i:], !s.subscribedAtExec)
		return len(cmds)
	}
	if s.st.clean() {
		s.releasePin(true)
	}
	if i == len(cmds) {
		return i
	}
	switch k {
	case kQuit:
		s.quit()
		return len(cmds)
	case kReset:
		s.reset()
		return i + 1
	case kTunnel:
		if s.pin == nil {
			// The state ended in this batch (a refused SELECT, say) and
			// its connection went back: runPooled takes one for the tunnel.
			return i
		}
		s.tunnel(cmds[i:], true)
		return len(cmds)
	}
	return i
}

// execAborted is Redis's reply to EXEC after a command was refused while
// queueing.
const execAborted = "-EXECABORT Transaction discarded because of previous errors.\r\n"

// pinLost ends a session whose dedicated connection failed: its
// server-side state (transaction, database) is gone with the connection,
// and the client must learn that, as with Redis itself.
func (s *session) pinLost(err error) {
	s.p.log.Warn("pinned connection lost", "client", s.id, "server", s.pin.p.addr, "err", err)
	s.drop("backend_lost")
}

// applyOp updates the tracked state of the pinned connection from a reply
// and returns the reply to give the client.
func (s *session) applyOp(it pinItem, reply []byte) []byte {
	ok := len(reply) > 2 && string(reply[:3]) == "+OK"
	queued := string(reply) == "+QUEUED\r\n"
	switch it.op {
	case opExec:
		if it.arg == 1 { // it ended a transaction
			executed := reply[0] == '*' && reply[1] != '-'
			if executed && s.st.queuedDB {
				// Which of the queued SELECTs succeeded is in EXEC's
				// reply; the server knows for sure, so ask it (rare).
				s.dbUnknown = true
			}
			if executed && s.st.tunnelAtExec {
				s.tunnelNow = true
			}
			if executed && s.st.queuedName != nil {
				s.name = *s.st.queuedName
			}
			s.endTransaction()
		}
	case opExecAbort:
		s.endTransaction()
		if ok {
			return []byte(execAborted)
		}
	case opDiscard:
		if it.arg == 1 && ok {
			s.endTransaction()
		}
	case opWatch:
		if ok {
			s.st.watching = true
		}
	case opUnwatch:
		if ok && !s.st.inMulti {
			s.st.watching = false
		}
	case opSelect:
		if ok {
			s.st.db = it.arg
		} else if queued {
			s.st.queuedDB = true
		}
	case opAuthUser:
		if reply[0] != '-' {
			s.setAuthed()
			s.st.aclUser = true
		}
	case opTunnelLater:
		if queued {
			s.st.tunnelAtExec = true
		}
	}
	return reply
}

// readDB asks the server which database the pinned connection is in.
func (s *session) readDB(d *dedicated) error {
	s.wbuf = appendCommand(s.wbuf[:0], "CLIENT", "INFO")
	if _, err := d.nc.Write(s.wbuf); err != nil {
		return err
	}
	reply, _, err := d.rr.appendValue(nil, 64<<10)
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(reply)) {
		if v, ok := strings.CutPrefix(f, "db="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				s.st.db = n
				return nil
			}
		}
	}
	return fmt.Errorf("CLIENT INFO without db: %q", reply)
}

// endTransaction clears what EXEC and DISCARD clear on the server.
func (s *session) endTransaction() {
	if !s.tunnelNow {
		s.subscribedAtExec = false
	}
	s.st.watching, s.st.queuedDB, s.st.tunnelAtExec, s.st.execAbort = false, false, false, false
	s.st.queuedName = nil
}

// acquirePin gives the session a dedicated connection to the master,
// waiting (like any command) for a master during a failover. It returns the
// error reply when it cannot.
func (s *session) acquirePin(start time.Time) string {
	max := int64(s.p.cfg.MaxPinned)
	if s.p.pinned.Add(1) > max {
		s.p.pinned.Add(-1)
		s.p.m.rejected.WithLabelValues("max_pinned").Inc()
		return fmt.Sprintf("ERR redis-proxy: too many pinned connections (max %d), retry later", max)
	}
	deadline := start.Add(s.p.cfg.HoldTimeout)
	rt := s.p.routes.Load()
	for {
		if rt.master != nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.p.cfg.DialTimeout)
			d, err := rt.master.acquire(ctx)
			cancel()
			if err == nil {
				s.pin = d
				s.st = pinState{}
				s.p.m.pinned.Inc()
				return ""
			}
			s.p.log.Debug("dedicated connection failed", "server", rt.master.addr, "err", err)
		}
		cur := rt
		var msg string
		rt, msg = s.p.hold(context.Background(), deadline, func(n *routes) bool { return n != cur && n.ready() })
		if msg != "" {
			s.p.pinned.Add(-1)
			return msg
		}
	}
}

// releasePin gives the dedicated connection back; clean says whether its
// server-side state is known to be clean so it may serve another session.
func (s *session) releasePin(clean bool) {
	if s.pin == nil {
		return
	}
	s.pin.p.release(s.pin, clean)
	s.pin = nil
	s.st = pinState{}
	s.subscribedAtExec = false
	s.p.pinned.Add(-1)
	s.p.m.pinned.Dec()
}

func (s *session) quit() {
	s.conn.WriteString("OK")
	s.closing = true
	s.conn.Close()
}

// reset is RESET: as on Redis, the connection leaves every state and is
// de-authenticated.
func (s *session) reset() {
	s.resetState()
	s.conn.WriteString("RESET")
}

func (s *session) resetState() {
	s.releasePin(false)
	s.name = ""
	s.authed = s.p.cfg.ClientPassword == ""
	if s.scan != nil {
		s.scan.unauth = !s.authed
	}
}

// drop disconnects the client after writing what it has been answered.
func (s *session) drop(reason string) {
	s.p.m.rejected.WithLabelValues(reason).Inc()
	s.releasePin(false)
	s.closing = true
	s.conn.Close()
}

// end releases what the session holds; redcon calls it once the client
// connection is gone.
func (s *session) end() {
	if s.ended {
		return
	}
	s.ended = true
	s.releasePin(false)
	s.p.clients.Add(-1)
	s.p.m.clients.Dec()
}

// tunnel turns the session into a full-duplex pipe to its dedicated
// connection for the rest of its life: replies, pushed messages and MONITOR
// output flow to the client as Redis sends them, in order. The proxy still
// reads each client command, so refused commands and the proxy's own AUTH
// are answered; those answers are produced by the server (an EVAL that
// returns the reply) so they stay in order with everything else.
func (s *session) tunnel(rest []redcon.Command, handshake bool) {
	s.tunneled = true
	d := s.pin
	dc := s.conn.Detach()
	defer dc.Close()
	if err := dc.Flush(); err != nil {
		return
	}
	client := dc.NetConn()
	if lc, ok := client.(*limitConn); ok {
		client = lc.Conn
	}
	client.SetReadDeadline(time.Time{})
	if handshake {
		// The name was kept by the proxy; the server should show it in
		// CLIENT LIST. The server's id for this connection is what CLIENT
		// UNBLOCK from other clients must name.
		s.wbuf = appendCommand(s.wbuf[:0], "CLIENT", "SETNAME", s.name)
		s.wbuf = appendCommand(s.wbuf, "CLIENT", "ID")
		// (SETNAME "" clears nothing on an unnamed connection; it keeps the
		// reply count fixed.)
		if _, err := d.nc.Write(s.wbuf); err != nil {
			return
		}
		var hs []byte
		var err error
		for range 2 {
			if hs, _, err = d.rr.appendValue(hs[:0], 4096); err != nil {
				return
			}
		}
		if hs[0] == ':' {
			if id, ok := parseLen(hs[1 : len(hs)-2]); ok {
				s.p.tunnels.Store(s.id, id)
				defer s.p.tunnels.Delete(s.id)
			}
		}
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		s.copyToClient(d, client)
		client.Close()
	}()
	s.wbuf = s.wbuf[:0]
	for _, c := range rest {
		s.wbuf = append(s.wbuf, s.tunnelBytes(c)...)
	}
	_, err := d.nc.Write(s.wbuf)
	for err == nil {
		var c redcon.Command
		if c, err = dc.ReadCommand(); err == nil {
			_, err = d.nc.Write(s.tunnelBytes(c))
		}
	}
	d.nc.Close()
	<-copied
}

// copyToClient copies everything the server sends to the client until
// either side fails. A client that does not take the bytes for WriteTimeout
// is disconnected.
func (s *session) copyToClient(d *dedicated, client net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := d.rr.br.Read(buf)
		if n > 0 {
			client.SetWriteDeadline(time.Now().Add(s.p.cfg.WriteTimeout))
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// tunnelBytes returns what to send to the server for a client command in a
// tunnel: the command itself, or for a reply the proxy makes, an EVAL that
// makes the server send that reply.
func (s *session) tunnelBytes(c redcon.Command) []byte {
	rt := s.p.routes.Load()
	if rt.table == nil {
		return c.Raw
	}
	s.local = s.local[:0]
	k, _ := s.classify(rt.table, c)
	if k != kLocal {
		return s.raw
	}
	if ev, ok := evalFor(s.local); ok {
		return ev
	}
	return c.Raw
}

// evalFor returns an EVAL that makes Redis send reply (a reply the proxy
// made), so that it can be queued in a transaction or ordered in a tunnel
// like any reply from the server. Arrays cannot be made this way.
func evalFor(reply []byte) ([]byte, bool) {
	if len(reply) < 3 {
		return nil, false
	}
	body := string(reply[1 : len(reply)-2])
	switch reply[0] {
	case '+':
		return appendCommand(nil, "EVAL", "return redis.status_reply(ARGV[1])", "0", body), true
	case '-':
		return appendCommand(nil, "EVAL", "return redis.error_reply(ARGV[1])", "0", body), true
	case ':':
		return appendCommand(nil, "EVAL", "return tonumber(ARGV[1])", "0", body), true
	case '$':
		if body == "-1" {
			return appendCommand(nil, "EVAL", "return false", "0"), true
		}
		if _, v, ok := strings.Cut(body, "\r\n"); ok {
			return appendCommand(nil, "EVAL", "return ARGV[1]", "0", v), true
		}
	}
	return nil, false
}

// Error replies the proxy makes itself, worded as Redis words them.
const (
	errNoAuth      = "NOAUTH Authentication required."
	errWrongPass   = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPassword  = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errHelloNoAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	errNotInteger  = "ERR value is not an integer or out of range"
	errClientName  = "ERR Client names cannot contain spaces, newlines or special characters."
)

func (s *session) localOK(info *cmdInfo) (kind, *cmdInfo) {
	s.local = append(s.local, "+OK\r\n"...)
	return kLocal, info
}

func (s *session) localErr(info *cmdInfo, msg string) (kind, *cmdInfo) {
	s.local = appendError(s.local, msg)
	return kLocal, info
}

func wrongArgs(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

// dedicatedConn reports whether the command would run on a connection of
// this session's own, where connection state may be changed freely.
func (s *session) dedicatedConn() bool { return s.pin != nil || s.tunneled }

// classify decides what to do with one command, given the session's state.
// It sets s.raw (what to forward), s.op and s.opArg, and for kLocal appends
// the reply to s.local. It performs no I/O.
//
// Inside a transaction on a pinned connection, a reply the proxy makes
// must behave as a queued command. Redis rejects a command while queueing
// (and EXEC then aborts) only for an unknown command or a wrong number of
// arguments, which go to Redis as they are; any other error it gives
// inside EXEC's reply. So the proxy's own refusals (REPLICAOF, ...) are
// answered now and abort the transaction, the safe side for a command the
// client meant to run atomically with others, and every other reply the
// proxy makes is queued as an EVAL that returns it.
func (s *session) classify(t *cmdTable, c redcon.Command) (kind, *cmdInfo) {
	lo := len(s.local)
	inTx := s.st.inMulti && s.pin != nil && !s.tunneled
	s.refusal = false
	k, info := s.classifyCommand(t, c)
	if k != kLocal || !inTx {
		return k, info
	}
	if s.local[lo] != '-' || !s.refusal {
		if ev, ok := evalFor(s.local[lo:]); ok {
			s.local = s.local[:lo]
			s.raw = ev
			return kForward, info
		}
		s.local = s.local[:lo]
		s.localErr(info, "ERR redis-proxy: "+strings.ToUpper(info.name)+" is not supported inside MULTI")
	}
	s.st.execAbort = true
	return kLocal, info
}

func (s *session) classifyCommand(t *cmdTable, c redcon.Command) (kind, *cmdInfo) {
	args := c.Args
	s.raw, s.op, s.opArg = c.Raw, opNone, 0
	info := s.lookups.lookup(t, args)
	name := info.name
	if !info.arityOK(len(args)) && info != t.unknown {
		// Redis rejects it before looking at anything else, changing no
		// state (inside MULTI it flags the transaction): let it say so.
		return kForward, info
	}
	if !s.authed {
		switch name {
		case "auth", "hello", "quit", "reset":
		default:
			return s.localErr(info, errNoAuth)
		}
	}
	inMulti := s.st.inMulti
	switch name {
	case "auth":
		return s.auth(info, args)
	case "hello":
		return s.hello(info, args)
	case "quit":
		return kQuit, info
	case "reset":
		if s.tunneled {
			// The server resets the connection; the proxy forgets what it
			// keeps for it (the name, the client's authentication).
			s.name = ""
			s.authed = s.p.cfg.ClientPassword == ""
			return kForward, info
		}
		return kReset, info
	case "select":
		if len(args) != 2 {
			return s.localErr(info, wrongArgs("select"))
		}
		// Redis takes only the canonical form ("1", not "01", "+1", "-0").
		n, ok := parseLen(args[1])
		if !ok || n != int64(int(n)) || strconv.FormatInt(n, 10) != string(args[1]) {
			return s.localErr(info, errNotInteger)
		}
		s.op, s.opArg = opSelect, int(n)
		if s.dedicatedConn() {
			return kForward, info
		}
		if n == 0 {
			return s.localOK(info)
		}
		return kPin, info
	case "multi":
		s.op = opMulti
		if !s.dedicatedConn() {
			return kPin, info
		}
		if !inMulti {
			s.st.inMulti = true
			s.st.execAbort, s.st.tunnelAtExec = false, false
		}
		return kForward, info
	case "watch":
		s.op = opWatch
		if !s.dedicatedConn() {
			return kPin, info
		}
		return kForward, info
	case "exec", "discard":
		s.op = opExec
		if name == "discard" {
			s.op = opDiscard
		}
		if inMulti {
			s.opArg = 1
			s.st.inMulti = false
			if name == "exec" && s.st.execAbort {
				s.op = opExecAbort
				s.raw = discardCommand
			}
		}
		return kForward, info
	case "unwatch":
		s.op = opUnwatch
		return kForward, info
	case "subscribe", "psubscribe", "ssubscribe", "monitor":
		if inMulti && !s.tunneled {
			s.subscribedAtExec = true // if EXEC runs it; reset with the pin
		}
		return s.needsTunnel(info)
	case "unsubscribe", "punsubscribe", "sunsubscribe":
		if inMulti || s.tunneled {
			return kForward, info
		}
		// Not subscribed (else this would be a tunnel): Redis answers one
		// message per channel named, which must not reach a shared
		// connection's reply stream.
		return s.unsubscribed(info, name, args)
	case "replicaof", "slaveof", "failover", "sync", "psync":
		s.refusal = true
		return s.localErr(info, "ERR redis-proxy: "+strings.ToUpper(name)+" is refused: replication is managed by the proxy")
	case "shutdown":
		s.refusal = true
		return s.localErr(info, "ERR redis-proxy: SHUTDOWN is refused: the proxy manages the Redis servers; stop them on their hosts")
	case "config|set":
		for j := 2; j < len(args); j += 2 {
			if replicationSetting(args[j]) {
				s.refusal = true
				return s.localErr(info, "ERR redis-proxy: CONFIG SET "+strings.ToLower(string(args[j]))+" is refused: replication is managed by the proxy")
			}
		}
		return kForward, info
	case "script|load":
		if len(args) == 3 {
			s.p.scripts.note(args[2])
		}
		return kForward, info
	case "script|flush":
		s.p.scripts.forget()
		return kForward, info
	case "evalsha_ro":
		// A replica's script cache is its own: the script may be loaded
		// on the master only (or just now), so the master runs it.
		return kForward, info
	case "wait", "waitaof":
		if inMulti || s.tunneled {
			return kForward, info
		}
		return kTunnel, info
	case "xread", "xreadgroup":
		if !inMulti && !s.tunneled && hasBlockOption(args) {
			return kTunnel, info
		}
	case "scan", "sscan", "hscan", "zscan":
		// A cursor means something only on the server that made it.
		if !inMulti && s.pin == nil && !s.tunneled && s.p.cfg.ReadFrom == ReadFromReplicas {
			return kScan, info
		}
		return kForward, info
	}
	if strings.HasPrefix(name, "client|") {
		return s.client(info, args)
	}
	switch {
	case s.tunneled || inMulti:
		return kForward, info
	case info.has(flagBlocking) && name != "xread" && name != "xreadgroup":
		return kTunnel, info
	case info.has(flagReadonly) && s.pin == nil && s.p.cfg.ReadFrom == ReadFromReplicas:
		return kRead, info
	}
	return kForward, info
}

func (s *session) auth(info *cmdInfo, args [][]byte) (kind, *cmdInfo) {
	switch {
	case len(args) == 2:
		if s.p.cfg.ClientPassword == "" {
			return s.localErr(info, errNoPassword)
		}
		return s.checkPassword(info, args[1])
	case len(args) == 3 && strings.EqualFold(string(args[1]), "default"):
		return s.checkPassword(info, args[2])
	case len(args) == 3:
		// Another ACL user: only Redis can say, on a connection of its own.
		s.op = opAuthUser
		if s.dedicatedConn() {
			return kForward, info
		}
		return kPin, info
	case len(args) > 3:
		return s.localErr(info, "ERR syntax error")
	}
	return s.localErr(info, wrongArgs("auth"))
}

func (s *session) checkPassword(info *cmdInfo, pw []byte) (kind, *cmdInfo) {
	want := s.p.cfg.ClientPassword
	if want == "" || subtle.ConstantTimeCompare(pw, []byte(want)) == 1 {
		s.setAuthed()
		return s.localOK(info)
	}
	return s.localErr(info, errWrongPass)
}

// hello handles HELLO [protover [AUTH user pass] [SETNAME name]]. The proxy
// checks its own password and keeps the name; the server sees HELLO with
// the protocol (and an ACL user's credentials, which only it can check).
// RESP3 needs a tunnel: replies and pushes take RESP3 shapes.
func (s *session) hello(info *cmdInfo, args [][]byte) (kind, *cmdInfo) {
	proto := 0
	j := 1
	if len(args) > 1 {
		n, err := strconv.Atoi(string(args[1]))
		if err != nil {
			return s.localErr(info, "ERR Protocol version is not an integer or out of range")
		}
		if n != 2 && n != 3 {
			return s.localErr(info, "NOPROTO unsupported protocol version")
		}
		proto, j = n, 2
	}
	var user, pass, name []byte
	hasName := false
	for ; j < len(args); j++ {
		switch strings.ToLower(string(args[j])) {
		case "auth":
			if j+2 >= len(args) {
				return s.localErr(info, "ERR Syntax error in HELLO option '"+string(args[j])+"'")
			}
			user, pass = args[j+1], args[j+2]
			j += 2
		case "setname":
			if j+1 >= len(args) {
				return s.localErr(info, "ERR Syntax error in HELLO option '"+string(args[j])+"'")
			}
			name, hasName = args[j+1], true
			j++
		default:
			return s.localErr(info, "ERR Syntax error in HELLO option '"+string(args[j])+"'")
		}
	}
	aclUser := user != nil && !strings.EqualFold(string(user), "default")
	if user != nil && !aclUser {
		want := s.p.cfg.ClientPassword
		if want != "" && subtle.ConstantTimeCompare(pass, []byte(want)) != 1 {
			return s.localErr(info, errWrongPass)
		}
		s.setAuthed()
	}
	if !s.authed && !aclUser {
		return s.localErr(info, errHelloNoAuth)
	}
	if hasName {
		if !validClientName(name) {
			return s.localErr(info, errClientName)
		}
		s.name = string(name)
	}
	fwd := []string{"HELLO"}
	if proto != 0 {
		fwd = append(fwd, strconv.Itoa(proto))
	}
	if aclUser {
		fwd = append(fwd, "AUTH", string(user), string(pass))
		s.op = opAuthUser
	}
	s.raw = appendCommand(nil, fwd...)
	switch {
	case proto == 3 && !aclUser:
		return s.needsTunnel(info)
	case s.tunneled || s.st.inMulti:
		return kForward, info
	case proto == 3:
		return kTunnel, info
	case aclUser && s.pin == nil:
		return kPin, info
	}
	return kForward, info
}

// client handles the CLIENT subcommands that concern the connection itself.
func (s *session) client(info *cmdInfo, args [][]byte) (kind, *cmdInfo) {
	arg := func(i int) string {
		if i < len(args) {
			return strings.ToLower(string(args[i]))
		}
		return ""
	}
	switch info.name {
	case "client|id":
		s.local = redcon.AppendInt(s.local, s.id)
		return kLocal, info
	case "client|unblock":
		return s.unblock(info, args)
	case "client|getname":
		if s.tunneled {
			// The tunnel's server was given the name and sees every SETNAME
			// since, with Redis's own transaction semantics.
			return kForward, info
		}
		name := s.name
		if s.st.queuedName != nil { // queued in this transaction, runs before
			name = *s.st.queuedName
		}
		if name == "" {
			s.local = append(s.local, "$-1\r\n"...)
		} else {
			s.local = redcon.AppendBulkString(s.local, name)
		}
		return kLocal, info
	}
	if s.tunneled {
		if info.name == "client|setname" && len(args) == 3 && validClientName(args[2]) && !s.st.inMulti {
			s.name = string(args[2])
		}
		return kForward, info
	}
	switch info.name {
	case "client|setname":
		if len(args) != 3 {
			return s.localErr(info, wrongArgs("client|setname"))
		}
		if !validClientName(args[2]) {
			return s.localErr(info, errClientName)
		}
		name := string(args[2])
		if s.st.inMulti && s.pin != nil {
			s.st.queuedName = &name // Redis names the client when EXEC runs it
		} else {
			s.name = name
		}
		return s.localOK(info)
	case "client|reply":
		if arg(2) == "on" {
			return s.localOK(info)
		}
		if s.st.inMulti {
			// Redis answers EXEC with a truncated array then; refuse.
			s.refusal = true
			return s.localErr(info, "ERR redis-proxy: CLIENT REPLY is not supported inside MULTI")
		}
		return kTunnel, info
	case "client|tracking":
		// Tracking can only be on in a tunnel, so off is already true.
		if arg(2) == "off" && len(args) == 3 {
			return s.localOK(info)
		}
		return s.needsTunnel(info)
	case "client|no-evict", "client|no-touch":
		return s.needsTunnel(info)
	}
	return kForward, info
}

// unblock handles CLIENT UNBLOCK id: the id is the proxy's (what CLIENT ID
// answered); a blocked client is a tunnel, whose server-side id is known.
func (s *session) unblock(info *cmdInfo, args [][]byte) (kind, *cmdInfo) {
	if len(args) < 3 || len(args) > 4 {
		return s.localErr(info, wrongArgs("client|unblock"))
	}
	id, ok := parseLen(args[2])
	if !ok {
		return s.localErr(info, errNotInteger)
	}
	backend, found := s.p.tunnels.Load(id)
	if !found {
		s.local = append(s.local, ":0\r\n"...)
		return kLocal, info
	}
	fwd := []string{"CLIENT", "UNBLOCK", strconv.FormatInt(backend.(int64), 10)}
	if len(args) == 4 {
		fwd = append(fwd, string(args[3]))
	}
	s.raw = appendCommand(nil, fwd...)
	return kForward, info
}

// setAuthed records a successful authentication; from then on the client
// may send requests as large as any other client's.
func (s *session) setAuthed() {
	s.authed = true
	if s.scan != nil {
		s.scan.unauth = false
	}
}

// unsubscribed answers (P|S)UNSUBSCRIBE for a client with no subscriptions.
func (s *session) unsubscribed(info *cmdInfo, name string, args [][]byte) (kind, *cmdInfo) {
	if len(args) == 1 {
		s.local = append(s.local, "*3\r\n"...)
		s.local = redcon.AppendBulkString(s.local, name)
		s.local = append(s.local, "$-1\r\n:0\r\n"...)
		return kLocal, info
	}
	for _, ch := range args[1:] {
		s.local = append(s.local, "*3\r\n"...)
		s.local = redcon.AppendBulkString(s.local, name)
		s.local = redcon.AppendBulk(s.local, ch)
		s.local = append(s.local, ":0\r\n"...)
	}
	return kLocal, info
}

func validClientName(b []byte) bool {
	for _, c := range b {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

// replicationSetting reports whether a CONFIG SET parameter changes how
// the server replicates; the manager owns those.
func replicationSetting(b []byte) bool {
	p := strings.ToLower(string(b))
	for _, prefix := range []string{"replica", "slave", "master", "repl-", "min-replicas", "min-slaves"} {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// hasBlockOption reports whether an XREAD/XREADGROUP has BLOCK before
// STREAMS.
func hasBlockOption(args [][]byte) bool {
	for _, a := range args[1:] {
		if strings.EqualFold(string(a), "streams") {
			return false
		}
		if strings.EqualFold(string(a), "block") {
			return true
		}
	}
	return false
}
