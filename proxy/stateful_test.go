package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
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

	sub := stDial(t, tp.Addr)
	sub.send("SUBSCRIBE", "news")
	stExpect(t, sub.read(), `["subscribe","news",1]`)
	psub := stDial(t, tp.Addr)
	psub.send("PSUBSCRIBE", "ne*")
	stExpect(t, psub.read(), `["psubscribe","ne*",1]`)

	pub := stDial(t, tp.Addr)
	stExpect(t, pub.do("PUBLISH", "news", "hello world"), "2")
	stExpect(t, sub.read(), `["message","news","hello world"]`)
	stExpect(t, psub.read(), `["pmessage","ne*","news","hello world"]`)

	// A channel the plain subscriber did not ask for reaches only the
	// pattern subscriber.
	stExpect(t, pub.do("PUBLISH", "nets", "second"), "1")
	stExpect(t, psub.read(), `["pmessage","ne*","nets","second"]`)
	stExpect(t, pub.do("PUBLISH", "news", "third"), "2")
	stExpect(t, sub.read(), `["message","news","third"]`)
	stExpect(t, psub.read(), `["pmessage","ne*","news","third"]`)
}

func TestPubSubUnsubscribeWhenNotSubscribedLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := stCmds(
		[]string{"UNSUBSCRIBE"},
		[]string{"UNSUBSCRIBE", "a", "b"},
		[]string{"PUNSUBSCRIBE"},
		[]string{"PUNSUBSCRIBE", "p*"},
		[]string{"SUNSUBSCRIBE", "s"},
		// The session must still be an ordinary one afterwards.
		[]string{"SET", "unsub:k", "v"},
		[]string{"GET", "unsub:k"},
	)
	want := stExchange(t, r.Addr, req)
	got := stExchange(t, tp.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis\nproxy: %q\nredis: %q", got, want)
	}
	if !bytes.HasPrefix(got, []byte("*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")) {
		t.Fatalf("UNSUBSCRIBE reply: %q", got)
	}
}

func TestPubSubPingAndRestrictionsInSubscribedMode(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := stCmds(
		[]string{"SUBSCRIBE", "x"},
		[]string{"PING"},
		[]string{"PING", "hi"},
		[]string{"GET", "a"},
	)
	want := stExchange(t, r.Addr, req)
	got := stExchange(t, tp.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis\nproxy: %q\nredis: %q", got, want)
	}
	c := stDial(t, tp.Addr)
	c.send("SUBSCRIBE", "x")
	stExpect(t, c.read(), `["subscribe","x",1]`)
	stExpect(t, c.do("PING"), `["pong",""]`)
	stExpect(t, c.do("PING", "hi"), `["pong","hi"]`)
}

func TestPubSubSubscriberDisconnectReleasesBackend(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	base := stConnected(t, r)

	sub := stDial(t, tp.Addr)
	sub.send("SUBSCRIBE", "gone")
	stExpect(t, sub.read(), `["subscribe","gone",1]`)
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned while subscribed = %d, want 1", n)
	}
	if n := stConnected(t, r); n != base+1 {
		t.Fatalf("Redis clients while subscribed = %d, want %d", n, base+1)
	}
	if n := stNumSub(t, r, "gone"); n != 1 {
		t.Fatalf("PUBSUB NUMSUB gone = %d, want 1", n)
	}
	sub.close()
	stEventually(t, 3*time.Second, "pinned back to 0 after the subscriber left", func() bool {
		return tp.pinned.Load() == 0
	})
	stEventually(t, 3*time.Second, "the subscription's Redis connection closed", func() bool {
		return stConnected(t, r) == base && stNumSub(t, r, "gone") == 0
	})
}

// --- MULTI/EXEC ------------------------------------------------------------

