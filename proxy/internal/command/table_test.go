package command

import (
	"strings"
	"testing"
)

func argv(s string) [][]byte {
	var out [][]byte
	for _, w := range strings.Fields(s) {
		out = append(out, []byte(w))
	}
	return out
}

// entry is a COMMAND entry as redigo returns it: [name, arity, flags,
// first, last, step, categories, tips, key specs, subcommands].
func entry(name string, arity int64, flags, cats []string, subs ...any) []any {
	strs := func(ss []string) []any {
		out := make([]any, len(ss))
		for i, s := range ss {
			out[i] = s // status replies come as strings
		}
		return out
	}
	return []any{[]byte(name), arity, strs(flags), int64(0), int64(0), int64(0), strs(cats), []any{}, []any{}, subs}
}

func TestBuildFromFixture(t *testing.T) {
	tab := fixtureTable(t)
	if tab.Len() != 240 || tab.Source != "fixture" {
		t.Errorf("Len %d Source %q; Redis 7.0.15 has 240 commands", tab.Len(), tab.Source)
	}
	for _, tc := range []struct {
		cmd      string
		name     string
		arity    int
		flags    Flags
		special  Special
		inBlock  bool
		fastRead bool
	}{
		{"GET k", "get", 2, Readonly | Fast, None, true, true},
		{"MGET a b", "mget", -2, Readonly | Fast, None, true, true},
		{"LRANGE l 0 1", "lrange", 4, Readonly, None, true, false},
		{"SET k v", "set", -3, Write, None, true, false},
		{"BLPOP q 0", "blpop", -3, Write | Noscript | Blocking, None, true, false},
		{"XREAD STREAMS s 0", "xread", -4, Readonly | Blocking, XRead, true, false},
		{"XREADGROUP GROUP g c STREAMS s >", "xreadgroup", -7, Write | Blocking, XRead, true, false},
		{"SUBSCRIBE ch", "subscribe", -2, Pubsub | Noscript, Subscribe, false, false},
		{"MONITOR", "monitor", 1, Admin | Noscript, Subscribe, false, false},
		{"UNSUBSCRIBE", "unsubscribe", -1, Pubsub | Noscript, Unsubscribe, false, false},
		{"AUTH pw", "auth", -2, Noscript | Fast, Auth, false, false},
		{"HELLO", "hello", -1, Noscript | Fast, Hello, false, false},
		{"SELECT 1", "select", 2, Fast, Select, false, false},
		{"MULTI", "multi", 1, Noscript | Fast, Multi, false, false},
		{"EXEC", "exec", 1, Noscript, Exec, true, false},
		{"DISCARD", "discard", 1, Noscript | Fast, Discard, true, false},
		{"WATCH k", "watch", -2, Noscript | Fast, Watch, false, false},
		{"UNWATCH", "unwatch", 1, Noscript | Fast, Unwatch, false, false},
		{"REPLICAOF no one", "replicaof", 3, Admin | Noscript, Replication, false, false},
		{"PSYNC ? -1", "psync", -3, Admin | Noscript, Replication, false, false},
		{"SHUTDOWN", "shutdown", -1, Admin | Noscript, Shutdown, false, false},
		{"WAIT 1 0", "wait", 3, Noscript, Wait, false, false},
		{"SCAN 0", "scan", -2, Readonly, Scan, true, false},
		{"EVALSHA_RO a 0", "evalsha_ro", -3, Readonly | Noscript, EvalshaRO, true, false},
		{"CONFIG SET a b", "config|set", -4, Admin | Noscript, ConfigSet, false, false},
		{"config get a", "config|get", -3, Admin | Noscript, ConfigGet, false, false},
		{"SCRIPT LOAD x", "script|load", 3, Noscript, ScriptLoad, false, false},
		{"SCRIPT FLUSH", "script|flush", -2, Noscript, ScriptFlush, false, false},
		{"SCRIPT EXISTS a", "script|exists", -3, Noscript, None, true, false},
		{"CLIENT ID", "client|id", 2, Noscript, ClientID, false, false},
		{"client Unblock 1", "client|unblock", -3, Admin | Noscript, ClientUnblock, false, false},
		{"CLIENT GETNAME", "client|getname", 2, Noscript, ClientGetName, false, false},
		{"CLIENT SETNAME n", "client|setname", 3, Noscript, ClientSetName, false, false},
		{"CLIENT REPLY ON", "client|reply", 3, Noscript, ClientReply, false, false},
		{"CLIENT TRACKING ON", "client|tracking", -3, Noscript, ClientTracking, false, false},
		{"CLIENT NO-EVICT on", "client|no-evict", 3, Admin | Noscript, ClientNoEvict, false, false},
		{"CLIENT LIST", "client|list", -2, Admin | Noscript, ClientTable, false, false},
		{"CLIENT PAUSE 1", "client|pause", -3, Admin | Noscript, ClientPause, false, false},
		{"CLIENT", "client", -2, 0, None, false, false},
		{"CLIENT NOSUCH", "client", -2, 0, None, false, false},
		{"NOSUCH", "unknown", 0, 0, None, true, false},
	} {
		c := tab.Lookup(argv(tc.cmd))
		// Flags the proxy does not route by (loading, stale, ...) are not kept.
		if c.Name != tc.name || c.Arity != tc.arity || c.Flags != tc.flags || c.Special != tc.special ||
			c.InBlock() != tc.inBlock || c.FastRead() != tc.fastRead {
			t.Errorf("%s: got %s arity=%d flags=%s special=%s inblock=%v fastread=%v; want %s %d %s %s %v %v",
				tc.cmd, c.Name, c.Arity, flagString(c.Flags), specialNames[c.Special], c.InBlock(), c.FastRead(),
				tc.name, tc.arity, flagString(tc.flags), specialNames[tc.special], tc.inBlock, tc.fastRead)
		}
	}
}

