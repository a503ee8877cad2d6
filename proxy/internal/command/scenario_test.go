package command

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// Golden scenarios: testdata/scenarios/*.txt are sessions told one step a
// line, and after each step the line(s) starting "= " that the runner
// writes: what was decided and how the session's state changed. Run with
// -update to rewrite them; review the diff.
//
// Steps (everything else is copied as it is: comments, blank lines):
//
//	env password=secret replicas=true tunnels=7:1007   the Env (unset: zero);
//	    operator=user:password                         the operator's credentials
//	state conn=pinned authed=true inmulti=true ...     the session's state (unset: zero)
//	> SET k "a b"                                      a command, in Redis's inline syntax
//	reply +QUEUED                                      the server's reply to the oldest
//	reply "*1\r\n+OK\r\n"                              command on the pinned connection
//	db 1                                               the answer to a ReadDB
//	inblock GET k                                      may it stand in a transaction block?
//
// The runner carries a decision out as the session would: Pin pins
// (conn=pinned) and Open opens a tunnel (conn=tunnel), and the command is
// classified again there; a command forwarded on a pinned connection
// waits for its reply; once every reply is in, a clean pinned connection
// goes back (conn=shared), and TunnelNow makes the session a tunnel.
//
// A decision line reads
//
//	= <kind> ["<local reply>"] [op=<op>[:<arg>]] [raw="<bytes sent instead>"] [refused] [script=note|forget] [filter=secrets] [| <state changes>]
//
// and a reply line
//
//	= [reply="<what the client gets instead>"] [readdb] [tunnel-now] [| <state changes>]
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/scenarios")
	}
	tab := fixtureTable(t)
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := runScenario(tab, in)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !bytes.Equal(got, in) {
				t.Errorf("%s: output differs from the golden file (run with -update and review the diff):\n%s",
					file, lineDiff(string(in), string(got)))
			}
		})
	}
}

// scenario is the runner's session.
type scenario struct {
	t         *Table
	env       Env
	st        State
	cache     Cache
	out       bytes.Buffer
	pend      []pending // forwarded on the pinned connection, reply to come
	readDB    bool      // a ReadDB is waiting for its "db" step
	tunnelNow bool
}

func runScenario(tab *Table, in []byte) ([]byte, error) {
	s := &scenario{t: tab}
	sc := bufio.NewScanner(bytes.NewReader(in))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "= ") || line == "=" {
			continue // an output of the last run
		}
		s.out.WriteString(line)
		s.out.WriteByte('\n')
		if err := s.step(line); err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n, line, err)
		}
	}
	if len(s.pend) > 0 {
		return nil, fmt.Errorf("at the end: %d replies still to come", len(s.pend))
	}
	return s.out.Bytes(), sc.Err()
}

func (s *scenario) step(line string) error {
	verb, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch verb {
	case "", "#":
		return nil
	case "env":
		return s.setEnv(rest)
	case "state":
		if len(s.pend) > 0 {
			return fmt.Errorf("%d replies still to come", len(s.pend))
		}
		st, err := parseState(rest)
		s.st, s.pend, s.readDB = st, nil, false
		return err
	case ">":
		args, ok := resp.SplitArgs([]byte(rest))
		if !ok || len(args) == 0 {
			return fmt.Errorf("bad command")
		}
		s.command(args)
		return nil
	case "reply":
		return s.reply(rest)
	case "db":
		n, err := strconv.Atoi(rest)
		if err != nil || !s.readDB {
			return fmt.Errorf("db without a ReadDB, or not a number")
		}
		before := s.st
		s.st.Tx.DB, s.readDB = n, false
		s.settle()
		s.emit("=", before)
		return nil
	case "inblock":
		args, ok := resp.SplitArgs([]byte(rest))
		if !ok || len(args) == 0 {
			return fmt.Errorf("bad command")
		}
		info := s.t.Lookup(args)
		s.out.WriteString(map[bool]string{true: "= yes (" + info.Name + ")\n", false: "= no (" + info.Name + ")\n"}[info.InBlock()])
		return nil
	}
	return fmt.Errorf("unknown step %q", verb)
}

