package proxy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// Behavioural tests of the proxy's stateful features: pub/sub, MULTI/EXEC,
// SELECT, blocking commands, MONITOR, CLIENT subcommands and RESP3. Each
// test talks to real redis-server processes and, where the behaviour could
// be read two ways, compares the proxy's bytes with Redis's own.

// --- pub/sub ---------------------------------------------------------------

func TestPubSubDeliversMessages(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)

	sub := resptest.Dial(t, tp.Addr)
	sub.Send("SUBSCRIBE", "news")
	resptest.Expect(t, sub.Read(), `["subscribe","news",1]`)
	psub := resptest.Dial(t, tp.Addr)
	psub.Send("PSUBSCRIBE", "ne*")
	resptest.Expect(t, psub.Read(), `["psubscribe","ne*",1]`)

	pub := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, pub.Do("PUBLISH", "news", "hello world"), "2")
	resptest.Expect(t, sub.Read(), `["message","news","hello world"]`)
	resptest.Expect(t, psub.Read(), `["pmessage","ne*","news","hello world"]`)

	// A channel the plain subscriber did not ask for reaches only the
	// pattern subscriber.
	resptest.Expect(t, pub.Do("PUBLISH", "nets", "second"), "1")
	resptest.Expect(t, psub.Read(), `["pmessage","ne*","nets","second"]`)
	resptest.Expect(t, pub.Do("PUBLISH", "news", "third"), "2")
	resptest.Expect(t, sub.Read(), `["message","news","third"]`)
	resptest.Expect(t, psub.Read(), `["pmessage","ne*","news","third"]`)
}

func TestPubSubUnsubscribeWhenNotSubscribedLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := resptest.Cmds(
		[]string{"UNSUBSCRIBE"},
		[]string{"UNSUBSCRIBE", "a", "b"},
		[]string{"PUNSUBSCRIBE"},
		[]string{"PUNSUBSCRIBE", "p*"},
		[]string{"SUNSUBSCRIBE", "s"},
		// The session must still be an ordinary one afterwards.
		[]string{"SET", "unsub:k", "v"},
		[]string{"GET", "unsub:k"},
	)
	got := sameAsRedis(t, resptest.Exchange, r.Addr, tp.Addr, req)
	if !bytes.HasPrefix(got, []byte("*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")) {
		t.Fatalf("UNSUBSCRIBE reply: %q", got)
	}
}

func TestPubSubPingAndRestrictionsInSubscribedMode(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := resptest.Cmds(
		[]string{"SUBSCRIBE", "x"},
		[]string{"PING"},
		[]string{"PING", "hi"},
		[]string{"GET", "a"},
	)
	sameAsRedis(t, resptest.Exchange, r.Addr, tp.Addr, req)
	c := resptest.Dial(t, tp.Addr)
	c.Send("SUBSCRIBE", "x")
	resptest.Expect(t, c.Read(), `["subscribe","x",1]`)
	resptest.Expect(t, c.Do("PING"), `["pong",""]`)
	resptest.Expect(t, c.Do("PING", "hi"), `["pong","hi"]`)
}

func TestPubSubSubscriberDisconnectReleasesBackend(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	base := stConnected(t, r)

	sub := resptest.Dial(t, tp.Addr)
	sub.Send("SUBSCRIBE", "gone")
	resptest.Expect(t, sub.Read(), `["subscribe","gone",1]`)
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned while subscribed = %d, want 1", n)
	}
	if n := stConnected(t, r); n != base+1 {
		t.Fatalf("Redis clients while subscribed = %d, want %d", n, base+1)
	}
	if n := stNumSub(t, r, "gone"); n != 1 {
		t.Fatalf("PUBSUB NUMSUB gone = %d, want 1", n)
	}
	sub.Close()
	poll.Until(t, 3*time.Second, "pinned back to 0 after the subscriber left", func() bool {
		return tp.pinned.Load() == 0
	})
	poll.Until(t, 3*time.Second, "the subscription's Redis connection closed", func() bool {
		return stConnected(t, r) == base && stNumSub(t, r, "gone") == 0
	})
}

