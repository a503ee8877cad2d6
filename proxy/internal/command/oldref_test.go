package command

// The reference for the differential test: the classifier the proxy
// package had before this package (git: proxy/session.go, commands.go and
// loop_linux.go's txStateful), copied as it was with only what ties it to
// a Proxy and a socket taken out. Its session fields stand in oldSession;
// s.p.cfg, s.p.scripts and s.p.tunnels stand in oldEnv. Each method keeps
// its old body, so a difference the test finds is one between the old
// code and the new.

import (
	"crypto/subtle"
	"math"
	"strconv"
	"strings"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

type oldKind uint8

const (
	kForward oldKind = iota
	kRead
	kLocal
	kPin
	kTunnel
	kQuit
	kReset
	kScan
)

type stateOp uint8

const (
	opNone stateOp = iota
	opMulti
	opExec
	opDiscard
	opWatch
	opUnwatch
	opSelect
	opAuthUser
	opExecAbort
	opTunnelLater
)

func (op stateOp) endsGroup(arg int) bool {
	switch op {
	case opExec, opExecAbort, opDiscard, opUnwatch, opAuthUser:
		return true
	case opSelect:
		return arg == 0
	}
	return false
}

type pinState struct {
	inMulti      bool
	execAbort    bool
	tunnelAtExec bool
	watching     bool
	aclUser      bool
	db           int
	queuedDB     bool
	queuedName   *string
}

func (st pinState) clean() bool {
	return !st.inMulti && !st.watching && !st.aclUser && st.db == 0
}

// oldEnv is what the old session read of its Proxy.
type oldEnv struct {
	clientPassword string                     // s.p.cfg.ClientPassword
	readReplicas   bool                       // s.p.cfg.ReadFrom == ReadFromReplicas
	tunnels        map[int64]int64            // s.p.tunnels
	scripts        *[]string                  // s.p.scripts.note / forget, as events
	unblockID      func([]byte) (int64, bool) // parseLen; the test may swap in the intended parser
	selectDB       func([]byte) (int64, bool) // SELECT's index parser: see parseSelectOld
}

// oldSession holds the fields of the old session the classifier used.
type oldSession struct {
	p                *oldEnv
	id               int64
	authed           bool
	name             string
	pin              bool // s.pin != nil
	st               pinState
	tunneled         bool
	tunnelNow        bool
	subscribedAtExec bool
	dbUnknown        bool

	local   []byte
	raw     []byte
	op      stateOp
	opArg   int
	refusal bool
}

var oldDiscardCommand = oldAppendCommand(nil, "DISCARD")

func oldAppendCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, "\r\n"...)
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, "\r\n"...)
		dst = append(dst, a...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

func oldAppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	dst = append(dst, msg...)
	return append(dst, "\r\n"...)
}

// oldParseLen is the old proxy's parseLen (proxy/resp.go).
func oldParseLen(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		n = -n
	}
	return n, true
}

// parseSelectOld is the old SELECT parse: parseLen, then the canonical
// form.
func parseSelectOld(b []byte) (int64, bool) {
	n, ok := oldParseLen(b)
	if !ok || strconv.FormatInt(n, 10) != string(b) {
		return 0, false
	}
	return n, true
}

func (s *oldSession) needsTunnel(info *Info) (oldKind, *Info) {
	switch {
	case s.tunneled:
		return kForward, info
	case s.st.inMulti:
		s.op = opTunnelLater
		return kForward, info
	}
	return kTunnel, info
}

func (s *oldSession) localOK(info *Info) (oldKind, *Info) {
	s.local = append(s.local, "+OK\r\n"...)
	return kLocal, info
}

func (s *oldSession) localErr(info *Info, msg string) (oldKind, *Info) {
	s.local = oldAppendError(s.local, msg)
	return kLocal, info
}

func (s *oldSession) dedicatedConn() bool { return s.pin || s.tunneled }

