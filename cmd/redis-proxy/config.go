package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/redis-proxy/redis-proxy/proxy"
)

// envPrefix is the prefix of every variable: REDIS_PROXY_LISTEN, ...
const envPrefix = "REDIS_PROXY"

// Config is everything the process reads from the environment. Each field's
// `accepts` tag is what a bad value is told it should be.
type Config struct {
	Listen      string   `default:":6379" desc:"client address (host:port)" accepts:"host:port"`
	Servers     []string `required:"true" desc:"every Redis server, comma-separated host:port" accepts:"comma-separated host:port list"`
	ReadFrom    string   `split_words:"true" default:"master" desc:"where read-only commands go: master, or replicas (round-robin over healthy replicas)" accepts:"master or replicas"`
	AdminListen string   `split_words:"true" default:":9736" desc:"admin HTTP address: /metrics, /healthz, /topology; empty disables" accepts:"host:port or empty"`

	PoolSize   int           `split_words:"true" default:"2" desc:"shared connections per Redis server: one per event loop, the rest (at least one) for clients on goroutines" accepts:"an integer from 1 to 64"`
	EventLoops int           `split_words:"true" default:"1" desc:"event loops (threads) serving clients with stateless commands; 0: a goroutine per client" accepts:"an integer from 0 to 64"`
	BusyPoll   time.Duration `split_words:"true" default:"100us" desc:"with one or two clients, an event loop polls this long for the next request before it sleeps (lower latency for up to this much CPU per request); 0 never" accepts:"a duration from 0 to 10ms, such as 100us"`
	Coalesce   bool          `default:"true" desc:"while more than eight clients of an event loop await replies, requests wait for the replies to the connection's last write and then go to Redis together (less CPU per request under load); false: every request at once (a Redis across a slow link)" accepts:"true or false"`
	MaxClients int           `split_words:"true" default:"10000" desc:"client connections accepted at once" accepts:"a positive integer"`
	MaxPinned  int           `split_words:"true" default:"1000" desc:"dedicated backend connections for stateful sessions (MULTI, blocking, pub/sub, ...)" accepts:"a positive integer"`
	Password   string        `desc:"password clients must give with AUTH; empty: no AUTH needed" accepts:"a string"`

	BackendUsername string `split_words:"true" desc:"ACL user the proxy authenticates as to Redis" accepts:"a string"`
	BackendPassword string `split_words:"true" desc:"password the proxy authenticates with to Redis" accepts:"a string"`

	MaxBulk            ByteSize      `split_words:"true" default:"512MiB" desc:"largest bulk string in a request (Redis's proto-max-bulk-len)" accepts:"a size such as 512MiB, 64KiB or 1048576"`
	ClientOutputLimit  ByteSize      `split_words:"true" default:"256MiB" desc:"replies buffered for one client before it is disconnected" accepts:"a size such as 256MiB"`
	IdleTimeout        time.Duration `split_words:"true" default:"0s" desc:"close clients idle this long; 0 never (subscribers and blocked clients are exempt)" accepts:"a duration such as 300s; 0 disables"`
	ClientWriteTimeout time.Duration `split_words:"true" default:"60s" desc:"disconnect a client that does not read its replies for this long" accepts:"a positive duration such as 60s"`
	HoldTimeout        time.Duration `split_words:"true" default:"5s" desc:"how long commands wait for a master during a failover before an error" accepts:"a positive duration such as 5s"`
	MaxHeld            int           `split_words:"true" default:"10000" desc:"clients that may wait for a master at once" accepts:"a positive integer"`
	DialTimeout        time.Duration `split_words:"true" default:"1s" desc:"connect and authenticate timeout to Redis" accepts:"a positive duration such as 1s"`

	CheckInterval time.Duration `split_words:"true" default:"250ms" desc:"how often every Redis is checked (ROLE, INFO replication)" accepts:"a positive duration such as 250ms"`
	DownAfter     time.Duration `split_words:"true" default:"1s" desc:"a Redis is down after this long without a valid reply" accepts:"a duration longer than CHECK_INTERVAL"`

	Peers           string        `desc:"the other proxy of the pair: comma-separated IP[:port]; empty runs standalone (always the replication authority)" accepts:"comma-separated IP or IP:port"`
	VIP             string        `desc:"virtual IP with prefix the pair's MASTER holds, e.g. 172.29.0.100/24; empty: no address is managed" accepts:"an IPv4 prefix such as 172.29.0.100/24"`
	VIPInterface    string        `envconfig:"VIP_INTERFACE" default:"eth0" desc:"interface that holds the VIP" accepts:"an interface name"`
	Priority        int           `default:"100" desc:"election priority 1-254; higher holds the VIP (ties: the higher address)" accepts:"an integer from 1 to 254"`
	AdvertInterval  time.Duration `split_words:"true" default:"200ms" desc:"heartbeat interval; a backup takes over after 3 intervals plus a priority skew" accepts:"a duration from 10ms, such as 200ms"`
	Preempt         bool          `default:"true" desc:"a recovered higher-priority proxy takes the VIP back (false: keepalived's nopreempt)" accepts:"true or false"`
	PreemptDelay    time.Duration `split_words:"true" default:"0s" desc:"how long a higher-priority backup waits before preempting" accepts:"a duration such as 5s"`
	HeartbeatSecret string        `split_words:"true" desc:"shared HMAC key of the heartbeat (required with a VIP, 16+ characters)" accepts:"a string of 16 or more characters"`
	HeartbeatPort   uint16        `split_words:"true" default:"5405" desc:"UDP port of the heartbeat" accepts:"a port number"`
	Address         string        `desc:"this proxy's own heartbeat address; empty: the one that reaches the first peer" accepts:"an IP address"`
	Track           string        `default:"demote" desc:"a proxy that reaches no Redis: demote (ranks below a healthy peer) or fault" accepts:"demote or fault"`

	LogLevel  string `split_words:"true" default:"info" desc:"debug, info, warn or error" accepts:"debug, info, warn or error"`
	LogFormat string `split_words:"true" default:"text" desc:"text or json" accepts:"text or json"`
}