// --- MULTI/EXEC ------------------------------------------------------------

func TestMultiExecQueuesAndReleasesPin(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	other := resptest.Dial(t, tp.Addr)

	resptest.Expect(t, c.Do("MULTI"), "OK")
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned inside MULTI = %d, want 1", n)
	}
	resptest.Expect(t, c.Do("SET", "tx:k", "v"), "QUEUED")
	resptest.Expect(t, c.Do("INCR", "tx:n"), "QUEUED")
	resptest.Expect(t, c.Do("INCR", "tx:n"), "QUEUED")
	// Queued, not run: another client does not see the writes yet.
	resptest.Expect(t, other.Do("GET", "tx:k"), "<nil>")
	resptest.Expect(t, c.Do("EXEC"), `[OK,1,2]`)
	resptest.Expect(t, other.Do("GET", "tx:k"), `"v"`)
	resptest.Expect(t, other.Do("GET", "tx:n"), `"2"`)
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after EXEC = %d, want 0 (session back on the shared pool)", n)
	}
	// A pipelined transaction: replies in order, pin released at the end.
	c.Send("MULTI")
	c.Send("INCR", "tx:n")
	c.Send("EXEC")
	c.Send("GET", "tx:n")
	resptest.Expect(t, c.Read(), "OK")
	resptest.Expect(t, c.Read(), "QUEUED")
	resptest.Expect(t, c.Read(), `[3]`)
	resptest.Expect(t, c.Read(), `"3"`)
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after pipelined EXEC = %d, want 0", n)
	}
}

func TestWatchAbortsExecAfterConcurrentModification(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	other := resptest.Dial(t, tp.Addr)

	resptest.Expect(t, c.Do("SET", "w:k", "0"), "OK")
	resptest.Expect(t, c.Do("WATCH", "w:k"), "OK")
	resptest.Expect(t, c.Do("GET", "w:k"), `"0"`)
	resptest.Expect(t, other.Do("SET", "w:k", "theirs"), "OK")
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("SET", "w:k", "mine"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), "<nil>")
	resptest.Expect(t, other.Do("GET", "w:k"), `"theirs"`)
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after aborted EXEC = %d, want 0", n)
	}
	// Without interference the same transaction commits.
	resptest.Expect(t, c.Do("WATCH", "w:k"), "OK")
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("SET", "w:k", "mine"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), `[OK]`)
	resptest.Expect(t, other.Do("GET", "w:k"), `"mine"`)
}

func TestDiscardDropsQueuedCommands(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("SET", "d:k", "v"), "QUEUED")
	resptest.Expect(t, c.Do("DISCARD"), "OK")
	resptest.Expect(t, c.Do("GET", "d:k"), "<nil>")
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after DISCARD = %d, want 0", n)
	}
}

func TestTransactionErrorsLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	req := resptest.Cmds(
		[]string{"EXEC"},
		[]string{"DISCARD"},
		[]string{"MULTI"},
		[]string{"MULTI"},
		[]string{"SET", "te:a"}, // arity error at queue time
		[]string{"EXEC"},
		[]string{"GET", "te:a"},
		[]string{"MULTI"},
		[]string{"SET", "te:b", "1"},
		[]string{"LPUSH", "te:b", "x"}, // fails at EXEC time
		[]string{"EXEC"},
		[]string{"GET", "te:b"},
	)
	// Run on the proxy against a fresh server so the keys start absent.
	r2 := redistest.Start(t)
	tp2 := startProxy(t, Config{}, r2.Addr)
	got := sameAsRedis(t, resptest.Exchange, r.Addr, tp2.Addr, req)
	if !bytes.HasPrefix(got, []byte("-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n")) {
		t.Fatalf("unexpected replies: %q", got)
	}
	if n := tp2.pinned.Load(); n != 0 {
		t.Fatalf("pinned after the transactions = %d, want 0", n)
	}
}

