package resp

// These tests hold the reply scanner to where each RESP2/RESP3 value ends:
// every type, nested and streamed aggregates, attributes, the value cut at
// every byte and resumed, values back to back, and malformed replies
// refused with ErrBadReply. Reader.AppendValue must agree with Next on all
// of it through a 16-byte bufio buffer (lines longer than the buffer), and
// keep the stream aligned when a value overflows its limit.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// replyCases are complete values as servers send them.
var replyCases = []struct{ name, raw string }{
	{"simple string", "+OK\r\n"},
	{"empty simple string", "+\r\n"},
	{"simple string with a CR inside", "+a\rb\r\n"},
	{"error", "-ERR unknown command 'FOO'\r\n"},
	{"integer", ":1000\r\n"},
	{"negative integer", ":-42\r\n"},
	{"bulk", "$5\r\nhello\r\n"},
	{"empty bulk", "$0\r\n\r\n"},
	{"binary bulk", "$11\r\n\r\n\x00*1\r\n$\r\n.\r\n"},
	{"null bulk", "$-1\r\n"},
	{"array", "*2\r\n$3\r\nfoo\r\n:7\r\n"},
	{"empty array", "*0\r\n"},
	{"null array", "*-1\r\n"},
	{"nested arrays", "*3\r\n*2\r\n+a\r\n*1\r\n$1\r\nb\r\n*0\r\n*-1\r\n"},
	{"deep nesting", strings.Repeat("*1\r\n", 100) + ":1\r\n"},
	{"array of errors", "*2\r\n-ERR one\r\n-WRONGTYPE two\r\n"},
	{"null", "_\r\n"},
	{"double", ",3.14\r\n"},
	{"double inf", ",-inf\r\n"},
	{"boolean", "#t\r\n"},
	{"big number", "(3492890328409238509324850943850943825024385\r\n"},
	{"verbatim", "=15\r\ntxt:Some string\r\n"},
	{"blob error", "!21\r\nSYNTAX invalid syntax\r\n"},
	{"map", "%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n*2\r\n:2\r\n:3\r\n"},
	{"empty map", "%0\r\n"},
	{"set", "~3\r\n+a\r\n:1\r\n#f\r\n"},
	{"push", ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"},
	{"attribute before a value", "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2039123\r\n:9543892\r\n"},
	{"empty attribute", "|0\r\n:1\r\n"},
	{"attribute inside an array", "*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n:2\r\n"},
	{"attribute on an attribute", "|1\r\n|1\r\n+a\r\n+b\r\n+k\r\n+v\r\n+value\r\n"},
	{"attribute then a null", "|1\r\n+k\r\n*1\r\n+x\r\n_\r\n"},
	{"nested RESP3", "%1\r\n~1\r\n>1\r\n_\r\n|1\r\n+k\r\n+v\r\n#t\r\n"},
	{"streamed string", "$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n"},
	{"empty streamed string", "$?\r\n;0\r\n"},
	{"streamed string with CRLF in a chunk", "$?\r\n;2\r\n\r\n\r\n;0\r\n"},
	{"streamed array", "*?\r\n:1\r\n:2\r\n.\r\n"},
	{"empty streamed array", "*?\r\n.\r\n"},
	{"streamed map", "%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n"},
	{"streamed set", "~?\r\n+a\r\n.\r\n"},
	{"streamed push", ">?\r\n+a\r\n$1\r\nb\r\n.\r\n"},
	{"streamed in streamed", "*?\r\n*?\r\n:1\r\n.\r\n$?\r\n;1\r\na\r\n;0\r\n%?\r\n.\r\n.\r\n"},
	{"streamed in counted", "*2\r\n*?\r\n.\r\n$?\r\n;0\r\n"},
	{"counted in streamed", "*?\r\n*2\r\n:1\r\n:2\r\n$-1\r\n.\r\n"},
	{"attribute in a streamed array", "*?\r\n|1\r\n+k\r\n+v\r\n:1\r\n.\r\n"},
	{"attribute before a streamed string", "|1\r\n+k\r\n+v\r\n$?\r\n;0\r\n"},
}

// malformedReplies are not RESP; each is refused by the time all of it
// has been read.
var malformedReplies = []string{
	"OK\r\n",
	"?x\r\n",
	"x1\r\n",
	"+OK\n",
	"+OK\rx\n",
	"\r\n",
	"\n",
	"*1\r\n+a\n",
	"*2\r\n+a\r\n+b\n",
	// Lengths and counts.
	"$abc\r\n",
	"$\r\n",
	"$-\r\n",
	"$-2\r\n",
	"$1a\r\n",
	"$ 1\r\n",
	"*x\r\n",
	"*\r\n",
	"*1a\r\n",
	"*-2\r\n",
	"%x\r\n",
	"%-2\r\n",
	"~-5\r\n",
	">-2\r\n",
	"|x\r\n",
	"|-1\r\n+a\r\n+b\r\n:1\r\n",
	"|?\r\n",
	"!?\r\n",
	"=?\r\n",
	"$12345678901234567890123\r\n",
	"$18446744073709551616\r\n\r\n",
	"*18446744073709551617\r\n+a\r\n",
	"$9223372036854775807\r\n",
	"$1099511627777\r\n",
	// A blob not followed by CRLF.
	"$3\r\nabcd\r\n",
	"$3\r\nabc\n\n",
	"$3\r\nab\r\n\r\n",
	"$0\r\nx\r\n",
	"=3\r\nabcXY",
	"!1\r\naXY",
	"*2\r\n$1\r\nab\r\n:1\r\n",
	// Streamed ends where there is nothing streamed.
	".\r\n",
	"*1\r\n.\r\n",
	"*2\r\n+a\r\n.\r\n",
	"%1\r\n+a\r\n.\r\n",
	"*?\r\n|1\r\n+a\r\n.\r\n",
	";3\r\nabc\r\n",
	"*1\r\n;1\r\na\r\n",
	"*?\r\n;1\r\na\r\n.\r\n",
	// Inside a streamed string only chunks.
	"$?\r\n+a\r\n",
	"$?\r\n.\r\n",
	"$?\r\n$1\r\na\r\n",
	"$?\r\n;-1\r\n",
	"$?\r\n;3\r\nabcd\r\n",
}

// TestReplyScannerValues: each value's length, whole and with bytes after
// it, and through every cut point (the same scanner resumed on a new copy
// of the buffer, the old one scribbled over).
func TestReplyScannerValues(t *testing.T) {
	for _, c := range replyCases {
		t.Run(c.name, func(t *testing.T) {
			var s ReplyScanner
			for _, tail := range []string{"", "+NEXT\r\n", "$3\r\nxyz\r\n", "garbage"} {
				if n, err := s.Next([]byte(c.raw + tail)); n != len(c.raw) || err != nil {
					t.Fatalf("Next(%q + %q) = %d, %v; want %d", c.raw, tail, n, err, len(c.raw))
				}
			}
			for cut := 0; cut < len(c.raw); cut++ {
				if n, err := s.Next([]byte(c.raw[:cut])); n != 0 || err != nil {
					t.Fatalf("first %d bytes: %d, %v; want 0", cut, n, err)
				}
				// Resumed with the rest, the value's start unmoved in a new buffer.
				buf := []byte(c.raw + "+NEXT\r\n")
				if n, err := s.Next(buf); n != len(c.raw) || err != nil {
					t.Fatalf("resumed after %d bytes: %d, %v", cut, n, err)
				}
			}
			// Byte by byte with one scanner, a new buffer each call.
			for k := 0; k <= len(c.raw); k++ {
				buf := []byte(c.raw[:k])
				n, err := s.Next(buf)
				for i := range buf {
					buf[i] = '*'
				}
				if err != nil || (n != 0) != (k == len(c.raw)) || (n != 0 && n != len(c.raw)) {
					t.Fatalf("byte by byte at %d: %d, %v", k, n, err)
				}
			}
		})
	}
}

// TestReplyScannerBackToBack reads all the values as one stream, in
// random chunks: each length comes out in order.
func TestReplyScannerBackToBack(t *testing.T) {
	var all []byte
	for _, c := range replyCases {
		all = append(all, c.raw...)
	}
	for chunk := 1; chunk <= 64; chunk *= 2 {
		var s ReplyScanner
		i, start := 0, 0
		for end := 0; end < len(all) || start < len(all); {
			end = min(end+chunk, len(all))
			n, err := s.Next(all[start:end])
			if err != nil {
				t.Fatalf("chunk %d: value %d: %v", chunk, i, err)
			}
			for n > 0 {
				if n != len(replyCases[i].raw) {
					t.Fatalf("chunk %d: %s: length %d, want %d", chunk, replyCases[i].name, n, len(replyCases[i].raw))
				}
				i++
				start += n
				if n, err = s.Next(all[start:end]); err != nil {
					t.Fatalf("chunk %d: value %d: %v", chunk, i, err)
				}
			}
			if end == len(all) && start < len(all) {
				t.Fatalf("chunk %d: %d bytes left over", chunk, len(all)-start)
			}
		}
		if i != len(replyCases) {
			t.Fatalf("chunk %d: %d values, want %d", chunk, i, len(replyCases))
		}
	}
}

func TestReplyScannerMalformed(t *testing.T) {
	for _, in := range malformedReplies {
		var s ReplyScanner
		if n, err := s.Next([]byte(in)); !errors.Is(err, ErrBadReply) || n != 0 {
			t.Errorf("Next(%q) = %d, %v; want ErrBadReply", in, n, err)
		}
		// Fed byte by byte: never a length, and refused by the end.
		var err error
		for k := 1; k <= len(in) && err == nil; k++ {
			var n int
			if n, err = s.Next([]byte(in[:k])); n != 0 {
				t.Errorf("Next(%q) at %d bytes: length %d", in, k, n)
			}
		}
		if !errors.Is(err, ErrBadReply) {
			t.Errorf("Next(%q) byte by byte: %v; want ErrBadReply", in, err)
		}
		// The scanner starts afresh after an error.
		if n, err := s.Next([]byte("+OK\r\n")); n != 5 || err != nil {
			t.Errorf("after %q: %d, %v", in, n, err)
		}
	}
}

func newReader(s string, size int, wrap func(io.Reader) io.Reader) *Reader {
	return &Reader{R: bufio.NewReaderSize(wrap(strings.NewReader(s)), size)}
}

func same(r io.Reader) io.Reader { return r }

// TestAppendValueAgreesWithNext: for every value, AppendValue appends
// exactly the bytes Next measures, through a 16-byte buffer, whatever the
// reads bring; and reads the value after it.
func TestAppendValueAgreesWithNext(t *testing.T) {
	for _, c := range replyCases {
		var s ReplyScanner
		n, err := s.Next([]byte(c.raw))
		if err != nil || n != len(c.raw) {
			t.Fatalf("%s: Next %d %v", c.name, n, err)
		}
		for name, wrap := range map[string]func(io.Reader) io.Reader{"whole": same, "one byte": iotest.OneByteReader, "half": iotest.HalfReader, "data+EOF": iotest.DataErrReader} {
			for _, size := range []int{16, 4096} {
				r := newReader(c.raw+"+NEXT\r\n", size, wrap)
				out, over, err := r.AppendValue([]byte("prefix"), 0)
				if err != nil || over || string(out) != "prefix"+c.raw[:n] {
					t.Fatalf("%s, %s reads, buffer %d: %q, overflow %v, err %v", c.name, name, size, out, over, err)
				}
				next, _, err := r.AppendValue(nil, 1<<20)
				if err != nil || string(next) != "+NEXT\r\n" {
					t.Fatalf("%s, %s reads, buffer %d: value after: %q, %v", c.name, name, size, next, err)
				}
				if _, _, err := r.AppendValue(nil, 0); err != io.EOF {
					t.Fatalf("%s, %s reads, buffer %d: after the last value: %v, want io.EOF", c.name, name, size, err)
				}
			}
		}
	}
}

// TestAppendValueLongLines: lines and blobs much longer than the buffer.
func TestAppendValueLongLines(t *testing.T) {
	long := strings.Repeat("x", 10000)
	for _, c := range []string{
		"+" + long + "\r\n",
		"-ERR " + long + "\r\n",
		"(" + strings.Repeat("9", 5000) + "\r\n",
		"$10000\r\n" + long + "\r\n",
		"*2\r\n+" + long + "\r\n$10000\r\n" + long + "\r\n",
		"*5000\r\n" + strings.Repeat(":1\r\n", 5000),
		"$?\r\n;10000\r\n" + long + "\r\n;0\r\n",
	} {
		var s ReplyScanner
		if n, err := s.Next([]byte(c)); n != len(c) || err != nil {
			t.Fatalf("Next: %d %v", n, err)
		}
		r := newReader(c+":1\r\n", 16, iotest.HalfReader)
		out, over, err := r.AppendValue(nil, 1<<20)
		if err != nil || over || string(out) != c {
			t.Fatalf("value of %d bytes: got %d bytes, overflow %v, err %v", len(c), len(out), over, err)
		}
		if next, _, err := r.AppendValue(nil, 0); string(next) != ":1\r\n" || err != nil {
			t.Fatalf("value after %d bytes: %q %v", len(c), next, err)
		}
	}
}

func TestAppendValueMalformed(t *testing.T) {
	for _, in := range malformedReplies {
		for _, limit := range []int{0, 3, 1 << 20} {
			r := newReader(in, 16, same)
			out, _, err := r.AppendValue(nil, limit)
			if !errors.Is(err, ErrBadReply) {
				t.Errorf("AppendValue(%q), limit %d: %q, %v; want ErrBadReply", in, limit, out, err)
			}
		}
	}
}

// TestAppendValueTruncated: a value cut short by the connection is an
// error: io.EOF when none of it came, io.ErrUnexpectedEOF otherwise.
func TestAppendValueTruncated(t *testing.T) {
	for _, c := range replyCases {
		for cut := 0; cut < len(c.raw); cut++ {
			for _, limit := range []int{0, 4} {
				r := newReader(c.raw[:cut], 16, same)
				out, _, err := r.AppendValue(nil, limit)
				want := io.ErrUnexpectedEOF
				if cut == 0 {
					want = io.EOF
				}
				if err != want {
					t.Fatalf("%s cut at %d, limit %d: %q, %v; want %v", c.name, cut, limit, out, err, want)
				}
			}
		}
	}
	// A read error other than EOF comes out as it is.
	r := newReader("*2\r\n:1\r\n:2\r\n", 16, func(r io.Reader) io.Reader {
		return iotest.TimeoutReader(iotest.OneByteReader(r))
	})
	if _, _, err := r.AppendValue(nil, 0); err != iotest.ErrTimeout {
		t.Fatalf("timeout: %v", err)
	}
}

// TestAppendValueHugeHeader: a header is no promise that its bytes exist.
// A bulk claiming a terabyte, cut short, is io.ErrUnexpectedEOF having
// allocated about what came, not the terabyte (that was a fatal out of
// memory).
func TestAppendValueHugeHeader(t *testing.T) {
	r := newReader("$1099511627776\r\n"+strings.Repeat("a", 3<<20), 4096, same)
	out, over, err := r.AppendValue(nil, 0)
	if err != io.ErrUnexpectedEOF || over {
		t.Fatalf("err %v overflow %v", err, over)
	}
	if len(out) != 16+3<<20 || cap(out) > 8<<20 {
		t.Fatalf("kept %d bytes in a buffer of %d", len(out), cap(out))
	}
}

func TestAppendValueOverflow(t *testing.T) {
	big := strings.Repeat("b", 1<<20)
	cases := []struct {
		name   string
		prefix string
		raw    string
		limit  int
		over   bool
	}{
		{"bulk past the limit", "", "$1048576\r\n" + big + "\r\n", 1000, true},
		{"bulk at the limit", "", "$5\r\nhello\r\n", 11, false},
		{"bulk one past the limit", "", "$5\r\nhello\r\n", 10, true},
		{"line at the limit", "", "+OK\r\n", 5, false},
		{"line past the limit", "", "+OK\r\n", 4, true},
		{"long line past the limit", "", "-" + strings.Repeat("e", 5000) + "\r\n", 100, true},
		{"long line inside an array", "", "*3\r\n+" + strings.Repeat("a", 30) + "\r\n+b\r\n+c\r\n", 10, true},
		{"earlier replies count", "0123456789", "+OK\r\n", 12, true},
		{"limit 1 drops all", "", "*2\r\n:1\r\n$3\r\nabc\r\n", 1, true},
		{"array overflowing midway", "", "*4\r\n$3\r\nabc\r\n$1048576\r\n" + big + "\r\n:5\r\n*1\r\n$3\r\nxyz\r\n", 100, true},
		{"nested arrays", "", "*2\r\n*2\r\n$1048576\r\n" + big + "\r\n*1\r\n+x\r\n%1\r\n$1\r\nk\r\n$1048576\r\n" + big + "\r\n", 64, true},
		{"many small elements", "", "*3000\r\n" + strings.Repeat("$3\r\nabc\r\n", 3000), 500, true},
		{"attribute and map", "", "|1\r\n+a\r\n+b\r\n%2\r\n+k\r\n$1048576\r\n" + big + "\r\n+k2\r\n_\r\n", 50, true},
		{"streamed string", "", "$?\r\n;1048576\r\n" + big + "\r\n;3\r\nabc\r\n;0\r\n", 100, true},
		{"streamed array", "", "*?\r\n" + strings.Repeat(":1\r\n", 100) + ".\r\n", 40, true},
		{"null values", "", "*3\r\n$-1\r\n*-1\r\n_\r\n", 17, false},
		{"exactly at the limit", "", "*2\r\n$3\r\nabc\r\n:1\r\n", 17, false},
		{"one byte over", "", "*2\r\n$3\r\nabc\r\n:1\r\n", 16, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				r := newReader(c.raw+"+OK\r\n", size, iotest.HalfReader)
				out, over, err := r.AppendValue([]byte(c.prefix), c.limit)
				if err != nil || over != c.over {
					t.Fatalf("buffer %d: overflow %v, err %v; want overflow %v", size, over, err, c.over)
				}
				if !over && string(out) != c.prefix+c.raw {
					t.Fatalf("buffer %d: got %q", size, out)
				}
				if over {
					// What is kept is the value's beginning, within the limit.
					if len(out) > max(c.limit, len(c.prefix)) || !strings.HasPrefix(c.prefix+c.raw, string(out)) {
						t.Fatalf("buffer %d: kept %d bytes %.40q, limit %d", size, len(out), out, c.limit)
					}
				}
				next, nover, err := r.AppendValue(nil, 10)
				if err != nil || nover || string(next) != "+OK\r\n" {
					t.Fatalf("buffer %d: value after it: %q overflow %v err %v", size, next, nover, err)
				}
			}
		})
	}
}

