package resp

import (
	"bytes"
	"math"
)

// Limits of a request. Redis bounds a bulk by proto-max-bulk-len and, for a
// client that has not authenticated, much tighter (CVE-2021-32675); an
// inline line by PROTO_INLINE_MAX_SIZE. Redis 7 takes up to INT_MAX
// arguments; the proxy bounds them (DefaultMaxArgs): it holds a slice
// header per argument.
const (
	DefaultMaxBulk = 512 << 20
	DefaultMaxArgs = 1 << 20
	MaxInline      = 64 << 10
	MaxArgsUnauth  = 10
	MaxBulkUnauth  = 16384
	// maxNumber is Redis's LONG_STR_SIZE less one: the most characters
	// of a count (sign included) string2ll reads.
	maxNumber = 20
)

// Redis's replies to a broken request stream, without the leading '-'.
// After one, Redis closes the connection once what came before is
// answered.
const (
	ErrMultibulkLen       = "ERR Protocol error: invalid multibulk length"
	ErrBulkLen            = "ERR Protocol error: invalid bulk length"
	ErrUnauthMultibulkLen = "ERR Protocol error: unauthenticated multibulk length"
	ErrUnauthBulkLen      = "ERR Protocol error: unauthenticated bulk length"
	ErrInlineTooBig       = "ERR Protocol error: too big inline request"
	ErrUnbalancedQuotes   = "ERR Protocol error: unbalanced quotes in request"
)

// maxRedisArgs is Redis 7's own bound on a request's arguments (INT_MAX):
// above it Redis answers ErrMultibulkLen before it looks at authentication.
const maxRedisArgs = math.MaxInt32

// ProtocolError is a request stream the parser cannot go on with. Reply is
// what Redis answers (without '-' and CRLF).
type ProtocolError struct{ Reply string }

func (e *ProtocolError) Error() string { return e.Reply }

// refuse ends the parse of a broken stream: the parser forgets its place
// and Next returns Redis's reply as a *ProtocolError.
func (p *Parser) refuse(reply string) (Command, int, error) {
	p.Reset()
	return Command{}, 0, &ProtocolError{Reply: reply}
}

// expected is Redis's error for an argument that does not start with '$'.
// As Redis, a line break never goes into an error reply; any other byte goes
// in as it is (string(rune(c)) would UTF-8-encode a byte >= 0x80).
func expected(c byte) string {
	if c == '\r' || c == '\n' {
		c = ' '
	}
	return "ERR Protocol error: expected '$', got '" + string([]byte{c}) + "'"
}

// Command is one client request.
type Command struct {
	// Raw is what to send to Redis for it: the client's own bytes for a
	// multibulk request, the multibulk form of an inline one.
	Raw []byte
	// Args are the name and arguments. For a multibulk request they alias
	// the buffer given to Next and the slice is the parser's, reused by
	// the next call; an inline request's are its own.
	Args [][]byte
}

// Parser splits a client's byte stream into commands, checking the limits
// as it goes. It keeps its place in a command that is still arriving, so a
// large one is read once however many reads bring it: call Next again with
// a buffer that starts with the same command and has more bytes after it
// (the buffer may have moved). The zero Parser uses the default limits. A
// Parser belongs to one client; it is not safe for concurrent use.
type Parser struct {
	// MaxBulk bounds one bulk string, in bytes. If zero, DefaultMaxBulk.
	MaxBulk int64
	// MaxArgs bounds the arguments of one request. If zero, DefaultMaxArgs.
	MaxArgs int64
	// Unauth applies Redis's limits for a client that has not yet
	// authenticated (10 arguments, 16 KiB bulks). The caller sets it
	// before each call.
	Unauth bool

	args [][]byte
	// Place in a command still arriving (pos 0: none). For a multibulk
	// one: the offset of the next argument's header, the arguments still
	// to come and the [start, end) offsets of those read; for an inline
	// one, the bytes known to hold no line end.
	pos   int
	left  int64
	marks []int
	// head: the last call saw the start of a multibulk command whose
	// count line is not all there yet (nothing to keep but the fact).
	head bool
	// work counts the bytes Next has examined, bulk bodies excepted (it
	// only checks their CRLF): the tests hold it linear in the input
	// however many reads bring a command.
	work int64
	// need: see Need.
	need int
}

