package resp

// The differential tests hold the parser side by side with a real
// redis-server. A request stream goes to Redis raw on one connection (then
// half-closed, every reply read to EOF); the same stream goes through
// Parser, and the commands it found go to Redis re-encoded on a fresh
// connection, followed by the parser's refusal if it made one. The two
// reply streams must be identical.
//
// Where the two cannot agree by design, the test says which case it is
// and checks what still holds:
//
//   - Redis waits: the parser refuses a header as soon as no CR can make
//     it valid; Redis first looks for the CR (with strchr, which stops at a
//     NUL) and says nothing until it has one and a byte after it. An inline
//     line holding a NUL is the same: Redis's strchr never finds its end.
//     The replies must match with the refusal left out.
//   - Redis accepts bytes that are not the protocol: a bulk body not
//     followed by CRLF (Redis skips two bytes unread), a header ended by CR
//     and some byte other than LF, more than DefaultMaxArgs arguments
//     (Redis 7 takes up to INT_MAX). The parser must refuse, and Redis's
//     replies must begin with the replies to what the parser accepted.
//   - A header with no CR in 64 KiB: Redis ends with "too big (m)bulk
//     count string", the parser (which refused long before) with "invalid
//     (multi)bulk length" (TestDifferentialCountTooBig).
//
// The streams come from a generator of commands whose replies reveal their
// arguments (ECHO, PING, EVAL "return ARGV"), in multibulk and inline
// forms, with mutations; -resp.seed and -resp.streams choose the run.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

var (
	diffSeed    = flag.Int64("resp.seed", 1, "first seed of the differential streams (0: from the clock)")
	diffStreams = flag.Int("resp.streams", 2000, "differential streams per test")
)

// exchange sends stream on a fresh connection, half-closes it and returns
// every byte Redis answers until it closes.
func exchange(t *testing.T, addr string, stream []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(c)
		done <- result{b, err}
	}()
	// A write error is expected when Redis closes after a refusal.
	c.Write(stream)
	c.(*net.TCPConn).CloseWrite()
	res := <-done
	var ne net.Error
	if errors.As(res.err, &ne) && ne.Timeout() {
		t.Fatalf("Redis did not close the connection after stream %q (read %q)", stream, res.b)
	}
	return res.b
}

// verdict is how Redis treats the bytes the parser refused.
type verdict int

const (
	noRefusal    verdict = iota
	redisAnswers         // the same refusal, in the same words
	redisWaits           // nothing: Redis is still looking for the line's end
	redisAccepts         // a deliberate divergence: Redis reads on
)

func (v verdict) String() string {
	return [...]string{"no refusal", "Redis answers", "Redis waits", "Redis accepts"}[v]
}

