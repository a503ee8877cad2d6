package command

import "strings"

// Special is how the proxy treats a command besides routing it by Redis's
// flags. The zero value, None, is every other command: it is routed by
// its flags alone.
type Special uint8

const (
	None           Special = iota
	Auth                   // checked by the proxy, or by Redis for an ACL user
	Hello                  // the proxy's password and name; RESP3 needs a tunnel
	Quit                   // +OK and close
	Reset                  // every connection state dropped
	Select                 // a database other than 0 needs a connection of its own
	Multi                  // a transaction: a connection of its own, or a block
	Watch                  //
	Exec                   //
	Discard                //
	Unwatch                //
	Subscribe              // SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, MONITOR: a tunnel
	Unsubscribe            // answered by the proxy for a client with no subscription
	Replication            // REPLICAOF, SLAVEOF, FAILOVER, SYNC, PSYNC: refused
	Shutdown               // refused
	ConfigSet              // refused for replication settings; others the operator's (policy.go)
	ConfigGet              // secrets redacted from the reply
	ACLAdmin               // users and password hashes: the operator's
	ClientPause            // CLIENT PAUSE, UNPAUSE: the operator's
	Debug                  // the operator's
	Module                 // MODULE LOAD, LOADEX, UNLOAD: the operator's
	KillScript             // SCRIPT KILL, FUNCTION KILL: to the server running the script, on another connection
	ScriptLoad             // remembered and copied to every server
	ScriptFlush            // forgets what ScriptLoad remembered
	EvalshaRO              // to the master: replicas may lack the script
	Wait                   // WAIT, WAITAOF: wait for the connection's own writes
	XRead                  // XREAD, XREADGROUP: blocking only with BLOCK
	Scan                   // SCAN family: the cursor belongs to one server
	ClientID               // CLIENT ID: the proxy's id for the client
	ClientUnblock          // CLIENT UNBLOCK: the proxy's id mapped to the server's
	ClientGetName          // the proxy keeps the name
	ClientSetName          //
	ClientReply            // CLIENT REPLY OFF|SKIP: a tunnel
	ClientTracking         // CLIENT TRACKING ON: a tunnel
	ClientNoEvict          // CLIENT NO-EVICT, NO-TOUCH: a tunnel
	ClientTable            // CLIENT LIST, INFO, KILL: answered from the proxy's client table (Ask)
	ClientGetRedir         // CLIENT GETREDIR, TRACKINGINFO: answered from the session's tracking state
	ClientOther            // every other CLIENT subcommand: forwarded as it is
	InfoCmd                // INFO: its clients section is the proxy's (FilterClients)
)

// commandsOf is the one table of the commands the proxy treats
// specially: for each Special, the lower-case names it covers
// (subcommands as "container|sub"). Classify dispatches on Special; the
// transaction-block rule reads inBlock.
var commandsOf = map[Special]string{
	Auth: "auth", Hello: "hello", Quit: "quit", Reset: "reset", Select: "select",
	Multi: "multi", Watch: "watch", Exec: "exec", Discard: "discard", Unwatch: "unwatch",
	Subscribe:   "subscribe psubscribe ssubscribe monitor",
	Unsubscribe: "unsubscribe punsubscribe sunsubscribe",
	Replication: "replicaof slaveof failover sync psync", Shutdown: "shutdown", ConfigSet: "config|set",
	ConfigGet: "config|get", ACLAdmin: "acl|setuser acl|deluser acl|load acl|save acl|dryrun acl|list acl|getuser",
	ClientPause: "client|pause client|unpause", Debug: "debug", Module: "module|load module|loadex module|unload",
	KillScript: "script|kill function|kill",
	ScriptLoad: "script|load", ScriptFlush: "script|flush", EvalshaRO: "evalsha_ro",
	Wait: "wait waitaof", XRead: "xread xreadgroup", Scan: "scan sscan hscan zscan",
	ClientID: "client|id", ClientUnblock: "client|unblock", ClientGetName: "client|getname",
	ClientSetName: "client|setname", ClientReply: "client|reply", ClientTracking: "client|tracking",
	ClientNoEvict: "client|no-evict client|no-touch",
	ClientTable:   "client|list client|info client|kill", ClientGetRedir: "client|getredir client|trackinginfo",
	InfoCmd: "info",
}

// inBlock are the specials that may stand inside a transaction block (see
// Info.InBlock); every other special may not, nor may the CLIENT container
// itself (a wrong subcommand or arity: Redis answers, on a connection of
// the client's own).
var inBlock = map[Special]bool{Exec: true, Discard: true, EvalshaRO: true, XRead: true, Scan: true, InfoCmd: true}

// longNames are the commands that may hold a server for long, answering
// nobody until busy-reply-threshold and -BUSY after it: scripts and
// functions. The data path tells the replication manager which servers run
// one it sent (Info.Long), so a master busy with one is not failed over.
var longNames = map[string]bool{"eval": true, "evalsha": true, "eval_ro": true, "evalsha_ro": true, "fcall": true, "fcall_ro": true}

// specials maps each name of commandsOf to its Special.
var specials = func() map[string]Special {
	m := make(map[string]Special)
	for sp, names := range commandsOf {
		for _, n := range strings.Fields(names) {
			m[n] = sp
		}
	}
	return m
}()

// specialOf is the Special of a command named name (parent is its
// container's name for a subcommand).
func specialOf(name, parent string) Special {
	if sp, ok := specials[name]; ok {
		return sp
	}
	if parent == "client" {
		return ClientOther
	}
	return None
}

// blockOf is whether a command named name, of Special sp, may stand
// inside a transaction block (see Info.InBlock).
func blockOf(name string, sp Special) bool {
	if sp == None {
		return name != "client"
	}
	return inBlock[sp]
}

// InBlock reports whether the command may stand inside a transaction the
// event loop writes whole (MULTI through EXEC or DISCARD) to a shared
// connection: nothing about it concerns the connection, so EXEC leaves the
// connection as it was and no other client can tell. Commands that change
// the connection's state (SELECT, AUTH, CLIENT ..., SUBSCRIBE), that the
// proxy answers, refuses or remembers (SCRIPT LOAD) itself, or that wait
// for the connection's own writes (WAIT) may not: such a transaction runs
// on a connection of its own. (Blocking commands do not block inside a
// transaction.)
func (c *Info) InBlock() bool { return c.inBlock }
