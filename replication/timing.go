package replication

import "time"

// The timing rules of the package, each a small pure function so that its
// table test (timing_test.go) is the specification.

// isDown reports whether a server has gone downAfter without a valid reply.
// lastOK is the time of its last valid reply (zero if it never answered) and
// since is when monitoring of it began: a server that never answered is down
// once downAfter has passed since monitoring began, not at once.
func isDown(lastOK, since time.Time, downAfter time.Duration, now time.Time) bool {
	ref := lastOK
	if ref.Before(since) {
		ref = since
	}
	return now.Sub(ref) >= downAfter
}

// checkTimeout bounds one check of one server (dial, AUTH, ROLE, INFO) and
// every command the manager sends. It is half of downAfter, so that a server
// that stopped answering (SIGSTOP, a full network buffer) yields a failed
// check at least twice before it is declared down, but never less than the
// check interval (a slow link is not a dead one) and never more than
// downAfter.
func checkTimeout(interval, downAfter time.Duration) time.Duration {
	t := downAfter / 2
	if t < interval {
		t = interval
	}
	if t > downAfter {
		t = downAfter
	}
	return t
}

// retryDue reports whether an action last sent to a server at last may be
// sent again: once per check interval, so that a server that refuses an
// action is not hammered, and a lost reply is retried promptly.
func retryDue(last, now time.Time, every time.Duration) bool {
	return last.IsZero() || now.Sub(last) >= every
}

// promotionExpired reports whether a promotion started at started has gone
// unconfirmed for so long that another candidate should be chosen. The
// manager confirms a promotion right after REPLICAOF NO ONE, so waiting
// downAfter covers a lost reply and one more check.
func promotionExpired(started, now time.Time, downAfter time.Duration) bool {
	return now.Sub(started) >= downAfter
}
