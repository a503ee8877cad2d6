package resptest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// Timeouts of a Conn's methods that take none.
const (
	DialTimeout  = 2 * time.Second
	WriteTimeout = 5 * time.Second
	ReadTimeout  = 5 * time.Second
)

// Conn is a raw RESP client connection: it writes bytes as given and reads
// replies as sent.
type Conn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// Dial connects to addr, failing t if it cannot. The connection is closed
// when t ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, DialTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return NewConn(t, nc)
}

// NewConn wraps nc (a net.Pipe end, say). The Conn owns nc: it is closed
// when t ends.
func NewConn(t testing.TB, nc net.Conn) *Conn {
	t.Cleanup(func() { nc.Close() })
	return &Conn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
}

// NetConn is the underlying connection (to half-close it, say).
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection now.
func (c *Conn) Close() { c.nc.Close() }

// TryWrite writes b within WriteTimeout.
func (c *Conn) TryWrite(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(WriteTimeout))
	defer c.nc.SetWriteDeadline(time.Time{})
	_, err := c.nc.Write(b)
	return err
}

// Write writes b as it is, failing the test if it cannot.
func (c *Conn) Write(b []byte) {
	c.t.Helper()
	if err := c.TryWrite(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Send writes one command (as Cmd encodes it) without reading its reply.
func (c *Conn) Send(args ...string) {
	c.t.Helper()
	c.Write(Cmd(args...))
}

// TryRead reads one value within d.
func (c *Conn) TryRead(d time.Duration) (Value, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	defer c.nc.SetReadDeadline(time.Time{})
	return ReadValue(c.br)
}

// ReadTimeout reads one value within d, failing the test if it cannot.
func (c *Conn) ReadTimeout(d time.Duration) Value {
	c.t.Helper()
	v, err := c.TryRead(d)
	if err != nil {
		c.t.Fatalf("read reply: %v (partial %q)", err, v.Raw)
	}
	return v
}

// Read reads one value within ReadTimeout, failing the test if it cannot.
func (c *Conn) Read() Value {
	c.t.Helper()
	return c.ReadTimeout(ReadTimeout)
}

// ReadRaw reads one value within d and returns its exact bytes.
func (c *Conn) ReadRaw(d time.Duration) ([]byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	defer c.nc.SetReadDeadline(time.Time{})
	return ReadRaw(c.br, nil)
}

// TryDo sends one command and reads one reply, without failing the test:
// for use off the test's goroutine.
func (c *Conn) TryDo(args ...string) (Value, error) {
	if err := c.TryWrite(Cmd(args...)); err != nil {
		return Value{}, err
	}
	return c.TryRead(ReadTimeout)
}

// Do sends one command and reads one reply.
func (c *Conn) Do(args ...string) Value {
	c.t.Helper()
	return c.DoTimeout(ReadTimeout, args...)
}

// DoTimeout sends one command and waits up to d for its reply.
func (c *Conn) DoTimeout(d time.Duration, args ...string) Value {
	c.t.Helper()
	c.Send(args...)
	return c.ReadTimeout(d)
}

// Pipeline writes req and reads n replies at the same time, as a careful
// pipelining client does: a large pipeline must not deadlock on full
// socket buffers. It returns the raw replies read before any error; the
// whole exchange must end within d.
func (c *Conn) Pipeline(req []byte, n int, d time.Duration) ([][]byte, error) {
	c.nc.SetDeadline(time.Now().Add(d))
	defer c.nc.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() {
		_, err := c.nc.Write(req)
		werr <- err
	}()
	replies := make([][]byte, 0, n)
	var err error
	for len(replies) < n {
		var v []byte
		if v, err = ReadRaw(c.br, nil); err != nil {
			break
		}
		replies = append(replies, v)
	}
	if err != nil {
		// Unblock a writer the server stopped reading from.
		c.nc.SetWriteDeadline(time.Now())
	}
	if werr := <-werr; werr != nil && err == nil {
		err = fmt.Errorf("write: %w", werr)
	}
	return replies, err
}

// ReadUntilClosed reads everything until the server closes the connection
// or d passes; closed says which.
func (c *Conn) ReadUntilClosed(d time.Duration) (got []byte, closed bool) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	defer c.nc.SetReadDeadline(time.Time{})
	buf := make([]byte, 64<<10)
	for {
		n, err := c.br.Read(buf)
		got = append(got, buf[:n]...)
		if err == nil {
			continue
		}
		var ne net.Error
		return got, !(errors.As(err, &ne) && ne.Timeout())
	}
}

// ExpectClosed asserts that the server closes the connection within d
// (after any replies still in flight, which are returned).
func (c *Conn) ExpectClosed(d time.Duration) []byte {
	c.t.Helper()
	got, closed := c.ReadUntilClosed(d)
	if !closed {
		c.t.Fatalf("connection still open after %v (read %d bytes: %.200q)", d, len(got), got)
	}
	return got
}

// Expect fails the test unless v renders (Value.String) as want.
func Expect(t testing.TB, v Value, want string) {
	t.Helper()
	if got := v.String(); got != want {
		t.Fatalf("reply %s (raw %.300q), want %s", got, v.Raw, want)
	}
}

// Exchange sends req followed by a sentinel PING on a new connection to
// addr and returns the raw bytes of every reply before the sentinel's: all
// that req made the server say, however many replies that is.
func Exchange(t testing.TB, addr string, req []byte) []byte {
	t.Helper()
	c := Dial(t, addr)
	defer c.Close()
	return c.Exchange(req)
}

// Exchange is the package's Exchange on c. With req nil it sends only the
// sentinel, in a write of its own, and returns the replies still owed to
// what c was sent before.
func (c *Conn) Exchange(req []byte) []byte {
	c.t.Helper()
	const sentinel = "resptest-exchange-end"
	c.Write(append(append([]byte(nil), req...), Cmd("PING", sentinel)...))
	var out []byte
	for {
		v, err := c.TryRead(ReadTimeout)
		if err != nil {
			c.t.Fatalf("exchange with %s: %v after %.400q", c.nc.RemoteAddr(), err, out)
		}
		// In subscribed mode PING answers ["pong", arg].
		end := v.Type == '$' && v.Str == sentinel ||
			v.Type == '*' && len(v.Elems) == 2 && v.Elems[1].Str == sentinel
		if end {
			return out
		}
		out = append(out, v.Raw...)
	}
}
