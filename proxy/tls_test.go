package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis-proxy/redis-proxy/internal/certtest"
	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
	"github.com/redis-proxy/redis-proxy/internal/tlsfiles"
	"github.com/redis-proxy/redis-proxy/internal/writetest"
)

// pki is one test's certificates: a CA that signs every party's, written
// to files as an operator would give them.
type pki struct {
	dir    string
	ca     *certtest.CA
	caFile string
}

func newPKI(t *testing.T) *pki {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test CA")
	return &pki{dir: dir, ca: ca, caFile: ca.Write(t, dir, "ca")}
}

// leaf issues a certificate for localhost and 127.0.0.1 and writes it.
func (k *pki) leaf(t *testing.T, name string, o certtest.Options) (l *certtest.Leaf, certFile, keyFile string) {
	l = k.ca.Issue(t, o)
	certFile, keyFile = l.Write(t, k.dir, name)
	return l, certFile, keyFile
}

// clientTLS is a client configuration trusting the CA, presenting leaf
// whatever CAs the server names (nil: none).
func (k *pki) clientTLS(t *testing.T, leaf *certtest.Leaf) *tls.Config {
	c := &tls.Config{RootCAs: k.ca.Pool(), ServerName: "localhost"}
	if leaf != nil {
		cert := leaf.TLS(t)
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return c
}

// startRedisTLS starts a TLS-only redis-server whose certificate is
// server's, signed by k's CA, that requires client certificates of k's
// CA.
func (k *pki) startRedisTLS(t *testing.T, server *certtest.Leaf, args ...string) *redistest.Server {
	t.Helper()
	cert, key := server.Write(t, t.TempDir(), "redis")
	helper := k.ca.Issue(t, certtest.Options{Name: "test helper"})
	args = append([]string{"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", k.caFile}, args...)
	return redistest.StartTLS(t, k.clientTLS(t, helper), args...)
}

// backendTLS loads the proxy's files for Redis: the CA and a client
// certificate.
func (k *pki) backendTLS(t *testing.T) func() *tls.Config {
	t.Helper()
	_, cert, key := k.leaf(t, "proxy-client", certtest.Options{Name: "redis-proxy"})
	st, err := tlsfiles.Load(tlsfiles.Files{Cert: cert, Key: key, CA: k.caFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Client
}

// listenerTLS loads the certificate the proxy presents to clients (and,
// with requireClients, the CA their certificates must chain to).
func (k *pki) listenerTLS(t *testing.T, requireClients bool) (*tlsfiles.Store, string, string) {
	t.Helper()
	_, cert, key := k.leaf(t, "proxy-server", certtest.Options{})
	f := tlsfiles.Files{Cert: cert, Key: key}
	if requireClients {
		f.CA = k.caFile
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	st, err := tlsfiles.Load(f, log)
	if err != nil {
		t.Fatal(err)
	}
	return st, cert, key
}

// serveTLS makes tp serve TLS clients too, on a listener of its own, and
// returns its address.
func (tp *testProxy) serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go tp.Serve(tls.NewListener(ln, cfg))
	return ln.Addr().String()
}

// dialTLS opens a raw RESP client over TLS.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*resptest.Conn, error) {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c := resptest.NewConn(t, nc)
	// With TLS 1.3 a refused client certificate shows at the first read.
	if _, err := c.TryDo("PING"); err != nil {
		return nil, err
	}
	return c, nil
}

// TestTLSBothSides: clients reach the proxy over TLS (with client
// certificates) and the proxy reaches a TLS-only Redis (with its own):
// plain commands, a transaction sent a command at a time, a subscription,
// redis-cli --tls, and the plain listener beside it.
func TestTLSBothSides(t *testing.T) {
	k := newPKI(t)
	redisCert := k.ca.Issue(t, certtest.Options{})
	r := k.startRedisTLS(t, redisCert)
	tp := startProxy(t, Config{BackendTLS: k.backendTLS(t)}, r.Addr)
	st, _, _ := k.listenerTLS(t, true)
	addr := tp.serveTLS(t, st.Server())
	clientLeaf, clientCert, clientKey := k.leaf(t, "client", certtest.Options{Name: "app"})

	c, err := dialTLS(t, addr, k.clientTLS(t, clientLeaf))
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	resptest.Expect(t, c.Do("SET", "k", "v"), "OK")
	resptest.Expect(t, c.Do("GET", "k"), `"v"`)
	// A transaction a command at a time: a dedicated TLS connection.
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("INCR", "n"), "QUEUED")
	resptest.Expect(t, c.Do("INCR", "n"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), "[1,2]")
	// Sent whole.
	c.Write(resptest.Cmds([]string{"MULTI"}, []string{"SET", "a", "1"}, []string{"GET", "a"}, []string{"EXEC"}))
	for _, want := range []string{"OK", "QUEUED", "QUEUED", `[OK,"1"]`} {
		resptest.Expect(t, c.Read(), want)
	}
	// A subscription: a tunnel over TLS on both sides.
	sub, err := dialTLS(t, addr, k.clientTLS(t, clientLeaf))
	if err != nil {
		t.Fatal(err)
	}
	resptest.Expect(t, sub.Do("SUBSCRIBE", "news"), `["subscribe","news",1]`)
	resptest.Expect(t, c.Do("PUBLISH", "news", "hello"), "1")
	resptest.Expect(t, sub.Read(), `["message","news","hello"]`)
	// Many batches after the transaction: the TLS client stays on its
	// goroutine (an event loop cannot decrypt), and keeps working.
	for i := 0; i < 2*loopReturnAfter; i++ {
		resptest.Expect(t, c.Do("GET", "a"), `"1"`)
	}

	// redis-cli through the proxy.
	out, err := exec.Command("redis-cli", "--tls", "--cacert", k.caFile, "--cert", clientCert, "--key", clientKey,
		"-h", "127.0.0.1", "-p", port(addr), "GET", "k").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "v" {
		t.Errorf("redis-cli --tls GET k: %q %v", out, err)
	}
	out, err = exec.Command("redis-cli", "--tls", "--cacert", k.caFile, "--cert", clientCert, "--key", clientKey,
		"-h", "127.0.0.1", "-p", port(addr), "INCRBY", "n", "40").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Errorf("redis-cli --tls INCRBY n 40: %q %v", out, err)
	}

	// The plain listener serves beside it (on an event loop, whose
	// connection to Redis goes through a relay).
	resptest.Expect(t, resptest.Dial(t, tp.Addr).Do("GET", "n"), `"42"`)
	// And every one of the proxy's connections to Redis was TLS: Redis
	// has no plain port.
	if v, err := redis.String(r.Do("GET", "n")); err != nil || v != "42" {
		t.Errorf("GET n on Redis: %q %v", v, err)
	}
}

