package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/config"
)

func TestValidate(t *testing.T) {
	ok := Config{Servers: []string{"10.0.0.1:6379", "redis-2:6379"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		mod    func(*Config)
		field  string
		errHas string
	}{
		{"no servers", func(c *Config) { c.Servers = nil }, "Servers", "at least one host:port"},
		{"no port", func(c *Config) { c.Servers = []string{"redis-1"} }, "Servers", `"redis-1" is not host:port`},
		{"bad port", func(c *Config) { c.Servers = []string{"redis-1:0"} }, "Servers", "a port from 1 to 65535"},
		{"no host", func(c *Config) { c.Servers = []string{":6379"} }, "Servers", "needs a host"},
		{"duplicate", func(c *Config) { c.Servers = []string{"a:1", "a:1"} }, "Servers", "listed twice"},
		{"negative interval", func(c *Config) { c.CheckInterval = -time.Second }, "CheckInterval", "positive duration, got -1s"},
		{"down-after equal to interval", func(c *Config) { c.DownAfter = DefaultCheckInterval }, "DownAfter", "longer than the check interval (250ms)"},
		{"default down-after below interval", func(c *Config) { c.CheckInterval = 2 * time.Second }, "DownAfter", "longer than the check interval (2s)"},
		{"negative switchover timeout", func(c *Config) { c.SwitchoverTimeout = -1 }, "SwitchoverTimeout", "positive duration"},
		{"negative replica lag", func(c *Config) { c.MaxReplicaLag = -time.Second }, "MaxReplicaLag", "must be 0 (no bound) or at least three times the check interval (750ms)"},
		{"replica lag below three intervals", func(c *Config) { c.MaxReplicaLag = 700 * time.Millisecond }, "MaxReplicaLag", "got 700ms"},
		{"negative write acks", func(c *Config) { c.WriteAcks = -1 }, "WriteAcks", "must not be negative"},
		{"negative promotion wait", func(c *Config) { c.PromotionWait = -time.Second }, "PromotionWait", "positive duration"},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		err := c.Validate()
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Pkg != "replication" || fe.Field != tt.field || !strings.Contains(fe.Msg, tt.errHas) {
			t.Errorf("%s: Validate() = %v, want a replication %s error containing %q", tt.name, err, tt.field, tt.errHas)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: multi-line error %q", tt.name, err)
		}
		if _, nerr := NewManager(c, nil); nerr == nil || nerr.Error() != err.Error() {
			t.Errorf("%s: NewManager error %v, want Validate's %v", tt.name, nerr, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	servers := []string{"127.0.0.1:1"}
	in := Config{Servers: servers}
	c := in.withDefaults()
	if c.CheckInterval != DefaultCheckInterval || c.DownAfter != DefaultDownAfter ||
		c.SwitchoverTimeout != DefaultSwitchoverTimeout || c.Logger == nil {
		t.Errorf("withDefaults: %+v", c)
	}
	if in.CheckInterval != 0 || in.Logger != nil {
		t.Errorf("withDefaults changed its receiver: %+v", in)
	}
	c.Servers[0] = "changed:1"
	if servers[0] != "127.0.0.1:1" {
		t.Error("withDefaults shares the caller's Servers")
	}
	set := Config{Servers: servers, CheckInterval: time.Second, DownAfter: 3 * time.Second, SwitchoverTimeout: time.Minute}.withDefaults()
	if set.CheckInterval != time.Second || set.DownAfter != 3*time.Second || set.SwitchoverTimeout != time.Minute {
		t.Errorf("withDefaults replaced set fields: %+v", set)
	}
	m, err := NewManager(Config{Servers: servers}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.CheckInterval != DefaultCheckInterval || m.cfg.DownAfter != DefaultDownAfter || m.timeout != 500*time.Millisecond {
		t.Errorf("NewManager defaults: interval %v, down after %v, timeout %v", m.cfg.CheckInterval, m.cfg.DownAfter, m.timeout)
	}
	if m.cfg.PromotionWait != DefaultPromotionWait || m.cfg.MaxReplicaLag != 0 || m.cfg.WriteAcks != 0 {
		t.Errorf("NewManager defaults: promotion wait %v, max replica lag %v, write acks %d", m.cfg.PromotionWait, m.cfg.MaxReplicaLag, m.cfg.WriteAcks)
	}
}

func TestReplicaStaleness(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{}, 0},
		{Config{MaxReplicaLag: time.Second}, time.Second + DefaultCheckInterval},
		{Config{MaxReplicaLag: time.Second, CheckInterval: 100 * time.Millisecond}, 1100 * time.Millisecond},
	} {
		if got := tt.cfg.ReplicaStaleness(); got != tt.want {
			t.Errorf("%+v: ReplicaStaleness() = %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err        error
		wantErr    string
		wantReply  string
		wantSilent bool
	}{
		{fmt.Errorf("check a: ROLE: %w", redis.Error("LOADING Redis is loading the dataset in memory")), "", "LOADING Redis is loading the dataset in memory", false},
		{fmt.Errorf("check a: %w", redis.Error("MASTERDOWN Link with MASTER is down")), "", "MASTERDOWN Link with MASTER is down", false},
		{fmt.Errorf("check a: %w", redis.Error("BUSY Redis is busy running a script.")), "", "BUSY Redis is busy running a script.", false},
		{fmt.Errorf("check a: %w", redis.Error("NOAUTH Authentication required.")), "check a: NOAUTH Authentication required.", "", false},
		{fmt.Errorf("check a: %w", context.DeadlineExceeded), "check a: context deadline exceeded", "", true},
		{fmt.Errorf("check a: %w", &net.OpError{Op: "read", Err: timeoutErr{}}), "check a: read: i/o timeout", "", true},
		{errors.New("dial tcp: connection refused"), "dial tcp: connection refused", "", false},
	}
	for _, tt := range tests {
		e, r, silent := classify(tt.err)
		if e != tt.wantErr || r != tt.wantReply || silent != tt.wantSilent {
			t.Errorf("classify(%v) = %q, %q, %v; want %q, %q, %v", tt.err, e, r, silent, tt.wantErr, tt.wantReply, tt.wantSilent)
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

// timeoutErr is a net.Error that timed out, as a read deadline gives.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