// A transaction aborted by WATCH runs none of its commands, a queued SELECT
// included: the client stays in the database it was in.
func TestWatchAbortedExecKeepsDatabase(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	for _, target := range []struct{ name, addr string }{{"redis", r.Addr}, {"proxy", tp.Addr}} {
		c := resptest.Dial(t, target.addr)
		other := resptest.Dial(t, target.addr)
		key := "wsel:" + target.name
		resptest.Expect(t, c.Do("SELECT", "1"), "OK")
		resptest.Expect(t, c.Do("SET", key, "in-db1"), "OK")
		resptest.Expect(t, c.Do("WATCH", key+":w"), "OK")
		resptest.Expect(t, other.Do("SELECT", "1"), "OK")
		resptest.Expect(t, other.Do("SET", key+":w", "touched"), "OK")
		resptest.Expect(t, c.Do("MULTI"), "OK")
		resptest.Expect(t, c.Do("SELECT", "0"), "QUEUED")
		resptest.Expect(t, c.Do("EXEC"), "<nil>")
		if got := c.Do("GET", key).String(); got != `"in-db1"` {
			t.Errorf("%s: GET after a WATCH-aborted EXEC with a queued SELECT 0 = %s, want \"in-db1\" (still in db 1)", target.name, got)
		}
		// A new client starts in db 0, whatever connection serves it.
		fresh := resptest.Dial(t, target.addr)
		resptest.Expect(t, fresh.Do("MULTI"), "OK")
		resptest.Expect(t, fresh.Do("GET", key), "QUEUED")
		if got := fresh.Do("EXEC").String(); got != "[<nil>]" {
			t.Errorf("%s: a new client's transaction read %s, want [<nil>]: it ran in db 1", target.name, got)
		}
	}
}

// Connection state that a queued command sets at EXEC (RESP3 with HELLO 3,
// a subscription) stays with the client that set it: Redis applies it to
// that connection, and no other client may ever be served by it.
func TestConnectionStateSetInsideMultiStaysWithSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cmd  []string
	}{
		{"HELLO 3", []string{"HELLO", "3"}},
		{"SUBSCRIBE", []string{"SUBSCRIBE", "mstate:ch"}},
		{"PSUBSCRIBE", []string{"PSUBSCRIBE", "mstate:*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := redistest.Start(t)
			tp := startProxy(t, Config{}, r.Addr)
			a := resptest.Dial(t, tp.Addr)
			resptest.Expect(t, a.Do("MULTI"), "OK")
			resptest.Expect(t, a.Do(tc.cmd...), "QUEUED")
			if v := a.Do("EXEC"); v.Type != '*' || len(v.Elems) != 1 {
				t.Fatalf("EXEC: %q", v.Raw)
			}
			// Another client's transaction, perhaps on the connection A
			// used, must see a plain RESP2, unsubscribed connection.
			b := resptest.Dial(t, tp.Addr)
			b.Write(resptest.Cmds([]string{"MULTI"}, []string{"GET", "mstate:none"}, []string{"HSET", "mstate:h", "f", "v"}, []string{"HGETALL", "mstate:h"}, []string{"EXEC"}))
			var got []byte
			for i := 0; i < 5; i++ {
				v, err := b.TryRead(2 * time.Second)
				got = append(got, v.Raw...)
				if err != nil {
					t.Fatalf("other client's transaction: %v after %q", err, got)
				}
			}
			want := "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n$-1\r\n:1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
			if string(got) != want {
				t.Fatalf("another client's transaction after A's EXEC of %s:\n got %q\nwant %q", tc.name, got, want)
			}
		})
	}
}

// --- SELECT ----------------------------------------------------------------

