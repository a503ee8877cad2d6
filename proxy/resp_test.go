package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// rtValues are complete RESP2 and RESP3 values, as a server sends them.
var rtValues = []struct{ name, raw string }{
	{"simple string", "+OK\r\n"},
	{"empty simple string", "+\r\n"},
	{"error", "-ERR unknown command 'FOO'\r\n"},
	{"integer", ":1000\r\n"},
	{"negative integer", ":-42\r\n"},
	{"bulk", "$5\r\nhello\r\n"},
	{"empty bulk", "$0\r\n\r\n"},
	{"binary bulk", "$8\r\n\r\n\x00*1\r\n$\r\n"},
	{"null bulk", "$-1\r\n"},
	{"array", "*2\r\n$3\r\nfoo\r\n:7\r\n"},
	{"empty array", "*0\r\n"},
	{"null array", "*-1\r\n"},
	{"nested arrays", "*3\r\n*2\r\n+a\r\n*1\r\n$1\r\nb\r\n*0\r\n*-1\r\n"},
	{"array of errors", "*2\r\n-ERR one\r\n-WRONGTYPE two\r\n"},
	{"resp3 null", "_\r\n"},
	{"resp3 double", ",3.14\r\n"},
	{"resp3 double inf", ",-inf\r\n"},
	{"resp3 boolean", "#t\r\n"},
	{"resp3 big number", "(3492890328409238509324850943850943825024385\r\n"},
	{"resp3 verbatim", "=15\r\ntxt:Some string\r\n"},
	{"resp3 blob error", "!21\r\nSYNTAX invalid syntax\r\n"},
	{"resp3 map", "%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n*2\r\n:2\r\n:3\r\n"},
	{"resp3 empty map", "%0\r\n"},
	{"resp3 set", "~3\r\n+a\r\n:1\r\n#f\r\n"},
	{"resp3 push", ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"},
	{"resp3 attribute", "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2039123\r\n:9543892\r\n"},
	{"resp3 empty attribute", "|0\r\n:1\r\n"},
	{"resp3 nested", "%1\r\n~1\r\n>1\r\n_\r\n|1\r\n+k\r\n+v\r\n#t\r\n"},
}

func rtReader(s string) replyReader {
	return replyReader{br: bufio.NewReader(strings.NewReader(s))}
}

// TestAppendValueTypes reads each type whole: the bytes come out exactly as
// they went in, appended to what dst held, and the stream stays aligned.
func TestAppendValueTypes(t *testing.T) {
	for _, v := range rtValues {
		t.Run(v.name, func(t *testing.T) {
			r := rtReader(v.raw + "+NEXT\r\n")
			out, over, err := r.appendValue([]byte("prefix"), 0)
			if err != nil || over {
				t.Fatalf("appendValue(%q) = overflow %v, err %v", v.raw, over, err)
			}
			if string(out) != "prefix"+v.raw {
				t.Fatalf("appendValue(%q) appended %q", v.raw, out[6:])
			}
			next, _, err := r.appendValue(nil, 1<<20)
			if err != nil || string(next) != "+NEXT\r\n" {
				t.Fatalf("value after %q: %q, %v", v.raw, next, err)
			}
		})
	}
}

// TestAppendValueSplitReads reads every value from a connection that gives
// one byte per read, through the smallest bufio buffer, and from one that
// gives half of what is asked.
func TestAppendValueSplitReads(t *testing.T) {
	var all strings.Builder
	for _, v := range rtValues {
		all.WriteString(v.raw)
	}
	wrap := map[string]func(io.Reader) io.Reader{
		"one byte":  iotest.OneByteReader,
		"half":      iotest.HalfReader,
		"data+EOF":  iotest.DataErrReader,
		"unchanged": func(r io.Reader) io.Reader { return r },
	}
	for name, w := range wrap {
		t.Run(name, func(t *testing.T) {
			r := replyReader{br: bufio.NewReaderSize(w(strings.NewReader(all.String())), 16)}
			for _, v := range rtValues {
				out, over, err := r.appendValue(nil, 1<<20)
				if err != nil || over || string(out) != v.raw {
					t.Fatalf("%s: got %q, overflow %v, err %v; want %q", v.name, out, over, err, v.raw)
				}
			}
			if _, _, err := r.appendValue(nil, 0); err != io.EOF {
				t.Fatalf("after the last value: err %v, want EOF", err)
			}
		})
	}
}

// TestAppendValueLongLines reads lines and bulks much longer than the bufio
// buffer.
func TestAppendValueLongLines(t *testing.T) {
	long := strings.Repeat("x", 10000)
	cases := []string{
		"+" + long + "\r\n",
		"-ERR " + long + "\r\n",
		"(" + strings.Repeat("9", 5000) + "\r\n",
		"$10000\r\n" + long + "\r\n",
		"*2\r\n+" + long + "\r\n$10000\r\n" + long + "\r\n",
		"*5000\r\n" + strings.Repeat(":1\r\n", 5000),
	}
	for _, c := range cases {
		r := replyReader{br: bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(c+":1\r\n")), 16)}
		out, over, err := r.appendValue(nil, 1<<20)
		if err != nil || over || string(out) != c {
			t.Fatalf("value of %d bytes: got %d bytes, overflow %v, err %v", len(c), len(out), over, err)
		}
		if next, _, err := r.appendValue(nil, 0); string(next) != ":1\r\n" {
			t.Fatalf("value after %d bytes: %q %v", len(c), next, err)
		}
	}
}

