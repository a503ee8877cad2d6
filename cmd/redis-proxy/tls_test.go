package main

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/certtest"
	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

func TestTLSConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"LISTEN": "none"},
			`REDIS_PROXY_LISTEN="none" but REDIS_PROXY_TLS_LISTEN is empty: want a host:port for one of them (clients need a listener)`},
		{map[string]string{"TLS_LISTEN": ":6380"},
			`REDIS_PROXY_TLS_CERT_FILE is required with REDIS_PROXY_TLS_LISTEN: want a readable PEM certificate file`},
		{map[string]string{"TLS_LISTEN": ":6380", "TLS_CERT_FILE": "c.pem"},
			`REDIS_PROXY_TLS_KEY_FILE is required with REDIS_PROXY_TLS_LISTEN: want a readable PEM private key file matching TLS_CERT_FILE`},
		{map[string]string{"TLS_LISTEN": "6380", "TLS_CERT_FILE": "c.pem", "TLS_KEY_FILE": "k.pem"},
			`REDIS_PROXY_TLS_LISTEN="6380": want host:port or empty`},
		{map[string]string{"TLS_LISTEN": ":6379", "TLS_CERT_FILE": "c.pem", "TLS_KEY_FILE": "k.pem"},
			`REDIS_PROXY_TLS_LISTEN=":6379" is also REDIS_PROXY_LISTEN: want another address (or REDIS_PROXY_LISTEN=none)`},
		{map[string]string{"TLS_CA_FILE": "ca.pem"},
			`REDIS_PROXY_TLS_CA_FILE is set but REDIS_PROXY_TLS_LISTEN is empty: the file is for the TLS listener (want both or neither)`},
		{map[string]string{"BACKEND_TLS_CA_FILE": "ca.pem"},
			`REDIS_PROXY_BACKEND_TLS_CA_FILE is set but REDIS_PROXY_BACKEND_TLS is false: want REDIS_PROXY_BACKEND_TLS=true, or no REDIS_PROXY_BACKEND_TLS_CA_FILE`},
		{map[string]string{"BACKEND_TLS": "true", "BACKEND_TLS_KEY_FILE": "k.pem"},
			`REDIS_PROXY_BACKEND_TLS_KEY_FILE is set but REDIS_PROXY_BACKEND_TLS_CERT_FILE is empty: a client certificate needs its key (want both or neither)`},
		{map[string]string{"BACKEND_TLS": "yes please"}, `REDIS_PROXY_BACKEND_TLS="yes please": want true or false`},
		{map[string]string{"TLS_RELOAD_INTERVAL": "0s"}, `REDIS_PROXY_TLS_RELOAD_INTERVAL="0s": want a positive duration such as 5s`},
	} {
		tc.env["SERVERS"] = "a:1"
		setEnv(t, tc.env)
		_, err := loadConfig()
		if err == nil || err.Error() != tc.want {
			t.Errorf("env %v:\n got  %v\n want %s", tc.env, err, tc.want)
		}
	}
	setEnv(t, map[string]string{"SERVERS": "a:1", "LISTEN": "none", "TLS_LISTEN": ":6380", "TLS_CERT_FILE": "c.pem", "TLS_KEY_FILE": "k.pem",
		"BACKEND_TLS": "true", "BACKEND_TLS_CA_FILE": "ca.pem", "BACKEND_TLS_SERVER_NAME": "redis.internal"})
	c, err := loadConfig()
	if err != nil {
		t.Fatalf("a TLS-only configuration: %v", err)
	}
	if !c.BackendTLS || c.TLSReloadInterval != 5*time.Second || c.BackendTLSServerName != "redis.internal" {
		t.Errorf("loaded %+v", c)
	}
}

// TestTLSFileErrorsNameTheirVariable: a file the proxy cannot use stops
// it with exit code 2 and one line naming the variable.
func TestTLSFileErrorsNameTheirVariable(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	cert, key := ca.Issue(t, certtest.Options{}).Write(t, dir, "a")
	_, otherKey := ca.Issue(t, certtest.Options{}).Write(t, dir, "b")
	missing := filepath.Join(dir, "missing.pem")
	base := map[string]string{"SERVERS": "127.0.0.1:1", "LISTEN": "127.0.0.1:0", "ADMIN_LISTEN": "127.0.0.1:0", "TLS_LISTEN": "127.0.0.1:0"}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"TLS_CERT_FILE": missing, "TLS_KEY_FILE": key}, `REDIS_PROXY_TLS_CERT_FILE="` + missing + `": open ` + missing + `: no such file or directory (want a readable PEM certificate file)`},
		{map[string]string{"TLS_CERT_FILE": cert, "TLS_KEY_FILE": otherKey}, `REDIS_PROXY_TLS_KEY_FILE="` + otherKey + `": tls: private key does not match public key (want a readable PEM private key file matching TLS_CERT_FILE)`},
		{map[string]string{"TLS_CERT_FILE": cert, "TLS_KEY_FILE": key, "TLS_CA_FILE": key}, `REDIS_PROXY_TLS_CA_FILE="` + key + `": no PEM certificate in the file (want a readable PEM file of CA certificates)`},
		{map[string]string{"TLS_CERT_FILE": cert, "TLS_KEY_FILE": key, "BACKEND_TLS": "true", "BACKEND_TLS_CA_FILE": missing},
			`REDIS_PROXY_BACKEND_TLS_CA_FILE="` + missing + `": open ` + missing + `: no such file or directory (want a readable PEM file of CA certificates)`},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range tc.env {
			env[k] = v
		}
		setEnv(t, env)
		var out, errb bytes.Buffer
		if code := run(nil, &out, &errb); code != 2 || errb.String() != "redis-proxy: "+tc.want+"\n" {
			t.Errorf("env %v: exit %d\n got  %q\n want %q", tc.env, code, errb.String(), "redis-proxy: "+tc.want+"\n")
		}
	}
}

