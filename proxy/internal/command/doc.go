// Package command is what the proxy knows about Redis commands, and the
// one place that decides what to do with each: the command table, read
// from the master's own COMMAND reply (Build), the facts the proxy adds
// to it (facts.go: the commands it answers, refuses, remembers, or that
// need a connection of the client's own), and the classifier.
//
// Classify is a pure function: the command (its table entry and
// arguments) and the client's session state (State, a value) in; a
// Decision (where it goes, whether it needs a pinned connection or a
// tunnel, the proxy's own reply, a rewrite, a state change to follow on
// the reply) and the state after it out. It performs no I/O and changes
// nothing it is given; the data path carries the decision out and keeps
// the state. AfterReply does the same for the reply to a command on a
// pinned connection (a transaction's EXEC, a SELECT, an ACL user's AUTH).
//
// Typical use, per command:
//
//	info := cache.Lookup(table, cmd.Args)
//	next, d, local := command.Classify(&env, st, info, cmd.Args, local[:0])
//	switch d.Kind {
//	case command.Local:   // reply with local; st = next
//	case command.Forward: // send d.Raw (or the client's bytes); st = next
//	case command.Pin, command.Open: // get a connection of its own; classify again there
//	...
//	}
//
// Tables are immutable once built and safe for concurrent use; a Cache
// belongs to one session.
package command
