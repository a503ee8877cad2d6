//go:build linux

package proxy

// Tests of the event loop's pieces: busy polling, the line-at-a-time
// parser and the command lookup cache.

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// TestSpinningDecision: a loop polls only with busy polling on, for one or
// two recently active clients, within the polling period of its last event.
func TestSpinningDecision(t *testing.T) {
	const us = time.Microsecond
	for _, tc := range []struct {
		spin       time.Duration
		clients    int
		sinceEvent time.Duration
		want       bool
	}{
		{100 * us, 1, 10 * us, true},
		{100 * us, 2, 99 * us, true},
		{100 * us, 1, 100 * us, false}, // the period is over: sleep
		{100 * us, 3, 10 * us, false},  // many clients: the wait gathers their commands
		{100 * us, 50, 0, false},
		{100 * us, 0, 10 * us, false}, // no client traffic (a task, a backend event)
		{0, 1, 0, false},              // off
	} {
		if got := spinning(tc.spin, tc.clients, tc.sinceEvent); got != tc.want {
			t.Errorf("spinning(%v, %d, %v) = %v, want %v", tc.spin, tc.clients, tc.sinceEvent, got, tc.want)
		}
	}
}

// threadCPU is the CPU time a thread of this process has used.
func threadCPU(t *testing.T, tid int32) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		t.Fatalf("thread stat: %v", err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	// After the name: state is field 3, utime 14 and stime 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// With busy polling, a loop serving one client polls between its requests
// (the metric shows it), and once the client goes quiet the loop sleeps:
// its thread uses (almost) no CPU. With polling off, it never polls.
func TestBusyPollPollsThenSleeps(t *testing.T) {
	if *eventLoops < 0 {
		t.Skip("no event loops in this run (-eventloops=-1)")
	}
	r := redistest.Start(t)
	for _, tc := range []struct {
		spin    time.Duration
		polling bool
	}{{2 * time.Millisecond, true}, {-1, false}} {
		tp := startProxy(t, Config{BusyPoll: tc.spin, EventLoops: 1}, r.Addr)
		c := stDial(t, tp.Addr)
		for i := 0; i < 300; i++ {
			stExpect(t, c.do("GET", "bp:missing"), "<nil>")
		}
		polled := testutil.ToFloat64(tp.m.busyPoll)
		t.Logf("BusyPoll %v: polled %.1f ms over 300 requests", tc.spin, polled*1000)
		if (polled > 0) != tc.polling {
			t.Fatalf("BusyPoll %v: polled %v s, want polling %v", tc.spin, polled, tc.polling)
		}
		tid := tp.loops[0].tid.Load()
		before := threadCPU(t, tid)
		time.Sleep(500 * time.Millisecond)
		idle := threadCPU(t, tid) - before
		t.Logf("BusyPoll %v: loop thread CPU over 500 ms idle: %v", tc.spin, idle)
		if idle > 50*time.Millisecond {
			t.Fatalf("BusyPoll %v: the idle loop used %v of CPU in 500 ms: it did not go to sleep", tc.spin, idle)
		}
	}
}

// TestParsePlainMatchesParseMultibulk: whatever the line-at-a-time parser
// accepts, the careful one parses the same way (same length, same
// arguments); what it refuses is left to the careful one.
func TestParsePlainMatchesParseMultibulk(t *testing.T) {
	r := rand.New(rand.NewSource(20261130))
	var plain, careful evloop
	accepted := 0
	for iter := 0; iter < 20000; iter++ {
		args := make([]string, 1+r.Intn(6))
		for a := range args {
			arg := make([]byte, r.Intn(20))
			for k := range arg {
				arg[k] = byte(r.Intn(256))
			}
			args[a] = string(arg)
		}
		b := stCmd(args...)
		for flips := r.Intn(3); flips > 0; flips-- {
			b[r.Intn(len(b))] = "*$\r\n0-9x"[r.Intn(8)]
		}
		b = b[:len(b)-r.Intn(3)] // sometimes incomplete
		pc, pn := plain.parsePlain(b)
		if pn == 0 {
			continue
		}
		accepted++
		cc, cn, cerr := careful.parseMultibulk(b)
		if cerr != "" || cn != pn || !slices.EqualFunc(pc.Args, cc.Args, bytes.Equal) || !bytes.Equal(pc.Raw, cc.Raw) {
			t.Fatalf("%q: line at a time %d %q; careful %d %q %q", b, pn, pc.Args, cn, cc.Args, cerr)
		}
	}
	if accepted < 1000 {
		t.Fatalf("only %d of 20000 commands took the line-at-a-time path", accepted)
	}
}

// BenchmarkParseAndLookup parses what redis-benchmark -P 16 sends for SET
// and looks each command up, as the event loop does per command.
func BenchmarkParseAndLookup(b *testing.B) {
	var chunk []byte
	for i := 0; i < 16; i++ {
		chunk = append(chunk, "*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n"...)
	}
	info := &cmdInfo{name: "set", arity: -3}
	tbl := &cmdTable{cmds: map[string]*cmdInfo{"set": info}, unknown: &cmdInfo{name: "unknown"}}
	for i := 0; i < 240; i++ { // a table of Redis's size
		tbl.cmds["cmd"+strconv.Itoa(i)] = &cmdInfo{}
	}
	var l evloop
	var lc lookupCache
	for b.Loop() {
		for buf := chunk; len(buf) > 0; {
			cmd, n, perr := l.parseCommand(buf)
			if n == 0 || perr != "" {
				b.Fatal("parse failed")
			}
			if lc.lookup(tbl, cmd.Args) != info {
				b.Fatal("lookup failed")
			}
			buf = buf[n:]
		}
	}
}

// TestLookupCache: the cache answers what the table answers: subcommands
// of the same container differ, another spelling or a new table is looked
// up again, and names longer than the cache still resolve.
func TestLookupCache(t *testing.T) {
	setname, getname := &cmdInfo{name: "client|setname"}, &cmdInfo{name: "client|getname"}
	client := &cmdInfo{name: "client", subs: map[string]*cmdInfo{"setname": setname, "getname": getname}}
	get := &cmdInfo{name: "get"}
	long := &cmdInfo{name: "averyverylongcommandname"}
	t1 := &cmdTable{cmds: map[string]*cmdInfo{"client": client, "get": get, long.name: long}, unknown: &cmdInfo{name: "unknown"}}
	get2 := &cmdInfo{name: "get"}
	t2 := &cmdTable{cmds: map[string]*cmdInfo{"get": get2}, unknown: &cmdInfo{name: "unknown"}}
	args := func(s ...string) [][]byte {
		var a [][]byte
		for _, x := range s {
			a = append(a, []byte(x))
		}
		return a
	}
	var c lookupCache
	for i, tc := range []struct {
		t    *cmdTable
		args [][]byte
		want *cmdInfo
	}{
		{t1, args("CLIENT", "SETNAME", "x"), setname},
		{t1, args("CLIENT", "GETNAME"), getname},
		{t1, args("CLIENT", "getname"), getname},
		{t1, args("CLIENT"), client},
		{t1, args("client", "SetName", "y"), setname},
		{t1, args("GET", "k"), get},
		{t1, args("GET", "k"), get},
		{t2, args("GET", "k"), get2}, // a refreshed table
		{t2, args("CLIENT", "GETNAME"), t2.unknown},
		{t1, args("AVERYVERYLONGCOMMANDNAME"), long},
		{t1, args("nosuch"), t1.unknown},
		{t1, args("GET", "k"), get},
	} {
		if got := c.lookup(tc.t, tc.args); got != tc.want {
			t.Errorf("%d: lookup %q = %s, want %s", i, tc.args, got.name, tc.want.name)
		}
	}
}