// classify is the old session.classify; raw is redcon.Command.Raw.
func (s *oldSession) classify(t *Table, args [][]byte, raw []byte) (oldKind, *Info) {
	lo := len(s.local)
	inTx := s.st.inMulti && s.pin && !s.tunneled
	s.refusal = false
	k, info := s.classifyCommand(t, args, raw)
	if k != kLocal || !inTx {
		return k, info
	}
	if s.local[lo] != '-' || !s.refusal {
		if ev, ok := oldEvalFor(s.local[lo:]); ok {
			s.local = s.local[:lo]
			s.raw = ev
			return kForward, info
		}
		s.local = s.local[:lo]
		s.localErr(info, "ERR redis-proxy: "+strings.ToUpper(info.Name)+" is not supported inside MULTI")
	}
	s.st.execAbort = true
	return kLocal, info
}

func (s *oldSession) classifyCommand(t *Table, args [][]byte, raw []byte) (oldKind, *Info) {
	s.raw, s.op, s.opArg = raw, opNone, 0
	info := t.Lookup(args)
	name := info.Name
	if !info.ArityOK(len(args)) && info != t.Unknown {
		return kForward, info
	}
	if !s.authed {
		switch name {
		case "auth", "hello", "quit", "reset":
		default:
			return s.localErr(info, errNoAuth)
		}
	}
	inMulti := s.st.inMulti
	switch name {
	case "auth":
		return s.auth(info, args)
	case "hello":
		return s.hello(info, args)
	case "quit":
		return kQuit, info
	case "reset":
		if s.tunneled {
			s.name = ""
			s.authed = s.p.clientPassword == ""
			return kForward, info
		}
		return kReset, info
	case "select":
		if len(args) != 2 {
			return s.localErr(info, wrongArgs("select"))
		}
		n, ok := s.p.selectDB(args[1])
		if !ok || n != int64(int(n)) {
			return s.localErr(info, errNotInteger)
		}
		s.op, s.opArg = opSelect, int(n)
		if s.dedicatedConn() {
			return kForward, info
		}
		if n == 0 {
			return s.localOK(info)
		}
		return kPin, info
	case "multi":
		s.op = opMulti
		if !s.dedicatedConn() {
			return kPin, info
		}
		if !inMulti {
			s.st.inMulti = true
			s.st.execAbort, s.st.tunnelAtExec = false, false
		}
		return kForward, info
	case "watch":
		s.op = opWatch
		if !s.dedicatedConn() {
			return kPin, info
		}
		return kForward, info
	case "exec", "discard":
		s.op = opExec
		if name == "discard" {
			s.op = opDiscard
		}
		if inMulti {
			s.opArg = 1
			s.st.inMulti = false
			if name == "exec" && s.st.execAbort {
				s.op = opExecAbort
				s.raw = oldDiscardCommand
			}
		}
		return kForward, info
	case "unwatch":
		s.op = opUnwatch
		return kForward, info
	case "subscribe", "psubscribe", "ssubscribe", "monitor":
		if inMulti && !s.tunneled {
			s.subscribedAtExec = true
		}
		return s.needsTunnel(info)
	case "unsubscribe", "punsubscribe", "sunsubscribe":
		if inMulti || s.tunneled {
			return kForward, info
		}
		return s.unsubscribed(info, name, args)
	case "replicaof", "slaveof", "failover", "sync", "psync":
		s.refusal = true
		return s.localErr(info, "ERR redis-proxy: "+strings.ToUpper(name)+" is refused: replication is managed by the proxy")
	case "shutdown":
		s.refusal = true
		return s.localErr(info, "ERR redis-proxy: SHUTDOWN is refused: the proxy manages the Redis servers; stop them on their hosts")
	case "config|set":
		for j := 2; j < len(args); j += 2 {
			if replicationSetting(args[j]) {
				s.refusal = true
				return s.localErr(info, "ERR redis-proxy: CONFIG SET "+strings.ToLower(string(args[j]))+" is refused: replication is managed by the proxy")
			}
		}
		return kForward, info
	case "script|load":
		if len(args) == 3 {
			*s.p.scripts = append(*s.p.scripts, "note "+string(args[2]))
		}
		return kForward, info
	case "script|flush":
		*s.p.scripts = append(*s.p.scripts, "forget")
		return kForward, info
	case "evalsha_ro":
		return kForward, info
	case "wait", "waitaof":
		if inMulti || s.tunneled {
			return kForward, info
		}
		return kTunnel, info
	case "xread", "xreadgroup":
		if !inMulti && !s.tunneled && hasBlockOption(args) {
			return kTunnel, info
		}
	case "scan", "sscan", "hscan", "zscan":
		if !inMulti && !s.pin && !s.tunneled && s.p.readReplicas {
			return kScan, info
		}
		return kForward, info
	}
	if strings.HasPrefix(name, "client|") {
		return s.client(info, args)
	}
	switch {
	case s.tunneled || inMulti:
		return kForward, info
	case info.Has(Blocking) && name != "xread" && name != "xreadgroup":
		return kTunnel, info
	case info.Has(Readonly) && !s.pin && s.p.readReplicas:
		return kRead, info
	}
	return kForward, info
}

