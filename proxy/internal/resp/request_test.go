package resp

// These tests hold Parser.Next to its contract: the commands, lengths and
// Raw bytes of well-formed requests; empty requests; "not yet" (n == 0) at
// every byte of a pipeline; resumption that keeps offsets, not pointers
// (each call gets a new copy of the buffer and the old one is scribbled
// over); every protocol error with Redis's reply text; the limits refused
// from a header alone; sdssplitargs' reading of inline lines; and work
// linear in the input when a huge command arrives in many reads.

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"
)

// parsed is one command as Next returned it, copied out of the buffer.
type parsed struct {
	Args   []string
	N      int
	Raw    string
	Inline bool
}

func copyCmd(c Command, n int, inline bool) parsed {
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = string(a)
	}
	if len(c.Args) == 0 {
		args = nil
	}
	return parsed{Args: args, N: n, Raw: string(c.Raw), Inline: inline}
}

// parseWhole parses data in one buffer until it ends, is incomplete or is
// refused. rest is the offset of the first byte not consumed.
func parseWhole(p *Parser, data []byte) (cmds []parsed, rest int, err error) {
	for rest < len(data) {
		c, n, err := p.Next(data[rest:])
		if err != nil {
			return cmds, rest, err
		}
		if n == 0 {
			return cmds, rest, nil
		}
		cmds = append(cmds, copyCmd(c, n, data[rest] != '*'))
		rest += n
	}
	return cmds, rest, nil
}