// TestAppendValueOverflow: a value that takes dst past the limit is read to
// its end and reported as overflowing; what follows it reads correctly, and
// the bytes kept stay near the limit (that is what bounds a client's output).
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
		{"earlier replies count", "0123456789", "+OK\r\n", 12, true},
		{"array overflowing midway", "", "*4\r\n$3\r\nabc\r\n$1048576\r\n" + big + "\r\n:5\r\n*1\r\n$3\r\nxyz\r\n", 100, true},
		{"nested arrays", "", "*2\r\n*2\r\n$1048576\r\n" + big + "\r\n*1\r\n+x\r\n%1\r\n$1\r\nk\r\n$1048576\r\n" + big + "\r\n", 64, true},
		{"many small elements", "", "*3000\r\n" + strings.Repeat("$3\r\nabc\r\n", 3000), 500, true},
		{"resp3 attribute and map", "", "|1\r\n+a\r\n+b\r\n%2\r\n+k\r\n$1048576\r\n" + big + "\r\n+k2\r\n_\r\n", 50, true},
		{"null values", "", "*3\r\n$-1\r\n*-1\r\n_\r\n", 17, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				r := replyReader{br: bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(c.raw+"+OK\r\n")), size)}
				out, over, err := r.appendValue([]byte(c.prefix), c.limit)
				if err != nil {
					t.Fatalf("buffer %d: err %v", size, err)
				}
				if over != c.over {
					t.Fatalf("buffer %d: overflow %v, want %v", size, over, c.over)
				}
				if !over && string(out) != c.prefix+c.raw {
					t.Fatalf("buffer %d: got %q", size, out)
				}
				if over && len(c.raw) > 1000 && len(out) > c.limit+100 && !strings.HasPrefix(c.raw, "-") {
					t.Fatalf("buffer %d: kept %d bytes of an overflowing value, limit %d", size, len(out), c.limit)
				}
				next, nover, err := r.appendValue(nil, 10)
				if err != nil || nover || string(next) != "+OK\r\n" {
					t.Fatalf("buffer %d: value after it: %q overflow %v err %v", size, next, nover, err)
				}
			}
		})
	}
}

// rtAppend runs appendValue and turns a panic into an error, so a bad input
// fails its own case instead of the whole test binary.
func rtAppend(r *replyReader, limit int) (out []byte, over bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return r.appendValue(nil, limit)
}

