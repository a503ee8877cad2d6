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

// obuf is bytes waiting to be written to a non-blocking socket: the
// parts in q, then b, less the first off bytes of the first of them.
// A partial write moves off instead of the bytes: a large buffer written
// a socket buffer at a time would otherwise copy what remains every time
// (quadratic in its size, with the loop and every other client waiting).
// The written front of b is dropped when it is at least half of it.
//
// Small replies are appended to b. Large ones go through add, which never
// lets b grow past outPart bytes: a full b is queued whole in q and a new
// one begun. So what a client has not read costs its size in memory and
// is copied once, however much of it there is, instead of being moved to
// an ever larger buffer at each growth (and the old ones left to the
// collector: two to three times the output limit for one slow reader).
type obuf struct {
	b   []byte
	off int
	q   [][]byte // full parts before b, in order
	qn  int      // bytes in q
}

// outPart is the size of one part of a large output buffer.
const outPart = 256 << 10

// pending is how many bytes are still to be written.
func (o *obuf) pending() int { return o.qn + len(o.b) - o.off }

// add appends p, in parts of outPart bytes once there is more than one.
func (o *obuf) add(p []byte) {
	for len(o.b)+len(p) > max(cap(o.b), outPart) {
		room := max(cap(o.b), outPart) - len(o.b)
		o.b = append(o.b, p[:room]...)
		p = p[room:]
		o.q = append(o.q, o.b)
		o.qn += len(o.b)
		o.b = make([]byte, 0, outPart)
	}
	o.b = append(o.b, p...)
}

// writeTo writes what is pending to fd until the socket is full: all of
// it (the storage is dropped if it grew past keep bytes), part of it, or
// nothing. An error is any other failure of the write.
func (o *obuf) writeTo(fd int, keep int) error {
	for len(o.q) > 0 {
		part := o.q[0]
		n, err := rawWrite(fd, part[o.off:])
		if n < len(part)-o.off {
			if n > 0 {
				o.off += n
				return nil
			}
			return writeErr(err)
		}
		o.q[0] = nil
		o.q = o.q[1:]
		o.qn -= len(part)
		o.off = 0
		if len(o.q) == 0 {
			o.q = nil
		}
	}
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
	}
	return writeErr(err)
}

// writeErr is the outcome of a write that wrote less than it was given:
// none when the socket is full, else the failure.
func writeErr(err error) error {
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return nil
	case err == nil:
		return io.ErrShortWrite // nothing written, and no error said why
	}
	return err
}

// reset forgets what is pending.
func (o *obuf) reset() { *o = obuf{} }

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
