package command

import (
	"bytes"
	"math/rand"
	randv2 "math/rand/v2"
	"reflect"
	"testing"
	"testing/quick"
)

// Properties over random inputs (testing/quick): Classify and AfterReply
// are pure functions of their inputs, leave those inputs as they were,
// and keep the state where the command does not concern it.

// sample is one random input of Classify: any State (every field random,
// combinations the session never makes included, but for a transaction
// on a shared connection), an Env, a command
// from the fixture table or the special forms, and a dst with a prefix
// and spare capacity.
type sample struct {
	st   State
	env  Env
	args [][]byte
	dst  []byte
}

var sampleGen *gen // the names of the fixture table; its rand is replaced per sample

func randomState(r *rand.Rand) State {
	b := func() bool { return r.Intn(2) == 0 }
	names := []string{"", "n1", "a"}
	st := State{
		ID: int64(r.Intn(10)), Authed: b(), Conn: Conn(r.Intn(3)), Name: names[r.Intn(3)],
		Tx: Tx{
			InMulti: b(), ExecAbort: b(), TunnelAtExec: b(), SubscribedAtExec: b(),
			Watching: b(), ACLUser: b(), DB: r.Intn(3), QueuedDB: b(),
		},
	}
	if b() {
		st.Tx.QueuedName, st.Tx.HasQueuedName = names[r.Intn(3)], true
	}
	if st.Conn == Shared {
		// Tx is the zero value on a shared connection (State's doc): the
		// session never makes another. (From such a state the old code
		// and the new differ, e.g. a read with InMulti set goes to a
		// replica in the new and to the master in the old.)
		st.Tx = Tx{}
	}
	return st
}

func (sample) Generate(r *rand.Rand, _ int) reflect.Value {
	sampleGen.r = randv2.New(randv2.NewPCG(r.Uint64(), r.Uint64()))
	s := sample{st: randomState(r), args: sampleGen.command()}
	s.env.Password = []string{"", "secret"}[r.Intn(2)]
	s.env.ReadReplicas = r.Intn(2) == 0
	if r.Intn(2) == 0 {
		s.env.OperatorUser, s.env.OperatorPassword = "ops", "s3cret"
	}
	if r.Intn(2) == 0 {
		s.env.TunnelID = func(id int64) (int64, bool) { return id + 1000, id == 7 }
	}
	s.dst = make([]byte, r.Intn(6), 6+r.Intn(64))
	for i := range s.dst {
		s.dst[i] = byte('A' + r.Intn(26))
	}
	return reflect.ValueOf(s)
}

func quickConfig(t *testing.T, n int) *quick.Config {
	if testing.Short() {
		n /= 10
	}
	sampleGen = newGen(fixtureTable(t), 1)
	return &quick.Config{MaxCount: n, Rand: rand.New(rand.NewSource(int64(*diffSeed)))}
}

