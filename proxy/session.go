package proxy

import (
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// session is one client connection, whichever path serves it: an event
// loop (lclient, loop_client_linux.go) or a goroutine of its own (gclient,
// gclient.go). One of them owns it at a time — the loop's thread or the
// client's goroutine — and only the owner calls its methods; a hand-off
// from one to the other passes it whole, with the bytes not yet run.
//
// The session holds what both paths classify commands with: the client's
// state as the classifier sees it (command.State) and the lookup cache.
// Classifying is decide, which changes nothing; carrying a decision out
// is commit, which makes the state the one decide returned and performs
// the decision's side effects. A decision not carried out (the command
// waits behind a barrier, or moves to a connection of its own and is
// classified again there) is simply dropped.
type session struct {
	p       *Proxy
	st      command.State
	lookups command.Cache
	// next is the state after the command decide looked at last, when it
	// changes it (changed); commit makes it the session's.
	next    command.State
	changed bool
	ended   bool

	// The client table's view (clients.go): the entry, the last command
	// decided, what was last published, and the connection of its own.
	entry    *clientEntry
	lastCmd  *command.Info
	pub      published
	server   string
	serverID int64
	// lastWrite: when the session last sent a write (ReadYourWrites).
	lastWrite time.Time
}

// readYourWrites sends a read to the master, not a replica, while a
// replica may not have the session's last write yet: for MaxReplicaLag
// after it (Config.ReadYourWrites).
func (s *session) readYourWrites(k command.Kind, info *command.Info) command.Kind {
	switch {
	case k == command.Read && time.Since(s.lastWrite) < s.p.cfg().MaxReplicaLag:
		return command.Forward
	case isAckWrite(info):
		s.lastWrite = time.Now()
	}
	return k
}

// decide classifies cmd by table t for the session as it is now,
// appending a reply the proxy makes itself to dst, and keeps the state
// after it for commit. d.Raw is what to forward: the client's bytes unless
// the decision rewrites them. Most commands take command.ByFlags's way,
// which leaves the state as it is and copies none of it.
func (s *session) decide(t *command.Table, cmd resp.Command, dst []byte) (command.Decision, []byte) {
	info := s.lookups.Lookup(t, cmd.Args)
	s.lastCmd = info
	if k, ok := command.ByFlags(s.p.env.Load(), &s.st, info, len(cmd.Args)); ok {
		s.changed = false
		if s.p.readYourWrites.Load() {
			k = s.readYourWrites(k, info)
		}
		return command.Decision{Kind: k, Info: info, Raw: cmd.Raw}, dst
	}
	var d command.Decision
	s.next, d, dst = command.Classify(s.p.env.Load(), s.st, info, cmd.Args, dst)
	s.changed = true
	if s.p.readYourWrites.Load() {
		d.Kind = s.readYourWrites(d.Kind, info)
	}
	if d.Raw == nil {
		d.Raw = cmd.Raw
	}
	return d, dst
}

// commit records that the decision d on args, the last decide returned,
// was carried out: the session takes the state decide kept, and the
// decision's side effects happen.
func (s *session) commit(d *command.Decision, args [][]byte) {
	if s.changed {
		s.st = s.next
	}
	switch d.Script {
	case command.ScriptNote:
		s.p.scripts.note(args[2])
	case command.ScriptForget:
		s.p.scripts.forget()
	}
}

// authed reports whether the client may send requests as large as any
// other client's (Redis bounds them tighter before AUTH).
func (s *session) authed() bool { return s.st.Authed }

// end counts the client gone; the owner calls it once, after the socket
// is closed and anything the session held is released.
func (s *session) end() {
	if s.ended {
		return
	}
	s.ended = true
	s.p.table.remove(s.st.ID)
	s.p.clients.Add(-1)
	s.p.m.clients.Dec()
}
