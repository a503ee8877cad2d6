package command

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The differential test: random sessions run through the new classifier
// (Classify, AfterReply) and through the old one (oldref_test.go), side
// by side, with a driver that carries out each decision the way the old
// session loop did (pinned groups, replies, release, tunnels, RESET). After
// every command and every reply the decisions, the replies, the ops and
// the states must be the same.

var (
	diffSessions = flag.Int("diff.sessions", 10000, "random sessions per differential run")
	diffSeed     = flag.Uint64("diff.seed", 1, "seed of the differential test's random sessions")
)

var oldKinds = map[oldKind]Kind{
	kForward: Forward, kRead: Read, kScan: ReadCursor, kLocal: Local,
	kPin: Pin, kTunnel: Open, kQuit: Close, kReset: Renew,
}

// pending is a command forwarded on the pinned connection whose reply is
// still to come.
type pending struct {
	op  Op
	arg int
}

// driver runs one session through both classifiers.
type driver struct {
	g   *gen
	t   *Table
	env *Env

	st      State
	cache   Cache
	dst     []byte
	scripts []string // the new side's Decision.Script, as events

	old      *oldSession
	oldEnv   *oldEnv
	scripts0 []string // the old side's scripts.note / forget

	pend   []pending
	trace  []string // what happened, for the failure message
	ended  bool
	events map[string]int // how often each kind, op and follow-up came
}

func newDriver(g *gen, t *Table, password string, replicas bool) *driver {
	tunnels := map[int64]int64{7: 1007, 1 << 40: 5}
	env := &Env{Password: password, ReadReplicas: replicas}
	if g.r.IntN(4) > 0 {
		env.TunnelID = func(id int64) (int64, bool) { v, ok := tunnels[id]; return v, ok }
	} else {
		tunnels = nil // Env.TunnelID nil: no client has a tunnel
	}
	d := &driver{g: g, t: t, env: env}
	d.oldEnv = &oldEnv{
		clientPassword: password, readReplicas: replicas, tunnels: tunnels,
		scripts: &d.scripts0, unblockID: resp.ParseInt, selectDB: resp.ParseInt,
	}
	// Most sessions start authenticated (as after AUTH), so that more of
	// the walk is past NOAUTH.
	id, authed := int64(g.r.IntN(10)), password == "" || g.r.IntN(4) > 0
	d.st = State{ID: id, Authed: authed}
	d.old = &oldSession{p: d.oldEnv, id: id, authed: authed}
	// dst starts with a random prefix and spare capacity, which Classify
	// must leave as they are.
	d.dst = make([]byte, g.r.IntN(8), 64)
	for i := range d.dst {
		d.dst[i] = byte('a' + i)
	}
	return d
}

func (d *driver) oldState() State {
	o := d.old
	conn := Shared
	switch {
	case o.tunneled:
		conn = Tunnel
	case o.pin:
		conn = Pinned
	}
	tx := Tx{
		InMulti: o.st.inMulti, ExecAbort: o.st.execAbort, TunnelAtExec: o.st.tunnelAtExec,
		SubscribedAtExec: o.subscribedAtExec, Watching: o.st.watching, ACLUser: o.st.aclUser,
		DB: o.st.db, QueuedDB: o.st.queuedDB,
	}
	if o.st.queuedName != nil {
		tx.QueuedName, tx.HasQueuedName = *o.st.queuedName, true
	}
	return State{ID: o.id, Authed: o.authed, Conn: conn, Name: o.name, Tx: tx}
}

func (d *driver) count(event string) {
	if d.events != nil {
		d.events[event]++
	}
}

func (d *driver) logf(format string, a ...any) {
	d.trace = append(d.trace, fmt.Sprintf(format, a...))
}

func (d *driver) fail(format string, a ...any) error {
	return fmt.Errorf("%s\n\nsession so far:\n  %s", fmt.Sprintf(format, a...), strings.Join(d.trace, "\n  "))
}

func (d *driver) checkStates(when string) error {
	if o := d.oldState(); o != d.st {
		return d.fail("%s: states differ:\n new %+v\n old %+v", when, d.st, o)
	}
	return nil
}

