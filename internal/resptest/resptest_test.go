package resptest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every type, RESP2 and RESP3, read back to its rendering, with its exact
// bytes as Raw and the same bytes from ReadRaw.
func TestReadValue(t *testing.T) {
	tests := []struct {
		name, in, want string
		typ            byte
	}{
		{"simple string", "+OK\r\n", "OK", '+'},
		{"error", "-ERR no\r\n", "(error) ERR no", '-'},
		{"integer", ":-42\r\n", "-42", ':'},
		{"bulk", "$5\r\nhe\r\no\r\n", `"he\r\no"`, '$'},
		{"empty bulk", "$0\r\n\r\n", `""`, '$'},
		{"null bulk", "$-1\r\n", "<nil>", '$'},
		{"array", "*2\r\n$1\r\na\r\n:1\r\n", `["a",1]`, '*'},
		{"empty array", "*0\r\n", "[]", '*'},
		{"null array", "*-1\r\n", "<nil>", '*'},
		{"nested", "*2\r\n*1\r\n+x\r\n*0\r\n", "[[x],[]]", '*'},
		{"null", "_\r\n", "<nil>", '_'},
		{"double", ",3.14\r\n", "3.14", ','},
		{"boolean", "#t\r\n", "t", '#'},
		{"big number", "(3492890328409238509324850943850943825024385\r\n", "3492890328409238509324850943850943825024385", '('},
		{"bulk error", "!8\r\nSYNTAX x\r\n", "(error) SYNTAX x", '!'},
		{"verbatim", "=8\r\ntxt:some\r\n", `"txt:some"`, '='},
		{"map", "%2\r\n+a\r\n:1\r\n+b\r\n_\r\n", "[a,1,b,<nil>]", '%'},
		{"set", "~2\r\n+a\r\n+b\r\n", "[a,b]", '~'},
		{"push", ">3\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n_\r\n", `["invalidate",["k"],<nil>]`, '>'},
		{"attribute", "|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", `|[ttl,3] "v"`, '$'},
		{"attribute on an element", "*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", "[|[a,b] 1,2]", '*'},
		{"attributes twice", "|1\r\n+a\r\n:1\r\n|1\r\n+b\r\n:2\r\n+x\r\n", "|[a,1,b,2] x", '+'},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A trailing value must be left for the next read.
			br := bufio.NewReader(strings.NewReader(tt.in + "+next\r\n"))
			v, err := ReadValue(br)
			if err != nil {
				t.Fatalf("ReadValue(%q): %v", tt.in, err)
			}
			if v.String() != tt.want || v.Type != tt.typ || string(v.Raw) != tt.in {
				t.Errorf("ReadValue(%q) = %s (type %q, raw %q), want %s (type %q, raw the input)", tt.in, v, v.Type, v.Raw, tt.want, tt.typ)
			}
			if next, err := ReadValue(br); err != nil || next.Str != "next" {
				t.Errorf("value after %q: %v %v", tt.in, next, err)
			}
			raw, err := ReadRaw(bufio.NewReader(strings.NewReader(tt.in+"+next\r\n")), []byte("before"))
			if err != nil || string(raw) != "before"+tt.in {
				t.Errorf("ReadRaw(%q) = %q, %v; want the input after the bytes given", tt.in, raw, err)
			}
			p, err := Parse([]byte(tt.in))
			if err != nil || p.String() != tt.want {
				t.Errorf("Parse(%q) = %s, %v", tt.in, p, err)
			}
		})
	}
}

// Every element's Raw is its own bytes, and the parsed fields are filled.
func TestValueFields(t *testing.T) {
	in := "%2\r\n$4\r\nname\r\n+redis\r\n$5\r\nmodes\r\n~1\r\n:7\r\n"
	v, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	name, ok := v.Get("name")
	if !ok || name.Str != "redis" || string(name.Raw) != "+redis\r\n" {
		t.Errorf(`Get("name") = %+v, %v`, name, ok)
	}
	modes, _ := v.Get("modes")
	if len(modes.Elems) != 1 || modes.Elems[0].Int != 7 || string(modes.Raw) != "~1\r\n:7\r\n" {
		t.Errorf(`Get("modes") = %+v`, modes)
	}
	if _, ok := v.Get("none"); ok {
		t.Errorf(`Get("none") found a value`)
	}
	if v.IsError() || !(Value{Type: '!'}).IsError() || !(Value{Type: '-'}).IsError() {
		t.Errorf("IsError is wrong")
	}
}

func TestReadValueErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     error // nil: any error but these
	}{
		{"empty stream", "", io.EOF},
		{"line cut short", "+OK", io.ErrUnexpectedEOF},
		{"bulk cut short", "$5\r\nab", io.ErrUnexpectedEOF},
		{"array cut short", "*2\r\n+a\r\n", io.ErrUnexpectedEOF},
		{"attribute without its value", "|1\r\n+a\r\n+b\r\n", io.ErrUnexpectedEOF},
		{"no CR", "+OK\n", nil},
		{"inline command", "PING\r\n", nil},
		{"bad length", "$x\r\n", nil},
		{"negative length", "$-2\r\n", nil},
		{"bad count", "*two\r\n", nil},
		{"bad integer", ":1.5\r\n", nil},
		{"bulk without CRLF", "$2\r\nabcd", nil},
		{"bad element", "*1\r\n?\r\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ReadValue(bufio.NewReader(strings.NewReader(tt.in)))
			switch {
			case err == nil:
				t.Fatalf("ReadValue(%q) = %s, want an error", tt.in, v)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("ReadValue(%q): %v, want %v", tt.in, err, tt.want)
			case tt.want == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
				t.Errorf("ReadValue(%q): %v, want a protocol error", tt.in, err)
			}
			if !strings.HasPrefix(tt.in, string(v.Raw)) {
				t.Errorf("ReadValue(%q): partial raw %q is not a prefix of the input", tt.in, v.Raw)
			}
			raw, rerr := ReadRaw(bufio.NewReader(strings.NewReader(tt.in)), nil)
			if (rerr == nil) || !strings.HasPrefix(tt.in, string(raw)) {
				t.Errorf("ReadRaw(%q) = %q, %v", tt.in, raw, rerr)
			}
		})
	}
	if _, err := Parse([]byte("+a\r\n+b\r\n")); err == nil {
		t.Errorf("Parse of two values: no error")
	}
}

func TestCmd(t *testing.T) {
	if got := string(Cmd("SET", "k", "")); got != "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n" {
		t.Errorf("Cmd = %q", got)
	}
	got := Cmds([]string{"PING"}, []string{"GET", "a\r\nb"})
	if want := "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n"; string(got) != want {
		t.Errorf("Cmds = %q, want %q", got, want)
	}
	v, err := Parse(Cmd("ECHO", "x y"))
	if err != nil || v.String() != `["ECHO","x y"]` {
		t.Errorf("Cmd does not parse back: %s %v", v, err)
	}
}

// serve answers each command read from nc with reply(cmd), and hangs up
// after a reply when hangUp.
func serve(nc net.Conn, reply func(cmd Value) (out string, hangUp bool)) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	for {
		cmd, err := ReadValue(br)
		if err != nil {
			return
		}
		out, hangUp := reply(cmd)
		if _, err := io.WriteString(nc, out); err != nil || hangUp {
			return
		}
	}
}

// listen serves every connection to the address it returns with reply.
func listen(t *testing.T, reply func(cmd Value) (string, bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { nc.Close() })
			go serve(nc, reply)
		}
	}()
	return ln.Addr().String()
}

// server is a Conn to a server answering with reply: over TCP, or over a
// net.Pipe when pipe (no buffer at all between the two ends).
func server(t *testing.T, pipe bool, reply func(cmd Value) (string, bool)) *Conn {
	t.Helper()
	if !pipe {
		return Dial(t, listen(t, reply))
	}
	cl, sv := net.Pipe()
	t.Cleanup(func() { sv.Close() })
	go serve(sv, reply)
	return NewConn(t, cl)
}

// echo answers ECHO x with x, HELLO with a RESP3 map, QUIT with +OK and a
// hang-up, and SILENT with nothing.
func echo(cmd Value) (string, bool) {
	switch cmd.Elems[0].Str {
	case "QUIT":
		return "+OK\r\n", true
	case "SILENT":
		return "", false
	case "HELLO":
		return "%1\r\n+proto\r\n:3\r\n", false
	}
	return string(bulk(cmd.Elems[1].Str)), false
}

func bulk(s string) []byte { return []byte("$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n") }

