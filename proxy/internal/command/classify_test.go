package command

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

var (
	withPassword = Env{Password: "secret"}
	noPassword   = Env{}
	replicas     = Env{ReadReplicas: true}
	tunnels      = Env{TunnelID: func(id int64) (int64, bool) { return id + 1000, id == 7 }}
)

// States, as the scenario files write them.
const (
	unauthed = "conn=shared authed=false id=4"
	shared   = "conn=shared authed=true id=4"
	pinned   = "conn=pinned authed=true id=4 db=1"
	inMulti  = "conn=pinned authed=true id=4 inmulti=true"
	tunnel   = "conn=tunnel authed=true id=4"
)

type classifyCase struct {
	env   Env
	st    string // parseState's words
	cmd   string // Redis's inline syntax
	want  string // the scenario files' decision line, without "= ": kind, reply, op, raw, refused, script
	state string // the state's changes (stateDiff), "" for none
}

func (tc classifyCase) run(t *testing.T, tab *Table) {
	t.Helper()
	st, err := parseState(tc.st)
	if err != nil {
		t.Fatal(err)
	}
	args, ok := resp.SplitArgs([]byte(tc.cmd))
	if !ok {
		t.Fatalf("bad command %q", tc.cmd)
	}
	env := tc.env
	next, d, dst := Classify(&env, st, tab.Lookup(args), args, nil)
	got := strings.TrimPrefix(decisionString(d, dst), "= ")
	if diff := stateDiff(st, next); got != tc.want || diff != tc.state {
		t.Errorf("[%s] %s:\n got  %s | %s\n want %s | %s", tc.st, tc.cmd, got, diff, tc.want, tc.state)
	}
}

const (
	noAuth   = `local "-NOAUTH Authentication required.\r\n"`
	notInt   = `local "-ERR value is not an integer or out of range\r\n"`
	okReply  = `local "+OK\r\n"`
	evalOK   = `forward raw="*4\r\n$4\r\nEVAL\r\n$34\r\nreturn redis.status_reply(ARGV[1])\r\n$1\r\n0\r\n$2\r\nOK\r\n"`
	wrongPwd = `local "-WRONGPASS invalid username-password pair or user is disabled.\r\n"`
)

func TestClassifyAuth(t *testing.T) {
	tab := fixtureTable(t)
	for _, tc := range []classifyCase{
		// Password set.
		{withPassword, unauthed, "GET k", noAuth, ""},
		{withPassword, unauthed, "CLIENT SETNAME x", noAuth, ""},
		{withPassword, unauthed, "MULTI", noAuth, ""},
		{withPassword, unauthed, "QUIT", "close", ""},
		{withPassword, unauthed, "RESET", "renew", ""},
		{withPassword, unauthed, "AUTH secret", okReply, "authed=true"},
		{withPassword, unauthed, "AUTH default secret", okReply, "authed=true"},
		{withPassword, unauthed, "AUTH DEFAULT secret", okReply, "authed=true"},
		{withPassword, unauthed, "AUTH Secret", wrongPwd, ""},
		{withPassword, unauthed, "AUTH default secre", wrongPwd, ""},
		{withPassword, shared, "AUTH wrong", wrongPwd, ""}, // an authenticated client stays so
		{withPassword, unauthed, "AUTH a b c", `local "-ERR syntax error\r\n"`, ""},
		{withPassword, unauthed, "AUTH", "forward", ""}, // arity: Redis says so
		// Password unset.
		{noPassword, shared, "AUTH secret", `local "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"`, ""},
		{noPassword, shared, "AUTH default anything", okReply, ""},
		// ACL users: Redis checks, on a pinned connection.
		{withPassword, unauthed, "AUTH alice pw", "pin op=auth-user", ""},
		{withPassword, "conn=pinned authed=false", "AUTH alice pw", "forward op=auth-user", ""},
		{withPassword, tunnel, "AUTH alice pw", "forward op=auth-user", ""},
		{withPassword, inMulti, "AUTH alice pw", "forward op=auth-user", ""},
		// Inside MULTI the proxy's answer is queued (as Redis queues AUTH).
		{withPassword, inMulti, "AUTH secret", evalOK, ""},
		{withPassword, inMulti, "AUTH wrong", `forward raw="*4\r\n$4\r\nEVAL\r\n$33\r\nreturn redis.error_reply(ARGV[1])\r\n$1\r\n0\r\n$61\r\nWRONGPASS invalid username-password pair or user is disabled.\r\n"`, ""},
		// HELLO.
		{withPassword, unauthed, "HELLO", `local "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"`, ""},
		{withPassword, unauthed, "HELLO 2 AUTH default secret", `forward raw="*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n"`, "authed=true"},
		{withPassword, unauthed, "HELLO 2 auth DEFAULT secret setname n", `forward raw="*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n"`, `authed=true name="n"`},
		{withPassword, unauthed, "HELLO 2 AUTH default wrong", wrongPwd, ""},
		{withPassword, unauthed, `HELLO 2 AUTH default ""`, wrongPwd, ""},
		{withPassword, unauthed, "HELLO 3 AUTH default secret", `open raw="*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"`, "authed=true"},
		{withPassword, unauthed, "HELLO 2 AUTH alice pw", `pin op=auth-user raw="*5\r\n$5\r\nHELLO\r\n$1\r\n2\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n"`, ""},
		{withPassword, unauthed, `HELLO 2 AUTH "" pw`, `pin op=auth-user raw="*5\r\n$5\r\nHELLO\r\n$1\r\n2\r\n$4\r\nAUTH\r\n$0\r\n\r\n$2\r\npw\r\n"`, ""},
		{withPassword, unauthed, "HELLO 3 AUTH alice pw", `pin op=auth-user-resp3 raw="*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n"`, ""},
		{withPassword, pinned, "HELLO 2 AUTH alice pw", `forward op=auth-user raw="*5\r\n$5\r\nHELLO\r\n$1\r\n2\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n"`, ""},
		{noPassword, shared, "HELLO", `forward raw="*1\r\n$5\r\nHELLO\r\n"`, ""},
		{noPassword, shared, "HELLO 3", `open raw="*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"`, ""},
		{noPassword, pinned, "HELLO 3", `open raw="*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"`, ""},
		{noPassword, tunnel, "HELLO 3", `forward raw="*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"`, ""},
		{noPassword, inMulti, "HELLO 3", `forward op=tunnel-later raw="*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"`, ""},
		{noPassword, inMulti, "HELLO 2", `forward raw="*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n"`, ""},
		{noPassword, shared, "HELLO 1", `local "-NOPROTO unsupported protocol version\r\n"`, ""},
		{noPassword, shared, "HELLO x", `local "-ERR Protocol version is not an integer or out of range\r\n"`, ""},
		{noPassword, shared, "HELLO 2 AUTH u", `local "-ERR Syntax error in HELLO option 'AUTH'\r\n"`, ""},
		{noPassword, shared, "HELLO 2 SETNAME", `local "-ERR Syntax error in HELLO option 'SETNAME'\r\n"`, ""},
		{noPassword, shared, "HELLO 2 SETNAME a\tb", `local "-ERR Syntax error in HELLO option 'b'\r\n"`, ""},
		{noPassword, shared, `HELLO 2 SETNAME "a b"`, `local "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"`, ""},
		// RESET: a new session; in a tunnel, the server resets.
		{withPassword, pinned, "RESET", "renew", "conn=shared authed=false db=0"},
		{withPassword, "conn=pinned authed=true id=4 name=n inmulti=true watching=true acluser=true", "RESET", "renew",
			`conn=shared authed=false name="" inmulti=false watching=false acluser=false`},
		{noPassword, "conn=shared authed=true id=4 name=n", "RESET", "renew", `name=""`},
		{withPassword, "conn=tunnel authed=true id=4 name=n inmulti=true", "RESET", "forward", `authed=false name=""`},
		{withPassword, tunnel, "QUIT", "close", ""},
		{withPassword, inMulti, "QUIT", "close", ""},
	} {
		tc.run(t, tab)
	}
}

