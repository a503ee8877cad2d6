package proxy

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// Authentication of clients (Config.ClientPassword, ACL users) and of the
// proxy itself to Redis (Config.BackendPassword).

const stClientPW = "client-secret"

// The proxy with a client password must answer like a Redis started with
// --requirepass: the same replies, byte for byte, before and after AUTH.
func TestAuthRequiredLikeRedisRequirepass(t *testing.T) {
	t.Parallel()
	ref, backend, tp := stAuthPair(t)
	req := resptest.Cmds(
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
	sameAsRedis(t, stExchangeAuthed, ref.Addr, tp.Addr, req)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("GET", "auth:k"), "(error) NOAUTH Authentication required.")
	resptest.Expect(t, c.Do("AUTH", "nope"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	resptest.Expect(t, c.Do("PING"), "(error) NOAUTH Authentication required.")
	resptest.Expect(t, c.Do("AUTH", stClientPW), "OK")
	resptest.Expect(t, c.Do("GET", "auth:k"), `"v"`)
	// The SET after AUTH reached the proxy's backend.
	resptest.Expect(t, resptest.Dial(t, backend.Addr).Do("GET", "auth:k"), `"v"`)
}

// AUTH with too many arguments is a syntax error in Redis (too few is an
// arity error).
func TestAuthArgumentErrorsLikeRedis(t *testing.T) {
	t.Parallel()
	ref, _, tp := stAuthPair(t)
	req := resptest.Cmds(
		[]string{"AUTH"},
		[]string{"AUTH", "a", "b", "c"},
		[]string{"AUTH", stClientPW},
		[]string{"AUTH", "a", "b", "c"},
	)
	sameAsRedis(t, stExchangeAuthed, ref.Addr, tp.Addr, req)
}

// RESET is one of the commands Redis accepts before authentication
// (it de-authenticates and answers +RESET).
func TestAuthResetBeforeAuthLikeRedis(t *testing.T) {
	t.Parallel()
	ref, _, tp := stAuthPair(t)
	req := resptest.Cmds(
		[]string{"RESET"},
		[]string{"AUTH", stClientPW},
		[]string{"RESET"},
		[]string{"GET", "k"},
	)
	sameAsRedis(t, stExchangeAuthed, ref.Addr, tp.Addr, req)
}

// Before authentication Redis bounds what a client may send (10 arguments,
// 16 KiB per argument), so a client without the password cannot make the
// server buffer large requests. The proxy must be no weaker.
func TestUnauthenticatedRequestLimitsLikeRedis(t *testing.T) {
	t.Parallel()
	ref, _, tp := stAuthPair(t)
	for _, raw := range []string{
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n",
		"*20\r\n",
	} {
		want := stUntilEOF(t, ref.Addr, []byte(raw))
		c := resptest.Dial(t, tp.Addr)
		c.Write([]byte(raw))
		got, closed := c.ReadUntilClosed(time.Second)
		if !closed || !bytes.Equal(got, want) {
			t.Errorf("unauthenticated %q: proxy answered %q (closed: %v), Redis %q and closed", raw, got, closed, want)
		}
	}
}

func TestAuthWithoutPasswordConfiguredLikeRedis(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	req := resptest.Cmds(
		[]string{"AUTH", "whatever"},
		[]string{"AUTH"},
		[]string{"GET", "k"},
	)
	sameAsRedis(t, resptest.Exchange, r.Addr, tp.Addr, req)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("AUTH", "whatever"), "(error) ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	resptest.Expect(t, c.Do("SET", "k", "v"), "OK")
}

func TestAuthAsACLUserPinsAndIsolates(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	if _, err := r.Do("ACL", "SETUSER", "alice", "on", ">alice-pw", "~alice:*", "&*", "+@all"); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	tp := startProxy(t, Config{}, r.Addr)
	alice := resptest.Dial(t, tp.Addr)
	other := resptest.Dial(t, tp.Addr)

	resptest.Expect(t, alice.Do("AUTH", "alice", "wrong"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	poll.Until(t, time.Second, "no pin after a failed ACL AUTH", func() bool { return tp.pinned.Load() == 0 })
	resptest.Expect(t, alice.Do("ACL", "WHOAMI"), `"default"`)

	resptest.Expect(t, alice.Do("AUTH", "alice", "alice-pw"), "OK")
	resptest.Expect(t, alice.Do("ACL", "WHOAMI"), `"alice"`)
	if n := tp.pinned.Load(); n != 1 {
		t.Fatalf("pinned after AUTH as alice = %d, want 1", n)
	}
	// Alice's permissions apply to her commands, and only to hers.
	resptest.Expect(t, alice.Do("SET", "alice:k", "1"), "OK")
	if v := alice.Do("SET", "bob:k", "1"); v.Type != '-' || !strings.HasPrefix(v.Str, "NOPERM") {
		t.Fatalf("alice writing outside her keys: %s, want a NOPERM error", v)
	}
	resptest.Expect(t, other.Do("ACL", "WHOAMI"), `"default"`)
	resptest.Expect(t, other.Do("SET", "bob:k", "1"), "OK")
	if n := stACLClients(t, r, "alice"); n != 1 {
		t.Fatalf("Redis connections of user alice = %d, want 1", n)
	}
	// Dropping back to a pool-safe state is not possible: the pin stays
	// until the client leaves, and then the connection is closed.
	resptest.Expect(t, alice.Do("SELECT", "0"), "OK")
	resptest.Expect(t, alice.Do("ACL", "WHOAMI"), `"alice"`)
	alice.Close()
	poll.Until(t, 3*time.Second, "alice's Redis connection closed", func() bool {
		return tp.pinned.Load() == 0 && stACLClients(t, r, "alice") == 0
	})
	// Nobody else ever runs as alice.
	for i := 0; i < 5; i++ {
		c := resptest.Dial(t, tp.Addr)
		resptest.Expect(t, c.Do("MULTI"), "OK")
		resptest.Expect(t, c.Do("ACL", "WHOAMI"), "QUEUED")
		resptest.Expect(t, c.Do("EXEC"), `["default"]`)
	}
}

func TestAuthHello3WithClientPassword(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	tp := startProxy(t, Config{ClientPassword: stClientPW}, r.Addr)

	bad := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, bad.Do("HELLO", "3", "AUTH", "default", "wrong"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	resptest.Expect(t, bad.Do("GET", "h:k"), "(error) NOAUTH Authentication required.")

	c := resptest.Dial(t, tp.Addr)
	hello := c.Do("HELLO", "3", "AUTH", "default", stClientPW)
	if hello.Type != '%' {
		t.Fatalf("HELLO 3 AUTH reply is not a RESP3 map: %q", hello.Raw)
	}
	if v, ok := hello.Get("proto"); !ok || v.Int != 3 {
		t.Fatalf("HELLO 3 AUTH: proto %s", v)
	}
	resptest.Expect(t, c.Do("HSET", "h:h", "f", "v"), "1")
	if v := c.Do("HGETALL", "h:h"); v.Type != '%' || v.String() != `["f","v"]` {
		t.Fatalf("HGETALL after HELLO 3: %q", v.Raw)
	}
}

func TestBackendPassword(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "--requirepass", "backend-pw")
	tp := startProxy(t, Config{BackendPassword: "backend-pw"}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("SET", "bp:k", "v"), "OK")
	resptest.Expect(t, c.Do("GET", "bp:k"), `"v"`)
	// Dedicated connections authenticate too.
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("INCR", "bp:n"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), "[1]")
	resptest.Expect(t, c.DoTimeout(3*time.Second, "BLPOP", "bp:none", "0.1"), "<nil>")
	resptest.Expect(t, c.Do("GET", "bp:k"), `"v"`)
}

// The proxy can log in to Redis as an ACL user of its own, with the default
// user disabled: shared, dedicated and tunnel connections all use it.
func TestBackendUsername(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	admin := resptest.Dial(t, r.Addr)
	resptest.Expect(t, admin.Do("ACL", "SETUSER", "proxyuser", "on", ">proxy-pw", "~*", "&*", "+@all"), "OK")
	resptest.Expect(t, admin.Do("ACL", "SETUSER", "default", "off"), "OK")
	tp := startProxy(t, Config{BackendUsername: "proxyuser", BackendPassword: "proxy-pw"}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("ACL", "WHOAMI"), `"proxyuser"`)
	resptest.Expect(t, c.Do("SET", "bu:k", "v"), "OK")
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("ACL", "WHOAMI"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), `["proxyuser"]`)
	resptest.Expect(t, c.DoTimeout(3*time.Second, "BLPOP", "bu:none", "0.1"), "<nil>")
	resptest.Expect(t, c.Do("ACL", "WHOAMI"), `"proxyuser"`)
	resptest.Expect(t, c.Do("GET", "bu:k"), `"v"`)
}

func TestBackendWrongPasswordFailsAfterHold(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, "--requirepass", "backend-pw")
	const hold = 400 * time.Millisecond
	tp := serveProxy(t, Config{BackendPassword: "not-it", HoldTimeout: hold, DialTimeout: 300 * time.Millisecond}, r.Addr)
	c := resptest.Dial(t, tp.Addr)
	start := time.Now()
	v := c.DoTimeout(5*time.Second, "GET", "k")
	d := time.Since(start)
	t.Logf("reply after %v: %s", d, v)
	if v.Type != '-' {
		t.Fatalf("GET with a wrong backend password: %s, want an error", v)
	}
	if !strings.HasPrefix(v.Str, "TRYAGAIN") {
		t.Fatalf("GET with a wrong backend password: %q, want a TRYAGAIN error", v.Str)
	}
	if d < hold-50*time.Millisecond || d > hold+2*time.Second {
		t.Fatalf("error after %v, want about the hold timeout %v", d, hold)
	}
	// Nothing was written with the wrong credentials.
	direct := resptest.Dial(t, r.Addr)
	resptest.Expect(t, direct.Do("AUTH", "backend-pw"), "OK")
	resptest.Expect(t, direct.Do("DBSIZE"), "0")
}

// --- helpers -----------------------------------------------------------------

// stAuthPair starts a Redis that wants stClientPW (ref, what the proxy must
// answer like), and a proxy wanting it too in front of an open one
// (backend).
func stAuthPair(t *testing.T) (ref, backend *redistest.Server, tp *testProxy) {
	t.Helper()
	ref = redistest.Start(t, "--requirepass", stClientPW)
	backend = redistest.Start(t)
	return ref, backend, startProxy(t, Config{ClientPassword: stClientPW}, backend.Addr)
}

// stExchangeAuthed is resptest.Exchange for servers that want a password: req may
// leave the connection unauthenticated (and the sentinel PING would get
// NOAUTH), so a final AUTH is sent before the sentinel and its +OK removed.
func stExchangeAuthed(t testing.TB, addr string, req []byte) []byte {
	t.Helper()
	full := append(append([]byte(nil), req...), resptest.Cmd("AUTH", stClientPW)...)
	out := resptest.Exchange(t, addr, full)
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