// classify runs one command through both classifiers and compares what
// they decided. It returns the new decision and the state Classify was
// given.
func (d *driver) classify(args [][]byte) (Decision, State, error) {
	raw := resp.AppendCommandArgs(nil, args)
	argsCopy := cloneArgs(args)
	dstCopy := append([]byte(nil), d.dst...)
	before := d.st

	info := d.cache.Lookup(d.t, args)
	st, dec, dst := Classify(d.env, d.st, info, args, d.dst)
	if !sameArgs(args, argsCopy) {
		return dec, before, d.fail("Classify changed its args: %q, was %q", args, argsCopy)
	}
	if !bytes.Equal(dst[:len(dstCopy)], dstCopy) || !bytes.Equal(d.dst, dstCopy) {
		return dec, before, d.fail("Classify changed dst[:len(dst)]")
	}
	local := dst[len(dstCopy):]
	if dec.Kind != Local && len(local) > 0 {
		return dec, before, d.fail("%s: kind %s with a local reply %q", args, kindNames[dec.Kind], local)
	}
	switch dec.Script {
	case ScriptNote:
		d.scripts = append(d.scripts, "note "+string(args[2]))
	case ScriptForget:
		d.scripts = append(d.scripts, "forget")
	}

	lo := len(d.old.local)
	ok, oinfo := d.old.classify(d.t, args, raw)
	olocal := d.old.local[lo:]
	d.old.local = d.old.local[:0]

	fwd := dec.Raw
	if fwd == nil {
		fwd = raw
	}
	d.logf("%s  [%s] -> %s op=%s:%d raw=%q local=%q refused=%v  => %s",
		fmtArgs(args), stateString(before), kindNames[dec.Kind], opNames[dec.Op], dec.Arg, shortRaw(dec.Raw), local, dec.Refused, stateString(st))
	d.st = st
	d.count("kind " + kindNames[dec.Kind])
	d.count("op " + opNames[dec.Op])
	d.count("special " + specialNames[dec.Info.Special] + " on " + connNames[before.Conn])
	if dec.Refused {
		d.count("refused")
	}
	switch {
	case oldKinds[ok] != dec.Kind:
		return dec, before, d.fail("%s: kind new %s, old %s", fmtArgs(args), kindNames[dec.Kind], kindNames[oldKinds[ok]])
	case oinfo != dec.Info || info != d.t.Lookup(args):
		return dec, before, d.fail("%s: info new %s, old %s", fmtArgs(args), dec.Info.Name, oinfo.Name)
	case !bytes.Equal(fwd, d.old.raw):
		return dec, before, d.fail("%s: forwarded bytes new %q, old %q", fmtArgs(args), fwd, d.old.raw)
	case stateOp(dec.Op) != d.old.op || dec.Arg != d.old.opArg:
		return dec, before, d.fail("%s: op new %s:%d, old %d:%d", fmtArgs(args), opNames[dec.Op], dec.Arg, d.old.op, d.old.opArg)
	case !bytes.Equal(local, olocal):
		return dec, before, d.fail("%s: local reply new %q, old %q", fmtArgs(args), local, olocal)
	case dec.Refused != d.old.refusal:
		return dec, before, d.fail("%s: refused new %v, old %v", fmtArgs(args), dec.Refused, d.old.refusal)
	case strings.Join(d.scripts, ";") != strings.Join(d.scripts0, ";"):
		return dec, before, d.fail("%s: script mirror new %q, old %q", fmtArgs(args), d.scripts, d.scripts0)
	}
	if dec.Kind == Renew {
		return dec, before, nil // the old session reset itself later: see run
	}
	return dec, before, d.checkStates(fmtArgs(args))
}

