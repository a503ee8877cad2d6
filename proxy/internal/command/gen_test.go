package command

import (
	"math/rand/v2"
	"strings"
)

// A seeded generator of client commands: the fixture table's commands
// and subcommands with random arguments, and hand-written forms of the
// commands the proxy treats specially.

// argPool is what random arguments are drawn from: words the special
// commands look for, integers in and out of Redis's canonical form, names
// with and without spaces.
var argPool = []string{
	"k", "v", "0", "1", "01", "-0", "+1", "-1", "2", "3", "default", "DEFAULT",
	"secret", "wrong", "alice", "on", "off", "ON", "OFF", "skip", "BLOCK",
	"block", "STREAMS", "streams", "AUTH", "auth", "SETNAME", "setname", "name",
	"a b", "", "replica-read-only", "MASTERAUTH", "maxmemory", "repl-backlog-size",
	"min-replicas-to-write", "slave-priority", "7", "8", "9223372036854775807",
	"-9223372036854775808", "TIMEOUT", "ERROR", "x", "né", "\n", "ops", "s3cret", "requirepass", "*",
}

// specialForms are commands the classifier has a branch for, written out
// so that the random walk reaches every branch often.
var specialForms = [][]string{
	{"AUTH", "secret"}, {"AUTH", "wrong"}, {"AUTH", "default", "secret"}, {"AUTH", "Default", "wrong"},
	{"AUTH", "alice", "pw"}, {"AUTH", "a", "b", "c"}, {"AUTH", "secret"}, {"auth", "default", "secret"},
	{"AUTH", "ops", "s3cret"}, {"AUTH", "ops", "wrong"}, {"HELLO", "2", "AUTH", "ops", "s3cret"},
	{"CONFIG", "GET", "*"}, {"CONFIG", "SET", "requirepass", "x"}, {"ACL", "LIST"}, {"CLIENT", "PAUSE", "10"},
	{"HELLO"}, {"HELLO", "2"}, {"HELLO", "3"}, {"HELLO", "2", "AUTH", "default", "secret"},
	{"HELLO", "3", "AUTH", "default", "secret"}, {"HELLO", "2", "AUTH", "default", "wrong"},
	{"HELLO", "3", "AUTH", "alice", "pw"}, {"HELLO", "2", "AUTH", "alice", "pw"},
	{"HELLO", "2", "SETNAME", "conn1"}, {"HELLO", "3", "SETNAME", "conn1"}, {"HELLO", "2", "SETNAME", "a b"},
	{"HELLO", "4"}, {"HELLO", "x"}, {"HELLO", "2", "AUTH", "default"}, {"HELLO", "2", "SETNAME"},
	{"HELLO", "2", "foo"}, {"HELLO", "2", "AUTH", "default", "secret", "SETNAME", "n2"},
	{"HELLO", "+2"}, {"HELLO", "02"},
	{"SELECT", "0"}, {"SELECT", "1"}, {"SELECT", "01"}, {"SELECT", "-0"}, {"SELECT", "+1"},
	{"SELECT", "2"}, {"SELECT", "-1"}, {"SELECT", "x"}, {"select", "0"},
	{"SELECT", "9223372036854775807"}, {"SELECT", "-9223372036854775808"}, {"SELECT", "99999999999999999999"},
	{"MULTI"}, {"MULTI"}, {"EXEC"}, {"EXEC"}, {"DISCARD"}, {"WATCH", "k"}, {"UNWATCH"}, {"exec", "x"},
	{"SUBSCRIBE", "ch"}, {"PSUBSCRIBE", "p*"}, {"SSUBSCRIBE", "s"}, {"MONITOR"},
	{"UNSUBSCRIBE"}, {"UNSUBSCRIBE", "a", "b"}, {"PUNSUBSCRIBE"}, {"SUNSUBSCRIBE", "x"},
	{"REPLICAOF", "no", "one"}, {"SLAVEOF", "h", "1"}, {"FAILOVER"}, {"SHUTDOWN"}, {"SHUTDOWN", "NOSAVE"},
	{"SYNC"}, {"PSYNC", "?", "-1"},
	{"CONFIG", "SET", "maxmemory", "1"}, {"CONFIG", "SET", "replica-read-only", "no"},
	{"CONFIG", "SET", "maxmemory", "1", "MasterAuth", "x"}, {"CONFIG", "GET", "replica*"},
	{"SCRIPT", "LOAD", "return 1"}, {"SCRIPT", "FLUSH"}, {"SCRIPT", "FLUSH", "ASYNC"}, {"EVALSHA_RO", "abc", "0"},
	{"WAIT", "1", "0"}, {"WAITAOF", "1", "0", "0"},
	{"XREAD", "STREAMS", "s", "0"}, {"XREAD", "BLOCK", "0", "STREAMS", "s", "0"},
	{"XREAD", "COUNT", "1", "STREAMS", "block", "0"}, {"XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"},
	{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"},
	{"SCAN", "0"}, {"SSCAN", "k", "0"}, {"HSCAN", "k", "0"}, {"ZSCAN", "k", "0"},
	{"CLIENT", "ID"}, {"CLIENT", "GETNAME"}, {"CLIENT", "SETNAME", "n1"}, {"CLIENT", "SETNAME", "a b"},
	{"CLIENT", "SETNAME", ""}, {"CLIENT", "REPLY", "ON"}, {"CLIENT", "REPLY", "OFF"}, {"CLIENT", "REPLY", "SKIP"},
	{"CLIENT", "TRACKING", "ON"}, {"CLIENT", "TRACKING", "off"}, {"CLIENT", "TRACKING", "OFF", "BCAST"},
	{"CLIENT", "NO-EVICT", "on"}, {"CLIENT", "NO-TOUCH", "on"}, {"CLIENT", "UNBLOCK", "7"},
	{"CLIENT", "UNBLOCK", "7", "ERROR"}, {"CLIENT", "UNBLOCK", "8"}, {"CLIENT", "UNBLOCK", "x"},
	{"CLIENT", "UNBLOCK", "07"}, {"CLIENT", "UNBLOCK", "-0"}, {"CLIENT", "LIST"}, {"CLIENT", "KILL", "ID", "1"},
	{"CLIENT", "FOO"}, {"CLIENT"}, {"CLIENT", "INFO"},
	{"QUIT"}, {"RESET"},
	{"GET", "k"}, {"SET", "k", "v"}, {"BLPOP", "k", "0"}, {"BRPOP", "k", "1"}, {"PING"}, {"FOO", "bar"},
	{"averyveryverylongcommandnamethatisunknown"}, {"GEORADIUSBYMEMBER_RO", "k", "m", "1", "km"},
	{"OBJECT", "ENCODING", "k"}, {"EVAL", "return 1", "0"}, {"KEYS", "*"},
}

// hotForms are the commands that make and end the state of a pinned
// connection: drawn often, so transactions hold the commands that matter
// inside them (SETNAME, SELECT, SUBSCRIBE, a refusal) and end in EXEC.
var hotForms = [][]string{
	{"MULTI"}, {"MULTI"}, {"EXEC"}, {"EXEC"}, {"EXEC"}, {"DISCARD"}, {"WATCH", "k"}, {"UNWATCH"},
	{"SELECT", "1"}, {"SELECT", "0"}, {"CLIENT", "SETNAME", "n1"}, {"CLIENT", "SETNAME", "n2"},
	{"CLIENT", "GETNAME"}, {"SUBSCRIBE", "ch"}, {"HELLO", "3"}, {"AUTH", "alice", "pw"},
	{"REPLICAOF", "no", "one"}, {"CLIENT", "REPLY", "OFF"}, {"CLIENT", "TRACKING", "on"},
	{"GET", "k"}, {"SET", "k", "v"}, {"BLPOP", "k", "0"}, {"WAIT", "1", "0"}, {"CLIENT", "ID"},
	{"UNSUBSCRIBE"}, {"SCRIPT", "LOAD", "return 2"}, {"AUTH", "secret"},
}

type gen struct {
	r     *rand.Rand
	names []*Info // every command and subcommand of the table
}

func newGen(t *Table, seed uint64) *gen {
	g := &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for _, c := range t.cmds {
		g.names = append(g.names, c)
		for _, s := range c.Subs {
			g.names = append(g.names, s)
		}
	}
	// Map order is random: sort for a reproducible walk.
	sortInfos(g.names)
	return g
}

func sortInfos(infos []*Info) {
	for i := 1; i < len(infos); i++ {
		for j := i; j > 0 && infos[j].Name < infos[j-1].Name; j-- {
			infos[j], infos[j-1] = infos[j-1], infos[j]
		}
	}
}

// casing spells name in random case.
func (g *gen) casing(name string) string {
	switch g.r.IntN(3) {
	case 0:
		return strings.ToUpper(name)
	case 1:
		return name
	}
	b := []byte(name)
	for i := range b {
		if g.r.IntN(2) == 0 && 'a' <= b[i] && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

func (g *gen) arg() string { return argPool[g.r.IntN(len(argPool))] }

// command returns a random command.
func (g *gen) command() [][]byte {
	var words []string
	if k := g.r.IntN(3); k < 2 {
		forms := specialForms
		if k == 1 {
			forms = hotForms
		}
		f := forms[g.r.IntN(len(forms))]
		words = append(words, f...)
		words[0] = g.casing(words[0])
		if len(words) > 1 && g.r.IntN(2) == 0 {
			words[1] = g.casing(strings.ToLower(words[1]))
		}
		if g.r.IntN(8) == 0 { // a word more or less
			if g.r.IntN(2) == 0 {
				words = append(words, g.arg())
			} else if len(words) > 1 {
				words = words[:len(words)-1]
			}
		}
	} else {
		c := g.names[g.r.IntN(len(g.names))]
		container, sub, isSub := strings.Cut(c.Name, "|")
		words = append(words, g.casing(container))
		if isSub {
			words = append(words, g.casing(sub))
		}
		n := c.Arity
		if n < 0 {
			n = -n + g.r.IntN(3)
		}
		switch g.r.IntN(6) {
		case 0:
			n--
		case 1:
			n++
		}
		for len(words) < n {
			words = append(words, g.arg())
		}
	}
	args := make([][]byte, len(words))
	for i, w := range words {
		args[i] = []byte(w)
	}
	return args
}

// reply returns a synthetic reply from a server to a command with op.
func (g *gen) reply(op Op, inMulti bool) []byte {
	pool := []string{"+OK\r\n", "+QUEUED\r\n", "*1\r\n:1\r\n", "*-1\r\n", "*0\r\n", "-ERR x\r\n",
		":1\r\n", "$-1\r\n", "-EXECABORT Transaction discarded because of previous errors.\r\n",
		"*2\r\n+OK\r\n+OK\r\n", "%1\r\n+a\r\n:1\r\n", "+OKAY\r\n"}
	likely := "+OK\r\n"
	switch {
	case op == OpExec || op == OpExecAbort:
		likely = "*1\r\n+OK\r\n"
		if op == OpExecAbort {
			likely = "+OK\r\n"
		}
	case inMulti:
		likely = "+QUEUED\r\n"
	}
	if g.r.IntN(3) > 0 {
		return []byte(likely)
	}
	return []byte(pool[g.r.IntN(len(pool))])
}
