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