func TestMultiExecQueuesAndReleasesPin(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	other := stDial(t, tp.Addr)

	stExpect(t, c.do("MULTI"), "OK")
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned inside MULTI = %d, want 1", n)
	}
	stExpect(t, c.do("SET", "tx:k", "v"), "QUEUED")
	stExpect(t, c.do("INCR", "tx:n"), "QUEUED")
	stExpect(t, c.do("INCR", "tx:n"), "QUEUED")
	// Queued, not run: another client does not see the writes yet.
	stExpect(t, other.do("GET", "tx:k"), "<nil>")
	stExpect(t, c.do("EXEC"), `[OK,1,2]`)
	stExpect(t, other.do("GET", "tx:k"), `"v"`)
	stExpect(t, other.do("GET", "tx:n"), `"2"`)
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after EXEC = %d, want 0 (session back on the shared pool)", n)
	}
	// A pipelined transaction: replies in order, pin released at the end.
	c.send("MULTI")
	c.send("INCR", "tx:n")
	c.send("EXEC")
	c.send("GET", "tx:n")
	stExpect(t, c.read(), "OK")
	stExpect(t, c.read(), "QUEUED")
	stExpect(t, c.read(), `[3]`)
	stExpect(t, c.read(), `"3"`)
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after pipelined EXEC = %d, want 0", n)
	}
}

func TestWatchAbortsExecAfterConcurrentModification(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	other := stDial(t, tp.Addr)

	stExpect(t, c.do("SET", "w:k", "0"), "OK")
	stExpect(t, c.do("WATCH", "w:k"), "OK")
	stExpect(t, c.do("GET", "w:k"), `"0"`)
	stExpect(t, other.do("SET", "w:k", "theirs"), "OK")
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("SET", "w:k", "mine"), "QUEUED")
	stExpect(t, c.do("EXEC"), "<nil>")
	stExpect(t, other.do("GET", "w:k"), `"theirs"`)
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after aborted EXEC = %d, want 0", n)
	}
	// Without interference the same transaction commits.
	stExpect(t, c.do("WATCH", "w:k"), "OK")
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("SET", "w:k", "mine"), "QUEUED")
	stExpect(t, c.do("EXEC"), `[OK]`)
	stExpect(t, other.do("GET", "w:k"), `"mine"`)
}

func TestDiscardDropsQueuedCommands(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("SET", "d:k", "v"), "QUEUED")
	stExpect(t, c.do("DISCARD"), "OK")
	stExpect(t, c.do("GET", "d:k"), "<nil>")
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after DISCARD = %d, want 0", n)
	}
}

func TestTransactionErrorsLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	req := stCmds(
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
	want := stExchange(t, r.Addr, req)
	// Run on the proxy against a fresh server so the keys start absent.
	r2 := redistest.Start(t)
	tp2 := startProxy(t, Config{}, r2.Addr)
	got := stExchange(t, tp2.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis\nproxy: %q\nredis: %q", got, want)
	}
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
		c := stDial(t, target.addr)
		other := stDial(t, target.addr)
		key := "wsel:" + target.name
		stExpect(t, c.do("SELECT", "1"), "OK")
		stExpect(t, c.do("SET", key, "in-db1"), "OK")
		stExpect(t, c.do("WATCH", key+":w"), "OK")
		stExpect(t, other.do("SELECT", "1"), "OK")
		stExpect(t, other.do("SET", key+":w", "touched"), "OK")
		stExpect(t, c.do("MULTI"), "OK")
		stExpect(t, c.do("SELECT", "0"), "QUEUED")
		stExpect(t, c.do("EXEC"), "<nil>")
		if got := c.do("GET", key).String(); got != `"in-db1"` {
			t.Errorf("%s: GET after a WATCH-aborted EXEC with a queued SELECT 0 = %s, want \"in-db1\" (still in db 1)", target.name, got)
		}
		// A new client starts in db 0, whatever connection serves it.
		fresh := stDial(t, target.addr)
		stExpect(t, fresh.do("MULTI"), "OK")
		stExpect(t, fresh.do("GET", key), "QUEUED")
		if got := fresh.do("EXEC").String(); got != "[<nil>]" {
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
			a := stDial(t, tp.Addr)
			stExpect(t, a.do("MULTI"), "OK")
			stExpect(t, a.do(tc.cmd...), "QUEUED")
			if v := a.do("EXEC"); v.typ != '*' || len(v.elems) != 1 {
				t.Fatalf("EXEC: %q", v.raw)
			}
			// Another client's transaction, perhaps on the connection A
			// used, must see a plain RESP2, unsubscribed connection.
			b := stDial(t, tp.Addr)
			b.write(stCmds([]string{"MULTI"}, []string{"GET", "mstate:none"}, []string{"HSET", "mstate:h", "f", "v"}, []string{"HGETALL", "mstate:h"}, []string{"EXEC"}))
			var got []byte
			for i := 0; i < 5; i++ {
				v, err := b.tryRead(2 * time.Second)
				got = append(got, v.raw...)
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
	c1 := stDial(t, tp.Addr)
	c2 := stDial(t, tp.Addr)

	stExpect(t, c1.do("SELECT", "1"), "OK")
	stExpect(t, c1.do("SET", "sel:k", "db1"), "OK")
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned while in db 1 = %d, want 1", n)
	}
	stExpect(t, c2.do("GET", "sel:k"), "<nil>")
	stExpect(t, c1.do("GET", "sel:k"), `"db1"`)
	// Where the key really is, asked of Redis directly.
	direct := stDial(t, r.Addr)
	stExpect(t, direct.do("GET", "sel:k"), "<nil>")
	stExpect(t, direct.do("SELECT", "1"), "OK")
	stExpect(t, direct.do("GET", "sel:k"), `"db1"`)

	stExpect(t, c1.do("SELECT", "0"), "OK")
	stExpect(t, c1.do("GET", "sel:k"), "<nil>")
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after SELECT 0 = %d, want 0", n)
	}
	// A session in db 1 that turns into a tunnel (a blocking command) stays
	// in db 1.
	c4 := stDial(t, tp.Addr)
	stExpect(t, c4.do("SELECT", "1"), "OK")
	stExpect(t, c4.readAfter(3*time.Second, "BLPOP", "sel:none", "0.1"), "<nil>")
	stExpect(t, c4.do("GET", "sel:k"), `"db1"`)
	// The released connection went back clean: a new session's MULTI (which
	// may reuse it) runs in db 0.
	c3 := stDial(t, tp.Addr)
	stExpect(t, c3.do("MULTI"), "OK")
	stExpect(t, c3.do("GET", "sel:k"), "QUEUED")
	stExpect(t, c3.do("EXEC"), "[<nil>]")
}

func TestSelectInsideMultiAppliedAtExec(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("SELECT", "2"), "QUEUED")
	stExpect(t, c.do("SET", "msel:k", "db2"), "QUEUED")
	stExpect(t, c.do("EXEC"), `[OK,OK]`)
	// The session is now in db 2.
	stExpect(t, c.do("GET", "msel:k"), `"db2"`)
	stExpect(t, c.do("SET", "msel:k2", "also-db2"), "OK")
	direct := stDial(t, r.Addr)
	stExpect(t, direct.do("SELECT", "2"), "OK")
	stExpect(t, direct.do("MGET", "msel:k", "msel:k2"), `["db2","also-db2"]`)
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned in db 2 after EXEC = %d, want 1", n)
	}
	stExpect(t, c.do("SELECT", "0"), "OK")
	stExpect(t, c.do("GET", "msel:k"), "<nil>")
	if n := tp.pinned.Load(); n != 0 {
		t.Fatalf("pinned after SELECT 0 = %d, want 0", n)
	}
}

func TestSelectInvalidIndexLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := stCmds(
		[]string{"SELECT", "16"},
		[]string{"SELECT", "abc"},
		[]string{"SELECT", "-1"},
		[]string{"SELECT", "99999999999999999999"},
		[]string{"SELECT", "1", "2"},
		[]string{"SELECT"},
		[]string{"SET", "inv:k", "v"},
		[]string{"GET", "inv:k"},
	)
	want := stExchange(t, r.Addr, req)
	got := stExchange(t, tp.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis\nproxy: %q\nredis: %q", got, want)
	}
	if !bytes.HasPrefix(got, []byte("-ERR DB index is out of range\r\n")) {
		t.Fatalf("SELECT 16: %q", got)
	}
	// The failed SELECTs left the session in db 0, on the shared pool.
	stEventually(t, time.Second, "pinned back to 0", func() bool { return tp.pinned.Load() == 0 })
	direct := stDial(t, r.Addr)
	stExpect(t, direct.do("GET", "inv:k"), `"v"`)
}

// --- blocking commands -----------------------------------------------------

func TestBlpopWokenByPushFromAnotherClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	a := stDial(t, tp.Addr)
	b := stDial(t, tp.Addr)
	a.send("BLPOP", "bl:list", "0")
	stWaitBlocked(t, r, 1)
	pushed := time.Now()
	stExpect(t, b.do("RPUSH", "bl:list", "x"), "1")
	v := a.readTimeout(2 * time.Second)
	stExpect(t, v, `["bl:list","x"]`)
	if d := time.Since(pushed); d > time.Second {
		t.Fatalf("BLPOP answered %v after the push", d)
	}
	stExpect(t, b.do("LLEN", "bl:list"), "0")
}

func TestBlpopTimesOut(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	start := time.Now()
	v := c.readAfter(3*time.Second, "BLPOP", "bl:empty", "1")
	d := time.Since(start)
	stExpect(t, v, "<nil>")
	if d < 900*time.Millisecond || d > 2*time.Second {
		t.Fatalf("BLPOP with a 1s timeout answered after %v", d)
	}
	// The session goes on working after the timeout.
	stExpect(t, c.do("SET", "bl:after", "1"), "OK")
	stExpect(t, c.do("GET", "bl:after"), `"1"`)
}

func TestXreadBlockWokenByXadd(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	a := stDial(t, tp.Addr)
	b := stDial(t, tp.Addr)
	a.send("XREAD", "BLOCK", "0", "STREAMS", "xs", "$")
	stWaitBlocked(t, r, 1)
	id := b.do("XADD", "xs", "*", "field", "value")
	if id.typ != '$' || !strings.Contains(id.str, "-") {
		t.Fatalf("XADD: %s", id)
	}
	v := a.readTimeout(2 * time.Second)
	want := fmt.Sprintf(`[["xs",[[%q,["field","value"]]]]]`, id.str)
	stExpect(t, v, want)
}

func TestBlmoveWokenByPush(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	a := stDial(t, tp.Addr)
	b := stDial(t, tp.Addr)
	a.send("BLMOVE", "bm:src", "bm:dst", "LEFT", "RIGHT", "0")
	stWaitBlocked(t, r, 1)
	stExpect(t, b.do("RPUSH", "bm:src", "item"), "1")
	stExpect(t, a.readTimeout(2*time.Second), `"item"`)
	stExpect(t, b.do("LRANGE", "bm:dst", "0", "-1"), `["item"]`)
	stExpect(t, b.do("LLEN", "bm:src"), "0")
}

func TestWaitZeroReplicas(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("SET", "wait:k", "v"), "OK")
	start := time.Now()
	stExpect(t, c.do("WAIT", "0", "0"), "0")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("WAIT 0 0 took %v", d)
	}
	stExpect(t, c.do("GET", "wait:k"), `"v"`)
}

