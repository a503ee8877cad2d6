package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
)

// ErrBadReply means a server sent bytes that are not RESP. The connection
// carrying them can no longer be matched to requests.
var ErrBadReply = errors.New("malformed RESP reply from backend")

// Bounds on what a server may announce: nothing larger is a Redis reply.
const (
	maxReplyBlob = 1 << 40
	// maxReplyLine bounds a header line, a simple string or an error
	// included (a script can return a long one), to the longest string
	// Redis holds.
	maxReplyLine = DefaultMaxBulk
)

// ReplyScanner follows the structure of RESP2 and RESP3 replies (arrays,
// maps, sets, pushes, attributes, and the streamed strings and aggregates
// of RESP3) to find where each value ends. It is the one reading of reply
// headers; Next drives it over a buffer, Reader over a bufio.Reader.
type ReplyScanner struct {
	lv []level // open aggregates; lv[0] stands for the value itself
	// Next's place in a value still arriving: the offset of the next
	// header (or past the blob being read), how much after it is known
	// to hold no line end, and where a blob's CRLF must be (-1: none).
	pos, seen, crlf int
	reading         bool // a value is begun and not yet returned
}

// level is an aggregate being read: how many values it still holds (-1:
// streamed, until its END), whether it is an attribute (which does not
// count as a value of its parent) or a streamed string's chunks.
type level struct {
	left   int64
	attr   bool
	chunks bool
}

func (s *ReplyScanner) begin() {
	s.lv = append(s.lv[:0], level{left: 1})
	s.pos, s.seen, s.crlf = 0, 0, -1
}

// done reports whether the value begun last is complete.
func (s *ReplyScanner) done() bool { return len(s.lv) == 0 }

// Next returns the length of the complete value at the start of b, or 0 if
// b holds only part of it: call again with the same value at the start of
// b and more bytes after it. A value Next has returned, or an error, ends
// its place; the next call starts a new value.
func (s *ReplyScanner) Next(b []byte) (int, error) {
	if !s.reading {
		s.begin()
		s.reading = true
	}
	for {
		if s.pos > len(b) {
			return 0, nil // inside a blob
		}
		if s.crlf >= 0 {
			if b[s.crlf] != '\r' || b[s.crlf+1] != '\n' {
				return s.fail()
			}
			s.crlf = -1
		}
		if s.done() {
			end := s.pos
			s.pos, s.reading = 0, false
			return end, nil
		}
		i := bytes.IndexByte(b[s.pos+s.seen:], '\n')
		if i < 0 {
			if s.seen = len(b) - s.pos; s.seen > maxReplyLine {
				return s.fail()
			}
			return 0, nil
		}
		line := b[s.pos : s.pos+s.seen+i+1]
		s.seen = 0
		if len(line) < 3 || line[len(line)-2] != '\r' {
			return s.fail()
		}
		blob, err := s.header(line[0], line[1:len(line)-2])
		if err != nil {
			return s.fail()
		}
		s.pos += len(line)
		if blob > 0 {
			s.pos += int(blob)
			s.crlf = s.pos - 2
		}
	}
}

// Passable returns how many of the n bytes of a value Next has reported
// incomplete (b, the last buffer given to it) are behind it already: all
// those before the header it awaits, or before the end of the blob it is
// in. A caller that must not hold a large value whole passes them on and
// drops them with Drop; the value then continues at b[k:].
func (s *ReplyScanner) Passable(n int) int {
	if !s.reading {
		return 0
	}
	k := min(s.pos, n)
	if s.crlf >= 0 {
		k = min(k, s.crlf) // the blob's CRLF stays, to be checked
	}
	return k
}

// Drop forgets the first k bytes of the value being read, k at most
// Passable's answer: Next is then given the buffer without them.
func (s *ReplyScanner) Drop(k int) {
	s.pos -= k
	if s.crlf >= 0 {
		s.crlf -= k
	}
}

func (s *ReplyScanner) fail() (int, error) {
	s.lv, s.reading = s.lv[:0], false
	return 0, ErrBadReply
}

// header takes the header line of one value: its type byte and what
// follows up to the CRLF. It returns the length of the blob after the line
// (bytes and CRLF), 0 if none.
func (s *ReplyScanner) header(typ byte, num []byte) (blob int64, err error) {
	top := &s.lv[len(s.lv)-1]
	if top.chunks != (typ == ';') {
		return 0, ErrBadReply
	}
	switch typ {
	case '+', '-', ':', '_', ',', '#', '(':
		s.complete()
		return 0, nil
	case '.':
		if top.left >= 0 || top.attr {
			return 0, ErrBadReply
		}
		s.lv = s.lv[:len(s.lv)-1]
		s.complete()
		return 0, nil
	}
	if string(num) == "?" {
		return 0, s.streamed(typ)
	}
	n, ok := ParseInt(num) // a server writes its numbers as string2ll reads them
	if !ok || n > maxReplyBlob {
		return 0, ErrBadReply
	}
	switch typ {
	case '$', '!', '=', ';':
		return s.blob(typ, n)
	case '*', '~', '>', '%':
		if n < -1 { // -1: RESP2's null array
			return 0, ErrBadReply
		}
		if typ == '%' {
			n = 2 * max(n, 0)
		}
		return 0, s.open(n, false)
	case '|':
		if n < 0 {
			return 0, ErrBadReply
		}
		return 0, s.open(2*n, true)
	}
	return 0, ErrBadReply
}

