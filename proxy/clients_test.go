package proxy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// The clients a client sees — CLIENT LIST, INFO, KILL, TRACKING REDIRECT,
// INFO clients — are the same through the proxy as on Redis: each test runs
// its sequence against a Redis of its own and against a proxy in front of
// another Redis, and checks the same observable result on both.

// onBoth runs f against a Redis directly and through a proxy (each with a
// server of its own, so the proxy's connections are not Redis's clients of
// the direct run).
func onBoth(t *testing.T, f func(t *testing.T, addr string, r *redistest.Server)) {
	t.Run("redis", func(t *testing.T) {
		r := redistest.Start(t)
		f(t, r.Addr, r)
	})
	t.Run("proxy", func(t *testing.T) {
		r := redistest.Start(t)
		tp := startProxy(t, Config{}, r.Addr)
		f(t, tp.Addr, r)
	})
}

// clientLine returns the CLIENT LIST line of id in list, or "".
func clientLine(list string, id int64) string {
	for _, l := range strings.Split(list, "\n") {
		if strings.HasPrefix(l, "id="+strconv.FormatInt(id, 10)+" ") {
			return l
		}
	}
	return ""
}

// field returns the value of name in a CLIENT LIST line.
func field(line, name string) string {
	for _, kv := range strings.Fields(line) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

func countLines(list string) int {
	return len(strings.Fields(strings.ReplaceAll(list, " ", "_")))
}

func TestClientListShowsClients(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, addr string, _ *redistest.Server) {
		a := resptest.Dial(t, addr)
		b := resptest.Dial(t, addr)
		resptest.Expect(t, a.Do("CLIENT", "SETNAME", "myname"), "OK")
		resptest.Expect(t, a.Do("SET", "k", "v"), "OK")
		idA := a.Do("CLIENT", "ID").Int
		idB := b.Do("CLIENT", "ID").Int
		list := b.Do("CLIENT", "LIST").Str
		la := clientLine(list, idA)
		if la == "" {
			t.Fatalf("CLIENT LIST has no line for id %d:\n%s", idA, list)
		}
		for name, want := range map[string]string{
			"name": "myname", "addr": a.NetConn().LocalAddr().String(), "laddr": addr, "db": "0",
			"flags": "N", "multi": "-1", "sub": "0", "user": "default", "resp": "2", "cmd": "client|id",
		} {
			if got := field(la, name); got != want {
				t.Errorf("client A's %s=%q, want %q (line %s)", name, got, want, la)
			}
		}
		lb := clientLine(list, idB)
		if field(lb, "cmd") != "client|list" {
			t.Errorf("the caller's line: cmd=%q, want client|list (%s)", field(lb, "cmd"), lb)
		}
		if n := countLines(list); n != 2 {
			t.Errorf("CLIENT LIST has %d lines, want 2 (the proxy's own connections are not clients):\n%s", n, list)
		}
		// Filters.
		only := b.Do("CLIENT", "LIST", "ID", strconv.FormatInt(idA, 10)).Str
		if countLines(only) != 1 || clientLine(only, idA) == "" {
			t.Errorf("CLIENT LIST ID %d: %q", idA, only)
		}
		if n := countLines(b.Do("CLIENT", "LIST", "TYPE", "normal").Str); n != 2 {
			t.Errorf("CLIENT LIST TYPE normal: %d lines, want 2", n)
		}
		resptest.Expect(t, b.Do("CLIENT", "LIST", "TYPE", "pubsub"), `""`)
		resptest.Expect(t, b.Do("CLIENT", "LIST", "TYPE", "nosuch"), "(error) ERR Unknown client type 'nosuch'")
		resptest.Expect(t, b.Do("CLIENT", "LIST", "ID", "x"), "(error) ERR Invalid client ID")
		resptest.Expect(t, b.Do("CLIENT", "LIST", "FOO"), "(error) ERR syntax error")
		// CLIENT INFO: the caller.
		info := a.Do("CLIENT", "INFO").Str
		if !strings.HasSuffix(info, "\n") || field(info, "id") != strconv.FormatInt(idA, 10) ||
			field(info, "name") != "myname" || field(info, "cmd") != "client|info" {
			t.Errorf("CLIENT INFO: %q", info)
		}
	})
}

