package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/config"
	"github.com/redis-proxy/redis-proxy/proxy"
	"github.com/redis-proxy/redis-proxy/replication"
	"github.com/redis-proxy/redis-proxy/vip"
)

// setEnv sets REDIS_PROXY_* variables for one test; every other variable
// the binary reads (each of Config's, and the _FILE of each secret) is
// unset so the host environment cannot leak in.
func setEnv(t *testing.T, kv map[string]string) {
	t.Helper()
	clearEnv(t)
	for k, v := range kv {
		t.Setenv("REDIS_PROXY_"+k, v)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	setEnv(t, map[string]string{"SERVERS": "10.0.0.1:6379,10.0.0.2:6379"})
	c, err := loadConfig()
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if c.Listen != ":6379" || c.PoolSize != 2 || c.ReadFrom != "master" || c.HoldTimeout != 5*time.Second ||
		c.CheckInterval != 250*time.Millisecond || c.DownAfter != time.Second || c.MaxBulk != 512<<20 ||
		len(c.Servers) != 2 || c.Servers[1] != "10.0.0.2:6379" || c.AdminListen != ":9736" || c.AdminToken != "" || c.AdminProtectReads {
		t.Fatalf("defaults: %+v", c)
	}
	if c.MaxReplicaLag != 0 || c.WriteAcks != 0 || c.WriteAckTimeout != time.Second || c.PromotionWait != 5*time.Second {
		t.Fatalf("durability defaults: max replica lag %v, write acks %d, ack timeout %v, promotion wait %v",
			c.MaxReplicaLag, c.WriteAcks, c.WriteAckTimeout, c.PromotionWait)
	}
}

// TestLoadConfigDurability: the replication manager gets the bound on
// replica lag and the write acknowledgements as set.
func TestLoadConfigDurability(t *testing.T) {
	setEnv(t, map[string]string{"SERVERS": "a:1,b:2", "MAX_REPLICA_LAG": "2s", "WRITE_ACKS": "1",
		"WRITE_ACK_TIMEOUT": "250ms", "PROMOTION_WAIT": "3s"})
	c, err := loadConfig()
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if c.WriteAckTimeout != 250*time.Millisecond {
		t.Errorf("WRITE_ACK_TIMEOUT: %v", c.WriteAckTimeout)
	}
	r := c.replicationConfig()
	if r.MaxReplicaLag != 2*time.Second || r.WriteAcks != 1 || r.PromotionWait != 3*time.Second {
		t.Errorf("replication config: max replica lag %v, write acks %d, promotion wait %v", r.MaxReplicaLag, r.WriteAcks, r.PromotionWait)
	}
	if got := r.ReplicaStaleness(); got != 2250*time.Millisecond {
		t.Errorf("ReplicaStaleness = %v, want MAX_REPLICA_LAG + CHECK_INTERVAL", got)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string // the whole one-line message
	}{
		{map[string]string{}, `REDIS_PROXY_SERVERS is required: want comma-separated host:port list`},
		{map[string]string{"SERVERS": "redis-a"}, `REDIS_PROXY_SERVERS="redis-a": "redis-a" is not host:port (want a host and a port from 1 to 65535)`},
		{map[string]string{"SERVERS": "a:1,b:0"}, `REDIS_PROXY_SERVERS="a:1,b:0": "b:0" needs a host and a port from 1 to 65535`},
		{map[string]string{"SERVERS": "a:1,a:1"}, `REDIS_PROXY_SERVERS="a:1,a:1": "a:1" is listed twice (want each server once)`},
		{map[string]string{"SERVERS": "a:1", "POOL_SIZE": "lots"}, `REDIS_PROXY_POOL_SIZE="lots": want an integer from 1 to 64`},
		{map[string]string{"SERVERS": "a:1", "POOL_SIZE": "0"}, `REDIS_PROXY_POOL_SIZE="0": want an integer from 1 to 64`},
		{map[string]string{"SERVERS": "a:1", "EVENT_LOOPS": "-1"}, `REDIS_PROXY_EVENT_LOOPS="-1": want an integer from 0 to 64`},
		{map[string]string{"SERVERS": "a:1", "EVENT_LOOPS": "65"}, `REDIS_PROXY_EVENT_LOOPS="65": must be from 0 to 64, got 65`},
		{map[string]string{"SERVERS": "a:1", "BUSY_POLL": "11ms"}, `REDIS_PROXY_BUSY_POLL="11ms": must be at most 10ms, got 11ms`},
		{map[string]string{"SERVERS": "a:1", "BUSY_POLL": "-1us"}, `REDIS_PROXY_BUSY_POLL="-1µs": want a duration from 0 to 10ms, such as 100us`},
		{map[string]string{"SERVERS": "a:1", "COALESCE": "sometimes"}, `REDIS_PROXY_COALESCE="sometimes": want true or false`},
		{map[string]string{"SERVERS": "a:1", "READ_FROM": "slaves"}, `REDIS_PROXY_READ_FROM="slaves": want master or replicas`},
		{map[string]string{"SERVERS": "a:1", "HOLD_TIMEOUT": "5"}, `REDIS_PROXY_HOLD_TIMEOUT="5": want a positive duration such as 5s`},
		{map[string]string{"SERVERS": "a:1", "MAX_BULK": "big"}, `REDIS_PROXY_MAX_BULK="big": want a size such as 512MiB, 64KiB or 1048576`},
		{map[string]string{"SERVERS": "a:1", "LISTEN": "6379"}, `REDIS_PROXY_LISTEN="6379": want host:port, or none with TLS_LISTEN set`},
		{map[string]string{"SERVERS": "a:1", "CHECK_INTERVAL": "2s"}, `REDIS_PROXY_DOWN_AFTER="1s": must be longer than the check interval (2s): a server needs at least two checks to be judged down`},
		{map[string]string{"SERVERS": "a:1", "DOWN_AFTER": "0"}, `REDIS_PROXY_DOWN_AFTER="0s": want a duration longer than CHECK_INTERVAL`},
		{map[string]string{"SERVERS": "a:1", "MAX_INFLIGHT_MEMORY": "0"}, `REDIS_PROXY_MAX_INFLIGHT_MEMORY="0": want a size of 4MiB or more, such as 1GiB`},
		{map[string]string{"SERVERS": "a:1", "MAX_BULK": "0"}, `REDIS_PROXY_MAX_BULK="0": want a size such as 512MiB, 64KiB or 1048576`},
		{map[string]string{"SERVERS": "a:1", "PEERS": "10.0.0.2", "ADVERT_INTERVAL": "5ms"}, `REDIS_PROXY_ADVERT_INTERVAL="5ms": must be whole milliseconds within 10ms-65.535s, got 5ms`},
		{map[string]string{"SERVERS": "a:1", "PEERS": "10.0.0.2", "VIP": "fd00::100/64", "HEARTBEAT_SECRET": "0123456789abcdef"},
			`REDIS_PROXY_VIP="fd00::100/64": must be an IPv4 address with prefix length, e.g. 10.0.0.100/24, got fd00::100/64`},
		{map[string]string{"SERVERS": "a:1", "PEERS": "10.0.0.2", "VIP": "10.0.0.100/24"}, `REDIS_PROXY_HEARTBEAT_SECRET: is required with a VIP (at least 16 bytes)`},
		{map[string]string{"SERVERS": "a:1", "PEERS": "10.0.0.2", "HEARTBEAT_SECRET": "hunter2"}, `REDIS_PROXY_HEARTBEAT_SECRET: must be at least 16 bytes, got 7`},
		{map[string]string{"SERVERS": "a:1", "PEERS": "10.0.0.2", "PRIORITY": "255"}, `REDIS_PROXY_PRIORITY="255": want an integer from 1 to 254`},
		{map[string]string{"SERVERS": "a:1", "VIP": "10.0.0.100/24"}, `REDIS_PROXY_VIP is set but REDIS_PROXY_PEERS is empty: a VIP needs a peer proxy (want both or neither)`},
		{map[string]string{"SERVERS": "a:1", "BACKEND_USERNAME": "proxy"}, `REDIS_PROXY_BACKEND_PASSWORD: is required with a backend username`},
		{map[string]string{"SERVERS": "a:1", "LOG_LEVEL": "loud"}, `REDIS_PROXY_LOG_LEVEL="loud": want debug, info, warn or error`},
		{map[string]string{"SERVERS": "a:1", "ADMIN_LISTEN": "localhost"}, `REDIS_PROXY_ADMIN_LISTEN="localhost": want host:port, or empty to disable`},
		{map[string]string{"SERVERS": "a:1", "ADMIN_TOKEN": "hunter2"}, `REDIS_PROXY_ADMIN_TOKEN: must be at least 16 characters, got 7`},
		{map[string]string{"SERVERS": "a:1", "ADMIN_TOKEN": "correct horse battery staple"}, `REDIS_PROXY_ADMIN_TOKEN: character 8 is not printable ASCII (want no spaces, control or non-ASCII characters)`},
		{map[string]string{"SERVERS": "a:1", "ADMIN_TOKEN": "0123456789abcdef\x7f"}, `REDIS_PROXY_ADMIN_TOKEN: character 17 is not printable ASCII (want no spaces, control or non-ASCII characters)`},
		{map[string]string{"SERVERS": "a:1", "ADMIN_PROTECT_READS": "yes"}, `REDIS_PROXY_ADMIN_PROTECT_READS="yes": want true or false`},
		{map[string]string{"SERVERS": "a:1", "PASSWORD": "x", "PASSWORD_FILE": "/etc/hostname"}, `REDIS_PROXY_PASSWORD and REDIS_PROXY_PASSWORD_FILE are both set: want one of them`},
		{map[string]string{"SERVERS": "a:1", "WRITE_ACKS": "17"}, `REDIS_PROXY_WRITE_ACKS="17": want an integer from 0 to 16`},
		{map[string]string{"SERVERS": "a:1", "WRITE_ACKS": "-1"}, `REDIS_PROXY_WRITE_ACKS="-1": want an integer from 0 to 16`},
		{map[string]string{"SERVERS": "a:1", "WRITE_ACKS": "all"}, `REDIS_PROXY_WRITE_ACKS="all": want an integer from 0 to 16`},
		{map[string]string{"SERVERS": "a:1", "WRITE_ACK_TIMEOUT": "0"}, `REDIS_PROXY_WRITE_ACK_TIMEOUT="0s": want a positive duration such as 1s`},
		{map[string]string{"SERVERS": "a:1", "PROMOTION_WAIT": "-1s"}, `REDIS_PROXY_PROMOTION_WAIT="-1s": want a positive duration such as 5s`},
		{map[string]string{"SERVERS": "a:1", "MAX_REPLICA_LAG": "300ms"},
			`REDIS_PROXY_MAX_REPLICA_LAG="300ms": must be 0 (no bound) or at least three times the check interval (750ms): a replica's lag is measured against the master's checks and a current one shows up to about two intervals, got 300ms`},
		{map[string]string{"SERVERS": "a:1", "MAX_REPLICA_LAG": "-1s"},
			`REDIS_PROXY_MAX_REPLICA_LAG="-1s": must be 0 (no bound) or at least three times the check interval (750ms): a replica's lag is measured against the master's checks and a current one shows up to about two intervals, got -1s`},
	}
	for _, tc := range cases {
		setEnv(t, tc.env)
		_, err := loadConfig()
		if err == nil || err.Error() != tc.want {
			t.Errorf("env %v:\n got  %v\n want %s", tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("env %v: error is not one line: %q", tc.env, err)
		}
	}
}

// TestConfigFieldErrorsNameTheirVariable: a *config.FieldError from any package's
// Config becomes the one-line usage error naming the variable the field is
// built from, with its value (a secret's value is never repeated).
func TestConfigFieldErrorsNameTheirVariable(t *testing.T) {
	c := Config{Servers: []string{"a:1", "b:2"}, PoolSize: 99, DownAfter: time.Second, AdvertInterval: 5 * time.Millisecond,
		Password: "hunter2", HeartbeatSecret: "s3cret", Coalesce: true, ClientOutputLimit: 1 << 20}
	for _, tc := range []struct {
		pkg, field string
		want       string
	}{
		{"proxy", "PoolSize", `REDIS_PROXY_POOL_SIZE="99": msg`},
		{"proxy", "MaxClients", `REDIS_PROXY_MAX_CLIENTS="0": msg`},
		{"proxy", "MaxPinned", `REDIS_PROXY_MAX_PINNED="0": msg`},
		{"proxy", "ClientPassword", `REDIS_PROXY_PASSWORD: msg`},
		{"proxy", "BackendUsername", `REDIS_PROXY_BACKEND_USERNAME="": msg`},
		{"proxy", "BackendPassword", `REDIS_PROXY_BACKEND_PASSWORD: msg`},
		{"proxy", "ReadFrom", `REDIS_PROXY_READ_FROM="": msg`},
		{"proxy", "MaxBulk", `REDIS_PROXY_MAX_BULK="0": msg`},
		{"proxy", "MaxOutput", `REDIS_PROXY_CLIENT_OUTPUT_LIMIT="1048576": msg`},
		{"proxy", "IdleTimeout", `REDIS_PROXY_IDLE_TIMEOUT="0s": msg`},
		{"proxy", "WriteTimeout", `REDIS_PROXY_CLIENT_WRITE_TIMEOUT="0s": msg`},
		{"proxy", "HoldTimeout", `REDIS_PROXY_HOLD_TIMEOUT="0s": msg`},
		{"proxy", "MaxHeld", `REDIS_PROXY_MAX_HELD="0": msg`},
		{"proxy", "DialTimeout", `REDIS_PROXY_DIAL_TIMEOUT="0s": msg`},
		{"proxy", "EventLoops", `REDIS_PROXY_EVENT_LOOPS="0": msg`},
		{"proxy", "BusyPoll", `REDIS_PROXY_BUSY_POLL="0s": msg`},
		{"proxy", "WriteAtOnce", `REDIS_PROXY_COALESCE="true": msg`},
		{"replication", "Servers", `REDIS_PROXY_SERVERS="a:1,b:2": msg`},
		{"replication", "CheckInterval", `REDIS_PROXY_CHECK_INTERVAL="0s": msg`},
		{"replication", "DownAfter", `REDIS_PROXY_DOWN_AFTER="1s": msg`},
		{"replication", "Username", `REDIS_PROXY_BACKEND_USERNAME="": msg`},
		{"replication", "Password", `REDIS_PROXY_BACKEND_PASSWORD: msg`},
		{"replication", "MaxReplicaLag", `REDIS_PROXY_MAX_REPLICA_LAG="0s": msg`},
		{"replication", "WriteAcks", `REDIS_PROXY_WRITE_ACKS="0": msg`},
		{"replication", "PromotionWait", `REDIS_PROXY_PROMOTION_WAIT="0s": msg`},
		{"vip", "Interface", `REDIS_PROXY_VIP_INTERFACE="": msg`},
		{"vip", "VIP", `REDIS_PROXY_VIP="": msg`},
		{"vip", "Peers", `REDIS_PROXY_PEERS="": msg`},
		{"vip", "Address", `REDIS_PROXY_ADDRESS="": msg`},
		{"vip", "Port", `REDIS_PROXY_HEARTBEAT_PORT="0": msg`},
		{"vip", "Priority", `REDIS_PROXY_PRIORITY="0": msg`},
		{"vip", "Interval", `REDIS_PROXY_ADVERT_INTERVAL="5ms": msg`},
		{"vip", "NoPreempt", `REDIS_PROXY_PREEMPT="false": msg`},
		{"vip", "PreemptDelay", `REDIS_PROXY_PREEMPT_DELAY="0s": msg`},
		{"vip", "Secret", `REDIS_PROXY_HEARTBEAT_SECRET: msg`},
		{"vip", "Track", `REDIS_PROXY_TRACK="": msg`},
		// A field no variable sets keeps the package's wording.
		{"vip", "GARPCount", `vip config: GARPCount: msg`},
		{"replication", "SwitchoverTimeout", `replication config: SwitchoverTimeout: msg`},
	} {
		err := c.varError(fmt.Errorf("wrapped: %w", config.Errorf(tc.pkg, tc.field, "msg")))
		var ue *usageError
		if !errors.As(err, &ue) || err.Error() != tc.want {
			t.Errorf("%s %s: got %v, want usage error %s", tc.pkg, tc.field, err, tc.want)
		}
	}
	if err := c.varError(nil); err != nil {
		t.Errorf("varError(nil) = %v", err)
	}
	plain := errors.New("listen: address in use")
	if err := c.varError(plain); err != plain {
		t.Errorf("varError changed a plain error: %v", err)
	}
}

// TestConfigFieldVarsNameRealFields: every entry of fieldVars is a field of its
// package's Config and of ours, so a renamed field fails here and not in
// front of an operator.
func TestConfigFieldVarsNameRealFields(t *testing.T) {
	pkgs := map[string]reflect.Type{
		"proxy":       reflect.TypeOf(proxy.Config{}),
		"replication": reflect.TypeOf(replication.Config{}),
		"vip":         reflect.TypeOf(vip.Config{}),
	}
	for k, ours := range fieldVars {
		pt, ok := pkgs[k.pkg]
		if !ok {
			t.Errorf("fieldVars: unknown package %q", k.pkg)
			continue
		}
		if _, ok := pt.FieldByName(k.field); !ok {
			t.Errorf("fieldVars: %s.Config has no field %s", k.pkg, k.field)
		}
		if _, ok := reflect.TypeOf(Config{}).FieldByName(ours); !ok {
			t.Errorf("fieldVars: Config has no field %s (for %s.%s)", ours, k.pkg, k.field)
		}
	}
}

// TestConfigNewErrorsNameTheirVariable: a field error only New can find (the
// interface does not exist) names its variable too, and run exits 2.
func TestConfigNewErrorsNameTheirVariable(t *testing.T) {
	setEnv(t, map[string]string{"SERVERS": "127.0.0.1:1", "LISTEN": "127.0.0.1:0", "ADMIN_LISTEN": "127.0.0.1:0", "PEERS": "10.0.0.2", "VIP": "10.0.0.100/24",
		"HEARTBEAT_SECRET": "0123456789abcdef", "VIP_INTERFACE": "nosuchif0"})
	c, err := loadConfig()
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	vc, err := c.pairConfig()
	if err != nil {
		t.Fatal(err)
	}
	_, err = vip.New(*vc, nil)
	err = c.varError(err)
	var ue *usageError
	const want = `REDIS_PROXY_VIP_INTERFACE="nosuchif0": must name a network interface of this host`
	if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("vip.New with a missing interface: %v", err)
	}
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 || !strings.HasPrefix(errb.String(), "redis-proxy: "+want) {
		t.Errorf("run with a missing interface: exit %d, stderr %q; want 2 and %s", code, errb.String(), want)
	}
}

func TestRunExitCodes(t *testing.T) {
	setEnv(t, map[string]string{"POOL_SIZE": "x", "SERVERS": "a:1"})
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 {
		t.Fatalf("bad config: exit %d, want 2 (stderr %q)", code, errb.String())
	}
	if got := errb.String(); got != "redis-proxy: REDIS_PROXY_POOL_SIZE=\"x\": want an integer from 1 to 64\n" {
		t.Fatalf("stderr %q", got)
	}
	errb.Reset()
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
	out.Reset()
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, v := range []string{"REDIS_PROXY_SERVERS", "(required)", "REDIS_PROXY_HOLD_TIMEOUT", "5s", "REDIS_PROXY_MAX_BULK", "512MiB", "REDIS_PROXY_READ_FROM",
		"REDIS_PROXY_ADMIN_TOKEN ", "REDIS_PROXY_ADMIN_TOKEN_FILE", "REDIS_PROXY_PASSWORD_FILE", "REDIS_PROXY_BACKEND_PASSWORD_FILE",
		"REDIS_PROXY_HEARTBEAT_SECRET_FILE", "REDIS_PROXY_ADMIN_PROTECT_READS", "(REDIS_PROXY_ADMIN_LISTEN=) to disable"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("--help lacks %q:\n%s", v, out.String())
		}
	}
}

