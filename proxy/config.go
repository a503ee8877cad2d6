package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/internal/config"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// ReadFrom says where read-only commands go.
type ReadFrom int

const (
	// ReadFromMaster sends every command to the master.
	ReadFromMaster ReadFrom = iota
	// ReadFromReplicas sends read-only commands outside transactions
	// round-robin to replicas whose link is up, and to the master when
	// there is none.
	ReadFromReplicas
)

func (r ReadFrom) String() string {
	if r == ReadFromReplicas {
		return "replicas"
	}
	return "master"
}

// ParseReadFrom parses "master" or "replicas".
func ParseReadFrom(s string) (ReadFrom, error) {
	switch s {
	case "master", "":
		return ReadFromMaster, nil
	case "replicas":
		return ReadFromReplicas, nil
	}
	return 0, fmt.Errorf("read-from %q: want master or replicas", s)
}

// Config configures a Proxy. The zero value of every field is usable: a
// zero field means the default its comment names.
type Config struct {
	// PoolSize is the number of shared connections to each Redis server:
	// one per event loop, the rest (at least one) for clients served by
	// goroutines. 1 to 64. If zero, 2.
	PoolSize int
	// MaxClients bounds client connections; past it new clients get
	// Redis's "max number of clients reached" error. If zero, 10000.
	MaxClients int
	// MaxPinned bounds dedicated backend connections held by stateful
	// sessions (transactions, blocking commands, pub/sub, ...); past it
	// such a command gets an error. If zero, 1000.
	MaxPinned int
	// ClientPassword, if set, must be given with AUTH (or HELLO ... AUTH)
	// before any other command, as with Redis's requirepass. If empty,
	// clients need no password.
	ClientPassword string
	// OperatorPassword, if set, lets a client that gives AUTH
	// OperatorUser OperatorPassword run the commands the command policy
	// keeps for the operator (CONFIG SET of protected settings, ACL user
	// management, CLIENT PAUSE, DEBUG, MODULE, unredacted CONFIG GET; see
	// proxy/internal/command/policy.go). If empty, no client can.
	OperatorPassword string
	// OperatorUser is the user name the operator gives with AUTH. If
	// empty, "redis-proxy-operator".
	OperatorUser string
	// BackendUsername and BackendPassword are the proxy's own credentials
	// for the Redis servers. If empty, the proxy does not authenticate; a
	// username needs a password.
	BackendUsername string
	BackendPassword string
	// ReadFrom is where read-only commands go. The zero value is master.
	ReadFrom ReadFrom
	// MaxBulk bounds one bulk string in a request, in bytes, as Redis's
	// proto-max-bulk-len. If zero, 512 MiB.
	MaxBulk int64
	// MaxOutput bounds the replies buffered for one client, in bytes; a
	// client whose pending replies would pass it is disconnected, before
	// the reply is copied. If zero, 256 MiB.
	MaxOutput int
	// MaxInflightMemory bounds the memory of large requests (values over
	// 4 MiB) being read, across all clients: one whose next request would
	// pass it waits (it is not read) until there is room, up to
	// HoldTimeout, then gets -TRYAGAIN and is disconnected. Each such
	// request is read into a buffer of its exact size, once, and written
	// to Redis from there. If zero, 1 GiB.
	MaxInflightMemory int64
	// IdleTimeout closes a client that sends nothing for this long (not
	// subscribers or blocked clients). If zero, clients are never closed
	// for being idle.
	IdleTimeout time.Duration
	// WriteTimeout disconnects a client that does not read its replies for
	// this long. If zero, 60s.
	WriteTimeout time.Duration
	// HoldTimeout is how long commands wait for a master (during a
	// failover, or before one is known) before getting an error. If zero, 5s.
	HoldTimeout time.Duration
	// MaxHeld bounds the sessions waiting for a master at once; past it,
	// commands get an error at once. If zero, 10000.
	MaxHeld int
	// DialTimeout bounds connecting and authenticating to Redis. If zero, 1s.
	DialTimeout time.Duration
	// WriteAcks: the reply to a write reaches its client only once this
	// many replicas have it (a WAIT after each batch of writes: acks.go).
	// 0: at once, as Redis answers. Up to 16.
	WriteAcks int
	// WriteAckTimeout is how long a batch of writes waits for WriteAcks
	// replicas before its clients get NOTREPLICATED. If zero, 1s.
	WriteAckTimeout time.Duration
	// ReadYourWrites: after a client's write, its reads go to the master
	// (not a replica) for MaxReplicaLag, the most a replica in the read
	// rotation trails the master (the replication manager's bound). With
	// ReadFrom master it changes nothing.
	ReadYourWrites bool
	MaxReplicaLag  time.Duration
	// EventLoops is the number of event loops (threads) serving clients
	// whose commands are stateless; each has its own shared connection to
	// each server. A client that needs a dedicated connection moves to a
	// goroutine of its own. -1 serves every client with its own goroutine
	// from the start. Up to 64. If zero, 1. (Event loops exist on Linux
	// only; elsewhere there are none.)
	EventLoops int
	// BusyPoll is how long an event loop serving one or two clients keeps
	// polling for their next command, or Redis's reply, before it sleeps:
	// it trades up to that much CPU per request for a lower latency. At
	// most 10ms; negative: never. If zero, 100µs.
	BusyPoll time.Duration
	// WriteAtOnce makes an event loop send every request to Redis as soon
	// as it has read it. If false, while more than eight of a loop's
	// clients await replies, requests for a connection whose last write is
	// not yet answered wait for those replies and go out together in one
	// write: less CPU in Redis and the proxy per request, for a wait of at
	// most one round trip to Redis (long when Redis is across a slow link,
	// where WriteAtOnce is the better choice).
	WriteAtOnce bool
	// BackendTLS, if set, makes every connection to Redis TLS: it is called
	// for each new connection and returns the configuration to use, so the
	// certificates may change while the proxy runs (the proxy uses a clone;
	// an empty ServerName becomes the server's host). An event loop reaches
	// its TLS connections through a relay (loop_tls_linux.go). If nil,
	// plain TCP.
	BackendTLS func() *tls.Config
	// Logger receives the proxy's logs. If nil, nothing is logged.
	Logger *slog.Logger
	// Registerer, if set, gets the proxy's Prometheus collectors. If nil,
	// they are counted but not registered.
	Registerer prometheus.Registerer
}

