package command

import (
	"fmt"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// Flags are the properties of a command the proxy routes by. They come
// from Redis's own COMMAND reply, so renamed, new and module commands are
// classified by the server that runs them.
type Flags uint16

const (
	Readonly Flags = 1 << iota
	Write
	Blocking
	Pubsub
	Admin
	Noscript
	Fast
)

// Counter is what a command's metrics need of a counter
// (prometheus.Counter has it).
type Counter interface{ Inc() }

// Info is one command (or subcommand) of the table. It is immutable once
// the table is built.
type Info struct {
	Name  string // lower case; a subcommand is "container|sub"
	Arity int    // Redis's: n exactly n arguments (the name included), -n at least n
	Flags Flags
	// Special is how the proxy treats it besides routing by Flags (see
	// facts): the one table that drives both Classify and the rules for
	// transaction blocks.
	Special Special
	Subs    map[string]*Info // container commands (CLIENT, CONFIG, ...), by subcommand
	OK      Counter          // replies, and error replies, counted
	Fail    Counter
	// Long: a script or function, which may hold the server for long
	// (see longNames).
	Long    bool
	inBlock bool
}

// Has reports whether any of f is among the command's flags.
func (c *Info) Has(f Flags) bool { return c.Flags&f != 0 }

// FastRead reports whether c is a fast read (Redis's readonly and fast
// flags: GET, MGET, HGET, EXISTS, ...). Running one twice changes nothing,
// so it may run again when the connection it was written to dies before
// answering. Slow reads (KEYS, LRANGE, EVAL_RO, ...) may not: one may be
// what brought the server down.
func (c *Info) FastRead() bool {
	return c.Flags&(Readonly|Fast) == Readonly|Fast
}

// Count records one reply to the command.
func (c *Info) Count(isErr bool) {
	if isErr {
		c.Fail.Inc()
	} else {
		c.OK.Inc()
	}
}

// ArityOK reports whether n arguments (with the name) fit the command's
// arity; unknown commands (arity 0) always fit.
func (c *Info) ArityOK(n int) bool {
	switch {
	case c.Arity > 0:
		return n == c.Arity
	case c.Arity < 0:
		return n >= -c.Arity
	}
	return true
}

// Table maps lower-case command names to their Info. It is immutable once
// built and safe for concurrent use.
type Table struct {
	cmds map[string]*Info
	// Unknown is the entry of every name the server does not know
	// (renamed or unknown commands): it goes to the master, which answers.
	Unknown *Info
	Source  string // the server the table was read from
}

// Len is the number of top-level commands.
func (t *Table) Len() int { return len(t.cmds) }

// Lookup finds the command (and subcommand, for containers) of args
// without allocating. Unknown names get t.Unknown.
func (t *Table) Lookup(args [][]byte) *Info {
	return t.sub(t.command(args[0]), args)
}

// command finds the top-level command named name.
func (t *Table) command(name []byte) *Info {
	var buf [32]byte
	lname, ok := lower(buf[:0], name)
	if !ok {
		return t.Unknown
	}
	if c := t.cmds[string(lname)]; c != nil {
		return c
	}
	return t.Unknown
}

// sub finds the subcommand of args if c is a container command; else c.
func (t *Table) sub(c *Info, args [][]byte) *Info {
	if c.Subs != nil && len(args) > 1 {
		var sbuf [32]byte
		if sub, ok := lower(sbuf[:0], args[1]); ok {
			if s := c.Subs[string(sub)]; s != nil {
				return s
			}
		}
	}
	return c
}

// Cache remembers the command a session looked up last, as the client
// spelled it: clients mostly repeat the same few commands, and comparing a
// few bytes is cheaper than lowering the name and hashing it into the
// table. (Subcommands are still looked up each time.) The zero Cache is
// empty; a Cache belongs to one session.
type Cache struct {
	t    *Table // the table it came from (a refresh makes a new one)
	n    int
	name [16]byte
	cmd  *Info
}

// Lookup is t.Lookup(args), through the cache.
func (c *Cache) Lookup(t *Table, args [][]byte) *Info {
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

// Counters returns the counters of replies and error replies for the
// commands counted under label (a subcommand is counted under its
// container's name).
type Counters func(label string) (ok, fail Counter)

// Build turns a COMMAND reply into a table. Each entry is [name, arity,
// flags, first, last, step, acl-categories, tips, key-specs, subcommands];
// name, arity, flags, categories and subcommands are used.
func Build(source string, reply []any, counters Counters) (*Table, error) {
	t := &Table{cmds: make(map[string]*Info, len(reply)), Source: source}
	t.Unknown = &Info{Name: "unknown", inBlock: true}
	t.Unknown.OK, t.Unknown.Fail = counters("unknown")
	for _, e := range reply {
		info, err := parseEntry(e, "", counters)
		if err != nil {
			return nil, fmt.Errorf("command table from %s: %w", source, err)
		}
		t.cmds[info.Name] = info
	}
	if len(t.cmds) == 0 {
		return nil, fmt.Errorf("command table from %s: empty COMMAND reply", source)
	}
	return t, nil
}

func parseEntry(e any, parent string, counters Counters) (*Info, error) {
	fields, ok := e.([]any)
	if !ok || len(fields) < 3 {
		return nil, fmt.Errorf("unexpected COMMAND entry %v", e)
	}
	name, err := redis.String(fields[0], nil)
	if err != nil {
		return nil, fmt.Errorf("COMMAND entry name: %w", err)
	}
	name = strings.ToLower(name)
	label := name
	if parent != "" {
		label = parent
	}
	info := &Info{Name: name, Special: specialOf(name, parent)}
	info.inBlock = blockOf(name, info.Special)
	info.Long = longNames[name]
	info.OK, info.Fail = counters(label)
	if a, err := redis.Int(fields[1], nil); err == nil {
		info.Arity = a
	}
	flags, _ := redis.Strings(fields[2], nil)
	for _, f := range flags {
		info.Flags |= flagByName[f]
	}
	if len(fields) > 6 {
		cats, _ := redis.Strings(fields[6], nil)
		for _, c := range cats {
			if c == "@blocking" {
				info.Flags |= Blocking
			}
		}
	}
	if len(fields) > 9 {
		if err := parseSubs(info, fields[9], label, counters); err != nil {
			return nil, err
		}
	}
	return info, nil
}

func parseSubs(info *Info, field any, label string, counters Counters) error {
	subs, _ := field.([]any)
	if len(subs) == 0 {
		return nil
	}
	info.Subs = make(map[string]*Info, len(subs))
	for _, s := range subs {
		si, err := parseEntry(s, label, counters)
		if err != nil {
			return err
		}
		info.Subs[strings.TrimPrefix(si.Name, label+"|")] = si
	}
	return nil
}

var flagByName = map[string]Flags{
	"readonly": Readonly,
	"write":    Write,
	"blocking": Blocking,
	"pubsub":   Pubsub,
	"admin":    Admin,
	"noscript": Noscript,
	"fast":     Fast,
}