// TestTLSBackendLoop: plain clients of a proxy that reaches Redis over
// TLS stay on the event loop, whose connection goes through a relay:
// pipelines of every size come back whole and in order, a client moves to
// a goroutine and back, and when Redis dies and returns the loop's
// connection is dialed again.
func TestTLSBackendLoop(t *testing.T) {
	k := newPKI(t)
	r := k.startRedisTLS(t, k.ca.Issue(t, certtest.Options{}))
	tp := startProxy(t, Config{BackendTLS: k.backendTLS(t)}, r.Addr)
	if *eventLoops >= 0 && tp.cfg().EventLoops != 1 {
		t.Errorf("EventLoops = %d with backend TLS, want the default 1", tp.cfg().EventLoops)
	}
	l := writetest.NewLoad()
	var recs []*writetest.Recorder
	for i := range 8 {
		rec := &writetest.Recorder{Name: "writer"}
		recs = append(recs, rec)
		l.Go(writetest.Client{Addr: tp.Addr, Prefix: "w" + string(rune('a'+i)), Batch: 1 << (i % 5), ReadBack: true}, rec)
	}
	time.Sleep(time.Second)
	l.Stop()
	var ops []writetest.Op
	for _, rec := range recs {
		ops = append(ops, rec.Ops()...)
	}
	if bad := writetest.Failed(ops); len(bad) > 0 || len(ops) < 100 {
		t.Fatalf("%d of %d commands failed:%s", len(bad), len(ops), writetest.Describe(bad, time.Now()))
	}
	t.Logf("%d commands through the relay in 1s", len(ops))
	// A value larger than the relay's buffers, both ways.
	c := resptest.Dial(t, tp.Addr)
	big := strings.Repeat("x", 1<<20)
	resptest.Expect(t, c.Do("SET", "big", big), "OK")
	if v := c.Do("STRLEN", "big"); v.String() != "1048576" {
		t.Errorf("STRLEN big: %v", v)
	}
	if v := c.Do("GET", "big"); v.Str != big {
		t.Errorf("GET big: %d bytes back", len(v.Str))
	}

	// A transaction a command at a time moves the client to a goroutine
	// and a dedicated TLS connection; clean batches bring it back.
	resptest.Expect(t, c.Do("MULTI"), "OK")
	resptest.Expect(t, c.Do("INCR", "n"), "QUEUED")
	resptest.Expect(t, c.Do("EXEC"), "[1]")
	for i := 0; i < 2*loopReturnAfter; i++ {
		resptest.Expect(t, c.Do("GET", "n"), `"1"`)
	}
	if *eventLoops >= 0 {
		if h, b := testutil.ToFloat64(tp.m.handoffs), testutil.ToFloat64(tp.m.loopReturns); h != 1 || b != 1 {
			t.Errorf("handoffs %v, returns %v; want 1 and 1", h, b)
		}
	}

	r.Kill()
	r.Restart()
	poll.Until(t, 10*time.Second, "SET through the proxy after Redis came back", func() bool {
		v, err := resptest.Dial(t, tp.Addr).TryDo("SET", "after", "1")
		return err == nil && v.String() == "OK"
	})
	resptest.Expect(t, c.Do("GET", "after"), `"1"`)
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestTLSClientCertificatesRefused: with a CA file, clients without a
// certificate, with one of another CA, or with an expired one are
// refused at the handshake; the proxy counts them and keeps serving.
func TestTLSClientCertificatesRefused(t *testing.T) {
	k := newPKI(t)
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	st, _, _ := k.listenerTLS(t, true)
	addr := tp.serveTLS(t, st.Server())
	other := certtest.NewCA(t, "other CA")
	for name, leaf := range map[string]*certtest.Leaf{
		"no certificate": nil,
		"unknown CA":     other.Issue(t, certtest.Options{Name: "app"}),
		"expired":        k.ca.Issue(t, certtest.Options{Name: "app", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Minute)}),
	} {
		if _, err := dialTLS(t, addr, k.clientTLS(t, leaf)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	poll.Until(t, 2*time.Second, "3 TLS handshake errors counted", func() bool {
		return testutil.ToFloat64(tp.m.rejected.WithLabelValues("tls_handshake")) == 3
	})
	good := k.ca.Issue(t, certtest.Options{Name: "app"})
	c, err := dialTLS(t, addr, k.clientTLS(t, good))
	if err != nil {
		t.Fatalf("a good client certificate: %v", err)
	}
	resptest.Expect(t, c.Do("SET", "k", "v"), "OK")
	// The proxy's own certificate is checked by clients too: one that
	// trusts another CA refuses it.
	if _, err := dialTLS(t, addr, &tls.Config{RootCAs: other.Pool(), ServerName: "localhost"}); err == nil {
		t.Errorf("a client trusting another CA accepted the proxy's certificate")
	}
	poll.Until(t, 2*time.Second, "the refused clients uncounted", func() bool { return tp.clients.Load() == 1 })
}

// TestTLSHandshakeTimeout: a client that connects and never starts its
// handshake is dropped after the handshake timeout, and holds up no
// other client meanwhile.
func TestTLSHandshakeTimeout(t *testing.T) {
	old := tlsHandshakeTimeout
	tlsHandshakeTimeout = 1500 * time.Millisecond
	t.Cleanup(func() { tlsHandshakeTimeout = old })
	k := newPKI(t)
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	st, _, _ := k.listenerTLS(t, false)
	addr := tp.serveTLS(t, st.Server())
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	c, err := dialTLS(t, addr, k.clientTLS(t, nil))
	if err != nil {
		t.Fatalf("a client after a silent one: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a client after a silent one waited %v", d)
	}
	resptest.Expect(t, c.Do("SET", "k", "v"), "OK")
	silent.SetReadDeadline(time.Now().Add(8 * time.Second))
	n, err := silent.Read(make([]byte, 1))
	if d := time.Since(start); err == nil || d < 1200*time.Millisecond || d > 6*time.Second {
		t.Errorf("silent client: read %d, %v after %v; want closed after about %v", n, err, d, tlsHandshakeTimeout)
	}
}

// TestTLSBackendCertificatesRefused: a Redis whose certificate is of
// another CA, expired, or for another name is not used: the proxy never
// becomes ready and clients get TRYAGAIN, never a reply from it.
func TestTLSBackendCertificatesRefused(t *testing.T) {
	k := newPKI(t)
	other := certtest.NewCA(t, "other CA")
	otherPKI := &pki{dir: k.dir, ca: other, caFile: other.Write(t, k.dir, "other")}
	cases := map[string]struct {
		owner *pki
		leaf  *certtest.Leaf
		name  string
	}{
		"unknown CA": {otherPKI, other.Issue(t, certtest.Options{}), ""},
		"expired":    {k, k.ca.Issue(t, certtest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Minute)}), ""},
		"other name": {k, k.ca.Issue(t, certtest.Options{Hosts: []string{"redis-a.example"}}), ""},
	}
	for name, tc := range cases {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			// The Redis trusts the proxy's client certificates (k's CA);
			// its own certificate is the case's.
			cert, key := tc.leaf.Write(t, t.TempDir(), "redis")
			helper := &tls.Config{RootCAs: tc.owner.ca.Pool(), ServerName: tc.leaf.Cert.DNSNames[0], InsecureSkipVerify: name == "expired"}
			hl := k.ca.Issue(t, certtest.Options{Name: "helper"})
			hc := hl.TLS(t)
			helper.Certificates = []tls.Certificate{hc}
			r := redistest.StartTLS(t, helper, "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", k.caFile)

			tp := serveProxy(t, Config{BackendTLS: k.backendTLS(t), HoldTimeout: 200 * time.Millisecond}, r.Addr)
			time.Sleep(500 * time.Millisecond)
			if tp.Ready() {
				t.Fatalf("the proxy is ready with a Redis whose certificate is refused")
			}
			c := resptest.Dial(t, tp.Addr)
			v := c.Do("SET", "k", "v")
			if !v.IsError() || !strings.HasPrefix(v.String(), "TRYAGAIN") && !strings.Contains(v.String(), "TRYAGAIN") {
				t.Errorf("SET through the proxy: %v, want TRYAGAIN", v)
			}
			if n, err := redis.Int(r.Do("DBSIZE")); err != nil || n != 0 {
				t.Errorf("DBSIZE on Redis: %d %v, want 0", n, err)
			}
		})
	}
}

