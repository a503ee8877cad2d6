package replication

import (
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestIsDown(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name          string
		lastOK, since time.Time
		downAfter     time.Duration
		now           time.Time
		want          bool
	}{
		{"answered just now", at(10 * s), at(0), s, at(10 * s), false},
		{"just under downAfter", at(10 * s), at(0), s, at(11*s - 1), false},
		{"exactly downAfter", at(10 * s), at(0), s, at(11 * s), true},
		{"long silent", at(10 * s), at(0), s, at(60 * s), true},
		{"never answered, monitoring just began", time.Time{}, at(5 * s), s, at(5*s + 500*time.Millisecond), false},
		{"never answered for downAfter", time.Time{}, at(5 * s), s, at(6 * s), true},
		{"last reply before monitoring began counts from since", at(1 * s), at(5 * s), s, at(5*s + 10*time.Millisecond), false},
		// After a stall the manager passes the time it resumed as since.
		{"heard before a 10s stall, just resumed", at(1 * s), at(11 * s), s, at(11 * s), false},
		{"heard before a stall, silent downAfter since resuming", at(1 * s), at(11 * s), s, at(12 * s), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isDown(tt.lastOK, tt.since, tt.downAfter, tt.now); got != tt.want {
				t.Errorf("isDown(lastOK=%v, since=%v, %v, now=%v) = %v, want %v", tt.lastOK, tt.since, tt.downAfter, tt.now, got, tt.want)
			}
		})
	}
}

func TestCheckTimeout(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		interval, downAfter, want time.Duration
	}{
		{250 * ms, 1000 * ms, 500 * ms}, // defaults: half of downAfter
		{100 * ms, 500 * ms, 250 * ms},
		{400 * ms, 500 * ms, 400 * ms},  // never below the interval
		{2000 * ms, 500 * ms, 500 * ms}, // never above downAfter
		{10 * ms, 30 * time.Second, 15 * time.Second},
	}
	for _, tt := range tests {
		if got := checkTimeout(tt.interval, tt.downAfter); got != tt.want {
			t.Errorf("checkTimeout(%v, %v) = %v, want %v", tt.interval, tt.downAfter, got, tt.want)
		}
	}
}

func TestRetryDue(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		last, now time.Time
		every     time.Duration
		want      bool
	}{
		{time.Time{}, at(0), 250 * ms, true}, // never sent
		{at(0), at(0), 250 * ms, false},      // just sent (same decision round)
		{at(0), at(249 * ms), 250 * ms, false},
		{at(0), at(250 * ms), 250 * ms, true},
	}
	for _, tt := range tests {
		if got := retryDue(tt.last, tt.now, tt.every); got != tt.want {
			t.Errorf("retryDue(%v, %v, %v) = %v, want %v", tt.last, tt.now, tt.every, got, tt.want)
		}
	}
}

func TestPromotionExpired(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		started, now time.Time
		downAfter    time.Duration
		want         bool
	}{
		{at(0), at(0), time.Second, false},
		{at(0), at(999 * ms), time.Second, false},
		{at(0), at(1000 * ms), time.Second, true},
	}
	for _, tt := range tests {
		if got := promotionExpired(tt.started, tt.now, tt.downAfter); got != tt.want {
			t.Errorf("promotionExpired(%v, %v, %v) = %v, want %v", tt.started, tt.now, tt.downAfter, got, tt.want)
		}
	}
}

func TestStallAfter(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		interval, downAfter, want time.Duration
	}{
		{250 * ms, 1000 * ms, 500 * ms}, // defaults: half of downAfter
		{100 * ms, 500 * ms, 250 * ms},  // the process tests
		{400 * ms, 500 * ms, 400 * ms},  // never below the check interval
		{10 * ms, 30 * time.Second, 15 * time.Second},
	}
	for _, tt := range tests {
		if got := stallAfter(tt.interval, tt.downAfter); got != tt.want {
			t.Errorf("stallAfter(%v, %v) = %v, want %v", tt.interval, tt.downAfter, got, tt.want)
		}
	}
}

func TestStalled(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		last, now time.Time
		limit     time.Duration
		want      bool
	}{
		{"first decision", time.Time{}, at(10 * time.Second), 500 * ms, false},
		{"usual half-interval tick", at(0), at(125 * ms), 500 * ms, false},
		{"exactly the limit", at(0), at(500 * ms), 500 * ms, false},
		{"just over the limit", at(0), at(501 * ms), 500 * ms, true},
		{"frozen 10s", at(0), at(10 * time.Second), 500 * ms, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stalled(tt.last, tt.now, tt.limit); got != tt.want {
				t.Errorf("stalled(%v, %v, %v) = %v, want %v", tt.last, tt.now, tt.limit, got, tt.want)
			}
		})
	}
}

func TestHoldOver(t *testing.T) {
	ms := time.Millisecond
	resumed := at(10 * time.Second)
	tests := []struct {
		name        string
		oldest, now time.Time
		want        bool
	}{
		{"at the decision that found the stall", at(9 * time.Second), resumed, false},
		{"a check sent at the very moment of resuming is not after it", resumed, resumed.Add(300 * ms), false},
		{"one server not checked since", at(1 * time.Second), resumed.Add(300 * ms), false},
		{"a server never checked", time.Time{}, resumed.Add(300 * ms), false},
		{"every server checked since, within the interval", resumed.Add(1 * ms), resumed.Add(249 * ms), false},
		{"every server checked since, an interval later", resumed.Add(1 * ms), resumed.Add(250 * ms), true},
		{"downAfter since resuming, a server still silent", at(9 * time.Second), resumed.Add(time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := holdOver(resumed, tt.oldest, tt.now, 250*ms, time.Second); got != tt.want {
				t.Errorf("holdOver(%v, %v, %v, 250ms, 1s) = %v, want %v", resumed, tt.oldest, tt.now, got, tt.want)
			}
		})
	}
}

func TestBusyExcused(t *testing.T) {
	at := t0.Add(10 * time.Second)
	grace := 6 * time.Second
	for _, tc := range []struct {
		name      string
		silent    bool
		busySince time.Time
		grace     time.Duration
		want      bool
	}{
		{"silent, a script in flight for 1s", true, at.Add(-time.Second), grace, true},
		{"silent, in flight just under grace", true, at.Add(-grace + time.Millisecond), grace, true},
		{"silent, in flight for grace", true, at.Add(-grace), grace, false},
		{"silent, nothing in flight", true, time.Time{}, grace, false},
		{"an error, not silence (refused, reset)", false, at.Add(-time.Second), grace, false},
		{"grace off", true, at.Add(-time.Second), 0, false},
		{"sent after the check (clock skew): no excuse", true, at.Add(time.Millisecond), grace, false},
	} {
		if got := busyExcused(tc.silent, tc.busySince, at, tc.grace); got != tc.want {
			t.Errorf("%s: busyExcused = %v, want %v", tc.name, got, tc.want)
		}
	}
}
