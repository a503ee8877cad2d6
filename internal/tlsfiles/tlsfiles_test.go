package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/certtest"
)

// logBuf collects a Store's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func newLog() (*slog.Logger, *logBuf) {
	b := &logBuf{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// serve accepts TLS clients on a loopback listener with cfg, answering
// each line with "ok\n", until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := io.WriteString(c, "ok\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip dials addr with cfg, writes a line and reads the answer; it
// returns the connection (open) and the server's leaf serial.
func roundTrip(addr string, cfg *tls.Config) (*tls.Conn, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		c.Close()
		return nil, err
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func TestServerRotation(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	first := ca.Issue(t, certtest.Options{})
	cert, key := first.Write(t, dir, "server")
	log, logs := newLog()
	st, err := Load(Files{Cert: cert, Key: key}, log)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, st.Server())
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}

	old, err := roundTrip(addr, client)
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	defer old.Close()
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("serial %v, want %v", got, first.Cert.SerialNumber)
	}
	if changed, err := st.Reload(); changed || err != nil {
		t.Fatalf("Reload of unchanged files: %v %v", changed, err)
	}

	// A key that does not match the certificate (a rotation half done)
	// is refused, once in the log, and the old pair kept.
	second := ca.Issue(t, certtest.Options{})
	if err := os.WriteFile(cert, second.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		changed, err := st.Reload()
		var fe *FileError
		if changed || !errors.As(err, &fe) || fe.Which != "Key" {
			t.Fatalf("Reload with a mismatched key: changed %v, err %v (want a FileError on Key)", changed, err)
		}
	}
	if n := logs.count("TLS files not reloaded"); n != 1 {
		t.Errorf("a bad file logged %d times, want once", n)
	}
	if c, err := roundTrip(addr, client); err != nil {
		t.Fatalf("with a bad pair on disk: %v", err)
	} else {
		if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first.Cert.SerialNumber) != 0 {
			t.Errorf("with a bad pair on disk the server presents %v, want the old %v", got, first.Cert.SerialNumber)
		}
		c.Close()
	}

	// Put back, then half done again: the same bad set is news again.
	if err := os.WriteFile(cert, first.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := st.Reload(); changed || err != nil {
		t.Fatalf("Reload of the files put back: %v %v", changed, err)
	}
	if err := os.WriteFile(cert, second.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reload(); err == nil {
		t.Fatal("Reload with a mismatched key again: no error")
	}
	if n := logs.count("TLS files not reloaded"); n != 2 {
		t.Errorf("the bad file, written again after the good one, logged %d times in all, want twice", n)
	}

	// The key arrives: new handshakes get the new certificate, and the
	// connection made before still works.
	if err := os.WriteFile(key, second.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := st.Reload(); !changed || err != nil {
		t.Fatalf("Reload of a new pair: %v %v", changed, err)
	}
	c, err := roundTrip(addr, client)
	if err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	c.Close()
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("after the rotation the server presents %v, want %v", got, second.Cert.SerialNumber)
	}
	if st.Leaf().SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("Leaf is not the new certificate")
	}
	old.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(old, "again\n"); err != nil {
		t.Fatalf("old connection after the rotation: %v", err)
	}
	if _, err := io.ReadFull(old, make([]byte, 3)); err != nil {
		t.Fatalf("old connection after the rotation: %v", err)
	}
}

func TestServerRequiresClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	other := certtest.NewCA(t, "other")
	cert, key := ca.Issue(t, certtest.Options{}).Write(t, dir, "server")
	st, err := Load(Files{Cert: cert, Key: key, CA: ca.Write(t, dir, "ca")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, st.Server())
	with := func(leaf *certtest.Leaf) *tls.Config {
		c := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if leaf != nil {
			// Sent whatever CAs the server names (Certificates would
			// send none from an unknown CA).
			cert := leaf.TLS(t)
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		return c
	}
	good := ca.Issue(t, certtest.Options{Name: "client"})
	if c, err := roundTrip(addr, with(good)); err != nil {
		t.Fatalf("a client certificate of the CA: %v", err)
	} else {
		c.Close()
	}
	for name, leaf := range map[string]*certtest.Leaf{
		"none":       nil,
		"unknown CA": other.Issue(t, certtest.Options{Name: "client"}),
		"expired":    ca.Issue(t, certtest.Options{Name: "client", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}),
	} {
		// TLS 1.3: the client learns of the refusal at its first read.
		if c, err := roundTrip(addr, with(leaf)); err == nil {
			c.Close()
			t.Errorf("client certificate %s: accepted", name)
		} else {
			t.Logf("client certificate %s: %v", name, err)
		}
	}
}

func TestClientVerifiesWithTheCARead(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	next := certtest.NewCA(t, "next")
	srv := ca.Issue(t, certtest.Options{})
	addr := serve(t, &tls.Config{Certificates: []tls.Certificate{srv.TLS(t)}})
	caFile := ca.Write(t, dir, "ca")
	st, err := Load(Files{CA: caFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(name string) error {
		cfg := st.Client().Clone()
		cfg.ServerName = name
		c, err := roundTrip(addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial("127.0.0.1"); err != nil {
		t.Fatalf("server of the CA: %v", err)
	}
	if err := dial("redis.example"); err == nil {
		t.Errorf("a name the certificate does not hold was accepted")
	}
	// The CA file now holds another CA: the same server is refused.
	if err := os.WriteFile(caFile, next.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := st.Reload(); !changed || err != nil {
		t.Fatalf("Reload: %v %v", changed, err)
	}
	if err := dial("127.0.0.1"); err == nil {
		t.Errorf("a server of a CA no longer in the file was accepted")
	}
	// An expired server certificate is refused.
	expired := ca.Issue(t, certtest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	addr = serve(t, &tls.Config{Certificates: []tls.Certificate{expired.TLS(t)}})
	os.WriteFile(caFile, ca.PEM, 0o600)
	st.Reload()
	if err := dial("127.0.0.1"); err == nil {
		t.Errorf("an expired server certificate was accepted")
	}
}

func TestClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	srv := ca.Issue(t, certtest.Options{})
	addr := serve(t, &tls.Config{Certificates: []tls.Certificate{srv.TLS(t)}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})
	first := ca.Issue(t, certtest.Options{Name: "proxy"})
	cert, key := first.Write(t, dir, "client")
	st, err := Load(Files{Cert: cert, Key: key, CA: ca.Write(t, dir, "ca"), ServerName: "localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := roundTrip(addr, st.Client())
	if err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	c.Close()
	second := ca.Issue(t, certtest.Options{Name: "proxy"})
	second.Write(t, dir, "client")
	if changed, err := st.Reload(); !changed || err != nil {
		t.Fatalf("Reload: %v %v", changed, err)
	}
	if got := st.Client().Certificates[0].Leaf.SerialNumber; got.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("client certificate after reload: serial %v, want %v", got, second.Cert.SerialNumber)
	}
	if c, err := roundTrip(addr, st.Client()); err != nil {
		t.Fatalf("with the new client certificate: %v", err)
	} else {
		c.Close()
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	a, b := ca.Issue(t, certtest.Options{}), ca.Issue(t, certtest.Options{})
	cert, key := a.Write(t, dir, "a")
	_, otherKey := b.Write(t, dir, "b")
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not PEM\n"), 0o600)
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		f     Files
		which string
	}{
		{Files{Cert: missing, Key: key}, "Cert"},
		{Files{Cert: cert, Key: missing}, "Key"},
		{Files{Cert: garbage, Key: key}, "Cert"},
		{Files{Cert: cert, Key: otherKey}, "Key"},
		{Files{Cert: cert, Key: key, CA: garbage}, "CA"},
		{Files{Cert: cert, Key: key, CA: missing}, "CA"},
		{Files{Cert: cert}, "Key"},
		{Files{Key: key}, "Cert"},
	} {
		_, err := Load(tc.f, nil)
		var fe *FileError
		if !errors.As(err, &fe) || fe.Which != tc.which {
			t.Errorf("Load(%+v): %v, want a FileError on %s", tc.f, err, tc.which)
		}
	}
	if _, err := Load(Files{Cert: cert, Key: key, CA: ca.Write(t, dir, "ca")}, nil); err != nil {
		t.Errorf("Load of good files: %v", err)
	}
}
