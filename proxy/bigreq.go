package proxy

import (
	"context"
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
	ctx, cancel := context.WithTimeout(context.Background(), g.p.cfg.HoldTimeout)
	defer cancel()
	if err := g.p.mem.Acquire(ctx, more); err != nil {
		return false
	}
	g.room += more
	g.p.m.inflightMemory.Add(float64(more))
	return true
}

// unreserve gives back the room g's buffer held, once it is dropped.
func (g *gclient) unreserve() {
	if g.room > 0 {
		g.p.mem.Release(g.room)
		g.p.m.inflightMemory.Sub(float64(g.room))
		g.room = 0
	}
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
