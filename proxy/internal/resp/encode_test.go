package resp

// The encoders write exactly RESP (each value measured whole by the reply
// scanner, each command read back by the parser), and ParseInt reads
// integers as Redis's string2ll: no leading zero, no "-0", no sign but
// '-', at most 20 characters, within int64.

import (
	"math"
	"strconv"
	"testing"
)

func TestEncoders(t *testing.T) {
	cases := []struct{ got, want string }{
		{string(AppendError(nil, "ERR no")), "-ERR no\r\n"},
		{string(AppendSimple([]byte("x"), "OK")), "x+OK\r\n"},
		{string(AppendInt(nil, -42)), ":-42\r\n"},
		{string(AppendInt(nil, math.MinInt64)), ":-9223372036854775808\r\n"},
		{string(AppendArray(nil, 3)), "*3\r\n"},
		{string(AppendArray(nil, -1)), "*-1\r\n"},
		{string(AppendBulk(nil, []byte("a\r\nb"))), "$4\r\na\r\nb\r\n"},
		{string(AppendBulk(nil, nil)), "$0\r\n\r\n"},
		{string(AppendBulkString(nil, "héllo")), "$6\r\nhéllo\r\n"},
		{Null, "$-1\r\n"},
		{string(AppendCommand(nil, "SET", "k", "")), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
		{string(AppendCommandArgs(nil, [][]byte{[]byte("GET"), []byte("\x00")})), "*2\r\n$3\r\nGET\r\n$1\r\n\x00\r\n"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
		var s ReplyScanner
		header := c.want == "*3\r\n" || c.want[0] == 'x' // not a whole value
		if n, err := s.Next([]byte(c.got)); !header && (n != len(c.got) || err != nil) {
			t.Errorf("%q: scanner measured %d, %v", c.got, n, err)
		}
	}
	args := [][]byte{[]byte("ECHO"), []byte("*1\r\n$4\r\nPING\r\n")}
	b := AppendCommandArgs(nil, args)
	var p Parser
	cmd, n, err := p.Next(b)
	if err != nil || n != len(b) || len(cmd.Args) != 2 || string(cmd.Args[1]) != string(args[1]) {
		t.Fatalf("parsed back: %q %d %v", cmd.Args, n, err)
	}
}

func TestParseInt(t *testing.T) {
	cases := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"-1", -1, true},
		{"10", 10, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"-9223372036854775808", math.MinInt64, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"18446744073709551615", 0, false},
		{"18446744073709551616", 0, false},
		{"99999999999999999999", 0, false},
		{"-99999999999999999999", 0, false}, // 21 characters
		{"", 0, false},
		{"-", 0, false},
		{"-0", 0, false},
		{"00", 0, false},
		{"01", 0, false},
		{"-01", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1a", 0, false},
		{"0x10", 0, false},
		{"1-", 0, false},
		{"--1", 0, false},
	}
	for _, c := range cases {
		if n, ok := ParseInt([]byte(c.in)); n != c.n || ok != c.ok {
			t.Errorf("ParseInt(%q) = %d, %v; want %d, %v", c.in, n, ok, c.n, c.ok)
		}
	}
	// Every canonical decimal is taken, as strconv writes it.
	for _, n := range []int64{0, 1, -1, 7, 1 << 31, -(1 << 31), 1e18, -1e18, math.MaxInt64 - 1, math.MinInt64 + 1} {
		if got, ok := ParseInt([]byte(strconv.FormatInt(n, 10))); !ok || got != n {
			t.Errorf("ParseInt(%d) = %d, %v", n, got, ok)
		}
	}
}