// TestTLSRotationUnderLoad: the proxy's certificate files are replaced
// (certificate first, then key, as cp would) several times while clients
// write and read through it and others connect anew all the time: no
// command fails, no connection is refused, and new connections see each
// new certificate.
func TestTLSRotationUnderLoad(t *testing.T) {
	k := newPKI(t)
	r := redistest.Start(t)
	tp := startProxy(t, Config{}, r.Addr)
	st, certFile, keyFile := k.listenerTLS(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go st.Watch(ctx, 20*time.Millisecond)
	addr := tp.serveTLS(t, st.Server())
	clientLeaf := k.ca.Issue(t, certtest.Options{Name: "app"})
	ccfg := k.clientTLS(t, clientLeaf)

	l := writetest.NewLoad()
	var recs []*writetest.Recorder
	for i := range 4 {
		rec := &writetest.Recorder{Name: "writer"}
		recs = append(recs, rec)
		l.Go(writetest.Client{Addr: addr, Prefix: "w" + string(rune('a'+i)), Batch: 1 + i%2, ReadBack: true,
			DialOptions: []redis.DialOption{redis.DialUseTLS(true), redis.DialTLSConfig(ccfg)}}, rec)
	}
	// Connections made anew all the time, each checking the serial of
	// the certificate it got.
	var mu sync.Mutex
	var dials, dialErrs int
	var lastSerial string
	var firstErr error
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			serial, err := pingTLS(addr, ccfg)
			mu.Lock()
			dials++
			if err != nil {
				dialErrs++
				if firstErr == nil {
					firstErr = err
				}
			} else {
				lastSerial = serial
			}
			mu.Unlock()
		}
	}()
	const rotations = 5
	for i := 0; i < rotations; i++ {
		time.Sleep(150 * time.Millisecond)
		next := k.ca.Issue(t, certtest.Options{})
		if err := os.WriteFile(certFile, next.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond) // a Reload may see the new certificate with the old key
		if err := os.WriteFile(keyFile, next.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		want := next.Cert.SerialNumber.Text(16)
		poll.Until(t, 10*time.Second, "new connections see certificate "+want, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return lastSerial == want
		})
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	<-done
	l.Stop()
	var ops []writetest.Op
	for _, rec := range recs {
		ops = append(ops, rec.Ops()...)
	}
	acked := len(writetest.Acked(ops))
	t.Logf("%d rotations: %d commands on long-lived connections, %d new connections", rotations, acked, dials)
	if bad := writetest.Failed(ops); len(bad) > 0 {
		t.Errorf("%d of %d commands failed:%s", len(bad), len(ops), writetest.Describe(bad, time.Now()))
	}
	if dialErrs > 0 {
		t.Errorf("%d of %d new connections failed, first: %v", dialErrs, dials, firstErr)
	}
	if acked < 100 || dials < 20 {
		t.Errorf("too little load to mean anything: %d commands, %d connections", acked, dials)
	}
}

// pingTLS connects, PINGs and returns the serial of the proxy's
// certificate (hex).
func pingTLS(addr string, cfg *tls.Config) (string, error) {
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(nc, "PING\r\n"); err != nil {
		return "", err
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(nc, buf); err != nil {
		return "", err
	}
	if string(buf) != "+PONG\r\n" {
		return "", io.ErrUnexpectedEOF
	}
	return nc.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}
