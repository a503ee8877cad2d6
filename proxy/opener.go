package proxy

import (
	"context"
	"runtime"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
)

// The opener: the first blocking command of each loop client (openNow) is
// written here, by one thread, one at a time, in the order the loops
// handed them over, each on a connection of its own to the master (a
// spare, or one dialed now, waiting for a master like any command): a
// blocked client is never overtaken by one that sent its command later.
//
// Nor are two written closer together than openPace: a loop that was held
// up writes a backlog at once, and two writes on two sockets a few
// microseconds apart may reach Redis in either order (loopback delivers
// each CPU's packets from its own backlog, which a loaded CPU serves
// late: measured, such pairs arrived 7 to 30 µs apart, in the wrong order,
// with 250 µs between the writes). Written as far apart as clients
// commonly send them (1 ms), they keep the order they would keep direct;
// a burst of first blocking commands takes openPace each (a client's
// later ones go straight to its tunnel).
const openPace = time.Millisecond

// opened is a tunnel an event loop began (openNow): its connection, with
// the client's blocking command written to it, after a CLIENT SETNAME
// whose reply is still to be read when named. When the opener writes it,
// ready is closed once it has, with pin set or err the client's error.
type opened struct {
	pin   *dedicated
	info  *command.Info // the blocking command's
	named bool
	id    int64  // the client's, in Proxy.tunnels once sent
	raw   []byte // for the opener: what to write
	ready chan struct{}
	err   string
}

// send writes b on pin and makes it o's. On failure pin is closed and o
// unchanged.
func (o *opened) send(p *Proxy, pin *dedicated, b []byte) bool {
	// CLIENT UNBLOCK may name it as soon as it blocks, before the hand-off.
	p.tunnels.Store(o.id, pin.id)
	p.lastOpen.Store(time.Now().UnixNano())
	if _, err := pin.nc.Write(b); err != nil {
		p.tunnels.Delete(o.id)
		pin.p.release(pin, false)
		return false
	}
	o.pin = pin
	p.m.pinned.Inc()
	return true
}

// wait waits for the opener, if it has o, and reports whether o has its
// connection.
func (o *opened) wait() bool {
	if o.ready != nil {
		<-o.ready
	}
	return o.pin != nil
}

// drop gives the connection back, closed: the client went before its
// tunnel began. It never waits (a loop calls it): one the opener still has
// is dropped once written.
func (o *opened) drop(p *Proxy) {
	if o.ready != nil {
		select {
		case <-o.ready:
		default:
			go func() {
				<-o.ready
				o.release(p)
			}()
			return
		}
	}
	o.release(p)
}

func (o *opened) release(p *Proxy) {
	if o.pin == nil {
		return
	}
	p.tunnels.Delete(o.id)
	o.pin.p.release(o.pin, false)
	p.pinned.Add(-1)
	p.m.pinned.Dec()
}

// queueOpen gives o to the opener, starting it the first time.
func (p *Proxy) queueOpen(o *opened) {
	o.ready = make(chan struct{})
	p.openMu.Lock()
	p.openQ = append(p.openQ, o)
	p.openMu.Unlock()
	p.openOnce.Do(func() {
		p.openWake = make(chan struct{}, 1)
		go func() {
			runtime.LockOSThread() // one thread writes them all (see openPace)
			p.runOpens()
		}()
	})
	select {
	case p.openWake <- struct{}{}:
	default:
	}
}

// runOpens writes the queued commands in order until the proxy closes.
func (p *Proxy) runOpens() {
	for {
		p.openMu.Lock()
		if len(p.openQ) == 0 {
			p.openMu.Unlock()
			select {
			case <-p.openWake:
				continue
			case <-p.done:
				return
			}
		}
		o := p.openQ[0]
		p.openQ[0] = nil
		p.openQ = p.openQ[1:]
		p.openMu.Unlock()
		p.open(o)
		close(o.ready)
	}
}

// open writes o's command to the master on a connection of its own,
// waiting for a master (HoldTimeout) as acquirePin does.
func (p *Proxy) open(o *opened) {
	deadline := time.Now().Add(p.cfg().HoldTimeout)
	rt := p.routes.Load()
	for {
		if pl := rt.master; pl != nil {
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg().DialTimeout)
			d, err := pl.acquire(ctx)
			cancel()
			if wait := time.Duration(p.lastOpen.Load() + int64(openPace) - time.Now().UnixNano()); wait > 0 {
				time.Sleep(wait)
			}
			if err == nil && o.send(p, d, o.raw) {
				o.raw = nil
				return
			}
		}
		cur := rt
		var msg string
		rt, msg = p.hold(context.Background(), deadline, func(n *routes) bool { return n != cur && n.ready() })
		if msg != "" {
			p.pinned.Add(-1)
			o.err = msg
			return
		}
	}
}
