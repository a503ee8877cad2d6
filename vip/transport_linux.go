//go:build linux

package vip

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpTransport is the production transport: one UDP socket bound to this
// node's address, unicasting to each peer. It reads in batches (recvmmsg),
// with the kernel's receive time of each datagram (SO_TIMESTAMPNS), and
// reads the socket's drop counter (SO_MEMINFO).
type udpTransport struct {
	conn   *net.UDPConn
	rc     syscall.RawConn
	peers  []netip.AddrPort
	rcvbuf int // bytes, as the kernel reports it
	// dropped is the drop counter last read, returned again if a read fails.
	dropped uint32

	// Read's scratch, reused: per datagram a header, an iovec, room for
	// the source address and for the timestamp.
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte
	// Wait's.
	peek [1]byte
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

var (
	sizeofTimespec = int(unsafe.Sizeof(unix.Timespec{}))
	oobLen         = unix.CmsgSpace(sizeofTimespec)
)

// listenUDP opens the advert socket with a receive buffer of rcvbuf bytes,
// or as close to it as the kernel allows.
func listenUDP(local netip.AddrPort, peers []netip.AddrPort, rcvbuf int) (*udpTransport, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, fmt.Errorf("listen for adverts on %s: %w", local, err)
	}
	t := &udpTransport{conn: c, peers: peers,
		hdrs: make([]mmsghdr, rxBatch), iovs: make([]unix.Iovec, rxBatch),
		names: make([]unix.RawSockaddrInet6, rxBatch), oob: make([]byte, rxBatch*oobLen)}
	if t.rc, err = c.SyscallConn(); err != nil {
		c.Close()
		return nil, fmt.Errorf("advert socket on %s: %w", local, err)
	}
	var serr error
	err = t.rc.Control(func(fd uintptr) {
		s := int(fd)
		// Past net.core.rmem_max only with CAP_NET_ADMIN; else capped.
		if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
			unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
		t.rcvbuf, _ = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF)
		serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("advert socket on %s: receive timestamps: %w", local, err)
	}
	return t, nil
}

func (t *udpTransport) Send(b []byte) error { return sendAll(t.conn, t.peers, b) }

// Wait peeks at the queue before it parks: the runtime's readiness flag is
// reset on entry, so a datagram queued since the last Read would otherwise
// wait for the next one.
func (t *udpTransport) Wait() error {
	return t.rc.Read(func(fd uintptr) bool {
		_, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&t.peek[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		return e != unix.EAGAIN // queued, or an error Read reports
	})
}

func (t *udpTransport) Read(ps []datagram) (int, error) {
	k := min(len(ps), len(t.hdrs))
	for i := range k {
		t.iovs[i].Base = &ps[i].buf[0]
		t.iovs[i].SetLen(len(ps[i].buf))
		h := &t.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&t.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &t.iovs[i]
		h.SetIovlen(1)
		h.Control = &t.oob[i*oobLen]
		h.SetControllen(oobLen)
		h.Flags = 0
	}
	var n int
	var errno syscall.Errno
	err := t.rc.Control(func(fd uintptr) {
		for {
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&t.hdrs[0])), uintptr(k), unix.MSG_DONTWAIT, 0, 0)
			if e != unix.EINTR {
				n, errno = int(r), e
				return
			}
		}
	})
	switch {
	case err != nil:
		return 0, err // closed
	case errno == unix.EAGAIN:
		return 0, nil
	case errno != 0:
		return 0, os.NewSyscallError("recvmmsg", errno)
	}
	for i := range n {
		p, h := &ps[i], &t.hdrs[i]
		p.n = int(h.n)
		p.from = sockaddrAddrPort(&t.names[i])
		p.at = rxTime(t.oob[i*oobLen : i*oobLen+int(h.hdr.Controllen)])
	}
	return n, nil
}

// sockaddrAddrPort decodes a struct sockaddr_in or sockaddr_in6.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	b := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(b[2:4]) // network order in either family
	switch sa.Family {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// rxTime returns the SCM_TIMESTAMPNS in a datagram's control messages, or
// the zero time.
func rxTime(oob []byte) time.Time {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= sizeofTimespec {
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			return time.Unix(int64(ts.Sec), int64(ts.Nsec))
		}
		oob = rest
	}
	return time.Time{}
}

// Dropped is not safe for concurrent use.
func (t *udpTransport) Dropped() uint32 {
	var mem [unix.SK_MEMINFO_DROPS + 1]uint32
	size := uint32(unsafe.Sizeof(mem))
	var errno syscall.Errno
	if err := t.rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0)
	}); err == nil && errno == 0 {
		t.dropped = mem[unix.SK_MEMINFO_DROPS]
	}
	return t.dropped
}

func (t *udpTransport) RecvBuffer() int { return t.rcvbuf }

func (t *udpTransport) Close() error { return t.conn.Close() }
