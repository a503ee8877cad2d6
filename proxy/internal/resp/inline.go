package resp

import "bytes"

// SplitArgs splits an inline request line (without its line end) into
// arguments as Redis's sdssplitargs does: blanks separate arguments;
// "double quotes" take \n \r \t \b \a \xHH and \<any> escapes; 'single
// quotes' take \'; a closing quote must be followed by a blank or the
// end; a quote inside an argument starts a quoted part of it (a"b c" is
// "ab c"). Redis reads the line as a C string, so a NUL byte ends it. ok is
// false for unbalanced quotes. The arguments share one new buffer.
func SplitArgs(line []byte) (args [][]byte, ok bool) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	// Arguments never take more bytes than the line: no append below
	// moves buf, so each argument can be sliced as it ends.
	buf := make([]byte, 0, len(line))
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return args, true
		}
		start := len(buf)
		if buf, i, ok = splitToken(buf, line, i); !ok {
			return nil, false
		}
		args = append(args, buf[start:len(buf):len(buf)])
	}
}

// splitToken appends the argument that starts at line[i] to buf and
// returns the offset after it.
func splitToken(buf, line []byte, i int) ([]byte, int, bool) {
	at := func(j int) byte {
		if j < len(line) {
			return line[j]
		}
		return 0
	}
	var quote byte // '"' or '\'' while inside quotes
	for {
		c := at(i)
		switch {
		case quote == 0 && (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0):
			return buf, i, true
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote != 0 && c == 0:
			return nil, 0, false // unterminated quotes
		case c == quote:
			if n := at(i + 1); n != 0 && !isSpace(n) {
				return nil, 0, false
			}
			return buf, i + 1, true
		case quote == '"' && c == '\\' && at(i+1) == 'x' && isHex(at(i+2)) && isHex(at(i+3)):
			buf = append(buf, unhex(at(i+2))<<4|unhex(at(i+3)))
			i += 3
		case quote == '"' && c == '\\' && at(i+1) != 0:
			i++
			buf = append(buf, unescape(line[i]))
		case quote == '\'' && c == '\\' && at(i+1) == '\'':
			i++
			buf = append(buf, '\'')
		default:
			buf = append(buf, c)
		}
		i++
	}
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}
