package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// request is one client's batch of commands for one backend connection.
// The session that owns it fills cmds, sends it, and waits on done; until
// done is signalled the backend connection owns out and the fields below.
type request struct {
	cmds [][]byte // raw RESP of each command, referenced (not copied) until done
	out  []byte   // raw replies, in order, appended by the reader
	// isErr marks, for each command, whether its reply is an error reply.
	isErr []bool
	// limit bounds len(out); past it the replies are dropped and overflow
	// is set (the client is then disconnected).
	limit    int
	overflow bool
	// failed is non-nil when the connection died before every reply
	// arrived: out then ends with error replies for the unanswered ones,
	// cmds[answered:], which start at out[answeredOut:].
	failed      error
	answered    int
	answeredOut int
	done        chan struct{}
	// conn is the connection that took the request (send), for settle.
	conn *backendConn
}

// settle returns once the write that carried r has returned. The replies
// to r come only after its bytes are written, but a write may carry other
// requests after them and still be going when r is done; the client's
// buffer, which r's commands alias, is reused only after settle, so the
// write never reads a buffer being reused (and the race detector sees why).
func (r *request) settle() {
	if c := r.conn; c != nil {
		c.wmu.Lock()
		c.wmu.Unlock() //nolint:staticcheck // an empty critical section: the ordering is the point
		r.conn = nil
	}
}

func newRequest() *request { return &request{done: make(chan struct{}, 1)} }

func (r *request) reset(limit int) {
	clear(r.cmds)
	r.cmds = r.cmds[:0]
	r.out = r.out[:0]
	r.isErr = r.isErr[:0]
	r.limit = limit
	r.overflow = false
	r.failed = nil
}

// release drops what a finished r holds: its commands (slices of the
// client's buffer, perhaps a large request's, which can then be
// collected) and a reply buffer grown large.
func (r *request) release() {
	clear(r.cmds)
	r.cmds = r.cmds[:0]
	if cap(r.out) > requestKeep {
		r.out = nil
	}
}

// requestKeep is the largest reply buffer a request keeps for its next use.
const requestKeep = 64 << 10

// fail completes r after its connection died: every command that has no
// reply yet gets an error reply saying its outcome is unknown.
func (r *request) fail(err error, addr string) {
	r.failed, r.answered, r.answeredOut = err, len(r.isErr), len(r.out)
	for len(r.isErr) < len(r.cmds) {
		r.out = appendLost(r.out, addr, err)
		r.isErr = append(r.isErr, true)
	}
	r.done <- struct{}{}
}

// failWith completes r without sending it: every command gets the error
// reply msg (without its leading '-').
func (r *request) failWith(msg string) {
	for len(r.isErr) < len(r.cmds) {
		r.out = resp.AppendError(r.out, msg)
		r.isErr = append(r.isErr, true)
	}
	r.done <- struct{}{}
}

// Limits of one backend connection's writes. A write carries at most
// maxBatch requests or about maxWrite bytes; inflight holds twice maxBatch so
// a whole batch can always be queued before it is written.
const (
	maxBatch = 512
	maxWrite = 256 << 10
	// bigCommand: a request this large is written from the client's
	// buffer as it is, not copied into the connection's.
	bigCommand = 64 << 10
)

// backendConn is one connection to a Redis server shared by many sessions.
// Requests are written in the order send accepts them and Redis answers in
// order, so replies are matched to requests by position. A writer goroutine
// takes the writing flag when woken and writes everything queued so far in
// one write; a reader goroutine parses replies and hands each request back
// to its session. (Letting the sending session write itself when the
// connection is idle measured no better on loopback: it saved a goroutine
// switch but batched less.)
//
// The backendConn owns nc and closes it when either direction fails or when
// close is called; every request it accepted is then completed with error
// replies, never left waiting.
type backendConn struct {
	addr string
	nc   net.Conn
	rr   resp.Reader

	// wmu is held while a write is going (request.settle).
	wmu     sync.Mutex
	mu      sync.Mutex
	queue   []*request
	writing bool  // the flag holder owns spare, out and the socket's write side
	err     error // first failure; set once
	// pending counts requests accepted and not yet answered; a retired
	// connection takes no more and closes once it reaches zero.
	pending atomic.Int64
	retired atomic.Bool
	onFail  func(*backendConn, error) // called once, on the first failure
	spare   []*request
	out     gather // the pieces of one write

	wake     chan struct{} // hands the writing flag to the writer goroutine
	inflight chan *request // written (or being written), awaiting replies
	dead     chan struct{} // closed when both goroutines have ended
	scratch  []byte        // reader's buffer for replies it drops
}

