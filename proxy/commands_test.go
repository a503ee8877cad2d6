package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// ctCommandReply returns the COMMAND reply of a real Redis server.
func ctCommandReply(t *testing.T, args ...string) (*redistest.Server, []any) {
	t.Helper()
	srv := redistest.Start(t, args...)
	c := srv.Dial()
	reply, err := redis.Values(c.Do("COMMAND"))
	if err != nil {
		t.Fatalf("COMMAND: %v", err)
	}
	return srv, reply
}

func ctArgs(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}

// TestCommandTableFromRedis builds the table from a real COMMAND reply and
// checks the lookups the proxy routes by.
func TestCommandTableFromRedis(t *testing.T) {
	srv, reply := ctCommandReply(t)
	tbl, err := buildTable(srv.Addr, reply, newMetrics(nil))
	if err != nil {
		t.Fatalf("buildTable: %v", err)
	}
	if tbl.source != srv.Addr {
		t.Errorf("source %q, want %q", tbl.source, srv.Addr)
	}
	if len(tbl.cmds) != len(reply) || len(reply) < 200 {
		t.Errorf("table has %d commands, COMMAND listed %d", len(tbl.cmds), len(reply))
	}
	long := strings.Repeat("x", 33)
	cases := []struct {
		args  []string
		name  string
		has   cmdFlags
		hasnt cmdFlags
	}{
		{[]string{"GET", "k"}, "get", flagReadonly | flagFast, flagWrite | flagBlocking},
		{[]string{"KEYS", "*"}, "keys", flagReadonly, flagFast},
		{[]string{"EVAL_RO", "return 1", "0"}, "eval_ro", flagReadonly, flagFast},
		{[]string{"get"}, "get", flagReadonly, 0},
		{[]string{"gEt", "k"}, "get", flagReadonly, 0},
		{[]string{"SET", "k", "v"}, "set", flagWrite, flagReadonly},
		{[]string{"BLPOP", "k", "0"}, "blpop", flagBlocking | flagWrite, 0},
		{[]string{"BZPOPMIN", "k", "0"}, "bzpopmin", flagBlocking, 0},
		{[]string{"XREAD", "STREAMS", "s", "0"}, "xread", flagReadonly | flagBlocking, 0},
		{[]string{"SUBSCRIBE", "ch"}, "subscribe", flagPubsub, 0},
		{[]string{"SHUTDOWN"}, "shutdown", flagAdmin | flagNoscript, 0},
		{[]string{"EVAL", "return 1", "0"}, "eval", flagNoscript, flagReadonly},
		{[]string{"WAIT", "0", "0"}, "wait", flagNoscript, flagBlocking},
		{[]string{"CLIENT", "SETNAME", "x"}, "client|setname", 0, 0},
		{[]string{"client", "setname"}, "client|setname", 0, 0},
		{[]string{"Client", "GetName"}, "client|getname", 0, 0},
		{[]string{"CONFIG", "SET", "maxmemory", "1"}, "config|set", flagAdmin, 0},
		{[]string{"OBJECT", "ENCODING", "k"}, "object|encoding", flagReadonly, 0},
		{[]string{"CLIENT"}, "client", 0, 0},
		{[]string{"CLIENT", "NOSUCHSUB"}, "client", 0, 0},
		{[]string{"CLIENT", long}, "client", 0, 0},
		{[]string{"GET", "SETNAME"}, "get", flagReadonly, 0}, // no subcommands: args are args
		{[]string{"NOSUCHCMD"}, "unknown", 0, flagReadonly | flagWrite | flagBlocking},
		{[]string{"client|setname", "x"}, "unknown", 0, 0},
		{[]string{""}, "unknown", 0, 0},
		{[]string{long}, "unknown", 0, 0},
		{[]string{strings.Repeat("G", 32)}, "unknown", 0, 0},
	}
	for _, c := range cases {
		info := tbl.lookup(ctArgs(c.args...))
		if info.name != c.name || info.flags&c.has != c.has || info.flags&c.hasnt != 0 {
			t.Errorf("lookup(%q) = %q flags %b; want %q with %b and without %b", c.args, info.name, info.flags, c.name, c.has, c.hasnt)
		}
	}
	if tbl.lookup(ctArgs("NOSUCHCMD")) != tbl.unknown {
		t.Errorf("an unknown command is not the table's unknown entry")
	}
	for _, n := range []int{1, 2, 100} {
		if !tbl.unknown.arityOK(n) {
			t.Errorf("unknown commands must go to Redis with any number of arguments; arityOK(%d) is false", n)
		}
	}
}