// TestAppendValueMalformed: bytes that are not RESP are errBadReply (the
// connection is then closed), never a panic or a value.
func TestAppendValueMalformed(t *testing.T) {
	bad := []string{
		"?x\r\n",
		"OK\r\n",
		"+OK\n",
		"\r\n",
		"\n",
		"$abc\r\n",
		"$\r\n",
		"$-\r\n",
		"$3\r\nabcd\r\n",
		"$3\r\nabc\n\n",
		"*x\r\n",
		"*1\r\n?\r\n",
		"*2\r\n+a\r\n+b\n",
		"%x\r\n",
		"|x\r\n",
		"~-\r\n",
		">1\r\n$2\r\nabc\r\n",
		"$12345678901234567890123\r\n",
		// Lengths that do not fit an int64 must not wrap around.
		"$18446744073709551616\r\n\r\n",
		"$18446744073709551619\r\nabc\r\n",
		"*18446744073709551617\r\n+a\r\n",
		"$9223372036854775807\r\n",
	}
	for _, in := range bad {
		for _, limit := range []int{0, 1 << 20} {
			r := rtReader(in)
			out, _, err := rtAppend(&r, limit)
			if !errors.Is(err, errBadReply) {
				t.Errorf("appendValue(%q), limit %d: got %q, err %v; want errBadReply", in, limit, out, err)
			}
		}
	}
}

// TestAppendValueTruncated: a value cut short by the connection is an error,
// never a value.
func TestAppendValueTruncated(t *testing.T) {
	for _, v := range rtValues {
		for n := 0; n < len(v.raw); n++ {
			r := replyReader{br: bufio.NewReaderSize(strings.NewReader(v.raw[:n]), 16)}
			if out, _, err := rtAppend(&r, 1<<20); err == nil {
				t.Fatalf("%s cut at %d bytes: got value %q", v.name, n, out)
			}
		}
	}
}

func TestParseLen(t *testing.T) {
	cases := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"-1", -1, true},
		{"512", 512, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"-9223372036854775807", -9223372036854775807, true},
		{"", 0, false},
		{"-", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1a", 0, false},
		{"0x10", 0, false},
		{"1.5", 0, false},
		{"9223372036854775808", 0, false},
		{"10000000000000000000", 0, false},
		{"18446744073709551616", 0, false}, // 2^64: wraps to 0
		{"18446744073709551617", 0, false}, // 2^64+1: wraps to 1
		{"20000000000000000000", 0, false},
		{"99999999999999999999", 0, false},
		{"123456789012345678901", 0, false},
	}
	for _, c := range cases {
		n, ok := parseLen([]byte(c.in))
		if ok != c.ok || (ok && n != c.n) {
			t.Errorf("parseLen(%q) = %d, %v; want %d, %v", c.in, n, ok, c.n, c.ok)
		}
	}
}

// --- request scanner ---

// rtScanCase is a client byte stream that breaks a limit: cut is where the
// offending request starts, at is the offset of the byte that reveals it.
type rtScanCase struct {
	name    string
	maxBulk int64
	in      string
	cut     int
	at      int
	msg     string
}

