package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// CLIENT LIST, CLIENT INFO and CLIENT KILL (command.Ask), answered from the
// proxy's client table (clients.go) in Redis's format, with the proxy's
// ids. For a client with a connection of its own (a transaction, a
// subscription, a blocked command), what only the server knows (flags,
// sub, psub, multi, qbuf, omem, cmd, user, resp, ...) comes from that
// connection's line in the server's CLIENT LIST; for a client on shared
// connections the proxy gives what Redis shows for an idle client.

// askTimeout bounds the server's answer to the CLIENT LIST the proxy
// sends for clients with a connection of their own.
const askTimeout = 2 * time.Second

// ask answers the Ask command args of session s, appending the reply to
// dst; closeSelf: the client is to be closed after the reply (it killed
// itself).
func (p *Proxy) ask(s *session, args [][]byte, dst []byte) (out []byte, closeSelf bool) {
	sub := strings.ToLower(string(args[1]))
	now := time.Now()
	switch sub {
	case "info":
		if len(args) != 2 {
			return resp.AppendError(dst, "ERR wrong number of arguments for 'client|info' command"), false
		}
		lines := p.clientLines(s, []*clientEntry{s.entry}, now, sub)
		return resp.AppendBulkString(dst, lines[0].text+"\n"), false
	case "list":
		sel, msg := listFilter(args)
		if msg != "" {
			return resp.AppendError(dst, msg), false
		}
		var b strings.Builder
		for _, l := range p.clientLines(s, p.table.all(), now, sub) {
			if sel.match(l, s) {
				b.WriteString(l.text)
				b.WriteByte('\n')
			}
		}
		return resp.AppendBulkString(dst, b.String()), false
	case "kill":
		return p.kill(s, args, now, dst)
	}
	return resp.AppendError(dst, "ERR unknown subcommand '"+string(args[1])+"'"), false
}

// line is one client's CLIENT LIST line and the fields filters look at.
type line struct {
	e     *clientEntry
	text  string
	flags string
	user  string
	age   int64
}

// clientLines renders es (the caller's own command is sub).
func (p *Proxy) clientLines(self *session, es []*clientEntry, now time.Time, sub string) []line {
	pubs := make([]published, len(es))
	fds := make([]int, len(es))
	byServer := map[string][]int64{}
	for i, e := range es {
		pubs[i], fds[i] = e.snapshot()
		if pubs[i].serverID != 0 {
			byServer[pubs[i].server] = append(byServer[pubs[i].server], pubs[i].serverID)
		}
	}
	serverLines := map[string]map[int64]string{}
	for addr, ids := range byServer {
		serverLines[addr] = p.serverClients(addr, ids)
	}
	reverse := p.proxyIDs()
	out := make([]line, len(es))
	for i, e := range es {
		f := map[string]string{}
		order := idleFields
		if sl, ok := serverLines[pubs[i].server][pubs[i].serverID]; ok {
			order = nil
			for _, kv := range strings.Fields(sl) {
				k, v, _ := strings.Cut(kv, "=")
				order = append(order, k)
				f[k] = v
			}
			if r, err := strconv.ParseInt(f["redir"], 10, 64); err == nil && r > 0 {
				f["redir"] = strconv.FormatInt(reverse[r], 10)
			}
			if pubs[i].conn != command.Tunnel {
				f["name"] = pubs[i].name // a pinned connection is not named: the proxy keeps the name
			}
		} else {
			for k, v := range idleValues {
				f[k] = v
			}
			f["name"], f["db"] = pubs[i].name, strconv.Itoa(pubs[i].db)
			f["cmd"], f["user"] = "NULL", "default"
			if c := e.cmd.Load(); c != nil {
				f["cmd"] = c.Name
			}
			if pubs[i].operator && p.cfg().OperatorUser != "" {
				f["user"] = p.cfg().OperatorUser
			}
			f["idle"] = strconv.FormatInt(int64(now.Sub(time.Unix(0, e.last.Load())).Seconds()), 10)
		}
		age := int64(now.Sub(e.created).Seconds())
		f["id"], f["addr"], f["laddr"] = itoa(e.id), e.addr, e.laddr
		f["fd"], f["age"] = strconv.Itoa(fds[i]), itoa(age)
		if e == self.entry {
			f["cmd"], f["idle"] = "client|"+sub, "0"
		}
		var b strings.Builder
		for j, k := range order {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(f[k])
		}
		out[i] = line{e: e, text: b.String(), flags: f["flags"], user: f["user"], age: age}
	}
	return out
}

