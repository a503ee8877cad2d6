package proxy

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// The differential tests run the same commands against a Redis server
// directly and against the proxy in front of a second, identical server, and
// compare the raw reply bytes: a client must not be able to tell the proxy
// from Redis (apart from the documented refusals, which are left out here).
//
// Replies that legitimately differ between two servers are normalised, never
// skipped silently:
//   - commands whose answer depends on the clock or on randomness (RANDOMKEY,
//     SPOP, SRANDMEMBER, HRANDFIELD, ZRANDMEMBER, TIME, INFO, CLIENT ID/LIST,
//     HELLO, OBJECT IDLETIME/FREQ, XADD with "*" IDs, DEBUG) are not generated;
//     stream IDs are explicit and increasing;
//   - TTL/PTTL/EXPIRETIME: any positive value compares equal (the two servers
//     see the command a few microseconds apart); expirations are at least
//     1000 s away, so no key expires during a run, and EXPIRE GT/LT (whose
//     answer depends on which millisecond each server is in) is not used;
//   - replies listing the members of a hash table (SMEMBERS, SINTER, SUNION,
//     SDIFF, HGETALL, HKEYS, HVALS, KEYS, [HSZ]SCAN with a COUNT large enough
//     to finish in one call) are sorted before comparing: each Redis process
//     seeds its hash function at random, so their order differs between two
//     servers. The elements themselves are compared byte for byte.
//   - ZRANGE ... BYLEX only over the whole range ("-" "+"): other lexical
//     ranges over unequal scores are unspecified and depend on the random
//     levels of Redis's skip list;
//   - SORT ... ALPHA replies are sorted when they hold a NUL byte (see
//     dtSortAlpha); UNSUBSCRIBE names its channels (without arguments they
//     come in hash order);
//   - an EXEC reply's elements are normalised as the commands queued;
//   - with concurrent sequences, nothing reads or changes the whole keyspace
//     or the script cache (DBSIZE, KEYS *, FLUSHDB, SWAPDB, SCRIPT EXISTS).
//
// TestDifferentialScenarios holds scripted cases, most of them divergences
// the random sequences found, reduced to a few commands.

var (
	dtSeedFlag = flag.Int64("diffseed", 0, "seed of the differential tests; 0 picks one from the clock")
	dtNFlag    = flag.Int("diffn", 0, "commands per sequence in the differential tests; 0 means the default")
)

// dtSeed returns the seed to use and logs how to run the test again with it.
func dtSeed(t *testing.T) int64 {
	seed := *dtSeedFlag
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000_000
	}
	t.Logf("seed %d (rerun with -diffseed=%d)", seed, seed)
	return seed
}

func dtCount(def int) int {
	if *dtNFlag > 0 {
		return *dtNFlag
	}
	return def
}

// dtSplit returns the header line of an array reply and the raw bytes of
// each of its elements.
func dtSplit(raw []byte) (hdr []byte, elems [][]byte, ok bool) {
	v, err := resptest.Parse(raw)
	if err != nil || raw[0] != '*' {
		return nil, nil, false
	}
	hdr = raw[:bytes.IndexByte(raw, '\n')+1]
	for _, e := range v.Elems {
		elems = append(elems, e.Raw)
	}
	return hdr, elems, true
}

// dtNorm says how a reply is normalised before comparison.
type dtNorm uint8

const (
	dtExact     dtNorm = iota
	dtSortElems        // a set's members: order is the server's hash order
	dtSortPairs        // a hash's field/value pairs
	dtTTL              // a remaining time: every positive value is the same
	dtScanElems        // [cursor, [members]]
	dtScanPairs        // [cursor, [field, value, ...]]
	// dtSortAlpha is SORT ... ALPHA: it compares C strings, so members that
	// differ only after a NUL byte tie, and ties keep the order the server
	// iterated them in, which for a set (RENAME can make a "list" key one)
	// is its hash order; with LIMIT, which of the tied members make the cut
	// differs too. Each member is compared as SORT saw it: cut at its first
	// NUL byte.
	dtSortAlpha
)

// dtNormaliseCmd normalises c's reply; an EXEC's elements are normalised as
// the commands it ran.
func dtNormaliseCmd(c dtCmd, raw []byte) []byte {
	if c.queued != nil {
		if hdr, elems, ok := dtSplit(raw); ok && len(elems) == len(c.queued) {
			for i := range elems {
				elems[i] = dtNormalise(c.queued[i], elems[i])
			}
			return slices.Concat(append([][]byte{hdr}, elems...)...)
		}
	}
	return dtNormalise(c.norm, raw)
}

func dtNormalise(n dtNorm, raw []byte) []byte {
	switch n {
	case dtTTL:
		if len(raw) > 3 && raw[0] == ':' {
			if v, err := strconv.ParseInt(string(raw[1:len(raw)-2]), 10, 64); err == nil && v > 0 {
				return []byte(":<positive>\r\n")
			}
		}
	case dtSortAlpha:
		hdr, elems, ok := dtSplit(raw)
		if !ok {
			return raw
		}
		for i, e := range elems {
			if e[0] == '$' {
				v := e[bytes.IndexByte(e, '\n')+1 : len(e)-2]
				if j := bytes.IndexByte(v, 0); j >= 0 {
					elems[i] = fmt.Appendf(nil, "$%d\r\n%s\r\n", j, v[:j])
				}
			}
		}
		return slices.Concat(append([][]byte{hdr}, elems...)...)
	case dtSortElems, dtSortPairs:
		hdr, elems, ok := dtSplit(raw)
		if !ok {
			return raw
		}
		if n == dtSortPairs && len(elems)%2 == 0 {
			pairs := make([][]byte, 0, len(elems)/2)
			for i := 0; i < len(elems); i += 2 {
				pairs = append(pairs, slices.Concat(elems[i], elems[i+1]))
			}
			elems = pairs
		}
		slices.SortFunc(elems, bytes.Compare)
		return slices.Concat(append([][]byte{hdr}, elems...)...)
	case dtScanElems, dtScanPairs:
		hdr, elems, ok := dtSplit(raw)
		if !ok || len(elems) != 2 {
			return raw
		}
		inner := dtSortElems
		if n == dtScanPairs {
			inner = dtSortPairs
		}
		return slices.Concat(hdr, elems[0], dtNormalise(inner, elems[1]))
	}
	return raw
}

// --- commands ---

// dtCmd is one generated command.
type dtCmd struct {
	args    []string // may hold any bytes
	norm    dtNorm
	inline  bool     // sent as an inline (telnet) command
	replies int      // replies it gets; 0 means 1
	queued  []dtNorm // EXEC: how to normalise each element of its reply
}

func (c dtCmd) nreplies() int { return max(c.replies, 1) }

func (c dtCmd) encode(dst []byte) []byte {
	if c.inline {
		return append(append(dst, strings.Join(c.args, " ")...), "\r\n"...)
	}
	return resptest.AppendCmd(dst, c.args...)
}

func (c dtCmd) String() string {
	var b strings.Builder
	for i, a := range c.args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if len(a) > 60 {
			fmt.Fprintf(&b, "%q...(%d bytes)", a[:40], len(a))
		} else {
			fmt.Fprintf(&b, "%q", a)
		}
	}
	if c.inline {
		b.WriteString(" [inline]")
	}
	return b.String()
}

// dtPlain reports whether an argument can be sent in an inline command and
// be read back unchanged by both Redis and the proxy.
func dtPlain(a string) bool {
	if a == "" {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < '!' || c > '~' || c == '"' || c == '\'' {
			return false
		}
	}
	return true
}