func TestClassifySelect(t *testing.T) {
	tab := fixtureTable(t)
	for _, tc := range []classifyCase{
		{noPassword, shared, "SELECT 0", okReply + " op=select", ""},
		{noPassword, shared, "SELECT 1", "pin op=select:1", ""},
		{noPassword, shared, "SELECT 15", "pin op=select:15", ""},
		{noPassword, shared, "SELECT -1", "pin op=select:-1", ""}, // Redis: out of range
		{noPassword, shared, "SELECT 01", notInt, ""},
		{noPassword, shared, "SELECT -0", notInt, ""},
		{noPassword, shared, "SELECT +1", notInt, ""},
		{noPassword, shared, "SELECT 00", notInt, ""},
		{noPassword, shared, "SELECT 1.0", notInt, ""},
		{noPassword, shared, `SELECT ""`, notInt, ""},
		{noPassword, shared, "SELECT 9223372036854775808", notInt, ""},
		{noPassword, shared, "SELECT", "forward", ""},
		{noPassword, pinned, "SELECT 0", "forward op=select", ""},
		{noPassword, pinned, "SELECT 2", "forward op=select:2", ""},
		{noPassword, tunnel, "SELECT 0", "forward op=select", ""},
		{noPassword, tunnel, "SELECT 01", notInt, ""},
		{noPassword, inMulti, "SELECT 3", "forward op=select:3", ""},
		// Inside MULTI the proxy's own error is queued, as Redis queues
		// SELECT and fails it in EXEC's reply.
		{noPassword, inMulti, "SELECT 01", `forward raw="*4\r\n$4\r\nEVAL\r\n$33\r\nreturn redis.error_reply(ARGV[1])\r\n$1\r\n0\r\n$43\r\nERR value is not an integer or out of range\r\n"`, ""},
		{withPassword, unauthed, "SELECT 1", noAuth, ""},
	} {
		tc.run(t, tab)
	}
}

