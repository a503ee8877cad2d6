package main

import (
	"bytes"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy"
)

// setEnv sets REDIS_PROXY_* variables for one test; everything else of
// ours is cleared so the host environment cannot leak in.
func setEnv(t *testing.T, kv map[string]string) {
	t.Helper()
	for _, name := range []string{"LISTEN", "SERVERS", "READ_FROM", "ADMIN_LISTEN", "POOL_SIZE", "EVENT_LOOPS", "BUSY_POLL", "COALESCE", "MAX_CLIENTS",
		"MAX_PINNED", "PASSWORD", "BACKEND_USERNAME", "BACKEND_PASSWORD", "MAX_BULK", "CLIENT_OUTPUT_LIMIT",
		"IDLE_TIMEOUT", "CLIENT_WRITE_TIMEOUT", "HOLD_TIMEOUT", "MAX_HELD", "DIAL_TIMEOUT", "CHECK_INTERVAL",
		"DOWN_AFTER", "LOG_LEVEL", "LOG_FORMAT"} {
		t.Setenv("REDIS_PROXY_"+name, "")
	}
	for k, v := range kv {
		t.Setenv("REDIS_PROXY_"+k, v)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	setEnv(t, map[string]string{"SERVERS": "10.0.0.1:6379,10.0.0.2:6379"})
	// envconfig treats an empty variable as unset only if it is absent,
	// so clear the empties set above.
	c, err := loadConfig()
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if c.Listen != ":6379" || c.PoolSize != 2 || c.ReadFrom != "master" || c.HoldTimeout != 5*time.Second ||
		c.CheckInterval != 250*time.Millisecond || c.DownAfter != time.Second || c.MaxBulk != 512<<20 ||
		len(c.Servers) != 2 || c.Servers[1] != "10.0.0.2:6379" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string // the whole one-line message
	}{
		{map[string]string{}, `REDIS_PROXY_SERVERS is required: want comma-separated host:port list`},
		{map[string]string{"SERVERS": "redis-a"}, `REDIS_PROXY_SERVERS="redis-a": want comma-separated host:port list (each once, with a host and a port)`},
		{map[string]string{"SERVERS": "a:1,a:1"}, `REDIS_PROXY_SERVERS="a:1,a:1": want comma-separated host:port list (each once, with a host and a port)`},
		{map[string]string{"SERVERS": "a:1", "POOL_SIZE": "lots"}, `REDIS_PROXY_POOL_SIZE="lots": want an integer from 1 to 64`},
		{map[string]string{"SERVERS": "a:1", "POOL_SIZE": "0"}, `REDIS_PROXY_POOL_SIZE="0": want an integer from 1 to 64`},
		{map[string]string{"SERVERS": "a:1", "EVENT_LOOPS": "-1"}, `REDIS_PROXY_EVENT_LOOPS="-1": want an integer from 0 to 64`},
		{map[string]string{"SERVERS": "a:1", "EVENT_LOOPS": "65"}, `REDIS_PROXY_EVENT_LOOPS="65": want an integer from 0 to 64`},
		{map[string]string{"SERVERS": "a:1", "BUSY_POLL": "11ms"}, `REDIS_PROXY_BUSY_POLL="11ms": want a duration from 0 to 10ms, such as 100us`},
		{map[string]string{"SERVERS": "a:1", "BUSY_POLL": "-1us"}, `REDIS_PROXY_BUSY_POLL="-1µs": want a duration from 0 to 10ms, such as 100us`},
		{map[string]string{"SERVERS": "a:1", "COALESCE": "sometimes"}, `REDIS_PROXY_COALESCE="sometimes": want true or false`},
		{map[string]string{"SERVERS": "a:1", "READ_FROM": "slaves"}, `REDIS_PROXY_READ_FROM="slaves": want master or replicas`},
		{map[string]string{"SERVERS": "a:1", "HOLD_TIMEOUT": "5"}, `REDIS_PROXY_HOLD_TIMEOUT="5": want a positive duration such as 5s`},
		{map[string]string{"SERVERS": "a:1", "MAX_BULK": "big"}, `REDIS_PROXY_MAX_BULK="big": want a size such as 512MiB, 64KiB or 1048576`},
		{map[string]string{"SERVERS": "a:1", "LISTEN": "6379"}, `REDIS_PROXY_LISTEN="6379": want host:port`},
		{map[string]string{"SERVERS": "a:1", "CHECK_INTERVAL": "2s"}, `REDIS_PROXY_DOWN_AFTER=1s must be longer than REDIS_PROXY_CHECK_INTERVAL=2s: a server needs at least two checks to be judged down`},
		{map[string]string{"SERVERS": "a:1", "BACKEND_USERNAME": "proxy"}, `REDIS_PROXY_BACKEND_USERNAME is set but REDIS_PROXY_BACKEND_PASSWORD is empty: want both or neither`},
		{map[string]string{"SERVERS": "a:1", "LOG_LEVEL": "loud"}, `REDIS_PROXY_LOG_LEVEL="loud": want debug, info, warn or error`},
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
	for _, v := range []string{"REDIS_PROXY_SERVERS", "(required)", "REDIS_PROXY_HOLD_TIMEOUT", "5s", "REDIS_PROXY_MAX_BULK", "512MiB", "REDIS_PROXY_READ_FROM"} {
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

// TestReadmeListsEveryVariable: the README's table of variables names every
// REDIS_PROXY_* variable the binary reads, with its default.
func TestReadmeListsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ct := reflect.TypeOf(Config{})
	for i := 0; i < ct.NumField(); i++ {
		f := ct.Field(i)
		name := envPrefix + "_" + envName(f.Name)
		row := "| `" + name + "` | "
		at := bytes.Index(readme, []byte(row))
		if at < 0 {
			t.Errorf("README: no table row for %s", name)
			continue
		}
		if def := f.Tag.Get("default"); def != "" {
			line := readme[at : at+bytes.IndexByte(readme[at:], '\n')]
			if !bytes.Contains(line, []byte("`"+def+"`")) {
				t.Errorf("README: the row of %s does not give its default `%s`: %s", name, def, line)
			}
		}
	}
}
