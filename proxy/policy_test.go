package proxy

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// The command policy at work, against a real Redis with a password: every
// attack a client tried in the security review now gets the proxy's
// refusal, the server is left as it was, and no secret reaches a reply.
// (The decisions themselves are golden scenarios in
// internal/command/testdata/scenarios/policy.txt.)

// policyServer starts a Redis with passwords set and a proxy in front of
// it, with an operator password.
func policyServer(t *testing.T) (*redistest.Server, *testProxy) {
	t.Helper()
	r := redistest.Start(t, "--requirepass", "backend-secret", "--masterauth", "repl-secret", "--masteruser", "repl-user")
	tp := startProxy(t, Config{BackendPassword: "backend-secret", ClientPassword: "client-secret",
		OperatorUser: "ops", OperatorPassword: "ops-secret"}, r.Addr)
	return r, tp
}

// admin is a direct connection to r, as the proxy's operator would open.
func admin(t *testing.T, r *redistest.Server) redis.Conn {
	return r.Dial(redis.DialPassword("backend-secret"))
}

func authed(t *testing.T, tp *testProxy) *resptest.Conn {
	t.Helper()
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("AUTH", "client-secret"), "OK")
	return c
}

func TestPolicySecretsAreNotReadable(t *testing.T) {
	_, tp := policyServer(t)
	c := authed(t, tp)
	for _, pattern := range []string{"requirepass", "masterauth", "masteruser", "*pass*", "master*", "*"} {
		v := c.Do("CONFIG", "GET", pattern)
		for _, secret := range []string{"backend-secret", "repl-secret", "repl-user"} {
			if strings.Contains(string(v.Raw), secret) {
				t.Fatalf("CONFIG GET %s shows %q: %s", pattern, secret, v)
			}
		}
		if pattern != "*" && !strings.Contains(string(v.Raw), "(redacted)") {
			t.Fatalf("CONFIG GET %s: %s, want the value redacted", pattern, v)
		}
	}
	// On a connection of the session's own too (a database other than 0).
	resptest.Expect(t, c.Do("SELECT", "1"), "OK")
	resptest.Expect(t, c.Do("CONFIG", "GET", "requirepass"), `["requirepass","(redacted)"]`)
	resptest.Expect(t, c.Do("SELECT", "0"), "OK")
	// Values that are not secret still come through.
	resptest.Expect(t, c.Do("CONFIG", "GET", "maxmemory-policy"), `["maxmemory-policy","noeviction"]`)
	// ACL LIST and GETUSER show password hashes: refused.
	for _, cmd := range [][]string{{"ACL", "LIST"}, {"ACL", "GETUSER", "default"}} {
		expectRefused(t, c.Do(cmd...), strings.Join(cmd, " "))
	}
	// Where the reply cannot be redacted, a pattern that could show a
	// secret is refused: inside MULTI (and the transaction aborts) ...
	resptest.Expect(t, c.Do("MULTI"), "OK")
	expectRefused(t, c.Do("CONFIG", "GET", "*"), "CONFIG GET")
	resptest.Expect(t, c.Do("EXEC"), "(error) EXECABORT Transaction discarded because of previous errors.")
	// ... and in a RESP3 session (a tunnel).
	v := c.Do("HELLO", "3")
	if v.Type != '%' {
		t.Fatalf("HELLO 3: %s", v)
	}
	expectRefused(t, c.Do("CONFIG", "GET", "requirepass"), "CONFIG GET")
	if v := c.Do("CONFIG", "GET", "maxmemory-policy"); !strings.Contains(v.String(), "noeviction") {
		t.Fatalf("CONFIG GET maxmemory-policy in RESP3: %s", v)
	}
	// The operator reads them.
	op := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, op.Do("AUTH", "ops", "ops-secret"), "OK")
	resptest.Expect(t, op.Do("CONFIG", "GET", "masterauth"), `["masterauth","repl-secret"]`)
}