// --- generator ---

// dtGen generates a random command sequence over the keys of one prefix.
type dtGen struct {
	r        *rand.Rand
	p        string // key prefix
	shared   bool   // other sequences run at the same time on the same servers
	blocking bool   // may use blocking commands and SUBSCRIBE (a tunnel in the proxy)
	xid      int64  // last stream ID used
	big      string // a ~1 MB value
	loaded   []string
	inMulti  bool
	queued   []dtNorm // norms of the commands queued in the open transaction
	out      []dtCmd
}

func newDTGen(seed int64, prefix string, shared, blocking bool) *dtGen {
	g := &dtGen{r: rand.New(rand.NewSource(seed)), p: prefix, shared: shared, blocking: blocking, xid: 1000}
	b := make([]byte, 1<<20+g.r.Intn(1000))
	g.r.Read(b)
	g.big = string(b)
	return g
}

var dtKinds = []string{"str", "cnt", "list", "hash", "set", "zset", "strm", "bits", "hll", "geo", "bin\x00\r\n"}

// key returns a key of the given kind, or now and then one of any kind, so
// that wrong-type errors happen as they do in real use.
func (g *dtGen) key(kind string) string {
	if g.r.Intn(7) == 0 {
		kind = dtKinds[g.r.Intn(len(dtKinds))]
	}
	return g.p + kind + ":" + strconv.Itoa(g.r.Intn(3))
}

func (g *dtGen) pick(ss ...string) string { return ss[g.r.Intn(len(ss))] }
func (g *dtGen) n(lo, hi int) string      { return strconv.Itoa(lo + g.r.Intn(hi-lo+1)) }
func (g *dtGen) chance(n int) bool        { return g.r.Intn(n) == 0 }

var dtWords = []string{"a", "b", "c", "apple", "banana", "1", "2", "3", "10", "-5", "3.14", "x y", "", "\r\n", "\x00", "a\r\nb\x00c", "ü", "$3", "*1"}

func (g *dtGen) member() string { return dtWords[g.r.Intn(len(dtWords))] }

func (g *dtGen) val() string {
	switch g.r.Intn(12) {
	case 0:
		return ""
	case 1:
		return g.pick("\r\n", "\x00", "line1\r\nline2", "\x00\x01\xff\r\n$-1\r\n*2\r\n", "+OK\r\n")
	case 2:
		return strconv.Itoa(g.r.Intn(200) - 50)
	case 3:
		return strconv.FormatFloat(g.r.Float64()*100-50, 'f', g.r.Intn(4), 64)
	case 4:
		b := make([]byte, g.r.Intn(400))
		g.r.Read(b)
		return string(b)
	case 5:
		if g.chance(40) {
			return g.big
		}
	}
	return g.member()
}

func (g *dtGen) emit(norm dtNorm, args ...string) *dtCmd {
	c := dtCmd{args: args, norm: norm}
	if g.chance(12) && !slices.ContainsFunc(args, func(a string) bool { return !dtPlain(a) }) {
		c.inline = true
	}
	g.out = append(g.out, c)
	if g.inMulti {
		g.queued = append(g.queued, norm)
	}
	return &g.out[len(g.out)-1]
}

func (g *dtGen) cmd(args ...string) *dtCmd { return g.emit(dtExact, args...) }

func (g *dtGen) strings() {
	k := g.key("str")
	switch g.r.Intn(14) {
	case 0:
		g.cmd("SET", k, g.val())
	case 1:
		opts := [][]string{{"NX"}, {"XX"}, {"GET"}, {"EX", g.n(1000, 9000)}, {"PX", g.n(1000000, 9000000)},
			{"KEEPTTL"}, {"NX", "GET"}, {"EX", "0"}, {"EX", "abc"}, {"NX", "XX"}, {"EXAT", "4102444800"}}
		g.cmd(append([]string{"SET", k, g.val()}, opts[g.r.Intn(len(opts))]...)...)
	case 2, 3:
		g.cmd("GET", k)
	case 4:
		g.cmd("MSET", k, g.val(), g.key("str"), g.val())
	case 5:
		g.cmd("MGET", k, g.key("str"), g.key("str"), g.key("list"))
	case 6:
		g.cmd(g.pick("SETNX", "GETSET"), k, g.val())
	case 7:
		g.cmd("STRLEN", k)
	case 8:
		g.cmd("GETDEL", k)
	case 9:
		g.cmd(append([]string{"GETEX", k}, [][]string{{}, {"PERSIST"}, {"EX", g.n(1000, 5000)}}[g.r.Intn(3)]...)...)
	case 10:
		g.cmd("APPEND", k, g.val())
	case 11:
		off := g.n(0, 40)
		if g.chance(10) {
			off = g.n(900000, 1100000) // a ~1 MB zero-padded string
		}
		g.cmd("SETRANGE", k, off, g.val())
	case 12:
		g.cmd(g.pick("GETRANGE", "SUBSTR"), k, g.pick("0", "1", "-3", "5", "100000"), g.pick("-1", "0", "3", "-100", "1000000"))
	case 13:
		g.cmd("LCS", k, g.key("str"))
	}
}

func (g *dtGen) counters() {
	k := g.key("cnt")
	switch g.r.Intn(6) {
	case 0:
		g.cmd("INCR", k)
	case 1:
		g.cmd("DECR", k)
	case 2:
		g.cmd(g.pick("INCRBY", "DECRBY"), k, g.pick("1", "-7", "1000", "abc", "9223372036854775807", "1.5"))
	case 3:
		g.cmd("INCRBYFLOAT", k, g.pick("0.1", "-1.5", "1e3", "5.0e3", "abc", "inf", "10", "3.0000000000000001", "-0.0"))
	case 4:
		g.cmd("GET", k)
	case 5:
		g.cmd("SET", k, g.pick("0", "10", "-3", "1.5", "abc", "9223372036854775806"))
	}
}

func (g *dtGen) lists() {
	k := g.key("list")
	switch g.r.Intn(16) {
	case 0, 1:
		args := []string{g.pick("LPUSH", "RPUSH"), k}
		for i := g.r.Intn(4); i >= 0; i-- {
			args = append(args, g.val())
		}
		g.cmd(args...)
	case 2:
		g.cmd(g.pick("LPUSHX", "RPUSHX"), k, g.val())
	case 3:
		if g.chance(2) {
			g.cmd(g.pick("LPOP", "RPOP"), k)
		} else {
			g.cmd(g.pick("LPOP", "RPOP"), k, g.pick("0", "2", "10", "-1"))
		}
	case 4, 5:
		g.cmd("LRANGE", k, g.pick("0", "1", "-2", "-100"), g.pick("-1", "0", "2", "100"))
	case 6:
		g.cmd("LLEN", k)
	case 7:
		g.cmd("LINDEX", k, g.pick("0", "-1", "3", "100"))
	case 8:
		g.cmd("LSET", k, g.pick("0", "-1", "5"), g.val())
	case 9:
		g.cmd("LINSERT", k, g.pick("BEFORE", "AFTER", "MIDDLE"), g.member(), g.val())
	case 10:
		g.cmd("LREM", k, g.pick("0", "1", "-2"), g.member())
	case 11:
		g.cmd("LTRIM", k, g.pick("0", "1", "-5"), g.pick("-1", "3", "10"))
	case 12:
		args := []string{"LPOS", k, g.member()}
		if g.chance(2) {
			args = append(args, "RANK", g.pick("1", "-1", "2", "0"))
		}
		if g.chance(2) {
			args = append(args, "COUNT", g.pick("0", "2"))
		}
		g.cmd(args...)
	case 13:
		g.cmd("LMOVE", k, g.key("list"), g.pick("LEFT", "RIGHT"), g.pick("LEFT", "RIGHT"))
	case 14:
		g.cmd("RPOPLPUSH", k, g.key("list"))
	case 15:
		args := []string{g.pick("SORT", "SORT_RO"), k}
		norm := dtExact
		if g.chance(2) {
			args = append(args, "ALPHA")
			norm = dtSortAlpha
		}
		if g.chance(3) {
			args = append(args, "DESC")
		}
		if g.chance(3) {
			args = append(args, "LIMIT", "1", "3")
		}
		g.emit(norm, args...)
	}
}