func TestBlockedClientDisconnectFreesBackend(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	base := stConnected(t, r)
	c := stDial(t, tp.Addr)
	c.send("BLPOP", "bd:list", "0")
	stWaitBlocked(t, r, 1)
	if n := stConnected(t, r); n != base+1 {
		t.Fatalf("Redis clients while blocked = %d, want %d", n, base+1)
	}
	c.close()
	stEventually(t, 3*time.Second, "the blocked client's Redis connection closed", func() bool {
		return stInfoInt(t, r, "clients", "blocked_clients") == 0 && stConnected(t, r) == base
	})
	stEventually(t, time.Second, "pinned back to 0", func() bool { return tp.pinned.Load() == 0 })
	// Nobody is waiting on the list any more: a push stays in it.
	other := stDial(t, tp.Addr)
	stExpect(t, other.do("RPUSH", "bd:list", "x"), "1")
	stExpect(t, other.do("LLEN", "bd:list"), "1")
}

func TestBlockedClientsDoNotStallSharedPool(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{PoolSize: 2}, r.Addr)
	const blocked = 20
	waiters := make([]*stConn, blocked)
	for i := range waiters {
		waiters[i] = stDial(t, tp.Addr)
		waiters[i].send("BLPOP", fmt.Sprintf("stall:%d", i), "0")
	}
	stWaitBlocked(t, r, blocked)

	const n = 200
	var worst time.Duration
	var clients [4]*stConn
	for i := range clients {
		clients[i] = stDial(t, tp.Addr)
	}
	for i := 0; i < n; i++ {
		c := clients[i%len(clients)]
		start := time.Now()
		stExpect(t, c.do("SET", fmt.Sprintf("stall:k%d", i), strconv.Itoa(i)), "OK")
		stExpect(t, c.do("GET", fmt.Sprintf("stall:k%d", i)), strconv.Quote(strconv.Itoa(i)))
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
	pusher := stDial(t, tp.Addr)
	for i, w := range waiters {
		stExpect(t, pusher.do("RPUSH", fmt.Sprintf("stall:%d", i), "v"+strconv.Itoa(i)), "1")
		stExpect(t, w.readTimeout(2*time.Second), fmt.Sprintf(`["stall:%d","v%d"]`, i, i))
	}
}

// --- MONITOR ---------------------------------------------------------------

func TestMonitorSeesOtherClientsCommands(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	mon := stDial(t, tp.Addr)
	stExpect(t, mon.do("MONITOR"), "OK")
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("SET", "mon:key", "mon-value"), "OK")
	deadline := time.Now().Add(3 * time.Second)
	for {
		v := mon.readTimeout(time.Until(deadline))
		if v.typ == '+' && strings.Contains(v.str, `"SET" "mon:key" "mon-value"`) {
			return
		}
	}
}

// --- CLIENT ----------------------------------------------------------------

func TestClientReplyLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	req := stCmds(
		[]string{"CLIENT", "REPLY", "ON"},
		[]string{"CLIENT", "REPLY", "OFF"},
		[]string{"SET", "cr:a", "1"},
		[]string{"INCR", "cr:a"},
		[]string{"CLIENT", "REPLY", "ON"},
		[]string{"CLIENT", "REPLY", "SKIP"},
		[]string{"INCR", "cr:a"},
		[]string{"GET", "cr:a"},
	)
	want := stExchange(t, r.Addr, req)
	r2 := redistest.Start(t)
	tp2 := startProxy(t, Config{}, r2.Addr)
	got := stExchange(t, tp2.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis\nproxy: %q\nredis: %q", got, want)
	}
	if string(got) != "+OK\r\n+OK\r\n$1\r\n3\r\n" {
		t.Fatalf("CLIENT REPLY replies: %q", got)
	}
	// The silenced commands did run.
	stExpect(t, stDial(t, r2.Addr).do("GET", "cr:a"), `"3"`)
}

func TestClientNamesArePerClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c1 := stDial(t, tp.Addr)
	c2 := stDial(t, tp.Addr)
	c3 := stDial(t, tp.Addr)
	stExpect(t, c1.do("CLIENT", "SETNAME", "alpha"), "OK")
	stExpect(t, c2.do("CLIENT", "SETNAME", "beta"), "OK")
	stExpect(t, c1.do("CLIENT", "GETNAME"), `"alpha"`)
	stExpect(t, c2.do("CLIENT", "GETNAME"), `"beta"`)
	stExpect(t, c3.do("CLIENT", "GETNAME"), "<nil>")
	stExpect(t, c1.do("CLIENT", "SETNAME", "bad name"), "(error) ERR Client names cannot contain spaces, newlines or special characters.")
	stExpect(t, c1.do("CLIENT", "GETNAME"), `"alpha"`)
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
		named := stDial(t, target.addr)
		stExpect(t, named.do("CLIENT", "SETNAME", "worker-1"), "OK")
		stExpect(t, named.readAfter(3*time.Second, "BLPOP", "gn:none", "0.1"), "<nil>")
		stExpect(t, named.do("CLIENT", "GETNAME"), `"worker-1"`)

		anon := stDial(t, target.addr)
		stExpect(t, anon.do("CLIENT", "GETNAME"), "<nil>")
		stExpect(t, anon.readAfter(3*time.Second, "BLPOP", "gn:none", "0.1"), "<nil>")
		stExpect(t, anon.do("CLIENT", "GETNAME"), "<nil>")
	}
}

// Inside MULTI every command is queued and answered by EXEC, including
// those the proxy otherwise answers itself (CLIENT SETNAME/GETNAME, CLIENT
// REPLY ON, AUTH).
func TestLocallyAnsweredCommandsInsideMultiLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := stCmds(
		[]string{"MULTI"},
		[]string{"CLIENT", "SETNAME", "in-tx"},
		[]string{"CLIENT", "GETNAME"},
		[]string{"CLIENT", "REPLY", "ON"},
		[]string{"AUTH", "x"},
		[]string{"EXEC"},
		[]string{"CLIENT", "GETNAME"},
	)
	want := stExchange(t, r.Addr, req)
	got := stExchange(t, tp.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis\nproxy: %q\nredis: %q", got, want)
	}
}

func TestClientIDIsPerClient(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c1 := stDial(t, tp.Addr)
	c2 := stDial(t, tp.Addr)
	id1 := c1.do("CLIENT", "ID")
	id2 := c2.do("CLIENT", "ID")
	if id1.typ != ':' || id2.typ != ':' {
		t.Fatalf("CLIENT ID replies: %s %s", id1, id2)
	}
	if id1.num == id2.num {
		t.Fatalf("two clients share CLIENT ID %d", id1.num)
	}
	if again := c1.do("CLIENT", "ID"); again.num != id1.num {
		t.Fatalf("CLIENT ID changed from %d to %d on the same connection", id1.num, again.num)
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
		worker := stDial(t, target.addr)
		ctl := stDial(t, target.addr)
		id := worker.do("CLIENT", "ID")
		if id.typ != ':' {
			t.Fatalf("CLIENT ID: %s", id)
		}
		worker.send("BLPOP", "unb:list", "0")
		stWaitBlocked(t, r, 1)
		stExpect(t, ctl.do("CLIENT", "UNBLOCK", strconv.FormatInt(id.num, 10)), "1")
		stExpect(t, worker.readTimeout(2*time.Second), "<nil>")
		if again := worker.do("CLIENT", "ID"); again.num != id.num {
			t.Fatalf("CLIENT ID changed from %d to %d after a blocking command", id.num, again.num)
		}
	}
}

// --- RESP3 -----------------------------------------------------------------

func TestHello3RepliesInRESP3(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	hello := c.do("HELLO", "3")
	if hello.typ != '%' || hello.raw[0] != '%' {
		t.Fatalf("HELLO 3 reply is not a RESP3 map: %q", hello.raw)
	}
	if v, ok := hello.mapGet("proto"); !ok || v.num != 3 {
		t.Fatalf("HELLO 3 proto field: %s", hello)
	}
	stExpect(t, c.do("HSET", "h3:h", "f1", "v1", "f2", "v2"), "2")
	all := c.do("HGETALL", "h3:h")
	if all.typ != '%' {
		t.Fatalf("HGETALL after HELLO 3 is not a map: %q", all.raw)
	}
	if v, _ := all.mapGet("f1"); v.str != "v1" {
		t.Fatalf("HGETALL map: %s", all)
	}
	if v, _ := all.mapGet("f2"); v.str != "v2" {
		t.Fatalf("HGETALL map: %s", all)
	}
	if v := c.do("GET", "h3:none"); v.typ != '_' {
		t.Fatalf("GET of a missing key in RESP3: %q, want the RESP3 null", v.raw)
	}
}