// TestCommandTableMatchesReply checks every entry of COMMAND against what
// the table made of it: blocking by flag or by the @blocking category, and
// every subcommand reachable under its container.
func TestCommandTableMatchesReply(t *testing.T) {
	srv, reply := ctCommandReply(t)
	tbl, err := buildTable(srv.Addr, reply, newMetrics(nil))
	if err != nil {
		t.Fatalf("buildTable: %v", err)
	}
	var check func(e any, container string)
	check = func(e any, container string) {
		fields := e.([]any)
		name, _ := redis.String(fields[0], nil)
		flags, _ := redis.Strings(fields[2], nil)
		cats, _ := redis.Strings(fields[6], nil)
		args := []string{name}
		if container != "" {
			args = []string{container, strings.TrimPrefix(name, container+"|")}
		}
		info := tbl.lookup(ctArgs(args...))
		if info.name != strings.ToLower(name) {
			t.Errorf("lookup(%q) = %q, want %q", args, info.name, name)
			return
		}
		want := map[string]cmdFlags{"readonly": flagReadonly, "write": flagWrite, "blocking": flagBlocking,
			"pubsub": flagPubsub, "admin": flagAdmin, "noscript": flagNoscript, "fast": flagFast}
		var wantFlags cmdFlags
		for _, f := range flags {
			wantFlags |= want[f]
		}
		for _, c := range cats {
			if c == "@blocking" {
				wantFlags |= flagBlocking
			}
		}
		if info.flags != wantFlags {
			t.Errorf("%s: flags %b, want %b (flags %v, categories %v)", name, info.flags, wantFlags, flags, cats)
		}
		// Arity: n means exactly n arguments with the name, -n at least n.
		arity, _ := redis.Int(fields[1], nil)
		n := max(arity, -arity)
		fits := map[int]bool{n: true, n - 1: false, n + 1: arity < 0, n + 5: arity < 0}
		for args, want := range fits {
			if args > 0 && info.arityOK(args) != want {
				t.Errorf("%s (arity %d): arityOK(%d) = %v, want %v", name, arity, args, !want, want)
			}
		}
		if subs, _ := fields[9].([]any); len(subs) > 0 {
			if len(info.subs) != len(subs) {
				t.Errorf("%s: %d subcommands in the table, %d in COMMAND", name, len(info.subs), len(subs))
			}
			for _, s := range subs {
				check(s, name)
			}
		}
	}
	for _, e := range reply {
		check(e, "")
	}
}

// TestCommandLookupDoesNotAllocate: lookup runs for every command a client
// sends; its doc comment promises no allocation.
func TestCommandLookupDoesNotAllocate(t *testing.T) {
	srv, reply := ctCommandReply(t)
	tbl, err := buildTable(srv.Addr, reply, newMetrics(nil))
	if err != nil {
		t.Fatalf("buildTable: %v", err)
	}
	for _, args := range [][][]byte{
		ctArgs("GET", "k"), ctArgs("client", "SetName", "x"), ctArgs("NOSUCH"), ctArgs(strings.Repeat("x", 100)),
		ctArgs("CONFIG", strings.Repeat("y", 100)),
	} {
		if n := testing.AllocsPerRun(100, func() { tbl.lookup(args) }); n != 0 {
			t.Errorf("lookup(%q) allocates %.0f times", args, n)
		}
	}
}

// TestBuildTableRejectsMalformedReplies: a reply that is not a COMMAND table
// is an error, not a partial table.
func TestBuildTableRejectsMalformedReplies(t *testing.T) {
	good := []any{[]byte("get"), int64(2), []any{[]byte("readonly")}, int64(1), int64(1), int64(1), []any{[]byte("@read")}, []any{}, []any{}, []any{}}
	cases := map[string][]any{
		"empty":                {},
		"entry not an array":   {[]byte("get")},
		"entry too short":      {[]any{[]byte("get"), int64(2)}},
		"name not a string":    {[]any{int64(1), int64(2), []any{}}},
		"malformed subcommand": {[]any{[]byte("client"), int64(-2), []any{}, int64(0), int64(0), int64(0), []any{}, []any{}, []any{}, []any{[]byte("oops")}}},
	}
	for name, reply := range cases {
		if tbl, err := buildTable("x", reply, newMetrics(nil)); err == nil {
			t.Errorf("%s: buildTable accepted it (%d commands)", name, len(tbl.cmds))
		}
	}
	tbl, err := buildTable("x", []any{good}, newMetrics(nil))
	if err != nil || tbl.lookup(ctArgs("GET")).name != "get" || !tbl.lookup(ctArgs("GET")).has(flagReadonly) {
		t.Fatalf("a minimal well-formed reply: %v", err)
	}
}

// TestRenamedCommandThroughProxy: COMMAND lists a renamed command under its
// original name, so the new name is unknown to the table; the proxy must
// still forward it (to the master) and return the server's reply.
func TestRenamedCommandThroughProxy(t *testing.T) {
	srv, reply := ctCommandReply(t, "--rename-command", "GET", "MYGET")
	tbl, err := buildTable(srv.Addr, reply, newMetrics(nil))
	if err != nil {
		t.Fatalf("buildTable: %v", err)
	}
	if got := tbl.lookup(ctArgs("MYGET", "k")).name; got != "unknown" {
		t.Fatalf("lookup(MYGET) = %q, want the unknown entry", got)
	}
	tp := startProxy(t, Config{}, srv.Addr)
	c := tp.dial(t, redis.DialReadTimeout(5*time.Second))
	if _, err := c.Do("SET", "k", "renamed"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, err := redis.String(c.Do("MYGET", "k")); err != nil || v != "renamed" {
		t.Fatalf("MYGET through the proxy: %q, %v", v, err)
	}
	if _, err := c.Do("GET", "k"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("GET (renamed away) through the proxy: %v, want Redis's unknown command error", err)
	}
}