func TestSelectIsolatesDatabases(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c1 := resptest.Dial(t, tp.Addr)
	c2 := resptest.Dial(t, tp.Addr)

	resptest.Expect(t, c1.Do("SELECT", "1"), "OK")
	resptest.Expect(t, c1.Do("SET", "sel:k", "db1"), "OK")
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned while in db 1 = %d, want 1", n)
	}
	resptest.Expect(t, c2.Do("GET", "sel:k"), "<nil>")
	resptest.Expect(t, c1.Do("GET", "sel:k"), `"db1"`)
	// Where the key really is, asked of Redis directly.
	direct := resptest.Dial(t, r.Addr)
	resptest.Expect(t, direct.Do("GET", "sel:k"), "<nil>")
	resptest.Expect(t, direct.Do("SELECT", "1"), "OK")
	resptest.Expect(t, direct.Do("GET", "sel:k"), `"db1"`)

	resptest.Expect(t, c1.Do("SELECT", "0"), "OK")
	resptest.Expect(t, c1.Do("GET", "sel:k"), "<nil>")
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after SELECT 0 = %d, want 0", n)
	}
	// A session in db 1 that turns into a tunnel (a blocking command) stays
	// in db 1.
	c4 := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c4.Do("SELECT", "1"), "OK")
	resptest.Expect(t, c4.DoTimeout(3*time.Second, "BLPOP", "sel:none", "0.1"), "<nil>")
	resptest.Expect(t, c4.Do("GET", "sel:k"), `"db1"`)
	// The released connection went back clean: a new session's MULTI (which
	// may reuse it) runs in db 0.
	c3 := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c3.Do("MULTI"), "OK")
	resptest.Expect(t, c3.Do("GET", "sel:k"), "QUEUED")
	resptest.Expect(t, c3.Do("EXEC"), "[<nil>]")
}

func TestSelectInsideMultiAppliedAtExec(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("SELECT", "2"), "QUEUED")
	resptest.Expect(t, c.Do("SET", "msel:k", "db2"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), `[OK,OK]`)
	// The session is now in db 2.
	resptest.Expect(t, c.Do("GET", "msel:k"), `"db2"`)
	resptest.Expect(t, c.Do("SET", "msel:k2", "also-db2"), "OK")
	direct := resptest.Dial(t, r.Addr)
	resptest.Expect(t, direct.Do("SELECT", "2"), "OK")
	resptest.Expect(t, direct.Do("MGET", "msel:k", "msel:k2"), `["db2","also-db2"]`)
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned in db 2 after EXEC = %d, want 1", n)
	}
	resptest.Expect(t, c.Do("SELECT", "0"), "OK")
	resptest.Expect(t, c.Do("GET", "msel:k"), "<nil>")
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after SELECT 0 = %d, want 0", n)
	}
}

func TestSelectInvalidIndexLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := resptest.Cmds(
		[]string{"SELECT", "16"},
		[]string{"SELECT", "abc"},
		[]string{"SELECT", "-1"},
		[]string{"SELECT", "99999999999999999999"},
		[]string{"SELECT", "1", "2"},
		[]string{"SELECT"},
		[]string{"SET", "inv:k", "v"},
		[]string{"GET", "inv:k"},
	)
	got := sameAsRedis(t, resptest.Exchange, r.Addr, tp.Addr, req)
	if !bytes.HasPrefix(got, []byte("-ERR DB index is out of range\r\n")) {
		t.Fatalf("SELECT 16: %q", got)
	}
	// The failed SELECTs left the session in db 0, on the shared pool.
	poll.Until(t, time.Second, "pinned back to 0", func() bool { return tp.pinned.Load() == 0 })
	direct := resptest.Dial(t, r.Addr)
	resptest.Expect(t, direct.Do("GET", "inv:k"), `"v"`)
}

// --- blocking commands -----------------------------------------------------

func TestBlpopWokenByPushFromAnotherClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	a := resptest.Dial(t, tp.Addr)
	b := resptest.Dial(t, tp.Addr)
	a.Send("BLPOP", "bl:list", "0")
	stWaitBlocked(t, r, 1)
	pushed := time.Now()
	resptest.Expect(t, b.Do("RPUSH", "bl:list", "x"), "1")
	v := a.ReadTimeout(2 * time.Second)
	resptest.Expect(t, v, `["bl:list","x"]`)
	if d := time.Since(pushed); d > time.Second {
		t.Fatalf("BLPOP answered %v after the push", d)
	}
	resptest.Expect(t, b.Do("LLEN", "bl:list"), "0")
}