func (s *oldSession) auth(info *Info, args [][]byte) (oldKind, *Info) {
	switch {
	case len(args) == 2:
		if s.p.clientPassword == "" {
			return s.localErr(info, errNoPassword)
		}
		return s.checkPassword(info, args[1])
	case len(args) == 3 && strings.EqualFold(string(args[1]), "default"):
		return s.checkPassword(info, args[2])
	case len(args) == 3:
		s.op = opAuthUser
		if s.dedicatedConn() {
			return kForward, info
		}
		return kPin, info
	case len(args) > 3:
		return s.localErr(info, "ERR syntax error")
	}
	return s.localErr(info, wrongArgs("auth"))
}

func (s *oldSession) checkPassword(info *Info, pw []byte) (oldKind, *Info) {
	want := s.p.clientPassword
	if want == "" || subtle.ConstantTimeCompare(pw, []byte(want)) == 1 {
		s.authed = true
		return s.localOK(info)
	}
	return s.localErr(info, errWrongPass)
}

func (s *oldSession) hello(info *Info, args [][]byte) (oldKind, *Info) {
	proto := 0
	j := 1
	if len(args) > 1 {
		n, err := strconv.Atoi(string(args[1]))
		if err != nil {
			return s.localErr(info, "ERR Protocol version is not an integer or out of range")
		}
		if n != 2 && n != 3 {
			return s.localErr(info, "NOPROTO unsupported protocol version")
		}
		proto, j = n, 2
	}
	var user, pass, name []byte
	hasName := false
	for ; j < len(args); j++ {
		switch strings.ToLower(string(args[j])) {
		case "auth":
			if j+2 >= len(args) {
				return s.localErr(info, "ERR Syntax error in HELLO option '"+string(args[j])+"'")
			}
			user, pass = args[j+1], args[j+2]
			j += 2
		case "setname":
			if j+1 >= len(args) {
				return s.localErr(info, "ERR Syntax error in HELLO option '"+string(args[j])+"'")
			}
			name, hasName = args[j+1], true
			j++
		default:
			return s.localErr(info, "ERR Syntax error in HELLO option '"+string(args[j])+"'")
		}
	}
	aclUser := user != nil && !strings.EqualFold(string(user), "default")
	if user != nil && !aclUser {
		want := s.p.clientPassword
		if want != "" && subtle.ConstantTimeCompare(pass, []byte(want)) != 1 {
			return s.localErr(info, errWrongPass)
		}
		s.authed = true
	}
	if !s.authed && !aclUser {
		return s.localErr(info, errHelloNoAuth)
	}
	if hasName {
		if !validClientName(name) {
			return s.localErr(info, errClientName)
		}
		s.name = string(name)
	}
	fwd := []string{"HELLO"}
	if proto != 0 {
		fwd = append(fwd, strconv.Itoa(proto))
	}
	if aclUser {
		fwd = append(fwd, "AUTH", string(user), string(pass))
		s.op = opAuthUser
	}
	s.raw = oldAppendCommand(nil, fwd...)
	switch {
	case proto == 3 && !aclUser:
		return s.needsTunnel(info)
	case s.tunneled || s.st.inMulti:
		return kForward, info
	case proto == 3:
		return kTunnel, info
	case aclUser && !s.pin:
		return kPin, info
	}
	return kForward, info
}