func TestPolicyCannotBreakTheServer(t *testing.T) {
	r, tp := policyServer(t)
	c := authed(t, tp)
	a := admin(t, r)
	// The attacks of the security review, as a client sent them.
	for _, cmd := range [][]string{
		{"CONFIG", "SET", "requirepass", "x"},
		{"CONFIG", "SET", "client-output-buffer-limit", "replica 1 1 0"},
		{"CONFIG", "SET", "maxclients", "1"},
		{"CONFIG", "SET", "dir", "/tmp"},
		{"ACL", "SETUSER", "default", "off"},
		{"CLIENT", "PAUSE", "3000", "ALL"},
		{"DEBUG", "SLEEP", "8"},
		{"MODULE", "LOAD", "/tmp/nosuch.so"},
		{"SHUTDOWN", "NOSAVE"},
		{"REPLICAOF", "127.0.0.1", "1"},
	} {
		start := time.Now()
		expectRefused(t, c.Do(cmd...), strings.Join(cmd, " "))
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%s took %v: it reached the server", cmd, d)
		}
	}
	// The server is as it was: the proxy's password still works, the
	// limits are the same, the default user is on, nothing is paused.
	for param, want := range map[string]string{"requirepass": "backend-secret", "maxclients": "10000"} {
		got, err := redis.StringMap(a.Do("CONFIG", "GET", param))
		if err != nil || got[param] != want {
			t.Fatalf("CONFIG GET %s on the server: %v %v, want %q", param, got, err, want)
		}
	}
	obl, _ := redis.StringMap(a.Do("CONFIG", "GET", "client-output-buffer-limit"))
	if !strings.Contains(obl["client-output-buffer-limit"], "slave 268435456 67108864 60") {
		t.Fatalf("client-output-buffer-limit changed: %q", obl["client-output-buffer-limit"])
	}
	if rules, _ := redis.Strings(a.Do("ACL", "LIST")); len(rules) != 1 || !strings.Contains(rules[0], " on ") {
		t.Fatalf("ACL LIST on the server: %q", rules)
	}
	for _, cmd := range []string{"client|pause", "config|set", "acl|setuser", "debug", "module|load", "shutdown", "replicaof"} {
		if n := cmdCalls(t, r, cmd, "backend-secret"); n != 0 {
			t.Errorf("%s reached the server %d times", cmd, n)
		}
	}
	// Settings that are the application's go through.
	resptest.Expect(t, c.Do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"), "OK")
	// The operator may do what the policy keeps for the operator, but not
	// take replication from the proxy.
	op := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, op.Do("AUTH", "ops", "wrong"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	resptest.Expect(t, op.Do("AUTH", "ops", "ops-secret"), "OK")
	resptest.Expect(t, op.Do("CONFIG", "SET", "maxclients", "2000"), "OK")
	resptest.Expect(t, op.Do("CLIENT", "PAUSE", "10", "WRITE"), "OK")
	expectRefused(t, op.Do("REPLICAOF", "127.0.0.1", "1"), "REPLICAOF")
	expectRefused(t, op.Do("CONFIG", "SET", "replica-read-only", "no"), "CONFIG SET replica-read-only")
}

// HELLO 3 AUTH as an ACL user: Redis checks the credentials, and the
// client, authenticated, then runs commands in RESP3. (It once answered
// success and then NOAUTH to every command.)
func TestPolicyHello3AuthAsACLUser(t *testing.T) {
	r, tp := policyServer(t)
	a := admin(t, r)
	if _, err := a.Do("ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "+@all"); err != nil {
		t.Fatal(err)
	}
	c := resptest.Dial(t, tp.Addr)
	v := c.Do("HELLO", "3", "AUTH", "alice", "alice-pw")
	if v.Type != '%' {
		t.Fatalf("HELLO 3 AUTH alice: %s", v)
	}
	resptest.Expect(t, c.Do("SET", "h3:k", "v"), "OK")
	resptest.Expect(t, c.Do("GET", "h3:k"), `"v"`)
	resptest.Expect(t, c.Do("ACL", "WHOAMI"), `"alice"`)
	bad := resptest.Dial(t, tp.Addr)
	if v := bad.Do("HELLO", "3", "AUTH", "alice", "wrong"); !v.IsError() {
		t.Fatalf("HELLO 3 AUTH with a wrong password: %s", v)
	}
	resptest.Expect(t, bad.Do("GET", "h3:k"), "(error) NOAUTH Authentication required.")
}

func expectRefused(t *testing.T, v resptest.Value, what string) {
	t.Helper()
	if !v.IsError() || !strings.Contains(v.Str, "redis-proxy") || !strings.Contains(v.Str, "refused") {
		t.Fatalf("%s: %s, want the proxy's refusal", what, v)
	}
}

// cmdCalls is how many times r ran cmd (INFO commandstats), with the
// server's password.
func cmdCalls(t *testing.T, r *redistest.Server, cmd, password string) int64 {
	t.Helper()
	c := r.Dial(redis.DialPassword(password))
	info, err := redis.String(c.Do("INFO", "commandstats"))
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.ParseInt(strings.Split(rest, ",")[0], 10, 64)
			return n
		}
	}
	return 0
}