func TestBlpopTimesOut(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	start := time.Now()
	v := c.DoTimeout(3*time.Second, "BLPOP", "bl:empty", "1")
	d := time.Since(start)
	resptest.Expect(t, v, "<nil>")
	if d < 900*time.Millisecond || d > 2*time.Second {
		t.Fatalf("BLPOP with a 1s timeout answered after %v", d)
	}
	// The session goes on working after the timeout.
	resptest.Expect(t, c.Do("SET", "bl:after", "1"), "OK")
	resptest.Expect(t, c.Do("GET", "bl:after"), `"1"`)
}

func TestXreadBlockWokenByXadd(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	a := resptest.Dial(t, tp.Addr)
	b := resptest.Dial(t, tp.Addr)
	a.Send("XREAD", "BLOCK", "0", "STREAMS", "xs", "$")
	stWaitBlocked(t, r, 1)
	id := b.Do("XADD", "xs", "*", "field", "value")
	if id.Type != '$' || !strings.Contains(id.Str, "-") {
		t.Fatalf("XADD: %s", id)
	}
	v := a.ReadTimeout(2 * time.Second)
	want := fmt.Sprintf(`[["xs",[[%q,["field","value"]]]]]`, id.Str)
	resptest.Expect(t, v, want)
}

func TestBlmoveWokenByPush(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	a := resptest.Dial(t, tp.Addr)
	b := resptest.Dial(t, tp.Addr)
	a.Send("BLMOVE", "bm:src", "bm:dst", "LEFT", "RIGHT", "0")
	stWaitBlocked(t, r, 1)
	resptest.Expect(t, b.Do("RPUSH", "bm:src", "item"), "1")
	resptest.Expect(t, a.ReadTimeout(2*time.Second), `"item"`)
	resptest.Expect(t, b.Do("LRANGE", "bm:dst", "0", "-1"), `["item"]`)
	resptest.Expect(t, b.Do("LLEN", "bm:src"), "0")
}

func TestWaitZeroReplicas(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("SET", "wait:k", "v"), "OK")
	start := time.Now()
	resptest.Expect(t, c.Do("WAIT", "0", "0"), "0")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("WAIT 0 0 took %v", d)
	}
	resptest.Expect(t, c.Do("GET", "wait:k"), `"v"`)
}

func TestBlockedClientDisconnectFreesBackend(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	c.Send("BLPOP", "bd:list", "0")
	stWaitBlocked(t, r, 1)
	direct := resptest.Dial(t, r.Addr)
	blocked := direct.Do("CLIENT", "LIST")
	id := ""
	for _, line := range strings.Split(blocked.Str, "\n") {
		if strings.Contains(line, " flags=b ") {
			id, _, _ = strings.Cut(strings.TrimPrefix(line, "id="), " ")
		}
	}
	if id == "" {
		t.Fatalf("no blocked connection in Redis's CLIENT LIST:\n%s", blocked.Str)
	}
	c.Close()
	poll.Until(t, 3*time.Second, "the blocked client's Redis connection closed", func() bool {
		return stInfoInt(t, r, "clients", "blocked_clients") == 0 && direct.Do("CLIENT", "LIST", "ID", id).Str == ""
	})
	poll.Until(t, time.Second, "pinned back to 0", func() bool { return tp.pinned.Load() == 0 })
	// Nobody is waiting on the list any more: a push stays in it.
	other := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, other.Do("RPUSH", "bd:list", "x"), "1")
	resptest.Expect(t, other.Do("LLEN", "bd:list"), "1")
}

