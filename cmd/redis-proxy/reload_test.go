package main

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/certtest"
	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

func TestParseConfigFile(t *testing.T) {
	good := "# comment\n\n  REDIS_PROXY_READ_FROM=replicas\r\nREDIS_PROXY_PASSWORD= a b=c \nREDIS_PROXY_PASSWORD_FILE=\n\tREDIS_PROXY_LOG_LEVEL=\n"
	got, err := parseConfigFile("f", []byte(good))
	want := map[string]string{
		"REDIS_PROXY_READ_FROM":     "replicas",
		"REDIS_PROXY_PASSWORD":      " a b=c ", // as written
		"REDIS_PROXY_PASSWORD_FILE": "",
		"REDIS_PROXY_LOG_LEVEL":     "",
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseConfigFile = %q, %v; want %q", got, err, want)
	}
	for _, tc := range []struct{ in, err string }{
		{"REDIS_PROXY_READ_FROM", `REDIS_PROXY_CONFIG_FILE="f": line 1: want KEY=VALUE`},
		{"\nREDIS_PROXY_NOPE=1", `REDIS_PROXY_CONFIG_FILE="f": line 2: REDIS_PROXY_NOPE is not a variable of redis-proxy (see redis-proxy --help)`},
		{"PATH=/bin", `line 1: PATH is not a variable`},
		{"REDIS_PROXY_LISTEN_FILE=x", `REDIS_PROXY_LISTEN_FILE is not a variable`}, // not a secret
		{"REDIS_PROXY_CONFIG_FILE=other", `cannot name another file`},
		{"REDIS_PROXY_POOL_SIZE=1\nREDIS_PROXY_POOL_SIZE=2", `line 2: REDIS_PROXY_POOL_SIZE is set twice`},
	} {
		_, err := parseConfigFile("f", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseConfigFile(%q) = %v, want an error with %q", tc.in, err, tc.err)
		}
	}
}

// The config file's lines override the environment for loadConfig (a
// secret in either of its forms overrides both forms in the environment),
// and the environment is as it was afterwards.
func TestConfigFileOverridesEnvironment(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("from-a-file\n"), 0o600)
	cf := filepath.Join(dir, "redis-proxy.env")
	setEnv(t, map[string]string{
		"SERVERS":       "127.0.0.1:1",
		"READ_FROM":     "master",
		"POOL_SIZE":     "3",
		"PASSWORD":      "from-the-environment",
		"CONFIG_FILE":   cf,
		"MAX_CLIENTS":   "7",
		"ADMIN_TOKEN":   "",
		"IDLE_TIMEOUT":  "",
		"HOLD_TIMEOUT":  "2s",
		"DIAL_TIMEOUT":  "2s",
		"MAX_PINNED":    "9",
		"ADMIN_LISTEN":  "127.0.0.1:9",
		"LOG_LEVEL":     "warn",
		"TRACK":         "demote",
		"OPERATOR_USER": "op",
	})
	before := os.Environ()
	os.WriteFile(cf, []byte("REDIS_PROXY_READ_FROM=replicas\nREDIS_PROXY_PASSWORD_FILE="+pwFile+"\nREDIS_PROXY_MAX_CLIENTS=\nREDIS_PROXY_LOG_LEVEL=debug\n"), 0o600)
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.ReadFrom != "replicas" || c.Password != "from-a-file" || c.MaxClients != 10000 || c.LogLevel != "debug" || c.PoolSize != 3 {
		t.Errorf("loadConfig: READ_FROM %q, PASSWORD from the file %v, MAX_CLIENTS %d (the file's empty value: the default), LOG_LEVEL %q, POOL_SIZE %d (from the environment)",
			c.ReadFrom, c.Password == "from-a-file", c.MaxClients, c.LogLevel, c.PoolSize)
	}
	after := os.Environ()
	slices.Sort(before)
	slices.Sort(after)
	// loadConfig unsets the empty REDIS_PROXY_* variables (they mean
	// unset); nothing else changed.
	before = slices.DeleteFunc(before, func(kv string) bool { return strings.HasPrefix(kv, envPrefix) && strings.HasSuffix(kv, "=") })
	if !slices.Equal(before, after) {
		t.Errorf("the environment changed:\nbefore %q\nafter  %q", before, after)
	}

	os.WriteFile(cf, []byte("REDIS_PROXY_READ_FROM=sideways\n"), 0o600)
	if _, err := loadConfig(); err == nil || err.Error() != `REDIS_PROXY_READ_FROM="sideways": want master or replicas` {
		t.Errorf("a bad value in the file: %v", err)
	}
	os.Remove(cf)
	if _, err := loadConfig(); err == nil || !strings.HasPrefix(err.Error(), `REDIS_PROXY_CONFIG_FILE="`+cf+`": cannot read the file`) {
		t.Errorf("a missing file: %v", err)
	}
}

