//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loop's system calls. The loop's sockets are non-blocking, so
// reading, writing and polling them never blocks: they are made as raw
// system calls, without telling the Go scheduler (which would otherwise
// treat each as a possibly blocking call, and its monitor thread would
// keep waking up to take the loop's processor away). Only the epoll wait
// that sleeps goes through the scheduler.

// dupConn returns a non-blocking duplicate of nc's socket.
func dupConn(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func rawRead(fd int, p []byte) (int, error)  { return rawIO(unix.SYS_READ, fd, p) }
func rawWrite(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO makes read or write (trap) on fd with p, returning -1 and the
// errno on failure, as unix.Read and unix.Write do.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// obuf is bytes waiting to be written to a non-blocking socket: b[off:].
// A partial write moves off instead of the bytes: a large buffer written
// a socket buffer at a time would otherwise copy what remains every time
// (quadratic in its size, with the loop and every other client waiting).
// The written front is dropped when it is at least half of the buffer.
type obuf struct {
	b   []byte
	off int
}

// pending is how many bytes are still to be written.
func (o *obuf) pending() int { return len(o.b) - o.off }

// writeTo writes what is pending to fd once: all of it (the storage is
// dropped if it grew past keep bytes), part of it, or nothing when the
// socket is full. An error is any other failure of the write.
func (o *obuf) writeTo(fd int, keep int) error {
	if o.pending() == 0 {
		return nil
	}
	n, err := rawWrite(fd, o.b[o.off:])
	switch {
	case n == o.pending():
		o.b, o.off = o.b[:0], 0
		if cap(o.b) > keep {
			o.b = nil
		}
		return nil
	case n > 0:
		if o.off += n; o.off >= len(o.b)/2 {
			o.b = o.b[:copy(o.b, o.b[o.off:])]
			o.off = 0
		}
		return nil
	case err == unix.EAGAIN || err == unix.EINTR:
		return nil
	case err == nil:
		err = io.ErrShortWrite // nothing written, and no error said why
	}
	return err
}

// reset forgets what is pending.
func (o *obuf) reset() { o.b, o.off = nil, 0 }

// rawEpollPoll is epoll_wait with a zero timeout.
func rawEpollPoll(ep int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// yieldBriefly lets another thread have the CPU and reports whether none
// needed it (the yield came back within spinYieldMax).
func yieldBriefly() bool {
	t := time.Now()
	unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	return time.Since(t) <= spinYieldMax
}