// ByteSize is a size in bytes read from "512MiB", "64KB", "1mb" or "1048576".
type ByteSize int64

// Decode implements envconfig.Decoder.
func (b *ByteSize) Decode(s string) error {
	v, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = ByteSize(v)
	return nil
}

func parseByteSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
		{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}

// usageError is a configuration error: one line, exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func badVar(field, value, accepts string) error {
	return &usageError{fmt.Sprintf("%s_%s=%q: want %s", envPrefix, envName(field), value, accepts)}
}

// loadConfig reads the environment. Errors name the variable and what it
// accepts. A variable set to the empty string counts as unset (its default
// applies), as compose files and .env templates often leave them.
func loadConfig() (Config, error) {
	var c Config
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); v == "" && strings.HasPrefix(k, envPrefix+"_") {
			os.Unsetenv(k)
		}
	}
	if err := envconfig.Process(envPrefix, &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return c, badVar(pe.FieldName, pe.Value, accepts(pe.FieldName))
		}
		// envconfig's only other error is a missing required variable.
		msg := err.Error()
		if strings.HasPrefix(msg, "required key ") {
			key := strings.TrimSuffix(strings.TrimPrefix(msg, "required key "), " missing value")
			return c, &usageError{fmt.Sprintf("%s is required: want %s", key, accepts(fieldOfEnv(key)))}
		}
		return c, &usageError{msg}
	}
	return c, c.Validate()
}

