package proxy

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/replication"
)

// Authentication of clients (Config.ClientPassword, ACL users) and of the
// proxy itself to Redis (Config.BackendPassword).

const stClientPW = "client-secret"

// The proxy with a client password must answer like a Redis started with
// --requirepass: the same replies, byte for byte, before and after AUTH.
func TestAuthRequiredLikeRedisRequirepass(t *testing.T) {
	t.Parallel()
	ref := redistest.Start(t, "--requirepass", stClientPW)
	backend := redistest.Start(t)
	tp := startProxy(t, Config{ClientPassword: stClientPW}, backend.Addr)
	req := stCmds(
		[]string{"GET", "auth:k"},
		[]string{"SET", "auth:k", "v"},
		[]string{"AUTH", "wrong"},
		[]string{"AUTH", "default", "wrong"},
		[]string{"GET", "auth:k"},
		[]string{"AUTH", stClientPW},
		[]string{"SET", "auth:k", "v"},
		[]string{"GET", "auth:k"},
		[]string{"AUTH", "default", stClientPW},
	)
	want := stExchangeAuthed(t, ref.Addr, req)
	got := stExchangeAuthed(t, tp.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis --requirepass\nproxy: %q\nredis: %q", got, want)
	}
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("GET", "auth:k"), "(error) NOAUTH Authentication required.")
	stExpect(t, c.do("AUTH", "nope"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	stExpect(t, c.do("PING"), "(error) NOAUTH Authentication required.")
	stExpect(t, c.do("AUTH", stClientPW), "OK")
	stExpect(t, c.do("GET", "auth:k"), `"v"`)
	// The SET after AUTH reached the proxy's backend.
	stExpect(t, stDial(t, backend.Addr).do("GET", "auth:k"), `"v"`)
}

// AUTH with too many arguments is a syntax error in Redis (too few is an
// arity error).
func TestAuthArgumentErrorsLikeRedis(t *testing.T) {
	t.Parallel()
	ref := redistest.Start(t, "--requirepass", stClientPW)
	backend := redistest.Start(t)
	tp := startProxy(t, Config{ClientPassword: stClientPW}, backend.Addr)
	req := stCmds(
		[]string{"AUTH"},
		[]string{"AUTH", "a", "b", "c"},
		[]string{"AUTH", stClientPW},
		[]string{"AUTH", "a", "b", "c"},
	)
	want := stExchangeAuthed(t, ref.Addr, req)
	got := stExchangeAuthed(t, tp.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis --requirepass\nproxy: %q\nredis: %q", got, want)
	}
}

// RESET is one of the commands Redis accepts before authentication
// (it de-authenticates and answers +RESET).
func TestAuthResetBeforeAuthLikeRedis(t *testing.T) {
	t.Parallel()
	ref := redistest.Start(t, "--requirepass", stClientPW)
	backend := redistest.Start(t)
	tp := startProxy(t, Config{ClientPassword: stClientPW}, backend.Addr)
	req := stCmds(
		[]string{"RESET"},
		[]string{"AUTH", stClientPW},
		[]string{"RESET"},
		[]string{"GET", "k"},
	)
	want := stExchangeAuthed(t, ref.Addr, req)
	got := stExchangeAuthed(t, tp.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis --requirepass\nproxy: %q\nredis: %q", got, want)
	}
}

// Before authentication Redis bounds what a client may send (10 arguments,
// 16 KiB per argument), so a client without the password cannot make the
// server buffer large requests. The proxy must be no weaker.
func TestUnauthenticatedRequestLimitsLikeRedis(t *testing.T) {
	t.Parallel()
	ref := redistest.Start(t, "--requirepass", stClientPW)
	backend := redistest.Start(t)
	tp := startProxy(t, Config{ClientPassword: stClientPW}, backend.Addr)
	for _, raw := range []string{
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n",
		"*20\r\n",
	} {
		want := stUntilEOF(t, ref.Addr, raw, 2*time.Second)
		c := stDial(t, tp.Addr)
		c.write([]byte(raw))
		got, closed := c.readUntilClosed(time.Second)
		if !closed || !bytes.Equal(got, want) {
			t.Errorf("unauthenticated %q: proxy answered %q (closed: %v), Redis %q and closed", raw, got, closed, want)
		}
	}
}

func TestAuthWithoutPasswordConfiguredLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := stCmds(
		[]string{"AUTH", "whatever"},
		[]string{"AUTH"},
		[]string{"GET", "k"},
	)
	want := stExchange(t, r.Addr, req)
	got := stExchange(t, tp.Addr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies differ from Redis\nproxy: %q\nredis: %q", got, want)
	}
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("AUTH", "whatever"), "(error) ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	stExpect(t, c.do("SET", "k", "v"), "OK")
}

