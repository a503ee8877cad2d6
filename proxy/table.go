package proxy

import (
	"context"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
)

// loadTable reads COMMAND from addr: the proxy routes by the master's own
// command table (see command.Build).
func loadTable(ctx context.Context, addr string, d *dialer, m *metrics) (*command.Table, error) {
	c, err := d.control(ctx, addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("load command table from %s: %w", addr, err)
	}
	defer c.Close()
	reply, err := redis.Values(c.Do("COMMAND"))
	if err != nil {
		return nil, fmt.Errorf("load command table from %s: %w", addr, err)
	}
	return command.Build(addr, reply, m.commandCounters)
}
