package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/events"
)

// events is GET /events with query on the cluster's admin API.
func (c *cluster) events(query string) (eventsReply, error) {
	var r eventsReply
	resp, err := c.adminGet("/events" + query)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("GET /events%s: %s", query, resp.Status)
	}
	return r, json.NewDecoder(resp.Body).Decode(&r)
}

// TestEventsFailover: kill -9 the master; GET /events tells the story in
// order (down, master lost, promotion, failover) with the failover's epoch,
// servers and duration, and a client long-polling /events hears of it
// without delay.
func TestEventsFailover(t *testing.T) {
	c := startCluster(t, 2, fastTimers)
	old, nw := c.srv[0], c.srv[1]
	start, err := c.events("")
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(start.Events, func(e events.Event) bool { return e.Kind == events.Master }); i < 0 {
		t.Errorf("no %q event at start: %+v", events.Master, start.Events)
	}

	type polled struct {
		r   eventsReply
		err error
		at  time.Time
	}
	long := make(chan polled, 1)
	go func() {
		r, err := c.events(fmt.Sprintf("?since=%d&wait=30s", start.LastSeq))
		long <- polled{r, err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond) // the long poll is waiting
	crash := time.Now()
	old.Kill()

	var got eventsReply
	var failover events.Event
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err = c.events(fmt.Sprintf("?since=%d", start.LastSeq))
		if err == nil {
			if i := slices.IndexFunc(got.Events, func(e events.Event) bool { return e.Kind == events.Failover }); i >= 0 {
				failover = got.Events[i]
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover event 10s after the kill: %+v (err %v)", got.Events, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	seen := time.Since(crash)

	var story []string
	for _, e := range got.Events {
		story = append(story, e.Kind+" "+strings.Join(e.Servers, ",")+": "+e.Message)
	}
	t.Logf("events after the kill:\n%s", strings.Join(story, "\n"))
	t.Logf("failover event: %q; duration %v (the old master's last answer to the new master's confirmation); in GET /events %v after the kill",
		failover.Message, failover.Duration, seen.Round(time.Millisecond))

	if !slices.Equal(failover.Servers, []string{old.Addr, nw.Addr}) || failover.Epoch != 1 || failover.Level.String() != "WARN" {
		t.Errorf("failover event %+v: want servers [%s %s], epoch 1, WARN", failover, old.Addr, nw.Addr)
	}
	// The old master was last seen before the kill and is declared down
	// DownAfter after that; the whole must be well inside the time it took
	// the event to appear.
	if failover.Duration < c.cfg.DownAfter || failover.Duration > seen+c.cfg.CheckInterval {
		t.Errorf("failover duration %v: want from DownAfter (%v) to the %v it took to appear", failover.Duration, c.cfg.DownAfter, seen)
	}
	if failover.Time.Before(crash) || !strings.Contains(failover.Message, "without a master") {
		t.Errorf("failover event at %v (kill at %v): %q", failover.Time, crash, failover.Message)
	}
	// In order: the old master down and lost, the replica promoted, then
	// the failover; seqs and times increasing.
	var kinds []string
	for i, e := range got.Events {
		kinds = append(kinds, e.Kind)
		if i > 0 && (e.Seq != got.Events[i-1].Seq+1 || e.Time.Before(got.Events[i-1].Time)) {
			t.Errorf("event %d (seq %d at %v) after seq %d at %v", i, e.Seq, e.Time, got.Events[i-1].Seq, got.Events[i-1].Time)
		}
	}
	want := []string{events.Down, events.MasterLost, events.Promotion, events.Failover}
	if i := slices.Index(kinds, events.Failover); i < 0 || !isSubsequence(want, kinds[:i+1]) {
		t.Errorf("event kinds %v: want %v in this order", kinds, want)
	}

	p := <-long
	if p.err != nil || len(p.r.Events) == 0 {
		t.Fatalf("long poll: %+v, %v", p.r, p.err)
	}
	first := p.r.Events[0]
	t.Logf("long poll answered %v after the kill with %q", p.at.Sub(crash).Round(time.Millisecond), first.Message)
	if first.Seq != start.LastSeq+1 || p.at.Sub(first.Time) > time.Second {
		t.Errorf("long poll returned seq %d %v after it was added; want seq %d at once", first.Seq, p.at.Sub(first.Time), start.LastSeq+1)
	}

	// Each event is one log line, with the event's kind.
	if n := len(c.logs.since(crash, "replication", "master changed")); n != 1 {
		t.Errorf("%d \"master changed\" log lines after the kill, want 1", n)
	}
	if !strings.Contains(c.logs.tail(400), `"event":"failover"`) {
		t.Errorf("no log line with event=failover")
	}
}

// isSubsequence reports whether want appears in got in order.
func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// pairTune makes a proxy one of a pair on loopback with no VIP: self and
// peer are 127.0.0.x addresses with their heartbeat ports.
func pairTune(self string, selfPort uint16, peer string, peerPort uint16, priority int) func(*Config) {
	return func(c *Config) {
		c.Address, c.HeartbeatPort, c.Priority = self, selfPort, priority
		c.Peers = fmt.Sprintf("%s:%d", peer, peerPort)
		c.HeartbeatSecret = "pair-events-test-secret"
		c.VIPInterface = "lo"
	}
}

// freeUDPPort returns a UDP port free on ip, or skips the test when ip
// cannot be bound.
func freeUDPPort(t *testing.T, ip string) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Skipf("cannot bind %s: %v", ip, err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// TestPairEvents: two proxies of a pair (no VIP address, on loopback). The
// low-priority one starts first and takes the VIP; the high-priority one
// preempts it; then the high one stops (SIGTERM: it hands the VIP over)
// and the low one takes it. Each proxy's /events tells its side, and
// /topology shows the peer. (A peer that dies without a word is the table
// of TestPeerEvent: serve here can only stop gracefully.)
func TestPairEvents(t *testing.T) {
	lowPort, highPort := freeUDPPort(t, "127.0.0.2"), freeUDPPort(t, "127.0.0.1")
	low := startCluster(t, 2, pairTune("127.0.0.2", lowPort, "127.0.0.1", highPort, 100))
	waitEvent(t, low, events.VIPMaster, "")

	high := &cluster{t: t, srv: low.srv, logs: &logWatch{}, cfg: low.cfg}
	high.cfg.Listen, high.cfg.AdminListen = freeAddr(t), freeAddr(t)
	pairTune("127.0.0.1", highPort, "127.0.0.2", lowPort, 150)(&high.cfg)
	high.start()
	preempted := waitEvent(t, high, events.VIPMaster, "preempting lower-priority master 127.0.0.2")
	// The preemption names the advert that caused it. The pair samples
	// the peer at the change; on a loaded machine the sample may already
	// be the peer's next advert (BACKUP, once it yielded), and then no
	// "holds the VIP" event is recorded for the high proxy: only its order
	// is checked where there is one.
	if heard, ok := findEvent(high, events.PeerHeard, "the other proxy 127.0.0.2 holds the VIP (priority 100)"); !ok {
		t.Logf("the high proxy sampled the peer after it yielded: no \"holds the VIP\" event (the preemption names it)")
	} else if heard.Seq > preempted.Seq {
		t.Errorf("the preemption (seq %d) is recorded before the advert that caused it (seq %d)", preempted.Seq, heard.Seq)
	}
	yielded := waitEvent(t, low, events.VIPYielded, "master 127.0.0.1 outranks us (priority 150 vs 100)")
	heard := waitEvent(t, low, events.PeerHeard, "the other proxy 127.0.0.1 holds the VIP (priority 150)")
	if heard.Seq > yielded.Seq {
		t.Errorf("the yield (seq %d) is recorded before the advert that caused it (seq %d)", yielded.Seq, heard.Seq)
	}
	low.waitTopology(5*time.Second, "the peer holding the VIP", func(tv topologyView) bool {
		p := tv.Pair
		return p != nil && p.Role == "BACKUP" && p.Peer != nil && p.Peer.Addr == "127.0.0.1" && p.Peer.Role == "MASTER" &&
			p.Peer.Priority == 150 && p.Peer.Hearing
	})

	logEvents(t, "the high-priority proxy", high)

	// The high one stops: the low one hears the handover, and takes the VIP.
	high.stop()
	handover := waitEvent(t, low, events.PeerHeard, "the other proxy 127.0.0.1 is shutting down and hands the VIP over")
	took := waitEvent(t, low, events.VIPMaster, "handed over by the other proxy 127.0.0.1")
	if handover.Seq > took.Seq {
		t.Errorf("the takeover (seq %d) is recorded before the handover that caused it (seq %d)", took.Seq, handover.Seq)
	}
	logEvents(t, "the low-priority proxy", low)
	if !strings.Contains(low.logs.tail(400), `"event":"vip-yielded"`) {
		t.Errorf("no log line with event=vip-yielded")
	}
}

// waitEvent waits until c has an event of kind whose message contains
// says, and returns the newest.
func waitEvent(t *testing.T, c *cluster, kind, says string) events.Event {
	t.Helper()
	var r eventsReply
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err = c.events("")
		for i := len(r.Events) - 1; err == nil && i >= 0; i-- {
			if e := r.Events[i]; e.Kind == kind && strings.Contains(e.Message, says) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event saying %q: %+v (err %v)", kind, says, r.Events, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findEvent is the newest event of kind saying says that c has now.
func findEvent(c *cluster, kind, says string) (events.Event, bool) {
	r, err := c.events("")
	for i := len(r.Events) - 1; err == nil && i >= 0; i-- {
		if e := r.Events[i]; e.Kind == kind && strings.Contains(e.Message, says) {
			return e, true
		}
	}
	return events.Event{}, false
}

func logEvents(t *testing.T, who string, c *cluster) {
	t.Helper()
	r, err := c.events("")
	if err != nil {
		t.Errorf("%s: %v", who, err)
		return
	}
	var story []string
	for _, e := range r.Events {
		story = append(story, e.Kind+": "+e.Message)
	}
	t.Logf("%s's events:\n%s", who, strings.Join(story, "\n"))
}
