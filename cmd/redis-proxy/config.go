package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/redis-proxy/redis-proxy/internal/config"
	"github.com/redis-proxy/redis-proxy/proxy"
	"github.com/redis-proxy/redis-proxy/replication"
)

// envPrefix is the prefix of every variable: REDIS_PROXY_LISTEN, ...
const envPrefix = "REDIS_PROXY"

// Config is everything the process reads from the environment. Each field's
// `accepts` tag is what a bad value is told it should be; a field tagged
// `secret` never has its value repeated in an error.
type Config struct {
	Listen      string   `default:":6379" desc:"client address (host:port); none: no plain listener (TLS_LISTEN alone)" accepts:"host:port, or none with TLS_LISTEN set"`
	Servers     []string `required:"true" desc:"every Redis server, comma-separated host:port; a state file in STATE_DIR (servers changed at run time) takes its place" accepts:"comma-separated host:port list"`
	StateDir    string   `split_words:"true" desc:"directory where this proxy keeps its list of servers once it is changed at run time (redis-proxy servers add/remove), written atomically and read at start instead of SERVERS; empty: such changes are refused" accepts:"a directory path"`
	ReadFrom    string   `split_words:"true" default:"master" desc:"where read-only commands go: master, or replicas (round-robin over healthy replicas)" accepts:"master or replicas"`
	AdminListen string   `split_words:"true" default:":9736" desc:"admin HTTP address: /metrics, /healthz, /topology, POST /switchover; set to the empty string (REDIS_PROXY_ADMIN_LISTEN=) to disable the admin API, unset for the default" accepts:"host:port, or empty to disable"`
	AdminToken  string   `split_words:"true" desc:"bearer token the admin API requires for POST /switchover and every other request that is not a GET (and for reads with ADMIN_PROTECT_READS); empty: such requests are accepted from loopback peers only" accepts:"16 or more printable ASCII characters without spaces" secret:"true"`
	// AdminProtectReads leaves /healthz open: a container or load-balancer
	// health check has no token, and it says only whether a master is known.
	AdminProtectReads bool `split_words:"true" default:"false" desc:"true: /metrics and /topology need the admin token too (without one, loopback peers only); /healthz stays open for health checks" accepts:"true or false"`

	PoolSize   int           `split_words:"true" default:"2" desc:"shared connections per Redis server: one per event loop, the rest (at least one) for clients on goroutines" accepts:"an integer from 1 to 64"`
	EventLoops int           `split_words:"true" default:"1" desc:"event loops (threads) serving clients with stateless commands; 0: a goroutine per client" accepts:"an integer from 0 to 64"`
	BusyPoll   time.Duration `split_words:"true" default:"100us" desc:"with one or two clients, an event loop polls this long for the next request before it sleeps (lower latency for up to this much CPU per request); 0 never" accepts:"a duration from 0 to 10ms, such as 100us"`
	Coalesce   bool          `default:"true" desc:"while more than eight clients of an event loop await replies, requests wait for the replies to the connection's last write and then go to Redis together (less CPU per request under load); false: every request at once (a Redis across a slow link)" accepts:"true or false"`
	MaxClients int           `split_words:"true" default:"10000" desc:"client connections accepted at once" accepts:"a positive integer"`
	MaxPinned  int           `split_words:"true" default:"1000" desc:"dedicated backend connections for stateful sessions (MULTI, blocking, pub/sub, ...)" accepts:"a positive integer"`
	Password   string        `desc:"password clients must give with AUTH; empty: no AUTH needed" accepts:"a string" secret:"true"`

	BackendUsername string `split_words:"true" desc:"ACL user the proxy authenticates as to Redis" accepts:"a string"`
	BackendPassword string `split_words:"true" desc:"password the proxy authenticates with to Redis" accepts:"a string" secret:"true"`

	OperatorUser     string `split_words:"true" default:"redis-proxy-operator" desc:"user name of the operator: AUTH OPERATOR_USER OPERATOR_PASSWORD lets a client run what the command policy keeps for the operator (CONFIG SET of protected settings, ACL, CLIENT PAUSE, DEBUG, MODULE, unredacted CONFIG GET)" accepts:"one word"`
	OperatorPassword string `split_words:"true" desc:"password of the operator (see OPERATOR_USER); empty: no client is the operator, and those commands are refused to all" accepts:"a string other than PASSWORD" secret:"true"`

	TLSListen            string        `envconfig:"TLS_LISTEN" desc:"TLS client address (host:port), beside LISTEN; empty: none. Its clients are served by goroutines, not event loops" accepts:"host:port or empty"`
	TLSCertFile          string        `envconfig:"TLS_CERT_FILE" desc:"certificate chain (PEM, leaf first) of the TLS listener" accepts:"a readable PEM certificate file"`
	TLSKeyFile           string        `envconfig:"TLS_KEY_FILE" desc:"private key (PEM) of TLS_CERT_FILE" accepts:"a readable PEM private key file matching TLS_CERT_FILE"`
	TLSCAFile            string        `envconfig:"TLS_CA_FILE" desc:"CA certificates (PEM); if set, TLS clients must present a certificate they signed" accepts:"a readable PEM file of CA certificates"`
	BackendTLS           bool          `envconfig:"BACKEND_TLS" default:"false" desc:"connect to Redis over TLS (every connection; the servers replicate over TLS too)" accepts:"true or false"`
	BackendTLSCAFile     string        `envconfig:"BACKEND_TLS_CA_FILE" desc:"CA certificates (PEM) Redis's certificates must chain to; empty: the system's" accepts:"a readable PEM file of CA certificates"`
	BackendTLSServerName string        `envconfig:"BACKEND_TLS_SERVER_NAME" desc:"name Redis's certificates must hold; empty: the host of each server's address" accepts:"a host name"`
	BackendTLSCertFile   string        `envconfig:"BACKEND_TLS_CERT_FILE" desc:"client certificate (PEM) the proxy presents to Redis; empty: none" accepts:"a readable PEM certificate file"`
	BackendTLSKeyFile    string        `envconfig:"BACKEND_TLS_KEY_FILE" desc:"private key (PEM) of BACKEND_TLS_CERT_FILE" accepts:"a readable PEM private key file matching BACKEND_TLS_CERT_FILE"`
	TLSReloadInterval    time.Duration `envconfig:"TLS_RELOAD_INTERVAL" default:"5s" desc:"how often the TLS files are read again; changed files apply to new connections, a bad one is logged and the old kept" accepts:"a positive duration such as 5s"`

	MaxBulk            ByteSize      `split_words:"true" default:"512MiB" desc:"largest bulk string in a request (Redis's proto-max-bulk-len)" accepts:"a size such as 512MiB, 64KiB or 1048576"`
	ClientOutputLimit  ByteSize      `split_words:"true" default:"256MiB" desc:"replies buffered for one client before it is disconnected" accepts:"a size such as 256MiB"`
	MaxInflightMemory  ByteSize      `split_words:"true" default:"1GiB" desc:"memory for large requests (values over 4MiB) being read, across all clients; a client waits, unread, for room up to HOLD_TIMEOUT" accepts:"a size of 4MiB or more, such as 1GiB"`
	IdleTimeout        time.Duration `split_words:"true" default:"0s" desc:"close clients idle this long; 0 never (subscribers and blocked clients are exempt)" accepts:"a duration such as 300s; 0 disables"`
	ClientWriteTimeout time.Duration `split_words:"true" default:"60s" desc:"disconnect a client that does not read its replies for this long" accepts:"a positive duration such as 60s"`
	HoldTimeout        time.Duration `split_words:"true" default:"5s" desc:"how long commands wait for a master during a failover before an error" accepts:"a positive duration such as 5s"`
	MaxHeld            int           `split_words:"true" default:"10000" desc:"clients that may wait for a master at once" accepts:"a positive integer"`
	DialTimeout        time.Duration `split_words:"true" default:"1s" desc:"connect and authenticate timeout to Redis" accepts:"a positive duration such as 1s"`

	CheckInterval time.Duration `split_words:"true" default:"250ms" desc:"how often every Redis is checked (ROLE, INFO replication)" accepts:"a positive duration such as 250ms"`
	DownAfter     time.Duration `split_words:"true" default:"1s" desc:"a Redis is down after this long without a valid reply" accepts:"a duration longer than CHECK_INTERVAL"`
	JoinMaxLag    time.Duration `split_words:"true" default:"1s" desc:"a server added at run time serves reads once it is at most this far behind the master (holds what the master held this long before)" accepts:"a duration of at least CHECK_INTERVAL, such as 1s"`
	BusyGrace     time.Duration `split_words:"true" default:"0s" desc:"a Redis silent while running a script or function the proxy sent it stays up this long after it was sent (Redis answers -BUSY, a reply, after its busy-reply-threshold); 0: 5s plus DOWN_AFTER" accepts:"a duration such as 6s"`

	// Durable writes and replica lag (issue 17): the replication manager's
	// inputs. WRITE_ACKS and WRITE_ACK_TIMEOUT are the data path's too.
	MaxReplicaLag   time.Duration `split_words:"true" default:"0s" desc:"a replica serves reads only while a check shows it holds everything the master held this long before (every replica in the read rotation holds what the master held MAX_REPLICA_LAG plus CHECK_INTERVAL before); 0: no bound" accepts:"0, or a duration of at least three times CHECK_INTERVAL, such as 1s"`
	WriteAcks       int           `split_words:"true" default:"0" desc:"a write is acknowledged to the client only once this many replicas have it (WAIT); a failover then waits up to PROMOTION_WAIT for an unreachable replica that may hold acknowledged writes the others lack; 0: acknowledged once the master has it" accepts:"an integer from 0 to 16"`
	WriteAckTimeout time.Duration `split_words:"true" default:"1s" desc:"with WRITE_ACKS, how long a write waits for its replicas before the client gets an error" accepts:"a positive duration such as 1s"`
	ReadYourWrites  bool          `split_words:"true" default:"false" desc:"with READ_FROM=replicas, a client's reads go to the master for MAX_REPLICA_LAG plus CHECK_INTERVAL after its write, so it reads what it wrote" accepts:"true or false; true needs READ_FROM=replicas and MAX_REPLICA_LAG"`
	PromotionWait   time.Duration `split_words:"true" default:"5s" desc:"with WRITE_ACKS, the longest a failover waits for an unreachable replica that may hold acknowledged writes; then the best reachable replica is promoted and an event says writes may be lost" accepts:"a positive duration such as 5s"`

	Peers           string        `desc:"the other proxy of the pair: comma-separated IP[:port]; empty runs standalone (always the replication authority)" accepts:"comma-separated IP or IP:port"`
	VIP             string        `desc:"virtual IP with prefix the pair's MASTER holds, e.g. 172.29.0.100/24; empty: no address is managed" accepts:"an IPv4 prefix such as 172.29.0.100/24"`
	VIPInterface    string        `envconfig:"VIP_INTERFACE" default:"eth0" desc:"interface that holds the VIP" accepts:"an interface name"`
	Priority        int           `default:"100" desc:"election priority 1-254; higher holds the VIP (ties: the higher address)" accepts:"an integer from 1 to 254"`
	AdvertInterval  time.Duration `split_words:"true" default:"200ms" desc:"heartbeat interval; a backup takes over after 3 intervals plus a priority skew" accepts:"a duration from 10ms, such as 200ms"`
	Preempt         bool          `default:"true" desc:"a recovered higher-priority proxy takes the VIP back (false: keepalived's nopreempt)" accepts:"true or false"`
	PreemptDelay    time.Duration `split_words:"true" default:"0s" desc:"how long a higher-priority backup waits before preempting" accepts:"a duration such as 5s"`
	HeartbeatSecret string        `split_words:"true" desc:"shared HMAC key of the heartbeat (required with a VIP, 16+ characters)" accepts:"a string of 16 or more characters" secret:"true"`
	HeartbeatPort   uint16        `split_words:"true" default:"5405" desc:"UDP port of the heartbeat" accepts:"a port number"`
	Address         string        `desc:"this proxy's own heartbeat address; empty: the one that reaches the first peer" accepts:"an IP address"`
	Track           string        `default:"demote" desc:"a proxy that reaches no Redis: demote (ranks below a healthy peer) or fault" accepts:"demote or fault"`

	LogLevel  string `split_words:"true" default:"info" desc:"debug, info, warn or error" accepts:"debug, info, warn or error"`
	LogFormat string `split_words:"true" default:"text" desc:"text or json" accepts:"text or json"`

	// ConfigFile is read by loadConfig (configfile.go), around envconfig.
	ConfigFile string `envconfig:"CONFIG_FILE" desc:"file of REDIS_PROXY_*=value lines that override the environment, read at start and again at each reload (SIGHUP, POST /reload): how a running proxy's settings are changed" accepts:"a readable file of KEY=VALUE lines"`
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

// loadEnvConfig reads the environment (loadConfig adds the config file's
// variables to it first). Errors name the variable and what it
// accepts. A variable set to the empty string counts as unset (its default
// applies), as compose files and .env templates often leave them; the one
// exception is REDIS_PROXY_ADMIN_LISTEN, whose empty value disables the
// admin API (see adminListenVar). A secret may come from a file instead
// (secretFromFile).
func loadEnvConfig() (Config, error) {
	var c Config
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); v == "" && strings.HasPrefix(k, envPrefix+"_") && k != adminListenVar {
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
	cv := reflect.ValueOf(&c).Elem()
	for _, f := range reflect.VisibleFields(cv.Type()) {
		if f.Tag.Get("secret") != "true" {
			continue
		}
		v, ok, err := secretFromFile(envPrefix + "_" + envName(f.Name))
		if err != nil {
			return c, err
		}
		if ok {
			cv.FieldByIndex(f.Index).SetString(v)
		}
	}
	return c, c.Validate()
}

// adminListenVar is the one variable whose empty value is not "unset":
// REDIS_PROXY_ADMIN_LISTEN= turns the admin API off, while leaving it
// unset keeps the default :9736. (envconfig applies a default only to a
// variable that is absent, so loadConfig just leaves this one in place.)
const adminListenVar = envPrefix + "_ADMIN_LISTEN"

// maxSecretFile bounds what secretFromFile reads: a secret is short, and a
// large file is more likely the wrong one than a secret.
const maxSecretFile = 64 << 10

// secretFromFile reads the secret variable name (REDIS_PROXY_PASSWORD, ...)
// from the file its name_FILE variable names, as Docker and Kubernetes
// secrets are mounted: the file's content with its trailing newlines
// removed. ok is false when name_FILE is unset or empty. Setting both the
// variable and name_FILE is an error, as are an unreadable or empty file;
// errors are one line, name the variable and the path, and never the
// content.
func secretFromFile(name string) (value string, ok bool, err error) {
	fileVar := name + "_FILE"
	path := os.Getenv(fileVar)
	if path == "" {
		return "", false, nil
	}
	if os.Getenv(name) != "" {
		return "", false, &usageError{fmt.Sprintf("%s and %s are both set: want one of them", name, fileVar)}
	}
	b, err := readSmallFile(path, maxSecretFile)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return "", false, &usageError{fmt.Sprintf("%s=%q: cannot read the file: %v", fileVar, path, err)}
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", false, &usageError{fmt.Sprintf("%s=%q: the file is empty (want the secret in it)", fileVar, path)}
	}
	return v, true, nil
}