// TestFactsOverTheTable: every command of the facts table gets its
// Special and block rule; every CLIENT subcommand the facts leave out is
// ClientOther, and other subcommands and commands None.
func TestFactsOverTheTable(t *testing.T) {
	tab := fixtureTable(t)
	seen := map[string]bool{}
	check := func(c *Info, parent string) {
		seen[c.Name] = true
		sp, ok := specials[c.Name]
		switch {
		case ok:
			if c.Special != sp || c.InBlock() != inBlock[sp] {
				t.Errorf("%s: special %s inblock %v; facts say %s %v", c.Name, specialNames[c.Special], c.InBlock(), specialNames[sp], inBlock[sp])
			}
		case c.Name == "client":
			if c.Special != None || c.InBlock() {
				t.Errorf("client (the container): special %s inblock %v; want none, not in a block", specialNames[c.Special], c.InBlock())
			}
		case parent == "client":
			if c.Special != ClientOther || c.InBlock() {
				t.Errorf("%s: special %s inblock %v; want client-other, not in a block", c.Name, specialNames[c.Special], c.InBlock())
			}
		default:
			if c.Special != None || !c.InBlock() {
				t.Errorf("%s: special %s inblock %v; want none, in a block", c.Name, specialNames[c.Special], c.InBlock())
			}
		}
	}
	for _, c := range tab.cmds {
		check(c, "")
		for _, s := range c.Subs {
			check(s, c.Name)
		}
	}
	// Redis 7.2's WAITAOF and CLIENT NO-TOUCH are not in 7.0's table.
	for name := range specials {
		if !seen[name] && name != "waitaof" && name != "client|no-touch" {
			t.Errorf("facts name %q, which Redis 7.0.15 does not have: a typo?", name)
		}
	}
	// Every Special but None and ClientOther is named in facts.
	named := map[Special]bool{None: true, ClientOther: true}
	for _, sp := range specials {
		named[sp] = true
	}
	for sp := range specialNames {
		if !named[sp] {
			t.Errorf("Special %s is in no fact", specialNames[sp])
		}
	}
}