// Reset forgets a command still arriving (the connection is gone, or the
// buffer now starts elsewhere).
func (p *Parser) Reset() { p.pos, p.left, p.marks, p.head, p.need = 0, 0, p.marks[:0], false, 0 }

// Need is how long the buffer must be, at least, before the command still
// arriving can be complete, when the headers seen tell: up to the end of
// the bulk string being read (its header said how long it is). 0 when not
// known (no command arriving, or between arguments). A reader can size
// its buffer for a large value once, from its header.
func (p *Parser) Need() int { return p.need }

// Pending reports whether Next has seen part of a command it has not yet
// returned.
func (p *Parser) Pending() bool { return p.pos > 0 || p.head }

// Next parses the command at the start of buf. It returns:
//
//   - n > 0 and no error: the command and its length. An empty request
//     ("*0", "*-1", a blank line), which Redis ignores, has no Args.
//   - n == 0 and no error: the command is not complete. Call again with
//     more bytes after the same start.
//   - a *ProtocolError: the stream is broken at this command. The parser
//     forgets the command (as Reset), so it can be used again.
func (p *Parser) Next(buf []byte) (Command, int, error) {
	switch {
	case len(buf) == 0:
		return Command{}, 0, nil
	case buf[0] == '*':
		return p.multibulk(buf)
	}
	return p.inline(buf)
}

func (p *Parser) limits() (maxArgs, maxBulk int64) {
	maxArgs, maxBulk = p.MaxArgs, p.MaxBulk
	if maxArgs == 0 {
		maxArgs = DefaultMaxArgs
	}
	if maxBulk == 0 {
		maxBulk = DefaultMaxBulk
	}
	return maxArgs, maxBulk
}

// multibulk parses "*N\r\n" and N "$len\r\n<bytes>\r\n".
func (p *Parser) multibulk(buf []byte) (Command, int, error) {
	maxArgs, maxBulk := p.limits()
	pos, left, resumed := p.pos, p.left, p.pos > 0
	if !resumed {
		p.need = 0
		n, next, bad := p.number(buf, 0)
		p.head = next == 0 && !bad
		// Redis's own checks first, in its order; then the proxy's bound.
		switch {
		case bad || next > 0 && n > maxRedisArgs:
			return p.refuse(ErrMultibulkLen)
		case next == 0:
			return Command{}, 0, nil
		case p.Unauth && n > MaxArgsUnauth:
			return p.refuse(ErrUnauthMultibulkLen)
		case n <= 0:
			return Command{}, next, nil // Redis ignores it
		case n > maxArgs:
			return p.refuse(ErrMultibulkLen)
		}
		pos, left = next, n
		p.args = p.args[:0]
	}
	for left > 0 && pos < len(buf) {
		if buf[pos] != '$' {
			return p.refuse(expected(buf[pos]))
		}
		size, body, bad := p.number(buf, pos)
		switch {
		case bad || size < 0 || size > maxBulk:
			return p.refuse(ErrBulkLen)
		case p.Unauth && size > MaxBulkUnauth:
			return p.refuse(ErrUnauthBulkLen)
		case body == 0:
			p.need = 0
			return p.keepPlace(buf, pos, left, resumed)
		case size > int64(len(buf)-body-2):
			// Compared so, a MaxBulk near MaxInt64 cannot wrap body+size.
			p.need = body + int(size) + 2
			return p.keepPlace(buf, pos, left, resumed)
		}
		end := body + int(size)
		p.work += 2
		if buf[end] != '\r' || buf[end+1] != '\n' {
			return p.refuse(ErrBulkLen) // Redis skips two bytes unread; the proxy refuses
		}
		if resumed {
			p.marks = append(p.marks, body, end)
		} else {
			p.args = append(p.args, buf[body:end])
		}
		pos = end + 2
		left--
	}
	if left > 0 {
		p.need = 0
		return p.keepPlace(buf, pos, left, resumed)
	}
	if resumed {
		p.args = p.args[:0]
		for i := 0; i < len(p.marks); i += 2 {
			p.args = append(p.args, buf[p.marks[i]:p.marks[i+1]])
		}
		p.Reset()
	}
	return Command{Raw: buf[:pos], Args: p.args}, pos, nil
}

