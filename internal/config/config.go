// Package config holds what the Config types of proxy, replication and vip
// share, so the three are written one way:
//
//   - every optional field documents its zero value ("If zero, 5s.");
//   - one unexported method, withDefaults, returns the Config with every
//     zero field replaced by its default (the only place defaults live);
//   - Validate checks the Config after defaults and returns a *FieldError
//     naming the first field that is wrong and what it accepts;
//   - New calls Validate and then works on withDefaults' result.
//
// cmd/redis-proxy turns a FieldError into a one-line error naming the
// environment variable the field came from, through one table from (Pkg,
// Field) to the variable (fieldVars in cmd/redis-proxy/config.go; a new
// field read from a variable gets a row there). For
//
//	config.Errorf("replication", "DownAfter", "must be longer than the check interval (%v): ...", c.CheckInterval)
//
// an operator reads
//
//	REDIS_PROXY_DOWN_AFTER="1s": must be longer than the check interval (250ms): ...
//
// so Msg does not repeat the field's name, and says what the field accepts.
//
// A zero field means its default, so Validate cannot refuse a zero; a
// caller to whom zero means something else (cmd, where 0 is what the
// operator wrote) checks that itself before calling Validate.
package config

import "fmt"

// FieldError is a Config field with a value its package cannot use.
type FieldError struct {
	Pkg   string // the package whose Config it is: "proxy", "replication", "vip"
	Field string // the Config field, as spelled in Go: "PoolSize"
	Msg   string // what is wrong and what the field accepts; one line, without the field's name
}

func (e *FieldError) Error() string { return e.Pkg + " config: " + e.Field + ": " + e.Msg }

// Errorf returns a *FieldError for pkg's field with a formatted message.
func Errorf(pkg, field, format string, args ...any) *FieldError {
	return &FieldError{Pkg: pkg, Field: field, Msg: fmt.Sprintf(format, args...)}
}
