package proxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/replication"
)

const scriptGet = "return redis.call('GET', KEYS[1])"

// scriptOn reports whether server r has the script sha in its cache.
func scriptOn(r *redistest.Server, sha string) bool {
	v, err := redis.Ints(r.Do("SCRIPT", "EXISTS", sha))
	return err == nil && len(v) == 1 && v[0] == 1
}

// scriptPair starts a master a, its replica b and a proxy in front of both
// whose script check runs every 50 ms, and dials it.
func scriptPair(t *testing.T, cfg Config) (a, b *redistest.Server, tp *testProxy, c redis.Conn) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	a = redistest.Start(t)
	b = redistest.Start(t)
	b.ReplicaOf(a)
	tp = startProxy(t, cfg, a.Addr, b.Addr)
	tp.scripts.setEvery(50 * time.Millisecond)
	return a, b, tp, tp.dial(t)
}

// A script loaded through the proxy is on the replica before the master
// fails, so EVALSHA on the promoted replica runs it; a server that loses
// its cache (a restart) gets it back.
func TestScriptsAreCopiedToEveryServer(t *testing.T) {
	a, b, tp, c := scriptPair(t, Config{})

	sha, err := redis.String(c.Do("SCRIPT", "LOAD", scriptGet))
	if err != nil {
		t.Fatalf("SCRIPT LOAD: %v", err)
	}
	if _, err := c.Do("SET", "sk", "v1"); err != nil {
		t.Fatal(err)
	}
	expectReplicated(t, "sk", b)
	poll.Until(t, 5*time.Second, "the script copied to the replica", func() bool { return scriptOn(b, sha) })

	// The master fails; the replica is promoted.
	a.Kill()
	if _, err := b.Do("REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	tp.SetTopology(replication.Topology{Master: b.Addr, Epoch: 1})
	poll.Until(t, 5*time.Second, "EVALSHA on the new master", func() bool {
		v, err := redis.String(c.Do("EVALSHA", sha, 1, "sk"))
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			t.Fatalf("EVALSHA on the new master: %v", err)
		}
		return err == nil && v == "v1"
	})

	// A restart empties a server's cache: the next check loads it again.
	if _, err := b.Do("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "the script loaded again after the server lost it", func() bool { return scriptOn(b, sha) })
	// (The server has it before the proxy has counted the copy.)
	poll.Until(t, 2*time.Second, "redis_proxy_script_copies_total at 2 (replica, then after the flush)", func() bool {
		return testutil.ToFloat64(tp.m.scriptLoads) >= 2
	})

	// SCRIPT FLUSH through the proxy: the proxy stops copying it.
	if _, err := c.Do("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(tp.m.scripts); n != 0 {
		t.Errorf("redis_proxy_scripts after SCRIPT FLUSH = %v, want 0", n)
	}
	time.Sleep(200 * time.Millisecond) // four checks
	if scriptOn(b, sha) {
		t.Errorf("script loaded again after SCRIPT FLUSH through the proxy")
	}
}

// A script that does not compile is refused to the client by Redis and
// is not kept.
func TestScriptThatDoesNotCompileIsNotKept(t *testing.T) {
	_, _, tp, c := scriptPair(t, Config{})
	if _, err := c.Do("SCRIPT", "LOAD", "return ("); err == nil || !strings.Contains(err.Error(), "compiling") {
		t.Fatalf("SCRIPT LOAD of a broken script: %v, want Redis's compile error", err)
	}
	poll.Until(t, 5*time.Second, "the broken script forgotten", func() bool { return testutil.ToFloat64(tp.m.scripts) == 0 })
	if n := testutil.ToFloat64(tp.m.scriptLoads); n != 0 {
		t.Errorf("redis_proxy_script_copies_total = %v, want 0", n)
	}
}

// With reads on replicas, EVALSHA_RO runs on the master: a replica's script
// cache is its own, and a script loaded on the master only (here directly,
// so the proxy cannot copy it) would get NOSCRIPT there.
func TestEvalshaRoRunsWhereTheScriptIs(t *testing.T) {
	a, b, _, c := scriptPair(t, Config{ReadFrom: ReadFromReplicas})
	sha, err := redis.String(a.Do("SCRIPT", "LOAD", scriptGet))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do("SET", "rk", "v"); err != nil {
		t.Fatal(err)
	}
	expectReplicated(t, "rk", b)
	for i := range 5 {
		v, err := redis.String(c.Do("EVALSHA_RO", sha, 1, "rk"))
		if err != nil || v != "v" {
			t.Fatalf("EVALSHA_RO #%d: %q, %v", i, v, err)
		}
		// Plain reads still go to the replica.
		if _, err := c.Do("GET", "rk"); err != nil {
			t.Fatal(err)
		}
	}
	if got := stCmdStat(t, b, "get"); got < 5 {
		t.Errorf("GET calls on the replica = %d, want at least 5", got)
	}
}

// The proxy keeps a bounded number of scripts; past it, scripts still
// load on the master but are not copied.
func TestScriptMirrorIsBounded(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range maxMirroredScripts + 10 {
		p.scripts.note(fmt.Appendf(nil, "return %d", i))
	}
	p.scripts.note([]byte("return 0")) // known: no change
	if n := testutil.ToFloat64(p.m.scripts); n != maxMirroredScripts {
		t.Errorf("scripts kept = %v, want %d", n, maxMirroredScripts)
	}
	p.scripts.forget()
	big := make([]byte, maxMirroredBytes+1)
	p.scripts.note(big)
	if n := testutil.ToFloat64(p.m.scripts); n != 0 {
		t.Errorf("a script over %d bytes was kept", maxMirroredBytes)
	}
	p.scripts.note([]byte("return 'small'"))
	if n := testutil.ToFloat64(p.m.scripts); n != 1 {
		t.Errorf("scripts kept after forget = %v, want 1", n)
	}
}

// A server that accepts connections and never answers holds up the copy
// to that server only: the others get the script at once, not after its
// timeout (scriptIOTimeout).
func TestScriptCopyIsNotHeldUpByASilentServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	a := redistest.Start(t)
	b := redistest.Start(t)
	b.ReplicaOf(a)
	// The silent server comes first in the list the mirror walks.
	tp := startProxy(t, Config{}, a.Addr, silent.Addr().String(), b.Addr)
	c := tp.dial(t)
	start := time.Now()
	sha, err := redis.String(c.Do("SCRIPT", "LOAD", scriptGet))
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "the script copied to the replica", func() bool { return scriptOn(b, sha) })
	took := time.Since(start)
	t.Logf("copied to the replica %v after SCRIPT LOAD, with a silent server listed before it", took.Round(time.Millisecond))
	if took > scriptIOTimeout/2 {
		t.Errorf("the copy to the replica took %v: it waited for the silent server", took)
	}
}
