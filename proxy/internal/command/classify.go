package command

import (
	"strings"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// Conn is the backend connection a session's commands run on now.
type Conn uint8

const (
	// Shared: the server connections many clients share (request and
	// reply, matched by order).
	Shared Conn = iota
	// Pinned: a dedicated connection, request and reply, held while the
	// server keeps state for the client (a transaction, a database, an ACL
	// user).
	Pinned
	// Tunnel: a dedicated connection the client talks to full duplex for
	// the rest of its life (blocking commands, pub/sub, RESP3, ...).
	Tunnel
)

// State is what the classifier knows of one client's session. Classify
// takes it as a value and returns the next one; the session keeps it.
type State struct {
	ID     int64 // the proxy's id for the client (CLIENT ID)
	Authed bool  // the client gave the password (or none is needed)
	// Operator: the client authenticated as Env.OperatorUser; the
	// commands policy.go keeps for the operator are allowed.
	Operator bool
	Conn     Conn
	Name     string // CLIENT SETNAME, kept by the proxy
	Tx       Tx     // the server-side state of a pinned connection
	// Tracking is CLIENT TRACKING as the client turned it on (in a tunnel:
	// elsewhere it is off).
	Tracking Tracking
}

// Tracking is a tunnel's CLIENT TRACKING settings, which CLIENT GETREDIR
// and TRACKINGINFO report with the proxy's ids.
type Tracking struct {
	On       bool
	Redirect int64 // the proxy's id of the client that gets the invalidations (0: none)
	BCast    bool
	OptIn    bool
	OptOut   bool
	NoLoop   bool
	// Prefixes are the PREFIX options as RESP bulk strings, one after the
	// other (a string keeps State comparable), NPrefixes of them.
	Prefixes  string
	NPrefixes int
}

// Tx is the server-side state of a pinned connection that the proxy
// follows, to know when the connection is clean again. It is the zero
// value on a shared connection.
type Tx struct {
	// InMulti is set when MULTI is sent, not when its reply comes, so the
	// commands pipelined after it are classified as queued ones. MULTI
	// fails only inside a transaction, so this is exact.
	InMulti      bool
	ExecAbort    bool // a command was refused while queueing: EXEC aborts
	TunnelAtExec bool // a queued command (SUBSCRIBE, HELLO 3, ...) runs at EXEC
	// SubscribedAtExec: that command subscribes, after which the
	// connection takes no handshake.
	SubscribedAtExec bool
	Watching         bool
	ACLUser          bool // authenticated as another ACL user: never clean again
	DB               int
	QueuedDB         bool   // a SELECT was queued: EXEC may change the database
	QueuedName       string // CLIENT SETNAME queued in the transaction, applied by EXEC
	HasQueuedName    bool
}

// Clean reports whether the connection holds no state of the client's, so
// it may go back to serve another.
func (t Tx) Clean() bool { return !t.InMulti && !t.Watching && !t.ACLUser && t.DB == 0 }

// Env is what Classify reads besides the session: the same for every
// command of every client.
type Env struct {
	// Password is the one clients must give (AUTH, HELLO AUTH); empty:
	// none.
	Password string
	// ReadReplicas: read-only commands may go to replicas.
	ReadReplicas bool
	// TunnelID returns the server's id for the tunnel connection of the
	// client the proxy knows as id (CLIENT UNBLOCK names the proxy's id).
	// If nil, no client has one.
	TunnelID func(id int64) (int64, bool)
	// OperatorUser and OperatorPassword: AUTH OperatorUser
	// OperatorPassword makes a session the operator's (see policy.go).
	// With no password, no session is.
	OperatorUser, OperatorPassword string
	// WriteAcks: durable writes are on (the proxy's Config.WriteAcks);
	// CLIENT REPLY OFF|SKIP is refused.
	WriteAcks bool
}

// Kind is where a command goes.
type Kind uint8

const (
	Forward    Kind = iota // to the master, or the session's own connection
	Read                   // read-only: may go to a replica
	ReadCursor             // a SCAN-family read: to the replica the session's cursors live on
	Local                  // answered by the proxy: the reply is appended to dst
	Pin                    // needs a pinned connection: classify it again there
	Open                   // needs a tunnel: classify it again in the tunnel
	Close                  // QUIT: +OK, then close
	Renew                  // RESET: the session becomes a new one (the returned State)
	// Ask is answered by the data path from what only it knows (its
	// client table: CLIENT LIST, INFO, KILL), in order with the session's
	// other replies.
	Ask
)

// Op is how the reply to a forwarded command changes a pinned
// connection's state (see AfterReply).
type Op uint8

const (
	OpNone Op = iota
	OpMulti
	OpExec
	OpDiscard
	OpWatch
	OpUnwatch
	OpSelect
	OpAuthUser
	OpExecAbort   // EXEC sent as DISCARD: a command was refused while queueing
	OpTunnelLater // queued in MULTI; makes the session a tunnel once EXEC runs it
	// OpKill is SCRIPT KILL or FUNCTION KILL, on a connection of its own
	// to the server running the script.
	OpKill
	// OpAuthUserRESP3 is HELLO 3 AUTH as an ACL user: on a pinned
	// connection, so the proxy sees whether the server took the
	// credentials; the session becomes a tunnel once it did.
	OpAuthUserRESP3
)

// Script is what the proxy's script mirror does for a command.
type Script uint8

const (
	ScriptNone   Script = iota
	ScriptNote          // remember args[2], the body of SCRIPT LOAD
	ScriptForget        // SCRIPT FLUSH: forget every script
)

// Decision is what to do with one command.
type Decision struct {
	Kind Kind
	Info *Info
	// Raw, when set, is sent instead of the client's own bytes (a
	// rewritten command, or an EVAL that makes the server give a reply of
	// the proxy's in order with its own).
	Raw []byte
	// Op and Arg: how the reply changes a pinned connection's state.
	Op  Op
	Arg int
	// Refused: the Local reply is the proxy refusing the command.
	Refused bool
	Script  Script
	// Filter is what the data path must do to the server's reply before
	// the client sees it.
	Filter Filter
}

// Filter is a rewrite of a server's reply.
type Filter uint8

const (
	FilterNone    Filter = iota
	FilterSecrets        // CONFIG GET: secret values redacted (RedactSecrets)
	FilterClients        // INFO: the clients section replaced with the proxy's clients
)

// infoHasClients reports whether INFO with these sections shows the
// clients section: none (the default sections), default, all,
// everything, or clients.
func infoHasClients(sections [][]byte) bool {
	if len(sections) == 0 {
		return true
	}
	for _, s := range sections {
		for _, n := range []string{"clients", "default", "all", "everything"} {
			if strings.EqualFold(string(s), n) {
				return true
			}
		}
	}
	return false
}

// Classify decides what to do with one command (info, its entry in the
// table, and args, its name and arguments) for a session in state st. A
// reply the proxy makes itself (Kind Local) is appended to dst. It returns
// the session's state once the command has run: the caller applies it
// when it carries the decision out (for Pin and Open, the command is
// classified again on the connection it gets). Classify performs no I/O
// and changes nothing it is given but dst's spare capacity.
func Classify(env *Env, st State, info *Info, args [][]byte, dst []byte) (State, Decision, []byte) {
	if k, ok := ByFlags(env, &st, info, len(args)); ok {
		return st, Decision{Kind: k, Info: info}, dst
	}
	c := classifier{env: env, st: st, args: args, dst: dst, d: Decision{Info: info}}
	inTx := st.Tx.InMulti && st.Conn == Pinned
	c.classify()
	if inTx && c.d.Kind == Local {
		c.queued(len(dst))
	}
	return c.st, c.d, c.dst
}

// ByFlags is Classify's answer for most commands, those routed by their flags
// alone (no Special) for an authenticated session on shared connections,
// computed without copying the state: the kind, and ok. Such a command
// changes no state and makes no reply; with ok false, call Classify.
func ByFlags(env *Env, st *State, info *Info, nargs int) (k Kind, ok bool) {
	if info.Special != None || st.Conn != Shared || !st.Authed || !info.ArityOK(nargs) {
		return 0, false
	}
	switch {
	case info.Flags&Blocking != 0:
		return Open, true
	case info.Flags&Readonly != 0 && env.ReadReplicas:
		return Read, true
	}
	return Forward, true
}

// classifier is one Classify call's work: handlers read env, args and the
// state as it was, and write the next state, the decision and the reply.
type classifier struct {
	env  *Env
	st   State
	args [][]byte
	dst  []byte
	d    Decision
}

func (c *classifier) classify() {
	info := c.d.Info
	switch {
	case !info.ArityOK(len(c.args)):
		// Redis refuses it before anything else, changing no state (in a
		// transaction it flags it): let Redis say so.
		return
	case !c.st.Authed && !beforeAuth(info.Special):
		c.err(errNoAuth)
		return
	}
	switch info.Special {
	case Auth:
		c.auth()
	case Hello:
		c.hello()
	case Quit:
		c.d.Kind = Close
	case Reset:
		c.reset()
	case Select:
		c.selectDB()
	case Multi, Watch, Exec, Discard, Unwatch:
		c.transaction()
	case Subscribe, Unsubscribe:
		c.pubsub()
	case Replication, Shutdown, ConfigSet, ConfigGet, ACLAdmin, ClientPause, Debug, Module:
		c.policy()
	case ScriptLoad, ScriptFlush, EvalshaRO:
		c.script()
	case Wait, XRead, Scan:
		c.connBound()
	case ClientID, ClientUnblock, ClientGetName, ClientSetName, ClientReply, ClientTracking, ClientNoEvict, ClientTable, ClientGetRedir, ClientOther:
		c.client()
	case InfoCmd:
		c.byFlags()
		if c.st.Conn != Tunnel && !c.st.Tx.InMulti && infoHasClients(c.args[1:]) {
			c.d.Filter = FilterClients
		}
	case KillScript:
		// Redis takes it only on a connection other than the one running
		// the script (which may be a shared one): a connection of the
		// session's own, to the server the data path knows runs one.
		c.d.Op = OpKill
		c.dedicated()
	default:
		c.byFlags()
	}
}

// beforeAuth: the commands a client may send before it authenticates.
func beforeAuth(sp Special) bool {
	return sp == Auth || sp == Hello || sp == Quit || sp == Reset
}

// byFlags routes a command by Redis's flags: a blocking command needs a
// tunnel; the rest are routed.
func (c *classifier) byFlags() {
	if c.d.Info.Has(Blocking) && c.st.Conn != Tunnel && !c.st.Tx.InMulti {
		c.d.Kind = Open
		return
	}
	c.route()
}

// route sends a read to a replica when reads go there and the session has
// no connection of its own; everything else goes to the master (or the
// session's own connection).
func (c *classifier) route() {
	if c.d.Info.Has(Readonly) && c.st.Conn == Shared && c.env.ReadReplicas {
		c.d.Kind = Read
	}
}

// tunnel is for commands that change how the connection talks (pushes, no
// replies, RESP3): a tunnel, unless the session is one already; inside a
// transaction, a queued command that makes the session a tunnel once EXEC
// runs it.
func (c *classifier) tunnel() {
	switch {
	case c.st.Conn == Tunnel:
	case c.st.Tx.InMulti:
		c.d.Op = OpTunnelLater
	default:
		c.d.Kind = Open
	}
}

// dedicated is for commands that change the server's state of the
// connection: forwarded on a connection of the session's own, else a
// pinned one first.
func (c *classifier) dedicated() {
	if c.st.Conn == Shared {
		c.d.Kind = Pin
	}
}

func (c *classifier) reset() {
	if c.st.Conn != Tunnel {
		c.d.Kind = Renew
		c.st = State{ID: c.st.ID}
	}
	// The server resets a tunnel's connection itself; the proxy forgets
	// what it keeps for the client.
	c.st.Name = ""
	c.st.Authed = c.env.Password == ""
}

func (c *classifier) selectDB() {
	if len(c.args) != 2 { // (the table's arity says 2; a table may be odd)
		c.err(wrongArgs("select"))
		return
	}
	// Redis takes only the canonical form ("1", not "01", "+1", "-0").
	n, ok := resp.ParseInt(c.args[1])
	if !ok || n != int64(int(n)) {
		c.err(errNotInteger)
		return
	}
	c.d.Op, c.d.Arg = OpSelect, int(n)
	if c.st.Conn == Shared && n == 0 {
		c.ok()
		return
	}
	c.dedicated()
}

func (c *classifier) transaction() {
	tx := &c.st.Tx
	switch c.d.Info.Special {
	case Multi:
		c.d.Op = OpMulti
		c.dedicated()
		if c.st.Conn != Shared && !tx.InMulti {
			tx.InMulti, tx.ExecAbort, tx.TunnelAtExec = true, false, false
		}
	case Watch:
		c.d.Op = OpWatch
		c.dedicated()
	case Exec, Discard:
		c.d.Op = OpExec
		if c.d.Info.Special == Discard {
			c.d.Op = OpDiscard
		}
		if tx.InMulti {
			c.d.Arg = 1
			tx.InMulti = false
			if c.d.Op == OpExec && tx.ExecAbort {
				c.d.Op, c.d.Raw = OpExecAbort, discardCommand
			}
		}
	case Unwatch:
		c.d.Op = OpUnwatch
	}
}

// discardCommand replaces an EXEC that must abort.
var discardCommand = resp.AppendCommand(nil, "DISCARD")

func (c *classifier) pubsub() {
	switch {
	case c.d.Info.Special == Subscribe:
		if c.st.Tx.InMulti && c.st.Conn != Tunnel {
			c.st.Tx.SubscribedAtExec = true // if EXEC runs it
		}
		c.tunnel()
	case c.st.Tx.InMulti || c.st.Conn == Tunnel:
	default:
		// Not subscribed (else this would be a tunnel): Redis answers one
		// message per channel, which must not reach a shared connection.
		c.unsubscribed()
	}
}

func (c *classifier) script() {
	switch c.d.Info.Special {
	case ScriptLoad:
		if len(c.args) == 3 {
			c.d.Script = ScriptNote
		}
	case ScriptFlush:
		c.d.Script = ScriptForget
	}
	// EVALSHA_RO: a replica's script cache is its own; the script may be
	// loaded on the master only (or just now), so the master runs it.
}

// connBound is for commands bound to one connection or server: WAIT waits
// for the connection's own writes, a blocking XREAD blocks it, a SCAN
// cursor means something only on the server that made it.
func (c *classifier) connBound() {
	free := !c.st.Tx.InMulti && c.st.Conn != Tunnel
	switch c.d.Info.Special {
	case Wait:
		if free {
			c.d.Kind = Open
		}
	case XRead:
		if free && hasBlockOption(c.args) {
			c.d.Kind = Open
			return
		}
		c.route()
	case Scan:
		if c.st.Conn == Shared && c.env.ReadReplicas {
			c.d.Kind = ReadCursor
		}
	}
}

// hasBlockOption reports whether an XREAD/XREADGROUP has BLOCK before
// STREAMS.
func hasBlockOption(args [][]byte) bool {
	for _, a := range args[1:] {
		if strings.EqualFold(string(a), "streams") {
			return false
		}
		if strings.EqualFold(string(a), "block") {
			return true
		}
	}
	return false
}

// queued makes a reply the proxy made (at dst[lo:]) behave as a queued
// command inside a transaction on a pinned connection. Redis refuses a
// command while queueing (and EXEC then aborts) only for an unknown
// command or a wrong number of arguments, which go to Redis as they are;
// any other error it gives inside EXEC's reply. So the proxy's own
// refusals (REPLICAOF, ...) are answered now and abort the transaction,
// the safe side for a command the client meant to run atomically with
// others, and every other reply the proxy makes is queued as an EVAL that
// returns it.
func (c *classifier) queued(lo int) {
	reply := c.dst[lo:]
	if !c.d.Refused { // (a refusal is always an error reply)
		if ev, ok := EvalFor(reply); ok {
			c.dst = c.dst[:lo]
			c.d.Kind, c.d.Raw = Forward, ev
			return
		}
		c.dst = c.dst[:lo]
		c.err("ERR redis-proxy: " + strings.ToUpper(c.d.Info.Name) + " is not supported inside MULTI")
	}
	c.st.Tx.ExecAbort = true
}

// Replies the proxy makes itself, worded as Redis words them.
const (
	errNoAuth      = "NOAUTH Authentication required."
	errWrongPass   = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPassword  = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errHelloNoAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	errNotInteger  = "ERR value is not an integer or out of range"
	errClientName  = "ERR Client names cannot contain spaces, newlines or special characters."
)

func (c *classifier) ok() {
	c.d.Kind = Local
	c.dst = append(c.dst, "+OK\r\n"...)
}

func (c *classifier) err(msg string) {
	c.d.Kind = Local
	c.dst = resp.AppendError(c.dst, msg)
}

// refuse answers with the proxy's refusal of the command.
func (c *classifier) refuse(msg string) {
	c.err(msg)
	c.d.Refused = true
}

func wrongArgs(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}