func (g *dtGen) hashes() {
	k := g.key("hash")
	switch g.r.Intn(15) {
	case 0, 1:
		args := []string{"HSET", k}
		for i := g.r.Intn(3); i >= 0; i-- {
			args = append(args, g.member(), g.val())
		}
		g.cmd(args...)
	case 2, 3:
		g.cmd("HGET", k, g.member())
	case 4:
		g.cmd("HMGET", k, g.member(), g.member(), g.member())
	case 5:
		g.cmd("HDEL", k, g.member(), g.member())
	case 6:
		g.cmd(g.pick("HLEN", "EXISTS"), k)
	case 7:
		g.cmd("HEXISTS", k, g.member())
	case 8:
		g.cmd("HINCRBY", k, g.member(), g.pick("1", "-3", "x"))
	case 9:
		g.cmd("HINCRBYFLOAT", k, g.member(), g.pick("0.5", "-2", "1e2", "nan"))
	case 10:
		g.cmd("HSETNX", k, g.member(), g.val())
	case 11:
		g.cmd("HSTRLEN", k, g.member())
	case 12:
		g.emit(dtSortPairs, "HGETALL", k)
	case 13:
		g.emit(dtSortElems, g.pick("HKEYS", "HVALS"), k)
	case 14:
		if g.chance(4) {
			// Past 128 fields the encoding turns from listpack to hashtable.
			args := []string{"HSET", k}
			for i := 0; i < 130; i++ {
				args = append(args, "f"+strconv.Itoa(i), strconv.Itoa(i))
			}
			g.cmd(args...)
		} else {
			g.emit(dtScanPairs, "HSCAN", k, "0", "COUNT", "1000")
		}
	}
}

func (g *dtGen) sets() {
	k := g.key("set")
	switch g.r.Intn(13) {
	case 0, 1:
		args := []string{"SADD", k}
		for i := g.r.Intn(4); i >= 0; i-- {
			args = append(args, g.member())
		}
		g.cmd(args...)
	case 2:
		g.cmd("SREM", k, g.member(), g.member())
	case 3:
		g.cmd("SCARD", k)
	case 4:
		g.cmd("SISMEMBER", k, g.member())
	case 5:
		g.cmd("SMISMEMBER", k, g.member(), g.member(), g.member())
	case 6, 7:
		g.emit(dtSortElems, "SMEMBERS", k)
	case 8:
		g.emit(dtSortElems, g.pick("SINTER", "SUNION", "SDIFF"), k, g.key("set"))
	case 9:
		g.cmd(g.pick("SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"), g.key("set"), k, g.key("set"))
	case 10:
		g.cmd("SMOVE", k, g.key("set"), g.member())
	case 11:
		args := []string{"SINTERCARD", "2", k, g.key("set")}
		if g.chance(2) {
			args = append(args, "LIMIT", g.pick("0", "1", "-1"))
		}
		g.cmd(args...)
	case 12:
		if g.chance(5) {
			// Integers only: an intset, then a hashtable past 512 members.
			args := []string{"SADD", k}
			for i := 0; i < 520; i++ {
				args = append(args, strconv.Itoa(i*7))
			}
			g.cmd(args...)
		} else {
			g.emit(dtScanElems, "SSCAN", k, "0", "COUNT", "1000")
		}
	}
}

func (g *dtGen) score() string {
	return g.pick("1", "2", "2.5", "-1", "+inf", "-inf", "10", "1e2", "0", "3", "nan")
}

func (g *dtGen) zsets() {
	k := g.key("zset")
	switch g.r.Intn(20) {
	case 0, 1, 2:
		args := []string{"ZADD", k}
		if g.chance(3) {
			args = append(args, g.pick("NX", "XX", "GT", "LT", "CH", "NX GT"))
			if args[2] == "NX GT" {
				args = append(args[:2], "NX", "GT")
			}
		}
		if g.chance(8) {
			args = append(args, "INCR", g.score(), g.member())
		} else {
			for i := g.r.Intn(3); i >= 0; i-- {
				args = append(args, g.score(), g.member())
			}
		}
		g.cmd(args...)
	case 3:
		g.cmd("ZINCRBY", k, g.score(), g.member())
	case 4:
		g.cmd("ZSCORE", k, g.member())
	case 5:
		g.cmd("ZMSCORE", k, g.member(), g.member())
	case 6:
		g.cmd(g.pick("ZRANK", "ZREVRANK"), k, g.member())
	case 7:
		g.cmd("ZCARD", k)
	case 8:
		g.cmd("ZCOUNT", k, g.pick("-inf", "0", "(1", "2"), g.pick("+inf", "3", "(10", "1"))
	case 9, 10, 11:
		args := []string{"ZRANGE", k}
		switch g.r.Intn(3) {
		case 0:
			args = append(args, g.pick("0", "1", "-2"), g.pick("-1", "2", "100"))
			if g.chance(3) {
				args = append(args, "REV")
			}
		case 1:
			lo, hi := g.pick("-inf", "0", "(1", "2"), g.pick("+inf", "3", "(10", "1")
			rev := g.chance(2)
			if rev {
				lo, hi = hi, lo
			}
			args = append(args, lo, hi, "BYSCORE")
			if rev {
				args = append(args, "REV")
			}
			if g.chance(2) {
				args = append(args, "LIMIT", g.pick("0", "1"), g.pick("1", "2", "-1"))
			}
		case 2:
			// Only the whole range: with unequal scores a lexicographic
			// range is unspecified, and what Redis returns then depends on
			// its skip list's random levels.
			args = append(args, "-", "+", "BYLEX")
			if g.chance(2) {
				args = append(args, "LIMIT", g.pick("0", "1"), g.pick("2", "-1"))
			}
		}
		if !slices.Contains(args, "BYLEX") && g.chance(2) {
			args = append(args, "WITHSCORES")
		}
		g.cmd(args...)
	case 12:
		g.cmd(g.pick("ZRANGEBYSCORE", "ZREVRANGEBYSCORE"), k, g.pick("-inf", "+inf", "1"), g.pick("+inf", "-inf", "2"), "WITHSCORES")
	case 13:
		g.cmd("ZREVRANGE", k, "0", g.pick("-1", "1"))
	case 14:
		g.cmd("ZREM", k, g.member(), g.member())
	case 15:
		g.cmd("ZREMRANGEBYSCORE", k, g.pick("-inf", "2"), g.pick("1", "(3"))
	case 16:
		if g.chance(2) {
			g.cmd(g.pick("ZPOPMIN", "ZPOPMAX"), k)
		} else {
			g.cmd(g.pick("ZPOPMIN", "ZPOPMAX"), k, g.pick("2", "0", "-1"))
		}
	case 17:
		args := []string{g.pick("ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"), g.key("zset"), "2", k, g.key("zset")}
		if args[0] != "ZDIFFSTORE" && g.chance(2) {
			args = append(args, "WEIGHTS", "1", "2", "AGGREGATE", g.pick("SUM", "MIN", "MAX"))
		}
		g.cmd(args...)
	case 18:
		g.cmd(g.pick("ZINTER", "ZUNION"), "2", k, g.key("zset"), "WITHSCORES")
	case 19:
		if g.chance(2) {
			g.cmd("ZLEXCOUNT", k, "-", "+")
		} else {
			g.cmd("ZRANGESTORE", g.key("zset"), k, "0", "-1")
		}
	}
}

