//go:build linux

package proxy

// Large replies on the event loop: passed to the client a read at a time
// (pass), into an output buffer kept in parts (obuf.add), and what a
// client sees when the server dies in the middle of one.

import (
	"bytes"
	"io"
	"math/rand"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// The output buffer in parts: whatever mix of small appends (to b) and
// large adds, the bytes come out of writeTo in order, pending counts
// them, and no part is larger than outPart unless a small append made it.
func TestObufParts(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	unix.SetNonblock(fds[0], true)
	unix.SetNonblock(fds[1], true)
	unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 64<<10)
	r := rand.New(rand.NewSource(1))
	var o obuf
	var want, got []byte
	buf := make([]byte, 1<<20)
	read := func(max int) {
		for len(got) < len(want) && max > 0 {
			n, err := unix.Read(fds[1], buf[:min(len(buf), max)])
			if err == unix.EAGAIN {
				return // all that was written is read
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[:n]...)
			max -= n
		}
	}
	for round := range 200 {
		piece := make([]byte, []int{10, 1000, 40 << 10, 300 << 10, 3 << 20}[r.Intn(5)])
		for i := range piece {
			piece[i] = byte(round + i%251)
		}
		if len(piece) < 1000 {
			o.b = append(o.b, piece...) // as the loop's own replies are
		} else {
			o.add(piece)
		}
		want = append(want, piece...)
		for _, part := range o.q {
			if len(part) > outPart {
				t.Fatalf("a part of %d bytes", len(part))
			}
		}
		if err := o.writeTo(fds[0], 1<<20); err != nil {
			t.Fatal(err)
		}
		if p := len(want) - len(got) - o.pending(); p < 0 {
			t.Fatalf("pending %d, but only %d bytes are not yet written", o.pending(), len(want)-len(got))
		}
		read(r.Intn(2 << 20))
	}
	for o.pending() > 0 {
		if err := o.writeTo(fds[0], 1<<20); err != nil {
			t.Fatal(err)
		}
		read(1 << 30)
	}
	read(1 << 30)
	if !bytes.Equal(got, want) {
		t.Fatalf("%d bytes out of %d in, not the same", len(got), len(want))
	}
}

// cutServer relays to the Redis r, in which key cut holds a 10 MB value;
// once the header of that value's bulk comes back and cutAfter bytes of
// it, it closes the connection: a server dying in the middle of the reply.
func cutServer(t *testing.T, r *redistest.Server, cutAfter int) string {
	t.Helper()
	if _, err := r.Do("SET", "cut", bytes.Repeat([]byte{'c'}, 10_000_000)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	header := []byte("$10000000\r\n")
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			rc, err := net.Dial("tcp", r.Addr)
			if err != nil {
				nc.Close()
				return
			}
			go func() {
				io.Copy(rc, nc)
				rc.Close()
			}()
			go func() {
				defer nc.Close()
				defer rc.Close()
				var seen []byte
				buf := make([]byte, 64<<10)
				for {
					n, err := rc.Read(buf)
					if err != nil {
						return
					}
					seen = append(seen[max(0, len(seen)-len(header)):], buf[:n]...)
					if i := bytes.Index(seen, header); i >= 0 {
						// The bytes of this read up to the cut, and no more.
						keep := n - (len(seen) - i - len(header)) + cutAfter
						nc.Write(buf[:min(n, keep)])
						if keep > n {
							io.CopyN(nc, rc, int64(keep-n))
						}
						return
					}
					if _, err := nc.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// A server that dies in the middle of a large reply: the client, which
// was passed the first part, is disconnected (nothing can follow a
// partial reply: not an error, not the reply of a run again), and the
// other clients carry on.
func TestServerDiesInTheMiddleOfAPassedReply(t *testing.T) {
	needEventLoops(t)
	const cutAfter = 1 << 20
	tp := startProxy(t, Config{}, cutServer(t, redistest.Start(t), cutAfter))
	other := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, other.Do("SET", "k", "v"), "OK")

	c := resptest.Dial(t, tp.Addr)
	c.Send("GET", "cut")
	got, closed := c.ReadUntilClosed(5 * time.Second)
	if !closed {
		t.Fatalf("the client is still connected after %d bytes of a reply cut short", len(got))
	}
	want := append([]byte("$10000000\r\n"), bytes.Repeat([]byte{'c'}, cutAfter)...)
	if !bytes.HasPrefix(want, got) {
		t.Fatalf("the client got %d bytes, not a prefix of the reply: ...%q", len(got), got[max(0, len(got)-80):])
	}
	if len(got) < passFrom {
		t.Errorf("the client got %d bytes of the reply before the cut: it was held, not passed", len(got))
	}
	t.Logf("the client got %d of the %d bytes sent before the cut, then was disconnected", len(got), len(want))
	resptest.Expect(t, other.Do("SET", "k", "v"), "OK")
}

// A reply passed a read at a time is the same as Redis's, whole: large
// values, an MGET of several, with small replies pipelined around them.
func TestPassedRepliesAreWhole(t *testing.T) {
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := r.Dial()
	for i, size := range []int{40 << 10, 1 << 20, 9 << 20} {
		if _, err := c.Do("SET", "pass:"+string(rune('a'+i)), bytes.Repeat([]byte{byte('a' + i)}, size)); err != nil {
			t.Fatal(err)
		}
	}
	req := resptest.Cmds([]string{"GET", "pass:a"}, []string{"PING"}, []string{"GET", "pass:c"},
		[]string{"MGET", "pass:a", "pass:b", "pass:c", "none"}, []string{"GET", "pass:b"}, []string{"ECHO", "end"})
	sameAsRedis(t, resptest.Exchange, r.Addr, tp.Addr, req)
}