// Which variables a reload applies and which need a restart.
func TestDiffConfig(t *testing.T) {
	cur := testConfig()
	cur.Servers = []string{"a:1", "b:1"}
	next := cur
	next.Password = "p"
	next.ReadFrom = "replicas"
	next.LogLevel = "debug"
	next.AdminToken = "0123456789abcdef"
	next.HoldTimeout = time.Second
	next.ClientOutputLimit = 1 << 20
	next.DialTimeout = 2 * time.Second
	next.BackendPassword = "b"        // the pools and the replication manager
	next.Servers = []string{"a:1"}    // the replication manager
	next.MaxInflightMemory = 64 << 20 // a semaphore New sized
	next.PoolSize = 4
	next.TLSCertFile = "x.pem" // a path: the store reads it
	d := diffConfig(cur, next)
	wantApply := []string{"ReadFrom", "AdminToken", "Password", "ClientOutputLimit", "HoldTimeout", "DialTimeout", "LogLevel"}
	wantRestart := []string{"Servers", "PoolSize", "BackendPassword", "TLSCertFile", "MaxInflightMemory"}
	if !slices.Equal(d.apply, wantApply) || !slices.Equal(d.restart, wantRestart) {
		t.Errorf("diffConfig: apply %v, restart %v\nwant apply %v, restart %v", d.apply, d.restart, wantApply, wantRestart)
	}
	if d := diffConfig(cur, cur); d.apply != nil || d.restart != nil {
		t.Errorf("diffConfig of equal configurations: %+v", d)
	}
	got := describe(cur, next, []string{"Password", "ReadFrom"})
	if want := []string{"REDIS_PROXY_PASSWORD (secret)", `REDIS_PROXY_READ_FROM="replicas" (was "master")`}; !slices.Equal(got, want) {
		t.Errorf("describe = %q, want %q", got, want)
	}
}