func rtScanCases() []rtScanCase {
	ping := "*1\r\n$4\r\nPING\r\n"
	inline := strings.Repeat("a", maxInline+1)
	return []rtScanCase{
		{"bulk over the limit", 10, "*1\r\n$11\r\n", 0, 8, errBulkLen},
		{"bulk over the limit after a request", 10, ping + "*2\r\n$3\r\nGET\r\n$11\r\n", 14, 14 + 17, errBulkLen},
		{"bulk far over the limit", 10, ping + ping + "*1\r\n$99999999999\r\nxx", 28, 28 + 17, errBulkLen},
		{"bulk length past 2^50", 1 << 62, "*1\r\n$2000000000000000\r\n", 0, 20, errBulkLen},
		{"bulk header too long", 1 << 62, "*1\r\n$" + strings.Repeat("0", 40) + "1\r\n", 0, 4 + 33, errBulkLen},
		{"too many arguments", 1 << 20, "*1048577\r\n", 0, 9, errMultiLen},
		{"too many arguments after a request", 1 << 20, ping + "*1048577\r\n$1\r\n", 14, 14 + 9, errMultiLen},
		{"multibulk header too long", 1 << 20, "*" + strings.Repeat("0", 40) + "\r\n", 0, 33, errMultiLen},
		{"inline over 64KB", 1 << 20, inline, 0, maxInline, errInline},
		{"inline over 64KB after requests", 1 << 20, "PING\r\n" + ping + inline, 20, 20 + maxInline, errInline},
	}
}

// TestReqScannerLimits feeds each stream whole.
func TestReqScannerLimits(t *testing.T) {
	for _, c := range rtScanCases() {
		s := reqScanner{maxBulk: c.maxBulk}
		cut, msg := s.scan([]byte(c.in))
		if cut != c.cut || msg != c.msg {
			t.Errorf("%s: scan = %d, %q; want %d, %q", c.name, cut, msg, c.cut, c.msg)
		}
	}
}

// TestReqScannerUnauthenticated: before AUTH, Redis allows at most 10
// arguments and bulks of 16 KiB; so does the scanner, and no more after AUTH.
func TestReqScannerUnauthenticated(t *testing.T) {
	cases := []struct {
		in     string
		unauth bool
		msg    string
	}{
		{"*10\r\n", true, ""},
		{"*11\r\n", true, errMultiLenUnath},
		{"*11\r\n", false, ""},
		{"*2\r\n$4\r\nAUTH\r\n$16384\r\n", true, ""},
		{"*2\r\n$4\r\nAUTH\r\n$16385\r\n", true, errBulkUnauth},
		{"*2\r\n$4\r\nAUTH\r\n$16385\r\n", false, ""},
	}
	for _, c := range cases {
		s := reqScanner{maxBulk: 1 << 20, unauth: c.unauth}
		if _, msg := s.scan([]byte(c.in)); msg != c.msg {
			t.Errorf("scan(%q), unauthenticated %v: %q, want %q", c.in, c.unauth, msg, c.msg)
		}
	}
}

// TestReqScannerChunks feeds each stream in every two-chunk split and byte by
// byte: the error comes with the chunk holding the revealing byte, never
// earlier, and its cut is where the request starts within that chunk (0 if
// it started in an earlier one).
func TestReqScannerChunks(t *testing.T) {
	for _, c := range rtScanCases() {
		splits := []int{}
		for k := 1; k < len(c.in); k++ {
			if len(c.in) < 200 || k%997 == 0 || k > c.at-3 && k < c.at+3 || k > c.cut-3 && k < c.cut+3 {
				splits = append(splits, k)
			}
		}
		for _, k := range splits {
			s := reqScanner{maxBulk: c.maxBulk}
			chunks := []string{c.in[:k], c.in[k:]}
			start := 0
			for i, ch := range chunks {
				cut, msg := s.scan([]byte(ch))
				end := start + len(ch)
				switch {
				case c.at >= end && msg != "":
					t.Fatalf("%s split at %d: chunk %d reported %q before the revealing byte %d", c.name, k, i, msg, c.at)
				case c.at >= start && c.at < end:
					if msg != c.msg || cut != max(0, c.cut-start) {
						t.Fatalf("%s split at %d: chunk %d: scan = %d, %q; want %d, %q", c.name, k, i, cut, msg, max(0, c.cut-start), c.msg)
					}
				}
				if msg != "" {
					break
				}
				start = end
			}
		}
		if len(c.in) > 1000 {
			continue
		}
		s := reqScanner{maxBulk: c.maxBulk}
		for i := 0; i < len(c.in); i++ {
			cut, msg := s.scan([]byte{c.in[i]})
			if (msg != "") != (i == c.at) || cut != 0 {
				t.Fatalf("%s byte by byte: byte %d: scan = %d, %q; want an error at byte %d only", c.name, i, cut, msg, c.at)
			}
			if msg != "" {
				break
			}
		}
	}
}