func TestBuildEntries(t *testing.T) {
	var labels []string
	counters := func(label string) (Counter, Counter) {
		labels = append(labels, label)
		return &counter{}, &counter{}
	}
	reply := []any{
		entry("GET", 2, []string{"readonly", "fast", "loading"}, []string{"@read", "@fast"}),
		// Blocking by its ACL category alone (a module's command, say).
		entry("mod.wait", -2, []string{"write"}, []string{"@blocking", "@write"}),
		entry("CLIENT", -2, nil, []string{"@slow"},
			entry("client|setname", 3, []string{"noscript"}, nil),
			entry("client|future", -2, []string{"admin"}, nil)),
		entry("object", -2, nil, nil, entry("object|encoding", 3, []string{"readonly"}, nil)),
		// A short entry (Redis before 7: no categories, no subcommands).
		[]any{[]byte("old"), int64(-1), []any{"write"}},
		// An arity that is not an integer: any number of arguments.
		[]any{[]byte("odd"), []byte("x"), []any{"readonly"}},
	}
	tab, err := Build("test:6379", reply, counters)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 6 || tab.Source != "test:6379" {
		t.Errorf("Len %d Source %q", tab.Len(), tab.Source)
	}
	get := tab.Lookup(argv("get k"))
	if get.Name != "get" || get.Flags != Readonly|Fast || !get.FastRead() {
		t.Errorf("get: %+v", get)
	}
	if w := tab.Lookup(argv("MOD.WAIT k")); !w.Has(Blocking) || !w.Has(Write) || w.Has(Readonly) {
		t.Errorf("mod.wait: flags %s, want write,blocking", flagString(w.Flags))
	}
	if c := tab.Lookup(argv("client future x")); c.Name != "client|future" || c.Special != ClientOther || c.InBlock() {
		t.Errorf("client|future: %s %s %v", c.Name, specialNames[c.Special], c.InBlock())
	}
	if c := tab.Lookup(argv("client setname n")); c.Special != ClientSetName || c.Arity != 3 {
		t.Errorf("client|setname: %+v", c)
	}
	if c := tab.Lookup(argv("object encoding k")); c.Special != None || !c.InBlock() || !c.Has(Readonly) {
		t.Errorf("object|encoding: %+v", c)
	}
	if c := tab.Lookup(argv("old")); c.Name != "old" || c.Arity != -1 || c.Flags != Write || c.Subs != nil {
		t.Errorf("old: %+v", c)
	}
	if c := tab.Lookup(argv("odd a b c")); c.Arity != 0 || !c.ArityOK(1) || !c.ArityOK(9) {
		t.Errorf("odd: %+v", c)
	}
	// Counters: a subcommand is counted under its container's name.
	want := "unknown get mod.wait client client client object object old odd"
	if got := strings.Join(labels, " "); got != want {
		t.Errorf("counter labels %q, want %q", got, want)
	}
	sn := tab.Lookup(argv("client setname n"))
	sn.Count(false)
	sn.Count(true)
	sn.Count(true)
	if ok, fail := sn.OK.(*counter).get(), sn.Fail.(*counter).get(); ok != 1 || fail != 2 {
		t.Errorf("counted ok %d fail %d, want 1 2", ok, fail)
	}
}

func TestBuildRejects(t *testing.T) {
	good := entry("get", 2, []string{"readonly"}, nil)
	for _, tc := range []struct {
		name  string
		reply []any
		want  string
	}{
		{"empty", []any{}, "empty COMMAND reply"},
		{"nil", nil, "empty COMMAND reply"},
		{"not an array", []any{good, []byte("get")}, "unexpected COMMAND entry"},
		{"too short", []any{good, []any{[]byte("get"), int64(2)}}, "unexpected COMMAND entry"},
		{"name not a string", []any{[]any{int64(1), int64(2), []any{}}}, "COMMAND entry name"},
		{"name nil", []any{[]any{nil, int64(2), []any{}}}, "COMMAND entry name"},
		{"bad subcommand", []any{entry("client", -2, nil, nil, []any{[]byte("client|x")})}, "unexpected COMMAND entry"},
	} {
		_, err := Build("srv:1", tc.reply, nopCounters)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "srv:1") {
			t.Errorf("%s: err %v, want one naming the source and %q", tc.name, err, tc.want)
		}
	}
}