func (s *scenario) setEnv(rest string) error {
	s.env = Env{}
	for _, f := range strings.Fields(rest) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "password":
			s.env.Password = v
		case "replicas":
			s.env.ReadReplicas = v == "true"
		case "operator":
			// operator=user:password
			s.env.OperatorUser, s.env.OperatorPassword, _ = strings.Cut(v, ":")
		case "tunnels":
			ids := map[int64]int64{}
			for _, p := range strings.Split(v, ",") {
				a, b, _ := strings.Cut(p, ":")
				x, err1 := strconv.ParseInt(a, 10, 64)
				y, err2 := strconv.ParseInt(b, 10, 64)
				if err1 != nil || err2 != nil {
					return fmt.Errorf("tunnels=%s: want id:backend,...", v)
				}
				ids[x] = y
			}
			s.env.TunnelID = func(id int64) (int64, bool) { b, ok := ids[id]; return b, ok }
		default:
			return fmt.Errorf("unknown env field %q", k)
		}
	}
	return nil
}

// command classifies args and carries the decision out.
func (s *scenario) command(args [][]byte) {
	before := s.st
	info := s.cache.Lookup(s.t, args)
	st, d, dst := Classify(&s.env, s.st, info, args, nil)
	s.st = st
	switch d.Kind {
	case Forward, Read, ReadCursor:
		if before.Conn == Pinned {
			s.pend = append(s.pend, pending{d.Op, d.Arg})
		}
	case Pin:
		s.st.Conn, s.st.Tx = Pinned, Tx{}
	case Open:
		if before.Conn == Shared {
			s.st.Tx = Tx{}
		}
		s.st.Conn = Tunnel
	}
	s.emit(decisionString(d, dst), before)
	if d.Kind == Pin || d.Kind == Open {
		s.command(args) // again, on the connection it got
	}
}

func (s *scenario) reply(text string) error {
	if len(s.pend) == 0 {
		return fmt.Errorf("no command waits for a reply")
	}
	var reply []byte
	if strings.HasPrefix(text, `"`) {
		u, err := strconv.Unquote(text)
		if err != nil {
			return err
		}
		reply = []byte(u)
	} else {
		reply = []byte(text + "\r\n")
	}
	p := s.pend[0]
	s.pend = s.pend[1:]
	before := s.st
	st, f := AfterReply(s.st, p.op, p.arg, reply)
	s.st = st
	var words []string
	if f.Reply != nil {
		words = append(words, fmt.Sprintf("reply=%q", f.Reply))
	}
	if f.ReadDB {
		words = append(words, "readdb")
		s.readDB = true
	}
	if f.TunnelNow {
		words = append(words, "tunnel-now")
		s.tunnelNow = true
	}
	s.settle()
	s.emit(strings.Join(append([]string{"="}, words...), " "), before)
	return nil
}

// settle is what the session does once every reply of the pinned group
// is in (and the database is known): tunnel, or give a clean connection
// back.
func (s *scenario) settle() {
	if len(s.pend) > 0 || s.readDB || s.st.Conn != Pinned {
		return
	}
	switch {
	case s.tunnelNow:
		s.st.Conn, s.tunnelNow = Tunnel, false
	case s.st.Tx.Clean():
		s.st.Conn, s.st.Tx = Shared, Tx{}
	}
}

// emit writes an output line: head, then the state's changes.
func (s *scenario) emit(head string, before State) {
	s.out.WriteString(head)
	if diff := stateDiff(before, s.st); diff != "" {
		s.out.WriteString(" | " + diff)
	}
	s.out.WriteByte('\n')
}

