//go:build !linux

package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// udpTransport is the portable transport: one UDP socket bound to this
// node's address, unicasting to each peer, read by a goroutine into a
// bounded queue (the receive time is when that goroutine read it). Only
// Linux owns a VIP; elsewhere this serves the election alone.
type udpTransport struct {
	conn  *net.UDPConn
	peers []netip.AddrPort
	q     *memQueue
}

func listenUDP(local netip.AddrPort, peers []netip.AddrPort, rcvbuf int) (*udpTransport, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, fmt.Errorf("listen for adverts on %s: %w", local, err)
	}
	c.SetReadBuffer(rcvbuf)
	t := &udpTransport{conn: c, peers: peers, q: newMemQueue(4096)}
	go t.pump()
	return t, nil
}

func (t *udpTransport) pump() {
	buf := make([]byte, rxBufLen)
	for {
		n, from, err := t.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t.q.push(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), time.Now())
	}
}

func (t *udpTransport) Send(b []byte) error             { return sendAll(t.conn, t.peers, b) }
func (t *udpTransport) Wait() error                     { return t.q.Wait() }
func (t *udpTransport) Read(ps []datagram) (int, error) { return t.q.Read(ps) }
func (t *udpTransport) Dropped() uint32                 { return t.q.Dropped() }
func (t *udpTransport) RecvBuffer() int                 { return 0 } // unknown here
func (t *udpTransport) Close() error                    { t.q.close(); return t.conn.Close() }
