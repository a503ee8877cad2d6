package writetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Op is one command a test client sent and what became of it.
type Op struct {
	// Cmd is SET or GET, or "dial" for a connection that could not be
	// opened.
	Cmd string
	// Key is the key written or read; Value the value written, or the
	// value a GET expected.
	Key, Value string
	// Sent is when the command began: for the first command of a round
	// that had to dial, when the dial began. Done is when its reply (or
	// error) came.
	Sent, Done time.Time
	// Err is nil when the command was acknowledged with the expected
	// reply: OK for a SET, Value for a GET.
	Err error
}

// Latency is how long the command waited for its reply.
func (o Op) Latency() time.Duration { return o.Done.Sub(o.Sent) }

// staleRead starts the error of a GET that read another value than it
// expected.
const staleRead = "read back "

// Stale reports whether o is a GET that was answered with another value
// than the one it expected (for ReadBack, the one just acknowledged).
func (o Op) Stale() bool {
	return o.Cmd == "GET" && o.Err != nil && strings.HasPrefix(o.Err.Error(), staleRead)
}

// opJSON is Op on the wire, times in Unix nanoseconds.
type opJSON struct {
	Cmd   string `json:"op"`
	Key   string `json:"k,omitempty"`
	Value string `json:"v,omitempty"`
	Sent  int64  `json:"s"`
	Done  int64  `json:"e"`
	Err   string `json:"err,omitempty"`
}

// MarshalJSON encodes o compactly; the error becomes its message.
func (o Op) MarshalJSON() ([]byte, error) {
	j := opJSON{Cmd: o.Cmd, Key: o.Key, Value: o.Value, Sent: o.Sent.UnixNano(), Done: o.Done.UnixNano()}
	if o.Err != nil {
		j.Err = o.Err.Error()
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (o *Op) UnmarshalJSON(b []byte) error {
	var j opJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*o = Op{Cmd: j.Cmd, Key: j.Key, Value: j.Value, Sent: time.Unix(0, j.Sent), Done: time.Unix(0, j.Done)}
	if j.Err != "" {
		o.Err = errors.New(j.Err)
	}
	return nil
}

// Recorder collects the ops of one or more clients; safe for concurrent
// use.
type Recorder struct {
	Name string

	mu  sync.Mutex
	ops []Op
}

// Add records o.
func (r *Recorder) Add(o Op) {
	r.mu.Lock()
	r.ops = append(r.ops, o)
	r.mu.Unlock()
}

// Ops returns a copy of the ops recorded so far, in the order they were
// added.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// Count is the number of ops recorded so far that match.
func (r *Recorder) Count(match func(Op) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range r.ops {
		if match(o) {
			n++
		}
	}
	return n
}

// Acked returns the ops that were acknowledged.
func Acked(ops []Op) []Op { return filter(ops, func(o Op) bool { return o.Err == nil }) }

// Failed returns the ops that failed.
func Failed(ops []Op) []Op { return filter(ops, func(o Op) bool { return o.Err != nil }) }

// Writes returns the SETs.
func Writes(ops []Op) []Op { return filter(ops, func(o Op) bool { return o.Cmd == "SET" }) }

func filter(ops []Op, keep func(Op) bool) []Op {
	var out []Op
	for _, o := range ops {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}

// AckedWrites is what a server should hold after ops: the value of every
// acknowledged SET, by key.
func AckedWrites(ops []Op) map[string]string {
	m := map[string]string{}
	for _, o := range ops {
		if o.Cmd == "SET" && o.Err == nil {
			m[o.Key] = o.Value
		}
	}
	return m
}

// FirstAck is the op acknowledged first after the time given.
func FirstAck(ops []Op, after time.Time) (Op, bool) {
	var first Op
	found := false
	for _, o := range ops {
		if o.Err == nil && o.Done.After(after) && (!found || o.Done.Before(first.Done)) {
			first, found = o, true
		}
	}
	return first, found
}

// LastAck is when the last op acknowledged before t was, or t itself if
// none was.
func LastAck(ops []Op, t time.Time) time.Time {
	var last time.Time
	for _, o := range ops {
		if o.Err == nil && o.Done.Before(t) && o.Done.After(last) {
			last = o.Done
		}
	}
	if last.IsZero() {
		return t
	}
	return last
}

// Outage is the longest time in [from, to] during which no op was
// acknowledged: the largest gap between consecutive acknowledgements in
// [from, to] (in the order they arrived), counting from from before the
// first and to to after the last. back is when that gap ended (to, if no
// acknowledgement ended it).
//
// To count a disruption from the last acknowledgement before it rather
// than from the moment it began, pass LastAck(ops, began) as from.
func Outage(ops []Op, from, to time.Time) (gap time.Duration, back time.Time) {
	var dones []time.Time
	for _, o := range ops {
		if o.Err == nil && !o.Done.Before(from) && !o.Done.After(to) {
			dones = append(dones, o.Done)
		}
	}
	slices.SortFunc(dones, time.Time.Compare)
	prev := from
	for _, d := range dones {
		if d.Sub(prev) > gap {
			gap, back = d.Sub(prev), d
		}
		prev = d
	}
	if to.Sub(prev) > gap {
		gap, back = to.Sub(prev), to
	}
	return gap, back
}

// MaxLatency is the longest wait of an op outstanding at some point in
// [from, to].
func MaxLatency(ops []Op, from, to time.Time) time.Duration {
	var m time.Duration
	for _, o := range ops {
		if !o.Sent.After(to) && !o.Done.Before(from) && o.Latency() > m {
			m = o.Latency()
		}
	}
	return m
}

// Describe lists ops one a line, their times relative to ref (an event
// such as a crash), for a failure message.
func Describe(ops []Op, ref time.Time) string {
	var b strings.Builder
	for _, o := range ops {
		what := o.Key
		if o.Cmd == "dial" {
			what = "(dial)"
		}
		fmt.Fprintf(&b, "\n  %s sent %+v after the event, answered after %v: %v", what,
			o.Sent.Sub(ref).Round(time.Millisecond), o.Latency().Round(time.Millisecond), o.Err)
	}
	return b.String()
}
