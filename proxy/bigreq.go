package proxy

import (
	"context"
	"runtime"
	"strconv"
	"time"
)

// Large requests. A request whose value is large (a SET of hundreds of
// megabytes) is read on the goroutine path, into a buffer of its exact
// size, once (the request parser knows the size from the bulk's header),
// and written to Redis from that buffer (backendConn.write, writev): the
// value is in the proxy's memory once, not doubled by the growth of a
// read buffer and copied again into a connection's write buffer. An event
// loop hands such a client over as soon as it sees the header. The memory
// of large requests being read is bounded across clients
// (Config.MaxInflightMemory): a client waits, unread, for room.

// bigRequest is the size from which a request being read counts as large:
// below it, a buffer that doubles as bytes arrive costs little.
const bigRequest = 4 << 20

// reserve takes room for a large request of need bytes for g's buffer
// (which already holds g.room), waiting up to HoldTimeout. It reports
// whether it got it.
func (g *gclient) reserve(need int) bool {
	more := int64(need) - g.room
	if more <= 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.p.cfg().HoldTimeout)
	defer cancel()
	if err := g.p.mem.Acquire(ctx, more); err != nil {
		return false
	}
	g.room += more
	g.p.m.inflightMemory.Add(float64(more))
	return true
}

// unreserve gives back the room g's buffer held, once g.in no longer is
// that buffer. Nothing else of g may hold it then, for collect to take it
// back: not the batch's arguments, nor the parser's.
func (g *gclient) unreserve() {
	if g.room > 0 {
		clear(g.args)
		g.parser.Forget()
		g.p.collect(g.room)
		g.p.mem.Release(g.room)
		g.p.m.inflightMemory.Sub(float64(g.room))
		g.room = 0
	}
}

// collectAfter is how much of large requests' buffers may be dropped
// before the collector is made to run.
const collectAfter = 64 << 20

// collect counts n bytes of a large request's buffer, just dropped, as
// garbage. The collector would take such buffers back only once the heap
// doubled since it last ran, so with large requests following each other
// the proxy held the dead buffers besides the live ones (1.6 times the
// in-flight bound, measured; 3 times with a collection started in the
// background, the next buffer being taken before it was done). So once
// collectAfter bytes died, the client that dropped the last of them runs
// a collection before it gives back their room (one client at a time;
// its reply is written, so only its next command waits), and the next
// large request reuses their memory.
func (p *Proxy) collect(n int64) {
	if p.freed.Add(n) < collectAfter || !p.gcing.CompareAndSwap(false, true) {
		return
	}
	p.freed.Store(0)
	runtime.GC()
	p.gcing.Store(false)
}

// errNoRoom is the reply to a request that found no room in
// MaxInflightMemory within HoldTimeout.
func errNoRoom(limit int64, waited time.Duration) string {
	return "TRYAGAIN redis-proxy: large requests in flight fill REDIS_PROXY_MAX_INFLIGHT_MEMORY (" +
		byteSize(limit) + "); waited " + waited.String()
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + " GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
