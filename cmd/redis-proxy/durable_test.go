package main

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/writetest"
)

// Durable writes across a crash failover (REDIS_PROXY_WRITE_ACKS): 50
// pipelined writers; the replication stream from the master to the
// replica is cut (an iptables rule drops its packets, as a slow or broken
// link would hold them) so the replica trails; the master is killed; the
// replica is promoted, and only then is the rule removed (what the master
// had sent is never delivered). Every write a client was told succeeded is
// then looked for on the new master. With WRITE_ACKS=0 the writes
// acknowledged while the replica lagged are lost; with WRITE_ACKS=1 none
// is, in every run. (Stopping the replica with SIGSTOP would not do: the
// stream waits in its socket buffer and arrives when it resumes.)
func TestDurableWritesFailover(t *testing.T) {
	runs := map[int]int{0: 5, 1: 20}
	if testing.Short() {
		t.Skip("a failover a run")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: an iptables rule cuts the replication stream")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables (apt-get install -y iptables)")
	}
	for _, acks := range []int{0, 1} {
		lostRuns, lostTotal, ackedTotal, notReplicated := 0, 0, 0, 0
		for run := range runs[acks] {
			lost, acked, nr := durableRun(t, acks, run)
			ackedTotal += acked
			lostTotal += lost
			notReplicated += nr
			if lost > 0 {
				lostRuns++
			}
		}
		t.Logf("WRITE_ACKS=%d: %d of %d runs lost acknowledged writes, %d lost of %d acknowledged; %d writes answered NOTREPLICATED",
			acks, lostRuns, runs[acks], lostTotal, ackedTotal, notReplicated)
		switch {
		case acks == 0 && lostTotal == 0:
			t.Errorf("WRITE_ACKS=0 lost nothing: the replica did not trail, the test proves nothing")
		case acks > 0 && lostTotal > 0:
			t.Errorf("WRITE_ACKS=%d lost %d acknowledged writes in %d of %d runs", acks, lostTotal, lostRuns, runs[acks])
		}
	}
}

// durableRun is one crash failover under load; it returns the acknowledged
// writes the new master lacks, those acknowledged, and the NOTREPLICATED
// replies.
func durableRun(t *testing.T, acks, run int) (lost, acked, notReplicated int) {
	t.Helper()
	c := startCluster(t, 2, func(cfg *Config) {
		fastTimers(cfg)
		cfg.WriteAcks = acks
		cfg.WriteAckTimeout = 5 * time.Second
		cfg.HoldTimeout = 10 * time.Second
	})
	defer c.stop()
	a, b := c.srv[0], c.srv[1]
	l := writetest.NewLoad()
	var recs []*writetest.Recorder
	for i := range 50 {
		recs = append(recs, c.writer(l, fmt.Sprintf("d%d:%d:%d", acks, run, i), 16, 15*time.Second))
	}
	time.Sleep(200 * time.Millisecond)
	uncut := cutReplication(t, a, b) // from here the replica trails the master
	time.Sleep(300 * time.Millisecond)
	crash := time.Now()
	a.Kill()
	c.waitRoute(crash, 15*time.Second, "the replica promoted", func(e routeEvent) bool { return e.master == b.Addr })
	uncut()
	time.Sleep(300 * time.Millisecond)
	l.Stop()
	want := map[string]string{}
	for _, r := range recs {
		ops := r.Ops()
		maps.Copy(want, writetest.AckedWrites(ops))
		for _, o := range writetest.Failed(ops) {
			if strings.HasPrefix(o.Err.Error(), "NOTREPLICATED") {
				notReplicated++
			}
		}
	}
	rb, err := writetest.ReadBack(b.Addr, want)
	if err != nil {
		t.Fatal(err)
	}
	b.Kill()
	return len(rb.Lost()), len(want), notReplicated
}

// cutReplication drops the packets of the replication stream from master m
// to replica r (loopback) until the returned function is called.
func cutReplication(t *testing.T, m, r *redistest.Server) func() {
	t.Helper()
	v, err := m.Do("CLIENT", "LIST", "TYPE", "replica")
	if err != nil {
		t.Fatal(err)
	}
	port := ""
	for _, f := range strings.Fields(string(v.([]byte))) {
		if addr, ok := strings.CutPrefix(f, "addr="); ok {
			_, port, _ = net.SplitHostPort(addr)
		}
	}
	if port == "" {
		t.Fatalf("no replica connection on the master: %q", v)
	}
	rule := []string{"OUTPUT", "-o", "lo", "-p", "tcp", "--sport", strconv.Itoa(m.Port), "--dport", port, "-j", "DROP"}
	if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	done := false
	undo := func() {
		if !done {
			done = true
			exec.Command("iptables", append([]string{"-D"}, rule...)...).Run()
		}
	}
	t.Cleanup(undo)
	return undo
}