func newBackendConn(addr string, nc net.Conn, br *bufio.Reader, onFail func(*backendConn, error)) *backendConn {
	b := &backendConn{
		onFail:   onFail,
		addr:     addr,
		nc:       nc,
		rr:       resp.Reader{R: br},
		wake:     make(chan struct{}, 1),
		inflight: make(chan *request, 2*maxBatch),
		dead:     make(chan struct{}),
	}
	writerDone := make(chan struct{})
	go func() {
		b.writeLoop()
		close(writerDone)
	}()
	go func() {
		b.readLoop()
		<-writerDone
		close(b.dead)
	}()
	return b
}

// send queues r and, if no write is in progress, wakes the writer. It
// returns false, without touching r, when the connection has already failed
// or is retired.
func (b *backendConn) send(r *request) bool {
	b.mu.Lock()
	if b.err != nil || b.retired.Load() {
		b.mu.Unlock()
		return false
	}
	b.pending.Add(1)
	r.conn = b
	b.queue = append(b.queue, r)
	if b.writing {
		b.mu.Unlock()
		return true
	}
	b.writing = true
	b.mu.Unlock()
	b.wake <- struct{}{} // never blocks: only the flag holder sends
	return true
}

// alive reports whether the connection still accepts requests.
func (b *backendConn) alive() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err == nil
}

// fail records the first failure and closes the socket. If nobody is
// writing, it completes the queued requests itself; otherwise the flusher
// does when it next looks. It is safe to call more than once, from any
// goroutine.
func (b *backendConn) fail(err error) {
	b.mu.Lock()
	first := b.err == nil
	if first {
		b.err = err
	}
	own := first && !b.writing
	if own {
		b.writing = true
	}
	b.mu.Unlock()
	if !first {
		return
	}
	b.nc.Close()
	if b.onFail != nil {
		b.onFail(b, err)
	}
	if own {
		b.flush()
	}
}

// Failures the proxy causes itself, as opposed to the server or network.
var (
	errConnClosed    = errors.New("backend connection closed by the proxy")
	errRetired       = errors.New("a sibling connection to the server failed")
	errMasterChanged = errors.New("the server is no longer master")
)

// rerunErr reports whether a connection's failure lets its unanswered
// reads run again: the connection was lost (closed or reset by the
// server, a read or write failed) or its server stopped being master.
// Not when the server broke the protocol: the same requests could break
// the next one.
func rerunErr(err error) bool {
	var errno syscall.Errno
	return errors.Is(err, errMasterChanged) || errors.Is(err, io.EOF) || errors.As(err, &errno)
}

// byProxy reports whether err is a failure the proxy caused on purpose.
func byProxy(err error) bool {
	return errors.Is(err, errConnClosed) || errors.Is(err, errRetired) || errors.Is(err, errMasterChanged)
}

func (b *backendConn) close() { b.fail(errConnClosed) }

// retire stops new requests and closes the connection once those it has
// are answered. A pool retires all its connections when one fails: when a
// server dies, its other connections are dead too, only not noticed yet,
// and a client must not lose a second command to one crash.
func (b *backendConn) retire() {
	b.retired.Store(true)
	if b.pending.Load() == 0 {
		b.fail(errRetired)
	}
}