// parseChunked feeds data as a client's reads would bring it, in chunks
// of the sizes next gives. Before every call the bytes not yet consumed
// are copied to a new slice, and after it the slice is scribbled over: a
// parser that kept pointers into an earlier buffer, instead of offsets,
// reads garbage.
func parseChunked(p *Parser, data []byte, next func() int) (cmds []parsed, rest int, err error) {
	var pending []byte
	fed := 0
	for {
		k := min(next(), len(data)-fed)
		pending = append(pending, data[fed:fed+k]...)
		fed += k
		for len(pending) > 0 {
			buf := make([]byte, len(pending), len(pending)+rand.Intn(8))
			copy(buf, pending)
			c, n, err := p.Next(buf)
			if err == nil && n > 0 {
				cmds = append(cmds, copyCmd(c, n, buf[0] != '*'))
			}
			for i := range buf {
				buf[i] = '!'
			}
			if err != nil {
				return cmds, rest, err
			}
			if n == 0 {
				break
			}
			pending = pending[n:]
			rest += n
		}
		if fed == len(data) {
			return cmds, rest, nil
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	pe, ok := err.(*ProtocolError)
	if !ok {
		return "not a *ProtocolError: " + err.Error()
	}
	return pe.Reply
}

func mb(args ...string) string { return string(AppendCommand(nil, args...)) }

func TestParserCommands(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want parsed
	}{
		{"ping", "*1\r\n$4\r\nPING\r\n", parsed{Args: []string{"PING"}, N: 14, Raw: "*1\r\n$4\r\nPING\r\n"}},
		{"set with empty value", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
			parsed{Args: []string{"SET", "k", ""}, N: 26, Raw: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"}},
		{"binary argument", "*2\r\n$4\r\nECHO\r\n$8\r\n\r\n\x00$*\n\xff\r\r\n",
			parsed{Args: []string{"ECHO", "\r\n\x00$*\n\xff\r"}, N: 28, Raw: "*2\r\n$4\r\nECHO\r\n$8\r\n\r\n\x00$*\n\xff\r\r\n"}},
		{"bytes after the command are not read", "*1\r\n$4\r\nPING\r\n*1x\r\n",
			parsed{Args: []string{"PING"}, N: 14, Raw: "*1\r\n$4\r\nPING\r\n"}},
		{"echo", "*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n", parsed{Args: []string{"ECHO", "x"}, N: 21, Raw: "*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n"}},
		{"inline crlf", "PING\r\n", parsed{Args: []string{"PING"}, N: 6, Raw: mb("PING"), Inline: true}},
		{"inline lf", "PING\n", parsed{Args: []string{"PING"}, N: 5, Raw: mb("PING"), Inline: true}},
		{"inline quotes", "SET k \"a b\"\r\n", parsed{Args: []string{"SET", "k", "a b"}, N: 13, Raw: mb("SET", "k", "a b"), Inline: true}},
		{"inline blanks and single quotes", " \tECHO\t'x y'  \r\n", parsed{Args: []string{"ECHO", "x y"}, N: 16, Raw: mb("ECHO", "x y"), Inline: true}},
		{"inline only one CR is the line end", "ECHO a\r\r\n", parsed{Args: []string{"ECHO", "a"}, N: 9, Raw: mb("ECHO", "a"), Inline: true}},
		{"inline escapes", "ECHO \"\\x00\\r\\n\"\n", parsed{Args: []string{"ECHO", "\x00\r\n"}, N: 16, Raw: mb("ECHO", "\x00\r\n"), Inline: true}},
		{"inline after which a multibulk", "PING\r\n*1\r\n$4\r\nPING\r\n", parsed{Args: []string{"PING"}, N: 6, Raw: mb("PING"), Inline: true}},
		{"inline with a star later", "ECHO *1\r\n", parsed{Args: []string{"ECHO", "*1"}, N: 9, Raw: mb("ECHO", "*1"), Inline: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p Parser
			cmd, n, err := p.Next([]byte(c.in))
			if err != nil {
				t.Fatalf("Next(%q): %v", c.in, err)
			}
			if got := copyCmd(cmd, n, c.in[0] != '*'); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("Next(%q)\n got %+v\nwant %+v", c.in, got, c.want)
			}
			if !c.want.Inline && c.in[:n] != c.want.Raw {
				t.Fatalf("Raw is not the consumed bytes")
			}
			if p.Pending() {
				t.Fatalf("Pending after a complete command")
			}
		})
	}
}

func TestParserEmptyRequests(t *testing.T) {
	cases := []struct {
		in string
		n  int
	}{
		{"*0\r\n", 4},
		{"*-1\r\n", 5},
		{"*-5\r\n", 5},
		{"*-9223372036854775808\r\n", 23},
		{"\r\n", 2},
		{"\n", 1},
		{"   \t\r\n", 6},
		{"\v\f \r\n", 5},
		{"\r\r\n", 3},
		{"*0\r\n*1\r\n$4\r\nPING\r\n", 4},
		{"\r\nPING\r\n", 2},
	}
	for _, c := range cases {
		var p Parser
		cmd, n, err := p.Next([]byte(c.in))
		if err != nil || n != c.n || len(cmd.Args) != 0 || cmd.Raw != nil {
			t.Errorf("Next(%q) = %+v, %d, %v; want no Args, n %d", c.in, cmd, n, err, c.n)
		}
	}
}

// pipeline is a client's batch of every kind of request.
var pipeline = []string{
	"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
	"PING\r\n",
	"*0\r\n",
	"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
	"\r\n",
	"ECHO \"a\\r\\nb\" 'c d'\n",
	"*-1\r\n",
	"*2\r\n$4\r\nECHO\r\n$13\r\n\r\n*1\r\n$1\r\nx\r\n\r\n",
	"  \t\n",
	"*1\r\n$4\r\nPING\r\n",
}

func wholePipeline(t *testing.T) ([]byte, []parsed) {
	t.Helper()
	data := []byte(strings.Join(pipeline, ""))
	want, rest, err := parseWhole(&Parser{}, data)
	if err != nil || rest != len(data) || len(want) != len(pipeline) {
		t.Fatalf("pipeline: %d commands, rest %d of %d, err %v", len(want), rest, len(data), err)
	}
	return data, want
}

// TestParserIncompleteEveryOffset cuts the pipeline at every byte: the
// commands wholly before the cut come out, then n == 0 and no error, with
// a fresh parser and with one resumed on every byte.
func TestParserIncompleteEveryOffset(t *testing.T) {
	data, want := wholePipeline(t)
	// ends[i]: offset after request i (empty ones included).
	var ends []int
	off := 0
	for _, r := range pipeline {
		off += len(r)
		ends = append(ends, off)
	}
	for k := 0; k <= len(data); k++ {
		var p Parser
		cmds, rest, err := parseWhole(&p, data[:k])
		if err != nil {
			t.Fatalf("cut at %d: %v", k, err)
		}
		wantRest := 0
		for _, e := range ends {
			if e <= k {
				wantRest = e
			}
		}
		if rest != wantRest {
			t.Fatalf("cut at %d: consumed %d, want %d", k, rest, wantRest)
		}
		if p.Pending() != (rest < k) {
			t.Fatalf("cut at %d: Pending %v with %d bytes left", k, p.Pending(), k-rest)
		}
		if fmt.Sprint(cmds) != fmt.Sprint(want[:len(cmds)]) {
			t.Fatalf("cut at %d: got %+v", k, cmds)
		}
	}
	// One byte a read.
	var p Parser
	cmds, rest, err := parseChunked(&p, data, func() int { return 1 })
	if err != nil || rest != len(data) || fmt.Sprint(cmds) != fmt.Sprint(want) {
		t.Fatalf("byte by byte: %+v, rest %d, %v", cmds, rest, err)
	}
}

// TestParserResume feeds the pipeline (many times over) in random chunks,
// each call on a new copy of the buffer, and gets what one whole parse
// gets.
func TestParserResume(t *testing.T) {
	one, _ := wholePipeline(t)
	data := bytes.Repeat(one, 20)
	want, _, _ := parseWhole(&Parser{}, data)
	for seed := int64(0); seed < 200; seed++ {
		r := rand.New(rand.NewSource(seed))
		maxChunk := 1 + r.Intn(40)
		var p Parser
		cmds, rest, err := parseChunked(&p, data, func() int { return 1 + r.Intn(maxChunk) })
		if err != nil || rest != len(data) || fmt.Sprint(cmds) != fmt.Sprint(want) {
			t.Fatalf("seed %d: %d commands (want %d), rest %d, err %v", seed, len(cmds), len(want), rest, err)
		}
		if p.Pending() {
			t.Fatalf("seed %d: Pending at the end", seed)
		}
	}
}

func TestParserErrors(t *testing.T) {
	exp := func(c string) string { return "ERR Protocol error: expected '$', got '" + c + "'" }
	cases := []struct {
		in     string
		before int // commands returned before the error
		err    string
	}{
		{"*1x\r\n", 0, ErrMultibulkLen},
		{"*\r\n", 0, ErrMultibulkLen},
		{"*-0\r\n", 0, ErrMultibulkLen},
		{"*-\r\n", 0, ErrMultibulkLen},
		{"*01\r\n", 0, ErrMultibulkLen},
		{"*00\r\n", 0, ErrMultibulkLen},
		{"*+1\r\n", 0, ErrMultibulkLen},
		{"* 1\r\n", 0, ErrMultibulkLen},
		{"*1 \r\n", 0, ErrMultibulkLen},
		{"*1-1\r\n", 0, ErrMultibulkLen},
		{"*1\n", 0, ErrMultibulkLen},
		{"*2147483648\r\n", 0, ErrMultibulkLen},
		{"*9223372036854775808\r\n", 0, ErrMultibulkLen},
		{"*123456789012345678901\r\n", 0, ErrMultibulkLen},
		{"*1\rX", 0, ErrMultibulkLen}, // Redis skips the X; the proxy refuses
		{"*1\r\nx", 0, exp("x")},
		{"*1\r\n\r\n", 0, exp(" ")},
		{"*1\r\n\n", 0, exp(" ")},
		{"*1\r\n\xff", 0, exp("\xff")},
		{"*1\r\n*1\r\n", 0, exp("*")},
		{"*2\r\n$4\r\nECHO\r\nPING\r\n", 0, exp("P")},
		{"*1\r\n$\r\n", 0, ErrBulkLen},
		{"*1\r\n$-1\r\n", 0, ErrBulkLen},
		{"*1\r\n$-0\r\n", 0, ErrBulkLen},
		{"*1\r\n$01\r\n", 0, ErrBulkLen},
		{"*1\r\n$1x\r\n", 0, ErrBulkLen},
		{"*1\r\n$1\rX", 0, ErrBulkLen},
		{"*1\r\n$9223372036854775808\r\n", 0, ErrBulkLen},
		{"*1\r\n$536870913\r\n", 0, ErrBulkLen},
		{"*1\r\n$3\r\nabcXY", 0, ErrBulkLen}, // Redis skips XY unread; the proxy refuses
		{"*1\r\n$3\r\nabc\rX", 0, ErrBulkLen},
		{"*1\r\n$3\r\nabc\n\r", 0, ErrBulkLen},
		{"\"unterminated\r\n", 0, ErrUnbalancedQuotes},
		{"ECHO \"a\"b\r\n", 0, ErrUnbalancedQuotes},
		{"ECHO 'a\r\n", 0, ErrUnbalancedQuotes},
		{"PING\x00\r\n", 0, ErrInlineTooBig}, // Redis never sees this line end
		{"\x00\n", 0, ErrInlineTooBig},
		{strings.Repeat("a", MaxInline+1), 0, ErrInlineTooBig},
		{"PING\r\n*1\r\n$4\r\nPING\r\n*1x\r\n", 2, ErrMultibulkLen},
		{"*0\r\nPING\r\n\"\r\n", 2, ErrUnbalancedQuotes}, // the empty *0 counts
	}
	for _, c := range cases {
		for _, chunked := range []bool{false, true} {
			var p Parser
			var cmds []parsed
			var err error
			if chunked {
				step := max(1, len(c.in)/50)
				cmds, _, err = parseChunked(&p, []byte(c.in), func() int { return step })
			} else {
				cmds, _, err = parseWhole(&p, []byte(c.in))
			}
			if errText(err) != c.err || len(cmds) != c.before {
				t.Errorf("Next(%.40q) chunked %v: %d commands, err %q; want %d, %q", c.in, chunked, len(cmds), errText(err), c.before, c.err)
			}
			if p.Pending() {
				t.Errorf("Next(%.40q) chunked %v: Pending after the error", c.in, chunked)
			}
		}
	}
	// The longest inline line not refused yet.
	var p Parser
	if _, n, err := p.Next(bytes.Repeat([]byte("a"), MaxInline)); n != 0 || err != nil {
		t.Errorf("inline of MaxInline bytes without a line end: n %d, err %v", n, err)
	}
}

// TestParserErrorForgets: a refused command leaves no place behind, so
// the parser reads the next buffer from its start.
func TestParserErrorForgets(t *testing.T) {
	var p Parser
	if _, n, err := p.Next([]byte("*2\r\n$1\r\na\r\n")); n != 0 || err != nil || !p.Pending() {
		t.Fatalf("first half: n %d err %v pending %v", n, err, p.Pending())
	}
	if _, _, err := p.Next([]byte("*2\r\n$1\r\na\r\nx")); errText(err) != "ERR Protocol error: expected '$', got 'x'" {
		t.Fatalf("resumed refusal: %v", err)
	}
	cmd, n, err := p.Next([]byte("*1\r\n$4\r\nPING\r\n"))
	if err != nil || n != 14 || len(cmd.Args) != 1 || string(cmd.Args[0]) != "PING" {
		t.Fatalf("after a refusal: %q %d %v", cmd.Args, n, err)
	}
	// Reset does the same for a command that will not be finished.
	p.Next([]byte("*3\r\n$3\r\nSET\r\n$1"))
	p.Reset()
	if cmd, n, err := p.Next([]byte("PING\r\n")); err != nil || n != 6 || string(cmd.Args[0]) != "PING" {
		t.Fatalf("after Reset: %q %d %v", cmd.Args, n, err)
	}
}

// TestParserLimits: each limit is refused from the header alone, with
// none of the body present; one under the limit is only incomplete.
func TestParserLimits(t *testing.T) {
	cases := []struct {
		name string
		p    Parser
		in   string
		err  string // "" means incomplete, no error
	}{
		{"MaxBulk at", Parser{MaxBulk: 10}, "*1\r\n$10\r\n", ""},
		{"MaxBulk over", Parser{MaxBulk: 10}, "*1\r\n$11\r\n", ErrBulkLen},
		{"MaxBulk over, second argument", Parser{MaxBulk: 10}, "*2\r\n$3\r\nGET\r\n$11\r\n", ErrBulkLen},
		{"default MaxBulk at", Parser{}, "*1\r\n$536870912\r\n", ""},
		{"default MaxBulk over", Parser{}, "*1\r\n$536870913\r\n", ErrBulkLen},
		{"MaxArgs at", Parser{MaxArgs: 3}, "*3\r\n", ""},
		{"MaxArgs over", Parser{MaxArgs: 3}, "*4\r\n", ErrMultibulkLen},
		{"default MaxArgs at", Parser{}, "*1048576\r\n", ""},
		{"default MaxArgs over", Parser{}, "*1048577\r\n", ErrMultibulkLen},
		{"unauth args at", Parser{Unauth: true}, "*10\r\n", ""},
		{"unauth args over", Parser{Unauth: true}, "*11\r\n", ErrUnauthMultibulkLen},
		{"unauth bulk at", Parser{Unauth: true}, "*1\r\n$16384\r\n", ""},
		{"unauth bulk over", Parser{Unauth: true}, "*1\r\n$16385\r\n", ErrUnauthBulkLen},
		{"unauth bulk over, third argument", Parser{Unauth: true}, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16385\r\n", ErrUnauthBulkLen},
		// Redis's own checks come first: above INT_MAX, then unauthenticated.
		{"unauth args over MaxArgs", Parser{Unauth: true}, "*2000000\r\n", ErrUnauthMultibulkLen},
		{"unauth args over a small MaxArgs", Parser{Unauth: true, MaxArgs: 5}, "*12\r\n", ErrUnauthMultibulkLen},
		{"unauth args over INT_MAX", Parser{Unauth: true}, "*2147483648\r\n", ErrMultibulkLen},
		{"unauth bulk over proto-max-bulk-len", Parser{Unauth: true}, "*1\r\n$536870913\r\n", ErrBulkLen},
		{"unauth negative count", Parser{Unauth: true}, "*-1\r\n", "empty"},
		// A limit near MaxInt64 must not wrap the body's end around.
		{"huge MaxBulk", Parser{MaxBulk: math.MaxInt64}, "*1\r\n$9223372036854775807\r\nab", ""},
		{"huge MaxBulk, max int64 minus one", Parser{MaxBulk: math.MaxInt64}, "*2\r\n$1\r\na\r\n$9223372036854775806\r\nab", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			cmd, n, err := p.Next([]byte(c.in))
			switch c.err {
			case "":
				if err != nil || n != 0 || !p.Pending() {
					t.Fatalf("Next(%q) = n %d, err %v, pending %v; want incomplete", c.in, n, err, p.Pending())
				}
			case "empty":
				if err != nil || n != len(c.in) || len(cmd.Args) != 0 {
					t.Fatalf("Next(%q) = %q, n %d, err %v; want an empty request", c.in, cmd.Args, n, err)
				}
			default:
				if errText(err) != c.err || n != 0 {
					t.Fatalf("Next(%q) = n %d, err %q; want %q", c.in, n, errText(err), c.err)
				}
			}
		})
	}
	// Unauth is read at each call: the same bytes pass once it is off.
	p := Parser{Unauth: true}
	if _, _, err := p.Next([]byte("*11\r\n")); errText(err) != ErrUnauthMultibulkLen {
		t.Fatalf("unauth: %v", err)
	}
	p.Unauth = false
	if _, n, err := p.Next([]byte("*11\r\n")); n != 0 || err != nil {
		t.Fatalf("after auth: n %d err %v", n, err)
	}
}

func TestSplitArgs(t *testing.T) {
	cases := []struct {
		line string
		args []string // nil with ok false: unbalanced
		ok   bool
	}{
		{"", nil, true},
		{" \t\v\f\r\n ", nil, true},
		{"a b  c", []string{"a", "b", "c"}, true},
		{"  lead and trail  ", []string{"lead", "and", "trail"}, true},
		{"a\tb\rc\nd", []string{"a", "b", "c", "d"}, true},
		// \v and \f are blanks between arguments, not inside an unquoted one.
		{"\va\fb\v", []string{"a\fb\v"}, true},
		{"a\vb c", []string{"a\vb", "c"}, true},
		{`"a"` + "\v" + `b`, []string{"a", "b"}, true},
		{`"a"` + "\f" + `b`, []string{"a", "b"}, true},
		{`"a"` + "\t" + `b`, []string{"a", "b"}, true},
		{`"a b"`, []string{"a b"}, true},
		{`""`, []string{""}, true},
		{`''`, []string{""}, true},
		{`"" ''`, []string{"", ""}, true},
		{`"\n\r\t\b\a"`, []string{"\n\r\t\b\a"}, true},
		{`"\x41\x6a\x6A\x00\xff"`, []string{"Ajj\x00\xff"}, true},
		{`"\xZZ"`, []string{"xZZ"}, true},
		{`"\x4"`, []string{"x4"}, true},
		{`"\x4g"`, []string{"x4g"}, true},
		{`"\"\\\q\'"`, []string{`"\q'`}, true},
		{`'a\'b'`, []string{"a'b"}, true},
		{`'a\nb\x41'`, []string{`a\nb\x41`}, true},
		{`'a\\b'`, []string{`a\\b`}, true},
		{`'"'`, []string{`"`}, true},
		{`"'"`, []string{`'`}, true},
		{`a"b c"`, []string{"ab c"}, true},
		{`a"b"`, []string{"ab"}, true},
		{`a'b c' d`, []string{"ab c", "d"}, true},
		{`ab"c\x41" d`, []string{"abcA", "d"}, true},
		{"\xff\xfe \x80", []string{"\xff\xfe", "\x80"}, true},
		{"a\x00b c", []string{"a"}, true},
		{"\x00a", nil, true},
		{`"a"b`, nil, false},
		{`'a'b`, nil, false},
		{`a'b c'd`, nil, false},
		{`"a""b"`, nil, false},
		{`"abc`, nil, false},
		{`'abc`, nil, false},
		{`'a\'`, nil, false},
		{`"a\"`, nil, false},
		{`"\`, nil, false},
		{"\"a\x00b\"", nil, false},
		{`ok "unterminated`, nil, false},
	}
	for _, c := range cases {
		args, ok := SplitArgs([]byte(c.line))
		got := make([]string, len(args))
		for i, a := range args {
			got[i] = string(a)
		}
		if ok != c.ok || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", append([]string{}, c.args...)) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q, %v", c.line, got, ok, c.args, c.ok)
		}
		if !ok && args != nil {
			t.Errorf("SplitArgs(%q): args %q with ok false", c.line, args)
		}
	}
}

// TestParserLinearWork feeds huge commands in 64 KiB reads. Every call
// starts again at the argument still arriving, so the bytes the parser
// examines (p.work; bulk bodies are only measured, never scanned) stay
// within a small constant a read of what one whole parse examines.
func TestParserLinearWork(t *testing.T) {
	const piece = 64 << 10
	feed := func(t *testing.T, p *Parser, data []byte) (Command, int) {
		t.Helper()
		calls := 0
		for k := piece; ; k += piece {
			k = min(k, len(data))
			calls++
			cmd, n, err := p.Next(data[:k])
			if err != nil {
				t.Fatalf("at %d bytes: %v", k, err)
			}
			if n > 0 {
				if k != len(data) || n != len(data) {
					t.Fatalf("command of %d bytes ended after %d of %d", n, k, len(data))
				}
				return cmd, calls
			}
			if k == len(data) {
				t.Fatalf("incomplete after all %d bytes", k)
			}
		}
	}
	t.Run("a million tiny arguments", func(t *testing.T) {
		const n = 1 << 20
		data := []byte("*" + strconv.Itoa(n) + "\r\n" + strings.Repeat("$1\r\na\r\n", n))
		var whole Parser
		_, wn, err := whole.Next(data)
		if err != nil || wn != len(data) {
			t.Fatalf("whole: n %d err %v", wn, err)
		}
		var p Parser
		got, calls := feed(t, &p, data)
		if len(got.Args) != n || string(got.Args[0]) != "a" || string(got.Args[n-1]) != "a" || len(got.Raw) != len(data) {
			t.Fatalf("chunked: %d args", len(got.Args))
		}
		if limit := whole.work + int64(calls)*32; p.work > limit {
			t.Fatalf("%d calls examined %d bytes; one whole parse %d (limit %d)", calls, p.work, whole.work, limit)
		}
		t.Logf("%d calls, %d bytes examined, whole parse %d, input %d", calls, p.work, whole.work, len(data))
	})
	t.Run("one 64 MiB bulk", func(t *testing.T) {
		body := bytes.Repeat([]byte("x\r\n$*"), 64<<20/5)
		data := AppendCommandArgs(nil, [][]byte{[]byte("SET"), []byte("k"), body})
		var p Parser
		got, calls := feed(t, &p, data)
		if len(got.Args) != 3 || !bytes.Equal(got.Args[2], body) {
			t.Fatalf("chunked: %d args", len(got.Args))
		}
		if limit := int64(calls) * 32; p.work > limit {
			t.Fatalf("%d calls examined %d bytes (limit %d)", calls, p.work, limit)
		}
		t.Logf("%d calls, %d bytes examined, input %d", calls, p.work, len(data))
	})
	t.Run("an inline line near the limit", func(t *testing.T) {
		line := []byte("ECHO " + strings.Repeat("y", MaxInline-10) + "\r\n")
		var p Parser
		calls := 0
		for k := 1000; ; k += 1000 {
			k = min(k, len(line))
			calls++
			cmd, n, err := p.Next(line[:k])
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				if len(cmd.Args) != 2 || len(cmd.Args[1]) != MaxInline-10 {
					t.Fatalf("args %d", len(cmd.Args))
				}
				break
			}
		}
		if limit := int64(3 * len(line)); p.work > limit {
			t.Fatalf("%d calls examined %d bytes (limit %d)", calls, p.work, limit)
		}
	})
}