func TestClassifyTransactions(t *testing.T) {
	tab := fixtureTable(t)
	for _, tc := range []classifyCase{
		{noPassword, shared, "MULTI", "pin op=multi", ""},
		{noPassword, pinned, "MULTI", "forward op=multi", "inmulti=true"},
		{noPassword, "conn=pinned authed=true execabort=true tunnelatexec=true watching=true", "MULTI", "forward op=multi",
			"inmulti=true execabort=false tunnelatexec=false"},
		{noPassword, inMulti, "MULTI", "forward op=multi", ""}, // nested: Redis refuses, the state stays
		{noPassword, tunnel, "MULTI", "forward op=multi", "inmulti=true"},
		{noPassword, shared, "WATCH k", "pin op=watch", ""},
		{noPassword, pinned, "WATCH k", "forward op=watch", ""},
		{noPassword, inMulti, "WATCH k", "forward op=watch", ""},
		{noPassword, shared, "EXEC", "forward op=exec", ""},
		{noPassword, shared, "DISCARD", "forward op=discard", ""},
		{noPassword, shared, "UNWATCH", "forward op=unwatch", ""},
		{noPassword, inMulti, "EXEC", "forward op=exec:1", "inmulti=false"},
		{noPassword, inMulti, "DISCARD", "forward op=discard:1", "inmulti=false"},
		{noPassword, inMulti + " execabort=true", "EXEC", `forward op=exec-abort:1 raw="*1\r\n$7\r\nDISCARD\r\n"`, "inmulti=false"},
		{noPassword, inMulti + " execabort=true", "DISCARD", "forward op=discard:1", "inmulti=false"},
		{noPassword, inMulti, "EXEC x", "forward", ""}, // arity: Redis refuses it, the transaction goes on
		{noPassword, inMulti, "UNWATCH", "forward op=unwatch", ""},
		{noPassword, inMulti, "SET k v", "forward", ""},
		{noPassword, inMulti, "NOSUCHCOMMAND", "forward", ""},
		{noPassword, inMulti, "GET", "forward", ""},
		// Queued commands that make the session a tunnel once EXEC runs them.
		{noPassword, inMulti, "SUBSCRIBE ch", "forward op=tunnel-later", "subscribedatexec=true"},
		{noPassword, inMulti, "MONITOR", "forward op=tunnel-later", "subscribedatexec=true"},
		{noPassword, inMulti, "CLIENT TRACKING ON", "forward op=tunnel-later", ""},
		{noPassword, inMulti, "CLIENT NO-EVICT on", "forward op=tunnel-later", ""},
		{noPassword, "conn=tunnel authed=true inmulti=true", "SUBSCRIBE ch", "forward", ""},
		// Not blocking inside MULTI.
		{noPassword, inMulti, "BLPOP q 0", "forward", ""},
		{noPassword, inMulti, "WAIT 1 0", "forward", ""},
		{noPassword, inMulti, "XREAD BLOCK 0 STREAMS s 0", "forward", ""},
		{noPassword, inMulti, "UNSUBSCRIBE", "forward", ""},
	} {
		tc.run(t, tab)
	}
}

func TestClassifyRefusals(t *testing.T) {
	tab := fixtureTable(t)
	refusal := func(what string) string {
		return fmt.Sprintf("local %q refused", "-ERR redis-proxy: "+what+" is refused: replication is managed by the proxy\r\n")
	}
	shutdown := fmt.Sprintf("local %q refused", "-ERR redis-proxy: SHUTDOWN is refused: the proxy manages the Redis servers; stop them on their hosts\r\n")
	for _, st := range []string{shared, pinned, tunnel, inMulti} {
		abort := ""
		if st == inMulti {
			abort = "execabort=true"
		}
		for _, tc := range []classifyCase{
			{noPassword, st, "REPLICAOF no one", refusal("REPLICAOF"), abort},
			{noPassword, st, "slaveof h 1", refusal("SLAVEOF"), abort},
			{noPassword, st, "FAILOVER TO h 1", refusal("FAILOVER"), abort},
			{noPassword, st, "SYNC", refusal("SYNC"), abort},
			{noPassword, st, "PSYNC ? -1", refusal("PSYNC"), abort},
			{noPassword, st, "SHUTDOWN", shutdown, abort},
			{noPassword, st, "SHUTDOWN NOSAVE", shutdown, abort},
			{noPassword, st, "CONFIG SET replica-priority 0", refusal("CONFIG SET replica-priority"), abort},
			{noPassword, st, "CONFIG SET Slave-Read-Only no", refusal("CONFIG SET slave-read-only"), abort},
			{noPassword, st, "CONFIG SET masterauth x", refusal("CONFIG SET masterauth"), abort},
			{noPassword, st, "CONFIG SET masteruser x", refusal("CONFIG SET masteruser"), abort},
			{noPassword, st, "CONFIG SET repl-timeout 60", refusal("CONFIG SET repl-timeout"), abort},
			{noPassword, st, "CONFIG SET min-slaves-to-write 1", refusal("CONFIG SET min-slaves-to-write"), abort},
			{noPassword, st, "CONFIG SET maxmemory 1 min-replicas-max-lag 9", refusal("CONFIG SET min-replicas-max-lag"), abort},
			{noPassword, st, "CONFIG SET maxmemory 1", "forward", ""},
			// Values are not names: only every other argument is looked at.
			{noPassword, st, "CONFIG SET notify-keyspace-events replica", "forward", ""},
			{noPassword, st, "CONFIG GET replicaof", configGetWant(st), ""},
			{noPassword, st, "REPLICAOF", "forward", ""}, // arity: Redis says so
		} {
			tc.run(t, tab)
		}
	}
	(classifyCase{withPassword, unauthed, "REPLICAOF no one", noAuth, ""}).run(t, tab)
	(classifyCase{noPassword, inMulti + " execabort=true", "SHUTDOWN", shutdown, ""}).run(t, tab)
}

