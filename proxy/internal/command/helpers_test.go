package command

import (
	"bytes"
	"flag"
	"fmt"
	"strings"
)

// Small helpers the package's tests share.

var diffSeed = flag.Uint64("diff.seed", 1, "seed of the property tests' random samples")

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func cloneArgs(args [][]byte) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = append([]byte(nil), a...)
	}
	return out
}

func sameArgs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func fmtArgs(args [][]byte) string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = fmt.Sprintf("%q", a)
	}
	return strings.Join(s, " ")
}

func shortRaw(b []byte) string {
	if b == nil {
		return "-"
	}
	return string(b)
}

// stateString is a state in the scenario files' words: only what differs
// from the zero value (and authed, always).
func stateString(st State) string {
	return strings.Join(stateFields(st), " ")
}

// pending is a command forwarded on the pinned connection whose reply is
// still to come.
type pending struct {
	op  Op
	arg int
}
