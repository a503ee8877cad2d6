package resp

// The fuzzers hold the parser and the reply scanner to properties that need
// no expected output: the same commands (or values) and the same refusal
// whether the bytes come whole or in random reads; Raw is exactly the bytes
// a multibulk command took; Args re-encoded parse back to themselves; and
// Reader.AppendValue agrees with ReplyScanner.Next byte for byte, with and
// without a limit. Crashers found are kept under testdata/fuzz.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
	"testing/iotest"
)

func FuzzParser(f *testing.F) {
	for _, s := range pipeline {
		f.Add([]byte(s), int64(1), false)
	}
	f.Add([]byte(strings.Join(pipeline, "")), int64(7), false)
	for _, s := range []string{
		"*1x\r\n", "*-0\r\n", "*1\rX", "*1\r\n\xff", "*1\r\n$3\r\nabcXY", "*1\r\n$1\rX",
		"\"unterminated\r\n", "ECHO \"a\"b\r\n", "PING\x00\r\n", "ECHO \"\\x41\\xZZ\" 'a\\'b' a\"b c\"\r\n",
		"*11\r\n", "*1\r\n$16385\r\n", "*2\r\n$4\r\nECHO\r\n$1\r\nabc\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-1\r\n",
		"\r\n\n \t\v\f\r\n*0\r\n*-1\r\n", "*2\r\n$0\r\n\r\n$0\r\n\r\n", "*123456789012345678901\r\n",
	} {
		f.Add([]byte(s), int64(3), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, seed int64, unauth bool) {
		whole, rest, err := parseWhole(&Parser{Unauth: unauth}, data)
		checkRefusal(t, data[rest:], err)
		r := rand.New(rand.NewSource(seed))
		maxChunk := 1 + r.Intn(1+len(data))
		chunked, crest, cerr := parseChunked(&Parser{Unauth: unauth}, data, func() int { return 1 + r.Intn(maxChunk) })
		if fmt.Sprint(chunked) != fmt.Sprint(whole) || crest != rest || errText(cerr) != errText(err) {
			t.Fatalf("whole: %d commands, rest %d, err %v\nchunked: %d commands, rest %d, err %v", len(whole), rest, err, len(chunked), crest, cerr)
		}
		off := 0
		for _, c := range whole {
			raw := data[off : off+c.N]
			off += c.N
			args := make([][]byte, len(c.Args))
			for i, a := range c.Args {
				args[i] = []byte(a)
			}
			switch {
			case len(c.Args) == 0:
				if c.Raw != "" {
					t.Fatalf("empty request %q: Raw %q", raw, c.Raw)
				}
				continue
			case c.Inline:
				if raw[0] == '*' || c.Raw != string(AppendCommandArgs(nil, args)) {
					t.Fatalf("inline %q: Raw %q", raw, c.Raw)
				}
			default:
				if raw[0] != '*' || c.Raw != string(raw) {
					t.Fatalf("multibulk %q: Raw %q", raw, c.Raw)
				}
			}
			enc := AppendCommandArgs(nil, args)
			var p Parser
			cmd, n, err := p.Next(enc)
			if err != nil || n != len(enc) || fmt.Sprintf("%q", copyCmd(cmd, n, false).Args) != fmt.Sprintf("%q", c.Args) {
				t.Fatalf("re-encoded %q: %q, n %d of %d, err %v", c.Args, cmd.Args, n, len(enc), err)
			}
		}
	})
}

// checkRefusal: a refusal is a *ProtocolError in Redis's words, about the
// command at the start of rest.
func checkRefusal(t *testing.T, rest []byte, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T %v is not a *ProtocolError", err, err)
	}
	switch pe.Reply {
	case ErrMultibulkLen, ErrBulkLen, ErrUnauthMultibulkLen, ErrUnauthBulkLen:
		if rest[0] != '*' {
			t.Fatalf("%q refused as a multibulk: %s", rest, pe.Reply)
		}
	case ErrInlineTooBig, ErrUnbalancedQuotes:
		if rest[0] == '*' {
			t.Fatalf("%q refused as inline: %s", rest, pe.Reply)
		}
	default:
		const prefix = "ERR Protocol error: expected '$', got '"
		got, ok := strings.CutPrefix(pe.Reply, prefix)
		if !ok || len(got) != 2 || got[1] != '\'' || got[0] == '$' || got[0] == '\r' || got[0] == '\n' || bytes.IndexByte(rest, got[0]) < 0 && got[0] != ' ' {
			t.Fatalf("%q refused with %q", rest, pe.Reply)
		}
	}
}