// A client with a connection of its own (a subscriber, one blocked, one in
// a transaction) shows what the server knows of it.
func TestClientListDedicatedClients(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, addr string, r *redistest.Server) {
		sub := resptest.Dial(t, addr)
		subID := sub.Do("CLIENT", "ID").Int
		sub.Send("SUBSCRIBE", "c1", "c2")
		sub.Read()
		sub.Read()
		blk := resptest.Dial(t, addr)
		resptest.Expect(t, blk.Do("CLIENT", "SETNAME", "worker"), "OK")
		blkID := blk.Do("CLIENT", "ID").Int
		blk.Send("BLPOP", "dq", "0")
		stWaitBlocked(t, r, 1)
		tx := resptest.Dial(t, addr)
		txID := tx.Do("CLIENT", "ID").Int
		resptest.Expect(t, tx.Do("MULTI"), "OK")
		resptest.Expect(t, tx.Do("INCR", "n"), "QUEUED")

		ctl := resptest.Dial(t, addr)
		list := ctl.Do("CLIENT", "LIST").Str
		ls, lb, lt := clientLine(list, subID), clientLine(list, blkID), clientLine(list, txID)
		if field(ls, "flags") != "P" || field(ls, "sub") != "2" || field(ls, "cmd") != "subscribe" {
			t.Errorf("subscriber: %s", ls)
		}
		if field(lb, "flags") != "b" || field(lb, "name") != "worker" || field(lb, "cmd") != "blpop" {
			t.Errorf("blocked client: %s", lb)
		}
		if field(lt, "flags") != "x" || field(lt, "multi") != "1" {
			t.Errorf("client in MULTI: %s", lt)
		}
		pubsub := ctl.Do("CLIENT", "LIST", "TYPE", "pubsub").Str
		if countLines(pubsub) != 1 || clientLine(pubsub, subID) == "" {
			t.Errorf("CLIENT LIST TYPE pubsub: %q", pubsub)
		}
		info := ctl.Do("INFO", "clients").Str
		for name, want := range map[string]string{"connected_clients": "4", "blocked_clients": "1"} {
			if got := infoField(info, name); got != want {
				t.Errorf("INFO clients: %s=%q, want %q:\n%s", name, got, want, info)
			}
		}
		resptest.Expect(t, tx.Do("EXEC"), "[1]")
	})
}

func infoField(info, name string) string {
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return v
		}
	}
	return ""
}

func TestInfoClientsCountsClients(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, addr string, _ *redistest.Server) {
		var cs []*resptest.Conn
		for range 5 {
			c := resptest.Dial(t, addr)
			resptest.Expect(t, c.Do("PING"), "PONG")
			cs = append(cs, c)
		}
		for _, section := range [][]string{{"INFO"}, {"INFO", "clients"}, {"INFO", "everything"}} {
			info := cs[0].Do(section...).Str
			if got := infoField(info, "connected_clients"); got != "5" {
				t.Errorf("%v: connected_clients=%q, want 5", section, got)
			}
		}
		cs[4].Close()
		poll.Until(t, 2*time.Second, "4 clients", func() bool {
			return infoField(cs[0].Do("INFO", "clients").Str, "connected_clients") == "4"
		})
		if info := cs[0].Do("INFO", "memory").Str; strings.Contains(info, "# Clients") {
			t.Errorf("INFO memory shows the clients section")
		}
	})
}

func TestClientKill(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, addr string, _ *redistest.Server) {
		ctl := resptest.Dial(t, addr)
		victim := resptest.Dial(t, addr)
		id := victim.Do("CLIENT", "ID").Int
		ids := strconv.FormatInt(id, 10)
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "ID", ids), "1")
		victim.ExpectClosed(2 * time.Second)
		poll.Until(t, 2*time.Second, "the killed client gone from CLIENT LIST", func() bool {
			return clientLine(ctl.Do("CLIENT", "LIST").Str, id) == ""
		})
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "ID", ids), "0")
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "ID", "0"), "(error) ERR client-id should be greater than 0")
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "TYPE", "x"), "(error) ERR Unknown client type 'x'")
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "SKIPME", "maybe"), "(error) ERR syntax error")
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "127.0.0.1:1"), "(error) ERR No such client")

		// The old form, by address.
		v2 := resptest.Dial(t, addr)
		resptest.Expect(t, v2.Do("PING"), "PONG")
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", v2.NetConn().LocalAddr().String()), "OK")
		v2.ExpectClosed(2 * time.Second)
		// ADDR and LADDR filters.
		v3 := resptest.Dial(t, addr)
		resptest.Expect(t, v3.Do("PING"), "PONG")
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "ADDR", v3.NetConn().LocalAddr().String(), "LADDR", addr), "1")
		v3.ExpectClosed(2 * time.Second)

		// SKIPME yes (the default) kills every other client, a blocked
		// one and a subscriber among them, and not the caller.
		var others []*resptest.Conn
		for range 3 {
			c := resptest.Dial(t, addr)
			resptest.Expect(t, c.Do("PING"), "PONG")
			others = append(others, c)
		}
		blk := resptest.Dial(t, addr)
		blk.Send("BLPOP", "kq", "0")
		sub := resptest.Dial(t, addr)
		sub.Send("SUBSCRIBE", "kc")
		sub.Read()
		poll.Until(t, 2*time.Second, "6 clients", func() bool { return countLines(ctl.Do("CLIENT", "LIST").Str) == 6 })
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "USER", "default"), "5")
		for _, c := range append(others, blk, sub) {
			c.ExpectClosed(2 * time.Second)
		}
		resptest.Expect(t, ctl.Do("PING"), "PONG")
		// SKIPME no: the caller too, after its reply.
		resptest.Expect(t, ctl.Do("CLIENT", "KILL", "ID", strconv.FormatInt(ctl.Do("CLIENT", "ID").Int, 10), "SKIPME", "no"), "1")
		ctl.ExpectClosed(2 * time.Second)
	})
}