// flush applies the replies of the pinned group, then what the old
// runPinned did after a group: read the database back, tunnel, or give a
// clean connection back.
func (d *driver) flush() (tunnelNow bool, err error) {
	readDB := false
	for _, p := range d.pend {
		reply := d.g.reply(p.op, d.st.Tx.InMulti)
		in := append([]byte(nil), reply...)
		stIn := d.st
		st, f := AfterReply(d.st, p.op, p.arg, reply)
		if !bytes.Equal(in, reply) {
			return false, d.fail("AfterReply changed its reply")
		}
		out := d.old.applyOp(stateOp(p.op), p.arg, reply)
		got := reply
		if f.Reply != nil {
			got = f.Reply
		}
		d.logf("  reply %q to %s:%d [%s] => %s %+v", reply, opNames[p.op], p.arg, stateString(stIn), stateString(st), f)
		d.st = st
		for name, on := range map[string]bool{"followup ReadDB": f.ReadDB, "followup TunnelNow": f.TunnelNow, "followup Reply": f.Reply != nil} {
			if on {
				d.count(name)
			}
		}
		readDB = readDB || f.ReadDB
		tunnelNow = tunnelNow || f.TunnelNow
		switch {
		case !bytes.Equal(got, out):
			return false, d.fail("reply to the client: new %q, old %q", got, out)
		case readDB != d.old.dbUnknown:
			return false, d.fail("ReadDB new %v, old %v", readDB, d.old.dbUnknown)
		case tunnelNow != d.old.tunnelNow:
			return false, d.fail("TunnelNow new %v, old %v", tunnelNow, d.old.tunnelNow)
		}
		if err := d.checkStates("after reply"); err != nil {
			return false, err
		}
	}
	d.pend = d.pend[:0]
	if readDB { // the server says which database the connection is in
		db := d.g.r.IntN(3)
		d.st.Tx.DB, d.old.st.db, d.old.dbUnknown = db, db, false
		d.logf("  read db: %d", db)
	}
	switch {
	case tunnelNow:
		d.old.tunnelNow, d.old.tunneled = false, true
		d.st.Conn = Tunnel
		d.logf("  EXEC ran a command that needs the tunnel")
	case d.st.Conn == Pinned && d.st.Tx.Clean():
		d.old.releasePin()
		d.st.Conn, d.st.Tx = Shared, Tx{}
		d.logf("  clean: released")
	}
	return tunnelNow, d.checkStates("after the group")
}

// run carries out one client command as the old session loop did.
func (d *driver) run(args [][]byte, endBatch bool) error {
	dec, before, err := d.classify(args)
	if err != nil {
		return err
	}
	switch dec.Kind {
	case Local:
		// Nothing is sent; on a pinned connection the group goes on.
	case Forward, Read, ReadCursor:
		if before.Conn == Pinned {
			d.pend = append(d.pend, pending{dec.Op, dec.Arg})
			if EndsGroup(dec.Op, dec.Arg) != d.old.op.endsGroup(d.old.opArg) {
				return d.fail("EndsGroup differs")
			}
			if EndsGroup(dec.Op, dec.Arg) || endBatch {
				if _, err := d.flush(); err != nil {
					return err
				}
			}
		}
	case Pin:
		d.old.acquirePin()
		d.st.Conn, d.st.Tx = Pinned, Tx{}
		d.logf("  pinned")
		return d.run(args, endBatch)
	case Open:
		if before.Conn == Pinned {
			// The group ends before it; its replies may end the state.
			tunnelNow, err := d.flush()
			switch {
			case err != nil:
				return err
			case tunnelNow:
				return d.runTunnel(args)
			case d.st.Conn == Shared:
				// The connection went back: classified again, as any
				// command on a shared connection.
				return d.run(args, endBatch)
			}
		} else {
			d.old.acquirePin()
			d.st.Tx = Tx{}
		}
		d.old.tunneled = true
		d.st.Conn = Tunnel
		d.logf("  tunnel")
		return d.runTunnel(args)
	case Close:
		if tunnelNow, err := d.flushBefore(before); err != nil || tunnelNow {
			if err == nil {
				err = d.runTunnel(args)
			}
			d.ended = true
			return err
		}
		d.ended = true
	case Renew:
		renewed := d.st
		tunnelNow, err := d.flushBefore(before)
		if err != nil {
			return err
		}
		if tunnelNow {
			return d.runTunnel(args)
		}
		d.old.resetState()
		d.st = renewed
		d.logf("  reset")
		return d.checkStates("after RESET")
	}
	return nil
}

