package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPort is the UDP port adverts are sent to and received on when a
// peer or Config.Port names none.
const DefaultPort = 5405

// transport carries adverts between the nodes.
type transport interface {
	// Send sends b to every peer; it returns the joined errors of the peers
	// it could not send to.
	Send(b []byte) error
	// Recv blocks for the next datagram. After Close it returns an error
	// satisfying errors.Is(err, net.ErrClosed).
	Recv(b []byte) (int, netip.AddrPort, error)
	Close() error
}

// udpTransport is the production transport: one UDP socket bound to this
// node's address, unicasting to each peer.
type udpTransport struct {
	conn  *net.UDPConn
	peers []netip.AddrPort
}

func listenUDP(local netip.AddrPort, peers []netip.AddrPort) (*udpTransport, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, fmt.Errorf("listen for adverts on %s: %w", local, err)
	}
	return &udpTransport{conn: c, peers: peers}, nil
}

func (t *udpTransport) Send(b []byte) error {
	var errs []error
	for _, p := range t.peers {
		if _, err := t.conn.WriteToUDPAddrPort(b, p); err != nil {
			errs = append(errs, fmt.Errorf("send advert to %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func (t *udpTransport) Recv(b []byte) (int, netip.AddrPort, error) {
	n, from, err := t.conn.ReadFromUDPAddrPort(b)
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}

func (t *udpTransport) Close() error { return t.conn.Close() }

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