func TestClassifyRouting(t *testing.T) {
	tab := fixtureTable(t)
	for _, tc := range []classifyCase{
		{replicas, shared, "GET k", "read", ""},
		{replicas, shared, "EVAL_RO x 0", "read", ""},
		{replicas, shared, "EVALSHA_RO x 0", "forward", ""}, // replicas may lack the script
		{replicas, shared, "SET k v", "forward", ""},
		{replicas, pinned, "GET k", "forward", ""},
		{replicas, tunnel, "GET k", "forward", ""},
		{replicas, inMulti, "GET k", "forward", ""},
		{noPassword, shared, "GET k", "forward", ""},
		// SCAN: the cursor is the replica's the session's cursors live on.
		{replicas, shared, "SCAN 0", "read-cursor", ""},
		{replicas, shared, "sscan s 0", "read-cursor", ""},
		{replicas, shared, "HSCAN h 0", "read-cursor", ""},
		{replicas, shared, "ZSCAN z 0", "read-cursor", ""},
		{noPassword, shared, "SCAN 0", "forward", ""},
		{replicas, pinned, "SCAN 0", "forward", ""},
		{replicas, tunnel, "SCAN 0", "forward", ""},
		{replicas, inMulti, "SCAN 0", "forward", ""},
		// XREAD: blocking only with BLOCK before STREAMS.
		{replicas, shared, "XREAD STREAMS s 0", "read", ""},
		{replicas, shared, "XREAD COUNT 1 BLOCK 0 STREAMS s 0", "open", ""},
		{replicas, shared, "XREAD STREAMS block 0", "read", ""},
		{noPassword, shared, "xread block 0 streams s 0", "open", ""},
		{noPassword, shared, "XREADGROUP GROUP g c BLOCK 0 STREAMS s >", "open", ""},
		{replicas, shared, "XREADGROUP GROUP g c STREAMS s >", "forward", ""},
		{noPassword, pinned, "XREAD BLOCK 0 STREAMS s 0", "open", ""},
		{noPassword, tunnel, "XREAD BLOCK 0 STREAMS s 0", "forward", ""},
		{replicas, pinned, "XREAD STREAMS s 0", "forward", ""},
		// WAIT waits for the connection's own writes.
		{noPassword, shared, "WAIT 1 0", "open", ""},
		{noPassword, pinned, "WAIT 1 0", "open", ""},
		{noPassword, tunnel, "WAIT 1 0", "forward", ""},
		{noPassword, shared, "WAIT 1", "forward", ""},
		// Blocking commands.
		{noPassword, shared, "BLPOP q 0", "open", ""},
		{replicas, shared, "BZPOPMIN z 0", "open", ""},
		{noPassword, pinned, "BLMOVE a b LEFT RIGHT 0", "open", ""},
		{noPassword, tunnel, "BRPOP q 0", "forward", ""},
		{noPassword, shared, "BLPOP q", "forward", ""}, // arity: Redis says so
		// Unknown, renamed, wrong arity: to the master, which answers.
		{replicas, shared, "NOSUCHCOMMAND a", "forward", ""},
		{replicas, shared, "averyveryverylongcommandnamethatisunknown", "forward", ""},
		{replicas, shared, "GET", "forward", ""},
		{replicas, shared, "GET a b", "forward", ""},
		{replicas, shared, "CLIENT", "forward", ""},
		{replicas, shared, "OBJECT NOSUCH k", "forward", ""},
		{withPassword, unauthed, "NOSUCHCOMMAND", noAuth, ""},
		// The script mirror.
		{noPassword, shared, `SCRIPT LOAD "return 1"`, "forward script=note", ""},
		{noPassword, shared, "SCRIPT FLUSH", "forward script=forget", ""},
		{noPassword, shared, "SCRIPT FLUSH SYNC", "forward script=forget", ""},
		{noPassword, inMulti, "SCRIPT LOAD x", "forward script=note", ""},
		{noPassword, tunnel, "SCRIPT FLUSH", "forward script=forget", ""},
		{noPassword, shared, "SCRIPT LOAD", "forward", ""},
		{noPassword, shared, "SCRIPT EXISTS a", "forward", ""},
	} {
		tc.run(t, tab)
	}
}