func (s *oldSession) client(info *Info, args [][]byte) (oldKind, *Info) {
	arg := func(i int) string {
		if i < len(args) {
			return strings.ToLower(string(args[i]))
		}
		return ""
	}
	switch info.Name {
	case "client|id":
		s.local = resp.AppendInt(s.local, s.id)
		return kLocal, info
	case "client|unblock":
		return s.unblock(info, args)
	case "client|getname":
		if s.tunneled {
			return kForward, info
		}
		name := s.name
		if s.st.queuedName != nil {
			name = *s.st.queuedName
		}
		if name == "" {
			s.local = append(s.local, "$-1\r\n"...)
		} else {
			s.local = resp.AppendBulkString(s.local, name)
		}
		return kLocal, info
	}
	if s.tunneled {
		if info.Name == "client|setname" && len(args) == 3 && validClientName(args[2]) && !s.st.inMulti {
			s.name = string(args[2])
		}
		return kForward, info
	}
	switch info.Name {
	case "client|setname":
		if len(args) != 3 {
			return s.localErr(info, wrongArgs("client|setname"))
		}
		if !validClientName(args[2]) {
			return s.localErr(info, errClientName)
		}
		name := string(args[2])
		if s.st.inMulti && s.pin {
			s.st.queuedName = &name
		} else {
			s.name = name
		}
		return s.localOK(info)
	case "client|reply":
		if arg(2) == "on" {
			return s.localOK(info)
		}
		if s.st.inMulti {
			s.refusal = true
			return s.localErr(info, "ERR redis-proxy: CLIENT REPLY is not supported inside MULTI")
		}
		return kTunnel, info
	case "client|tracking":
		if arg(2) == "off" && len(args) == 3 {
			return s.localOK(info)
		}
		return s.needsTunnel(info)
	case "client|no-evict", "client|no-touch":
		return s.needsTunnel(info)
	}
	return kForward, info
}

func (s *oldSession) unblock(info *Info, args [][]byte) (oldKind, *Info) {
	if len(args) < 3 || len(args) > 4 {
		return s.localErr(info, wrongArgs("client|unblock"))
	}
	id, ok := s.p.unblockID(args[2])
	if !ok {
		return s.localErr(info, errNotInteger)
	}
	backend, found := s.p.tunnels[id]
	if !found {
		s.local = append(s.local, ":0\r\n"...)
		return kLocal, info
	}
	fwd := []string{"CLIENT", "UNBLOCK", strconv.FormatInt(backend, 10)}
	if len(args) == 4 {
		fwd = append(fwd, string(args[3]))
	}
	s.raw = oldAppendCommand(nil, fwd...)
	return kForward, info
}

func (s *oldSession) unsubscribed(info *Info, name string, args [][]byte) (oldKind, *Info) {
	if len(args) == 1 {
		s.local = append(s.local, "*3\r\n"...)
		s.local = resp.AppendBulkString(s.local, name)
		s.local = append(s.local, "$-1\r\n:0\r\n"...)
		return kLocal, info
	}
	for _, ch := range args[1:] {
		s.local = append(s.local, "*3\r\n"...)
		s.local = resp.AppendBulkString(s.local, name)
		s.local = resp.AppendBulk(s.local, ch)
		s.local = append(s.local, ":0\r\n"...)
	}
	return kLocal, info
}