// CLIENT KILL MAXAGE (Redis 7.4) kills clients connected longer than it.
func TestClientKillMaxAge(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	old := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, old.Do("PING"), "PONG")
	time.Sleep(2100 * time.Millisecond)
	young := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, young.Do("CLIENT", "KILL", "MAXAGE", "1"), "1")
	old.ExpectClosed(2 * time.Second)
	resptest.Expect(t, young.Do("PING"), "PONG")
	resptest.Expect(t, young.Do("CLIENT", "KILL", "MAXAGE", "0"), "(error) ERR maxage should be greater than 0")
}

// Client-side caching with a separate invalidation connection (what
// go-redis, Lettuce and redis-py do): REDIRECT names the other client's id,
// which through the proxy is the proxy's.
func TestClientTrackingRedirect(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, addr string, _ *redistest.Server) {
		inv := resptest.Dial(t, addr)
		invID := strconv.FormatInt(inv.Do("CLIENT", "ID").Int, 10)
		inv.Send("SUBSCRIBE", "__redis__:invalidate")
		resptest.Expect(t, inv.Read(), `["subscribe","__redis__:invalidate",1]`)

		c := resptest.Dial(t, addr)
		resptest.Expect(t, c.Do("CLIENT", "TRACKING", "on", "REDIRECT", "999999"), "(error) ERR The client ID you want redirect to does not exist")
		resptest.Expect(t, c.Do("CLIENT", "GETREDIR"), "-1")
		resptest.Expect(t, c.Do("CLIENT", "TRACKING", "on", "REDIRECT", invID), "OK")
		resptest.Expect(t, c.Do("CLIENT", "GETREDIR"), invID)
		resptest.Expect(t, c.Do("CLIENT", "TRACKINGINFO"), fmt.Sprintf(`["flags",["on"],"redirect",%s,"prefixes",[]]`, invID))
		resptest.Expect(t, c.Do("SET", "tk", "1"), "OK")
		resptest.Expect(t, c.Do("GET", "tk"), `"1"`)
		w := resptest.Dial(t, addr)
		resptest.Expect(t, w.Do("SET", "tk", "2"), "OK")
		resptest.Expect(t, inv.ReadTimeout(2*time.Second), `["message","__redis__:invalidate",["tk"]]`)
		// Its line says where the invalidations go, by the proxy's id.
		if got := field(clientLine(w.Do("CLIENT", "LIST").Str, c.Do("CLIENT", "ID").Int), "redir"); got != invID {
			t.Errorf("CLIENT LIST redir=%s, want %s", got, invID)
		}
		// BCAST with a prefix.
		b := resptest.Dial(t, addr)
		resptest.Expect(t, b.Do("CLIENT", "TRACKING", "on", "REDIRECT", invID, "BCAST", "PREFIX", "bc:"), "OK")
		resptest.Expect(t, b.Do("CLIENT", "TRACKINGINFO"), fmt.Sprintf(`["flags",["on","bcast"],"redirect",%s,"prefixes",["bc:"]]`, invID))
		resptest.Expect(t, w.Do("SET", "bc:x", "1"), "OK")
		resptest.Expect(t, inv.ReadTimeout(2*time.Second), `["message","__redis__:invalidate",["bc:x"]]`)
		resptest.Expect(t, b.Do("CLIENT", "TRACKING", "off"), "OK")
		resptest.Expect(t, b.Do("CLIENT", "TRACKINGINFO"), `["flags",["off"],"redirect",-1,"prefixes",[]]`)
	})
}
