package proxy

import "bytes"

// Running again what a dead connection never answered. When a shared
// connection dies (closed or reset by the server, a failed read or write)
// or its server stops being master, its unanswered commands would get
// "-ERR ... outcome unknown". Both data paths give some of them a second
// run instead, on the next connection that is up (after a failover, on
// the new master), so their clients see a pause, not an error. The rule,
// the same on both paths:
//
//   - a command never written never reached the server: it runs again
//     (only an event loop holds written-later requests: coalescing);
//   - of the commands written, a client's trailing run of fast reads
//     (rerunFrom) runs again, when nothing the client sent after them can
//     have run and changed what they read; each gets a second run only
//     (the event loop's retried flag, the goroutine path's single re-run),
//     so a read that brings servers down fails instead of going round
//     them all;
//   - everything else gets the error: a write may or may not have
//     happened; a slow read (KEYS, LRANGE, EVAL_RO, ...) may be what
//     brought the server down; and a connection that broke the protocol
//     (rerunErr false) gives no second run at all.

// rerunFrom returns the index in a client's n written, unanswered
// commands (in order) from which they may run again: the start of their
// trailing run of those rerunnable reports true for. Before it, each gets
// the error.
func rerunFrom(n int, rerunnable func(i int) bool) int {
	i := n
	for i > 0 && rerunnable(i-1) {
		i--
	}
	return i
}

// lostLen is the length of the first reply in b, an error reply ending in
// CRLF such as appendLost makes.
func lostLen(b []byte) int { return bytes.IndexByte(b, '\n') + 1 }