// withDefaults returns c with every zero field set to its default. It is
// the only place defaults are applied.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.PoolSize, 2)
	def(&c.MaxClients, 10000)
	def(&c.MaxPinned, 1000)
	def(&c.MaxOutput, 256<<20)
	def(&c.MaxHeld, 10000)
	def(&c.EventLoops, 1)
	if c.EventLoops < 0 || !loopsSupported {
		c.EventLoops = 0
	}
	if c.MaxBulk == 0 {
		c.MaxBulk = resp.DefaultMaxBulk
	}
	if c.MaxInflightMemory == 0 {
		c.MaxInflightMemory = 1 << 30
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.OperatorUser == "" {
		c.OperatorUser = "redis-proxy-operator"
	}
	defDur(&c.WriteTimeout, 60*time.Second)
	defDur(&c.HoldTimeout, 5*time.Second)
	defDur(&c.DialTimeout, time.Second)
	defDur(&c.WriteAckTimeout, time.Second)
	defDur(&c.BusyPoll, 100*time.Microsecond)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// pkg names this package in a *config.FieldError.
const pkg = "proxy"

// Validate reports the first field of c (with defaults applied) that the
// proxy cannot use, as a *config.FieldError.
func (c Config) Validate() error {
	c = c.withDefaults()
	ints := []struct {
		field     string
		v, lo, hi int
	}{
		{"PoolSize", c.PoolSize, 1, 64},
		{"EventLoops", c.EventLoops, 0, 64},
		{"MaxClients", c.MaxClients, 1, 1 << 24},
		{"MaxPinned", c.MaxPinned, 1, 1 << 24},
		{"MaxHeld", c.MaxHeld, 1, 1 << 24},
		{"MaxOutput", c.MaxOutput, 1, 1 << 40},
		{"WriteAcks", c.WriteAcks, 0, 16},
	}
	for _, f := range ints {
		if f.v < f.lo || f.v > f.hi {
			return config.Errorf(pkg, f.field, "must be from %d to %d, got %d", f.lo, f.hi, f.v)
		}
	}
	durs := []struct {
		field string
		v     time.Duration
	}{
		{"IdleTimeout", c.IdleTimeout}, {"WriteTimeout", c.WriteTimeout},
		{"HoldTimeout", c.HoldTimeout}, {"DialTimeout", c.DialTimeout},
		{"WriteAckTimeout", c.WriteAckTimeout}, {"MaxReplicaLag", c.MaxReplicaLag},
	}
	for _, f := range durs {
		if f.v < 0 {
			return config.Errorf(pkg, f.field, "must not be negative, got %v", f.v)
		}
	}
	switch {
	case c.MaxBulk < 1:
		return config.Errorf(pkg, "MaxBulk", "must be a positive size, got %d", c.MaxBulk)
	case c.MaxInflightMemory < bigRequest:
		return config.Errorf(pkg, "MaxInflightMemory", "must be at least %d bytes, got %d", bigRequest, c.MaxInflightMemory)
	case c.BusyPoll > 10*time.Millisecond:
		return config.Errorf(pkg, "BusyPoll", "must be at most 10ms, got %v", c.BusyPoll)
	case c.ReadYourWrites && c.ReadFrom == ReadFromReplicas && c.MaxReplicaLag == 0:
		return config.Errorf(pkg, "MaxReplicaLag", "is required with ReadYourWrites and reads from replicas: it is how long a client's reads stay on the master after its write")
	case c.ReadFrom != ReadFromMaster && c.ReadFrom != ReadFromReplicas:
		return config.Errorf(pkg, "ReadFrom", "must be master or replicas, got %d", c.ReadFrom)
	case c.BackendUsername != "" && c.BackendPassword == "":
		return config.Errorf(pkg, "BackendPassword", "is required with a backend username")
	case c.OperatorPassword != "" && c.OperatorPassword == c.ClientPassword:
		return config.Errorf(pkg, "OperatorPassword", "must differ from the client password")
	case strings.ContainsAny(c.OperatorUser, " \t\r\n"):
		return config.Errorf(pkg, "OperatorUser", "must be one word, got %q", c.OperatorUser)
	}
	return nil
}