func TestConnDo(t *testing.T) {
	c := server(t, false, echo)
	Expect(t, c.Do("ECHO", "hello"), `"hello"`)
	v := c.Do("HELLO", "3")
	if p, ok := v.Get("proto"); !ok || p.Int != 3 || v.Type != '%' {
		t.Errorf("HELLO: %s", v)
	}
	c.Send("ECHO", "a")
	c.Write(Cmd("ECHO", "b"))
	Expect(t, c.Read(), `"a"`)
	if raw, err := c.ReadRaw(time.Second); err != nil || string(raw) != "$1\r\nb\r\n" {
		t.Errorf("ReadRaw: %q %v", raw, err)
	}
	if v, err := c.TryDo("ECHO", "c"); err != nil || v.Str != "c" {
		t.Errorf("TryDo: %s %v", v, err)
	}
	Expect(t, c.DoTimeout(time.Second, "ECHO", "d"), `"d"`)
}

func TestConnReadTimeout(t *testing.T) {
	c := server(t, false, echo)
	c.Send("SILENT")
	start := time.Now()
	_, err := c.TryRead(50 * time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("TryRead of a silent server: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("TryRead(50ms) took %v", d)
	}
	// The deadline is lifted afterwards.
	Expect(t, c.Do("ECHO", "after"), `"after"`)
}

func TestConnClosed(t *testing.T) {
	c := server(t, false, echo)
	c.Send("ECHO", "x")
	c.Send("QUIT")
	if got := c.ExpectClosed(time.Second); string(got) != "$1\r\nx\r\n+OK\r\n" {
		t.Errorf("ExpectClosed returned %q, want the replies before the close", got)
	}
	if _, err := c.TryRead(time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("read after the close: %v, want EOF", err)
	}

	open := server(t, false, echo)
	if got, closed := open.ReadUntilClosed(50 * time.Millisecond); closed || len(got) != 0 {
		t.Errorf("ReadUntilClosed on an open, quiet connection: %q closed=%v", got, closed)
	}
}

// A pipeline larger than any buffer on the way: net.Pipe has none, so
// writing it all before reading would deadlock.
func TestConnPipeline(t *testing.T) {
	c := server(t, true, echo)
	const n = 2000
	var req []byte
	for i := range n {
		req = AppendCmd(req, "ECHO", strings.Repeat("x", i%50))
	}
	replies, err := c.Pipeline(req, n, 5*time.Second)
	if err != nil || len(replies) != n {
		t.Fatalf("Pipeline: %d replies, %v", len(replies), err)
	}
	for i, r := range replies {
		if want := bulk(strings.Repeat("x", i%50)); !bytes.Equal(r, want) {
			t.Fatalf("reply %d = %q, want %q", i, r, want)
		}
	}

	// A server that hangs up in the middle: the replies before it, and
	// an error, at once.
	q := server(t, true, echo)
	start := time.Now()
	replies, err = q.Pipeline(append(Cmds([]string{"ECHO", "a"}, []string{"QUIT"}), req...), 3, 5*time.Second)
	if err == nil || len(replies) != 2 {
		t.Errorf("Pipeline through a hang-up: %q, %v; want 2 replies and an error", replies, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Pipeline through a hang-up took %v", d)
	}
}

func TestExchange(t *testing.T) {
	addr := listen(t, func(cmd Value) (string, bool) {
		if cmd.Elems[0].Str == "TWICE" {
			return "+1\r\n+2\r\n", false
		}
		return echo(cmd)
	})
	if got := Exchange(t, addr, Cmds([]string{"TWICE"}, []string{"TWICE"})); string(got) != "+1\r\n+2\r\n+1\r\n+2\r\n" {
		t.Errorf("Exchange = %q", got)
	}
	// On a connection: what was sent before, and a nil request.
	c := Dial(t, addr)
	c.Send("TWICE")
	if got := c.Exchange(nil); string(got) != "+1\r\n+2\r\n" {
		t.Errorf("Exchange(nil) after TWICE = %q", got)
	}
	if got := c.Exchange(Cmd("ECHO", "x")); string(got) != "$1\r\nx\r\n" {
		t.Errorf("Exchange(ECHO x) = %q", got)
	}
	Expect(t, c.Do("ECHO", "after"), `"after"`)
}

func TestQuote(t *testing.T) {
	if got := Quote([]byte("+OK\r\n")); got != `"+OK\r\n"` {
		t.Errorf("Quote = %s", got)
	}
	long := bytes.Repeat([]byte("x"), 301)
	if got, want := Quote(long), `"`+strings.Repeat("x", 200)+`"...(301 bytes)`; got != want {
		t.Errorf("Quote of 301 bytes = %s, want %s", got, want)
	}
	if got := Quote(long[:300]); got != `"`+strings.Repeat("x", 300)+`"` {
		t.Errorf("Quote of 300 bytes = %s, want all of them", got)
	}
}