// TestReqScannerFramingErrors: a stream that is not RESP gets Redis's
// protocol error at the request that breaks the framing, after the replies
// to the requests before it.
func TestReqScannerFramingErrors(t *testing.T) {
	ping := "*1\r\n$4\r\nPING\r\n"
	cases := []struct {
		in  string
		cut int
		msg string
	}{
		{"*1\r\nPING\r\n", 0, "ERR Protocol error: expected '$', got 'P'"},
		{ping + "*1\r\nPING\r\n", 14, "ERR Protocol error: expected '$', got 'P'"},
		{ping + "*1\r\n$-1\r\n", 14, errBulkLen},
		{"*1x\r\n", 0, errMultiLen},
		{"*2\r\n$3\r\nGET\r\n$x\r\n", 0, errBulkLen},
	}
	for _, c := range cases {
		s := reqScanner{maxBulk: 1 << 20}
		if cut, msg := s.scan([]byte(c.in)); cut != c.cut || msg != c.msg {
			t.Errorf("scan(%q) = %d, %q; want %d, %q", c.in, cut, msg, c.cut, c.msg)
		}
	}
}

// TestReqScannerErrorIsOneLine: whatever byte breaks the framing, the error
// reply is one RESP line; a CR or LF inside it would corrupt the reply
// stream (Redis replaces them with spaces).
func TestReqScannerErrorIsOneLine(t *testing.T) {
	for b := 0; b < 256; b++ {
		c := string([]byte{byte(b)})
		for _, in := range []string{"*1\r\n" + c, "*1\r\n$" + c + "\r\n", "*" + c + "\r\n", "*2\r\n$1\r\nx\r\n" + c} {
			s := reqScanner{maxBulk: 1 << 20}
			if _, msg := s.scan([]byte(in)); strings.ContainsAny(msg, "\r\n") {
				t.Errorf("scan(%q): error reply %q holds a line break", in, msg)
			}
		}
	}
}

// TestReqScannerValidPipelines: for random pipelines of valid requests
// (multibulk with binary arguments up to the bulk limit, inline lines,
// empty lines), cut into random chunks, the scanner never reports an error
// and ends between requests.
func TestReqScannerValidPipelines(t *testing.T) {
	seed := int64(20240611)
	r := rand.New(rand.NewSource(seed))
	const maxBulk = 100 << 10
	for iter := 0; iter < 300; iter++ {
		var b []byte
		for n := 1 + r.Intn(30); n > 0; n-- {
			switch r.Intn(6) {
			case 0:
				line := make([]byte, r.Intn(200))
				for i := range line {
					line[i] = byte(' ' + r.Intn(95))
				}
				if len(line) > 0 && line[0] == '*' {
					line[0] = 'x'
				}
				if r.Intn(20) == 0 {
					line = bytes.Repeat([]byte("y"), maxInline-1)
				}
				b = append(b, line...)
				b = append(b, []string{"\r\n", "\n"}[r.Intn(2)]...)
			case 1:
				b = append(b, "\r\n"...)
			default:
				nargs := 1 + r.Intn(8)
				b = append(b, '*')
				b = strconv.AppendInt(b, int64(nargs), 10)
				b = append(b, "\r\n"...)
				for ; nargs > 0; nargs-- {
					arg := make([]byte, r.Intn(300))
					if r.Intn(30) == 0 {
						arg = make([]byte, maxBulk)
					}
					r.Read(arg)
					b = append(b, '$')
					b = strconv.AppendInt(b, int64(len(arg)), 10)
					b = append(b, "\r\n"...)
					b = append(b, arg...)
					b = append(b, "\r\n"...)
				}
			}
		}
		s := reqScanner{maxBulk: maxBulk}
		for rest := b; len(rest) > 0; {
			k := 1 + r.Intn(min(len(rest), []int{1, 7, 100, 5000, 1 << 20}[r.Intn(5)]))
			if cut, msg := s.scan(rest[:k]); msg != "" {
				t.Fatalf("seed %d, pipeline %d: scan reported %d, %q for valid requests", seed, iter, cut, msg)
			}
			rest = rest[k:]
		}
		if s.state != scanStart {
			t.Fatalf("seed %d, pipeline %d: scanner ends in state %d, not between requests", seed, iter, s.state)
		}
	}
}