func TestClientTrackingRESP3Invalidation(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	c := stDial(t, tp.Addr)
	other := stDial(t, tp.Addr)
	stExpect(t, other.do("SET", "trk:k", "v1"), "OK")
	if v := c.do("HELLO", "3"); v.typ != '%' {
		t.Fatalf("HELLO 3: %q", v.raw)
	}
	stExpect(t, c.do("CLIENT", "TRACKING", "ON"), "OK")
	stExpect(t, c.do("GET", "trk:k"), `"v1"`)
	stExpect(t, other.do("SET", "trk:k", "v2"), "OK")
	push := c.readTimeout(2 * time.Second)
	if push.typ != '>' {
		t.Fatalf("expected an invalidation push, got %q", push.raw)
	}
	stExpect(t, push, `["invalidate",["trk:k"]]`)
	stExpect(t, c.do("GET", "trk:k"), `"v2"`)
}

// === helpers (prefixed st) ===================================================

// stValue is one RESP2/RESP3 value as read from the wire, with its raw bytes.
type stValue struct {
	typ   byte
	str   string
	num   int64
	null  bool
	elems []stValue // arrays, sets, pushes; maps as key, value, key, value
	raw   []byte
}

// String renders v compactly: simple strings bare, bulk strings quoted,
// integers as numbers, errors as "(error) ...", aggregates as [a,b].
func (v stValue) String() string {
	if v.null {
		return "<nil>"
	}
	switch v.typ {
	case '+':
		return v.str
	case '-', '!':
		return "(error) " + v.str
	case ':':
		return strconv.FormatInt(v.num, 10)
	case '$', '=':
		return strconv.Quote(v.str)
	case ',', '(', '#':
		return v.str
	case '*', '~', '>', '%':
		parts := make([]string, len(v.elems))
		for i, e := range v.elems {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprintf("?%q", v.raw)
}

func (v stValue) mapGet(key string) (stValue, bool) {
	for i := 0; i+1 < len(v.elems); i += 2 {
		if v.elems[i].str == key {
			return v.elems[i+1], true
		}
	}
	return stValue{}, false
}

func stReadValue(br *bufio.Reader) (stValue, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return stValue{raw: []byte(line)}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return stValue{raw: []byte(line)}, fmt.Errorf("malformed RESP line %q", line)
	}
	v := stValue{typ: line[0], raw: []byte(line)}
	body := line[1 : len(line)-2]
	switch v.typ {
	case '+', '-', ',', '(', '#':
		v.str = body
	case ':':
		v.num, err = strconv.ParseInt(body, 10, 64)
	case '_':
		v.null = true
	case '$', '=', '!':
		n, perr := strconv.Atoi(body)
		if perr != nil {
			return v, perr
		}
		if n < 0 {
			v.null = true
			break
		}
		buf := make([]byte, n+2)
		if _, err = io.ReadFull(br, buf); err != nil {
			return v, err
		}
		v.raw = append(v.raw, buf...)
		v.str = string(buf[:n])
	case '*', '~', '>', '%':
		n, perr := strconv.Atoi(body)
		if perr != nil {
			return v, perr
		}
		if n < 0 {
			v.null = true
			break
		}
		if v.typ == '%' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			e, err := stReadValue(br)
			v.raw = append(v.raw, e.raw...)
			if err != nil {
				return v, err
			}
			v.elems = append(v.elems, e)
		}
	default:
		return v, fmt.Errorf("unknown RESP type in %q", line)
	}
	return v, err
}