// TestAppendValueOverflowChecksBlobs: a blob dropped for the limit still
// has its CRLF checked, as Next does: a stream that has lost its framing
// is not read on as if aligned.
func TestAppendValueOverflowChecksBlobs(t *testing.T) {
	for _, in := range []string{"$3\r\nabcXY+OK\r\n", "*2\r\n:1\r\n$3\r\nabcd\r\n", "$?\r\n;3\r\nabcXY;0\r\n"} {
		var s ReplyScanner
		if _, err := s.Next([]byte(in)); err != ErrBadReply {
			t.Fatalf("Next(%q): %v", in, err)
		}
		r := newReader(in, 16, same)
		if _, _, err := r.AppendValue(nil, 2); err != ErrBadReply {
			t.Errorf("AppendValue(%q) over its limit: %v; want ErrBadReply", in, err)
		}
	}
}

func BenchmarkReplyScanner(b *testing.B) {
	var all []byte
	for _, c := range replyCases {
		all = append(all, c.raw...)
	}
	var s ReplyScanner
	b.SetBytes(int64(len(all)))
	b.ReportAllocs()
	for b.Loop() {
		for buf := all; len(buf) > 0; {
			n, err := s.Next(buf)
			if err != nil || n == 0 {
				b.Fatal(n, err)
			}
			buf = buf[n:]
		}
	}
}

func BenchmarkAppendValue(b *testing.B) {
	var all []byte
	for _, c := range replyCases {
		all = append(all, c.raw...)
	}
	rd := bytes.NewReader(all)
	r := Reader{R: bufio.NewReaderSize(rd, 32<<10)}
	var dst []byte
	b.SetBytes(int64(len(all)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(all)
		r.R.Reset(rd)
		for range replyCases {
			var err error
			if dst, _, err = r.AppendValue(dst[:0], 0); err != nil {
				b.Fatal(err)
			}
		}
	}
}
