package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
)

// appendError appends the error reply msg (given without its '-').
func appendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	dst = append(dst, msg...)
	return append(dst, "\r\n"...)
}

// appendLost appends the reply to a command whose shared connection to
// addr failed before its reply arrived.
func appendLost(dst []byte, addr string, err error) []byte {
	return fmt.Appendf(dst, "-ERR redis-proxy: connection to %s lost, outcome unknown (%v)\r\n", addr, err)
}

// errBadReply means a backend sent bytes that are not RESP. The connection
// carrying them can no longer be matched to requests and is closed.
var errBadReply = errors.New("malformed RESP reply from backend")

// maxReplyBulk bounds a bulk string a backend may announce; anything larger
// is not a Redis reply (proto-max-bulk-len cannot exceed it either).
const maxReplyBulk = 1 << 40

// replyReader reads whole RESP2/RESP3 values from a backend connection and
// appends their raw bytes, unchanged, to a caller's buffer.
type replyReader struct {
	br *bufio.Reader
}

// parseLen parses the decimal length or count of a RESP header (without
// the type byte and CRLF). It accepts -1 for null values.
func parseLen(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		n = -n
	}
	return n, true
}

// readLine appends the next CRLF-terminated line to dst and returns the
// offset in dst where it starts. Lines longer than the bufio buffer are
// accumulated piece by piece.
func (r *replyReader) readLine(dst []byte) ([]byte, int, error) {
	start := len(dst)
	for {
		chunk, err := r.br.ReadSlice('\n')
		dst = append(dst, chunk...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return dst, start, err
		}
	}
	if n := len(dst) - start; n < 3 || dst[len(dst)-2] != '\r' {
		return dst, start, errBadReply
	}
	return dst, start, nil
}

// appendValue reads one complete value and appends it to dst. When the value
// would take dst past limit bytes, the rest of it is read and dropped and
// overflow is reported; dst then holds a truncated value that must not be
// sent to anyone. A limit <= 0 means no limit.
func (r *replyReader) appendValue(dst []byte, limit int) (out []byte, overflow bool, err error) {
	pending := int64(1)
	for pending > 0 {
		var start int
		dst, start, err = r.readLine(dst)
		if err != nil {
			return dst, overflow, err
		}
		line := dst[start:]
		typ := line[0]
		body := line[1 : len(line)-2]
		if overflow {
			dst = dst[:start]
		}
		pending--
		switch typ {
		case '+', '-', ':', '_', ',', '#', '(':
		case '$', '!', '=':
			n, ok := parseLen(body)
			if !ok {
				return dst, overflow, errBadReply
			}
			if n < 0 {
				continue
			}
			if n > maxReplyBulk {
				return dst, overflow, errBadReply
			}
			n += 2
			if !overflow && limit > 0 && int64(len(dst))+n > int64(limit) {
				overflow = true
			}
			if overflow {
				if _, err := r.br.Discard(int(n)); err != nil {
					return dst, overflow, err
				}
				continue
			}
			dst = slices.Grow(dst, int(n))
			end := len(dst) + int(n)
			if _, err := io.ReadFull(r.br, dst[len(dst):end]); err != nil {
				return dst, overflow, err
			}
			dst = dst[:end]
			if dst[end-2] != '\r' || dst[end-1] != '\n' {
				return dst, overflow, errBadReply
			}
		case '*', '~', '>':
			n, ok := parseLen(body)
			if !ok {
				return dst, overflow, errBadReply
			}
			if n > 0 {
				pending += n
			}
		case '%':
			n, ok := parseLen(body)
			if !ok {
				return dst, overflow, errBadReply
			}
			if n > 0 {
				pending += 2 * n
			}
		case '|':
			// An attribute map precedes the value it describes.
			n, ok := parseLen(body)
			if !ok {
				return dst, overflow, errBadReply
			}
			pending += 2*n + 1
		default:
			return dst, overflow, errBadReply
		}
		if !overflow && limit > 0 && len(dst) > limit {
			overflow = true
		}
	}
	return dst, overflow, nil
}