func (g *dtGen) streamID() string {
	g.xid += int64(1 + g.r.Intn(3))
	switch g.r.Intn(8) {
	case 0:
		return strconv.FormatInt(g.xid, 10) + "-*"
	case 1:
		return g.pick("0-0", "1-1", "abc")
	}
	return strconv.FormatInt(g.xid, 10) + "-" + g.n(0, 3)
}

func (g *dtGen) streams() {
	k := g.key("strm")
	switch g.r.Intn(9) {
	case 0, 1, 2:
		args := []string{"XADD", k}
		if g.chance(5) {
			args = append(args, "MAXLEN", g.pick("5", "~", "="), "5")
			if args[len(args)-2] == "5" {
				args = args[:len(args)-1]
			}
		}
		args = append(args, g.streamID())
		for i := g.r.Intn(2); i >= 0; i-- {
			args = append(args, g.member(), g.val())
		}
		g.cmd(args...)
	case 3, 4:
		args := []string{"XRANGE", k, g.pick("-", "0", "1001", "(1002"), g.pick("+", "99999999", "1005")}
		if g.chance(2) {
			args = append(args, "COUNT", g.pick("1", "3"))
		}
		g.cmd(args...)
	case 5:
		g.cmd("XREVRANGE", k, "+", "-", "COUNT", g.pick("2", "10"))
	case 6:
		g.cmd("XLEN", k)
	case 7:
		g.cmd("XDEL", k, strconv.FormatInt(g.xid-int64(g.r.Intn(5)), 10)+"-1")
	case 8:
		g.cmd("XTRIM", k, "MAXLEN", g.pick("0", "2", "10"))
	}
}

func (g *dtGen) bitmaps() {
	k := g.key("bits")
	switch g.r.Intn(8) {
	case 0, 1:
		off := g.n(0, 200)
		if g.chance(20) {
			off = g.n(100000, 900000)
		}
		g.cmd("SETBIT", k, off, g.pick("0", "1", "1", "2"))
	case 2:
		g.cmd("GETBIT", k, g.n(0, 200))
	case 3:
		args := []string{"BITCOUNT", k}
		if g.chance(2) {
			args = append(args, g.pick("0", "1", "-2"), g.pick("-1", "3", "10"))
			if g.chance(2) {
				args = append(args, g.pick("BYTE", "BIT"))
			}
		}
		g.cmd(args...)
	case 4:
		op := g.pick("AND", "OR", "XOR", "NOT")
		if op == "NOT" {
			g.cmd("BITOP", op, g.key("bits"), k)
		} else {
			g.cmd("BITOP", op, g.key("bits"), k, g.key("bits"))
		}
	case 5:
		args := []string{"BITPOS", k, g.pick("0", "1")}
		if g.chance(2) {
			args = append(args, g.pick("0", "2"), g.pick("-1", "5"))
		}
		g.cmd(args...)
	case 6:
		g.cmd("BITFIELD", k, "SET", "u8", g.n(0, 64), g.n(0, 300), "GET", "u4", "0", "OVERFLOW", g.pick("SAT", "WRAP", "FAIL"), "INCRBY", "i5", "100", g.n(-20, 20))
	case 7:
		g.cmd("BITFIELD_RO", k, "GET", "u8", g.n(0, 64))
	}
}

func (g *dtGen) hll() {
	k := g.key("hll")
	switch g.r.Intn(4) {
	case 0, 1:
		args := []string{"PFADD", k}
		for i := g.r.Intn(5); i > 0; i-- {
			args = append(args, g.member()+strconv.Itoa(g.r.Intn(50)))
		}
		g.cmd(args...)
	case 2:
		g.cmd("PFCOUNT", k, g.key("hll"))
	case 3:
		g.cmd("PFMERGE", g.key("hll"), k, g.key("hll"))
	}
}

func (g *dtGen) coord() (string, string) {
	lon := strconv.FormatFloat(g.r.Float64()*20-10, 'f', 4, 64)
	lat := strconv.FormatFloat(g.r.Float64()*20+40, 'f', 4, 64)
	if g.chance(15) {
		lat = "89.9"
	}
	return lon, lat
}

func (g *dtGen) geo() {
	k := g.key("geo")
	switch g.r.Intn(6) {
	case 0, 1:
		args := []string{"GEOADD", k}
		for i := g.r.Intn(3); i >= 0; i-- {
			lon, lat := g.coord()
			args = append(args, lon, lat, g.member())
		}
		g.cmd(args...)
	case 2:
		g.cmd("GEODIST", k, g.member(), g.member(), g.pick("m", "km", "mi"))
	case 3:
		g.cmd(g.pick("GEOPOS", "GEOHASH"), k, g.member(), g.member())
	case 4:
		lon, lat := g.coord()
		g.cmd("GEOSEARCH", k, "FROMLONLAT", lon, lat, "BYRADIUS", g.pick("100", "2000"), "km", "ASC", "WITHDIST", "WITHCOORD", "COUNT", "5")
	case 5:
		g.cmd("GEOSEARCH", k, "FROMMEMBER", g.member(), "BYBOX", "3000", "3000", "km", "DESC", "WITHHASH")
	}
}

func (g *dtGen) keyspace() {
	k := g.key(dtKinds[g.r.Intn(len(dtKinds))])
	switch g.r.Intn(20) {
	case 0:
		g.cmd("EXISTS", k, g.key("str"), k)
	case 1, 2:
		g.cmd(g.pick("DEL", "UNLINK"), k, g.key("list"))
	case 3, 4:
		g.cmd("TYPE", k)
	case 5:
		g.cmd(g.pick("RENAME", "RENAMENX"), k, g.key(dtKinds[g.r.Intn(len(dtKinds))]))
	case 6:
		args := []string{"COPY", k, g.key("str")}
		if g.chance(2) {
			args = append(args, "REPLACE")
		}
		if g.chance(3) {
			args = append(args, "DB", g.n(0, 3))
		}
		g.cmd(args...)
	case 7, 8:
		args := []string{"EXPIRE", k, g.pick("1000", "5000", "100000", "-1", "0", "abc")}
		if g.chance(4) {
			args = append(args, g.pick("NX", "XX"))
		}
		g.cmd(args...)
	case 9:
		g.cmd(g.pick("PEXPIRE", "PEXPIREAT", "EXPIREAT"), k, g.pick("4102444800000", "4102444800", "9000000"))
	case 10, 11:
		g.emit(dtTTL, g.pick("TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"), k)
	case 12:
		g.cmd("PERSIST", k)
	case 13:
		g.cmd("TOUCH", k, g.key("str"))
	case 14:
		g.cmd("MOVE", k, g.n(0, 3))
	case 15, 16:
		g.cmd("OBJECT", "ENCODING", k)
	case 17:
		g.emit(dtSortElems, "KEYS", g.p+g.pick("*", "str*", "?et:*", "[lh]*"))
	case 18:
		if g.shared {
			g.cmd("EXISTS", k)
		} else {
			g.cmd("DBSIZE")
		}
	case 19:
		if !g.shared && g.chance(8) {
			g.cmd(strings.Fields(g.pick("FLUSHDB", "SWAPDB 0 1", "SWAPDB 2 3"))...)
		} else {
			g.cmd("TYPE", k)
		}
	}
}