func decisionString(d Decision, dst []byte) string {
	w := []string{"=", kindNames[d.Kind]}
	if d.Kind == Local {
		w = append(w, fmt.Sprintf("%q", dst))
	}
	if d.Op != OpNone {
		op := "op=" + opNames[d.Op]
		if d.Arg != 0 {
			op += ":" + strconv.Itoa(d.Arg)
		}
		w = append(w, op)
	}
	if d.Raw != nil {
		w = append(w, fmt.Sprintf("raw=%q", d.Raw))
	}
	if d.Refused {
		w = append(w, "refused")
	}
	if d.Script != ScriptNone {
		w = append(w, "script="+scriptNames[d.Script])
	}
	if d.Filter != FilterNone {
		w = append(w, "filter="+filterNames[d.Filter])
	}
	return strings.Join(w, " ")
}

// stateField is one field of State in the scenarios' words.
type stateField struct {
	name string
	get  func(*State) string
	set  func(*State, string) error
}

func boolField(name string, p func(*State) *bool) stateField {
	return stateField{name,
		func(s *State) string { return strconv.FormatBool(*p(s)) },
		func(s *State, v string) (err error) { *p(s), err = strconv.ParseBool(v); return err }}
}

func stringField(name string, p func(*State) *string) stateField {
	return stateField{name,
		func(s *State) string { return strconv.Quote(*p(s)) },
		func(s *State, v string) error {
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			*p(s) = v
			return nil
		}}
}

var stateFieldList = []stateField{
	{"conn", func(s *State) string { return connNames[s.Conn] }, func(s *State, v string) error {
		c, ok := lookupName(connNames, v)
		if !ok {
			return fmt.Errorf("conn=%s", v)
		}
		s.Conn = c
		return nil
	}},
	boolField("authed", func(s *State) *bool { return &s.Authed }),
	boolField("operator", func(s *State) *bool { return &s.Operator }),
	{"id", func(s *State) string { return strconv.FormatInt(s.ID, 10) }, func(s *State, v string) (err error) {
		s.ID, err = strconv.ParseInt(v, 10, 64)
		return err
	}},
	stringField("name", func(s *State) *string { return &s.Name }),
	boolField("inmulti", func(s *State) *bool { return &s.Tx.InMulti }),
	boolField("execabort", func(s *State) *bool { return &s.Tx.ExecAbort }),
	boolField("tunnelatexec", func(s *State) *bool { return &s.Tx.TunnelAtExec }),
	boolField("subscribedatexec", func(s *State) *bool { return &s.Tx.SubscribedAtExec }),
	boolField("watching", func(s *State) *bool { return &s.Tx.Watching }),
	boolField("acluser", func(s *State) *bool { return &s.Tx.ACLUser }),
	{"db", func(s *State) string { return strconv.Itoa(s.Tx.DB) }, func(s *State, v string) (err error) {
		s.Tx.DB, err = strconv.Atoi(v)
		return err
	}},
	boolField("queueddb", func(s *State) *bool { return &s.Tx.QueuedDB }),
	stringField("queuedname", func(s *State) *string { return &s.Tx.QueuedName }),
	boolField("hasqueuedname", func(s *State) *bool { return &s.Tx.HasQueuedName }),
}

func parseState(text string) (State, error) {
	var st State
	for _, f := range strings.Fields(text) {
		k, v, _ := strings.Cut(f, "=")
		found := false
		for _, sf := range stateFieldList {
			if sf.name == k {
				if err := sf.set(&st, v); err != nil {
					return st, fmt.Errorf("%s: %w", f, err)
				}
				found = true
			}
		}
		if !found {
			return st, fmt.Errorf("unknown state field %q", k)
		}
	}
	return st, nil
}

// stateDiff lists the fields of b that differ from a.
func stateDiff(a, b State) string {
	var w []string
	for _, f := range stateFieldList {
		if va, vb := f.get(&a), f.get(&b); va != vb {
			w = append(w, f.name+"="+vb)
		}
	}
	return strings.Join(w, " ")
}

// stateFields lists the fields of st that are not zero (authed always).
func stateFields(st State) []string {
	zero := State{}
	w := []string{"authed=" + strconv.FormatBool(st.Authed)}
	for _, f := range stateFieldList {
		if f.name != "authed" && f.get(&st) != f.get(&zero) {
			w = append(w, f.name+"="+f.get(&st))
		}
	}
	return w
}