// blob takes a bulk, verbatim or blob-error header, or a streamed string's
// chunk, of length n.
func (s *ReplyScanner) blob(typ byte, n int64) (int64, error) {
	switch {
	case n < -1 || n == -1 && typ == ';':
		return 0, ErrBadReply
	case typ == ';' && n == 0: // the streamed string's end
		s.lv = s.lv[:len(s.lv)-1]
		s.complete()
		return 0, nil
	case typ != ';':
		s.complete()
	}
	if n < 0 {
		return 0, nil
	}
	return n + 2, nil
}

// open takes an aggregate of n values (a null or empty one is complete);
// an attribute precedes a value and is not one itself.
func (s *ReplyScanner) open(n int64, attr bool) error {
	if n <= 0 {
		if !attr {
			s.complete()
		}
		return nil
	}
	s.lv = append(s.lv, level{left: n, attr: attr})
	return nil
}

// streamed takes the header of a streamed string ($?) or aggregate (*?,
// %?, ~?, >?), which ends with a chunk of length 0 or an END.
func (s *ReplyScanner) streamed(typ byte) error {
	switch typ {
	case '$':
		s.lv = append(s.lv, level{chunks: true})
	case '*', '%', '~', '>':
		s.lv = append(s.lv, level{left: -1})
	default:
		return ErrBadReply
	}
	return nil
}

// complete counts one value read at the innermost open aggregate and
// closes the aggregates it completes.
func (s *ReplyScanner) complete() {
	for len(s.lv) > 0 {
		top := &s.lv[len(s.lv)-1]
		if top.left < 0 {
			return // streamed: ends at its END
		}
		if top.left--; top.left > 0 {
			return
		}
		s.lv = s.lv[:len(s.lv)-1]
		if top.attr {
			return // the value it describes is still to come
		}
	}
}

// Reader reads whole replies from a server's connection and appends their
// raw bytes, unchanged, to a caller's buffer.
type Reader struct {
	R *bufio.Reader
	s ReplyScanner
}

// AppendValue reads one complete value and appends it to dst. When the
// value would take dst past limit bytes, the rest of it is read and dropped
// and overflow is reported; dst then holds a truncated value that must not
// be sent to anyone. A limit <= 0 means no limit. A connection that ends
// before the value does is io.EOF if none of it had come, else
// io.ErrUnexpectedEOF.
func (r *Reader) AppendValue(dst []byte, limit int) (out []byte, overflow bool, err error) {
	s := &r.s
	s.begin()
	for first := true; !s.done(); first = false {
		start := len(dst)
		if dst, err = r.readLine(dst); err != nil {
			if err == io.EOF && (!first || len(dst) > start) {
				err = io.ErrUnexpectedEOF
			}
			return dst, overflow, err
		}
		line := dst[start:]
		blob, err := s.header(line[0], line[1:len(line)-2])
		if err != nil {
			return dst, overflow, err
		}
		if !overflow && limit > 0 && int64(len(dst))+blob > int64(limit) {
			overflow = true
		}
		if overflow {
			// Dropped, line and blob alike, but read to its end (and its
			// CRLF checked) so the stream stays aligned.
			dst = dst[:start]
			if blob > 0 {
				if err := r.skipBlob(blob); err != nil {
					return dst, overflow, err
				}
			}
			continue
		}
		if blob > 0 {
			if dst, err = r.readBlob(dst, blob); err != nil {
				return dst, overflow, err
			}
		}
	}
	return dst, overflow, nil
}

// readLine appends the next CRLF-terminated line to dst. A line longer than
// the bufio buffer is gathered piece by piece.
func (r *Reader) readLine(dst []byte) ([]byte, error) {
	start := len(dst)
	for {
		chunk, err := r.R.ReadSlice('\n')
		dst = append(dst, chunk...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull || len(dst)-start > maxReplyLine {
			if err == bufio.ErrBufferFull {
				err = ErrBadReply
			}
			return dst, err
		}
	}
	if n := len(dst) - start; n < 3 || dst[len(dst)-2] != '\r' {
		return dst, ErrBadReply
	}
	return dst, nil
}

// blobStep bounds how much readBlob allocates ahead of the bytes that have
// come: a header is not a promise that its bytes exist, and one claiming
// a terabyte must not allocate it.
const blobStep = 1 << 20

// readBlob appends n bytes, the last two of which must be CRLF.
func (r *Reader) readBlob(dst []byte, n int64) ([]byte, error) {
	for n > 0 {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, int(min(n, blobStep)))
		}
		k := int(min(n, int64(cap(dst)-len(dst))))
		got, err := io.ReadFull(r.R, dst[len(dst):len(dst)+k])
		dst = dst[:len(dst)+got]
		if err != nil {
			return dst, unexpected(err)
		}
		n -= int64(k)
	}
	if dst[len(dst)-2] != '\r' || dst[len(dst)-1] != '\n' {
		return dst, ErrBadReply
	}
	return dst, nil
}

// skipBlob reads and drops n bytes, the last two of which must be CRLF.
func (r *Reader) skipBlob(n int64) error {
	for n > 2 {
		k := int(min(n-2, 1<<30))
		if _, err := r.R.Discard(k); err != nil {
			return unexpected(err)
		}
		n -= int64(k)
	}
	var crlf [2]byte
	if _, err := io.ReadFull(r.R, crlf[:]); err != nil {
		return unexpected(err)
	}
	if crlf != [2]byte{'\r', '\n'} {
		return ErrBadReply
	}
	return nil
}

// unexpected is err for a read in the middle of a value, where the
// connection's end is never a clean one.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