func TestParseByteSize(t *testing.T) {
	cases := map[string]int64{"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "64kb": 64 << 10, "1g": 1 << 30, "10 MB": 10 << 20}
	for in, want := range cases {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MB", "-1", "1.5MB", "99999999999GB"} {
		if _, err := parseByteSize(bad); err == nil {
			t.Errorf("parseByteSize(%q) accepted", bad)
		}
	}
}

// TestLoopVariablesReachTheProxy: how BUSY_POLL and COALESCE arrive in the
// proxy package's Config ("" leaves the variable unset: its default).
func TestLoopVariablesReachTheProxy(t *testing.T) {
	busyPoll := func(c proxy.Config) any { return c.BusyPoll }
	writeAtOnce := func(c proxy.Config) any { return c.WriteAtOnce }
	for _, tc := range []struct {
		name, env string
		field     func(proxy.Config) any
		want      any
	}{
		{"BUSY_POLL", "", busyPoll, 100 * time.Microsecond},
		{"BUSY_POLL", "0", busyPoll, time.Duration(-1)}, // off: the proxy package's -1 (its zero means the default)
		{"BUSY_POLL", "250us", busyPoll, 250 * time.Microsecond},
		{"COALESCE", "", writeAtOnce, false}, // coalescing on by default
		{"COALESCE", "true", writeAtOnce, false},
		{"COALESCE", "false", writeAtOnce, true},
		{"COALESCE", "0", writeAtOnce, true},
	} {
		setEnv(t, map[string]string{"SERVERS": "a:1", tc.name: tc.env})
		c, err := loadConfig()
		if err != nil {
			t.Fatalf("%s=%q: %v", tc.name, tc.env, err)
		}
		if got := tc.field(c.proxyConfig(slog.New(slog.DiscardHandler))); got != tc.want {
			t.Errorf("%s=%q: the proxy gets %v, want %v", tc.name, tc.env, got, tc.want)
		}
	}
}

// TestConfigDocListsEveryVariable: the table of variables in
// docs/configuration.md names every REDIS_PROXY_* variable the binary
// reads, with its default.
func TestConfigDocListsEveryVariable(t *testing.T) {
	const doc = "docs/configuration.md"
	text, err := os.ReadFile("../../" + doc)
	if err != nil {
		t.Fatal(err)
	}
	ct := reflect.TypeOf(Config{})
	for i := 0; i < ct.NumField(); i++ {
		f := ct.Field(i)
		name := envPrefix + "_" + envName(f.Name)
		if f.Tag.Get("secret") == "true" && !bytes.Contains(text, []byte("| `"+name+"_FILE` | ")) {
			t.Errorf("%s: no table row for %s_FILE", doc, name)
		}
		row := "| `" + name + "` | "
		at := bytes.Index(text, []byte(row))
		if at < 0 {
			t.Errorf("%s: no table row for %s", doc, name)
			continue
		}
		if def := f.Tag.Get("default"); def != "" {
			line := text[at : at+bytes.IndexByte(text[at:], '\n')]
			if !bytes.Contains(line, []byte("`"+def+"`")) {
				t.Errorf("%s: the row of %s does not give its default `%s`: %s", doc, name, def, line)
			}
		}
	}
}
