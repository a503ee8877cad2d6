package proxy

import "net"

// gather collects the pieces of one write to a server on the goroutine
// path: small commands copied together into buf, large ones (bigCommand
// and up) referenced where they are, so that a value of hundreds of
// megabytes is written from the client's buffer (writev) and never held
// twice.
type gather struct {
	buf  []byte
	bufs [][]byte
	mark int // buf[mark:] is not in bufs yet
	n    int // bytes gathered
}

// add appends one command's bytes. A large one is referenced, not copied:
// it must stay as it is until the write.
func (w *gather) add(c []byte) {
	w.n += len(c)
	if len(c) < bigCommand {
		w.buf = append(w.buf, c...)
		return
	}
	if len(w.buf) > w.mark {
		w.bufs = append(w.bufs, w.buf[w.mark:])
	}
	w.bufs, w.mark = append(w.bufs, c), len(w.buf)
}

// size is how many bytes were gathered; large reports whether a large
// command is among them.
func (w *gather) size() int   { return w.n }
func (w *gather) large() bool { return len(w.bufs) > 0 }

// writeTo writes what was gathered to nc and starts over, dropping its
// references to the large commands (whose buffers can then be collected)
// and a copy buffer grown past keep bytes.
func (w *gather) writeTo(nc net.Conn, keep int) error {
	var err error
	if w.n > 0 {
		if len(w.buf) > w.mark {
			w.bufs = append(w.bufs, w.buf[w.mark:])
		}
		if len(w.bufs) == 1 {
			_, err = nc.Write(w.bufs[0])
		} else {
			nb := net.Buffers(w.bufs)
			_, err = nb.WriteTo(nc)
		}
	}
	clear(w.bufs)
	w.buf, w.bufs, w.mark, w.n = w.buf[:0], w.bufs[:0], 0, 0
	if cap(w.buf) > keep {
		w.buf = nil
	}
	return err
}