func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d KiB (is it the right file?)", limit>>10)
	}
	return b, nil
}

// Validate checks values and the rules between them. Rules of a package's
// Config are that package's Validate, whose *config.FieldError varError
// turns into a usage error naming the variable.
func (c Config) Validate() error {
	if err := checkHostPort(c.Listen); err != nil && c.Listen != listenNone {
		return badVar("Listen", c.Listen, accepts("Listen"))
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := checkAdminListen(c.AdminListen); err != nil {
		return err
	}
	if c.AdminToken != "" {
		if err := checkAdminToken(c.AdminToken); err != nil {
			return &usageError{fmt.Sprintf("%s_%s: %v", envPrefix, envName("AdminToken"), err)}
		}
	}
	if _, err := proxy.ParseReadFrom(c.ReadFrom); err != nil {
		return badVar("ReadFrom", c.ReadFrom, accepts("ReadFrom"))
	}
	// A zero would be the package's default, not what was asked for, and
	// EVENT_LOOPS=0 and BUSY_POLL=0 mean "none" here (proxyConfig): what
	// the variables accept beyond the packages' own rules is checked here;
	// the rest by each package's Validate below.
	for _, f := range []string{"PoolSize", "MaxClients", "MaxPinned", "MaxHeld", "MaxBulk", "ClientOutputLimit",
		"MaxInflightMemory", "ClientWriteTimeout", "HoldTimeout", "DialTimeout", "CheckInterval", "DownAfter"} {
		if v := reflect.ValueOf(c).FieldByName(f); v.IsZero() {
			return badVar(f, fmt.Sprint(v.Interface()), accepts(f)) // 0, or 0s for a duration
		}
	}
	if c.EventLoops < 0 {
		return badVar("EventLoops", strconv.Itoa(c.EventLoops), accepts("EventLoops"))
	}
	if c.BusyPoll < 0 {
		return badVar("BusyPoll", c.BusyPoll.String(), accepts("BusyPoll"))
	}
	if c.WriteAcks < 0 || c.WriteAcks > maxWriteAcks {
		return badVar("WriteAcks", strconv.Itoa(c.WriteAcks), accepts("WriteAcks"))
	}
	if c.ReadYourWrites && (c.ReadFrom != "replicas" || c.MaxReplicaLag == 0) {
		return badVar("ReadYourWrites", "true", accepts("ReadYourWrites"))
	}
	// A zero WAIT timeout would block a write for ever.
	for _, f := range []string{"WriteAckTimeout", "PromotionWait"} {
		if d := reflect.ValueOf(c).FieldByName(f).Interface().(time.Duration); d <= 0 {
			return badVar(f, d.String(), accepts(f))
		}
	}
	if err := c.proxyConfig(slog.New(slog.DiscardHandler)).Validate(); err != nil {
		return c.varError(err)
	}
	if err := c.replicationConfig().Validate(); err != nil {
		return c.varError(err)
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

// maxWriteAcks bounds WRITE_ACKS: more replicas than any deployment of
// this proxy runs is a typo.
const maxWriteAcks = 16

// checkAdminToken says what is wrong with a token, without repeating it.
// Sixteen characters keep guessing over HTTP hopeless; the characters are
// those an Authorization header carries unchanged.
func checkAdminToken(tok string) error {
	if len(tok) < 16 {
		return fmt.Errorf("must be at least 16 characters, got %d", len(tok))
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return fmt.Errorf("character %d is not printable ASCII (want no spaces, control or non-ASCII characters)", i+1)
		}
	}
	return nil
}

func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
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

		OperatorUser:      c.OperatorUser,
		OperatorPassword:  c.OperatorPassword,
		MaxInflightMemory: int64(c.MaxInflightMemory),

		WriteAcks:       c.WriteAcks,
		WriteAckTimeout: c.WriteAckTimeout,
		ReadYourWrites:  c.ReadYourWrites,
		// The manager's bound: a replica in the read rotation holds what
		// the master had MAX_REPLICA_LAG plus a check interval before.
		// (Only where the bound is set: the replication package says what
		// is wrong with a bad one.)
		MaxReplicaLag: replication.Config{MaxReplicaLag: c.MaxReplicaLag, CheckInterval: c.CheckInterval}.ReplicaStaleness(),
	}
}