func TestClassifyClient(t *testing.T) {
	tab := fixtureTable(t)
	for _, tc := range []classifyCase{
		{noPassword, shared, "CLIENT ID", `local ":4\r\n"`, ""},
		{noPassword, tunnel, "CLIENT ID", `local ":4\r\n"`, ""},
		{noPassword, inMulti, "CLIENT ID", `forward raw="*4\r\n$4\r\nEVAL\r\n$24\r\nreturn tonumber(ARGV[1])\r\n$1\r\n0\r\n$1\r\n4\r\n"`, ""},
		{noPassword, shared, "CLIENT GETNAME", `local "$-1\r\n"`, ""},
		{noPassword, shared + " name=app", "CLIENT GETNAME", `local "$3\r\napp\r\n"`, ""},
		{noPassword, tunnel + " name=app", "CLIENT GETNAME", "forward", ""},
		{noPassword, inMulti + " name=app", "CLIENT GETNAME", `forward raw="*4\r\n$4\r\nEVAL\r\n$14\r\nreturn ARGV[1]\r\n$1\r\n0\r\n$3\r\napp\r\n"`, ""},
		{noPassword, inMulti + " name=app hasqueuedname=true", "CLIENT GETNAME", `forward raw="*3\r\n$4\r\nEVAL\r\n$12\r\nreturn false\r\n$1\r\n0\r\n"`, ""},
		{noPassword, shared, "CLIENT SETNAME app", okReply, `name="app"`},
		{noPassword, pinned, "CLIENT SETNAME app", okReply, `name="app"`},
		{noPassword, shared + " name=app", `CLIENT SETNAME ""`, okReply, `name=""`},
		{noPassword, shared, `CLIENT SETNAME "a b"`, `local "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"`, ""},
		{noPassword, shared, "CLIENT SETNAME é", `local "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"`, ""},
		{noPassword, shared, "CLIENT SETNAME", "forward", ""},
		{noPassword, inMulti, "CLIENT SETNAME app", evalOK, `queuedname="app" hasqueuedname=true`},
		{noPassword, tunnel, "CLIENT SETNAME app", "forward", `name="app"`},
		{noPassword, tunnel, `CLIENT SETNAME "a b"`, "forward", ""},
		{noPassword, "conn=tunnel authed=true inmulti=true", "CLIENT SETNAME app", "forward", ""},
		{noPassword, shared, "CLIENT REPLY ON", okReply, ""},
		{noPassword, shared, "CLIENT REPLY OFF", "open", ""},
		{noPassword, shared, "CLIENT REPLY SKIP", "open", ""},
		{noPassword, pinned, "CLIENT REPLY OFF", "open", ""},
		{noPassword, tunnel, "CLIENT REPLY OFF", "forward", ""},
		{noPassword, tunnel, "CLIENT REPLY ON", "forward", ""},
		{noPassword, inMulti, "CLIENT REPLY OFF", `local "-ERR redis-proxy: CLIENT REPLY is not supported inside MULTI\r\n" refused`, "execabort=true"},
		{noPassword, inMulti, "CLIENT REPLY on", evalOK, ""},
		{noPassword, shared, "CLIENT TRACKING OFF", okReply, ""},
		{noPassword, shared, "CLIENT TRACKING ON", "open", ""},
		{noPassword, shared, "CLIENT TRACKING OFF NOLOOP", "open", ""},
		{noPassword, tunnel, "CLIENT TRACKING OFF", "forward", ""},
		{noPassword, shared, "CLIENT NO-EVICT on", "open", ""},
		{noPassword, pinned, "CLIENT NO-EVICT off", "open", ""},
		{noPassword, tunnel, "CLIENT NO-EVICT on", "forward", ""},
		{noPassword, shared, "CLIENT LIST", "ask", ""},
		{replicas, shared, "CLIENT INFO", "ask", ""},
		{noPassword, tunnel, "CLIENT KILL ID 3", "ask", ""},
		{noPassword, inMulti, "CLIENT LIST", `local "-ERR redis-proxy: CLIENT LIST is not supported inside MULTI\r\n" refused`, "execabort=true"},
		// TRACKING in a tunnel: REDIRECT names the proxy's id, mapped to the server's.
		{tunnels, tunnel, "CLIENT TRACKING on REDIRECT 7", `forward raw="*5\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\non\r\n$8\r\nREDIRECT\r\n$4\r\n1007\r\n"`, ""},
		{tunnels, tunnel, "CLIENT TRACKING on REDIRECT 8", `local "-ERR The client ID you want redirect to does not exist\r\n"`, ""},
		{noPassword, tunnel, "CLIENT TRACKING on BCAST PREFIX a: PREFIX b:", "forward", ""},
		{noPassword, tunnel, "CLIENT TRACKING on PREFIX a:", "forward", ""}, // the server's error; nothing kept
		{noPassword, shared, "CLIENT GETREDIR", `local ":-1\r\n"`, ""},
		{noPassword, shared, "CLIENT TRACKINGINFO", `local "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"`, ""},
		{noPassword, shared, "CLIENT PAUSE 10", "local \"-ERR redis-proxy: CLIENT PAUSE is refused: a paused master looks dead and is failed over; for a planned move use the admin API's switchover (for the operator only: AUTH as REDIS_PROXY_OPERATOR_USER)\\r\\n\" refused", ""},
		{noPassword, shared, "CLIENT NOSUCH", "forward", ""},
		// UNBLOCK: the proxy's id, mapped to the tunnel's server-side id.
		{tunnels, shared, "CLIENT UNBLOCK 7", `forward raw="*3\r\n$6\r\nCLIENT\r\n$7\r\nUNBLOCK\r\n$4\r\n1007\r\n"`, ""},
		{tunnels, shared, "CLIENT UNBLOCK 7 error", `forward raw="*4\r\n$6\r\nCLIENT\r\n$7\r\nUNBLOCK\r\n$4\r\n1007\r\n$5\r\nerror\r\n"`, ""},
		{tunnels, shared, "CLIENT UNBLOCK 8", `local ":0\r\n"`, ""},
		{noPassword, shared, "CLIENT UNBLOCK 7", `local ":0\r\n"`, ""}, // Env.TunnelID nil
		{tunnels, shared, "CLIENT UNBLOCK 07", notInt, ""},
		{tunnels, shared, "CLIENT UNBLOCK -0", notInt, ""},
		{tunnels, shared, "CLIENT UNBLOCK +7", notInt, ""},
		{tunnels, shared, "CLIENT UNBLOCK 7 error x", `local "-ERR wrong number of arguments for 'client|unblock' command\r\n"`, ""},
		{tunnels, shared, "CLIENT UNBLOCK", "forward", ""},
		{tunnels, inMulti, "CLIENT UNBLOCK 8", `forward raw="*4\r\n$4\r\nEVAL\r\n$24\r\nreturn tonumber(ARGV[1])\r\n$1\r\n0\r\n$1\r\n0\r\n"`, ""},
		// UNSUBSCRIBE from a client with no subscription: Redis's reply.
		{noPassword, shared, "UNSUBSCRIBE", `local "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"`, ""},
		{noPassword, shared, "unsubscribe a bc", `local "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n*3\r\n$11\r\nunsubscribe\r\n$2\r\nbc\r\n:0\r\n"`, ""},
		{noPassword, pinned, "PUNSUBSCRIBE p*", `local "*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n"`, ""},
		{noPassword, shared, "SUNSUBSCRIBE", `local "*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n"`, ""},
		{noPassword, shared, `UNSUBSCRIBE ""`, `local "*3\r\n$11\r\nunsubscribe\r\n$0\r\n\r\n:0\r\n"`, ""},
		{noPassword, tunnel, "UNSUBSCRIBE", "forward", ""},
		{noPassword, shared, "SUBSCRIBE a", "open", ""},
		{noPassword, pinned, "PSUBSCRIBE a*", "open", ""},
		{noPassword, shared, "MONITOR", "open", ""},
		{noPassword, tunnel, "SSUBSCRIBE a", "forward", ""},
	} {
		tc.run(t, tab)
	}
}