// The request scanner bounds what a client may make the proxy buffer. It
// follows the framing of the client's byte stream (not the values) and stops
// a request whose bulk length, argument count or inline line is too large
// before its bytes are read, as Redis does with proto-max-bulk-len.
const (
	scanStart    = iota // at the start of a request
	scanHeader          // inside a "*N" or "$N" line
	scanNextBulk        // expecting the "$" of the next argument
	scanBody            // inside a bulk string body (and its CRLF)
	scanInline          // inside an inline (telnet) request
)

const (
	maxInline   = 64 * 1024 // Redis's PROTO_INLINE_MAX_SIZE
	maxArgs     = 1 << 20   // arguments in one request
	maxHeader   = 32        // bytes in a "*N" or "$N" line
	errBulkLen  = "ERR Protocol error: invalid bulk length"
	errMultiLen = "ERR Protocol error: invalid multibulk length"
	errInline   = "ERR Protocol error: too big inline request"

	// Before AUTH, Redis bounds requests much tighter, so that a client
	// without the password cannot make the server buffer much.
	maxArgsUnauth    = 10
	maxBulkUnauth    = 16384
	errBulkUnauth    = "ERR Protocol error: unauthenticated bulk length"
	errMultiLenUnath = "ERR Protocol error: unauthenticated multibulk length"
)

type reqScanner struct {
	// drops are the [start, end) offsets, in the chunk just scanned, of
	// empty requests ("*0", "*-1"), which Redis ignores and redcon would
	// treat as a protocol error.
	drops   [][2]int
	hdrHere bool // the current "*N" line started in this chunk
	ended   bool // a request ended in the chunk just scanned
	maxBulk int64
	unauth  bool // the client has not authenticated (a password is set)
	state   uint8
	kind    byte
	n       int64
	neg     bool
	hdr     int
	left    int64 // body bytes left, or inline bytes seen
	bulks   int64 // arguments left in the current request
}

// scan follows p and returns the offset where the request that broke a limit
// starts (or 0 if it started in an earlier chunk) and the error reply for it;
// msg is "" when p is fine.
func (s *reqScanner) scan(p []byte) (cut int, msg string) {
	reqStart := 0
	s.drops = s.drops[:0]
	s.hdrHere = false
	s.ended = false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch s.state {
		case scanStart:
			reqStart = i
			if c == '*' {
				if end := s.whole(p[i:]); end > 0 && scanFast {
					s.ended = true
					i += end - 1
					continue
				}
				s.state, s.kind, s.n, s.neg, s.hdr = scanHeader, '*', 0, false, 0
				s.hdrHere = true
			} else {
				s.state, s.left = scanInline, 1
				if c == '\n' {
					s.state = scanStart
					s.ended = true
				}
			}
		case scanHeader:
			s.hdr++
			switch {
			case c >= '0' && c <= '9':
				s.n = s.n*10 + int64(c-'0')
			case c == '-' && s.hdr == 1:
				s.neg = true
			case c == '\r':
			case c == '\n':
				if s.neg {
					s.n = -s.n
				}
				if s.kind == '*' {
					switch {
					case s.n > maxArgs:
						return reqStart, errMultiLen
					case s.unauth && s.n > maxArgsUnauth:
						return reqStart, errMultiLenUnath
					case s.n <= 0:
						s.state = scanStart
						s.ended = true
						if s.hdrHere {
							s.drops = append(s.drops, [2]int{reqStart, i + 1})
						}
					default:
						s.bulks, s.state = s.n, scanNextBulk
					}
				} else {
					switch {
					case s.n < 0 || s.n > s.maxBulk:
						return reqStart, errBulkLen
					case s.unauth && s.n > maxBulkUnauth:
						return reqStart, errBulkUnauth
					}
					s.left, s.state = s.n+2, scanBody
				}
			default:
				// Not a number: the request before this one is still
				// answered, then this error ends the connection.
				if s.kind == '*' {
					return reqStart, errMultiLen
				}
				return reqStart, errBulkLen
			}
			if s.hdr > maxHeader || s.n > 1<<50 {
				if s.kind == '*' {
					return reqStart, errMultiLen
				}
				return reqStart, errBulkLen
			}
		case scanNextBulk:
			if c != '$' {
				// As Redis, never put a line break in an error reply.
				if c == '\r' || c == '\n' {
					c = ' '
				}
				return reqStart, "ERR Protocol error: expected '$', got '" + string(rune(c)) + "'"
			}
			s.state, s.kind, s.n, s.neg, s.hdr = scanHeader, '$', 0, false, 0
		case scanBody:
			skip := min(s.left, int64(len(p)-i))
			s.left -= skip
			i += int(skip) - 1
			if s.left == 0 {
				s.bulks--
				if s.bulks == 0 {
					s.state = scanStart
					s.ended = true
				} else {
					s.state = scanNextBulk
				}
			}
		case scanInline:
			if c == '\n' {
				s.state = scanStart
				s.ended = true
				continue
			}
			s.left++
			if s.left > maxInline {
				return reqStart, errInline
			}
		}
	}
	return 0, ""
}