// replicationConfig is the replication package's part of the
// configuration; serve adds Authority, Pauser and Logger.
func (c Config) replicationConfig() replication.Config {
	return replication.Config{
		Servers:       c.Servers,
		CheckInterval: c.CheckInterval,
		DownAfter:     c.DownAfter,
		Username:      c.BackendUsername,
		Password:      c.BackendPassword,
		BusyGrace:     c.BusyGrace,
		JoinMaxLag:    c.JoinMaxLag,
		MaxReplicaLag: c.MaxReplicaLag,
		WriteAcks:     c.WriteAcks,
		PromotionWait: c.PromotionWait,
	}
}

// pkgField is a field of a package's Config, as a *config.FieldError
// names it.
type pkgField struct{ pkg, field string }

// fieldVars maps each package Config field built from a variable to the
// field of Config that holds the variable. It is the one place that knows
// where proxyConfig, replicationConfig and pairConfig take their fields.
var fieldVars = map[pkgField]string{
	{"proxy", "PoolSize"}:          "PoolSize",
	{"proxy", "MaxClients"}:        "MaxClients",
	{"proxy", "MaxPinned"}:         "MaxPinned",
	{"proxy", "ClientPassword"}:    "Password",
	{"proxy", "BackendUsername"}:   "BackendUsername",
	{"proxy", "BackendPassword"}:   "BackendPassword",
	{"proxy", "ReadFrom"}:          "ReadFrom",
	{"proxy", "MaxBulk"}:           "MaxBulk",
	{"proxy", "MaxOutput"}:         "ClientOutputLimit",
	{"proxy", "IdleTimeout"}:       "IdleTimeout",
	{"proxy", "WriteTimeout"}:      "ClientWriteTimeout",
	{"proxy", "HoldTimeout"}:       "HoldTimeout",
	{"proxy", "MaxHeld"}:           "MaxHeld",
	{"proxy", "DialTimeout"}:       "DialTimeout",
	{"proxy", "EventLoops"}:        "EventLoops",
	{"proxy", "BusyPoll"}:          "BusyPoll",
	{"proxy", "WriteAtOnce"}:       "Coalesce",
	{"proxy", "OperatorUser"}:      "OperatorUser",
	{"proxy", "OperatorPassword"}:  "OperatorPassword",
	{"proxy", "MaxInflightMemory"}: "MaxInflightMemory",
	{"proxy", "WriteAcks"}:         "WriteAcks",
	{"proxy", "WriteAckTimeout"}:   "WriteAckTimeout",
	{"proxy", "ReadYourWrites"}:    "ReadYourWrites",
	{"proxy", "MaxReplicaLag"}:     "MaxReplicaLag",

	{"replication", "Servers"}:       "Servers",
	{"replication", "CheckInterval"}: "CheckInterval",
	{"replication", "DownAfter"}:     "DownAfter",
	{"replication", "Username"}:      "BackendUsername",
	{"replication", "Password"}:      "BackendPassword",
	{"replication", "BusyGrace"}:     "BusyGrace",
	{"replication", "JoinMaxLag"}:    "JoinMaxLag",
	{"replication", "MaxReplicaLag"}: "MaxReplicaLag",
	{"replication", "WriteAcks"}:     "WriteAcks",
	{"replication", "PromotionWait"}: "PromotionWait",

	{"vip", "Interface"}:    "VIPInterface",
	{"vip", "VIP"}:          "VIP",
	{"vip", "Peers"}:        "Peers",
	{"vip", "Address"}:      "Address",
	{"vip", "Port"}:         "HeartbeatPort",
	{"vip", "Priority"}:     "Priority",
	{"vip", "Interval"}:     "AdvertInterval",
	{"vip", "NoPreempt"}:    "Preempt",
	{"vip", "PreemptDelay"}: "PreemptDelay",
	{"vip", "Secret"}:       "HeartbeatSecret",
	{"vip", "Track"}:        "Track",
}

