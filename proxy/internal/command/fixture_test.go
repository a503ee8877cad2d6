package command

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ (and, without -short, the COMMAND fixture from the installed redis-server)")

// fixturePath holds Redis 7.0.15's COMMAND reply, one top-level command a
// line (JSON: bulk and status strings as strings, integers as numbers),
// sorted by name, subcommands sorted too: COMMAND's own order follows a
// hash table's and changes from run to run.
const fixturePath = "testdata/command-7.0.15.jsonl"

const fixtureHeader = "# COMMAND reply of redis-server 7.0.15 (RESP2), one command a line, sorted by name.\n" +
	"# Regenerate: go test ./proxy/internal/command/ -run TestFixtureMatchesServer -update\n"

// TestFixtureMatchesServer checks the COMMAND fixture against the
// installed redis-server, so the table tests cannot go stale silently;
// with -update it rewrites the fixture.
func TestFixtureMatchesServer(t *testing.T) {
	srv := redistest.Start(t) // skips under -short
	c := srv.Dial()
	version, err := redis.String(c.Do("INFO", "server"))
	if err != nil {
		t.Fatalf("INFO server: %v", err)
	}
	reply, err := redis.Values(c.Do("COMMAND"))
	if err != nil {
		t.Fatalf("COMMAND: %v", err)
	}
	got, err := encodeFixture(reply)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if !strings.Contains(version, "redis_version:7.0.15\r") {
			t.Fatalf("the fixture is Redis 7.0.15's; the installed server is not:\n%s", version)
		}
		if err := os.WriteFile(fixturePath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the installed redis-server's COMMAND (%s); diff:\n%s\nrun with -update if the new reply is right",
			fixturePath, serverVersion(version), lineDiff(string(want), string(got)))
	}
	// And the table built from either is the same.
	fromServer, err := Build(srv.Addr, reply, nopCounters)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := dumpTable(fromServer), dumpTable(fixtureTable(t)); a != b {
		t.Errorf("table from the server differs from the fixture's:\n%s", lineDiff(b, a))
	}
}

func serverVersion(info string) string {
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "redis_version:"); ok {
			return "redis " + v
		}
	}
	return "unknown version"
}

// encodeFixture turns a COMMAND reply into the fixture's text.
func encodeFixture(reply []any) ([]byte, error) {
	entries := sortedEntries(reply)
	var b bytes.Buffer
	b.WriteString(fixtureHeader)
	for _, e := range entries {
		j, err := json.Marshal(toJSON(e))
		if err != nil {
			return nil, err
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// sortedEntries sorts COMMAND entries (and their subcommands) by name.
func sortedEntries(reply []any) []any {
	out := make([]any, len(reply))
	for i, e := range reply {
		fields, ok := e.([]any)
		if ok && len(fields) > 9 {
			if subs, ok := fields[9].([]any); ok {
				f := append([]any(nil), fields...)
				f[9] = sortedEntries(subs)
				e = f
			}
		}
		out[i] = e
	}
	name := func(e any) string {
		if f, ok := e.([]any); ok && len(f) > 0 {
			s, _ := redis.String(f[0], nil)
			return s
		}
		return ""
	}
	sort.SliceStable(out, func(i, j int) bool { return name(out[i]) < name(out[j]) })
	return out
}

func toJSON(v any) any {
	switch v := v.(type) {
	case []byte:
		return string(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = toJSON(e)
		}
		return out
	}
	return v // int64, string (status), nil
}

// fromJSON turns a decoded fixture value into what redigo gives: bulk
// strings as []byte, integers as int64.
func fromJSON(v any) (any, error) {
	switch v := v.(type) {
	case string:
		return []byte(v), nil
	case json.Number:
		return v.Int64()
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			var err error
			if out[i], err = fromJSON(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected %T in fixture", v)
}

// loadFixture reads the fixture as a COMMAND reply.
func loadFixture(path string) ([]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var reply []any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		e, err := fromJSON(v)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		reply = append(reply, e)
	}
	return reply, sc.Err()
}

// counter counts, for the tests of Info.Count.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) Inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }

func (c *counter) get() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

var nopCounter = &counter{}

func nopCounters(string) (ok, fail Counter) { return nopCounter, nopCounter }

var (
	fixtureOnce  sync.Once
	fixtureReply []any
	fixtureTab   *Table
	fixtureErr   error
)

// fixtureTable is the table built from the fixture, shared by the tests
// (it is immutable).
func fixtureTable(t testing.TB) *Table {
	t.Helper()
	fixtureOnce.Do(func() {
		fixtureReply, fixtureErr = loadFixture(fixturePath)
		if fixtureErr == nil {
			fixtureTab, fixtureErr = Build("fixture", fixtureReply, nopCounters)
		}
	})
	if fixtureErr != nil {
		t.Fatalf("fixture: %v", fixtureErr)
	}
	return fixtureTab
}

// freshFixtureReply is a new copy of the fixture's reply, for tests that
// change it.
func freshFixtureReply(t testing.TB) []any {
	t.Helper()
	reply, err := loadFixture(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// dumpTable is a table as text: one line per command and subcommand.
func dumpTable(t *Table) string {
	var lines []string
	var add func(c *Info)
	add = func(c *Info) {
		lines = append(lines, fmt.Sprintf("%s arity=%d flags=%s special=%s inblock=%v", c.Name, c.Arity, flagString(c.Flags), specialNames[c.Special], c.InBlock()))
		for _, s := range c.Subs {
			add(s)
		}
	}
	for _, c := range t.cmds {
		add(c)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func flagString(f Flags) string {
	var s []string
	for i, n := range []string{"readonly", "write", "blocking", "pubsub", "admin", "noscript", "fast"} {
		if f&(1<<i) != 0 {
			s = append(s, n)
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// lineDiff is a small line diff: lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	in := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if mb[l] == 0 {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if ma[l] == 0 {
			out = append(out, "+ "+l)
		}
	}
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("... and %d more", len(out)-40))
	}
	return strings.Join(out, "\n")
}
