package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

func TestValidate(t *testing.T) {
	ok := Config{Servers: []string{"10.0.0.1:6379", "redis-2:6379"}}
	ok.setDefaults()
	tests := []struct {
		name   string
		mod    func(*Config)
		errHas string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no servers", func(c *Config) { c.Servers = nil }, "at least one"},
		{"no port", func(c *Config) { c.Servers = []string{"redis-1"} }, "not host:port"},
		{"bad port", func(c *Config) { c.Servers = []string{"redis-1:0"} }, "between 1 and 65535"},
		{"no host", func(c *Config) { c.Servers = []string{":6379"} }, "needs a host"},
		{"duplicate", func(c *Config) { c.Servers = []string{"a:1", "a:1"} }, "listed twice"},
		{"down-after not above interval", func(c *Config) { c.DownAfter = c.CheckInterval }, "must exceed"},
		{"negative interval", func(c *Config) { c.CheckInterval = -time.Second }, "check interval"},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		err := c.Validate()
		if (err == nil) != (tt.errHas == "") || (err != nil && !strings.Contains(err.Error(), tt.errHas)) {
			t.Errorf("%s: Validate() = %v, want error containing %q", tt.name, err, tt.errHas)
		}
	}
	if _, err := NewManager(Config{}, nil); err == nil {
		t.Error("NewManager accepted a config without servers")
	}
	m, err := NewManager(Config{Servers: []string{"127.0.0.1:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.CheckInterval != DefaultCheckInterval || m.cfg.DownAfter != DefaultDownAfter || m.timeout != 500*time.Millisecond {
		t.Errorf("defaults: interval %v, down after %v, timeout %v", m.cfg.CheckInterval, m.cfg.DownAfter, m.timeout)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err       error
		wantErr   string
		wantReply string
	}{
		{fmt.Errorf("check a: ROLE: %w", redis.Error("LOADING Redis is loading the dataset in memory")), "", "LOADING Redis is loading the dataset in memory"},
		{fmt.Errorf("check a: %w", redis.Error("MASTERDOWN Link with MASTER is down")), "", "MASTERDOWN Link with MASTER is down"},
		{fmt.Errorf("check a: %w", redis.Error("NOAUTH Authentication required.")), "check a: NOAUTH Authentication required.", ""},
		{fmt.Errorf("check a: %w", context.DeadlineExceeded), "check a: context deadline exceeded", ""},
		{errors.New("dial tcp: connection refused"), "dial tcp: connection refused", ""},
	}
	for _, tt := range tests {
		e, r := classify(tt.err)
		if e != tt.wantErr || r != tt.wantReply {
			t.Errorf("classify(%v) = %q, %q; want %q, %q", tt.err, e, r, tt.wantErr, tt.wantReply)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	st := NewState([]string{"a:1", "b:1"}, time.Second, 250*time.Millisecond, true)
	st, _ = Decide(st, []Observation{
		{Kind: ObsCheck, Addr: "a:1", At: t0, Info: Info{Role: RoleMaster, ReplID: "X", Offset: 500}},
		{Kind: ObsCheck, Addr: "b:1", At: t0, Info: Info{Role: RoleReplica, MasterAddr: "a:1", LinkUp: true, ReplID: "X", Offset: 450, Priority: 100}},
	}, t0)
	s := statusOf(st, t0)
	if b := serverStatus(s, "b:1"); b.LagBytes != 50 || !b.Up {
		t.Errorf("replica status %+v, want up with lag 50", b)
	}
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"epoch":0`, `"master":"a:1"`, `"replicas":["b:1"]`, `"lag_bytes":50`, `"lost_bytes":0`, `"role":"replica"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("status JSON lacks %s: %s", key, data)
		}
	}
}

func TestSwitchoverAfterRunReturns(t *testing.T) {
	m, err := NewManager(Config{Servers: []string{"127.0.0.1:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Switchover(context.Background(), "127.0.0.1:1"); err == nil {
		t.Error("switchover before Run succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
	done := make(chan error, 1)
	go func() { _, err := m.Switchover(context.Background(), "127.0.0.1:1"); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("switchover after Run returned succeeded")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Switchover blocked after Run returned")
	}
}