// varError turns a package's *config.FieldError into a usage error naming
// the variable the field was built from and its value (not a secret's):
// REDIS_PROXY_DOWN_AFTER="1s": must be longer than ... A field no variable
// sets keeps the package's own wording. Other errors, and nil, are
// returned as they are.
func (c Config) varError(err error) error {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	field, ok := fieldVars[pkgField{fe.Pkg, fe.Field}]
	if !ok {
		return &usageError{fe.Error()}
	}
	name := envPrefix + "_" + envName(field)
	f, _ := reflect.TypeOf(c).FieldByName(field)
	if f.Tag.Get("secret") == "true" {
		return &usageError{fmt.Sprintf("%s: %s", name, fe.Msg)}
	}
	v := reflect.ValueOf(c).FieldByName(field).Interface()
	if list, ok := v.([]string); ok {
		v = strings.Join(list, ",")
	}
	return &usageError{fmt.Sprintf("%s=%q: %s", name, fmt.Sprint(v), fe.Msg)}
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
  redis-proxy servers [add HOST:PORT | remove HOST:PORT]
                          list, add or remove Redis servers while running (via
                          the admin API of the active proxy; needs STATE_DIR)
  redis-proxy reload      read the configuration again and apply what a
                          running proxy can change (as SIGHUP does)
  redis-proxy version     print the version and the git revision
  redis-proxy --help      this text

healthcheck, status, switchover, servers and reload read only
REDIS_PROXY_ADMIN_LISTEN and REDIS_PROXY_ADMIN_TOKEN (or _ADMIN_TOKEN_FILE), and
send the token.

SIGHUP or POST /reload reads the configuration again: the environment (fixed
for a process) under the lines of REDIS_PROXY_CONFIG_FILE, and the files of
the secrets and of TLS; all is validated first, and a bad value changes
nothing. Passwords, READ_FROM, limits, timeouts, LOG_LEVEL and the
admin token apply at once, without dropping a client; the log names any
other changed variable, which needs a restart (docs/operations.md).

Configuration is read from the environment. A variable set to the empty
string counts as unset (its default applies), except REDIS_PROXY_ADMIN_LISTEN:
set to the empty string it disables the admin API. Each secret can be read
from a file instead, named by its _FILE variable (trailing newlines dropped;
set one of the two, not both).

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
		name := envPrefix + "_" + envName(f.Name)
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, def, f.Tag.Get("desc"))
		if f.Tag.Get("secret") == "true" {
			fmt.Fprintf(tw, "%s_FILE\t%s\t%s\n", name, `""`, "file holding "+name+" (not with it)")
		}
	}
	tw.Flush()
}