// TestClassifyAppendsToDst: a local reply goes after what dst holds, in
// its spare capacity when there is room.
func TestClassifyAppendsToDst(t *testing.T) {
	tab := fixtureTable(t)
	args := argv("CLIENT ID")
	dst := make([]byte, 3, 64)
	copy(dst, "abc")
	_, d, out := Classify(&noPassword, State{ID: 12, Authed: true}, tab.Lookup(args), args, dst)
	if d.Kind != Local || string(out) != "abc:12\r\n" || &out[0] != &dst[0] {
		t.Errorf("kind %s, dst %q (same array: %v)", kindNames[d.Kind], out, &out[0] == &dst[0])
	}
	// Inside MULTI, the reply becomes an EVAL: dst is as it was.
	st, _ := parseState(inMulti)
	_, d, out = Classify(&noPassword, st, tab.Lookup(args), args, dst)
	if d.Kind != Forward || string(out) != "abc" || !bytes.HasPrefix(d.Raw, []byte("*4\r\n$4\r\nEVAL")) {
		t.Errorf("in MULTI: kind %s, dst %q, raw %q", kindNames[d.Kind], out, d.Raw)
	}
}

// TestClassifyMatrix: every Special under every kind of connection, in
// testdata/matrix.txt (written like the scenarios; -update rewrites it).
func TestClassifyMatrix(t *testing.T) {
	tab := fixtureTable(t)
	examples := []struct {
		sp  Special
		cmd string
	}{
		{None, "GET k"}, {None, "SET k v"}, {None, "BLPOP q 0"}, {None, "NOSUCHCOMMAND"},
		{Auth, "AUTH secret"}, {Auth, "AUTH alice pw"}, {Hello, "HELLO 3"}, {Hello, "HELLO 2 AUTH alice pw"},
		{Quit, "QUIT"}, {Reset, "RESET"}, {Select, "SELECT 1"}, {Select, "SELECT 0"},
		{Multi, "MULTI"}, {Watch, "WATCH k"}, {Exec, "EXEC"}, {Discard, "DISCARD"}, {Unwatch, "UNWATCH"},
		{Subscribe, "SUBSCRIBE ch"}, {Unsubscribe, "UNSUBSCRIBE ch"}, {Replication, "REPLICAOF no one"},
		{Shutdown, "SHUTDOWN"}, {ConfigSet, "CONFIG SET replica-priority 1"}, {ConfigSet, "CONFIG SET maxmemory 1"},
		{ScriptLoad, `SCRIPT LOAD "return 1"`}, {ScriptFlush, "SCRIPT FLUSH"}, {EvalshaRO, "EVALSHA_RO abc 0"},
		{Wait, "WAIT 1 0"}, {XRead, "XREAD BLOCK 0 STREAMS s 0"}, {XRead, "XREAD STREAMS s 0"}, {Scan, "SCAN 0"},
		{ClientID, "CLIENT ID"}, {ClientUnblock, "CLIENT UNBLOCK 7"}, {ClientGetName, "CLIENT GETNAME"},
		{ClientSetName, "CLIENT SETNAME n2"}, {ClientReply, "CLIENT REPLY OFF"}, {ClientTracking, "CLIENT TRACKING ON"},
		{ClientNoEvict, "CLIENT NO-EVICT on"}, {ClientOther, "CLIENT CACHING yes"}, {ClientTable, "CLIENT LIST"}, {ClientTable, "CLIENT KILL ID 7"},
		{ClientGetRedir, "CLIENT TRACKINGINFO"}, {InfoCmd, "INFO"}, {InfoCmd, "INFO memory"}, {ClientTracking, "CLIENT TRACKING ON REDIRECT 7 BCAST PREFIX a:"},
		{ConfigGet, "CONFIG GET maxmemory"}, {ConfigGet, "CONFIG GET *pass"}, {ACLAdmin, "ACL SETUSER bob on"},
		{ACLAdmin, "ACL LIST"}, {ClientPause, "CLIENT PAUSE 1000"}, {Debug, "DEBUG SLEEP 1"}, {Module, "MODULE LOAD /x.so"},
		{KillScript, "SCRIPT KILL"}, {KillScript, "FUNCTION KILL"},
	}
	covered := map[Special]bool{}
	var in strings.Builder
	in.WriteString("# Every Special (an example command of each) under every kind of connection.\n" +
		"# Written by TestClassifyMatrix; each example runs from a fresh state, and a\n" +
		"# command forwarded on the pinned connection gets +OK (+QUEUED in MULTI).\n" +
		"env password=secret replicas=true tunnels=7:1007\n")
	states := []string{
		"conn=shared authed=true id=4 name=app",
		"conn=pinned authed=true id=4 name=app db=1",
		"conn=pinned authed=true id=4 name=app inmulti=true",
		"conn=tunnel authed=true id=4 name=app",
	}
	for _, ex := range examples {
		if info := tab.Lookup(argv(ex.cmd)); info.Special != ex.sp {
			t.Fatalf("%s: special %s, want %s", ex.cmd, specialNames[info.Special], specialNames[ex.sp])
		}
		covered[ex.sp] = true
		fmt.Fprintf(&in, "\n# %s: %s\n", specialNames[ex.sp], ex.cmd)
		for _, st := range states {
			// Run it once to learn how many replies it waits for.
			s := &scenario{t: tab}
			lines := []string{"env password=secret replicas=true tunnels=7:1007", "state " + st, "> " + ex.cmd}
			for _, l := range lines {
				if err := s.step(l); err != nil {
					t.Fatal(err)
				}
			}
			fmt.Fprintf(&in, "state %s\n> %s\n", st, ex.cmd)
			for range s.pend {
				if strings.Contains(st, "inmulti") {
					in.WriteString("reply +QUEUED\n")
				} else {
					in.WriteString("reply +OK\n")
				}
			}
		}
	}
	for sp := range specialNames {
		if !covered[sp] {
			t.Errorf("the matrix has no example of %s", specialNames[sp])
		}
	}
	got, err := runScenario(tab, []byte(in.String()))
	if err != nil {
		t.Fatal(err)
	}
	const file = "testdata/matrix.txt"
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update and review the diff):\n%s", file, lineDiff(string(want), string(got)))
	}
}

