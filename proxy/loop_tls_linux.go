//go:build linux

package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// relayWriteTimeout bounds one write of a TLS relay to its server. A
// server that reads nothing for this long is long since failed over; the
// bound frees the relay once the loop has given up the connection.
const relayWriteTimeout = 30 * time.Second

// relayTLS gives an event loop a socket it can own for tc, a TLS
// connection to a server (with br, its reader, holding nothing the loop
// has not seen): one end of a socketpair. Two goroutines join the other
// end to tc, one encrypting what the loop writes, one decrypting what the
// server sends. They run one write or read per batch of the loop's, not
// per request, so the loop keeps what it gains by gathering many clients'
// commands into one write. When either side closes, both goroutines end
// and close both: the loop sees a server that hangs up as an EOF on its
// socket, and a server sees the loop retire its connection as a close.
//
// It returns the loop's end and a reader of it (empty); tc then belongs
// to the relay. On error tc is closed.
func relayTLS(tc net.Conn, br *bufio.Reader) (net.Conn, *bufio.Reader, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tc.Close()
		return nil, nil, fmt.Errorf("TLS relay: socketpair: %w", err)
	}
	loopEnd, err1 := fileConn(fds[0])
	relayEnd, err2 := fileConn(fds[1])
	if err1 != nil || err2 != nil {
		for _, c := range []net.Conn{loopEnd, relayEnd, tc} {
			if c != nil {
				c.Close()
			}
		}
		return nil, nil, fmt.Errorf("TLS relay: %v %v", err1, err2)
	}
	var once sync.Once
	hangUp := func() {
		once.Do(func() {
			relayEnd.Close()
			rawConn(tc).Close() // a close_notify could wait on a full socket
		})
	}
	go func() {
		defer hangUp()
		io.Copy(relayEnd, br) //nolint:errcheck // the server hung up, or the loop did
	}()
	go func() {
		// Not io.Copy: a write to a server that stops reading must not
		// block for ever, since only this goroutine would see the loop
		// close its end (the other waits on the server).
		defer hangUp()
		buf := make([]byte, 32<<10)
		for {
			n, err := relayEnd.Read(buf)
			if n > 0 {
				tc.SetWriteDeadline(time.Now().Add(relayWriteTimeout))
				if _, err := tc.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return loopEnd, bufio.NewReaderSize(loopEnd, 16), nil
}

// fileConn makes a net.Conn of fd, which it closes (the Conn has a
// duplicate).
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "tls-relay")
	defer f.Close()
	return net.FileConn(f)
}