const oldExecAborted = "-EXECABORT Transaction discarded because of previous errors.\r\n"

// applyOp is the old session.applyOp, with the op and arg of its pinItem.
func (s *oldSession) applyOp(op stateOp, arg int, reply []byte) []byte {
	ok := len(reply) > 2 && string(reply[:3]) == "+OK"
	queued := string(reply) == "+QUEUED\r\n"
	switch op {
	case opExec:
		if arg == 1 {
			executed := reply[0] == '*' && reply[1] != '-'
			if executed && s.st.queuedDB {
				s.dbUnknown = true
			}
			if executed && s.st.tunnelAtExec {
				s.tunnelNow = true
			}
			if executed && s.st.queuedName != nil {
				s.name = *s.st.queuedName
			}
			s.endTransaction()
		}
	case opExecAbort:
		s.endTransaction()
		if ok {
			return []byte(oldExecAborted)
		}
	case opDiscard:
		if arg == 1 && ok {
			s.endTransaction()
		}
	case opWatch:
		if ok {
			s.st.watching = true
		}
	case opUnwatch:
		if ok && !s.st.inMulti {
			s.st.watching = false
		}
	case opSelect:
		if ok {
			s.st.db = arg
		} else if queued {
			s.st.queuedDB = true
		}
	case opAuthUser:
		if reply[0] != '-' {
			s.authed = true
			s.st.aclUser = true
		}
	case opTunnelLater:
		if queued {
			s.st.tunnelAtExec = true
		}
	}
	return reply
}

func (s *oldSession) endTransaction() {
	if !s.tunnelNow {
		s.subscribedAtExec = false
	}
	s.st.watching, s.st.queuedDB, s.st.tunnelAtExec, s.st.execAbort = false, false, false, false
	s.st.queuedName = nil
}

// acquirePin, releasePin and resetState: their effect on the fields.
func (s *oldSession) acquirePin() { s.pin, s.st = true, pinState{} }

func (s *oldSession) releasePin() {
	if !s.pin {
		return
	}
	s.pin, s.st, s.subscribedAtExec = false, pinState{}, false
}

func (s *oldSession) resetState() {
	s.releasePin()
	s.name = ""
	s.authed = s.p.clientPassword == ""
}

func oldEvalFor(reply []byte) ([]byte, bool) {
	if len(reply) < 3 {
		return nil, false
	}
	body := string(reply[1 : len(reply)-2])
	switch reply[0] {
	case '+':
		return oldAppendCommand(nil, "EVAL", "return redis.status_reply(ARGV[1])", "0", body), true
	case '-':
		return oldAppendCommand(nil, "EVAL", "return redis.error_reply(ARGV[1])", "0", body), true
	case ':':
		return oldAppendCommand(nil, "EVAL", "return tonumber(ARGV[1])", "0", body), true
	case '$':
		if body == "-1" {
			return oldAppendCommand(nil, "EVAL", "return false", "0"), true
		}
		if _, v, ok := strings.Cut(body, "\r\n"); ok {
			return oldAppendCommand(nil, "EVAL", "return ARGV[1]", "0", v), true
		}
	}
	return nil, false
}

// txStateful is the old event loop's rule (loop_linux.go) for the
// commands that may not stand in a transaction block.
func txStateful(name string) bool {
	switch name {
	case "auth", "hello", "quit", "reset", "select", "multi", "watch", "unwatch",
		"subscribe", "psubscribe", "ssubscribe", "monitor", "unsubscribe", "punsubscribe", "sunsubscribe",
		"replicaof", "slaveof", "failover", "sync", "psync", "shutdown", "config|set", "wait", "waitaof":
		return true
	}
	return strings.HasPrefix(name, "client")
}