// TestClassifyLeavesItsInputs: args and dst[:len(dst)] are as they were,
// the returned dst extends dst, and the same inputs give the same result.
func TestClassifyLeavesItsInputs(t *testing.T) {
	tab := fixtureTable(t)
	f := func(s sample) bool {
		args, prefix := cloneArgs(s.args), append([]byte(nil), s.dst...)
		info := tab.Lookup(s.args)
		st, d, dst := Classify(&s.env, s.st, info, s.args, s.dst)
		switch {
		case !sameArgs(args, s.args):
			t.Errorf("%s: args changed to %q", fmtArgs(args), s.args)
		case !bytes.Equal(prefix, s.dst) || !bytes.Equal(prefix, dst[:len(prefix)]):
			t.Errorf("%s: dst[:len(dst)] changed", fmtArgs(args))
		case d.Kind != Local && len(dst) != len(prefix):
			t.Errorf("%s: kind %s appended %q", fmtArgs(args), kindNames[d.Kind], dst[len(prefix):])
		case d.Kind == Local && len(dst) == len(prefix):
			t.Errorf("%s: local without a reply", fmtArgs(args))
		case d.Info != info:
			t.Errorf("%s: Info is not the one given", fmtArgs(args))
		}
		st2, d2, dst2 := Classify(&s.env, s.st, info, s.args, append([]byte(nil), prefix...))
		if st2 != st || !sameDecision(d2, d) || !bytes.Equal(dst2, dst) {
			t.Errorf("%s: a second call decided differently", fmtArgs(args))
		}
		// An empty argument given as nil means the same.
		nilArgs := cloneArgs(s.args)
		for i, a := range nilArgs {
			if len(a) == 0 {
				nilArgs[i] = nil
			}
		}
		st3, d3, dst3 := Classify(&s.env, s.st, info, nilArgs, append([]byte(nil), prefix...))
		if st3 != st || !sameDecision(d3, d) || !bytes.Equal(dst3, dst) {
			t.Errorf("%s: nil for an empty argument decided differently", fmtArgs(args))
		}
		return !t.Failed()
	}
	if err := quick.Check(f, quickConfig(t, 20000)); err != nil {
		t.Fatal(err)
	}
}

// TestClassifyKeepsTheState: the state changes only for the commands
// that change it, and only in the fields they concern.
func TestClassifyKeepsTheState(t *testing.T) {
	tab := fixtureTable(t)
	f := func(s sample) bool {
		info := tab.Lookup(s.args)
		st, d, _ := Classify(&s.env, s.st, info, s.args, s.dst)
		if st.ID != s.st.ID || st.Conn != s.st.Conn && d.Kind != Renew {
			t.Errorf("%s: ID or Conn changed: %+v -> %+v", fmtArgs(s.args), s.st, st)
		}
		if st == s.st {
			return true
		}
		want := s.st // what the command may change, set to what it did
		switch info.Special {
		case Auth, Hello:
			want.Authed, want.Operator, want.Name = st.Authed, st.Operator, st.Name
		case Reset:
			want = State{ID: s.st.ID, Authed: s.env.Password == ""}
			if s.st.Conn == Tunnel {
				want = s.st
				want.Name, want.Authed = "", s.env.Password == ""
			}
		case Multi:
			want.Tx.InMulti, want.Tx.ExecAbort, want.Tx.TunnelAtExec = true, false, false
		case Exec, Discard:
			want.Tx.InMulti = false
		case Subscribe:
			want.Tx.SubscribedAtExec = true
		case ClientTracking:
			want.Tracking = st.Tracking
		case ClientSetName:
			want.Name, want.Tx.QueuedName, want.Tx.HasQueuedName = st.Name, st.Tx.QueuedName, st.Tx.HasQueuedName
		}
		// A reply the proxy makes inside a transaction that it cannot
		// queue (a refusal) aborts the transaction.
		if d.Kind == Local && s.st.Conn == Pinned && s.st.Tx.InMulti {
			want.Tx.ExecAbort = true
		}
		if st != want {
			t.Errorf("%s (%s): state %+v -> %+v; only %+v was expected", fmtArgs(s.args), specialNames[info.Special], s.st, st, want)
		}
		return !t.Failed()
	}
	if err := quick.Check(f, quickConfig(t, 20000)); err != nil {
		t.Fatal(err)
	}
}

// replySample is one random input of AfterReply.
type replySample struct {
	st    State
	op    Op
	arg   int
	reply []byte
}

func (replySample) Generate(r *rand.Rand, _ int) reflect.Value {
	replies := []string{"+OK\r\n", "+QUEUED\r\n", "*1\r\n:1\r\n", "*-1\r\n", "*0\r\n", "-ERR x\r\n",
		":1\r\n", "$-1\r\n", "+OKAY\r\n", "-EXECABORT Transaction discarded because of previous errors.\r\n",
		"%1\r\n+a\r\n:1\r\n", "*", "+", "-"}
	return reflect.ValueOf(replySample{
		st: randomState(r), op: Op(r.Intn(int(OpTunnelLater) + 1)), arg: r.Intn(3),
		reply: []byte(replies[r.Intn(len(replies))]),
	})
}