func TestBlockedClientsDoNotStallSharedPool(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{PoolSize: 2}, r.Addr)
	const blocked = 20
	waiters := make([]*resptest.Conn, blocked)
	for i := range waiters {
		waiters[i] = resptest.Dial(t, tp.Addr)
		waiters[i].Send("BLPOP", fmt.Sprintf("stall:%d", i), "0")
	}
	stWaitBlocked(t, r, blocked)

	const n = 200
	var worst time.Duration
	var clients [4]*resptest.Conn
	for i := range clients {
		clients[i] = resptest.Dial(t, tp.Addr)
	}
	for i := 0; i < n; i++ {
		c := clients[i%len(clients)]
		start := time.Now()
		resptest.Expect(t, c.Do("SET", fmt.Sprintf("stall:k%d", i), strconv.Itoa(i)), "OK")
		resptest.Expect(t, c.Do("GET", fmt.Sprintf("stall:k%d", i)), strconv.Quote(strconv.Itoa(i)))
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst SET+GET round trip with %d clients blocked: %v", blocked, worst)
	// A stall behind a blocked client would last as long as the block (for
	// ever here); the bound only has to survive a loaded machine.
	if worst > 2*time.Second {
		t.Fatalf("SET+GET took up to %v while %d clients were blocked", worst, blocked)
	}
	// Every blocked client is still waiting on its own connection and is
	// woken by its own list.
	pusher := resptest.Dial(t, tp.Addr)
	for i, w := range waiters {
		resptest.Expect(t, pusher.Do("RPUSH", fmt.Sprintf("stall:%d", i), "v"+strconv.Itoa(i)), "1")
		resptest.Expect(t, w.ReadTimeout(2*time.Second), fmt.Sprintf(`["stall:%d","v%d"]`, i, i))
	}
}

// --- MONITOR ---------------------------------------------------------------

func TestMonitorSeesOtherClientsCommands(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	mon := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, mon.Do("MONITOR"), "OK")
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("SET", "mon:key", "mon-value"), "OK")
	deadline := time.Now().Add(3 * time.Second)
	for {
		v := mon.ReadTimeout(time.Until(deadline))
		if v.Type == '+' && strings.Contains(v.Str, `"SET" "mon:key" "mon-value"`) {
			return
		}
	}
}

// --- CLIENT ----------------------------------------------------------------

func TestClientReplyLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	req := resptest.Cmds(
		[]string{"CLIENT", "REPLY", "ON"},
		[]string{"CLIENT", "REPLY", "OFF"},
		[]string{"SET", "cr:a", "1"},
		[]string{"INCR", "cr:a"},
		[]string{"CLIENT", "REPLY", "ON"},
		[]string{"CLIENT", "REPLY", "SKIP"},
		[]string{"INCR", "cr:a"},
		[]string{"GET", "cr:a"},
	)
	r2 := redistest.Start(t)
	tp2 := startProxy(t, Config{}, r2.Addr)
	got := sameAsRedis(t, resptest.Exchange, r.Addr, tp2.Addr, req)
	if string(got) != "+OK\r\n+OK\r\n$1\r\n3\r\n" {
		t.Fatalf("CLIENT REPLY replies: %q", got)
	}
	// The silenced commands did run.
	resptest.Expect(t, resptest.Dial(t, r2.Addr).Do("GET", "cr:a"), `"3"`)
}

func TestClientNamesArePerClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c1 := resptest.Dial(t, tp.Addr)
	c2 := resptest.Dial(t, tp.Addr)
	c3 := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c1.Do("CLIENT", "SETNAME", "alpha"), "OK")
	resptest.Expect(t, c2.Do("CLIENT", "SETNAME", "beta"), "OK")
	resptest.Expect(t, c1.Do("CLIENT", "GETNAME"), `"alpha"`)
	resptest.Expect(t, c2.Do("CLIENT", "GETNAME"), `"beta"`)
	resptest.Expect(t, c3.Do("CLIENT", "GETNAME"), "<nil>")
	resptest.Expect(t, c1.Do("CLIENT", "SETNAME", "bad name"), "(error) ERR Client names cannot contain spaces, newlines or special characters.")
	resptest.Expect(t, c1.Do("CLIENT", "GETNAME"), `"alpha"`)
}

