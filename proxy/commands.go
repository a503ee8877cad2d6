package proxy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
)

// cmdFlags are the properties of a command the proxy routes by. They come
// from Redis's own COMMAND reply, so renamed, new and module commands are
// classified by the server that runs them.
type cmdFlags uint16

const (
	flagReadonly cmdFlags = 1 << iota
	flagWrite
	flagBlocking
	flagPubsub
	flagAdmin
	flagNoscript
	flagFast
)

// cmdInfo is one command (or subcommand) in the table.
type cmdInfo struct {
	name  string
	arity int // Redis's: n exactly n arguments (with the name), -n at least n
	flags cmdFlags
	subs  map[string]*cmdInfo // container commands (CLIENT, CONFIG, ...), by subcommand
	ok    prometheus.Counter
	fail  prometheus.Counter
}

func (c *cmdInfo) has(f cmdFlags) bool { return c.flags&f != 0 }

// fastRead reports whether c is a fast read (Redis's readonly and fast
// flags: GET, MGET, HGET, EXISTS, ...), which may run a second time when
// the connection it was written to dies before answering.
func (c *cmdInfo) fastRead() bool {
	return c.flags&(flagReadonly|flagFast) == flagReadonly|flagFast
}

// count records one reply to the command in the metrics.
func (c *cmdInfo) count(isErr bool) {
	if isErr {
		c.fail.Inc()
	} else {
		c.ok.Inc()
	}
}

// arityOK reports whether n arguments (with the name) fit the command's
// arity; unknown commands (arity 0) always fit.
func (c *cmdInfo) arityOK(n int) bool {
	switch {
	case c.arity > 0:
		return n == c.arity
	case c.arity < 0:
		return n >= -c.arity
	}
	return true
}

// cmdTable maps lower-case command names to their info.
type cmdTable struct {
	cmds    map[string]*cmdInfo
	unknown *cmdInfo // renamed or unknown commands: routed to the master
	source  string   // server the table was read from
}

// lookup finds the command (and subcommand, for containers) of args without
// allocating. Unknown names get the table's unknown entry.
func (t *cmdTable) lookup(args [][]byte) *cmdInfo {
	return t.sub(t.command(args[0]), args)
}

// command finds the (top-level) command named name.
func (t *cmdTable) command(name []byte) *cmdInfo {
	var buf [32]byte
	lname, ok := lower(buf[:0], name)
	if !ok {
		return t.unknown
	}
	if c := t.cmds[string(lname)]; c != nil {
		return c
	}
	return t.unknown
}

// sub finds the subcommand of args if c is a container command; else c.
func (t *cmdTable) sub(c *cmdInfo, args [][]byte) *cmdInfo {
	if c.subs != nil && len(args) > 1 {
		var sbuf [32]byte
		if sub, ok := lower(sbuf[:0], args[1]); ok {
			if s := c.subs[string(sub)]; s != nil {
				return s
			}
		}
	}
	return c
}

// lookupCache remembers the command a session looked up last, as the
// client spelled it: clients mostly repeat the same few commands, and
// comparing a few bytes is cheaper than lowering the name and hashing it
// into the table. (Subcommands are still looked up each time.)
type lookupCache struct {
	t    *cmdTable // the table it came from (a refresh makes a new one)
	n    int
	name [16]byte
	cmd  *cmdInfo
}

func (c *lookupCache) lookup(t *cmdTable, args [][]byte) *cmdInfo {
	name := args[0]
	if c.t != t || len(name) != c.n || string(name) != string(c.name[:c.n]) {
		cmd := t.command(name)
		if len(name) > len(c.name) {
			return t.sub(cmd, args)
		}
		c.t, c.n, c.cmd = t, copy(c.name[:], name), cmd
	}
	return t.sub(c.cmd, args)
}

// lower appends the ASCII lower case of b to dst, which must have room for
// it; ok is false when b does not fit.
func lower(dst, b []byte) ([]byte, bool) {
	if len(b) > cap(dst) {
		return nil, false
	}
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// loadTable reads COMMAND from addr.
func loadTable(ctx context.Context, addr string, d *dialer, m *metrics) (*cmdTable, error) {
	c, err := d.control(ctx, addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("load command table from %s: %w", addr, err)
	}
	defer c.Close()
	reply, err := redis.Values(c.Do("COMMAND"))
	if err != nil {
		return nil, fmt.Errorf("load command table from %s: %w", addr, err)
	}
	return buildTable(addr, reply, m)
}

// buildTable turns a COMMAND reply into a table. Each entry is
// [name, arity, flags, first, last, step, acl-categories, tips, key-specs,
// subcommands]; only name, flags, categories and subcommands are used.
func buildTable(source string, reply []any, m *metrics) (*cmdTable, error) {
	t := &cmdTable{cmds: make(map[string]*cmdInfo, len(reply)), source: source}
	t.unknown = &cmdInfo{
		name: "unknown",
		ok:   m.commands.WithLabelValues("unknown", "ok"),
		fail: m.commands.WithLabelValues("unknown", "error"),
	}
	for _, e := range reply {
		info, err := parseEntry(e, "", m)
		if err != nil {
			return nil, fmt.Errorf("command table from %s: %w", source, err)
		}
		t.cmds[info.name] = info
	}
	if len(t.cmds) == 0 {
		return nil, fmt.Errorf("command table from %s: empty COMMAND reply", source)
	}
	return t, nil
}

func parseEntry(e any, parent string, m *metrics) (*cmdInfo, error) {
	fields, ok := e.([]any)
	if !ok || len(fields) < 3 {
		return nil, fmt.Errorf("unexpected COMMAND entry %v", e)
	}
	name, err := redis.String(fields[0], nil)
	if err != nil {
		return nil, fmt.Errorf("COMMAND entry name: %w", err)
	}
	// Subcommands keep their full name ("client|setname") and are counted
	// under their container's name in metrics.
	name = strings.ToLower(name)
	label := name
	if parent != "" {
		label = parent
	}
	info := &cmdInfo{
		name: name,
		ok:   m.commands.WithLabelValues(label, "ok"),
		fail: m.commands.WithLabelValues(label, "error"),
	}
	if a, err := redis.Int(fields[1], nil); err == nil {
		info.arity = a
	}
	flags, _ := redis.Strings(fields[2], nil)
	for _, f := range flags {
		info.flags |= flagByName(f)
	}
	if len(fields) > 6 {
		cats, _ := redis.Strings(fields[6], nil)
		for _, c := range cats {
			if c == "@blocking" {
				info.flags |= flagBlocking
			}
		}
	}
	if len(fields) > 9 {
		subs, _ := fields[9].([]any)
		if len(subs) > 0 {
			info.subs = make(map[string]*cmdInfo, len(subs))
			for _, s := range subs {
				si, err := parseEntry(s, label, m)
				if err != nil {
					return nil, err
				}
				info.subs[strings.TrimPrefix(si.name, label+"|")] = si
			}
		}
	}
	return info, nil
}

func flagByName(f string) cmdFlags {
	switch f {
	case "readonly":
		return flagReadonly
	case "write":
		return flagWrite
	case "blocking":
		return flagBlocking
	case "pubsub":
		return flagPubsub
	case "admin":
		return flagAdmin
	case "noscript":
		return flagNoscript
	case "fast":
		return flagFast
	}
	return 0
}
