package command

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The command policy: what a client may run through the proxy. The
// proxy is the trust boundary between applications and the Redis
// servers, so a client must not be able to break the topology the proxy
// manages, read a secret, or make the servers unusable for the others.
//
//	command                              everyone  operator  why
//	REPLICAOF SLAVEOF FAILOVER SYNC      refused   refused   the proxy manages replication
//	PSYNC, SHUTDOWN
//	CONFIG SET of replication settings   refused   refused   (replica*, slave*, master*, repl-*, min-replicas*)
//	CONFIG SET of authentication, ACL,   refused   allowed   requirepass, aclfile, acl-pubsub-default;
//	network, TLS, persistence paths,                         bind, port, unixsocket*, protected-mode,
//	connection limits and the replica                        maxclients, timeout; tls-*; dir, dbfilename,
//	output-buffer class                                      appendfilename, appenddirname;
//	                                                         client-output-buffer-limit replica|slave
//	ACL SETUSER DELUSER LOAD SAVE        refused   allowed   users and password hashes
//	DRYRUN LIST GETUSER
//	CLIENT PAUSE, UNPAUSE                refused   allowed   a paused master looks dead: the proxy
//	                                                         fails it over after DOWN_AFTER
//	DEBUG, MODULE LOAD LOADEX UNLOAD     refused   allowed   arbitrary code, crashes, sleeps
//	CONFIG GET                           redacted  allowed   requirepass, masterauth, masteruser,
//	                                                         tls-key-file-pass, tls-client-key-file-pass
//	                                                         show "(redacted)"
//
// The operator is a session that gave AUTH (or HELLO AUTH) with the
// operator user and password (REDIS_PROXY_OPERATOR_USER and
// REDIS_PROXY_OPERATOR_PASSWORD); with no operator password, the commands
// kept for the operator are refused to everyone. A CONFIG GET whose
// patterns could match a secret is refused where its reply cannot be
// redacted: inside MULTI (the reply comes inside EXEC's) and in a
// tunnel (replies flow to the client as the server sends them).

// secretParams are the configuration parameters whose values CONFIG GET
// must not show a client.
var secretParams = []string{"requirepass", "masterauth", "masteruser", "tls-key-file-pass", "tls-client-key-file-pass"}

// Redacted replaces a secret's value in a CONFIG GET reply.
const Redacted = "(redacted)"

func (c *classifier) policy() {
	name := strings.ToUpper(c.d.Info.Name)
	switch c.d.Info.Special {
	case Replication:
		c.refuse("ERR redis-proxy: " + name + " is refused: replication is managed by the proxy")
	case Shutdown:
		c.refuse("ERR redis-proxy: SHUTDOWN is refused: the proxy manages the Redis servers; stop them on their hosts")
	case ConfigSet:
		c.configSet()
	case ConfigGet:
		c.configGet()
	case ACLAdmin:
		c.operatorOnly(strings.ReplaceAll(name, "|", " "), "users and their password hashes are the operator's")
	case ClientPause:
		c.operatorOnly(strings.ReplaceAll(name, "|", " "), "a paused master looks dead and is failed over; for a planned move use the admin API's switchover")
	case Debug:
		c.operatorOnly(name, "it can stop, slow or crash the server")
	case Module:
		c.operatorOnly(strings.ReplaceAll(name, "|", " "), "it loads code into the server")
	}
}

// operatorOnly refuses a command kept for the operator to any other
// session, saying why and how.
func (c *classifier) operatorOnly(cmd, why string) {
	if c.st.Operator {
		return
	}
	c.refuse("ERR redis-proxy: " + cmd + " is refused: " + why + " (for the operator only: AUTH as REDIS_PROXY_OPERATOR_USER)")
}

// configSet refuses CONFIG SET of a replication setting to everyone and
// of a protected one to everyone but the operator.
func (c *classifier) configSet() {
	for j := 2; j < len(c.args); j += 2 {
		param := strings.ToLower(string(c.args[j]))
		var value []byte
		if j+1 < len(c.args) {
			value = c.args[j+1]
		}
		switch rule := configSetRule(param, value); {
		case rule == "replication":
			c.refuse("ERR redis-proxy: CONFIG SET " + param + " is refused: replication is managed by the proxy")
			return
		case rule != "" && !c.st.Operator:
			c.operatorOnly("CONFIG SET "+param, "it changes the server's "+rule)
			return
		}
	}
}