func TestEvalFor(t *testing.T) {
	for _, tc := range []struct {
		reply, want string
		ok          bool
	}{
		{"+OK\r\n", "*4\r\n$4\r\nEVAL\r\n$34\r\nreturn redis.status_reply(ARGV[1])\r\n$1\r\n0\r\n$2\r\nOK\r\n", true},
		{"-ERR x y\r\n", "*4\r\n$4\r\nEVAL\r\n$33\r\nreturn redis.error_reply(ARGV[1])\r\n$1\r\n0\r\n$7\r\nERR x y\r\n", true},
		{":-12\r\n", "*4\r\n$4\r\nEVAL\r\n$24\r\nreturn tonumber(ARGV[1])\r\n$1\r\n0\r\n$3\r\n-12\r\n", true},
		{"$-1\r\n", "*3\r\n$4\r\nEVAL\r\n$12\r\nreturn false\r\n$1\r\n0\r\n", true},
		{"$0\r\n\r\n", "*4\r\n$4\r\nEVAL\r\n$14\r\nreturn ARGV[1]\r\n$1\r\n0\r\n$0\r\n\r\n", true},
		{"$4\r\na\r\nb\r\n", "*4\r\n$4\r\nEVAL\r\n$14\r\nreturn ARGV[1]\r\n$1\r\n0\r\n$4\r\na\r\nb\r\n", true},
		{"*1\r\n:1\r\n", "*4\r\n$4\r\nEVAL\r\n$28\r\nreturn cjson.decode(ARGV[1])\r\n$1\r\n0\r\n$3\r\n[1]\r\n", true},
		{"*2\r\n$1\r\na\r\n*0\r\n", "*4\r\n$4\r\nEVAL\r\n$28\r\nreturn cjson.decode(ARGV[1])\r\n$1\r\n0\r\n$8\r\n[\"a\",[]]\r\n", true},
		{"*1\r\n+OK\r\n", "", false}, // only bulk strings, integers and arrays
		{"*2\r\n:1\r\n", "", false},
		{"$3abc\r\n", "", false},
		{"+\r", "", false},
		{"", "", false},
	} {
		got, ok := EvalFor([]byte(tc.reply))
		if string(got) != tc.want || ok != tc.ok {
			t.Errorf("EvalFor(%q) = %q, %v; want %q, %v", tc.reply, got, ok, tc.want, tc.ok)
		}
	}
}

func BenchmarkClassifyGet(b *testing.B) {
	tab := fixtureTable(b)
	env := &Env{Password: "secret", ReadReplicas: true}
	st := State{ID: 1, Authed: true}
	args := argv("GET key")
	var cache Cache
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		info := cache.Lookup(tab, args)
		var d Decision
		st, d, dst = Classify(env, st, info, args, dst[:0])
		if d.Kind != Read {
			b.Fatal(kindNames[d.Kind])
		}
	}
}