// A session that became a tunnel (here after a blocking command) must keep
// answering CLIENT GETNAME as Redis would: its own name, or nil. The
// scenario runs on Redis first, which shows what the proxy must answer.
func TestClientGetNameAfterBlockingCommand(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	for _, target := range []struct{ name, addr string }{{"redis", r.Addr}, {"proxy", tp.Addr}} {
		t.Logf("target %s", target.name)
		named := resptest.Dial(t, target.addr)
		resptest.Expect(t, named.Do("CLIENT", "SETNAME", "worker-1"), "OK")
		resptest.Expect(t, named.DoTimeout(3*time.Second, "BLPOP", "gn:none", "0.1"), "<nil>")
		resptest.Expect(t, named.Do("CLIENT", "GETNAME"), `"worker-1"`)

		anon := resptest.Dial(t, target.addr)
		resptest.Expect(t, anon.Do("CLIENT", "GETNAME"), "<nil>")
		resptest.Expect(t, anon.DoTimeout(3*time.Second, "BLPOP", "gn:none", "0.1"), "<nil>")
		resptest.Expect(t, anon.Do("CLIENT", "GETNAME"), "<nil>")
	}
}

// Inside MULTI every command is queued and answered by EXEC, including
// those the proxy otherwise answers itself (CLIENT SETNAME/GETNAME, CLIENT
// REPLY ON, AUTH).
func TestLocallyAnsweredCommandsInsideMultiLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := resptest.Cmds(
		[]string{"MULTI"},
		[]string{"CLIENT", "SETNAME", "in-tx"},
		[]string{"CLIENT", "GETNAME"},
		[]string{"CLIENT", "REPLY", "ON"},
		[]string{"AUTH", "x"},
		[]string{"EXEC"},
		[]string{"CLIENT", "GETNAME"},
	)
	sameAsRedis(t, resptest.Exchange, r.Addr, tp.Addr, req)
}

func TestClientIDIsPerClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c1 := resptest.Dial(t, tp.Addr)
	c2 := resptest.Dial(t, tp.Addr)
	id1 := c1.Do("CLIENT", "ID")
	id2 := c2.Do("CLIENT", "ID")
	if id1.Type != ':' || id2.Type != ':' {
		t.Fatalf("CLIENT ID replies: %s %s", id1, id2)
	}
	if id1.Int == id2.Int {
		t.Fatalf("two clients share CLIENT ID %d", id1.Int)
	}
	if again := c1.Do("CLIENT", "ID"); again.Int != id1.Int {
		t.Fatalf("CLIENT ID changed from %d to %d on the same connection", id1.Int, again.Int)
	}
}

// CLIENT ID names the connection for its whole life, so another client can
// act on it: the usual way to interrupt a blocked worker is CLIENT UNBLOCK
// with the ID the worker reported. Run on Redis first, then on the proxy.
func TestClientIDStableAndUsableForUnblock(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	for _, target := range []struct{ name, addr string }{{"redis", r.Addr}, {"proxy", tp.Addr}} {
		t.Logf("target %s", target.name)
		worker := resptest.Dial(t, target.addr)
		ctl := resptest.Dial(t, target.addr)
		id := worker.Do("CLIENT", "ID")
		if id.Type != ':' {
			t.Fatalf("CLIENT ID: %s", id)
		}
		worker.Send("BLPOP", "unb:list", "0")
		stWaitBlocked(t, r, 1)
		resptest.Expect(t, ctl.Do("CLIENT", "UNBLOCK", strconv.FormatInt(id.Int, 10)), "1")
		resptest.Expect(t, worker.ReadTimeout(2*time.Second), "<nil>")
		if again := worker.Do("CLIENT", "ID"); again.Int != id.Int {
			t.Fatalf("CLIENT ID changed from %d to %d after a blocking command", id.Int, again.Int)
		}
	}
}

// --- RESP3 -----------------------------------------------------------------

func TestHello3RepliesInRESP3(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	hello := c.Do("HELLO", "3")
	if hello.Type != '%' || hello.Raw[0] != '%' {
		t.Fatalf("HELLO 3 reply is not a RESP3 map: %q", hello.Raw)
	}
	if v, ok := hello.Get("proto"); !ok || v.Int != 3 {
		t.Fatalf("HELLO 3 proto field: %s", hello)
	}
	resptest.Expect(t, c.Do("HSET", "h3:h", "f1", "v1", "f2", "v2"), "2")
	all := c.Do("HGETALL", "h3:h")
	if all.Type != '%' {
		t.Fatalf("HGETALL after HELLO 3 is not a map: %q", all.Raw)
	}
	if v, _ := all.Get("f1"); v.Str != "v1" {
		t.Fatalf("HGETALL map: %s", all)
	}
	if v, _ := all.Get("f2"); v.Str != "v2" {
		t.Fatalf("HGETALL map: %s", all)
	}
	if v := c.Do("GET", "h3:none"); v.Type != '_' {
		t.Fatalf("GET of a missing key in RESP3: %q, want the RESP3 null", v.Raw)
	}
}