// flushBefore applies the group's replies to the state before the command
// that ended it (QUIT, RESET: the old loop applied them, then closed or
// reset).
func (d *driver) flushBefore(before State) (bool, error) {
	if before.Conn != Pinned {
		return false, nil
	}
	d.st = before
	return d.flush()
}

// runTunnel classifies the command again in the tunnel, as the old
// tunnelBytes did.
func (d *driver) runTunnel(args [][]byte) error {
	dec, _, err := d.classify(args)
	if err != nil {
		return err
	}
	switch dec.Kind {
	case Forward, Local:
	case Close:
		d.ended = true
	default:
		return d.fail("in a tunnel: %s", kindNames[dec.Kind])
	}
	return nil
}

// session runs n random commands, or until the client quits.
func (d *driver) session(n int) error {
	inTunnel := 0
	for i := 0; i < n && !d.ended; i++ {
		args := d.g.command()
		if d.st.Tx.InMulti && d.st.Conn == Pinned && d.g.r.IntN(4) == 0 {
			args = [][]byte{[]byte("EXEC")} // end most transactions, so EXEC's follow-ups come
			if d.g.r.IntN(5) == 0 {
				args[0] = []byte("DISCARD")
			}
		}
		if d.st.Conn == Tunnel {
			// A tunnel is for good, and little happens in it: a few
			// commands, then another session.
			if inTunnel++; inTunnel > 4 {
				return nil
			}
			if err := d.runTunnel(args); err != nil {
				return err
			}
			continue
		}
		if err := d.run(args, d.g.r.IntN(2) == 0); err != nil {
			return err
		}
	}
	if d.st.Conn == Pinned && !d.ended {
		_, err := d.flush()
		return err
	}
	return nil
}

func runDifferential(t *testing.T, tab *Table, seed uint64, sessions int, checkReach bool) {
	t.Helper()
	g := newGen(tab, seed)
	events := map[string]int{}
	for i := range sessions {
		pw := []string{"", "secret"}[g.r.IntN(2)]
		d := newDriver(g, tab, pw, g.r.IntN(2) == 0)
		d.events = events
		if err := d.session(5 + g.r.IntN(40)); err != nil {
			t.Fatalf("seed %d, session %d (password %q, replicas %v): %v", seed, i, pw, d.env.ReadReplicas, err)
		}
	}
	// Every Special on every kind of connection, every kind, op and
	// follow-up must have come up, or the walk missed a branch.
	var missing []string
	for sp := range specialNames {
		for _, conn := range []Conn{Shared, Pinned, Tunnel} {
			if ev := "special " + specialNames[sp] + " on " + connNames[conn]; events[ev] == 0 {
				missing = append(missing, ev)
			}
		}
	}
	for _, m := range []map[Kind]string{kindNames} {
		for _, n := range m {
			if events["kind "+n] == 0 {
				missing = append(missing, "kind "+n)
			}
		}
	}
	for _, n := range opNames {
		if events["op "+n] == 0 {
			missing = append(missing, "op "+n)
		}
	}
	for _, ev := range []string{"followup ReadDB", "followup TunnelNow", "followup Reply", "refused"} {
		if events[ev] == 0 {
			missing = append(missing, ev)
		}
	}
	if len(missing) > 0 && checkReach && !testing.Short() {
		t.Errorf("the random sessions never reached: %s", strings.Join(missing, ", "))
	}
	if testing.Verbose() {
		keys := make([]string, 0, len(events))
		for k := range events {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			t.Logf("%-40s %d", k, events[k])
		}
	}
}

func TestDifferentialWithOldClassifier(t *testing.T) {
	n := *diffSessions
	if testing.Short() {
		n /= 10
	}
	runDifferential(t, fixtureTable(t), *diffSeed, n, true)
}

