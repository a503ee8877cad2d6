package replication

import "time"

// The timing rules of the package, each a small pure function so that its
// table test (timing_test.go) is the specification.

// isDown reports whether a server has gone downAfter without a valid reply.
// lastOK is the time of its last valid reply (zero if it never answered) and
// since is when the evidence about it began: when monitoring of it began, or
// when the manager resumed after a stall (see stalled). Silence before since
// does not count: a server that never answered is down once downAfter has
// passed since monitoring began, not at once, and a server last heard before
// a stall is down only after downAfter of silence once the manager resumed.
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

// stallAfter is the longest gap between two decisions that is not a stall of
// the manager itself (its process frozen, its loop blocked). The loop decides
// every half check interval, so a gap of a whole interval is merely a slow
// wake-up; beyond half of downAfter, the gap would make up most of the
// silence that declares a server down, so the silence is no longer evidence
// about the server. A healthy server is heard every interval, so a gap up to
// this bound cannot make it look down as long as interval + stallAfter, plus
// a check's latency, stays under downAfter (by default 250ms + 500ms of 1s).
func stallAfter(interval, downAfter time.Duration) time.Duration {
	return max(downAfter/2, interval)
}

// stalled reports whether the decision at now follows the previous one, at
// last (zero before the first), by more than limit.
func stalled(last, now time.Time, limit time.Duration) bool {
	return !last.IsZero() && now.Sub(last) > limit
}

// holdOver reports whether the manager, which resumed after a stall at
// resumed, may act again: after a full round of checks, that is once a check
// interval has passed and every configured server has been checked by a
// check sent after resumed (oldest is the oldest of their newest check times,
// zero if one was never checked); or downAfter after resumed, when a server
// that still has not answered is down on evidence gathered since resuming.
// The interval also gives the VIP layer, thawed at the same moment, time to
// hear a peer that took over meanwhile and withdraw authority.
func holdOver(resumed, oldest, now time.Time, interval, downAfter time.Duration) bool {
	waited := now.Sub(resumed)
	return (waited >= interval && oldest.After(resumed)) || waited >= downAfter
}

// busySilent begins a Node's Reply while busyExcused holds for it.
const busySilent = "silent, running a command the proxy sent it for "

// busyExcused reports whether a check that failed at at is no evidence
// against the server: it said nothing (silent) while running a long
// command the proxy sent it at busySince (a Lua script or a function,
// which holds Redis until it ends), for less than grace. Redis answers
// nobody while such a command runs, until its busy-reply-threshold (5s by
// default), and -BUSY after that, which is a reply and proves it alive.
// So silence with such a command in flight is what a busy server looks
// like for up to that threshold; past grace it counts again, as it does
// for a server that stopped (SIGSTOP) with such a command in flight, which
// is thus failed over grace later than otherwise. Sentinel, which has no
// view of the clients' commands, takes no silence as busy; it sends
// SCRIPT KILL to a master answering -BUSY. The proxy leaves the script to
// its client (SCRIPT KILL goes to the server that runs it).
func busyExcused(silent bool, busySince, at time.Time, grace time.Duration) bool {
	return silent && !busySince.IsZero() && !busySince.After(at) && at.Sub(busySince) < grace
}