func TestClientTrackingRESP3Invalidation(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	other := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, other.Do("SET", "trk:k", "v1"), "OK")
	if v := c.Do("HELLO", "3"); v.Type != '%' {
		t.Fatalf("HELLO 3: %q", v.Raw)
	}
	resptest.Expect(t, c.Do("CLIENT", "TRACKING", "ON"), "OK")
	resptest.Expect(t, c.Do("GET", "trk:k"), `"v1"`)
	resptest.Expect(t, other.Do("SET", "trk:k", "v2"), "OK")
	push := c.ReadTimeout(2 * time.Second)
	if push.Type != '>' {
		t.Fatalf("expected an invalidation push, got %q", push.Raw)
	}
	resptest.Expect(t, push, `["invalidate",["trk:k"]]`)
	resptest.Expect(t, c.Do("GET", "trk:k"), `"v2"`)
}

// === helpers (prefixed st) ===================================================

// stInfoInt reads an integer field of INFO section from Redis directly.
func stInfoInt(t testing.TB, r *redistest.Server, section, field string) int64 {
	t.Helper()
	v, err := r.Do("INFO", section)
	if err != nil {
		t.Fatalf("INFO %s on %s: %v", section, r.Addr, err)
	}
	b, _ := v.([]byte)
	for _, line := range strings.Split(string(b), "\r\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(rest, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s: %q", field, line)
			}
			return n
		}
	}
	t.Fatalf("INFO %s on %s has no %s", section, r.Addr, field)
	return 0
}

// stConnected is Redis's connected_clients (it counts the asking connection).
func stConnected(t testing.TB, r *redistest.Server) int64 {
	t.Helper()
	return stInfoInt(t, r, "clients", "connected_clients")
}

func stWaitBlocked(t testing.TB, r *redistest.Server, n int64) {
	t.Helper()
	poll.Until(t, 5*time.Second, fmt.Sprintf("%d clients blocked on %s", n, r.Addr), func() bool {
		return stInfoInt(t, r, "clients", "blocked_clients") == n
	})
}

func stNumSub(t testing.TB, r *redistest.Server, ch string) int64 {
	t.Helper()
	v, err := r.Do("PUBSUB", "NUMSUB", ch)
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	vs, _ := v.([]any)
	if len(vs) != 2 {
		t.Fatalf("PUBSUB NUMSUB reply %v", v)
	}
	n, _ := vs[1].(int64)
	return n
}

// stCmdStat is the calls count of INFO commandstats for cmd on r.
func stCmdStat(t testing.TB, r *redistest.Server, cmd string) int64 {
	t.Helper()
	v, err := r.Do("INFO", "commandstats")
	if err != nil {
		t.Fatalf("INFO commandstats on %s: %v", r.Addr, err)
	}
	b, _ := v.([]byte)
	for _, line := range strings.Split(string(b), "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q", line)
		}
		return n
	}
	return 0
}

// stLatencies runs fn repeatedly in a goroutine until stop is closed and
// records the longest call and any failure.
type stLatencies struct {
	mu    sync.Mutex
	worst time.Duration
	calls int
	err   error
	done  chan struct{}
}

func stMeasure(stop <-chan struct{}, fn func(i int) error) *stLatencies {
	l := &stLatencies{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			err := fn(i)
			d := time.Since(start)
			l.mu.Lock()
			l.calls++
			l.worst = max(l.worst, d)
			if err != nil && l.err == nil {
				l.err = err
			}
			l.mu.Unlock()
			if err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

func (l *stLatencies) result() (worst time.Duration, calls int, err error) {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.worst, l.calls, l.err
}