// stCmd encodes one command as a RESP array of bulk strings.
func stCmd(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

func stCmds(cmds ...[]string) []byte {
	var b []byte
	for _, c := range cmds {
		b = append(b, stCmd(c...)...)
	}
	return b
}

// stConn is a raw RESP client: it sees the exact bytes the proxy sends.
type stConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func stDial(t testing.TB, addr string) *stConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &stConn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
}

func (c *stConn) close() { c.nc.Close() }

func (c *stConn) write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *stConn) send(args ...string) {
	c.t.Helper()
	c.write(stCmd(args...))
}

// tryRead reads one value within d.
func (c *stConn) tryRead(d time.Duration) (stValue, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	defer c.nc.SetReadDeadline(time.Time{})
	return stReadValue(c.br)
}

func (c *stConn) readTimeout(d time.Duration) stValue {
	c.t.Helper()
	v, err := c.tryRead(d)
	if err != nil {
		c.t.Fatalf("read reply: %v (partial %q)", err, v.raw)
	}
	return v
}

func (c *stConn) read() stValue {
	c.t.Helper()
	return c.readTimeout(5 * time.Second)
}

// tryDo is do without failing the test, for use off the test goroutine.
func (c *stConn) tryDo(args ...string) (stValue, error) {
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(stCmd(args...)); err != nil {
		return stValue{}, err
	}
	return c.tryRead(5 * time.Second)
}

func (c *stConn) do(args ...string) stValue {
	c.t.Helper()
	c.send(args...)
	return c.read()
}

// readAfter sends a command and waits up to d for its reply.
func (c *stConn) readAfter(d time.Duration, args ...string) stValue {
	c.t.Helper()
	c.send(args...)
	return c.readTimeout(d)
}

// readUntilClosed reads everything until the server closes the connection
// or d passes; closed says which.
func (c *stConn) readUntilClosed(d time.Duration) (got []byte, closed bool) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	defer c.nc.SetReadDeadline(time.Time{})
	buf := make([]byte, 64<<10)
	for {
		n, err := c.br.Read(buf)
		got = append(got, buf[:n]...)
		if err == nil {
			continue
		}
		var ne net.Error
		return got, !(errors.As(err, &ne) && ne.Timeout())
	}
}

// expectClosed asserts that the server closes the connection within d
// (after any replies still in flight, which are returned).
func (c *stConn) expectClosed(d time.Duration) []byte {
	c.t.Helper()
	got, closed := c.readUntilClosed(d)
	if !closed {
		c.t.Fatalf("connection still open after %v (read %d bytes: %.200q)", d, len(got), got)
	}
	return got
}

func stExpect(t testing.TB, v stValue, want string) {
	t.Helper()
	if got := v.String(); got != want {
		t.Fatalf("reply %s (raw %.300q), want %s", got, v.raw, want)
	}
}

// stExchange sends req followed by a sentinel PING on a new connection and
// returns the raw bytes of every reply before the sentinel's.
func stExchange(t testing.TB, addr string, req []byte) []byte {
	t.Helper()
	const sentinel = "st-exchange-end"
	c := stDial(t, addr)
	c.write(append(append([]byte(nil), req...), stCmd("PING", sentinel)...))
	var out []byte
	for {
		v, err := c.tryRead(5 * time.Second)
		if err != nil {
			t.Fatalf("exchange with %s: %v after %q", addr, err, out)
		}
		// In subscribed mode PING answers ["pong", arg].
		end := v.typ == '$' && v.str == sentinel ||
			v.typ == '*' && len(v.elems) == 2 && v.elems[1].str == sentinel
		if end {
			c.close()
			return out
		}
		out = append(out, v.raw...)
	}
}

// stEventually polls cond every 10ms until it holds or d passes.
func stEventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

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
	stEventually(t, 5*time.Second, fmt.Sprintf("%d clients blocked on %s", n, r.Addr), func() bool {
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
