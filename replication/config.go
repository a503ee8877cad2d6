package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/config"
	"github.com/redis-proxy/redis-proxy/internal/events"
)

// Config configures a Manager. The zero value of each optional field is
// replaced by the default its comment names; Validate reports a field
// NewManager would refuse.
type Config struct {
	// Servers are the host:port of every configured Redis, in order of
	// preference among fresh servers (the first becomes master when none
	// holds data). Required.
	Servers []string
	// CheckInterval is how often each server is checked with ROLE and INFO
	// replication. If zero, 250ms.
	CheckInterval time.Duration
	// DownAfter is how long a server may go without a valid reply before it
	// is down; a master that is down is failed over. Must exceed
	// CheckInterval. If zero, 1s.
	DownAfter time.Duration
	// Username and Password authenticate to every server (AUTH); both may
	// be empty.
	Username, Password string
	// TLS, if set, makes every connection to a server TLS: it is called for
	// each new connection and returns the configuration to use, so the
	// certificates may change while the manager runs (a clone is used; an
	// empty ServerName becomes the server's host). The servers must then
	// replicate over TLS too (tls-replication yes), since REPLICAOF names
	// the address the manager reaches. If nil, plain TCP.
	TLS func() *tls.Config
	// Authority: when false the manager observes and publishes the
	// topology but never changes any server. SetAuthority changes it at run
	// time.
	Authority bool
	// SwitchoverTimeout bounds a planned switchover: the longest writes are
	// held (CLIENT PAUSE on the old master expires after it too). If zero, 5s.
	SwitchoverTimeout time.Duration
	// Pauser, if set, is called around a planned switchover (see Pauser).
	Pauser Pauser
	// Busy, if set, tells which servers are running a long command (a
	// script, a function) the proxy sent them: such a server silent
	// because of it is not down (see BusyGrace). If nil, silence counts
	// as it does for any server.
	Busy BusyReporter
	// BusyGrace is how long after the proxy sent a long command a server
	// silent while running it still counts as alive. Redis answers nobody
	// while a script or function runs, until busy-reply-threshold (5s by
	// default), and -BUSY after that (a reply: alive). If zero, 5s plus
	// DownAfter.
	BusyGrace time.Duration
	// JoinMaxLag: a server added at run time (SetServers) serves reads
	// once a check finds it at most this far behind the master. If zero,
	// DefaultJoinMaxLag (1s).
	JoinMaxLag time.Duration
	// MaxReplicaLag bounds how stale a replica serving reads may be: a
	// replica of the master stays in Topology.Replicas only while a check
	// shows it holds everything the master held MaxReplicaLag before, so
	// every replica published holds what the master held MaxReplicaLag
	// plus CheckInterval before (ReplicaStaleness; see lag.go). Zero: no
	// bound. Otherwise at least three times CheckInterval.
	MaxReplicaLag time.Duration
	// WriteAcks is the number of replicas the data path waits for (WAIT)
	// before it acknowledges a write; zero: it does not wait. With one or
	// more, a failover does not promote a replica while another, linked to
	// the master at its last check and unreachable, may hold acknowledged
	// writes it lacks, for up to PromotionWait (see acked.go).
	WriteAcks int
	// PromotionWait bounds that wait; after it the best reachable replica
	// is promoted and the event says acknowledged writes may be lost. If
	// zero, DefaultPromotionWait (5s). Used only with WriteAcks.
	PromotionWait time.Duration
	// Logger receives state transitions. If nil, nothing is logged.
	Logger *slog.Logger
	// OnEvent, if set, receives the operator's events (a failover, a
	// server down, a demotion, writes lost; see package events) from the
	// manager's goroutine, in order, each after its log line; it should
	// return promptly. Seq is left zero for the receiver to number.
	OnEvent func(events.Event)
}

// BusyReporter is the data path's view of the long commands it has in
// flight: Busy reports whether a script or function it sent to addr is
// still unanswered, and since when (the oldest). It is called from the
// manager's probing goroutines and must be safe for concurrent use.
type BusyReporter interface {
	Busy(addr string) (since time.Time, ok bool)
}

// Pauser lets the data path take part in a planned switchover. The manager
// first publishes a Topology with no master (the proxy holds new commands),
// then calls Pause; Pause returns once no write to the old master is in
// flight any more. After the new master is published the manager calls
// Resume. If Pause fails the switchover is abandoned (Resume is not called).
type Pauser interface {
	Pause(ctx context.Context) error
	Resume()
}