// scanFast lets scan take a request whole (tests turn it off to compare).
var scanFast = true

// whole returns the length of the request at the start of p if it is
// complete, plainly formed ("*N" and "$N" lines of digits and CRLF) and
// within every limit, and 0 otherwise: the byte-by-byte scan then decides.
// It reads a line at a time, which is what most requests are.
func (s *reqScanner) whole(p []byte) int {
	n, i := digitLine(p, 0)
	if i == 0 || n <= 0 || n > maxArgs || (s.unauth && n > maxArgsUnauth) {
		return 0
	}
	for ; n > 0; n-- {
		if i >= len(p) || p[i] != '$' {
			return 0
		}
		size, j := digitLine(p, i)
		if j == 0 || size > s.maxBulk || (s.unauth && size > maxBulkUnauth) {
			return 0
		}
		i = j + int(size) + 2
		if i > len(p) {
			return 0
		}
	}
	return i
}

// digitLine reads the line at p[at:], a type byte and 1 to 15 digits then
// CRLF, and returns the number and the offset after the line (0: the line
// is incomplete or not like that).
func digitLine(p []byte, at int) (int64, int) {
	var n int64
	for j := at + 1; j < len(p) && j <= at+16; j++ {
		c := p[j]
		if c >= '0' && c <= '9' {
			n = n*10 + int64(c-'0')
			continue
		}
		if c == '\r' && j > at+1 && j+1 < len(p) && p[j+1] == '\n' {
			return n, j + 2
		}
		return 0, 0
	}
	return 0, 0
}

// limitConn is the client connection as redcon sees it: reads pass through
// a reqScanner, and a request over a limit gets Redis's protocol error, after
// the replies to the requests before it, and then the connection ends.
type limitConn struct {
	net.Conn
	scan    reqScanner
	pending string   // error reply owed before the next read fails
	prefix  []byte   // bytes an event loop read (and scanned) before the hand-off
	sess    *session // the client's session, made when it connected
	// delivered counts the bytes Read gave redcon; consumed, those of the
	// commands redcon gave the session. Equal, redcon holds no byte of
	// the client's (see session.returnToLoop). inline: an inline command
	// came (redcon re-encodes those, so the counts can no longer match).
	delivered, consumed int64
	inline              bool
}

// errLimit ends a client connection whose request broke a limit.
var errLimit = errors.New("request over a protocol limit")

func (c *limitConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		c.delivered += int64(n)
		return n, nil
	}
	if c.pending != "" {
		fmt.Fprintf(c.Conn, "-%s\r\n", c.pending)
		return 0, errLimit
	}
	for {
		n, err := c.Conn.Read(p)
		if n > 0 {
			cut, msg := c.scan.scan(p[:n])
			if msg != "" {
				c.pending = msg
				n = cut
			}
			n = dropSpans(p[:n], c.scan.drops)
			if msg != "" && n == 0 {
				fmt.Fprintf(c.Conn, "-%s\r\n", msg)
				return 0, errLimit
			}
			if n == 0 && err == nil {
				continue // only empty requests: nothing for redcon
			}
		}
		c.delivered += int64(max(n, 0))
		return n, err
	}
}

// dropSpans removes the spans (sorted, within p) from p in place and
// returns the new length.
func dropSpans(p []byte, spans [][2]int) int {
	if len(spans) == 0 {
		return len(p)
	}
	w, r := 0, 0
	for _, sp := range spans {
		if sp[0] >= len(p) {
			break
		}
		w += copy(p[w:], p[r:sp[0]])
		r = min(sp[1], len(p))
	}
	w += copy(p[w:], p[r:])
	return w
}
