package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultPort is the UDP port adverts are sent to and received on when a
// peer or Config.Port names none.
const DefaultPort = 5405

// DefaultRecvBuffer is the receive buffer, in bytes, a Node asks for on its
// advert socket (SO_RCVBUFFORCE with CAP_NET_ADMIN, else SO_RCVBUF, which
// net.core.rmem_max caps). While a flood is read it queues what arrives
// when the node is busy elsewhere or off the CPU: the kernel charges some
// 800 bytes of it per small datagram over veth (more from NICs with larger
// buffers), so about 10 000, which one core reads in about 10ms. Deeper
// would only delay the adverts queued behind a flood.
const DefaultRecvBuffer = 4 << 20

// rxBatch is how many datagrams the node reads at once, and rxBufLen the
// room for each: more than the longest advert, so an oversized datagram is
// seen as one (malformed) and not mistaken for a shorter one.
const (
	rxBatch  = 64
	rxBufLen = 2048
)

// rxBufLen must exceed the longest advert (this fails to compile if not).
const _ = uint(rxBufLen - maxAdvertLen - 1)

// transport carries adverts between the nodes. The node's loop calls Read;
// another goroutine calls Wait to learn when to.
type transport interface {
	// Send sends b to every peer; it returns the joined errors of the peers
	// it could not send to.
	Send(b []byte) error
	// Wait blocks until a datagram is queued for Read. It may return when
	// none is, but never keeps waiting while one is. After Close it returns
	// an error satisfying errors.Is(err, net.ErrClosed).
	Wait() error
	// Read moves up to len(ps) queued datagrams into ps without blocking
	// and returns how many. Fewer than len(ps) means it found the queue
	// empty. Each datagram's buf is the caller's; Read sets n, from and at.
	Read(ps []datagram) (int, error)
	// Dropped counts, modulo 2³², the datagrams discarded unread since the
	// transport opened: on Linux the socket's drops (SO_MEMINFO), nearly
	// always because the receive queue was full. Zero where unknown.
	Dropped() uint32
	Close() error
}

// datagram is one received datagram.
type datagram struct {
	buf  []byte // the caller's room; the datagram is buf[:n]
	n    int
	from netip.AddrPort
	// at is when it was queued: the kernel's receive time on Linux. A
	// node that catches up to a time reads until a datagram that arrived
	// after it (Node.catchUp).
	at time.Time
}

// newDatagrams returns count datagrams with room for size bytes each.
func newDatagrams(count, size int) []datagram {
	room := make([]byte, count*size)
	ps := make([]datagram, count)
	for i := range ps {
		ps[i].buf = room[i*size : (i+1)*size : (i+1)*size]
	}
	return ps
}

// sourceFilter admits datagrams from the configured peers only, so that a
// flood from any other address costs a comparison instead of a MAC. A peer
// configured with a port must send from it (a node sends from its advert
// socket); one configured without a port is matched on its address alone.
type sourceFilter []netip.AddrPort // port 0: any port

// newSourceFilter returns the filter for peers as configured, before
// Config.Port fills in the missing ports.
func newSourceFilter(peers []netip.AddrPort) sourceFilter {
	f := make(sourceFilter, len(peers))
	for i, p := range peers {
		f[i] = netip.AddrPortFrom(p.Addr().Unmap().WithZone(""), p.Port())
	}
	return f
}

func (f sourceFilter) admits(from netip.AddrPort) bool {
	a := from.Addr().Unmap().WithZone("")
	for _, p := range f {
		if p.Addr() == a && (p.Port() == 0 || p.Port() == from.Port()) {
			return true
		}
	}
	return false
}

func sendAll(c *net.UDPConn, peers []netip.AddrPort, b []byte) error {
	var errs []error
	for _, p := range peers {
		if _, err := c.WriteToUDPAddrPort(b, p); err != nil {
			errs = append(errs, fmt.Errorf("send advert to %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// ParsePeers parses a comma-separated list of peer addresses, each an IP
// with an optional port ("10.0.0.2", "10.0.0.2:5406", "[fd00::2]:5405").
// A peer without a port gets port 0, which New replaces with Config.Port.
func ParsePeers(s string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.AddrPortFrom(a.Unmap(), 0))
			continue
		}
		host, port, err := net.SplitHostPort(f)
		if err != nil {
			return nil, fmt.Errorf("peer %q: want IP or IP:port", f)
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return nil, fmt.Errorf("peer %q: %q is not an IP address", f, host)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("peer %q: port must be 1-65535", f)
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(p)))
	}
	if len(out) == 0 {
		return nil, errors.New("no peers: want a comma-separated list of IP[:port]")
	}
	return out, nil
}

// memQueue is a bounded FIFO of datagrams with the transport's Wait and Read:
// the receive queue of the portable transport, and of the tests' fake
// network. A push to a full queue is dropped and counted.
type memQueue struct {
	mu      sync.Mutex
	q       []datagram // each with a buf of its own
	limit   int
	dropped uint32
	closed  bool
	signal  chan struct{} // cap 1: poked by every push
	done    chan struct{}
}

func newMemQueue(limit int) *memQueue {
	return &memQueue{limit: limit, signal: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues a copy of b.
func (q *memQueue) push(b []byte, from netip.AddrPort, at time.Time) {
	q.mu.Lock()
	if q.closed || len(q.q) >= q.limit {
		if !q.closed {
			q.dropped++
		}
		q.mu.Unlock()
		return
	}
	q.q = append(q.q, datagram{buf: append([]byte(nil), b...), n: len(b), from: from, at: at})
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *memQueue) Wait() error {
	for {
		q.mu.Lock()
		n, closed := len(q.q), q.closed
		q.mu.Unlock()
		switch {
		case closed:
			return net.ErrClosed
		case n > 0:
			return nil
		}
		select {
		case <-q.signal:
		case <-q.done:
		}
	}
}

func (q *memQueue) Read(ps []datagram) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, net.ErrClosed
	}
	k := min(len(ps), len(q.q))
	for i, p := range q.q[:k] {
		ps[i].n = copy(ps[i].buf, p.buf[:p.n])
		ps[i].from, ps[i].at = p.from, p.at
	}
	q.q = append(q.q[:0], q.q[k:]...)
	return k, nil
}

func (q *memQueue) Dropped() uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

func (q *memQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
}