func TestAuthAsACLUserPinsAndIsolates(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	if _, err := r.Do("ACL", "SETUSER", "alice", "on", ">alice-pw", "~alice:*", "&*", "+@all"); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	tp := startProxy(t, Config{}, r.Addr)
	alice := stDial(t, tp.Addr)
	other := stDial(t, tp.Addr)

	stExpect(t, alice.do("AUTH", "alice", "wrong"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	stEventually(t, time.Second, "no pin after a failed ACL AUTH", func() bool { return tp.pinned.Load() == 0 })
	stExpect(t, alice.do("ACL", "WHOAMI"), `"default"`)

	stExpect(t, alice.do("AUTH", "alice", "alice-pw"), "OK")
	stExpect(t, alice.do("ACL", "WHOAMI"), `"alice"`)
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned after AUTH as alice = %d, want 1", n)
	}
	// Alice's permissions apply to her commands, and only to hers.
	stExpect(t, alice.do("SET", "alice:k", "1"), "OK")
	if v := alice.do("SET", "bob:k", "1"); v.typ != '-' || !strings.HasPrefix(v.str, "NOPERM") {
		t.Fatalf("alice writing outside her keys: %s, want a NOPERM error", v)
	}
	stExpect(t, other.do("ACL", "WHOAMI"), `"default"`)
	stExpect(t, other.do("SET", "bob:k", "1"), "OK")
	if n := stACLClients(t, r, "alice"); n != 1 {
		t.Fatalf("Redis connections of user alice = %d, want 1", n)
	}
	// Dropping back to a pool-safe state is not possible: the pin stays
	// until the client leaves, and then the connection is closed.
	stExpect(t, alice.do("SELECT", "0"), "OK")
	stExpect(t, alice.do("ACL", "WHOAMI"), `"alice"`)
	alice.close()
	stEventually(t, 3*time.Second, "alice's Redis connection closed", func() bool {
		return tp.pinned.Load() == 0 && stACLClients(t, r, "alice") == 0
	})
	// Nobody else ever runs as alice.
	for i := 0; i < 5; i++ {
		c := stDial(t, tp.Addr)
		stExpect(t, c.do("MULTI"), "OK")
		stExpect(t, c.do("ACL", "WHOAMI"), "QUEUED")
		stExpect(t, c.do("EXEC"), `["default"]`)
	}
}

func TestAuthHello3WithClientPassword(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{ClientPassword: stClientPW}, r.Addr)

	bad := stDial(t, tp.Addr)
	stExpect(t, bad.do("HELLO", "3", "AUTH", "default", "wrong"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	stExpect(t, bad.do("GET", "h:k"), "(error) NOAUTH Authentication required.")

	c := stDial(t, tp.Addr)
	hello := c.do("HELLO", "3", "AUTH", "default", stClientPW)
	if hello.typ != '%' {
		t.Fatalf("HELLO 3 AUTH reply is not a RESP3 map: %q", hello.raw)
	}
	if v, ok := hello.mapGet("proto"); !ok || v.num != 3 {
		t.Fatalf("HELLO 3 AUTH: proto %s", v)
	}
	stExpect(t, c.do("HSET", "h:h", "f", "v"), "1")
	if v := c.do("HGETALL", "h:h"); v.typ != '%' || v.String() != `["f","v"]` {
		t.Fatalf("HGETALL after HELLO 3: %q", v.raw)
	}
}

func TestBackendPassword(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "--requirepass", "backend-pw")
	tp := startProxy(t, Config{BackendPassword: "backend-pw"}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("SET", "bp:k", "v"), "OK")
	stExpect(t, c.do("GET", "bp:k"), `"v"`)
	// Dedicated connections authenticate too.
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("INCR", "bp:n"), "QUEUED")
	stExpect(t, c.do("EXEC"), "[1]")
	stExpect(t, c.readAfter(3*time.Second, "BLPOP", "bp:none", "0.1"), "<nil>")
	stExpect(t, c.do("GET", "bp:k"), `"v"`)
}

