package resptest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Value is one RESP2/RESP3 value as read from the wire.
type Value struct {
	// Type is the type byte: + - : $ * in RESP2; _ , # ( ! = % ~ > in
	// RESP3. An attribute (|) is not a value of its own: it is read
	// with the value it describes, into Attrs.
	Type byte
	// Str is the contents of a simple string, error, bulk string, bulk
	// error, verbatim string (with its "txt:" prefix), double, big
	// number or boolean ("t" or "f"), as sent.
	Str string
	// Int is the value of an integer (:).
	Int int64
	// Null is set for _ and for a bulk string or aggregate of length -1.
	Null bool
	// Elems are the elements of an array, set or push; of a map, its
	// keys and values in turn (key, value, key, value ...).
	Elems []Value
	// Attrs are the attributes sent before the value, keys and values
	// in turn; nil when there were none.
	Attrs []Value
	// Raw is the value's exact bytes, its attributes included.
	Raw []byte
}

// IsError reports whether v is an error reply (- or !).
func (v Value) IsError() bool { return v.Type == '-' || v.Type == '!' }

// Get returns the value of key in a map (or in any aggregate read as
// key, value pairs, such as a RESP2 HELLO reply).
func (v Value) Get(key string) (Value, bool) {
	for i := 0; i+1 < len(v.Elems); i += 2 {
		if v.Elems[i].Str == key {
			return v.Elems[i+1], true
		}
	}
	return Value{}, false
}

// String renders v compactly, for assertions and messages: simple strings
// bare, bulk and verbatim strings quoted, integers as numbers, errors as
// "(error) ...", doubles, big numbers and booleans as sent, aggregates
// (maps too) as [a,b], nulls as <nil>, and attributes first as |[k,v] .
func (v Value) String() string {
	s := v.string()
	if len(v.Attrs) > 0 {
		s = "|" + render(v.Attrs) + " " + s
	}
	return s
}

func (v Value) string() string {
	if v.Null {
		return "<nil>"
	}
	switch v.Type {
	case '+', ',', '(', '#':
		return v.Str
	case '-', '!':
		return "(error) " + v.Str
	case ':':
		return strconv.FormatInt(v.Int, 10)
	case '$', '=':
		return strconv.Quote(v.Str)
	case '*', '~', '>', '%':
		return render(v.Elems)
	}
	return fmt.Sprintf("?%q", v.Raw)
}

func render(vs []Value) string {
	parts := make([]string, len(vs))
	for i, e := range vs {
		parts[i] = e.String()
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Quote renders raw bytes for a failure message: quoted, and past 300
// bytes only the first 200 of them and the length.
func Quote(b []byte) string {
	if len(b) > 300 {
		return fmt.Sprintf("%q...(%d bytes)", b[:200], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// ReadValue reads one value. It returns io.EOF when the stream ends
// before the value begins, io.ErrUnexpectedEOF when it ends inside it; on
// an error the Value holds the bytes read of it so far in Raw.
func ReadValue(br *bufio.Reader) (Value, error) {
	var v Value
	_, err := read(br, nil, &v)
	return v, err
}

// ReadRaw reads one value and appends its exact bytes to dst. On an error
// dst holds what was read of it so far.
func ReadRaw(br *bufio.Reader, dst []byte) ([]byte, error) {
	v, err := ReadValue(br)
	return append(dst, v.Raw...), err
}

// Parse reads the one value b holds; bytes after it are an error.
func Parse(b []byte) (Value, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	v, err := ReadValue(br)
	if err != nil {
		return v, err
	}
	if n := br.Buffered(); n > 0 {
		return v, fmt.Errorf("%d bytes after the value", n)
	}
	return v, nil
}

// read is the parser: it reads one value into v, appending its bytes to
// dst, and sets v.Raw to them (a slice of the result).
func read(br *bufio.Reader, dst []byte, v *Value) (out []byte, err error) {
	start := len(dst)
	defer func() { v.Raw = out[start:len(out):len(out)] }()
	line, err := br.ReadBytes('\n')
	dst = append(dst, line...)
	if err != nil {
		return dst, cutShort(err, len(line) > 0)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return dst, fmt.Errorf("malformed RESP line %q", line)
	}
	typ, body := line[0], string(line[1:len(line)-2])
	if typ != '|' {
		v.Type = typ
	}
	switch typ {
	case '+', '-', ',', '(', '#':
		v.Str = body
	case ':':
		if v.Int, err = strconv.ParseInt(body, 10, 64); err != nil {
			return dst, fmt.Errorf("malformed RESP integer %q", line)
		}
	case '_':
		v.Null = true
	case '$', '!', '=', '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(body)
		switch {
		case err != nil || n < -1:
			return dst, fmt.Errorf("malformed RESP length %q", line)
		case n == -1:
			v.Null = true
		case typ == '$' || typ == '!' || typ == '=':
			return readBulk(br, dst, v, n)
		default:
			return readAggregate(br, dst, v, typ, n)
		}
	default:
		return dst, fmt.Errorf("unknown RESP type in %q", line)
	}
	return dst, nil
}

// readBulk reads the n bytes and CRLF of a bulk value into v.Str.
func readBulk(br *bufio.Reader, dst []byte, v *Value, n int) ([]byte, error) {
	at := len(dst)
	dst = append(dst, make([]byte, n+2)...)
	if k, err := io.ReadFull(br, dst[at:]); err != nil {
		return dst[:at+k], cutShort(err, true)
	}
	if !bytes.HasSuffix(dst, []byte("\r\n")) {
		return dst, fmt.Errorf("RESP bulk of %d bytes not followed by CRLF", n)
	}
	v.Str = string(dst[at : at+n])
	return dst, nil
}

// readAggregate reads the n elements of an aggregate into v.Elems or,
// for attributes (|), n pairs into v.Attrs and then the value they
// describe into v.
func readAggregate(br *bufio.Reader, dst []byte, v *Value, typ byte, n int) ([]byte, error) {
	if typ == '%' || typ == '|' {
		n *= 2
	}
	elems := make([]Value, n)
	var err error
	for i := range elems {
		if dst, err = read(br, dst, &elems[i]); err != nil {
			elems = elems[:i+1]
			break
		}
	}
	if typ != '|' {
		v.Elems = elems
		return dst, cutShort(err, true)
	}
	if err == nil {
		dst, err = read(br, dst, v)
	}
	v.Attrs = append(elems, v.Attrs...)
	return dst, cutShort(err, true)
}

// cutShort turns the end of the stream inside a value (begun says whether
// anything of it was read) into io.ErrUnexpectedEOF.
func cutShort(err error, begun bool) error {
	if err == io.EOF && begun {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Cmd encodes one command as a RESP array of bulk strings.
func Cmd(args ...string) []byte { return AppendCmd(nil, args...) }

// AppendCmd appends the encoding of one command to dst.
func AppendCmd(dst []byte, args ...string) []byte {
	dst = fmt.Appendf(dst, "*%d\r\n", len(args))
	for _, a := range args {
		dst = fmt.Appendf(dst, "$%d\r\n%s\r\n", len(a), a)
	}
	return dst
}

// Cmds encodes commands one after another, as a pipeline.
func Cmds(cmds ...[]string) []byte {
	var b []byte
	for _, c := range cmds {
		b = AppendCmd(b, c...)
	}
	return b
}
