package proxy

import (
	"sync"
	"time"
)

// busyTracker counts the long commands (scripts and functions:
// command.Info.Long) the proxy has in flight on one server, by the time
// each was sent. A server running one answers nobody, until its
// busy-reply-threshold, so the replication manager asks (Proxy.Busy)
// before it takes such silence for a dead master; and SCRIPT KILL goes to
// the server that runs one. Safe for concurrent use; the data path
// touches it only for long commands.
type busyTracker struct {
	mu       sync.Mutex
	inFlight map[int64]int // send time (UnixNano) -> how many
}

// start records a long command sent at at and returns its key for done.
func (b *busyTracker) start(at time.Time) int64 {
	key := at.UnixNano()
	b.mu.Lock()
	if b.inFlight == nil {
		b.inFlight = make(map[int64]int)
	}
	b.inFlight[key]++
	b.mu.Unlock()
	return key
}

// done records the end (a reply, or the connection's end) of the long
// command start returned key for; key 0 is none.
func (b *busyTracker) done(key int64) {
	if key == 0 {
		return
	}
	b.mu.Lock()
	if b.inFlight[key]--; b.inFlight[key] <= 0 {
		delete(b.inFlight, key)
	}
	b.mu.Unlock()
}

// oldest returns when the oldest long command in flight was sent.
func (b *busyTracker) oldest() (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var min int64
	for k := range b.inFlight {
		if min == 0 || k < min {
			min = k
		}
	}
	return time.Unix(0, min), min != 0
}

// Busy reports whether the proxy has a script or function it sent to the
// server addr still unanswered, and since when (the oldest): the
// replication manager takes the server's silence for the script running,
// not for the server being dead (replication.BusyReporter).
func (p *Proxy) Busy(addr string) (time.Time, bool) {
	p.mu.Lock()
	pl := p.pools[addr]
	p.mu.Unlock()
	if pl == nil {
		return time.Time{}, false
	}
	return pl.busy.oldest()
}

// busyPool is the server of rt that runs a long command of the proxy's
// (the one running it longest), where SCRIPT KILL and FUNCTION KILL go;
// the master if none does.
func (rt *routes) busyPool() *pool {
	best, since := rt.master, time.Time{}
	for _, pl := range append([]*pool{rt.master}, rt.replicas...) {
		if pl == nil {
			continue
		}
		if t, ok := pl.busy.oldest(); ok && (since.IsZero() || t.Before(since)) {
			best, since = pl, t
		}
	}
	return best
}
