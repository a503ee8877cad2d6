package command

import (
	"bytes"
	"encoding/json"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// EndsGroup reports whether the reply to a command with op (and arg) may
// leave a pinned connection clean, or change the client's
// authentication: the commands after it must be classified once that
// reply has been seen, so a pinned batch is written in groups that end
// after such a command.
func EndsGroup(op Op, arg int) bool {
	switch op {
	case OpExec, OpExecAbort, OpDiscard, OpUnwatch, OpAuthUser, OpAuthUserRESP3, OpKill:
		return true
	case OpSelect:
		return arg == 0
	}
	return false
}

// Followup is what a reply on a pinned connection asks of the session
// besides its next state.
type Followup struct {
	// ReadDB: EXEC ran queued SELECTs; which succeeded is in its reply,
	// so the session asks the server which database it is in.
	ReadDB bool
	// TunnelNow: EXEC ran a command that makes the session a tunnel.
	TunnelNow bool
	// Reply, when set, replaces the server's reply to the client.
	Reply []byte
}

// ExecAborted is Redis's reply to EXEC after a command was refused while
// queueing.
var ExecAborted = []byte("-EXECABORT Transaction discarded because of previous errors.\r\n")

// AfterReply returns the session's state once reply, the server's reply
// to a command classified with op and arg, has come on a pinned
// connection. It performs no I/O and does not change st.
func AfterReply(st State, op Op, arg int, reply []byte) (State, Followup) {
	var f Followup
	ok := bytes.HasPrefix(reply, []byte("+OK"))
	queued := string(reply) == "+QUEUED\r\n"
	tx := &st.Tx
	switch op {
	case OpExec:
		if arg == 1 { // it ended a transaction
			ran := len(reply) > 1 && reply[0] == '*' && reply[1] != '-'
			f.ReadDB = ran && tx.QueuedDB
			f.TunnelNow = ran && tx.TunnelAtExec
			if ran && tx.HasQueuedName {
				st.Name = tx.QueuedName
			}
			endTransaction(tx, f.TunnelNow)
		}
	case OpExecAbort:
		endTransaction(tx, false)
		if ok {
			f.Reply = ExecAborted
		}
	case OpDiscard:
		if arg == 1 && ok {
			endTransaction(tx, false)
		}
	case OpWatch:
		tx.Watching = tx.Watching || ok
	case OpUnwatch:
		tx.Watching = tx.Watching && !(ok && !tx.InMulti)
	case OpSelect:
		afterSelect(tx, arg, ok, queued)
	case OpAuthUser, OpAuthUserRESP3:
		if len(reply) > 0 && reply[0] != '-' {
			st.Authed, tx.ACLUser = true, true
			f.TunnelNow = op == OpAuthUserRESP3
		}
	case OpTunnelLater:
		tx.TunnelAtExec = tx.TunnelAtExec || queued
	}
	return st, f
}

func afterSelect(tx *Tx, db int, ok, queued bool) {
	switch {
	case ok:
		tx.DB = db
	case queued:
		tx.QueuedDB = true
	}
}

// endTransaction clears what EXEC and DISCARD clear on the server. A
// subscription EXEC ran stays (the session becomes a tunnel). InMulti is
// not touched: Classify cleared it when it saw EXEC or DISCARD, and a
// MULTI classified since then is the server's state now.
func endTransaction(tx *Tx, tunnelNow bool) {
	if !tunnelNow {
		tx.SubscribedAtExec = false
	}
	tx.Watching, tx.QueuedDB, tx.TunnelAtExec, tx.ExecAbort = false, false, false, false
	tx.QueuedName, tx.HasQueuedName = "", false
}

// jsonArray decodes the array at the start of b (bulk strings, integers
// and arrays of them) for encoding/json, and returns its length in b.
func jsonArray(b []byte) (any, int, bool) {
	line := bytes.IndexByte(b, '\n')
	if line < 2 || b[line-1] != '\r' {
		return nil, 0, false
	}
	n, ok := resp.ParseInt(b[1 : line-1])
	if !ok {
		return nil, 0, false
	}
	off := line + 1
	switch b[0] {
	case ':':
		return n, off, true
	case '$':
		if n < 0 || off+int(n)+2 > len(b) {
			return nil, 0, false
		}
		return string(b[off : off+int(n)]), off + int(n) + 2, true
	case '*':
		out := make([]any, 0, max(n, 0))
		for range n {
			v, used, ok := jsonArray(b[off:])
			if !ok {
				return nil, 0, false
			}
			out = append(out, v)
			off += used
		}
		return out, off, n >= 0
	}
	return nil, 0, false
}

// EvalFor returns an EVAL that makes Redis send reply (a reply the proxy
// made), so that it can be queued in a transaction or ordered in a tunnel
// like any reply from the server. An array of bulk strings, integers and
// such arrays is made from JSON (Redis's Lua has cjson); other arrays
// cannot be made this way.
func EvalFor(reply []byte) ([]byte, bool) {
	if len(reply) < 3 {
		return nil, false
	}
	if reply[0] == '*' {
		v, n, ok := jsonArray(reply)
		if !ok || n != len(reply) {
			return nil, false
		}
		js, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		return resp.AppendCommand(nil, "EVAL", "return cjson.decode(ARGV[1])", "0", string(js)), true
	}
	body := string(reply[1 : len(reply)-2])
	switch reply[0] {
	case '+':
		return resp.AppendCommand(nil, "EVAL", "return redis.status_reply(ARGV[1])", "0", body), true
	case '-':
		return resp.AppendCommand(nil, "EVAL", "return redis.error_reply(ARGV[1])", "0", body), true
	case ':':
		return resp.AppendCommand(nil, "EVAL", "return tonumber(ARGV[1])", "0", body), true
	case '$':
		if body == "-1" {
			return resp.AppendCommand(nil, "EVAL", "return false", "0"), true
		}
		if _, v, ok := bytes.Cut([]byte(body), []byte("\r\n")); ok {
			return resp.AppendCommand(nil, "EVAL", "return ARGV[1]", "0", string(v)), true
		}
	}
	return nil, false
}