// idleFields and idleValues are Redis 7.0's CLIENT LIST fields, and the
// values it shows for an idle client, for a client on shared connections.
var idleFields = strings.Fields("id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp")

var idleValues = map[string]string{
	"flags": "N", "sub": "0", "psub": "0", "ssub": "0", "multi": "-1", "qbuf": "0", "qbuf-free": "0",
	"argv-mem": "0", "multi-mem": "0", "rbs": "1024", "rbp": "0", "obl": "0", "oll": "0", "omem": "0",
	"tot-mem": "1024", "events": "r", "redir": "-1", "resp": "2",
}

// serverClients returns the server's CLIENT LIST lines of its connections
// ids, by id (none if the server does not answer).
func (p *Proxy) serverClients(addr string, ids []int64) map[int64]string {
	args := []string{"CLIENT", "LIST", "ID"}
	for _, id := range ids {
		args = append(args, itoa(id))
	}
	reply, err := p.serverAsk(addr, resp.AppendCommand(nil, args...))
	out := map[int64]string{}
	if err != nil || len(reply) == 0 || reply[0] != '$' {
		if err != nil {
			p.log.Debug("CLIENT LIST of the server", "server", addr, "err", err)
		}
		return out
	}
	_, body, _ := bytes.Cut(reply, []byte("\r\n"))
	for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		id, _, _ := strings.Cut(strings.TrimPrefix(l, "id="), " ")
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			out[n] = strings.TrimSpace(l)
		}
	}
	return out
}

// serverAsk sends one command of the proxy's own to addr on a shared
// connection and returns the reply.
func (p *Proxy) serverAsk(addr string, cmd []byte) ([]byte, error) {
	p.mu.Lock()
	pl := p.pools[addr]
	p.mu.Unlock()
	if pl == nil {
		return nil, errors.New("no connection to " + addr)
	}
	r := newRequest()
	r.reset(16 << 20)
	r.cmds = append(r.cmds, cmd)
	if !pl.send(0, r) {
		return nil, errors.New("no connection to " + addr)
	}
	select {
	case <-r.done:
		r.settle()
	case <-time.After(askTimeout):
		return nil, errors.New("no answer from " + addr)
	}
	if r.failed != nil {
		return nil, r.failed
	}
	return r.out, nil
}

// proxyIDs maps the server's ids of tunnel connections to the proxy's ids
// of their clients (for CLIENT LIST's redir).
func (p *Proxy) proxyIDs() map[int64]int64 {
	m := map[int64]int64{}
	p.tunnels.Range(func(k, v any) bool {
		m[v.(int64)] = k.(int64)
		return true
	})
	return m
}

// selector is CLIENT LIST's and CLIENT KILL's filters.
type selector struct {
	ids              []int64
	typ, addr, laddr string
	user             string
	hasUser, skipMe  bool
	maxAge           int64
}

func (sel *selector) match(l line, self *session) bool {
	switch {
	case sel.ids != nil && !slices.Contains(sel.ids, l.e.id),
		sel.typ != "" && clientType(l.flags) != sel.typ,
		sel.addr != "" && l.e.addr != sel.addr,
		sel.laddr != "" && l.e.laddr != sel.laddr,
		sel.hasUser && l.user != sel.user,
		sel.maxAge > 0 && l.age <= sel.maxAge,
		sel.skipMe && l.e == self.entry:
		return false
	}
	return true
}