// Forget drops the parser's hold on the arguments of the last command it
// returned (slices of the caller's buffer), so that a large buffer the
// caller is done with can be collected. The place in a command still
// arriving is kept (it is held as offsets).
func (p *Parser) Forget() { clear(p.args) }

// keepPlace records where a multibulk command still arriving goes on, with
// the offsets of the arguments read so far (a fresh parse has them as
// slices of buf: an argument's offset is what its capacity lacks of buf's).
func (p *Parser) keepPlace(buf []byte, pos int, left int64, resumed bool) (Command, int, error) {
	if !resumed {
		p.marks = p.marks[:0]
		for _, a := range p.args {
			start := cap(buf) - cap(a)
			p.marks = append(p.marks, start, start+len(a))
		}
		clear(p.args)
	}
	p.pos, p.left = pos, left
	return Command{}, 0, nil
}

// number reads the header line at buf[at:]: a type byte, then a number as
// Redis's string2ll takes it (optional '-', no leading zero, at most 20
// characters), then CRLF. next is the offset after the line, 0 if the line
// is not all there yet; bad means it can never be such a line.
func (p *Parser) number(buf []byte, at int) (n int64, next int, bad bool) {
	// The common header first: 1 to 18 digits, no sign, no leading zero
	// (so no overflow), then CRLF.
	i := at + 1
	if i < len(buf) && '1' <= buf[i] && buf[i] <= '9' {
		v := int64(buf[i] - '0')
		for i++; i < len(buf) && i-at <= 18; i++ {
			c := buf[i]
			if c < '0' || c > '9' {
				break
			}
			v = v*10 + int64(c-'0')
		}
		if i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n' {
			p.work += int64(i + 2 - at)
			return v, i + 2, false
		}
	}
	return p.numberSlow(buf, at)
}

// numberSlow is number for every other line: a sign, a zero, a line not
// all there yet, or not a number.
func (p *Parser) numberSlow(buf []byte, at int) (n int64, next int, bad bool) {
	i := at + 1
	for i < len(buf) && i-(at+1) <= maxNumber && ('0' <= buf[i] && buf[i] <= '9' || buf[i] == '-' && i == at+1) {
		i++
	}
	p.work += int64(min(i+2, len(buf)) - at)
	switch {
	case i-(at+1) > maxNumber:
		return 0, 0, true
	case i == len(buf):
		return 0, 0, false // more digits, or the CR, may come
	case buf[i] != '\r':
		return 0, 0, true
	}
	n, ok := ParseInt(buf[at+1 : i])
	switch {
	case !ok:
		return 0, 0, true
	case i+1 == len(buf):
		return 0, 0, false
	case buf[i+1] != '\n':
		return 0, 0, true // Redis skips the byte unread; the proxy refuses
	}
	return n, i + 2, false
}

// inline parses a line of text, split into arguments as Redis's
// sdssplitargs does. The command's Raw is its multibulk form, so Redis
// reads exactly the arguments the proxy saw.
func (p *Parser) inline(buf []byte) (Command, int, error) {
	i := bytes.IndexByte(buf[p.pos:], '\n')
	if i < 0 {
		p.work += int64(len(buf) - p.pos)
		if len(buf) > MaxInline {
			return p.refuse(ErrInlineTooBig)
		}
		p.pos = len(buf)
		return Command{}, 0, nil
	}
	end := p.pos + i
	p.work += int64(i+1) + int64(end)
	p.pos = 0
	line := buf[:end]
	// Redis looks for the line end with strchr, which stops at a NUL: it
	// never sees this line end, and waits until the line is too big.
	if bytes.IndexByte(line, 0) >= 0 {
		return p.refuse(ErrInlineTooBig)
	}
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, ok := SplitArgs(line)
	if !ok {
		return p.refuse(ErrUnbalancedQuotes)
	}
	if len(args) == 0 {
		return Command{}, end + 1, nil
	}
	return Command{Raw: AppendCommandArgs(nil, args), Args: args}, end + 1, nil
}
