package command

import (
	"crypto/subtle"
	"strconv"
	"strings"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The commands about the client's connection itself: authentication, the
// protocol, the name, and the CLIENT subcommands the proxy answers.

func (c *classifier) auth() {
	args := c.args
	switch {
	case len(args) == 2 && c.env.Password == "":
		c.err(errNoPassword)
	case len(args) == 2:
		c.checkPassword(args[1])
	case len(args) == 3 && strings.EqualFold(string(args[1]), "default"):
		c.checkPassword(args[2])
	case len(args) == 3 && c.isOperator(args[1]):
		c.checkOperator(args[2])
	case len(args) == 3:
		// Another ACL user: only Redis can say, on a connection of its own.
		c.d.Op = OpAuthUser
		c.dedicated()
	case len(args) > 3:
		c.err("ERR syntax error")
	default: // (the table's arity says at least 2; a table may be odd)
		c.err(wrongArgs("auth"))
	}
}

// isOperator reports whether user names the operator (see policy.go).
func (c *classifier) isOperator(user []byte) bool {
	return c.env.OperatorPassword != "" && string(user) == c.env.OperatorUser
}

// checkOperator authenticates the operator: the session may then run the
// commands the policy keeps for the operator.
func (c *classifier) checkOperator(pw []byte) {
	if subtle.ConstantTimeCompare(pw, []byte(c.env.OperatorPassword)) != 1 {
		c.err(errWrongPass)
		return
	}
	c.st.Authed, c.st.Operator = true, true
	c.ok()
}

func (c *classifier) checkPassword(pw []byte) {
	if !c.passwordOK(pw) {
		c.err(errWrongPass)
		return
	}
	c.st.Authed = true
	c.ok()
}

func (c *classifier) passwordOK(pw []byte) bool {
	want := c.env.Password
	return want == "" || subtle.ConstantTimeCompare(pw, []byte(want)) == 1
}

// helloArgs is HELLO [protover [AUTH user pass] [SETNAME name]].
type helloArgs struct {
	proto      int // 0: not given
	user, pass []byte
	hasAuth    bool // user and pass given (either may be empty, or nil)
	name       []byte
	hasName    bool
}

// parseHello reads HELLO's arguments, or returns Redis's error for them.
func parseHello(args [][]byte) (h helloArgs, msg string) {
	j := 1
	if len(args) > 1 {
		n, ok := resp.ParseInt(args[1]) // as Redis reads it: no "03", no "+3"
		if !ok {
			return h, "ERR Protocol version is not an integer or out of range"
		}
		if n != 2 && n != 3 {
			return h, "NOPROTO unsupported protocol version"
		}
		h.proto, j = int(n), 2
	}
	for ; j < len(args); j++ {
		opt := strings.ToLower(string(args[j]))
		switch {
		case opt == "auth" && j+2 < len(args):
			h.user, h.pass, h.hasAuth = args[j+1], args[j+2], true
			j += 2
		case opt == "setname" && j+1 < len(args):
			h.name, h.hasName = args[j+1], true
			j++
		default:
			return h, "ERR Syntax error in HELLO option '" + string(args[j]) + "'"
		}
	}
	return h, ""
}

// hello checks the proxy's own password and keeps the name; the server
// sees HELLO with the protocol (and an ACL user's credentials, which only
// it can check). RESP3 needs a tunnel: replies and pushes take RESP3
// shapes.
func (c *classifier) hello() {
	h, msg := parseHello(c.args)
	if msg != "" {
		c.err(msg)
		return
	}
	operator := h.hasAuth && c.isOperator(h.user)
	aclUser := h.hasAuth && !operator && !strings.EqualFold(string(h.user), "default")
	switch {
	case operator && subtle.ConstantTimeCompare(h.pass, []byte(c.env.OperatorPassword)) != 1,
		h.hasAuth && !operator && !aclUser && !c.passwordOK(h.pass):
		c.err(errWrongPass)
		return
	case operator:
		c.st.Authed, c.st.Operator = true, true
	case h.hasAuth && !aclUser:
		c.st.Authed = true
	}
	switch {
	case !c.st.Authed && !aclUser:
		c.err(errHelloNoAuth)
		return
	case h.hasName && !validClientName(h.name):
		c.err(errClientName)
		return
	case h.hasName:
		c.st.Name = string(h.name)
	}
	fwd := []string{"HELLO"}
	if h.proto != 0 {
		fwd = append(fwd, strconv.Itoa(h.proto))
	}
	if aclUser {
		fwd = append(fwd, "AUTH", string(h.user), string(h.pass))
		c.d.Op = OpAuthUser
	}
	c.d.Raw = resp.AppendCommand(nil, fwd...)
	switch {
	case h.proto == 3 && !aclUser:
		c.tunnel()
	case c.st.Conn == Tunnel || c.st.Tx.InMulti:
	case h.proto == 3:
		// Only the server can check an ACL user's credentials: their
		// reply is awaited on a pinned connection, which becomes the
		// tunnel once it says yes.
		c.d.Op = OpAuthUserRESP3
		c.dedicated()
	case aclUser:
		c.dedicated()
	}
}

// client handles the CLIENT subcommands that concern the connection itself.
func (c *classifier) client() {
	switch c.d.Info.Special {
	case ClientID:
		c.d.Kind = Local
		c.dst = resp.AppendInt(c.dst, c.st.ID)
	case ClientUnblock:
		c.unblock()
	case ClientGetName:
		c.getName()
	case ClientSetName:
		c.setName()
	case ClientReply:
		c.clientReply()
	case ClientTracking:
		// Tracking is only ever on in a tunnel: off is already true.
		if c.st.Conn != Tunnel && len(c.args) == 3 && strings.EqualFold(string(c.args[2]), "off") {
			c.ok()
			return
		}
		if c.st.Conn == Tunnel && !c.st.Tx.InMulti {
			c.tracking()
			return
		}
		c.tunnel()
	case ClientNoEvict:
		c.tunnel()
	case ClientTable:
		if c.st.Tx.InMulti {
			c.refuse("ERR redis-proxy: CLIENT " + strings.ToUpper(string(c.args[1])) + " is not supported inside MULTI")
			return
		}
		c.d.Kind = Ask
	case ClientGetRedir:
		c.getRedir()
	}
}

// tracking is CLIENT TRACKING in a tunnel: REDIRECT names the proxy's id
// of a client, which becomes the server's id of that client's tunnel; the
// settings are kept for GETREDIR and TRACKINGINFO. What the server will
// refuse (a syntax error, OPTIN with OPTOUT, ...) changes nothing kept.
func (c *classifier) tracking() {
	args := c.args
	if len(args) < 3 {
		return // the server's error
	}
	var t Tracking
	switch strings.ToLower(string(args[2])) {
	case "on":
		t.On = true
	case "off":
		c.st.Tracking = Tracking{}
		return
	default:
		return
	}
	redirAt := -1
	for i := 3; i < len(args); i++ {
		switch o := strings.ToLower(string(args[i])); {
		case o == "redirect" && i+1 < len(args) && redirAt < 0:
			i++
			id, ok := resp.ParseInt(args[i])
			if !ok {
				return
			}
			redirAt, t.Redirect = i, id
		case o == "prefix" && i+1 < len(args):
			i++
			t.Prefixes = string(resp.AppendBulk([]byte(t.Prefixes), args[i]))
			t.NPrefixes++
		case o == "bcast":
			t.BCast = true
		case o == "optin":
			t.OptIn = true
		case o == "optout":
			t.OptOut = true
		case o == "noloop":
			t.NoLoop = true
		default:
			return
		}
	}
	if t.OptIn && t.OptOut || t.BCast && (t.OptIn || t.OptOut) || t.NPrefixes > 0 && !t.BCast {
		return
	}
	if redirAt >= 0 {
		server, found := int64(0), false
		if c.env.TunnelID != nil {
			server, found = c.env.TunnelID(t.Redirect)
		}
		if !found {
			c.err("ERR The client ID you want redirect to does not exist")
			return
		}
		fwd := make([]string, len(args))
		for i, a := range args {
			fwd[i] = string(a)
		}
		fwd[redirAt] = strconv.FormatInt(server, 10)
		c.d.Raw = resp.AppendCommand(nil, fwd...)
	}
	c.st.Tracking = t
}

// getRedir answers CLIENT GETREDIR and TRACKINGINFO from the tracking
// state, with the proxy's ids (Redis's replies, as RESP2 arrays).
func (c *classifier) getRedir() {
	t := c.st.Tracking
	redir := int64(-1)
	if t.On {
		redir = t.Redirect
	}
	c.d.Kind = Local
	if c.d.Info.Name == "client|getredir" {
		c.dst = resp.AppendInt(c.dst, redir)
		return
	}
	var flags []string
	switch {
	case !t.On:
		flags = []string{"off"}
	default:
		flags = append(flags, "on")
		for _, f := range []struct {
			on   bool
			name string
		}{{t.BCast, "bcast"}, {t.OptIn, "optin"}, {t.OptOut, "optout"}, {t.NoLoop, "noloop"}} {
			if f.on {
				flags = append(flags, f.name)
			}
		}
		if t.Redirect != 0 && c.env.TunnelID != nil {
			if _, ok := c.env.TunnelID(t.Redirect); !ok {
				flags = append(flags, "broken_redirect")
			}
		}
	}
	c.dst = resp.AppendArray(c.dst, 6)
	c.dst = resp.AppendBulkString(c.dst, "flags")
	c.dst = resp.AppendArray(c.dst, len(flags))
	for _, f := range flags {
		c.dst = resp.AppendBulkString(c.dst, f)
	}
	c.dst = resp.AppendBulkString(c.dst, "redirect")
	c.dst = resp.AppendInt(c.dst, redir)
	c.dst = resp.AppendBulkString(c.dst, "prefixes")
	c.dst = resp.AppendArray(c.dst, t.NPrefixes)
	c.dst = append(c.dst, t.Prefixes...)
}

func (c *classifier) getName() {
	if c.st.Conn == Tunnel {
		// The tunnel's server was given the name and sees every SETNAME
		// since, with Redis's own transaction semantics.
		return
	}
	name := c.st.Name
	if c.st.Tx.HasQueuedName { // queued in this transaction, runs before
		name = c.st.Tx.QueuedName
	}
	c.d.Kind = Local
	if name == "" {
		c.dst = append(c.dst, resp.Null...)
	} else {
		c.dst = resp.AppendBulkString(c.dst, name)
	}
}

func (c *classifier) setName() {
	n := len(c.args)
	switch {
	case c.st.Conn == Tunnel:
		// Forwarded: the server names its connection (or refuses); the
		// proxy follows outside a transaction (inside, EXEC decides).
		if n == 3 && validClientName(c.args[2]) && !c.st.Tx.InMulti {
			c.st.Name = string(c.args[2])
		}
		return
	case n != 3: // (the table's arity says 3; a table may be odd)
		c.err(wrongArgs("client|setname"))
		return
	}
	name := c.args[2]
	switch {
	case !validClientName(name):
		c.err(errClientName)
	case c.st.Tx.InMulti:
		c.st.Tx.QueuedName, c.st.Tx.HasQueuedName = string(name), true // Redis names the client when EXEC runs it
		c.ok()
	default:
		c.st.Name = string(name)
		c.ok()
	}
}

func (c *classifier) clientReply() {
	on := len(c.args) > 2 && strings.EqualFold(string(c.args[2]), "on")
	switch {
	case c.env.WriteAcks && !on:
		// A write's reply waits for the replicas: one left out would
		// leave no way to tell the replies apart.
		c.refuse("ERR redis-proxy: CLIENT REPLY OFF and SKIP are not supported with REDIS_PROXY_WRITE_ACKS")
	case c.st.Conn == Tunnel:
	case on:
		c.ok()
	case c.st.Tx.InMulti:
		// Redis answers EXEC with a truncated array then; refuse.
		c.refuse("ERR redis-proxy: CLIENT REPLY is not supported inside MULTI")
	default:
		c.d.Kind = Open
	}
}

// unblock handles CLIENT UNBLOCK id: the id is the proxy's (what CLIENT ID
// answered); a blocked client is a tunnel, whose server-side id is known.
func (c *classifier) unblock() {
	args := c.args
	if len(args) < 3 || len(args) > 4 { // (the table's arity says at least 3; a table may be odd)
		c.err(wrongArgs("client|unblock"))
		return
	}
	// The reason is checked first, as Redis does.
	if len(args) == 4 && !strings.EqualFold(string(args[3]), "timeout") && !strings.EqualFold(string(args[3]), "error") {
		c.err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
		return
	}
	id, ok := resp.ParseInt(args[2])
	if !ok {
		c.err(errNotInteger)
		return
	}
	var backend int64
	found := false
	if c.env.TunnelID != nil {
		backend, found = c.env.TunnelID(id)
	}
	if !found {
		c.d.Kind = Local
		c.dst = resp.AppendInt(c.dst, 0)
		return
	}
	fwd := []string{"CLIENT", "UNBLOCK", strconv.FormatInt(backend, 10)}
	if len(args) == 4 {
		fwd = append(fwd, string(args[3]))
	}
	c.d.Raw = resp.AppendCommand(nil, fwd...)
}

// unsubscribed answers (P|S)UNSUBSCRIBE for a client with no
// subscriptions, as Redis does: one message per channel named, or one with
// a null channel.
func (c *classifier) unsubscribed() {
	c.d.Kind = Local
	name := c.d.Info.Name
	if len(c.args) == 1 {
		c.dst = append(c.dst, "*3\r\n"...)
		c.dst = resp.AppendBulkString(c.dst, name)
		c.dst = append(c.dst, "$-1\r\n:0\r\n"...)
		return
	}
	for _, ch := range c.args[1:] {
		c.dst = append(c.dst, "*3\r\n"...)
		c.dst = resp.AppendBulkString(c.dst, name)
		c.dst = resp.AppendBulk(c.dst, ch)
		c.dst = append(c.dst, ":0\r\n"...)
	}
}

func validClientName(b []byte) bool {
	for _, c := range b {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}
