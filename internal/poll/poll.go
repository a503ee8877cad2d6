// Package poll waits in tests for a condition that something else makes
// true: a failover to be routed, a replica to catch up, a process to take
// an address. It polls, because what it waits for is seen from outside
// (an admin API, a log, ROLE, an interface), with no event to wait on.
//
// Until fails the test when the condition does not hold in time, so it
// must run on the test's goroutine:
//
//	at := poll.Until(t, 10*time.Second, "the replica promoted", func() bool {
//		r, err := role(replica)
//		return err == nil && r == "master"
//	})
//
// UntilNil does the same for a condition that can say what it saw instead,
// which the failure then reports.
package poll

import (
	"errors"
	"testing"
	"time"
)

// Interval is how often Until asks.
const Interval = 10 * time.Millisecond

// Until asks cond every Interval until it holds, and returns when it first
// did; if it has not held after d, it fails t with "not within d: what".
func Until(t testing.TB, d time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	return until(t, d, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// UntilNil is Until for a check that returns nil once the condition holds
// and otherwise an error saying what it saw; if it has not returned nil
// after d, it fails t with "not within d: what (last: err)".
func UntilNil(t testing.TB, d time.Duration, what string, check func() error) time.Time {
	t.Helper()
	return until(t, d, what, check)
}

// errNotYet is Until's condition not holding: it has nothing to report.
var errNotYet = errors.New("not yet")

func until(t testing.TB, d time.Duration, what string, check func() error) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			if err == errNotYet {
				t.Fatalf("not within %v: %s", d, what)
			}
			t.Fatalf("not within %v: %s (last: %v)", d, what, err)
		}
		time.Sleep(Interval)
	}
}