// TestDifferentialOddTables runs the differential over tables whose
// arities say nothing (0: any number of arguments) or the wrong thing, as
// a module's or a future server's might: the classifier's own checks of
// the argument count must then hold on their own.
func TestDifferentialOddTables(t *testing.T) {
	n := *diffSessions / 3
	if testing.Short() {
		n /= 10
	}
	for _, mode := range []string{"zero", "random"} {
		t.Run(mode, func(t *testing.T) {
			r := rand.New(rand.NewPCG(*diffSeed, 7))
			reply := freshFixtureReply(t)
			var walk func(entries []any)
			walk = func(entries []any) {
				for _, e := range entries {
					f := e.([]any)
					if mode == "zero" {
						f[1] = int64(0)
					} else {
						f[1] = int64(r.IntN(9) - 4)
					}
					if subs, ok := f[9].([]any); ok {
						walk(subs)
					}
				}
			}
			walk(reply)
			tab, err := Build("odd", reply, nopCounters)
			if err != nil {
				t.Fatal(err)
			}
			runDifferential(t, tab, *diffSeed+1, n, false) // (wrong arities hide branches)
		})
	}
}

// TestInBlockMatchesOldRule compares InBlock with the old event loop's
// txStateful over every command of the real table: the one intended
// difference is that SCRIPT LOAD and SCRIPT FLUSH no longer stand inside a
// block, so the proxy's script mirror sees them.
func TestInBlockMatchesOldRule(t *testing.T) {
	tab := fixtureTable(t)
	intended := map[string]bool{"script|load": true, "script|flush": true}
	infos := []*Info{tab.Unknown}
	for _, c := range tab.cmds {
		infos = append(infos, c)
		for _, s := range c.Subs {
			infos = append(infos, s)
		}
	}
	for _, c := range infos {
		want := !txStateful(c.Name)
		if intended[c.Name] {
			if c.InBlock() || !want {
				t.Errorf("%s: InBlock %v (old rule: %v); want false, the intended change", c.Name, c.InBlock(), want)
			}
			continue
		}
		if c.InBlock() != want {
			t.Errorf("%s: InBlock %v, old rule %v", c.Name, c.InBlock(), want)
		}
	}
}

// TestOldParsersDiffer pins down the two parsing differences the test's
// reference adopts (oldEnv.unblockID, oldEnv.selectDB) against the old
// parsers: CLIENT UNBLOCK's id now follows Redis's string2ll (intended),
// and so does SELECT's index, which differs from the old parse+canonical
// check only for the lowest int64.
func TestOldParsersDiffer(t *testing.T) {
	inputs := []string{"0", "1", "7", "-1", "01", "007", "-0", "-01", "+1", " 1", "1 ", "", "-",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"99999999999999999999", "x", "1x"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, 1+r.IntN(21))
		for i := range b {
			b[i] = "0123456789-+ x"[r.IntN(14)]
		}
		inputs = append(inputs, string(b))
	}
	var unblockDiffs, selectDiffs []string
	for _, in := range inputs {
		nn, nok := resp.ParseInt([]byte(in))
		on, ook := oldParseLen([]byte(in))
		if nok != ook || nn != on {
			unblockDiffs = append(unblockDiffs, in)
			// Every one is a spelling Redis refuses (leading zeros, "-0")
			// or int64's lowest, which the old parse could not hold.
			if nok && in != "-9223372036854775808" {
				t.Errorf("CLIENT UNBLOCK %q: new parse takes it (%d), old %v %d", in, nn, ook, on)
			}
		}
		sn, sok := parseSelectOld([]byte(in))
		if sok != nok || sn != nn {
			selectDiffs = append(selectDiffs, in)
		}
	}
	if len(selectDiffs) != 1 || selectDiffs[0] != "-9223372036854775808" {
		t.Errorf("SELECT parse differs from the old one for %q; want only int64's lowest", selectDiffs)
	}
	for _, in := range []string{"01", "-0", "007"} {
		if !contains(unblockDiffs, in) {
			t.Errorf("CLIENT UNBLOCK %q: expected the old parse to differ", in)
		}
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func cloneArgs(args [][]byte) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = append([]byte(nil), a...)
	}
	return out
}

func sameArgs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func fmtArgs(args [][]byte) string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = fmt.Sprintf("%q", a)
	}
	return strings.Join(s, " ")
}

func shortRaw(b []byte) string {
	if b == nil {
		return "-"
	}
	return string(b)
}

// stateString is a state in the scenario files' words: only what differs
// from the zero value (and authed, always).
func stateString(st State) string {
	return strings.Join(stateFields(st), " ")
}