// TestAfterReplyLeavesItsInputs: AfterReply changes neither its reply
// nor the state it was given, and the same inputs give the same result.
func TestAfterReplyLeavesItsInputs(t *testing.T) {
	f := func(s replySample) bool {
		in, before := append([]byte(nil), s.reply...), s.st
		st, fu := AfterReply(s.st, s.op, s.arg, s.reply)
		st2, fu2 := AfterReply(s.st, s.op, s.arg, s.reply)
		if !bytes.Equal(in, s.reply) || s.st != before {
			t.Errorf("AfterReply changed its inputs: %q from %+v", in, before)
		}
		if st != st2 || fu.ReadDB != fu2.ReadDB || fu.TunnelNow != fu2.TunnelNow || !bytes.Equal(fu.Reply, fu2.Reply) {
			t.Errorf("%s:%d reply %q: a second call differed", opNames[s.op], s.arg, in)
		}
		if st.ID != before.ID || st.Conn != before.Conn || st.Name != before.Name && s.op != OpExec {
			t.Errorf("%s:%d reply %q changed ID, Conn or Name: %+v -> %+v", opNames[s.op], s.arg, in, before, st)
		}
		return !t.Failed()
	}
	if err := quick.Check(f, quickConfig(t, 30000)); err != nil {
		t.Fatal(err)
	}
}

func TestEndsGroup(t *testing.T) {
	for _, tc := range []struct {
		op   Op
		arg  int
		want bool
	}{
		{OpNone, 0, false}, {OpMulti, 0, false}, {OpWatch, 0, false}, {OpTunnelLater, 0, false},
		{OpExec, 0, true}, {OpExec, 1, true}, {OpExecAbort, 1, true}, {OpDiscard, 0, true}, {OpDiscard, 1, true},
		{OpUnwatch, 0, true}, {OpAuthUser, 0, true},
		{OpSelect, 0, true}, // SELECT 0 may make the connection clean
		{OpSelect, 1, false}, {OpSelect, -1, false},
	} {
		if got := EndsGroup(tc.op, tc.arg); got != tc.want {
			t.Errorf("EndsGroup(%s, %d) = %v, want %v", opNames[tc.op], tc.arg, got, tc.want)
		}
	}
}

// TestAfterReplyFixedReply: ExecAborted is what the client of an aborted
// EXEC reads, and AfterReply's inputs stay as they were.
func TestAfterReplyExecAborted(t *testing.T) {
	st := State{Authed: true, Conn: Pinned, Tx: Tx{Watching: true, HasQueuedName: true, QueuedName: "x"}}
	reply := []byte("+OK\r\n")
	got, f := AfterReply(st, OpExecAbort, 1, reply)
	if string(f.Reply) != "-EXECABORT Transaction discarded because of previous errors.\r\n" {
		t.Errorf("reply %q", f.Reply)
	}
	if want := (State{Authed: true, Conn: Pinned}); got != want {
		t.Errorf("state %+v, want %+v", got, want)
	}
	if string(reply) != "+OK\r\n" || !st.Tx.Watching {
		t.Errorf("inputs changed")
	}
	// DISCARD failed (the connection is gone, say): nothing to replace.
	if _, f := AfterReply(st, OpExecAbort, 1, []byte("-ERR x\r\n")); f.Reply != nil {
		t.Errorf("reply replaced: %q", f.Reply)
	}
}

func sameDecision(a, b Decision) bool {
	return a.Kind == b.Kind && a.Info == b.Info && bytes.Equal(a.Raw, b.Raw) && (a.Raw == nil) == (b.Raw == nil) &&
		a.Op == b.Op && a.Arg == b.Arg && a.Refused == b.Refused && a.Script == b.Script && a.Filter == b.Filter
}