// clientType is Redis's type of a client with these flags; the proxy's
// clients are never masters or replicas.
func clientType(flags string) string {
	if strings.ContainsRune(flags, 'P') {
		return "pubsub"
	}
	return "normal"
}

// typeName is Redis's getClientTypeByName: the canonical name, or "".
func typeName(s string) string {
	switch strings.ToLower(s) {
	case "normal":
		return "normal"
	case "slave", "replica":
		return "replica"
	case "pubsub":
		return "pubsub"
	case "master":
		return "master"
	}
	return ""
}

// listFilter parses CLIENT LIST's arguments as Redis 7.0 does.
func listFilter(args [][]byte) (selector, string) {
	var sel selector
	switch {
	case len(args) == 2:
	case len(args) > 3 && strings.EqualFold(string(args[2]), "id"):
		sel.ids = []int64{}
		for _, a := range args[3:] {
			id, err := strconv.ParseInt(string(a), 10, 64)
			if err != nil || id <= 0 {
				return sel, "ERR Invalid client ID"
			}
			sel.ids = append(sel.ids, id)
		}
	case len(args) == 4 && strings.EqualFold(string(args[2]), "type"):
		if sel.typ = typeName(string(args[3])); sel.typ == "" {
			return sel, fmt.Sprintf("ERR Unknown client type '%s'", args[3])
		}
	default:
		return sel, "ERR syntax error"
	}
	return sel, ""
}

// kill is CLIENT KILL: the old form (an address; +OK or an error) and the
// new one (filters; the number killed, the caller skipped unless SKIPME
// no).
func (p *Proxy) kill(s *session, args [][]byte, now time.Time, dst []byte) ([]byte, bool) {
	sel := selector{skipMe: true}
	old := len(args) == 3
	switch {
	case old:
		sel.addr, sel.skipMe = string(args[2]), false
	case len(args) > 3:
		for i := 2; i < len(args); i += 2 {
			if i+1 >= len(args) {
				return resp.AppendError(dst, "ERR syntax error"), false
			}
			v := string(args[i+1])
			switch strings.ToLower(string(args[i])) {
			case "id":
				id, err := strconv.ParseInt(v, 10, 64)
				if err != nil || id <= 0 {
					return resp.AppendError(dst, "ERR client-id should be greater than 0"), false
				}
				sel.ids = []int64{id}
			case "type":
				if sel.typ = typeName(v); sel.typ == "" {
					return resp.AppendError(dst, fmt.Sprintf("ERR Unknown client type '%s'", v)), false
				}
			case "addr":
				sel.addr = v
			case "laddr":
				sel.laddr = v
			case "user":
				sel.user, sel.hasUser = v, true
			case "maxage":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n <= 0 {
					return resp.AppendError(dst, "ERR maxage should be greater than 0"), false
				}
				sel.maxAge = n
			case "skipme":
				switch strings.ToLower(v) {
				case "yes":
					sel.skipMe = true
				case "no":
					sel.skipMe = false
				default:
					return resp.AppendError(dst, "ERR syntax error"), false
				}
			default:
				return resp.AppendError(dst, "ERR syntax error"), false
			}
		}
	default:
		return resp.AppendError(dst, "ERR syntax error"), false
	}
	killed, self := 0, false
	for _, l := range p.clientLines(s, p.table.all(), now, "kill") {
		if !sel.match(l, s) {
			continue
		}
		killed++
		if l.e == s.entry {
			self = true
			continue
		}
		l.e.kill()
	}
	switch {
	case !old:
		return resp.AppendInt(dst, int64(killed)), self
	case killed == 0:
		return resp.AppendError(dst, "ERR No such client"), false
	}
	return append(dst, "+OK\r\n"...), self
}
