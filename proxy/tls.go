package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/gomodule/redigo/redis"
)

// TLS on both sides, with crypto/tls.
//
// Clients: a listener whose connections are *tls.Conn (tls.NewListener)
// has its clients served on the goroutine path: an event loop reads and
// writes raw sockets with system calls and cannot decrypt. The handshake
// runs on the client's goroutine, bounded by tlsHandshakeTimeout, so a
// client that connects and says nothing holds up no one. Such a client
// never moves to an event loop (loopable).
//
// Redis: with Config.BackendTLS every connection the proxy opens (shared,
// dedicated, and the redigo connections of the command table and the
// script mirror) is TLS. An event loop owns its server connections as raw
// sockets too: it gets one end of a socketpair whose other end a relay
// joins to the TLS connection (relayTLS, loop_tls_linux.go).

// tlsHandshakeTimeout bounds a TLS client's handshake.
var tlsHandshakeTimeout = 10 * time.Second

// serveTLS completes the TLS handshake of a client counted with session s
// and serves it on a goroutine of its own. It runs on a goroutine of its
// own, not the accept loop's.
func (p *Proxy) serveTLS(s *session, tc *tls.Conn) {
	p.conns.Store(net.Conn(tc), struct{}{}) // Close ends a handshake under way
	tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	err := tc.Handshake()
	p.conns.Delete(net.Conn(tc))
	if err != nil {
		p.m.rejected.WithLabelValues("tls_handshake").Inc()
		p.log.Debug("TLS handshake failed", "client", tc.RemoteAddr().String(), "err", err)
		tc.NetConn().Close() // no alert to send on a failed handshake
		s.end()
		return
	}
	tc.SetDeadline(time.Time{})
	p.goServe(s, tc, nil, p.newParser(), "", nil)
}

// loopable reports whether an event loop can serve the client on nc: not
// a TLS client.
func loopable(nc net.Conn) bool {
	_, isTLS := nc.(*tls.Conn)
	return !isTLS
}

// rawConn is the socket under nc: a TLS connection's TCP connection, nc
// itself otherwise.
func rawConn(nc net.Conn) net.Conn {
	if tc, ok := nc.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return nc
}

// clientTLS runs the TLS handshake on nc, a new connection to the server
// at addr, within the dial timeout. It closes nc if it fails.
func (d *dialer) clientTLS(ctx context.Context, nc net.Conn, addr string) (net.Conn, error) {
	tc := tls.Client(nc, d.tlsConfig(addr))
	hctx, cancel := context.WithTimeout(ctx, d.dialTimeout())
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// tlsConfig is the TLS configuration for a new connection to addr: the
// one BackendTLS returns now, with the host of addr as its ServerName if
// it names none.
func (d *dialer) tlsConfig(addr string) *tls.Config {
	cfg := d.tls().Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	return cfg
}

// redigoTLS are the options of a redigo connection to addr: TLS as for
// the proxy's other connections, if BackendTLS is set.
func (d *dialer) redigoTLS(addr string) []redis.DialOption {
	if d.tls == nil {
		return nil
	}
	return []redis.DialOption{
		redis.DialUseTLS(true),
		redis.DialTLSConfig(d.tlsConfig(addr)),
		redis.DialTLSHandshakeTimeout(d.dialTimeout()),
	}
}