// Validate checks values and the rules between them.
func (c Config) Validate() error {
	if err := checkHostPort(c.Listen, false); err != nil {
		return badVar("Listen", c.Listen, accepts("Listen"))
	}
	if c.AdminListen != "" {
		if err := checkHostPort(c.AdminListen, false); err != nil {
			return badVar("AdminListen", c.AdminListen, accepts("AdminListen"))
		}
	}
	if len(c.Servers) == 0 {
		return badVar("Servers", "", accepts("Servers"))
	}
	seen := map[string]bool{}
	for _, s := range c.Servers {
		if err := checkHostPort(s, true); err != nil || seen[s] {
			return badVar("Servers", strings.Join(c.Servers, ","), accepts("Servers")+" (each once, with a host and a port)")
		}
		seen[s] = true
	}
	if _, err := proxy.ParseReadFrom(c.ReadFrom); err != nil {
		return badVar("ReadFrom", c.ReadFrom, accepts("ReadFrom"))
	}
	ints := []struct {
		field string
		v     int
		max   int
	}{{"PoolSize", c.PoolSize, 64}, {"MaxClients", c.MaxClients, 1 << 24}, {"MaxPinned", c.MaxPinned, 1 << 24}, {"MaxHeld", c.MaxHeld, 1 << 24}}
	for _, f := range ints {
		if f.v < 1 || f.v > f.max {
			return badVar(f.field, strconv.Itoa(f.v), accepts(f.field))
		}
	}
	if c.EventLoops < 0 || c.EventLoops > 64 {
		return badVar("EventLoops", strconv.Itoa(c.EventLoops), accepts("EventLoops"))
	}
	if c.BusyPoll < 0 || c.BusyPoll > 10*time.Millisecond {
		return badVar("BusyPoll", c.BusyPoll.String(), accepts("BusyPoll"))
	}
	sizes := []struct {
		field string
		v     ByteSize
	}{{"MaxBulk", c.MaxBulk}, {"ClientOutputLimit", c.ClientOutputLimit}}
	for _, f := range sizes {
		if f.v < 1 {
			return badVar(f.field, strconv.FormatInt(int64(f.v), 10), accepts(f.field))
		}
	}
	durs := []struct {
		field    string
		v        time.Duration
		zeroOK   bool
		positive bool
	}{
		{"IdleTimeout", c.IdleTimeout, true, false},
		{"ClientWriteTimeout", c.ClientWriteTimeout, false, true},
		{"HoldTimeout", c.HoldTimeout, false, true},
		{"DialTimeout", c.DialTimeout, false, true},
		{"CheckInterval", c.CheckInterval, false, true},
		{"DownAfter", c.DownAfter, false, true},
	}
	for _, f := range durs {
		if f.v < 0 || (f.v == 0 && !f.zeroOK) {
			return badVar(f.field, f.v.String(), accepts(f.field))
		}
	}
	if c.DownAfter <= c.CheckInterval {
		return &usageError{fmt.Sprintf("%s_DOWN_AFTER=%s must be longer than %s_CHECK_INTERVAL=%s: a server needs at least two checks to be judged down",
			envPrefix, c.DownAfter, envPrefix, c.CheckInterval)}
	}
	if c.BackendUsername != "" && c.BackendPassword == "" {
		return &usageError{fmt.Sprintf("%s_BACKEND_USERNAME is set but %s_BACKEND_PASSWORD is empty: want both or neither", envPrefix, envPrefix)}
	}
	if _, err := c.logLevel(); err != nil {
		return badVar("LogLevel", c.LogLevel, accepts("LogLevel"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return badVar("LogFormat", c.LogFormat, accepts("LogFormat"))
	}
	_, err := c.pairConfig()
	return err
}

func checkHostPort(s string, needHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if needHost && host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || (needHost && n == 0) {
		return errors.New("bad port")
	}
	return nil
}

func (c Config) logLevel() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// proxyConfig is the proxy package's part of the configuration.
func (c Config) proxyConfig(log *slog.Logger) proxy.Config {
	rf, _ := proxy.ParseReadFrom(c.ReadFrom)
	loops := c.EventLoops
	if loops == 0 {
		loops = -1 // the proxy package's "none"
	}
	spin := c.BusyPoll
	if spin == 0 {
		spin = -1 // the proxy package's "never"
	}
	return proxy.Config{
		PoolSize:        c.PoolSize,
		EventLoops:      loops,
		BusyPoll:        spin,
		WriteAtOnce:     !c.Coalesce,
		MaxClients:      c.MaxClients,
		MaxPinned:       c.MaxPinned,
		ClientPassword:  c.Password,
		BackendUsername: c.BackendUsername,
		BackendPassword: c.BackendPassword,
		ReadFrom:        rf,
		MaxBulk:         int64(c.MaxBulk),
		MaxOutput:       int(min(int64(c.ClientOutputLimit), 1<<40)),
		IdleTimeout:     c.IdleTimeout,
		WriteTimeout:    c.ClientWriteTimeout,
		HoldTimeout:     c.HoldTimeout,
		MaxHeld:         c.MaxHeld,
		DialTimeout:     c.DialTimeout,
		Logger:          log.With("component", "proxy"),
	}
}

// envName is the variable suffix of a field: MaxBulk -> MAX_BULK.
func envName(field string) string {
	f, ok := reflect.TypeOf(Config{}).FieldByName(field)
	if name := f.Tag.Get("envconfig"); name != "" {
		return name
	}
	if !ok || f.Tag.Get("split_words") != "true" {
		return strings.ToUpper(field)
	}
	var b strings.Builder
	for i, r := range field {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func fieldOfEnv(key string) string {
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if envPrefix+"_"+envName(t.Field(i).Name) == key {
			return t.Field(i).Name
		}
	}
	return ""
}

func accepts(field string) string {
	if f, ok := reflect.TypeOf(Config{}).FieldByName(field); ok {
		if a := f.Tag.Get("accepts"); a != "" {
			return a
		}
	}
	return "a valid value"
}

// printUsage writes the help text with the table of variables.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `redis-proxy: a high-availability proxy for a Redis master and its replicas.

Usage:
  redis-proxy [run]       serve clients and manage replication (the default)
  redis-proxy healthcheck exit 0 if this node's admin /healthz answers 200
  redis-proxy status      print the topology as JSON from the admin API
  redis-proxy switchover [HOST:PORT]
                          move the master role without losing writes, to the
                          given replica or the best one (via the admin API)
  redis-proxy --help      this text

Configuration is read from the environment:

`)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tDESCRIPTION")
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		def := f.Tag.Get("default")
		if f.Tag.Get("required") == "true" {
			def = "(required)"
		}
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(tw, "%s_%s\t%s\t%s\n", envPrefix, envName(f.Name), def, f.Tag.Get("desc"))
	}
	tw.Flush()
}
