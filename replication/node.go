package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// node is the manager's narrow view of one Redis server. Production uses
// redisNode; tests may pass fakes through Manager.dial. A node is used by
// one goroutine at a time.
type node interface {
	// Check asks ROLE and INFO replication in one round trip.
	Check(ctx context.Context) (Info, error)
	// ReplicaOf sends REPLICAOF host port.
	ReplicaOf(ctx context.Context, master string) error
	// Promote sends REPLICAOF NO ONE.
	Promote(ctx context.Context) error
	// PauseWrites sends CLIENT PAUSE d WRITE; Unpause sends CLIENT UNPAUSE.
	PauseWrites(ctx context.Context, d time.Duration) error
	Unpause(ctx context.Context) error
	Close() error
}

// aliveReplies are error replies that prove a server is alive: it answers,
// but cannot serve its role yet (LOADING, MASTERDOWN), or is running a
// script or function past busy-reply-threshold (BUSY). They count as valid
// replies for liveness.
var aliveReplies = []string{"LOADING", "MASTERDOWN", "BUSY"}

// classify turns a check error into an observation: err for a failure
// (transport, timeout, other error replies such as NOAUTH), with silent
// when it timed out; reply for an alive-but-busy reply.
func classify(e error) (err, reply string, silent bool) {
	var re redis.Error
	if errors.As(e, &re) { // the bare reply, without the wrapping
		for _, p := range aliveReplies {
			if strings.HasPrefix(string(re), p) {
				return "", string(re), false
			}
		}
	}
	var ne net.Error
	silent = errors.Is(e, context.DeadlineExceeded) || errors.As(e, &ne) && ne.Timeout()
	return e.Error(), "", silent
}

// redisNode talks to one server over one control connection, opened on
// first use and reopened after any transport error. It owns and closes the
// connection.
type redisNode struct {
	addr     string
	user     string
	password string
	timeout  time.Duration      // bounds dial and every command
	tls      func() *tls.Config // Config.TLS

	conn   redis.Conn
	remote string
	runID  string // from INFO server, once per connection
}

func newRedisNode(addr, user, password string, timeout time.Duration) *redisNode {
	return &redisNode{addr: addr, user: user, password: password, timeout: timeout}
}

func (n *redisNode) deadline(ctx context.Context) time.Duration {
	d := n.timeout
	if dl, ok := ctx.Deadline(); ok {
		if until := time.Until(dl); until < d {
			d = until
		}
	}
	if d <= 0 {
		d = time.Millisecond
	}
	return d
}

func (n *redisNode) connect(ctx context.Context) (redis.Conn, error) {
	if n.conn != nil {
		return n.conn, nil
	}
	timeout := n.deadline(ctx)
	var remote string
	opts := []redis.DialOption{
		redis.DialContextFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
			nc, err := d.DialContext(ctx, network, addr)
			if err == nil {
				remote = nc.RemoteAddr().String()
			}
			return nc, err
		}),
		redis.DialReadTimeout(timeout),
		redis.DialWriteTimeout(timeout),
		redis.DialUsername(n.user),
		redis.DialPassword(n.password),
		redis.DialClientName("redis-proxy-replication"),
	}
	if n.tls != nil {
		opts = append(opts, redis.DialUseTLS(true), redis.DialTLSConfig(n.tls()), redis.DialTLSHandshakeTimeout(timeout))
	}
	c, err := redis.DialContext(ctx, "tcp", n.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	n.conn, n.remote, n.runID = c, remote, ""
	return c, nil
}

// drop closes the connection after a transport error; error replies keep it.
func (n *redisNode) drop(err error) {
	var re redis.Error
	if n.conn != nil && !errors.As(err, &re) {
		n.conn.Close()
		n.conn = nil
	}
}

func (n *redisNode) do(ctx context.Context, cmd string, args ...any) (any, error) {
	c, err := n.connect(ctx)
	if err != nil {
		return nil, err
	}
	reply, err := redis.DoWithTimeout(c, n.deadline(ctx), cmd, args...)
	if err != nil {
		n.drop(err)
	}
	return reply, err
}

func (n *redisNode) Check(ctx context.Context) (Info, error) {
	c, err := n.connect(ctx)
	if err != nil {
		return Info{}, err
	}
	wantRun := n.runID == ""
	c.Send("ROLE")
	c.Send("INFO", "replication")
	if wantRun {
		c.Send("INFO", "server")
	}
	if err := c.Flush(); err != nil {
		n.drop(err)
		return Info{}, fmt.Errorf("send ROLE: %w", err)
	}
	// Read every reply, to keep the connection in step, before judging any.
	var replies [3]any
	var errs [3]error
	count := 2
	if wantRun {
		count = 3
	}
	for i := 0; i < count; i++ {
		replies[i], errs[i] = redis.ReceiveWithTimeout(c, n.deadline(ctx))
		var re redis.Error
		if errs[i] != nil && !errors.As(errs[i], &re) {
			n.drop(errs[i])
			return Info{}, fmt.Errorf("read reply: %w", errs[i])
		}
	}
	for i, what := range []string{"ROLE", "INFO replication", "INFO server"}[:count] {
		if errs[i] != nil {
			return Info{}, fmt.Errorf("%s: %w", what, errs[i])
		}
	}
	role, err := parseRole(replies[0])
	if err != nil {
		return Info{}, err
	}
	text, err := redis.String(replies[1], nil)
	if err != nil {
		return Info{}, fmt.Errorf("INFO replication: %w", err)
	}
	if wantRun {
		srv, err := redis.String(replies[2], nil)
		if err != nil {
			return Info{}, fmt.Errorf("INFO server: %w", err)
		}
		n.runID = parseInfo(srv)["run_id"]
	}
	in, err := buildInfo(role, text)
	if err != nil {
		return Info{}, err
	}
	in.RunID, in.Remote = n.runID, n.remote
	return in, nil
}

func (n *redisNode) ReplicaOf(ctx context.Context, master string) error {
	host, port, err := net.SplitHostPort(master)
	if err != nil {
		return fmt.Errorf("replicaof %s: %w", master, err)
	}
	if _, err := n.do(ctx, "REPLICAOF", host, port); err != nil {
		return fmt.Errorf("replicaof %s: %w", master, err)
	}
	return nil
}

func (n *redisNode) Promote(ctx context.Context) error {
	if _, err := n.do(ctx, "REPLICAOF", "NO", "ONE"); err != nil {
		return fmt.Errorf("replicaof no one: %w", err)
	}
	return nil
}

func (n *redisNode) PauseWrites(ctx context.Context, d time.Duration) error {
	if _, err := n.do(ctx, "CLIENT", "PAUSE", strconv.FormatInt(d.Milliseconds(), 10), "WRITE"); err != nil {
		return fmt.Errorf("client pause write: %w", err)
	}
	return nil
}

func (n *redisNode) Unpause(ctx context.Context) error {
	if _, err := n.do(ctx, "CLIENT", "UNPAUSE"); err != nil {
		return fmt.Errorf("client unpause: %w", err)
	}
	return nil
}

func (n *redisNode) Close() error {
	if n.conn == nil {
		return nil
	}
	err := n.conn.Close()
	n.conn = nil
	return err
}