// writeLoop runs flushes handed over by sessions. It ends when the failure
// path, which only the flag holder runs, closes wake.
func (b *backendConn) writeLoop() {
	for range b.wake {
		// Let the sessions that are ready run first so their requests
		// join this write: one write for many clients is what makes a
		// shared connection cheap for Redis.
		runtime.Gosched()
		b.flush()
	}
}

// flush writes queued requests; the caller owns the writing flag. It stops
// when the queue is empty (giving up the flag) or on failure: the requests
// never written are completed with errors, inflight is closed for the
// reader to drain, wake is closed to end the writer goroutine, and the flag
// is kept so no one writes again.
func (b *backendConn) flush() {
	for {
		b.mu.Lock()
		if err := b.err; err != nil {
			rest := b.queue
			b.queue = nil
			b.mu.Unlock()
			for _, r := range rest {
				r.fail(err, b.addr)
			}
			close(b.inflight)
			close(b.wake)
			return
		}
		q := b.queue
		if len(q) == 0 {
			b.writing = false
			b.mu.Unlock()
			return
		}
		b.queue = b.spare[:0]
		b.mu.Unlock()
		b.write(q)
		clear(q)
		b.spare = q
	}
}

// write hands q to the reader and writes it, in chunks of at most maxBatch
// requests or about maxWrite bytes. Each request is queued for the reader
// before its bytes are written, so no reply can arrive before its request
// is known.
func (b *backendConn) write(q []*request) {
	n := 0
	for i, r := range q {
		for _, c := range r.cmds {
			b.out.add(c)
		}
		b.inflight <- r
		n++
		if n == maxBatch || b.out.size() >= maxWrite || b.out.large() || i == len(q)-1 {
			b.wmu.Lock()
			err := b.out.writeTo(b.nc, 4*maxWrite)
			b.wmu.Unlock()
			if err != nil {
				// Already queued requests are failed by the reader; the
				// rest of q goes with them.
				b.fail(fmt.Errorf("write: %w", err))
				for _, r := range q[i+1:] {
					b.inflight <- r
				}
				break
			}
			n = 0
		}
	}
}

func (b *backendConn) readLoop() {
	var err error
	for err == nil {
		// Wait for bytes (or EOF) before taking a request, so a connection
		// the server closes while idle is noticed at once and no request is
		// ever sent on it afterwards.
		if _, err = b.rr.R.Peek(1); err != nil {
			break
		}
		var r *request
		select {
		case r = <-b.inflight:
		default:
			err = errors.New("reply without a request")
		}
		if r == nil {
			if err == nil {
				err = errConnClosed
			}
			break
		}
		for len(r.isErr) < len(r.cmds) {
			if r.overflow {
				// The client is being dropped; keep the stream aligned.
				b.scratch, _, err = b.rr.AppendValue(b.scratch[:0], 1)
				if err != nil {
					break
				}
				r.isErr = append(r.isErr, false)
				continue
			}
			start := len(r.out)
			var over bool
			r.out, over, err = b.rr.AppendValue(r.out, r.limit)
			if err != nil {
				r.out = r.out[:start]
				break
			}
			if over {
				r.overflow = true
				r.out = r.out[:0]
				r.isErr = append(r.isErr, false)
				continue
			}
			r.isErr = append(r.isErr, r.out[start] == '-')
		}
		if err != nil {
			err = fmt.Errorf("read: %w", err)
			b.fail(err)
			r.fail(err, b.addr)
			break
		}
		r.done <- struct{}{}
		if b.pending.Add(-1) == 0 && b.retired.Load() {
			b.fail(errRetired)
		}
	}
	b.fail(err)
	for r := range b.inflight {
		r.fail(err, b.addr)
	}
}

// appendLost appends the reply to a command whose connection to addr
// failed before its reply arrived.
func appendLost(dst []byte, addr string, err error) []byte {
	if err == nil {
		return fmt.Appendf(dst, "-ERR redis-proxy: connection to %s lost, outcome unknown\r\n", addr)
	}
	return fmt.Appendf(dst, "-ERR redis-proxy: connection to %s lost, outcome unknown (%v)\r\n", addr, err)
}
