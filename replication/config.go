package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Config configures a Manager. The zero value of each optional field is
// replaced by the default its comment names.
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
	// Authority: when false the manager observes and publishes the
	// topology but never changes any server. SetAuthority changes it at run
	// time.
	Authority bool
	// SwitchoverTimeout bounds a planned switchover: the longest writes are
	// held (CLIENT PAUSE on the old master expires after it too). If zero, 5s.
	SwitchoverTimeout time.Duration
	// Pauser, if set, is called around a planned switchover (see Pauser).
	Pauser Pauser
	// Logger receives state transitions. If nil, nothing is logged.
	Logger *slog.Logger
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

// Defaults applied by NewManager to zero fields.
const (
	DefaultCheckInterval     = 250 * time.Millisecond
	DefaultDownAfter         = time.Second
	DefaultSwitchoverTimeout = 5 * time.Second
)

func (c *Config) setDefaults() {
	if c.CheckInterval == 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.DownAfter == 0 {
		c.DownAfter = DefaultDownAfter
	}
	if c.SwitchoverTimeout == 0 {
		c.SwitchoverTimeout = DefaultSwitchoverTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the cross-field rules. It expects defaults applied (as
// NewManager does); cmd may call it on its own copy after doing the same.
func (c Config) Validate() error {
	if len(c.Servers) == 0 {
		return errors.New("servers: at least one host:port is required")
	}
	seen := map[string]bool{}
	for _, s := range c.Servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return fmt.Errorf("servers: %q is not host:port: %w", s, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
			return fmt.Errorf("servers: %q needs a host and a port between 1 and 65535", s)
		}
		if seen[s] {
			return fmt.Errorf("servers: %q is listed twice", s)
		}
		seen[s] = true
	}
	if c.CheckInterval <= 0 {
		return fmt.Errorf("check interval: %v is not a positive duration", c.CheckInterval)
	}
	if c.DownAfter <= c.CheckInterval {
		return fmt.Errorf("down after (%v) must exceed the check interval (%v)", c.DownAfter, c.CheckInterval)
	}
	if c.SwitchoverTimeout <= 0 {
		return fmt.Errorf("switchover timeout: %v is not a positive duration", c.SwitchoverTimeout)
	}
	return nil
}