var dtScripts = []string{
	"return redis.call('SET', KEYS[1], ARGV[1])",
	"return redis.call('GET', KEYS[1])",
	"return redis.call('INCRBY', KEYS[1], ARGV[1])",
	"return {KEYS[1], ARGV[1], 42, {1, 'two', false}, 3.99}",
	"return redis.pcall('LPUSH', KEYS[1], ARGV[1])",
	"return redis.call('LPUSH', KEYS[1], ARGV[1])",
	"return redis.error_reply('MYERR custom error')",
	"return redis.status_reply('FINE')",
	"return nil",
	"return true",
	"return redis.call('NOSUCHCOMMAND')",
	"this is not lua",
	"return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')",
	"return redis.call('EXISTS', KEYS[1], KEYS[2])",
}

func dtSHA(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func (g *dtGen) scripts() {
	s := dtScripts[g.r.Intn(len(dtScripts))]
	k1, k2 := g.key("str"), g.key("cnt")
	switch g.r.Intn(8) {
	case 0, 1, 2, 3:
		g.cmd("EVAL", s, "2", k1, k2, g.val(), g.val())
	case 4:
		g.cmd("EVAL_RO", s, "1", k1, g.val())
	case 5:
		g.cmd("EVAL", s, g.pick("3", "-1", "x"), k1)
	case 6:
		if !g.inMulti && g.chance(2) {
			g.cmd("SCRIPT", "LOAD", s)
			if !strings.Contains(s, "not lua") {
				g.loaded = append(g.loaded, dtSHA(s))
			}
		} else if len(g.loaded) > 0 {
			g.cmd("EVALSHA", g.loaded[g.r.Intn(len(g.loaded))], "1", k1, g.val())
		} else {
			g.cmd("EVALSHA", strings.Repeat("f", 40), "0")
		}
	case 7:
		if !g.shared {
			g.cmd("SCRIPT", "EXISTS", dtSHA(s), strings.Repeat("0", 40))
		} else {
			g.cmd("EVALSHA", strings.Repeat("0", 40), "0")
		}
	}
}

// connection runs commands about the connection itself, most of which the
// proxy answers on its own.
func (g *dtGen) connection() {
	switch g.r.Intn(11) {
	case 0:
		g.cmd("PING")
	case 1:
		g.cmd("PING", g.val())
	case 2:
		g.cmd("ECHO", g.val())
	case 3:
		g.cmd("CLIENT", "GETNAME")
	case 4:
		g.cmd("CLIENT", "SETNAME", g.pick("app-1", "", "x", g.p+"conn"))
	case 5:
		g.cmd("CLIENT", "SETNAME", g.pick("has space", "new\nline"))
	case 6:
		chans := []string{g.p + "ch1", g.p + "ch2"}[:g.r.Intn(3)]
		if g.inMulti {
			// Queued, one reply; and EXEC's reply is malformed when an
			// UNSUBSCRIBE in it names more than one channel (Redis 7.0).
			chans = chans[:min(len(chans), 1)]
		}
		c := g.cmd(append([]string{g.pick("UNSUBSCRIBE", "PUNSUBSCRIBE")}, chans...)...)
		if !g.inMulti {
			c.replies = len(chans)
		}
	case 7:
		if g.chance(2) {
			g.cmd("AUTH", "secret")
		} else {
			g.cmd("AUTH", "default", "anything")
		}
	case 8:
		g.cmd("SELECT", g.pick("abc", "16", "-1", "+1", "1.0"))
	case 9:
		g.cmd("CLIENT", "REPLY", "ON")
	case 10:
		g.cmd("CLIENT", "TRACKING", "off")
	}
}

// arity sends known commands with too few or too many arguments.
func (g *dtGen) arity() {
	cases := [][]string{
		{"GET"}, {"SET", g.key("str")}, {"LPUSH", g.key("list")}, {"HSET", g.key("hash"), "f"},
		{"ZADD", g.key("zset"), "1"}, {"EXPIRE"}, {"XADD", g.key("strm")}, {"INCRBY", g.key("cnt")},
		{"SELECT"}, {"SELECT", "1", "2"}, {"EVAL"}, {"MULTI", "x"}, {"EXEC", "x"}, {"PING", "a", "b"}, {"ECHO"},
		{"GETRANGE", "k", "0"}, {"CLIENT"}, {"CLIENT", "SETNAME"}, {"CLIENT", "SETNAME", "a", "b"},
		{"UNWATCH", "x"}, {"WATCH"}, {"DISCARD", "x"}, {"OBJECT"}, {"AUTH"}, {"GET", "a", "b"},
	}
	c := cases[g.r.Intn(len(cases))]
	for g.inMulti && (c[0] == "MULTI" || c[0] == "EXEC" || c[0] == "DISCARD") {
		// Inside MULTI, Redis ends the transaction on "EXEC x" as well
		// as flagging it; the generator's queue bookkeeping does not
		// model that, so it stays out of transactions.
		c = cases[g.r.Intn(len(cases))]
	}
	g.cmd(c...)
}

func (g *dtGen) unknown() {
	g.cmd(g.pick("NOSUCHCMD", "nosuchcmd", "x", strings.Repeat("LONGNAME", 5), "GET|X", "CLIENT|SETNAME"), g.val(), g.val())
	if g.chance(2) {
		c := &g.out[len(g.out)-1]
		c.args = []string{g.pick("CLIENT", "CONFIG", "OBJECT", "XINFO", "SCRIPT"), g.pick("NOSUCHSUB", "nosuch", strings.Repeat("s", 40))}
	}
}

func (g *dtGen) large() {
	k := g.key("str")
	switch g.r.Intn(7) {
	case 0:
		g.cmd("SET", k, g.big)
	case 1:
		g.cmd("GET", k)
	case 2:
		g.cmd("GETRANGE", k, g.pick("0", "500000", "-10"), g.pick("10", "500100", "-1"))
	case 3:
		g.cmd("APPEND", k, g.big[:g.r.Intn(len(g.big))])
	case 4:
		g.cmd("RPUSH", g.key("list"), g.big)
	case 5:
		g.cmd("HSET", g.key("hash"), "big", g.big)
	case 6:
		g.cmd("ECHO", g.big)
	}
}

// blockingCmds turn a proxy session into a tunnel; they return at once or
// after a few milliseconds, so their replies are as deterministic as any.
func (g *dtGen) blockingCmds() {
	switch g.r.Intn(6) {
	case 0:
		g.cmd(g.pick("BLPOP", "BRPOP"), g.key("list"), g.key("list"), "0.01")
	case 1:
		g.cmd("BZPOPMIN", g.key("zset"), "0.01")
	case 2:
		g.cmd("BLMOVE", g.key("list"), g.key("list"), "LEFT", "RIGHT", "0.01")
	case 3:
		g.cmd("XREAD", "BLOCK", "10", "STREAMS", g.key("strm"), "0")
	case 4:
		g.cmd("WAIT", "0", "0")
	case 5:
		if g.inMulti || !g.blocking {
			g.cmd("BLPOP", g.key("list"), "0.01")
			return
		}
		// Subscribed mode: only a few commands are allowed, the rest are
		// refused by the server; leave it again at the end.
		c1, c2 := g.p+"ch1", g.p+"ch2"
		g.cmd("SUBSCRIBE", c1, c2).replies = 2
		g.cmd("PING")
		g.cmd("GET", g.key("str"))
		g.cmd("PSUBSCRIBE", g.p+"p*")
		// Named: without arguments the channels come in hash order.
		g.cmd("UNSUBSCRIBE", c2, c1).replies = 2
		g.cmd("PUNSUBSCRIBE")
	}
}

// transaction runs MULTI with a few commands and EXEC or DISCARD.
func (g *dtGen) transaction() {
	if g.chance(10) {
		g.cmd(g.pick("EXEC", "DISCARD", "UNWATCH"))
		return
	}
	if g.chance(4) {
		g.cmd("WATCH", g.key("str"), g.key("cnt"))
		if g.chance(2) {
			g.counters() // may touch a watched key: EXEC then aborts
		}
	}
	g.multi(func() {
		switch g.r.Intn(10) {
		case 0:
			// The proxy tracks the database a queued SELECT moves to;
			// after a WATCH the EXEC may abort and leave it unchanged.
			g.cmd("SELECT", g.n(0, 3))
		case 1:
			g.cmd("MULTI") // nested: an error, the transaction goes on
			g.queued = g.queued[:len(g.queued)-1]
		case 2:
			g.cmd("WATCH", g.key("str")) // refused in MULTI, not queued
			g.queued = g.queued[:len(g.queued)-1]
		case 3:
			g.blockingCmds()
		case 4:
			g.connection()
		default:
			g.one(true)
		}
	})
}

// multi emits MULTI, up to five commands made by inner, and EXEC or DISCARD.
func (g *dtGen) multi(inner func()) {
	g.cmd("MULTI")
	g.inMulti, g.queued = true, []dtNorm{}
	for i := g.r.Intn(6); i > 0; i-- {
		inner()
	}
	g.inMulti = false
	if g.chance(5) {
		g.cmd("DISCARD")
	} else {
		g.cmd("EXEC").queued = g.queued
	}
	g.queued = nil
}

// one emits one command (or a short group) of a random family.
func (g *dtGen) one(inMulti bool) {
	type fam struct {
		w int
		f func()
	}
	fams := []fam{
		{10, g.strings}, {6, g.counters}, {8, g.lists}, {8, g.hashes}, {8, g.sets}, {10, g.zsets},
		{5, g.streams}, {5, g.bitmaps}, {3, g.hll}, {4, g.geo}, {10, g.keyspace}, {4, g.scripts},
		{2, g.arity}, {1, g.unknown}, {1, g.large},
	}
	if !inMulti {
		fams = append(fams, fam{3, g.connection}, fam{4, g.transaction}, fam{3, func() {
			g.cmd("SELECT", g.pick("0", "0", "1", "2", "3"))
		}})
		if g.blocking {
			fams = append(fams, fam{1, g.blockingCmds})
		}
		if g.chance(400) {
			g.cmd("RESET")
			return
		}
	}
	total := 0
	for _, f := range fams {
		total += f.w
	}
	n := g.r.Intn(total)
	for _, f := range fams {
		if n < f.w {
			f.f()
			return
		}
		n -= f.w
	}
}

func (g *dtGen) generate(n int) []dtCmd {
	for len(g.out) < n {
		g.one(false)
	}
	if g.inMulti {
		g.cmd("DISCARD")
	}
	return g.out
}

// --- running ---

// dtReplyOf returns the normalised replies of cmds[i] (it may have several)
// from a batch's flat reply list, or a description of what is missing.
func dtReplyOf(cmds []dtCmd, i int, replies [][]byte, err error) []byte {
	at := 0
	for j := 0; j < i; j++ {
		at += cmds[j].nreplies()
	}
	var out []byte
	for k := 0; k < cmds[i].nreplies(); k++ {
		if at+k >= len(replies) {
			return append(out, fmt.Sprintf("<no reply: %v>", err)...)
		}
		out = append(out, dtNormaliseCmd(cmds[i], replies[at+k])...)
	}
	return out
}

// dtRun sends cmds to both servers in batches of random sizes and reports
// the first reply that differs, with the commands before it. It returns
// whether the replies were the same throughout.
//
// With cuts, a batch ends only where cuts says it may (the end of a
// transaction, say).
func dtRun(t *testing.T, name string, seed int64, cmds []dtCmd, direct, proxied *resptest.Conn, cuts ...map[int]bool) bool {
	r := rand.New(rand.NewSource(seed ^ 0x5eed))
	var req []byte
	for start := 0; start < len(cmds); {
		size := 1
		switch r.Intn(4) {
		case 0:
			size = 2 + r.Intn(10)
		case 1:
			size = 2 + r.Intn(200)
		}
		end := min(start+size, len(cmds))
		for len(cuts) > 0 && end < len(cmds) && !cuts[0][end] {
			end++
		}
		batch := cmds[start:end]
		req = req[:0]
		n := 0
		for _, c := range batch {
			req = c.encode(req)
			n += c.nreplies()
		}
		ra, erra := direct.Pipeline(req, n, 20*time.Second)
		if erra != nil {
			t.Errorf("%s: redis itself failed on commands %d..%d: %v", name, start, end-1, erra)
			return false
		}
		rp, errp := proxied.Pipeline(req, n, 20*time.Second)
		for i := range batch {
			a := dtReplyOf(batch, i, ra, erra)
			p := dtReplyOf(batch, i, rp, errp)
			if bytes.Equal(a, p) {
				continue
			}
			var ctx strings.Builder
			for j := max(0, start+i-30); j < start+i; j++ {
				fmt.Fprintf(&ctx, "\n      #%d %s", j, cmds[j])
			}
			t.Errorf("%s: reply to command #%d differs (seed %d, batch of %d from #%d)\n  command: %s\n  redis:   %s\n  proxy:   %s\n  before it:%s",
				name, start+i, seed, len(batch), start, cmds[start+i], resptest.Quote(a), resptest.Quote(p), ctx.String())
			return false
		}
		if errp != nil {
			t.Errorf("%s: proxy connection failed after commands %d..%d: %v", name, start, end-1, errp)
			return false
		}
		start = end
	}
	return true
}

// dtServers starts Redis A (direct) and Redis B behind a proxy, both empty.
// At the end it logs how often clients moved off the event loop and back.
func dtServers(t *testing.T, cfg Config) (direct, proxied string) {
	a, b := dtRedisPair(t)
	tp := startProxy(t, cfg, b)
	t.Cleanup(func() {
		t.Logf("clients moved off the event loop %v times, back %v times",
			testutil.ToFloat64(tp.m.handoffs), testutil.ToFloat64(tp.m.loopReturns))
	})
	return a, tp.Addr
}

// dtRedisPair starts two empty Redis servers.
func dtRedisPair(t *testing.T) (a, b string) {
	ra := redistest.Start(t)
	rb := redistest.Start(t)
	for _, s := range []*redistest.Server{ra, rb} {
		if _, err := s.Do("FLUSHALL"); err != nil {
			t.Fatalf("FLUSHALL %s: %v", s.Addr, err)
		}
	}
	return ra.Addr, rb.Addr
}

// TestDifferentialRandom runs one random sequence of a few thousand commands
// over about twenty command families, partly pipelined, and requires the
// proxy's raw replies to equal Redis's.
func TestDifferentialRandom(t *testing.T) {
	seed := dtSeed(t)
	n := dtCount(10000)
	direct, proxied := dtServers(t, Config{})
	cmds := newDTGen(seed, "d:", false, false).generate(n)
	start := time.Now()
	if dtRun(t, "sequence", seed, cmds, resptest.Dial(t, direct), resptest.Dial(t, proxied)) {
		t.Logf("%d commands, identical replies, %v", len(cmds), time.Since(start).Round(time.Millisecond))
	}
}

// TestDifferentialConcurrent runs three random sequences at once on distinct
// key prefixes, each over its own connections; the third may use blocking
// commands and SUBSCRIBE, which make its proxy session a tunnel.
func TestDifferentialConcurrent(t *testing.T) {
	seed := dtSeed(t)
	n := dtCount(4000)
	direct, proxied := dtServers(t, Config{})
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 3; i++ {
		s := seed + int64(i)*7919
		cmds := newDTGen(s, fmt.Sprintf("c%d:", i), true, i == 2).generate(n)
		a, p := resptest.Dial(t, direct), resptest.Dial(t, proxied)
		wg.Add(1)
		go func() {
			defer wg.Done()
			dtRun(t, fmt.Sprintf("sequence %d", i), s, cmds, a, p)
		}()
	}
	wg.Wait()
	t.Logf("3 x %d commands in %v", n, time.Since(start).Round(time.Millisecond))
}

// dtStep is one step of a scripted scenario: raw bytes sent by one client,
// and how many replies to read. A negative count means read that many but do
// not compare them (a reply carrying a connection ID, say).
type dtStep struct {
	client  int
	send    string
	replies int
}

// dtEach makes one step (one write, one reply) of each inline command.
func dtEach(client int, cmds ...string) []dtStep {
	steps := make([]dtStep, len(cmds))
	for i, c := range cmds {
		steps[i] = dtStep{client, c + "\r\n", 1}
	}
	return steps
}

// dtPipelined makes one step of all the inline commands, written at once.
func dtPipelined(client int, cmds ...string) []dtStep {
	return []dtStep{{client, strings.Join(cmds, "\r\n") + "\r\n", len(cmds)}}
}

// dtScenario runs steps against Redis and against the proxy, with as many
// client connections as the steps name, and compares every step's replies.
func dtScenario(t *testing.T, direct, proxied string, steps []dtStep) {
	t.Helper()
	conns := map[string]map[int]*resptest.Conn{direct: {}, proxied: {}}
	conn := func(addr string, i int) *resptest.Conn {
		if c := conns[addr][i]; c != nil {
			return c
		}
		c := resptest.Dial(t, addr)
		conns[addr][i] = c
		return c
	}
	for i, st := range steps {
		n := max(st.replies, -st.replies)
		ra, erra := conn(direct, st.client).Pipeline([]byte(st.send), n, 3*time.Second)
		rp, errp := conn(proxied, st.client).Pipeline([]byte(st.send), n, 3*time.Second)
		a, p := bytes.Join(ra, nil), bytes.Join(rp, nil)
		if st.replies < 0 && erra == nil && errp == nil {
			continue
		}
		if erra != nil {
			a = append(a, fmt.Sprintf("<%v>", erra)...)
		}
		if errp != nil {
			p = append(p, fmt.Sprintf("<%v>", errp)...)
		}
		if !bytes.Equal(a, p) {
			t.Errorf("step %d, client %d sends %q:\n  redis: %s\n  proxy: %s", i, st.client, st.send, resptest.Quote(a), resptest.Quote(p))
			return
		}
	}
}

// TestDifferentialScenarios are scripted cases, several with more than one
// client, where the proxy answers on its own or tracks connection state.
func TestDifferentialScenarios(t *testing.T) {
	direct, backend := dtRedisPair(t)
	// Every scenario runs on fresh connections; its keys carry its index.
	cases := []struct {
		name  string
		steps func(k string) []dtStep
	}{
		{"inline commands", func(k string) []dtStep {
			return []dtStep{
				{0, "SET " + k + " plain\r\nGET " + k + "\r\n", 2},
				{0, "SET " + k + " \"two words\"\r\nGET " + k + "\r\n", 2},
				{0, "\r\n\r\nPING\r\n", 1},
				{0, "ECHO 'single quoted'\n", 1},
			}
		}},
		{"blocking command after a refused select, pipelined", func(k string) []dtStep {
			// SELECT 16 pins a connection, Redis refuses it, the session
			// has no state left and its connection goes back at once: the
			// blocking command behind it in the same write needs another.
			// (This crashed the proxy: the tunnel took the released pin.)
			return dtPipelined(0, "SELECT 16", "BLPOP "+k+":q 0.01", "PING")
		}},
		{"subscribe after a refused select, pipelined", func(k string) []dtStep {
			return []dtStep{{0, "SELECT 16\r\nWAIT 0 0\r\n", 2}, {0, "SELECT 16\r\nSUBSCRIBE " + k + "\r\n", 2}, {0, "PING\r\n", 1}}
		}},
		{"blocking command right after the state ends, pipelined", func(k string) []dtStep {
			// SELECT 0 ends the state that pinned the connection, which
			// goes back; the blocking command then needs one of its own.
			return dtPipelined(0, "SELECT 1", "SET "+k+" a", "SELECT 0", "BLPOP "+k+":q 0.01", "GET "+k)
		}},
		{"subscribe right after the state ends, pipelined", func(k string) []dtStep {
			return []dtStep{{0, "WATCH " + k + "\r\nUNWATCH\r\nSUBSCRIBE " + k + "\r\n", 3}, {0, "PING\r\n", 1}}
		}},
		{"empty multibulk is ignored", func(k string) []dtStep {
			return []dtStep{{0, "*0\r\nPING\r\n", 1}, {0, "*-1\r\nPING\r\n", 1}}
		}},
		{"queued select in a transaction", func(k string) []dtStep {
			return []dtStep{
				{0, "MULTI\r\nSET " + k + " a\r\nSELECT abc\r\nEXEC\r\n", 4},
				{0, "MULTI\r\nSET " + k + " b\r\nSELECT\r\nEXEC\r\nGET " + k + "\r\n", 5},
			}
		}},
		{"commands refused in a transaction do not abort it", func(k string) []dtStep {
			// Redis answers WATCH and a nested MULTI with an error at once,
			// without queueing them and without failing the transaction.
			return dtEach(0, "MULTI", "WATCH "+k, "MULTI", "SET "+k+" a", "EXEC", "GET "+k)
		}},
		{"commands refused in a pipelined transaction do not abort it", func(k string) []dtStep {
			return dtPipelined(0, "MULTI", "WATCH "+k, "MULTI", "SET "+k+" a", "EXEC", "GET "+k)
		}},
		{"invalid client name in a transaction fails in EXEC", func(k string) []dtStep {
			return dtEach(0, "MULTI", "CLIENT SETNAME \"has space\"", "SET "+k+" a", "EXEC", "CLIENT GETNAME")
		}},
		{"client name set in a discarded transaction", func(k string) []dtStep {
			return dtEach(0, "CLIENT SETNAME before", "MULTI", "CLIENT SETNAME queued", "DISCARD", "CLIENT GETNAME")
		}},
		{"client name set in an aborted transaction", func(k string) []dtStep {
			// EXEC answers a null array: a watched key changed, nothing ran.
			return dtEach(0, "CLIENT SETNAME before", "WATCH "+k, "SET "+k+" changed", "MULTI", "CLIENT SETNAME queued",
				"EXEC", "CLIENT GETNAME")
		}},
		{"connection commands in a transaction", func(k string) []dtStep {
			return []dtStep{
				{0, "MULTI\r\nCLIENT SETNAME tx\r\nCLIENT GETNAME\r\nEXEC\r\nCLIENT GETNAME\r\n", 5},
				{0, "MULTI\r\nAUTH pw\r\nPING\r\nEXEC\r\n", 4},
			}
		}},
		{"aborted exec after select", func(k string) []dtStep {
			// EXEC answers a null array when a watched key changed: the
			// queued SELECT did not run and the client stays in db 2.
			return []dtStep{
				{0, "SELECT 2\r\nSET " + k + " in-db2\r\nWATCH " + k + "\r\nSET " + k + " changed\r\n", 4},
				{0, "MULTI\r\nSELECT 0\r\nEXEC\r\n", 3},
				{0, "GET " + k + "\r\n", 1},
				{1, "MULTI\r\nGET " + k + "\r\nEXEC\r\n", 3},
			}
		}},
		{"subscribe in a pipelined transaction", func(k string) []dtStep {
			return []dtStep{
				{0, "MULTI\r\nSUBSCRIBE " + k + "\r\nEXEC\r\n", 3},
				{1, "SELECT 1\r\nSET " + k + " v\r\nGET " + k + "\r\nSELECT 0\r\n", 4},
				{2, "PUBLISH " + k + " hello\r\n", 1},
				{0, "PING\r\n", 2}, // the published message, then PING's reply
			}
		}},
		{"subscribe in a transaction", func(k string) []dtStep {
			// As above, one command at a time: the client is subscribed
			// after EXEC, and its server connection must serve no one else.
			return []dtStep{
				{0, "MULTI\r\n", 1}, {0, "SUBSCRIBE " + k + "\r\n", 1}, {0, "EXEC\r\n", 1},
				{1, "SELECT 1\r\nSET " + k + " v\r\nGET " + k + "\r\nSELECT 0\r\n", 4},
				{2, "PUBLISH " + k + " hello\r\n", 1},
				{0, "PING\r\n", 2},
			}
		}},
		{"hello 3 in a transaction", func(k string) []dtStep {
			return []dtStep{
				{0, "MULTI\r\n", 1}, {0, "HELLO 3\r\n", 1},
				{0, "EXEC\r\n", -1}, // HELLO's reply has the connection ID
				{1, "SELECT 1\r\nHSET " + k + " f v\r\nHGETALL " + k + "\r\nGET nokey\r\nSELECT 0\r\n", 5},
				{0, "HGETALL " + k + "\r\n", 1},
			}
		}},
		{"pipelined transaction with unsubscribe", func(k string) []dtStep {
			// Commands after MULTI in the same pipeline are queued too.
			return []dtStep{{0, "MULTI\r\nUNSUBSCRIBE\r\nEXEC\r\n", 3}}
		}},
		{"named client runs a pipelined transaction with a blocking command", func(k string) []dtStep {
			return []dtStep{
				{0, "CLIENT SETNAME app\r\n", 1},
				{0, "MULTI\r\nBLPOP " + k + " 0.01\r\nEXEC\r\n", 3},
			}
		}},
		{"client name in a tunnel", func(k string) []dtStep {
			// A blocking command makes the proxy session a tunnel; the
			// client's name (none here) must still be its own.
			return []dtStep{
				{0, "BLPOP " + k + " 0.01\r\n", 1},
				{0, "CLIENT GETNAME\r\n", 1},
				{0, "CLIENT SETNAME mine\r\nCLIENT GETNAME\r\n", 2},
			}
		}},
	}
	cases = append(cases, struct {
		name  string
		steps func(k string) []dtStep
	}{"failed MULTI starts no transaction", func(k string) []dtStep {
		// MULTI with an argument is refused; the client is not in a
		// transaction, so an error after it does not make a later one fail.
		return dtEach(0, "MULTI x", "CLIENT SETNAME a b", "MULTI", "SET "+k+" a", "EXEC", "GET "+k)
	}}, struct {
		name  string
		steps func(k string) []dtStep
	}{"failed MULTI starts no transaction pipelined", func(k string) []dtStep {
		return dtPipelined(0, "MULTI x", "CLIENT SETNAME a b", "MULTI", "SET "+k+" a", "EXEC", "GET "+k)
	}}, struct {
		name  string
		steps func(k string) []dtStep
	}{"queued SELECT of a negative index", func(k string) []dtStep {
		// SELECT -1 fails inside EXEC; the SELECT 2 before it took effect.
		return dtEach(0, "MULTI", "SELECT 2", "SELECT -1", "EXEC", "SET "+k+" in-db2", "SELECT 2", "GET "+k, "SELECT 0", "GET "+k)
	}}, struct {
		name  string
		steps func(k string) []dtStep
	}{"arity error in a transaction in a tunnel", func(k string) []dtStep {
		// A blocking command makes the proxy session a tunnel; errors the
		// proxy makes must still refuse a command while queueing.
		return dtEach(0, "BLPOP "+k+" 0.01", "MULTI", "SELECT 1 2", "SET "+k+" a", "EXEC", "GET "+k)
	}})
	// Commands the proxy answers itself, outside a transaction: the same
	// reply as Redis's, word for word.
	for _, cmd := range []string{"SELECT 00", "SELECT -0", "SELECT 18446744073709551616", "SELECT +1", "SELECT 1.0",
		"AUTH a b c", "AUTH x", "CLIENT GETNAME extra", "CLIENT ID extra", "CLIENT TRACKING off extra",
		"CLIENT SETNAME", "CLIENT SETNAME \"a b\"", "HELLO 2 SETNAME", "HELLO 2 AUTH a", "HELLO 4", "HELLO abc",
		"UNSUBSCRIBE", "PUNSUBSCRIBE a b"} {
		cases = append(cases, struct {
			name  string
			steps func(k string) []dtStep
		}{"local reply " + cmd, func(k string) []dtStep {
			n := 1
			if cmd == "PUNSUBSCRIBE a b" {
				n = 2
			}
			return []dtStep{{0, cmd + "\r\n", n}, {0, "PING\r\n", 1}}
		}})
	}
	// A wrong number of arguments inside MULTI is refused at once and makes
	// EXEC fail with EXECABORT, for the commands the proxy handles itself as
	// for any other; written one by one and pipelined.
	for _, bad := range []string{"SELECT", "SELECT 1 2", "AUTH", "AUTH a b c", "CLIENT", "CLIENT SETNAME",
		"CLIENT SETNAME a b", "CLIENT GETNAME x", "EXEC x", "DISCARD x", "MULTI x", "WATCH", "UNWATCH x", "GET"} {
		for _, pipelined := range []bool{false, true} {
			how, steps := "one by one", dtEach
			if pipelined {
				how, steps = "pipelined", dtPipelined
			}
			cases = append(cases, struct {
				name  string
				steps func(k string) []dtStep
			}{"arity error in a transaction " + how + " " + bad, func(k string) []dtStep {
				return steps(0, "MULTI", bad, "SET "+k+" a", "EXEC", "GET "+k)
			}})
		}
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			// A fresh proxy each time: a scenario that leaves a spare
			// connection in a bad state must not fail the next one.
			proxied := startProxy(t, Config{}, backend).Addr
			dtScenario(t, direct, proxied, c.steps("sc"+strconv.Itoa(i)))
		})
	}
}