// TestReloadUnderLoad is the operator's reload, on the real binary: with
// clients running a load, the client password and the read policy are
// changed in the config file and the proxy gets SIGHUP. No client is
// dropped or gets an error; a new client needs the new password (the old
// one is refused); reads go to the replica from then on. A bad value is
// refused and logged, and changes nothing, by SIGHUP and by POST /reload
// (400); a variable that needs a restart is named and kept.
func TestReloadUnderLoad(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t)
	replica.ReplicaOf(master)
	if _, err := master.Do("SET", "reload:fixed", "v"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "reload:fixed on the replica", func() bool {
		v, err := redis.String(replica.Do("GET", "reload:fixed"))
		return err == nil && v == "v"
	})
	cf := filepath.Join(t.TempDir(), "redis-proxy.env")
	writeFile := func(s string) {
		t.Helper()
		if err := os.WriteFile(cf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const oldPW, newPW, badPW = "old-password-1", "new-password-2", "newer-password-3"
	writeFile("REDIS_PROXY_PASSWORD=" + oldPW + "\nREDIS_PROXY_READ_FROM=master\n")
	listen := freeAddr(t)
	pr := startBinary(t, map[string]string{
		"REDIS_PROXY_SERVERS":        master.Addr + "," + replica.Addr,
		"REDIS_PROXY_LISTEN":         listen,
		adminListenVar:               freeAddr(t),
		"REDIS_PROXY_CONFIG_FILE":    cf,
		"REDIS_PROXY_CHECK_INTERVAL": "100ms",
	})
	dial := func(pw string) (redis.Conn, error) {
		c, err := redis.Dial("tcp", listen, redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(5*time.Second))
		if err != nil {
			return nil, err
		}
		if _, err := c.Do("AUTH", pw); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}

	// The load: clients that authenticated with the old password, each
	// writing its key and reading the replicated one in a loop.
	const clients = 8
	var (
		ops     [clients]atomic.Int64
		errMu   sync.Mutex
		errs    []string
		stop    = make(chan struct{})
		stopped sync.WaitGroup
	)
	for i := range clients {
		c, err := dial(oldPW)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		stopped.Add(1)
		go func() {
			defer stopped.Done()
			defer c.Close()
			key := "reload:client:" + string(rune('a'+i))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := c.Do("SET", key, n)
				if err == nil {
					var v string
					if v, err = redis.String(c.Do("GET", "reload:fixed")); err == nil && v != "v" {
						err = &replyError{"GET reload:fixed = " + v}
					}
				}
				if err != nil {
					errMu.Lock()
					errs = append(errs, time.Now().Format("15:04:05.000")+" client "+key+": "+err.Error())
					errMu.Unlock()
					return // a dropped client stays dropped
				}
				ops[i].Add(1)
			}
		}()
	}
	progress := func(what string) {
		t.Helper()
		var before [clients]int64
		for i := range clients {
			before[i] = ops[i].Load()
		}
		poll.Until(t, 5*time.Second, "every client making progress "+what, func() bool {
			for i := range clients {
				if ops[i].Load() < before[i]+20 {
					return false
				}
			}
			return true
		})
	}
	replicaGets := func() int64 { return cmdCallsOn(t, replica, "get") }
	progress("before the reload")
	gets := replicaGets()
	progress("with READ_FROM=master")
	if n := replicaGets(); n != gets {
		t.Fatalf("the replica ran %d GETs with READ_FROM=master", n-gets)
	}

	// Reload: new password, reads to replicas.
	writeFile("REDIS_PROXY_PASSWORD=" + newPW + "\nREDIS_PROXY_READ_FROM=replicas\n")
	t0 := time.Now()
	pr.signal(syscall.SIGHUP)
	line := pr.logged(t0, 10*time.Second, "configuration reloaded")[0]
	if !strings.Contains(line, "REDIS_PROXY_PASSWORD (secret)") || !strings.Contains(line, `REDIS_PROXY_READ_FROM=\"replicas\" (was \"master\")`) {
		t.Errorf("the reload's log line does not name what changed: %s", line)
	}
	pr.running()
	if c, err := dial(oldPW); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Errorf("a new client with the old password after the reload: %v, want WRONGPASS", err)
		if c != nil {
			c.Close()
		}
	}
	c, err := dial(newPW)
	if err != nil {
		t.Fatalf("a new client with the new password: %v", err)
	}
	if v, err := redis.String(c.Do("GET", "reload:fixed")); err != nil || v != "v" {
		t.Errorf("GET by the new client: %q %v", v, err)
	}
	c.Close()
	progress("after the reload")
	poll.Until(t, 5*time.Second, "the load's GETs on the replica", func() bool { return replicaGets() > gets+100 })

	// A bad value: refused, logged, nothing changes (not the password
	// beside it either).
	writeFile("REDIS_PROXY_PASSWORD=" + badPW + "\nREDIS_PROXY_READ_FROM=sideways\n")
	t1 := time.Now()
	pr.signal(syscall.SIGHUP)
	line = pr.logged(t1, 10*time.Second, "configuration not reloaded; nothing changed")[0]
	if !strings.Contains(line, `REDIS_PROXY_READ_FROM=\"sideways\": want master or replicas`) {
		t.Errorf("the refusal does not name the variable and what it accepts: %s", line)
	}
	code, body := pr.post("/reload")
	if code != 400 || !strings.Contains(body, `REDIS_PROXY_READ_FROM=\"sideways\"`) {
		t.Errorf("POST /reload with a bad value: %d %s, want 400 naming the variable", code, body)
	}
	pr.running()
	if c, err := dial(badPW); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Errorf("the refused reload's password works: %v", err)
		if c != nil {
			c.Close()
		}
	}
	if c, err := dial(newPW); err != nil {
		t.Errorf("the password in force after a refused reload: %v", err)
	} else {
		c.Close()
	}
	gets = replicaGets()
	progress("after the refused reload")
	if n := replicaGets(); n < gets+100 {
		t.Errorf("reads left the replica after a refused reload (%d GETs there)", n-gets)
	}

	// A variable that needs a restart: named, and kept.
	writeFile("REDIS_PROXY_PASSWORD=" + newPW + "\nREDIS_PROXY_READ_FROM=replicas\nREDIS_PROXY_POOL_SIZE=3\nREDIS_PROXY_LOG_LEVEL=debug\n")
	code, body = pr.post("/reload")
	var res reloadResult
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil ||
		!slices.Equal(res.Changed, []string{"REDIS_PROXY_LOG_LEVEL"}) || !slices.Equal(res.RestartNeeded, []string{"REDIS_PROXY_POOL_SIZE"}) {
		t.Errorf("POST /reload with a restart-only change: %d %s", code, body)
	}
	metrics := pr.get("/metrics")
	for _, want := range []string{
		`redis_proxy_config_reloads_total{result="ok"} 2`,
		`redis_proxy_config_reloads_total{result="error"} 2`,
		"redis_proxy_config_last_reload_successful 1",
		"redis_proxy_config_restart_pending 1",
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	progress("at the end")
	close(stop)
	stopped.Wait()
	errMu.Lock()
	if len(errs) > 0 {
		t.Errorf("%d of %d clients failed or were dropped; first: %s", len(errs), clients, errs[0])
	}
	errMu.Unlock()
	total := int64(0)
	for i := range clients {
		total += ops[i].Load()
	}
	t.Logf("%d clients ran %d SET+GET rounds through three reloads without an error", clients, total)
	for _, l := range strings.Split(pr.logs.tail(1000), "\n") {
		for _, secret := range []string{oldPW, newPW, badPW} {
			if strings.Contains(l, secret) {
				t.Errorf("a log line holds a password: %s", l)
			}
		}
	}
	if code := pr.stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

type replyError struct{ s string }

func (e *replyError) Error() string { return e.s }

// cmdCallsOn is INFO commandstats' calls of cmd on r.
func cmdCallsOn(t *testing.T, r *redistest.Server, cmd string) int64 {
	t.Helper()
	info, err := redis.String(r.Do("INFO", "commandstats"))
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			var n int64
			for _, ch := range rest {
				if ch < '0' || ch > '9' {
					break
				}
				n = n*10 + int64(ch-'0')
			}
			return n
		}
	}
	return 0
}

