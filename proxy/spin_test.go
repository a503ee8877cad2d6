//go:build linux

package proxy

import (
	"bytes"
	"fmt"
	"os"
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
