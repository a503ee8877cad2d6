package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// dialer opens authenticated connections to Redis servers.
type dialer struct {
	timeout  atomic.Int64 // Config.DialTimeout, in nanoseconds (Reload changes it)
	username string
	password string
	name     string // CLIENT SETNAME, so operators can tell proxy connections apart
	// tls is Config.BackendTLS: nil, plain TCP (tls.go).
	tls func() *tls.Config
}

// dialTimeout bounds connecting and authenticating to a server.
func (d *dialer) dialTimeout() time.Duration { return time.Duration(d.timeout.Load()) }

// control opens a redigo connection to addr with the proxy's backend
// credentials, for the proxy's own commands (COMMAND, SCRIPT LOAD), with
// ioTimeout as its read and write timeout.
func (d *dialer) control(ctx context.Context, addr string, ioTimeout time.Duration) (redis.Conn, error) {
	opts := []redis.DialOption{
		redis.DialConnectTimeout(d.dialTimeout()),
		redis.DialReadTimeout(ioTimeout),
		redis.DialWriteTimeout(ioTimeout),
	}
	opts = append(opts, d.redigoTLS(addr)...)
	if d.password != "" {
		opts = append(opts, redis.DialPassword(d.password))
		if d.username != "" {
			opts = append(opts, redis.DialUsername(d.username))
		}
	}
	return redis.DialContext(ctx, "tcp", addr, opts...)
}

// errLoading is a dial's error while the server loads its dataset (after
// a restart, say): it would answer commands with -LOADING, so no
// connection to it comes up until it is done, and clients wait as while
// no master is known (see loadingRetry).
var errLoading = errors.New("the server is loading its dataset")

// loadingRetry is how soon a dial that met a loading server tries again:
// no backoff, so clients go on as soon as it is done.
const loadingRetry = 50 * time.Millisecond

// conn is a connection dial opened.
type conn struct {
	nc net.Conn
	br *bufio.Reader
	id int64 // the server's CLIENT ID for a dedicated connection (0 for shared ones)
}

// dial connects to addr and runs the handshake in one round trip: AUTH;
// for a shared connection CLIENT SETNAME, for a dedicated one CLIENT ID
// (what CLIENT UNBLOCK and TRACKING REDIRECT from other clients must name);
// and a PING, which a server still loading its dataset refuses (errLoading).
// Dedicated connections stay unnamed, like a fresh client's. The caller owns
// the returned connection.
func (d *dialer) dial(ctx context.Context, addr string, shared bool) (conn, error) {
	nd := net.Dialer{Timeout: d.dialTimeout(), KeepAlive: 15 * time.Second}
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return conn{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	if d.tls != nil {
		if nc, err = d.clientTLS(ctx, nc, addr); err != nil {
			return conn{}, err
		}
	}
	var hs []byte
	n, idAt := 0, -1 // commands sent; the place of CLIENT ID's reply
	if d.password != "" {
		if d.username != "" {
			hs = resp.AppendCommand(hs, "AUTH", d.username, d.password)
		} else {
			hs = resp.AppendCommand(hs, "AUTH", d.password)
		}
		n++
	}
	switch {
	case !shared:
		hs = resp.AppendCommand(hs, "CLIENT", "ID")
		idAt, n = n, n+1
	case d.name != "":
		hs = resp.AppendCommand(hs, "CLIENT", "SETNAME", d.name)
		n++
	}
	hs = resp.AppendCommand(hs, "PING")
	n++
	c := conn{nc: nc, br: bufio.NewReaderSize(nc, 32<<10)}
	nc.SetDeadline(time.Now().Add(d.dialTimeout()))
	fail := func(err error) (conn, error) {
		nc.Close()
		return conn{}, err
	}
	if _, err := nc.Write(hs); err != nil {
		return fail(fmt.Errorf("handshake with %s: %w", addr, err))
	}
	rr := resp.Reader{R: c.br}
	var buf []byte
	for i := range n {
		buf, _, err = rr.AppendValue(buf[:0], 4096)
		if err != nil {
			return fail(fmt.Errorf("handshake with %s: %w", addr, err))
		}
		switch {
		case bytes.HasPrefix(buf, []byte("-LOADING")):
			return fail(fmt.Errorf("handshake with %s: %w", addr, errLoading))
		case buf[0] == '-':
			return fail(fmt.Errorf("handshake with %s: %s", addr, trimCRLF(buf[1:])))
		case i == idAt && buf[0] == ':':
			c.id, _ = resp.ParseInt(buf[1 : len(buf)-2])
		}
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func trimCRLF(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}
