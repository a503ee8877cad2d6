package proxy

import (
	"bytes"
	"flag"
	"net"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
	"github.com/redis-proxy/redis-proxy/replication"
)

// testProxy is a Proxy serving on a free 127.0.0.1 port for one test.
type testProxy struct {
	*Proxy
	Addr string
}

// eventLoops is Config.EventLoops for the proxies the tests start, unless a
// test sets its own: scripts/test.sh runs the package again with -1, so
// every test also covers the goroutine-per-client path.
var eventLoops = flag.Int("eventloops", 0, "Config.EventLoops of the proxies tests start (-1: a goroutine per client)")

// needEventLoops skips a test of the event loop in the run without one.
func needEventLoops(t *testing.T) {
	t.Helper()
	if *eventLoops < 0 {
		t.Skip("no event loops in this run (-eventloops=-1)")
	}
}

// startProxy starts a proxy routing to master (and replicas), waits until
// it is ready, and closes it when the test ends.
func startProxy(t testing.TB, cfg Config, master string, replicas ...string) *testProxy {
	t.Helper()
	tp := serveProxy(t, cfg, master, replicas...)
	poll.Until(t, 10*time.Second, "the proxy ready", tp.Ready)
	return tp
}

// serveProxy is startProxy without the wait: the proxy may not be ready
// yet.
func serveProxy(t testing.TB, cfg Config, master string, replicas ...string) *testProxy {
	t.Helper()
	if cfg.EventLoops == 0 {
		cfg.EventLoops = *eventLoops
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("new proxy: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Close() })
	p.SetTopology(replication.Topology{Master: master, Replicas: replicas})
	return &testProxy{Proxy: p, Addr: ln.Addr().String()}
}

// sameAsRedis sends req with exchange (resptest.Exchange, say) to Redis at
// redisAddr and to the proxy at proxyAddr, and fails t unless the proxy's
// replies are Redis's, byte for byte; it returns them.
func sameAsRedis(t *testing.T, exchange func(testing.TB, string, []byte) []byte, redisAddr, proxyAddr string, req []byte) []byte {
	t.Helper()
	want := exchange(t, redisAddr, req)
	got := exchange(t, proxyAddr, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("replies to %s differ from Redis\nproxy: %q\nredis: %q", resptest.Quote(req), got, want)
	}
	return got
}

// dial opens a client connection to the proxy.
func (tp *testProxy) dial(t testing.TB, opts ...redis.DialOption) redis.Conn {
	t.Helper()
	opts = append([]redis.DialOption{redis.DialReadTimeout(10 * time.Second)}, opts...)
	c, err := redis.Dial("tcp", tp.Addr, opts...)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectReplicated waits until key exists on every one of replicas.
func expectReplicated(t testing.TB, key string, replicas ...*redistest.Server) {
	t.Helper()
	for _, rep := range replicas {
		poll.Until(t, 5*time.Second, key+" replicated to "+rep.Addr, func() bool {
			v, err := rep.Do("EXISTS", key)
			return err == nil && v.(int64) == 1
		})
	}
}