// Defaults of the zero fields of a Config.
const (
	DefaultCheckInterval     = 250 * time.Millisecond
	DefaultDownAfter         = time.Second
	DefaultSwitchoverTimeout = 5 * time.Second
	// DefaultBusyThreshold is Redis's busy-reply-threshold default.
	DefaultBusyThreshold = 5 * time.Second
)

// withDefaults returns c with every zero optional field set to its
// default, and Servers copied so that the caller's slice is not shared.
// It is the only place defaults are applied.
func (c Config) withDefaults() Config {
	c.Servers = slices.Clone(c.Servers)
	if c.CheckInterval == 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.DownAfter == 0 {
		c.DownAfter = DefaultDownAfter
	}
	if c.SwitchoverTimeout == 0 {
		c.SwitchoverTimeout = DefaultSwitchoverTimeout
	}
	if c.BusyGrace == 0 {
		c.BusyGrace = DefaultBusyThreshold + c.DownAfter
	}
	if c.JoinMaxLag == 0 {
		c.JoinMaxLag = DefaultJoinMaxLag
	}
	if c.PromotionWait == 0 {
		c.PromotionWait = DefaultPromotionWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first invalid field of c, with defaults applied, as
// a *config.FieldError. It touches no server.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := validateServers(c.Servers); err != nil {
		return config.Errorf(pkg, "Servers", "%s", err.Error())
	}
	if c.CheckInterval <= 0 {
		return config.Errorf(pkg, "CheckInterval", "must be a positive duration, got %v", c.CheckInterval)
	}
	if c.DownAfter <= c.CheckInterval {
		return config.Errorf(pkg, "DownAfter", "must be longer than the check interval (%v): a server needs at least two checks to be judged down",
			c.CheckInterval)
	}
	if c.JoinMaxLag < c.CheckInterval {
		return config.Errorf(pkg, "JoinMaxLag", "must be at least the check interval (%v): an added server is compared with a check of the master sent within it, got %v",
			c.CheckInterval, c.JoinMaxLag)
	}
	if c.MaxReplicaLag < 0 || (c.MaxReplicaLag > 0 && c.MaxReplicaLag < 3*c.CheckInterval) {
		return config.Errorf(pkg, "MaxReplicaLag", "must be 0 (no bound) or at least three times the check interval (%v): a replica's lag is measured against the master's checks and a current one shows up to about two intervals, got %v",
			3*c.CheckInterval, c.MaxReplicaLag)
	}
	if c.WriteAcks < 0 {
		return config.Errorf(pkg, "WriteAcks", "must not be negative, got %d", c.WriteAcks)
	}
	if c.PromotionWait < 0 {
		return config.Errorf(pkg, "PromotionWait", "must be a positive duration, got %v", c.PromotionWait)
	}
	if c.BusyGrace < 0 {
		return config.Errorf(pkg, "BusyGrace", "must not be negative, got %v", c.BusyGrace)
	}
	if c.SwitchoverTimeout <= 0 {
		return config.Errorf(pkg, "SwitchoverTimeout", "must be a positive duration, got %v", c.SwitchoverTimeout)
	}
	return nil
}

// ReplicaStaleness is how stale a replica in the published read rotation
// may be with c (defaults applied): every such replica holds everything the
// master held this long before, while the manager decides on time (see
// lag.go). A client that reads from the master for this long after its
// write reads the write wherever it is routed next. Zero when
// MaxReplicaLag is zero (no bound).
func (c Config) ReplicaStaleness() time.Duration {
	if c.MaxReplicaLag <= 0 {
		return 0
	}
	return c.MaxReplicaLag + c.withDefaults().CheckInterval
}

// validateServers reports the first thing wrong with a list of servers, in
// the words Config.Validate uses for Servers.
func validateServers(servers []string) error {
	if len(servers) == 0 {
		return errors.New("at least one host:port is required")
	}
	seen := map[string]bool{}
	for _, s := range servers {
		if err := ValidateAddr(s); err != nil {
			return err
		}
		if seen[s] {
			return fmt.Errorf("%q is listed twice (want each server once)", s)
		}
		seen[s] = true
	}
	return nil
}

// ValidateAddr reports whether s is a server address the manager accepts:
// host:port with a port from 1 to 65535.
func ValidateAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (want a host and a port from 1 to 65535)", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
		return fmt.Errorf("%q needs a host and a port from 1 to 65535", s)
	}
	return nil
}

// pkg names this package in a *config.FieldError.
const pkg = "replication"