// configSetRule names what a CONFIG SET of param (to value) changes if the
// policy protects it: "replication", or a protected category; "" if not.
func configSetRule(param string, value []byte) string {
	for _, prefix := range []string{"replica", "slave", "master", "repl-", "min-replicas", "min-slaves"} {
		if strings.HasPrefix(param, prefix) {
			return "replication"
		}
	}
	switch param {
	case "requirepass", "aclfile", "acl-pubsub-default":
		return "authentication"
	case "bind", "bind-source-addr", "port", "unixsocket", "unixsocketperm", "protected-mode", "tcp-backlog":
		return "network settings"
	case "maxclients", "timeout":
		return "connection limits, which the proxy's own connections live by"
	case "dir", "dbfilename", "appendfilename", "appenddirname":
		return "persistence paths"
	case "client-output-buffer-limit":
		v := strings.ToLower(string(value))
		if strings.Contains(v, "replica") || strings.Contains(v, "slave") {
			return "replication links' output buffers"
		}
		return ""
	}
	if strings.HasPrefix(param, "tls-") {
		return "TLS settings"
	}
	return ""
}

// configGet redacts secrets from the reply; where the reply cannot be
// rewritten, a CONFIG GET that could match a secret is refused.
func (c *classifier) configGet() {
	if c.st.Operator {
		return
	}
	if c.st.Tx.InMulti || c.st.Conn == Tunnel {
		for _, pattern := range c.args[2:] {
			if matchesSecret(pattern) {
				c.refuse("ERR redis-proxy: CONFIG GET " + string(pattern) + " is refused inside MULTI and in subscribed or RESP3 sessions: it could show a secret")
				return
			}
		}
		return
	}
	c.d.Filter = FilterSecrets
}

// matchesSecret reports whether a CONFIG GET pattern matches a secret
// parameter's name (Redis matches them without regard to case).
func matchesSecret(pattern []byte) bool {
	for _, s := range secretParams {
		if globMatch(pattern, []byte(s)) {
			return true
		}
	}
	return false
}

// RedactSecrets rewrites a CONFIG GET reply (an array of name and value
// bulk strings, RESP2, or a RESP3 map) so the value of every secret
// parameter that is set reads Redacted. Any other reply is returned as it
// is. It does not change reply.
func RedactSecrets(reply []byte) []byte {
	if len(reply) == 0 || (reply[0] != '*' && reply[0] != '%') {
		return reply
	}
	pairs, ok := splitPairs(reply)
	if !ok || !anySecretSet(pairs) {
		return reply
	}
	out := make([]byte, 0, len(reply))
	n := len(pairs)
	if reply[0] == '%' {
		n /= 2
	}
	out = append(out, reply[0])
	out = strconv.AppendInt(out, int64(n), 10)
	out = append(out, '\r', '\n')
	for i := 0; i < len(pairs); i += 2 {
		out = resp.AppendBulk(out, pairs[i])
		if isSecret(pairs[i]) && len(pairs[i+1]) > 0 {
			out = resp.AppendBulkString(out, Redacted)
		} else {
			out = resp.AppendBulk(out, pairs[i+1])
		}
	}
	return out
}

// splitPairs reads the bulk strings of a CONFIG GET reply: for RESP2 an
// array of 2N, for RESP3 a map of N.
func splitPairs(reply []byte) ([][]byte, bool) {
	n, rest, ok := header(reply)
	if !ok {
		return nil, false
	}
	if reply[0] == '%' {
		n *= 2
	}
	if n < 0 || n%2 != 0 {
		return nil, false
	}
	pairs := make([][]byte, 0, n)
	for i := int64(0); i < n; i++ {
		if len(rest) == 0 || rest[0] != '$' {
			return nil, false
		}
		size, body, ok := header(rest)
		if !ok || size < 0 || int64(len(body)) < size+2 {
			return nil, false
		}
		pairs = append(pairs, body[:size])
		rest = body[size+2:]
	}
	return pairs, len(rest) == 0
}

// header reads the number on the first line of b and returns what follows
// the line.
func header(b []byte) (int64, []byte, bool) {
	i := bytes.IndexByte(b, '\n') // (not via a string: that copies the rest of the reply, for each value)
	if i < 3 || b[i-1] != '\r' {
		return 0, nil, false
	}
	n, ok := resp.ParseInt(b[1 : i-1])
	return n, b[i+1:], ok
}

func anySecretSet(pairs [][]byte) bool {
	for i := 0; i < len(pairs); i += 2 {
		if isSecret(pairs[i]) && len(pairs[i+1]) > 0 {
			return true
		}
	}
	return false
}

func isSecret(name []byte) bool {
	for _, s := range secretParams {
		if strings.EqualFold(string(name), s) {
			return true
		}
	}
	return false
}