// TestReqScannerWholeMatchesByteScan: taking plain requests whole (the fast
// path) changes nothing the scanner reports. Random pipelines of requests,
// empty requests and limit-breaking ones, with bytes flipped at random,
// are cut into random chunks and scanned with the fast path on and off:
// every chunk gets the same cut, error, drops and "a request ended".
func TestReqScannerWholeMatchesByteScan(t *testing.T) {
	r := rand.New(rand.NewSource(20261130))
	defer func() { scanFast = true }()
	for iter := 0; iter < 3000; iter++ {
		var b []byte
		for n := 1 + r.Intn(12); n > 0; n-- {
			switch r.Intn(8) {
			case 0:
				b = append(b, []string{"*0\r\n", "*-1\r\n", "PING\r\n", "\r\n", "*12\r\n", "*1048577\r\n"}[r.Intn(6)]...)
			default:
				args := make([]string, 1+r.Intn(12))
				for a := range args {
					size := r.Intn(40)
					if r.Intn(10) == 0 {
						size = 16380 + r.Intn(10)
					}
					args[a] = strings.Repeat("v", size)
				}
				b = append(b, stCmd(args...)...)
			}
		}
		for flips := r.Intn(3); flips > 0; flips-- {
			b[r.Intn(len(b))] = "*$\r\n0-9x"[r.Intn(8)]
		}
		var cuts []int
		for k := r.Intn(4); k > 0; k-- {
			cuts = append(cuts, r.Intn(len(b)+1))
		}
		cuts = append(cuts, len(b))
		slices.Sort(cuts)
		maxBulk := []int64{1 << 20, 20}[r.Intn(2)]
		unauth := r.Intn(3) == 0
		type result struct {
			cut   int
			msg   string
			drops string
			ended bool
		}
		run := func(fast bool) []result {
			scanFast = fast
			s := reqScanner{maxBulk: maxBulk, unauth: unauth}
			var out []result
			start := 0
			for _, end := range cuts {
				cut, msg := s.scan(b[start:end])
				out = append(out, result{cut, msg, fmt.Sprint(s.drops), s.ended})
				if msg != "" {
					break
				}
				start = end
			}
			return out
		}
		slow, fast := run(false), run(true)
		if !slices.Equal(slow, fast) {
			t.Fatalf("stream %q cut at %v (maxBulk %d, unauth %v):\nbyte by byte %+v\nwhole        %+v", b, cuts, maxBulk, unauth, slow, fast)
		}
	}
}

// BenchmarkReqScanner scans what redis-benchmark -P 16 sends for SET: 16
// requests in one read.
func BenchmarkReqScanner(b *testing.B) {
	var chunk []byte
	for i := 0; i < 16; i++ {
		chunk = append(chunk, "*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n"...)
	}
	for _, fast := range []bool{false, true} {
		b.Run(map[bool]string{false: "byte-by-byte", true: "whole"}[fast], func(b *testing.B) {
			defer func() { scanFast = true }()
			scanFast = fast
			s := reqScanner{maxBulk: 512 << 20}
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				if _, msg := s.scan(chunk); msg != "" {
					b.Fatal(msg)
				}
			}
		})
	}
}
