package writetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Client is a test's application: round after round, until the context
// given to Run ends, it writes unique keys through Addr (or reads one key)
// and reports every command as an Op.
//
// A round dials first if the client has no connection, then sends its
// commands. After a transport error (a timeout, a reset, a connection
// closed) the connection is dropped and the next round dials again; after
// an error reply it is kept.
type Client struct {
	Addr string
	// Password is sent with AUTH on each connection. If empty, none is.
	Password string
	// Prefix names the keys written: Prefix:1, Prefix:2, ..., each set to
	// its own name. Empty: the client writes nothing and reads Key.
	Prefix string
	// Batch is the number of SETs a round sends in one write (a
	// pipeline). If zero, 1.
	Batch int
	// ReadBack makes a round GET each key whose SET it had acknowledged,
	// and expect its value.
	ReadBack bool
	// Key and Want, with Prefix empty: each round GETs Key and expects
	// Want.
	Key, Want string
	// DialTimeout bounds a dial. If zero, 1s.
	DialTimeout time.Duration
	// Timeout bounds each write and each wait for a reply. If zero, 10s.
	Timeout time.Duration
	// Pace is the least time from the start of a round to the start of
	// the next: with 5ms, at most 200 rounds a second. If zero, a round
	// follows the one before at once.
	Pace time.Duration
	// Retry is the least time from the end of a round in which a command
	// (or the dial) failed to the start of the next.
	Retry time.Duration
	// DialOptions are added to every dial's (TLS, say).
	DialOptions []redis.DialOption
}

// Run runs rounds until ctx ends, calling emit with each op as it
// completes (on Run's goroutine). A command in flight when ctx ends is
// finished and reported.
func (c Client) Run(ctx context.Context, emit func(Op)) {
	dialTimeout := cmp.Or(c.DialTimeout, time.Second)
	timeout := cmp.Or(c.Timeout, 10*time.Second)
	batch := max(c.Batch, 1)
	var conn redis.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	n := 0
	for ctx.Err() == nil {
		start := time.Now()
		failed := false
		report := func(o Op) {
			failed = failed || o.Err != nil
			emit(o)
		}
		if conn == nil {
			var err error
			conn, err = redis.Dial("tcp", c.Addr, append([]redis.DialOption{redis.DialConnectTimeout(dialTimeout),
				redis.DialReadTimeout(timeout), redis.DialWriteTimeout(timeout), redis.DialPassword(c.Password)}, c.DialOptions...)...)
			if err != nil {
				conn = nil
				report(Op{Cmd: "dial", Sent: start, Done: time.Now(), Err: err})
				c.wait(ctx, start, failed)
				continue
			}
		}
		if c.Prefix == "" {
			report(get(conn, c.Key, c.Want, start))
		} else {
			keys := make([]string, batch)
			for i := range keys {
				n++
				keys[i] = c.Prefix + ":" + strconv.Itoa(n)
			}
			for _, o := range set(conn, keys, start) {
				report(o)
				if c.ReadBack && o.Err == nil && conn.Err() == nil {
					report(get(conn, o.Key, o.Value, time.Now()))
				}
			}
		}
		if conn.Err() != nil {
			conn.Close()
			conn = nil
		}
		c.wait(ctx, start, failed)
	}
}

// set writes keys (each set to its own name) in one pipeline.
func set(conn redis.Conn, keys []string, sent time.Time) []Op {
	for _, k := range keys {
		conn.Send("SET", k, k)
	}
	ferr := conn.Flush()
	ops := make([]Op, len(keys))
	for i, k := range keys {
		o := Op{Cmd: "SET", Key: k, Value: k, Sent: sent}
		if ferr != nil {
			o.Err = ferr
		} else {
			v, err := redis.String(conn.Receive())
			switch {
			case err != nil:
				o.Err = err
				if conn.Err() != nil {
					// The rest of the pipeline shares the fate.
					ferr = err
				}
			case v != "OK":
				o.Err = fmt.Errorf("SET replied %q", v)
			}
		}
		o.Done = time.Now()
		ops[i] = o
	}
	return ops
}

func get(conn redis.Conn, key, want string, sent time.Time) Op {
	o := Op{Cmd: "GET", Key: key, Value: want, Sent: sent}
	got, err := redis.String(conn.Do("GET", key))
	o.Done = time.Now()
	switch {
	case errors.Is(err, redis.ErrNil): // the key is not there: as stale as another value
		o.Err = fmt.Errorf(staleRead+"nil, want %q", want)
	case err != nil:
		o.Err = err
	case got != want:
		o.Err = fmt.Errorf(staleRead+"%q, want %q", got, want)
	}
	return o
}

// wait holds the next round back for Pace and, after a failure, Retry.
func (c Client) wait(ctx context.Context, start time.Time, failed bool) {
	until := start.Add(c.Pace)
	if retry := time.Now().Add(c.Retry); failed && retry.After(until) {
		until = retry
	}
	d := time.Until(until)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Load runs clients in goroutines, each into a Recorder, until Stop.
type Load struct {
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// NewLoad returns a Load with no clients yet.
func NewLoad() *Load {
	ctx, cancel := context.WithCancel(context.Background())
	return &Load{ctx: ctx, stop: cancel}
}

// Go runs c until Stop, adding its ops to rec (which several clients may
// share).
func (l *Load) Go(c Client, rec *Recorder) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		c.Run(l.ctx, rec.Add)
	}()
}

// Stop ends every client and waits for each to finish the command it has
// in flight. It may be called again.
func (l *Load) Stop() {
	l.stop()
	l.wg.Wait()
}

// Readback is what a server holds of a set of acknowledged writes.
type Readback struct {
	Missing    []string `json:"missing"`    // keys it does not have, sorted
	Mismatched []string `json:"mismatched"` // keys it holds with another value, sorted
}

// Lost lists the missing and the mismatched keys, sorted.
func (r Readback) Lost() []string {
	lost := append(slices.Clone(r.Missing), r.Mismatched...)
	slices.Sort(lost)
	return lost
}

// ReadBack reads every key of want from the Redis server at addr (MGET,
// 500 keys at a time) and returns those it does not hold with the wanted
// value. The server may be behind a VIP that is still moving: a refused
// dial is tried again for 5s. opts are added to the dial's (a password:
// redis.DialPassword).
func ReadBack(addr string, want map[string]string, opts ...redis.DialOption) (Readback, error) {
	var rb Readback
	var conn redis.Conn
	for try := 0; ; try++ {
		c, err := redis.Dial("tcp", addr, append([]redis.DialOption{redis.DialConnectTimeout(time.Second),
			redis.DialReadTimeout(10 * time.Second), redis.DialWriteTimeout(10 * time.Second)}, opts...)...)
		if err == nil {
			conn = c
			break
		}
		if try == 20 {
			return rb, fmt.Errorf("read back acknowledged writes: %w", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	defer conn.Close()
	keys := slices.Sorted(maps.Keys(want))
	for lo := 0; lo < len(keys); lo += 500 {
		batch := keys[lo:min(lo+500, len(keys))]
		args := make([]any, len(batch))
		for i, k := range batch {
			args[i] = k
		}
		vals, err := redis.Values(conn.Do("MGET", args...))
		if err != nil {
			return rb, fmt.Errorf("read back acknowledged writes: MGET on %s: %w", addr, err)
		}
		for i, v := range vals {
			if v == nil {
				rb.Missing = append(rb.Missing, batch[i])
			} else if s, _ := redis.String(v, nil); s != want[batch[i]] {
				rb.Mismatched = append(rb.Mismatched, batch[i])
			}
		}
	}
	return rb, nil
}