func TestArityOK(t *testing.T) {
	for _, tc := range []struct {
		arity, n int
		want     bool
	}{
		{2, 2, true}, {2, 1, false}, {2, 3, false},
		{-2, 1, false}, {-2, 2, true}, {-2, 7, true},
		{0, 0, true}, {0, 1, true}, {0, 100, true},
	} {
		if got := (&Info{Arity: tc.arity}).ArityOK(tc.n); got != tc.want {
			t.Errorf("arity %d, %d args: %v, want %v", tc.arity, tc.n, got, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	tab := fixtureTable(t)
	long := strings.Repeat("x", 33)
	for _, tc := range []struct{ cmd, want string }{
		{"get k", "get"}, {"GET k", "get"}, {"gEt k", "get"},
		{"CLIENT SETNAME n", "client|setname"}, {"client setName n", "client|setname"},
		{"CLIENT", "client"}, {"CLIENT NOSUCH", "client"}, {"CLIENT " + long, "client"},
		{"config SET a b", "config|set"}, {"GET SETNAME", "get"}, // not a container: args[1] is a key
		{"NOSUCH", "unknown"}, {long, "unknown"}, {strings.Repeat("g", 32), "unknown"},
		{"georadiusbymember_ro k m 1 km", "georadiusbymember_ro"}, // longer than Cache keeps
		{"GET\x00", "unknown"}, {"é", "unknown"},
	} {
		args := argv(tc.cmd)
		if tc.cmd == "GET\x00" {
			args = [][]byte{[]byte("GET\x00")}
		}
		if got := tab.Lookup(args); got.Name != tc.want {
			t.Errorf("Lookup(%q) = %s, want %s", tc.cmd, got.Name, tc.want)
		}
		if got := tab.Lookup(args); got != tab.Lookup(args) {
			t.Errorf("Lookup(%q) is not one Info", tc.cmd)
		}
	}
	if tab.Lookup(argv("NOSUCH")) != tab.Unknown {
		t.Error("an unknown name does not get Table.Unknown")
	}
}

// TestCache: a Cache gives what Lookup gives, whatever came before: the
// same name in another case, a name too long to keep, another table.
func TestCache(t *testing.T) {
	tab := fixtureTable(t)
	other, err := Build("other", freshFixtureReply(t), nopCounters)
	if err != nil {
		t.Fatal(err)
	}
	seq := []string{
		"GET k", "GET k", "get k", "SET k v", "GET k", "georadiusbymember_ro k m 1 km", "GET k",
		"CLIENT ID", "CLIENT SETNAME x", "CLIENT", "client list", "NOSUCH", "NOSUCH", "GET k",
		"georadiusbymember_ro k m 1 km", "averyveryverylongcommandnamethatisunknown", "SET k v",
		"GETSET k v", "GETEX k", "GET k", "GETDEL k",
	}
	var c Cache
	for round, tb := range []*Table{tab, other, tab} {
		for _, cmd := range seq {
			args := argv(cmd)
			if got, want := c.Lookup(tb, args), tb.Lookup(args); got != want {
				t.Errorf("round %d: Cache.Lookup(%q) = %s (%p), want %s (%p)", round, cmd, got.Name, got, want.Name, want)
			}
		}
	}
	// The zero Cache, and a table change with the same name.
	var z Cache
	if z.Lookup(tab, argv("GET k")) != tab.Lookup(argv("GET k")) || z.Lookup(other, argv("GET k")) != other.Lookup(argv("GET k")) {
		t.Error("Cache kept another table's entry")
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tab := fixtureTable(t)
	var c Cache
	for _, cmd := range []string{"GET k", "get k", "CLIENT SETNAME n", "NOSUCH", "georadiusbymember_ro k m 1 km",
		strings.Repeat("x", 40), "CLIENT " + strings.Repeat("y", 40)} {
		args := argv(cmd)
		if n := testing.AllocsPerRun(100, func() { tab.Lookup(args) }); n != 0 {
			t.Errorf("Lookup(%q): %v allocations", cmd, n)
		}
		if n := testing.AllocsPerRun(100, func() { c.Lookup(tab, args) }); n != 0 {
			t.Errorf("Cache.Lookup(%q): %v allocations", cmd, n)
		}
	}
	// Alternating names: the cache misses each time.
	a, b := argv("GET k"), argv("SET k v")
	if n := testing.AllocsPerRun(100, func() { c.Lookup(tab, a); c.Lookup(tab, b) }); n != 0 {
		t.Errorf("Cache.Lookup, missing: %v allocations", n)
	}
}