// classify says how Redis treats rem, the bytes from the start of the
// command the parser refused with err.
func classify(rem []byte, unauth bool, err error) verdict {
	if err == nil {
		return noRefusal
	}
	reply := errText(err)
	// e: the byte that made the parser refuse (prefixes that end before
	// it are only incomplete; refusal is monotone in the prefix).
	lo, hi := 1, len(rem)
	for lo < hi {
		mid := (lo + hi) / 2
		p := Parser{Unauth: unauth}
		if _, _, err := p.Next(rem[:mid]); err != nil {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	e := lo - 1
	if rem[0] != '*' {
		if reply == ErrInlineTooBig && bytes.IndexByte(rem[:e], 0) >= 0 {
			return redisWaits // strchr stops at the NUL
		}
		return redisAnswers
	}
	if reply == ErrMultibulkLen {
		var p Parser
		if n, next, bad := p.number(rem, 0); next > 0 && !bad && n > DefaultMaxArgs && n <= maxRedisArgs {
			return redisAccepts
		}
	}
	if e > 0 && rem[e-1] == '\r' && rem[e] != '\n' {
		return redisAccepts // CR then a byte other than LF: Redis skips it
	}
	// Where was the parser? At a bulk header whose line was whole before
	// e, the refusal is of the CRLF after the body.
	p := Parser{Unauth: unauth}
	p.Next(rem[:e])
	if p.pos > 0 && p.pos < e {
		if _, next, bad := p.number(rem[:e], p.pos); next > 0 && !bad {
			return redisAccepts // Redis skips two bytes unread
		}
	}
	if rem[e] == '\n' && e > 0 && rem[e-1] == '\r' {
		return redisAnswers // the header line is whole: a limit or a bad value
	}
	// Redis answers once it finds the line's CR and a byte after it.
	for j := e; j < len(rem); j++ {
		switch rem[j] {
		case 0:
			return redisWaits
		case '\r':
			if j+1 < len(rem) {
				return redisAnswers
			}
			return redisWaits
		}
	}
	return redisWaits
}

type diffResult struct {
	verdict verdict
	cmds    int
}

// differ runs one stream through Redis and through the parser and checks
// the replies agree as the verdict says. seed names the stream in a
// failure (-1: none).
func differ(t *testing.T, addr string, stream []byte, unauth bool, seed int64) diffResult {
	t.Helper()
	cmds, rest, err := parseWhole(&Parser{Unauth: unauth}, stream)
	v := classify(stream[rest:], unauth, err)
	var replay []byte
	n := 0
	for _, c := range cmds {
		if len(c.Args) == 0 {
			continue
		}
		n++
		if unauth && c.Inline && !fitsUnauth(c.Args) {
			// Redis has no such limits for an inline request; sent as
			// a multibulk one on this unauthenticated connection, it
			// would be refused.
			replay = appendInline(replay, c.Args)
			continue
		}
		replay = AppendCommand(replay, c.Args...)
	}
	var want []byte
	if n > 0 {
		want = exchange(t, addr, replay)
	}
	raw := exchange(t, addr, stream)
	if v == redisAnswers {
		want = AppendError(want, errText(err))
	}
	ok := bytes.Equal(raw, want)
	if v == redisAccepts {
		ok = bytes.HasPrefix(raw, want)
	}
	if !ok {
		t.Fatalf("seed %d: stream %q\nparser: %d commands, refusal %q (%v) at %d\nRedis:  %q\nparser: %q", seed, stream, n, errText(err), v, rest, raw, want)
	}
	return diffResult{v, n}
}

// gen makes request streams.
type gen struct {
	r      *rand.Rand
	unauth bool // aim at the unauthenticated limits
}

func (g *gen) pick(s ...string) string { return s[g.r.Intn(len(s))] }

// arg is an argument: letters that spell no Redis command, binary, the
// bytes that matter to the protocol, or (unauth) one near 16 KiB.
func (g *gen) arg() []byte {
	r := g.r
	var alpha string
	switch r.Intn(6) {
	case 0:
		return nil
	case 1:
		alpha = "jkqvxz0123456789"
	case 2:
		b := make([]byte, r.Intn(20))
		r.Read(b)
		return b
	case 3:
		alpha = " \t\r\n\x00\"'\\*$\v\fjx"
	case 4:
		return []byte(g.pick("0", "-1", "1", "-0", "00", "1e3"))
	default:
		if g.unauth && r.Intn(4) == 0 {
			return bytes.Repeat([]byte{'k'}, 16380+r.Intn(8))
		}
		alpha = "jkqvxz"
	}
	b := make([]byte, 1+r.Intn(10))
	for i := range b {
		b[i] = alpha[r.Intn(len(alpha))]
	}
	return b
}

// command is a request whose reply reveals its arguments.
func (g *gen) command() [][]byte {
	r := g.r
	s := func(a ...string) [][]byte {
		out := make([][]byte, len(a))
		for i := range a {
			out[i] = []byte(a[i])
		}
		return out
	}
	switch r.Intn(6) {
	case 0:
		return s(g.pick("PING", "ping"))
	case 1:
		return append(s("PING"), g.arg())
	case 2:
		return append(s(g.pick("ECHO", "echo", "Echo")), g.arg())
	case 3, 4:
		c := s("EVAL", "return ARGV", "0")
		n := r.Intn(6)
		if g.unauth {
			n = r.Intn(11)
		}
		for i := 0; i < n; i++ {
			c = append(c, g.arg())
		}
		return c
	default:
		if r.Intn(2) == 0 {
			return s("ECHO")
		}
		return append(s("ECHO"), g.arg(), g.arg())
	}
}

// multibulk encodes args, sometimes with one mutation Redis and the parser
// treat alike (lengths and counts that are wrong but do not split a body
// from its CRLF).
func (g *gen) multibulk(args [][]byte, mutate bool) []byte {
	r := g.r
	count := strconv.Itoa(len(args))
	lens := make([]string, len(args))
	types := make([]byte, len(args))
	for i, a := range args {
		lens[i] = strconv.Itoa(len(a))
		types[i] = '$'
	}
	if mutate {
		i := r.Intn(len(args))
		switch r.Intn(3) {
		case 0:
			n := len(args)
			count = g.pick(strconv.Itoa(n+1), strconv.Itoa(n+2), strconv.Itoa(max(n-1, 1)), "0", "-1", "-0", "0"+count,
				"+"+count, " "+count, count+" ", count+"x", "", "x", strings.Repeat("1", 25), "12345678901234567890",
				"2147483648", "9223372036854775808", "-9223372036854775809", "1048576", "-")
			if g.unauth {
				count = g.pick(count, "10", "11", "12", "1048577")
			}
		case 1:
			n := len(args[i])
			lens[i] = g.pick("-1", "-0", "0"+lens[i], "", "x", "+"+lens[i], lens[i]+"x", lens[i]+" ", strings.Repeat("9", 25),
				"536870913", "9223372036854775808", "-")
			if n == 0 {
				lens[i] = g.pick("00", "-1", "")
			}
			if g.unauth {
				lens[i] = g.pick(lens[i], "16385", "99999")
			}
		default:
			types[i] = g.pick("x", "*", "#", "+", ":", " ", "\t", "\r", "\n", "\xff", "-", "E")[0]
		}
	}
	b := []byte("*" + count + "\r\n")
	for i, a := range args {
		b = append(b, types[i])
		b = append(b, lens[i]...)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// inline writes args as a line of text in the ways sdssplitargs reads:
// bare, "double quoted" with escapes, 'single quoted', or bare then
// quoted; sometimes with junk (unbalanced quotes and the like).
func (g *gen) inline(args [][]byte, mutate bool) []byte {
	r := g.r
	blanks := func(min int) string {
		s := strings.Repeat(" ", min)
		for i := r.Intn(3); i > 0; i-- {
			s += g.pick(" ", "\t", " ", "\t ")
		}
		return s
	}
	line := []byte(blanks(0))
	for i, a := range args {
		if i > 0 {
			sep := blanks(1)
			if r.Intn(8) == 0 {
				sep = g.pick("\v", "\f", " \v", "\r") // \v and \f are blanks only between tokens after quotes
			}
			line = append(line, sep...)
		}
		line = append(line, g.inlineArg(a)...)
	}
	line = append(line, blanks(0)...)
	if mutate {
		at := r.Intn(len(line) + 1)
		junk := g.pick(`"`, `'`, `"a"b`, `'a'b`, `\xZZ`, `"\x4"`, `"\`, `a"b c"`, `"\"`, "\"a\tb\"", `""`, `''`)
		line = append(line[:at:at], append([]byte(junk), line[at:]...)...)
	}
	return append(line, g.pick("\r\n", "\n")...)
}

func (g *gen) inlineArg(a []byte) []byte {
	r := g.r
	bare := len(a) > 0 && bytes.IndexAny(a, " \t\r\n\v\f\x00\"'") < 0
	single := bytes.IndexAny(a, "\x00\n") < 0 && !bytes.HasSuffix(a, []byte{'\\'})
	switch style := r.Intn(4); {
	case style == 0 && bare:
		return a
	case style == 1 && single:
		return []byte("'" + strings.ReplaceAll(string(a), "'", `\'`) + "'")
	case style == 2 && len(a) > 1 && bytes.IndexAny(a[:1], " \t\r\n\v\f\x00\"'") < 0:
		return append(a[:1:1], g.doubleQuoted(a[1:])...) // a"bc"
	}
	return g.doubleQuoted(a)
}

func (g *gen) doubleQuoted(a []byte) []byte {
	b := []byte{'"'}
	for _, c := range a {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == 0 || c == '\n' || g.r.Intn(6) == 0 && (c < ' ' || c >= 0x7f):
			b = append(b, fmt.Sprintf(g.pick(`\x%02x`, `\x%02X`), c)...)
		case c == '\r' && g.r.Intn(2) == 0:
			b = append(b, `\r`...)
		case c == '\t' && g.r.Intn(2) == 0:
			b = append(b, `\t`...)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func (g *gen) empty() []byte {
	return []byte(g.pick("*0\r\n", "*-1\r\n", "*-7\r\n", "\r\n", "\n", " \t \r\n", "\r\r\n"))
}

// piece is one request, possibly mutated.
func (g *gen) piece() []byte {
	mutate := g.r.Intn(12) == 0
	switch g.r.Intn(10) {
	case 0:
		return g.empty()
	case 1, 2, 3:
		// An inline line near 64 KiB is refused or not by Redis
		// depending on its reads (the 64 KiB check runs after each).
		if c := g.command(); len(bytes.Join(c, nil)) < 40000 {
			return g.inline(c, mutate)
		}
		fallthrough
	default:
		return g.multibulk(g.command(), mutate)
	}
}

// stream is a client's bytes: pieces, then perhaps a last command that is
// cut short or that announces more than there is.
func (g *gen) stream() []byte {
	var s []byte
	for i := g.r.Intn(10); i > 0; i-- {
		s = append(s, g.piece()...)
	}
	switch g.r.Intn(8) {
	case 0:
		p := g.piece()
		s = append(s, p[:g.r.Intn(len(p))]...)
	case 1:
		// The last length is past the end of the stream.
		args := g.command()
		s = append(s, "*"+strconv.Itoa(len(args))+"\r\n"...)
		for i, a := range args {
			n := len(a)
			if i == len(args)-1 {
				n += 3 + g.r.Intn(100000)
			}
			s = append(s, "$"+strconv.Itoa(n)+"\r\n"...)
			s = append(s, a...)
			s = append(s, "\r\n"...)
		}
	}
	return s
}

func seeds(t *testing.T) (first int64, n int) {
	first = *diffSeed
	if first == 0 {
		first = time.Now().UnixNano()
	}
	t.Logf("streams %d from seed %d (-resp.seed=%d -resp.streams=%d to run them again)", *diffStreams, first, first, *diffStreams)
	return first, *diffStreams
}

// TestDifferentialTable: streams chosen by hand, with the verdict each
// must get and, for the divergences, what Redis itself answers.
func TestDifferentialTable(t *testing.T) {
	srv := redistest.Start(t)
	cases := []struct {
		name   string
		stream string
		v      verdict
		redis  string // what Redis answers, when it says more than the parser
	}{
		{"pipeline", strings.Join(pipeline, ""), noRefusal, ""},
		{"inline quoting", "ECHO \"a\\x00\\r\\n\\\"b\" 'c\\'d'\r\nECHO a\"b c\"\r\nECHO \"\\xZZ\"\r\n", noRefusal, ""},
		{"tab, vertical tab, form feed", "ECHO\ta\vb\r\nECHO \"x\"\vy\r\nEVAL 'return ARGV' 0 \"a\"\fb\r\n", noRefusal, ""},
		{"blank lines and empty arrays", "\r\n\n  \r\n*0\r\n*-1\r\nPING\r\n", noRefusal, ""},
		{"bad count", "PING\r\n*1x\r\n", redisAnswers, ""},
		{"-0 count", "*-0\r\n", redisAnswers, ""},
		{"leading zero length", "*1\r\n$04\r\nPING\r\n", redisAnswers, ""},
		{"negative length", "*2\r\n$4\r\nECHO\r\n$-1\r\n", redisAnswers, ""},
		{"missing $", "*1\r\n+4\r\nPING\r\n", redisAnswers, ""},
		{"byte 0xff for $", "*1\r\n\xff4\r\nPING\r\n", redisAnswers, ""},
		{"CR for $", "*1\r\n\r\n", redisAnswers, ""},
		{"bulk over proto-max-bulk-len", "*1\r\n$536870913\r\n", redisAnswers, ""},
		{"count over INT_MAX", "*2147483648\r\n", redisAnswers, ""},
		{"21 digits", "*123456789012345678901\r\n", redisAnswers, ""},
		{"unbalanced quotes", "PING\r\nECHO \"a\r\nPING\r\n", redisAnswers, ""},
		{"closing quote then a letter", "ECHO 'a'b\r\n", redisAnswers, ""},
		{"bad header, no CR yet", "PING\r\n*1\r\nx", redisWaits, ""},
		{"bad header, CR last", "*1x\r", redisWaits, ""},
		{"NUL in a header", "PING\r\n*1\r\n$4\x00\r\nPING\r\n", redisWaits, ""},
		{"NUL in an inline line", "PING\r\nECHO a\x00b\r\nPING\r\n", redisWaits, ""},
		{"body not followed by CRLF", "*2\r\n$4\r\nECHO\r\n$1\r\nabc\r\nPING\r\n", redisAccepts, "$1\r\na\r\n+PONG\r\n"},
		{"header CR then X", "*1\r\n$4\rXPING\r\n", redisAccepts, "+PONG\r\n"},
		{"count CR then X", "*1\rX$4\r\nPING\r\n", redisAccepts, "+PONG\r\n"},
		{"more arguments than DefaultMaxArgs", "PING\r\n*1048577\r\n$4\r\nPING\r\n", redisAccepts, "+PONG\r\n"},
		{"DefaultMaxArgs arguments, cut short", "*1048576\r\n$4\r\nPING\r\n", noRefusal, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, rest, err := parseWhole(&Parser{}, []byte(c.stream))
			if v := classify([]byte(c.stream[rest:]), false, err); v != c.v {
				t.Fatalf("verdict %v, want %v (refusal %v)", v, c.v, err)
			}
			differ(t, srv.Addr, []byte(c.stream), false, -1)
			if c.redis != "" {
				if got := exchange(t, srv.Addr, []byte(c.stream)); string(got) != c.redis {
					t.Fatalf("Redis answered %q, want %q", got, c.redis)
				}
			}
		})
	}
}

// TestDifferentialCountTooBig: a header with no CR in 64 KiB is one place
// the parser's words differ. Redis, which waits for the CR, ends with "too
// big (m)bulk count string"; the parser refused from the 21st character,
// when the CR could still have come, with what Redis says then.
func TestDifferentialCountTooBig(t *testing.T) {
	srv := redistest.Start(t)
	for _, c := range []struct{ stream, redis, parser string }{
		{"*" + strings.Repeat("1", 90000), "-ERR Protocol error: too big mbulk count string\r\n", ErrMultibulkLen},
		{"*1\r\n$" + strings.Repeat("1", 90000), "-ERR Protocol error: too big bulk count string\r\n", ErrBulkLen},
		{"*" + strings.Repeat("1", 100) + "\r\n", "-" + ErrMultibulkLen + "\r\n", ErrMultibulkLen},
	} {
		if _, _, err := parseWhole(&Parser{}, []byte(c.stream)); errText(err) != c.parser {
			t.Errorf("%.20q: parser %v, want %q", c.stream, err, c.parser)
		}
		if got := exchange(t, srv.Addr, []byte(c.stream)); string(got) != c.redis {
			t.Errorf("%.20q: Redis %q, want %q", c.stream, got, c.redis)
		}
	}
}

// TestDifferentialRandom: generated streams, none built to diverge; the
// count of each verdict is logged, and none may be a divergence.
func TestDifferentialRandom(t *testing.T) {
	srv := redistest.Start(t)
	first, n := seeds(t)
	counts := map[verdict]int{}
	cmds := 0
	for i := 0; i < n; i++ {
		seed := first + int64(i)
		g := &gen{r: rand.New(rand.NewSource(seed))}
		stream := g.stream()
		res := differ(t, srv.Addr, stream, false, seed)
		if res.verdict == redisAccepts {
			t.Fatalf("seed %d: a stream not built to diverge diverged: %q", seed, stream)
		}
		counts[res.verdict]++
		cmds += res.cmds
	}
	t.Logf("%d streams, %d commands run; verdicts: %v", n, cmds, counts)
	// (Redis waits is rare here; the table and the divergences have it.)
	if n >= 500 && (counts[noRefusal] < n/10 || counts[redisAnswers] < n/10) {
		t.Fatalf("the generator covers too little: %v", counts)
	}
}

// TestDifferentialUnauth: a Redis with requirepass and Parser{Unauth:
// true} refuse the same headers (10 arguments, 16384-byte bulks).
func TestDifferentialUnauth(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "secret")
	for _, c := range []struct {
		stream string
		v      verdict
	}{
		{"PING\r\n*11\r\n", redisAnswers},
		{"*10\r\n$4\r\nPING\r\n", noRefusal},
		{"*2\r\n$4\r\nECHO\r\n$16385\r\n", redisAnswers},
		{"*2\r\n$4\r\nECHO\r\n$16384\r\n", noRefusal},
		{"*2000000\r\n", redisAnswers},
		{"*2147483648\r\n", redisAnswers},
		{"*1\r\n$536870913\r\n", redisAnswers},
		{"EVAL 'return ARGV' 0 1 2 3 4 5 6 7 8 9 10\r\n", noRefusal}, // inline: no such limit
	} {
		_, rest, err := parseWhole(&Parser{Unauth: true}, []byte(c.stream))
		if v := classify([]byte(c.stream[rest:]), true, err); v != c.v {
			t.Fatalf("%q: verdict %v, want %v (refusal %v)", c.stream, v, c.v, err)
		}
		differ(t, srv.Addr, []byte(c.stream), true, -1)
	}
	first, n := seeds(t)
	n = max(n/4, 1)
	counts := map[verdict]int{}
	for i := 0; i < n; i++ {
		seed := first + int64(i)
		g := &gen{r: rand.New(rand.NewSource(seed)), unauth: true}
		counts[differ(t, srv.Addr, g.stream(), true, seed).verdict]++
	}
	t.Logf("%d streams; verdicts: %v", n, counts)
	if counts[redisAccepts] > 0 {
		t.Fatalf("a stream not built to diverge diverged")
	}
}

// TestDifferentialDivergences builds each deliberate divergence into a
// stream of ordinary commands: the parser must refuse exactly there, and
// Redis's replies must agree as far as the verdict allows.
func TestDifferentialDivergences(t *testing.T) {
	srv := redistest.Start(t)
	kinds := []struct {
		name string
		v    verdict
		make func(g *gen) []byte
	}{
		{"body not followed by CRLF", redisAccepts, func(g *gen) []byte {
			word := bytes.Repeat([]byte{'j'}, 1+g.r.Intn(10))
			p := g.multibulk([][]byte{[]byte("ECHO"), word}, false)
			n := len(word)
			if g.r.Intn(2) == 0 && n > 0 {
				n = g.r.Intn(n) // shorter: the body ends inside the word
			} else {
				n += 1 + g.r.Intn(2) // longer: the body takes the CRLF
			}
			return bytes.Replace(p, []byte("$"+strconv.Itoa(len(word))+"\r\n"), []byte("$"+strconv.Itoa(n)+"\r\n"), 1)
		}},
		{"header CR then not LF", redisAccepts, func(g *gen) []byte {
			p := g.multibulk(g.command(), false)
			lfs := headerLFs(p)
			p[lfs[g.r.Intn(len(lfs))]] = g.pick("X", "\x00", "\r", "$", "*")[0]
			return p
		}},
		{"more arguments than DefaultMaxArgs", redisAccepts, func(g *gen) []byte {
			p := g.multibulk(g.command(), false)
			n := DefaultMaxArgs + 1 + g.r.Intn(maxRedisArgs-DefaultMaxArgs)
			return append([]byte("*"+strconv.Itoa(n)), p[bytes.IndexByte(p, '\r'):]...)
		}},
		{"NUL in an inline line", redisWaits, func(g *gen) []byte {
			p := g.inline(g.command(), false)
			at := g.r.Intn(len(p) - 1)
			return append(p[:at:at], append([]byte{0}, p[at:]...)...)
		}},
		{"NUL in a header", redisWaits, func(g *gen) []byte {
			p := g.multibulk(g.command(), false)
			return append(p[:2:2], append([]byte{0}, p[2:]...)...)
		}},
	}
	first, n := seeds(t)
	n = max(n/len(kinds)/2, 1)
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for i := 0; i < n; i++ {
				seed := first + int64(i)
				g := &gen{r: rand.New(rand.NewSource(seed))}
				var stream []byte
				clean := func() {
					for j := g.r.Intn(4); j > 0; j-- {
						// Only pieces that are whole commands by themselves.
						if p := g.piece(); isWhole(p) {
							stream = append(stream, p...)
						}
					}
				}
				clean()
				at := len(stream)
				stream = append(stream, k.make(g)...)
				stream = append(stream, "PING\r\n"...) // so that no divergence waits for its last bytes
				clean()
				_, rest, err := parseWhole(&Parser{}, stream)
				if err == nil || rest != at {
					t.Fatalf("seed %d: %q: refusal %v at %d, want one at %d", seed, stream, err, rest, at)
				}
				if v := classify(stream[rest:], false, err); v != k.v {
					t.Fatalf("seed %d: %q: verdict %v, want %v", seed, stream, v, k.v)
				}
				differ(t, srv.Addr, stream, false, seed)
			}
		})
	}
}

func fitsUnauth(args []string) bool {
	if len(args) > MaxArgsUnauth {
		return false
	}
	for _, a := range args {
		if len(a) > MaxBulkUnauth {
			return false
		}
	}
	return true
}

// appendInline writes args as an inline request, each in double quotes.
func appendInline(dst []byte, args []string) []byte {
	for i, a := range args {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, '"')
		for _, c := range []byte(a) {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case 0:
				dst = append(dst, `\x00`...)
			case '\n':
				dst = append(dst, `\n`...)
			default:
				dst = append(dst, c)
			}
		}
		dst = append(dst, '"')
	}
	return append(dst, '\r', '\n')
}

// headerLFs returns the offsets of the LFs that end the header lines of
// the well-formed multibulk command p.
func headerLFs(p []byte) []int {
	lf := bytes.IndexByte(p, '\n')
	lfs := []int{lf}
	for pos := lf + 1; pos < len(p); {
		lf = pos + bytes.IndexByte(p[pos:], '\n')
		n, _ := strconv.Atoi(string(p[pos+1 : lf-1]))
		lfs = append(lfs, lf)
		pos = lf + 1 + n + 2
	}
	return lfs
}

// isWhole reports whether p is one or more complete requests by itself.
func isWhole(p []byte) bool {
	_, rest, err := parseWhole(&Parser{}, p)
	return err == nil && rest == len(p)
}