// The proxy can log in to Redis as an ACL user of its own, with the default
// user disabled: shared, dedicated and tunnel connections all use it.
func TestBackendUsername(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	admin := stDial(t, r.Addr)
	stExpect(t, admin.do("ACL", "SETUSER", "proxyuser", "on", ">proxy-pw", "~*", "&*", "+@all"), "OK")
	stExpect(t, admin.do("ACL", "SETUSER", "default", "off"), "OK")
	tp := startProxy(t, Config{BackendUsername: "proxyuser", BackendPassword: "proxy-pw"}, r.Addr)
	c := stDial(t, tp.Addr)
	stExpect(t, c.do("ACL", "WHOAMI"), `"proxyuser"`)
	stExpect(t, c.do("SET", "bu:k", "v"), "OK")
	stExpect(t, c.do("MULTI"), "OK")
	stExpect(t, c.do("ACL", "WHOAMI"), "QUEUED")
	stExpect(t, c.do("EXEC"), `["proxyuser"]`)
	stExpect(t, c.readAfter(3*time.Second, "BLPOP", "bu:none", "0.1"), "<nil>")
	stExpect(t, c.do("ACL", "WHOAMI"), `"proxyuser"`)
	stExpect(t, c.do("GET", "bu:k"), `"v"`)
}

func TestBackendWrongPasswordFailsAfterHold(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "--requirepass", "backend-pw")
	const hold = 400 * time.Millisecond
	addr := stServeProxy(t, Config{BackendPassword: "not-it", HoldTimeout: hold, DialTimeout: 300 * time.Millisecond}, r.Addr)
	c := stDial(t, addr)
	start := time.Now()
	v := c.readAfter(5*time.Second, "GET", "k")
	d := time.Since(start)
	t.Logf("reply after %v: %s", d, v)
	if v.typ != '-' {
		t.Fatalf("GET with a wrong backend password: %s, want an error", v)
	}
	if !strings.HasPrefix(v.str, "TRYAGAIN") {
		t.Fatalf("GET with a wrong backend password: %q, want a TRYAGAIN error", v.str)
	}
	if d < hold-50*time.Millisecond || d > hold+2*time.Second {
		t.Fatalf("error after %v, want about the hold timeout %v", d, hold)
	}
	// Nothing was written with the wrong credentials.
	direct := stDial(t, r.Addr)
	stExpect(t, direct.do("AUTH", "backend-pw"), "OK")
	stExpect(t, direct.do("DBSIZE"), "0")
}

// --- helpers -----------------------------------------------------------------

// stExchangeAuthed is stExchange for servers that want a password: req may
// leave the connection unauthenticated (and the sentinel PING would get
// NOAUTH), so a final AUTH is sent before the sentinel and its +OK removed.
func stExchangeAuthed(t testing.TB, addr string, req []byte) []byte {
	t.Helper()
	full := append(append([]byte(nil), req...), stCmd("AUTH", stClientPW)...)
	out := stExchange(t, addr, full)
	if !bytes.HasSuffix(out, []byte("+OK\r\n")) {
		t.Fatalf("exchange with %s: final AUTH not OK: %q", addr, out)
	}
	return out[:len(out)-len("+OK\r\n")]
}

// stACLClients counts Redis connections authenticated as user.
func stACLClients(t testing.TB, r *redistest.Server, user string) int {
	t.Helper()
	v, err := r.Do("CLIENT", "LIST")
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	b, _ := v.([]byte)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, " user="+user+" ") {
			n++
		}
	}
	return n
}

// stServeProxy starts a proxy for master without waiting for it to be ready
// and returns its address.
func stServeProxy(t testing.TB, cfg Config, master string) string {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("new proxy: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Close() })
	p.SetTopology(replication.Topology{Master: master})
	return ln.Addr().String()
}