// TestTLSOnly runs the binary's serve with TLS alone: no plain client
// port, TLS-only Redis servers replicating over TLS, client certificates
// required on both sides. The replication manager finds the master and
// its replica; redis-cli --tls works through the proxy; replacing the
// proxy's certificate files reaches new clients while an old one stays
// connected.
func TestTLSOnly(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test CA")
	caFile := ca.Write(t, dir, "ca")
	helper := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{ca.Issue(t, certtest.Options{Name: "helper"}).TLS(t)}}
	var srv []*redistest.Server
	for _, name := range []string{"a", "b"} {
		cert, key := ca.Issue(t, certtest.Options{}).Write(t, dir, "redis-"+name)
		srv = append(srv, redistest.StartTLS(t, helper, "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", caFile, "--tls-replication", "yes"))
	}
	srv[1].ReplicaOf(srv[0])
	serverCert, serverKey := ca.Issue(t, certtest.Options{}).Write(t, dir, "proxy")
	backendCert, backendKey := ca.Issue(t, certtest.Options{Name: "redis-proxy"}).Write(t, dir, "proxy-client")
	clientLeaf := ca.Issue(t, certtest.Options{Name: "app"})
	clientCert, clientKey := clientLeaf.Write(t, dir, "app")

	c := &cluster{t: t, logs: &logWatch{}, srv: srv}
	c.cfg = testConfig()
	fastTimers(&c.cfg)
	c.cfg.Listen, c.cfg.AdminListen, c.cfg.TLSListen = listenNone, freeAddr(t), freeAddr(t)
	c.cfg.Servers = []string{srv[0].Addr, srv[1].Addr}
	c.cfg.TLSCertFile, c.cfg.TLSKeyFile, c.cfg.TLSCAFile = serverCert, serverKey, caFile
	c.cfg.BackendTLS, c.cfg.BackendTLSCAFile, c.cfg.BackendTLSServerName = true, caFile, "localhost"
	c.cfg.BackendTLSCertFile, c.cfg.BackendTLSKeyFile = backendCert, backendKey
	c.cfg.TLSReloadInterval = 50 * time.Millisecond
	c.start()

	_, port, _ := net.SplitHostPort(c.cfg.TLSListen)
	cli := func(args ...string) string {
		out, err := exec.Command("redis-cli", append([]string{"--tls", "--cacert", caFile, "--cert", clientCert, "--key", clientKey,
			"-h", "127.0.0.1", "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := cli("SET", "k", "v"); got != "OK" {
		t.Errorf("redis-cli --tls SET: %q", got)
	}
	if got := cli("GET", "k"); got != "v" {
		t.Errorf("redis-cli --tls GET: %q", got)
	}
	if got := cli("PING"); got != "PONG" {
		t.Errorf("redis-cli --tls PING: %q", got)
	}
	// Without a client certificate redis-cli is refused.
	out, err := exec.Command("redis-cli", "--tls", "--cacert", caFile, "-h", "127.0.0.1", "-p", port, "PING").CombinedOutput()
	if err == nil && strings.TrimSpace(string(out)) == "PONG" {
		t.Errorf("redis-cli without a client certificate got PONG")
	}

	// Rotation: the files change under the running binary.
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{clientLeaf.TLS(t)}}
	old, err := tls.Dial("tcp", c.cfg.TLSListen, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	next := ca.Issue(t, certtest.Options{})
	if err := os.WriteFile(serverKey+".new", next.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(serverCert+".new", next.CertPEM, 0o600)
	os.Rename(serverCert+".new", serverCert)
	os.Rename(serverKey+".new", serverKey)
	poll.Until(t, 10*time.Second, "a new client gets the new certificate", func() bool {
		nc, err := tls.Dial("tcp", c.cfg.TLSListen, clientTLS)
		if err != nil {
			return false
		}
		defer nc.Close()
		return nc.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(next.Cert.SerialNumber) == 0
	})
	old.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := old.Write([]byte("GET k\r\n")); err != nil {
		t.Fatalf("old client after the rotation: %v", err)
	}
	buf := make([]byte, 7)
	if n, err := old.Read(buf); err != nil || string(buf[:n]) != "$1\r\nv\r\n" {
		t.Errorf("old client after the rotation: %q %v", buf[:n], err)
	}
}
