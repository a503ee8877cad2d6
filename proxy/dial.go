package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
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

// dial connects to addr and runs the handshake (AUTH, and for a shared
// connection CLIENT SETNAME) in one round trip. Dedicated connections stay
// unnamed, like a fresh client's. The caller owns the returned connection.
func (d *dialer) dial(ctx context.Context, addr string, shared bool) (net.Conn, *bufio.Reader, error) {
	nd := net.Dialer{Timeout: d.dialTimeout(), KeepAlive: 15 * time.Second}
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if d.tls != nil {
		if nc, err = d.clientTLS(ctx, nc, addr); err != nil {
			return nil, nil, err
		}
	}
	var hs []byte
	n := 0
	if d.password != "" {
		if d.username != "" {
			hs = resp.AppendCommand(hs, "AUTH", d.username, d.password)
		} else {
			hs = resp.AppendCommand(hs, "AUTH", d.password)
		}
		n++
	}
	if d.name != "" && shared {
		hs = resp.AppendCommand(hs, "CLIENT", "SETNAME", d.name)
		n++
	}
	br := bufio.NewReaderSize(nc, 32<<10)
	if n == 0 {
		return nc, br, nil
	}
	nc.SetDeadline(time.Now().Add(d.dialTimeout()))
	if _, err := nc.Write(hs); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	rr := resp.Reader{R: br}
	var buf []byte
	for i := 0; i < n; i++ {
		buf, _, err = rr.AppendValue(buf[:0], 4096)
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("handshake with %s: %w", addr, err)
		}
		if buf[0] == '-' {
			nc.Close()
			return nil, nil, fmt.Errorf("handshake with %s: %s", addr, trimCRLF(buf[1:]))
		}
	}
	nc.SetDeadline(time.Time{})
	return nc, br, nil
}

func trimCRLF(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}