// scanAll measures values in data one after another with one scanner.
func scanAll(s *ReplyScanner, data []byte) (lens []int, err error) {
	for off := 0; off < len(data); {
		n, err := s.Next(data[off:])
		if err != nil || n == 0 {
			return lens, err
		}
		lens = append(lens, n)
		off += n
	}
	return lens, nil
}

// scanChunked measures the values in data as they come in random reads
// of up to maxChunk bytes (see FuzzReplyScanner); with pass, a random part
// of each incomplete value is dropped (Passable, Drop) as it comes.
func scanChunked(t *testing.T, data []byte, r *rand.Rand, maxChunk int, pass bool) (lens []int, err error) {
	var s ReplyScanner
	start, fed := 0, 0
	passed := 0 // bytes of the value being read already dropped
	for fed < len(data) {
		fed = min(fed+1+r.Intn(maxChunk), len(data))
		for start < fed {
			buf := append([]byte(nil), data[start:fed]...)
			n, err := s.Next(buf)
			for i := range buf {
				buf[i] = '.'
			}
			if err != nil {
				return lens, err
			}
			if n == 0 {
				if k := s.Passable(fed - start); pass && k > 0 {
					if k > fed-start {
						t.Fatalf("Passable(%d) = %d", fed-start, k)
					}
					k = r.Intn(k + 1)
					s.Drop(k)
					start += k
					passed += k
				}
				break
			}
			lens = append(lens, passed+n)
			start += n
			passed = 0
		}
	}
	return lens, nil
}

func FuzzReplyScanner(f *testing.F) {
	for _, c := range replyCases {
		f.Add([]byte(c.raw), int64(1), 0)
	}
	for _, m := range malformedReplies {
		f.Add([]byte(m), int64(2), 3)
	}
	var all []byte
	for _, c := range replyCases {
		all = append(all, c.raw...)
	}
	f.Add(all, int64(3), 40)
	f.Fuzz(func(t *testing.T, data []byte, seed int64, limit int) {
		lens, err := scanAll(&ReplyScanner{}, data)
		if err != nil && !errors.Is(err, ErrBadReply) {
			t.Fatalf("error %v is not ErrBadReply", err)
		}
		consumed := 0
		for _, n := range lens {
			consumed += n
		}

		// Chunked: the bytes come in random reads; each call gets a new
		// copy of what is unconsumed, the old one scribbled over. Then
		// again, and after each incomplete answer a random part of what
		// Passable allows is passed on and dropped, as the event loop does
		// with a large reply. The same values and the same error each time.
		r := rand.New(rand.NewSource(seed))
		maxChunk := 1 + r.Intn(1+len(data))
		for _, pass := range []bool{false, true} {
			clens, cerr := scanChunked(t, data, r, maxChunk, pass)
			if fmt.Sprint(clens) != fmt.Sprint(lens) || cerr != err {
				t.Fatalf("whole: %v, %v\nchunked (passing on %v): %v, %v", lens, err, pass, clens, cerr)
			}
		}

		// AppendValue, through a 16-byte buffer and reads of any size,
		// without and with a limit.
		limit = limit % 64
		wrap := []func(io.Reader) io.Reader{same, iotest.OneByteReader, iotest.HalfReader}[r.Intn(3)]
		for _, lim := range []int{0, limit} {
			rd := &Reader{R: bufio.NewReaderSize(wrap(bytes.NewReader(data)), 16)}
			off := 0
			for _, n := range lens {
				out, over, err := rd.AppendValue([]byte("p"), lim)
				value := data[off : off+n]
				off += n
				switch {
				case err != nil:
					t.Fatalf("limit %d: AppendValue of %q: %v", lim, value, err)
				case lim > 0 && over != (1+n > lim):
					t.Fatalf("limit %d: AppendValue of %d bytes after 1: overflow %v", lim, n, over)
				case !over && string(out) != "p"+string(value):
					t.Fatalf("limit %d: AppendValue appended %q, Next measured %q", lim, out, value)
				case over && (len(out) > max(lim, 1) || !bytes.HasPrefix(append([]byte("p"), value...), out)):
					t.Fatalf("limit %d: overflowing value kept %q", lim, out)
				}
			}
			out, _, aerr := rd.AppendValue(nil, lim)
			switch {
			case err != nil:
				if !errors.Is(aerr, ErrBadReply) {
					t.Fatalf("limit %d: Next refused %q, AppendValue: %q, %v", lim, data[off:], out, aerr)
				}
			case off == len(data):
				if aerr != io.EOF {
					t.Fatalf("limit %d: at the end: %q, %v; want io.EOF", lim, out, aerr)
				}
			default:
				if aerr != io.ErrUnexpectedEOF {
					t.Fatalf("limit %d: Next waits for more after %q, AppendValue: %q, %v", lim, data[off:], out, aerr)
				}
			}
		}
	})
}