// A reload reads the TLS files again at once (not at the next
// TLS_RELOAD_INTERVAL, an hour here): new handshakes get the new
// certificate. A certificate that does not match its key refuses the
// whole reload (400, nothing changed, the old certificate kept), even
// with a good value beside it.
func TestReloadReadsTLSFiles(t *testing.T) {
	master := redistest.Start(t)
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test CA")
	first := ca.Issue(t, certtest.Options{})
	cert, key := first.Write(t, dir, "proxy")
	cf := filepath.Join(dir, "redis-proxy.env")
	os.WriteFile(cf, nil, 0o600)
	tlsAddr := freeAddr(t)
	pr := startBinary(t, map[string]string{
		"REDIS_PROXY_SERVERS":             master.Addr,
		"REDIS_PROXY_LISTEN":              freeAddr(t),
		adminListenVar:                    freeAddr(t),
		"REDIS_PROXY_TLS_LISTEN":          tlsAddr,
		"REDIS_PROXY_TLS_CERT_FILE":       cert,
		"REDIS_PROXY_TLS_KEY_FILE":        key,
		"REDIS_PROXY_TLS_RELOAD_INTERVAL": "1h",
		"REDIS_PROXY_CONFIG_FILE":         cf,
	})
	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := served(); got != first.Cert.SerialNumber.String() {
		t.Fatalf("served certificate %s, want the first %s", got, first.Cert.SerialNumber)
	}

	// A key that belongs to another certificate, and a good change beside it.
	second, other := ca.Issue(t, certtest.Options{}), ca.Issue(t, certtest.Options{})
	os.WriteFile(cert, second.CertPEM, 0o600)
	os.WriteFile(key, other.KeyPEM, 0o600)
	os.WriteFile(cf, []byte("REDIS_PROXY_LOG_LEVEL=debug\n"), 0o600)
	code, body := pr.post("/reload")
	if code != 400 || !strings.Contains(body, "REDIS_PROXY_TLS_KEY_FILE") {
		t.Errorf("POST /reload with a key of another certificate: %d %s, want 400 naming REDIS_PROXY_TLS_KEY_FILE", code, body)
	}
	if got := served(); got != first.Cert.SerialNumber.String() {
		t.Errorf("after a refused reload the proxy serves %s, want the first certificate %s", got, first.Cert.SerialNumber)
	}
	if m := pr.get("/metrics"); !strings.Contains(m, "redis_proxy_config_last_reload_successful 0\n") {
		t.Errorf("the refused reload is not in the metrics")
	}

	os.WriteFile(key, second.KeyPEM, 0o600)
	code, body = pr.post("/reload")
	if code != 200 || !strings.Contains(body, `"changed":["REDIS_PROXY_LOG_LEVEL"]`) {
		t.Errorf("POST /reload with the matching key: %d %s", code, body)
	}
	if got := served(); got != second.Cert.SerialNumber.String() {
		t.Errorf("after the reload the proxy serves %s, want the second certificate %s", got, second.Cert.SerialNumber)
	}
	pr.logged(time.Time{}, 5*time.Second, "TLS files reloaded")
}