// benchPipeline is a typical batch: SET and GET of short keys, one inline.
func benchPipeline() []byte {
	var b []byte
	for i := 0; i < 50; i++ {
		k := "key:" + strconv.Itoa(i)
		b = AppendCommand(b, "SET", k, strings.Repeat("v", 32))
		b = AppendCommand(b, "GET", k)
	}
	return b
}

// TestParserSteadyStateNoAllocs: once its slices have grown, the parser
// allocates nothing for a multibulk command, whole or resumed.
func TestParserSteadyStateNoAllocs(t *testing.T) {
	data := benchPipeline()
	var p Parser
	parseAll := func() {
		for b := data; len(b) > 0; {
			_, n, err := p.Next(b)
			if err != nil || n == 0 {
				t.Fatalf("n %d err %v", n, err)
			}
			b = b[n:]
		}
	}
	if a := testing.AllocsPerRun(100, parseAll); a != 0 {
		t.Fatalf("whole commands: %v allocations a pipeline", a)
	}
	cmd := AppendCommand(nil, "MSET", "a", "1", "b", "2", "c", "3")
	resumed := func() {
		for k := 1; k <= len(cmd); k++ {
			if _, n, err := p.Next(cmd[:k]); err != nil || (n > 0) != (k == len(cmd)) {
				t.Fatalf("at %d: n %d err %v", k, n, err)
			}
		}
	}
	if a := testing.AllocsPerRun(100, resumed); a != 0 {
		t.Fatalf("resumed command: %v allocations", a)
	}
}