func TestClassifyGetDoesNotAllocate(t *testing.T) {
	tab := fixtureTable(t)
	env := &Env{Password: "secret", ReadReplicas: true}
	dst := make([]byte, 0, 256)
	var cache Cache
	for _, tc := range []struct {
		st  State
		cmd string
	}{
		{State{Authed: true}, "GET key"},
		{State{Authed: true}, "SET key value"},
		{State{Authed: true}, "SCAN 0"},
		{State{Authed: true, Conn: Pinned, Tx: Tx{DB: 1}}, "GET key"},
		{State{Authed: true, Conn: Pinned, Tx: Tx{InMulti: true}}, "SET key value"},
		{State{Authed: true}, "CLIENT ID"},
		{State{Authed: true, Name: "n"}, "CLIENT GETNAME"},
		{State{Authed: true}, "UNSUBSCRIBE a"},
		{State{}, "GET key"}, // NOAUTH
	} {
		args := argv(tc.cmd)
		n := testing.AllocsPerRun(200, func() {
			info := cache.Lookup(tab, args)
			_, _, dst = Classify(env, tc.st, info, args, dst[:0])
		})
		if n != 0 {
			t.Errorf("%s from %+v: %v allocations", tc.cmd, tc.st, n)
		}
	}
}

// TestClassifyOddTable: with a table whose arities say nothing (0, as
// from a COMMAND reply whose arity is not an integer), the classifier's
// own checks of the argument count answer as the old classifier did,
// and nothing indexes past the arguments.
func TestClassifyOddTable(t *testing.T) {
	reply := freshFixtureReply(t)
	var zero func(entries []any)
	zero = func(entries []any) {
		for _, e := range entries {
			f := e.([]any)
			f[1] = []byte("?")
			zero(f[9].([]any))
		}
	}
	zero(reply)
	tab, err := Build("odd", reply, nopCounters)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []classifyCase{
		{noPassword, shared, "SELECT", `local "-ERR wrong number of arguments for 'select' command\r\n"`, ""},
		{noPassword, shared, "SELECT 1 2", `local "-ERR wrong number of arguments for 'select' command\r\n"`, ""},
		{withPassword, unauthed, "AUTH", `local "-ERR wrong number of arguments for 'auth' command\r\n"`, ""},
		{tunnels, shared, "CLIENT UNBLOCK", `local "-ERR wrong number of arguments for 'client|unblock' command\r\n"`, ""},
		{noPassword, shared, "CLIENT SETNAME", `local "-ERR wrong number of arguments for 'client|setname' command\r\n"`, ""},
		{noPassword, shared, "CLIENT SETNAME a b", `local "-ERR wrong number of arguments for 'client|setname' command\r\n"`, ""},
		// In a tunnel the server answers SETNAME, whatever its arguments.
		{noPassword, tunnel, "CLIENT SETNAME", "forward", ""},
		{noPassword, tunnel, "CLIENT SETNAME a b", "forward", ""},
		{noPassword, shared, "SCRIPT LOAD", "forward", ""},
		{noPassword, shared, "CLIENT REPLY", "open", ""},
		{noPassword, shared, "CLIENT TRACKING", "open", ""},
		{noPassword, shared, "XREAD", "forward", ""},
		{noPassword, shared, "CONFIG SET", "forward", ""},
		{noPassword, shared, "HELLO", `forward raw="*1\r\n$5\r\nHELLO\r\n"`, ""},
	} {
		tc.run(t, tab)
	}
}

// TestClassifyNilArguments: an empty argument may come as nil (a parser
// that slices nothing); it means what an empty one means.
func TestClassifyNilArguments(t *testing.T) {
	tab := fixtureTable(t)
	for _, tc := range []struct {
		st   string
		args [][]byte
		want string
	}{
		{unauthed, [][]byte{[]byte("HELLO"), []byte("2"), []byte("AUTH"), nil, []byte("pw")},
			`pin op=auth-user raw="*5\r\n$5\r\nHELLO\r\n$1\r\n2\r\n$4\r\nAUTH\r\n$0\r\n\r\n$2\r\npw\r\n"`},
		{unauthed, [][]byte{[]byte("HELLO"), []byte("2"), []byte("AUTH"), []byte("default"), nil}, wrongPwd},
		{shared, [][]byte{[]byte("CLIENT"), []byte("SETNAME"), nil}, okReply},
		{shared, [][]byte{[]byte("UNSUBSCRIBE"), nil}, `local "*3\r\n$11\r\nunsubscribe\r\n$0\r\n\r\n:0\r\n"`},
		{shared, [][]byte{[]byte("SELECT"), nil}, notInt},
	} {
		st, _ := parseState(tc.st)
		_, d, dst := Classify(&withPassword, st, tab.Lookup(tc.args), tc.args, nil)
		if got := strings.TrimPrefix(decisionString(d, dst), "= "); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.args, got, tc.want)
		}
	}
}

// configGetWant is the decision on a CONFIG GET whose pattern matches no
// secret: filtered where the reply can be rewritten; elsewhere forwarded as
// it is (nothing to hide).
func configGetWant(st string) string {
	if strings.Contains(st, "tunnel") || strings.Contains(st, "inmulti") {
		return "forward"
	}
	return "forward filter=secrets"
}
