package proxy

import (
	"bytes"
	"cmp"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// The proxy's client table: the clients that CLIENT LIST, CLIENT INFO,
// CLIENT KILL and INFO's clients section report, with the proxy's ids —
// never the proxy's own connections to the servers.
//
// Each session has an entry from accept to close. Its owner (the loop or
// goroutine serving the client) publishes what it knows at the end of each
// batch (session.publish: the time, the last command, and the state when
// it changed); other goroutines read entries under their lock.

type clientTable struct {
	mu sync.Mutex
	m  map[int64]*clientEntry
}

func (t *clientTable) add(e *clientEntry) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[int64]*clientEntry)
	}
	t.m[e.id] = e
	t.mu.Unlock()
}

func (t *clientTable) remove(id int64) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}

// all returns the entries, by id.
func (t *clientTable) all() []*clientEntry {
	t.mu.Lock()
	out := make([]*clientEntry, 0, len(t.m))
	for _, e := range t.m {
		out = append(out, e)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b *clientEntry) int { return cmp.Compare(a.id, b.id) })
	return out
}

// clientEntry is one client as the table shows it.
type clientEntry struct {
	id           int64
	addr, laddr  string
	created      time.Time
	last         atomic.Int64                 // unix nanoseconds of the last batch
	cmd          atomic.Pointer[command.Info] // its last command
	blockedSince atomic.Int64                 // a blocking command sent on its tunnel and not answered (unix ns; 0: none)

	mu  sync.Mutex
	pub published
	// The socket, for CLIENT KILL: a loop client's descriptor (fd >= 0),
	// or a goroutine client's connection (rc); shown as fd.
	fd      int
	rc      syscall.RawConn
	shownFD int
}

// published is what the owner tells the table of a session's state.
type published struct {
	name     string
	db       int
	conn     command.Conn
	multi    bool
	operator bool
	tracking bool
	redirect int64
	// server and serverID: the session's dedicated connection, whose line
	// in the server's CLIENT LIST gives what only the server knows.
	server   string
	serverID int64
}

func newClientEntry(id int64, nc net.Conn) *clientEntry {
	e := &clientEntry{id: id, created: time.Now(), fd: -1, shownFD: -1}
	if a := nc.RemoteAddr(); a != nil {
		e.addr = a.String()
	}
	if a := nc.LocalAddr(); a != nil {
		e.laddr = a.String()
	}
	e.last.Store(e.created.UnixNano())
	return e
}

// setFD records a loop client's socket (-1: the loop let go of it).
func (e *clientEntry) setFD(fd int) {
	e.mu.Lock()
	e.fd, e.rc = fd, nil
	if fd >= 0 {
		e.shownFD = fd
	}
	e.mu.Unlock()
}

// setConn records a goroutine client's connection (nil: closed).
func (e *clientEntry) setConn(nc net.Conn) {
	var rc syscall.RawConn
	if sc, ok := rawConn(nc).(syscall.Conn); ok && nc != nil {
		rc, _ = sc.SyscallConn()
	}
	e.mu.Lock()
	e.fd, e.rc = -1, rc
	if rc != nil {
		rc.Control(func(fd uintptr) { e.shownFD = int(fd) })
	}
	e.mu.Unlock()
}

// kill shuts the client's socket down, both ways: its owner sees the end
// of the connection and closes it, as for a client that hung up. (The
// descriptor stays the owner's to close; under the lock it is still
// open.)
func (e *clientEntry) kill() {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.fd >= 0:
		syscall.Shutdown(e.fd, syscall.SHUT_RDWR)
	case e.rc != nil:
		e.rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
	}
}

func (e *clientEntry) snapshot() (published, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pub, e.shownFD
}

// publish tells the table about the batch the session just ran: when, its
// last command, and the state, if it changed. Only the owner calls it.
func (s *session) publish(now time.Time) {
	e := s.entry
	if e == nil {
		return
	}
	e.last.Store(now.UnixNano())
	if s.lastCmd != nil {
		e.cmd.Store(s.lastCmd)
	}
	p := published{
		name: s.st.Name, db: s.st.Tx.DB, conn: s.st.Conn, multi: s.st.Tx.InMulti, operator: s.st.Operator,
		tracking: s.st.Tracking.On, redirect: s.st.Tracking.Redirect, server: s.server, serverID: s.serverID,
	}
	if p == s.pub {
		return
	}
	s.pub = p
	e.mu.Lock()
	e.pub = p
	e.mu.Unlock()
}

// dedicated records the session's connection of its own (nil: none), for
// publish.
func (s *session) dedicated(d *dedicated) {
	if d == nil {
		s.server, s.serverID = "", 0
		return
	}
	s.server, s.serverID = d.p.addr, d.id
}

// itoa is strconv.FormatInt for the client table's lines.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// filter rewrites a server's reply as the decision's Filter says.
func (p *Proxy) filter(f command.Filter, reply []byte) []byte {
	switch f {
	case command.FilterSecrets:
		return command.RedactSecrets(reply)
	case command.FilterClients:
		return p.infoClients(reply)
	}
	return reply
}

// infoClients replaces, in an INFO reply (a bulk string), the clients
// section's counts with the proxy's: its clients, those blocked and those
// tracking; a field of its own says whose they are.
func (p *Proxy) infoClients(reply []byte) []byte {
	head := bytes.IndexByte(reply, '\n')
	if len(reply) == 0 || reply[0] != '$' || head < 0 {
		return reply
	}
	body := reply[head+1 : len(reply)-2]
	const title = "# Clients\r\n"
	start := bytes.Index(body, []byte(title))
	if start < 0 {
		return reply
	}
	start += len(title)
	end := bytes.Index(body[start:], []byte("\r\n\r\n"))
	if end < 0 {
		end = len(body)
	} else {
		end += start + 2
	}
	blocked, tracking := 0, 0
	for _, e := range p.table.all() {
		if e.blockedSince.Load() != 0 {
			blocked++
		}
		if pub, _ := e.snapshot(); pub.tracking {
			tracking++
		}
	}
	ours := map[string]string{
		"connected_clients": itoa(p.clients.Load()), "maxclients": strconv.Itoa(p.cfg().MaxClients),
		"blocked_clients": strconv.Itoa(blocked), "tracking_clients": strconv.Itoa(tracking),
	}
	var sec []byte
	for _, l := range bytes.Split(body[start:end], []byte("\r\n")) {
		if len(l) == 0 {
			continue
		}
		sec = append(sec, l...) // (never l itself appended to: it is the server's reply)
		if k, _, _ := bytes.Cut(l, []byte(":")); ours[string(k)] != "" {
			sec = append(append(sec[:len(sec)-len(l)], k...), ':')
			sec = append(sec, ours[string(k)]...)
		}
		sec = append(sec, "\r\n"...)
	}
	sec = append(sec, "clients_of:redis-proxy\r\n"...)
	out := make([]byte, 0, len(body)+64)
	out = append(append(append(out, body[:start]...), sec...), body[end:]...)
	return resp.AppendBulk(nil, out)
}