func BenchmarkParse(b *testing.B) {
	data := benchPipeline()
	var p Parser
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		for buf := data; len(buf) > 0; {
			_, n, err := p.Next(buf)
			if err != nil || n == 0 {
				b.Fatalf("n %d err %v", n, err)
			}
			buf = buf[n:]
		}
	}
}

func BenchmarkParseInline(b *testing.B) {
	data := []byte("SET key:1 \"some value\"\r\n")
	var p Parser
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, n, err := p.Next(data); err != nil || n != len(data) {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkParseChunked: a 1 MiB SET arriving in 16 KiB reads.
func BenchmarkParseChunked(b *testing.B) {
	data := AppendCommandArgs(nil, [][]byte{[]byte("SET"), []byte("k"), bytes.Repeat([]byte("v"), 1<<20)})
	var p Parser
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		for k := 16 << 10; ; k += 16 << 10 {
			_, n, err := p.Next(data[:min(k, len(data))])
			if err != nil {
				b.Fatal(err)
			}
			if n > 0 {
				break
			}
		}
	}
}

// TestNeed: while a command arrives, Need says how long the buffer must
// grow, from the headers: the whole of a bulk whose header came; 0 when
// the headers do not tell.
func TestNeed(t *testing.T) {
	var p Parser
	cmd := []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n")
	if _, n, err := p.Next(cmd); n != 0 || err != nil {
		t.Fatalf("incomplete: n %d, err %v", n, err)
	}
	if want := len(cmd) + 1000000 + 2; p.Need() != want {
		t.Fatalf("Need = %d, want %d (the bulk's end)", p.Need(), want)
	}
	half := []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10")
	p.Reset()
	if _, n, _ := p.Next(half); n != 0 || p.Need() != 0 {
		t.Fatalf("a header still arriving: n %d, Need %d, want 0 (not known)", n, p.Need())
	}
	whole := append(append([]byte(nil), cmd...), make([]byte, 1000002)...)
	copy(whole[len(whole)-2:], "\r\n")
	p.Reset()
	if _, n, err := p.Next(whole); n != len(whole) || err != nil || p.Need() != 0 {
		t.Fatalf("complete: n %d, err %v, Need %d", n, err, p.Need())
	}
}
