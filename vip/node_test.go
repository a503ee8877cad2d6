package vip

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

var testVIP = netip.MustParsePrefix("10.0.0.100/24")

// fakeNet delivers datagrams between fake transports; cut nodes neither
// send nor receive (a killed or partitioned node), and a dropped link loses
// what one node sends to another (a one-way partition). Each transport
// receives into a bounded memQueue, from port DefaultPort of the sender.
type fakeNet struct {
	mu    sync.Mutex
	inbox map[netip.Addr]*fakeTransport
	cut   map[netip.Addr]bool
	drop  map[[2]netip.Addr]bool
}

func newFakeNet() *fakeNet {
	return &fakeNet{inbox: map[netip.Addr]*fakeTransport{}, cut: map[netip.Addr]bool{}, drop: map[[2]netip.Addr]bool{}}
}

func (f *fakeNet) setDrop(from, to netip.Addr, drop bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop[[2]netip.Addr{from, to}] = drop
}

func (f *fakeNet) setCut(a netip.Addr, cut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut[a] = cut
}

// inject delivers b to a as if sent by from (port DefaultPort).
func (f *fakeNet) inject(to, from netip.Addr, b []byte) {
	f.injectPort(to, netip.AddrPortFrom(from, DefaultPort), b)
}

func (f *fakeNet) injectPort(to netip.Addr, from netip.AddrPort, b []byte) {
	f.mu.Lock()
	t := f.inbox[to]
	f.mu.Unlock()
	t.q.push(b, from, time.Now())
}

type fakeTransport struct {
	net   *fakeNet
	self  netip.Addr
	peers []netip.AddrPort
	q     *memQueue
	// stalled makes Wait block (while it is set) as a busy reader would:
	// datagrams wait in the queue until the node reads it for a timer.
	stalled atomic.Bool
	unstall chan struct{}
}

func (f *fakeNet) transport(self netip.Addr, peers []netip.AddrPort) *fakeTransport {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTransport{net: f, self: self, peers: peers, q: newMemQueue(4096), unstall: make(chan struct{}, 1)}
	f.inbox[self] = t
	return t
}

func (t *fakeTransport) Send(b []byte) error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if t.net.cut[t.self] {
		return nil
	}
	for _, p := range t.peers {
		if to := t.net.inbox[p.Addr()]; to != nil && !t.net.cut[p.Addr()] && !t.net.drop[[2]netip.Addr{t.self, p.Addr()}] {
			to.q.push(b, netip.AddrPortFrom(t.self, DefaultPort), time.Now())
		}
	}
	return nil
}

func (t *fakeTransport) Wait() error {
	for t.stalled.Load() {
		select {
		case <-t.unstall:
		case <-t.q.done:
			return net.ErrClosed
		}
	}
	return t.q.Wait()
}

func (t *fakeTransport) stall(on bool) {
	t.stalled.Store(on)
	if !on {
		select {
		case t.unstall <- struct{}{}:
		default:
		}
	}
}

// addDropped makes the queue report n more datagrams lost to overflow.
func (t *fakeTransport) addDropped(n uint32) {
	t.q.mu.Lock()
	t.q.dropped += n
	t.q.mu.Unlock()
}

func (t *fakeTransport) Read(ps []datagram) (int, error) { return t.q.Read(ps) }
func (t *fakeTransport) Dropped() uint32                 { return t.q.Dropped() }
func (t *fakeTransport) Close() error                    { t.q.close(); return nil }

type fakeOwner struct {
	mu      sync.Mutex
	addrs   map[netip.Prefix]bool
	failAdd error
}

func (o *fakeOwner) List() ([]netip.Prefix, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []netip.Prefix
	for p := range o.addrs {
		out = append(out, p)
	}
	return out, nil
}

func (o *fakeOwner) Add(p netip.Prefix) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failAdd != nil {
		return o.failAdd
	}
	o.addrs[p] = true
	return nil
}

func (o *fakeOwner) Del(p netip.Prefix) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.addrs, p)
	return nil
}

func (o *fakeOwner) has(p netip.Prefix) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.addrs[p]
}

func (o *fakeOwner) setFailAdd(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failAdd = err
}

type fakeAnnouncer struct{ n atomic.Int64 }

func (a *fakeAnnouncer) Announce(netip.Addr) error { a.n.Add(1); return nil }

type testPeer struct {
	*Node
	owner *fakeOwner
	ann   *fakeAnnouncer
	tr    *fakeTransport
	stop  context.CancelFunc
	done  chan error
	once  sync.Once
	err   error
}

func testLogger(t *testing.T, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

// startFake starts a Node on fn with fake owner and announcer.
func startFake(t *testing.T, fn *fakeNet, self, peer netip.Addr, prio uint8, mut func(*Config)) *testPeer {
	return startFakeLog(t, fn, self, peer, prio, mut, testLogger(t, self.String()))
}

func startFakeLog(t *testing.T, fn *fakeNet, self, peer netip.Addr, prio uint8, mut func(*Config), logger *slog.Logger) *testPeer {
	cfg := Config{Interface: "eth0", VIP: testVIP, Peers: []netip.AddrPort{netip.AddrPortFrom(peer, 0)},
		Address: self, Priority: prio, Secret: testKey}
	if mut != nil {
		mut(&cfg)
	}
	peers := cfg.Peers
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := &testPeer{Node: newNode(cfg, logger), owner: &fakeOwner{addrs: map[netip.Prefix]bool{}},
		ann: &fakeAnnouncer{}, done: make(chan error, 1)}
	p.filter = newSourceFilter(peers) // as New does
	tr := fn.transport(self, cfg.Peers)
	p.tr = tr
	p.open = func() (*deps, error) {
		return &deps{tr: tr, owner: p.owner, ann: p.ann, close: func() {}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	go func() { p.done <- p.Run(ctx) }()
	t.Cleanup(func() { p.halt(t) })
	return p
}

// settledPair starts a (priority 150, mutA applied to its Config) and b
// (100) on a fresh fake network, in a synctest bubble, and returns once a
// is master and b backup.
func settledPair(t *testing.T, mutA func(*Config)) (fn *fakeNet, a, b *testPeer) {
	t.Helper()
	fn = newFakeNet()
	a = startFake(t, fn, addr1, addr2, 150, mutA)
	b = startFake(t, fn, addr2, addr1, 100, nil)
	time.Sleep(2 * time.Second)
	synctest.Wait()
	if a.Role() != Master || b.Role() != Backup {
		t.Fatalf("roles a=%v b=%v, want MASTER/BACKUP", a.Role(), b.Role())
	}
	return fn, a, b
}

// halt stops p gracefully and waits for Run to return; it may be called
// more than once.
func (p *testPeer) halt(t *testing.T) {
	p.once.Do(func() {
		p.stop()
		p.err = <-p.done
	})
	if p.err != nil {
		t.Errorf("Run: %v", p.err)
	}
}

func waitRole(t *testing.T, ch <-chan Change, want Role) Change {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case c := <-ch:
			if c.To == want {
				return c
			}
		case <-timeout:
			t.Fatalf("no transition to %v within 10s", want)
		}
	}
}

func drain(ch <-chan Change) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// TestNodePairFailover runs two Nodes over a fake network in a synctest
// bubble, so the takeover times are exact.
func TestNodePairFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn := newFakeNet()
		a := startFake(t, fn, addr1, addr2, 150, nil)
		b := startFake(t, fn, addr2, addr1, 100, nil)
		bch, unsub := b.Subscribe()
		defer unsub()

		time.Sleep(2 * time.Second)
		synctest.Wait()
		if a.Role() != Master || !a.IsMaster() || b.Role() != Backup {
			t.Fatalf("roles a=%v b=%v, want MASTER/BACKUP", a.Role(), b.Role())
		}
		if !a.owner.has(testVIP) || b.owner.has(testVIP) {
			t.Fatalf("VIP on a=%v b=%v, want only a", a.owner.has(testVIP), b.owner.has(testVIP))
		}
		if n := a.ann.n.Load(); n != 3 {
			t.Fatalf("a sent %d GARPs, want a burst of 3", n)
		}

		// main's replication decision reaches the backup at once.
		if err := a.SetPayload(5, "10.9.0.1:6379"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := b.Payload(); got != (Payload{5, "10.9.0.1:6379"}) {
			t.Fatalf("backup payload %+v", got)
		}
		if pi, ok := b.Peer(); !ok || pi.Addr != addr1 || pi.Role != Master || pi.Priority != 150 || pi.Payload.Epoch != 5 ||
			pi.Membership.Version != 0 {
			t.Fatalf("backup's Peer() = %+v, %v", pi, ok)
		}

		// main's membership rides on the next advert; the backup only
		// reports it (main adopts it, not the node).
		if err := a.SetMembership(Membership{Version: 2, Servers: []string{"10.9.0.1:6379", "10.9.0.2:6379"}}); err != nil {
			t.Fatal(err)
		}
		if err := a.SetMembership(Membership{Version: 3, Servers: []string{"x:1,y:2"}}); err == nil {
			t.Fatal("SetMembership took a server with a comma")
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if pi, _ := b.Peer(); pi.Membership.Version != 2 || !slices.Equal(pi.Membership.Servers, []string{"10.9.0.1:6379", "10.9.0.2:6379"}) {
			t.Fatalf("backup heard membership %+v", pi.Membership)
		}

		// Kill a: its adverts stop abruptly (no release).
		drain(bch)
		killed := time.Now()
		fn.setCut(addr1, true)
		c := waitRole(t, bch, Master)
		down := MasterDownInterval(100, 200*time.Millisecond)
		if took := c.At.Sub(killed); took <= down-200*time.Millisecond || took > down {
			t.Fatalf("takeover %v after the kill, want within (%v, %v]", took, down-200*time.Millisecond, down)
		} else {
			t.Logf("kill: b claimed %v after a's last chance to advertise (master-down %v)", took, down)
		}
		synctest.Wait()
		if !b.owner.has(testVIP) || b.Payload().Epoch != 5 {
			t.Fatalf("new master: holds VIP %v, payload %+v; want the VIP and the inherited epoch 5", b.owner.has(testVIP), b.Payload())
		}

		// The partition heals: two masters; the higher priority keeps it
		// and re-announces it at once, since b's GARPs took the neighbours.
		garps := a.ann.n.Load()
		fn.setCut(addr1, false)
		c = waitRole(t, bch, Backup)
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if a.Role() != Master || b.owner.has(testVIP) || !a.owner.has(testVIP) {
			t.Fatalf("after heal: a=%v b=%v, b holds VIP %v", a.Role(), b.Role(), b.owner.has(testVIP))
		}
		if n := a.ann.n.Load() - garps; n != 3 {
			t.Fatalf("after heal a sent %d GARPs, want one burst of 3", n)
		}

		// Graceful stop: a gives up mastership at once but keeps the VIP
		// until b, after its skew time exactly, claims it; no gap.
		time.Sleep(time.Second)
		drain(bch)
		ach, unsubA := a.Subscribe()
		defer unsubA()
		stopped := time.Now()
		a.stop()
		synctest.Wait()
		if st := a.Stats(); a.Role() != Releasing || a.IsMaster() || !a.owner.has(testVIP) || st.Role != Releasing || !st.HoldsVIP {
			t.Fatalf("a right after the stop: role %v master %v VIP %v stats %+v; want RELEASING, not master, VIP kept",
				a.Role(), a.IsMaster(), a.owner.has(testVIP), st)
		}
		a.halt(t)
		if a.owner.has(testVIP) || a.Role() != Init {
			t.Fatalf("a after Run returned: role %v, VIP %v; want INIT without the VIP", a.Role(), a.owner.has(testVIP))
		}
		c = waitRole(t, bch, Master)
		if took, skew := c.At.Sub(stopped), SkewTime(100, 200*time.Millisecond); took != skew {
			t.Fatalf("graceful takeover after %v, want the skew time %v", took, skew)
		} else {
			t.Logf("graceful: b claimed %v after a stopped (skew %v)", took, skew)
		}
		if rc := waitRole(t, ach, Releasing); !rc.At.Equal(stopped) {
			t.Fatalf("a turned RELEASING %v after the stop, want at once", rc.At.Sub(stopped))
		}
		if rel := waitRole(t, ach, Init); rel.At.Before(c.At) {
			t.Fatalf("a removed the VIP %v before b claimed it", c.At.Sub(rel.At))
		} else {
			t.Logf("graceful: a removed the VIP %v after b claimed it", rel.At.Sub(c.At))
		}
		st := b.Stats()
		if st.Role != Master || st.TransitionsTo[Master] != 2 || st.AdvertsReceived == 0 || st.AdvertsSent == 0 || !st.HoldsVIP {
			t.Fatalf("b stats %+v", st)
		}
		b.halt(t)
	})
}

// TestNodeHandover: a graceful stop of the master when the peer cannot hear
// it at first (its release is re-sent every interval) or at all (Run returns
// after the handover timeout, without the VIP); a backup stops at once.
func TestNodeHandover(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		heal  time.Duration // the a → b link comes back this long after the stop; -1: never
		claim time.Duration // b claims this long after the stop; -1: never
	}{
		{"first release lost", 100 * ms, 200*ms + SkewTime(100, 200*ms)},
		{"two releases lost", 300 * ms, 400*ms + SkewTime(100, 200*ms)},
		// b hears nothing more from a: it claims after its master-down
		// interval from a's last advert, sent just before the stop.
		{"every release lost", -1, MasterDownInterval(100, 200*ms)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fn := newFakeNet()
				a := startFake(t, fn, addr1, addr2, 150, nil)
				b := startFake(t, fn, addr2, addr1, 100, nil)
				bch, unsub := b.Subscribe()
				defer unsub()
				time.Sleep(2 * time.Second) // a claimed at +682.8125ms: it advertises at +1.8828125s, +2.0828125s
				synctest.Wait()
				if a.Role() != Master || b.Role() != Backup {
					t.Fatalf("roles a=%v b=%v, want MASTER/BACKUP", a.Role(), b.Role())
				}
				time.Sleep(82812500) // a's advert at +2.0828125s has gone out
				synctest.Wait()
				ach, unsubA := a.Subscribe()
				defer unsubA()
				sent := a.Stats().AdvertsSent
				fn.setDrop(addr1, addr2, true)
				stopped := time.Now()
				go a.halt(t)
				if tc.heal >= 0 {
					time.Sleep(tc.heal)
					fn.setDrop(addr1, addr2, false)
				}
				c := waitRole(t, bch, Master)
				if took := c.At.Sub(stopped); took != tc.claim {
					t.Fatalf("b claimed %v after the stop, want %v", took, tc.claim)
				}
				if rel := waitRole(t, ach, Init); !rel.At.Equal(c.At) {
					t.Fatalf("a removed the VIP %v after b claimed, want at b's first advert (at once here)", rel.At.Sub(c.At))
				}
				time.Sleep(time.Second)
				synctest.Wait()
				if a.Role() != Init || a.owner.has(testVIP) || !b.owner.has(testVIP) {
					t.Fatalf("after the handover: a=%v a VIP %v b VIP %v", a.Role(), a.owner.has(testVIP), b.owner.has(testVIP))
				}
				// One release at the stop, then one per interval until b's
				// first advert reached a (at once: only a → b is cut).
				n := a.Stats().AdvertsSent - sent
				if want := uint64(tc.claim/(200*ms)) + 1; n != want {
					t.Errorf("a sent %d releases, want %d", n, want)
				}
			})
		})
	}

	t.Run("no peer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fn := newFakeNet()
			a := startFake(t, fn, addr1, addr2, 150, nil)
			time.Sleep(time.Second)
			synctest.Wait()
			if a.Role() != Master || !a.owner.has(testVIP) {
				t.Fatalf("a is %v, want MASTER with the VIP", a.Role())
			}
			sent := a.Stats().AdvertsSent
			stopped := time.Now()
			a.halt(t)
			if took, want := time.Since(stopped), DefaultHandoverTimeout(200*ms); took != want {
				t.Fatalf("Run returned %v after the stop, want the handover timeout %v", took, want)
			}
			if a.owner.has(testVIP) || a.Role() != Init {
				t.Fatalf("a after the timeout: %v, VIP %v", a.Role(), a.owner.has(testVIP))
			}
			if n := a.Stats().AdvertsSent - sent; n != 5 { // at +0, 200, 400, 600, 800ms
				t.Fatalf("a sent %d releases, want 5", n)
			}
		})
	})

	t.Run("backup", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, a, b := settledPair(t, nil)
			stopped := time.Now()
			b.halt(t)
			if took := time.Since(stopped); took != 0 || b.Role() != Init || a.Role() != Master {
				t.Fatalf("backup stop took %v; a=%v b=%v", took, a.Role(), b.Role())
			}
		})
	})
}

// TestNodeTrackingReconcileAndBadInput: health demotion, the reconcile loop
// repairing the address both ways, counted bad input, and a failing add.
// TestNodeOneWayPartition: b stops hearing a and claims too, while a hears
// b's adverts every interval. a keeps the VIP and re-announces it once for
// the whole contest; when b hears a again it steps down, releases, and a
// re-announces once more.
func TestNodeOneWayPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn := newFakeNet()
		a := startFake(t, fn, addr1, addr2, 150, nil)
		b := startFake(t, fn, addr2, addr1, 100, nil)
		bch, unsub := b.Subscribe()
		defer unsub()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if a.Role() != Master || b.Role() != Backup {
			t.Fatalf("roles a=%v b=%v, want MASTER/BACKUP", a.Role(), b.Role())
		}

		garps := a.ann.n.Load()
		fn.setDrop(addr1, addr2, true)
		waitRole(t, bch, Master)
		time.Sleep(3 * time.Second) // 15 of b's adverts reach a
		synctest.Wait()
		if a.Role() != Master || !a.owner.has(testVIP) || !b.owner.has(testVIP) {
			t.Fatalf("one-way partition: a=%v b=%v, VIP on a %v b %v; want both master with the VIP",
				a.Role(), b.Role(), a.owner.has(testVIP), b.owner.has(testVIP))
		}
		if n := a.ann.n.Load() - garps; n != 3 {
			t.Fatalf("a sent %d GARPs while hearing b's adverts, want one burst of 3", n)
		}
		if st := a.Stats(); st.AdvertsReceived < 15 {
			t.Fatalf("a accepted %d adverts, want b's every interval", st.AdvertsReceived)
		}

		garps = a.ann.n.Load()
		fn.setDrop(addr1, addr2, false)
		waitRole(t, bch, Backup)
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if b.owner.has(testVIP) || !a.owner.has(testVIP) || a.Role() != Master {
			t.Fatalf("after heal: a=%v, VIP on a %v b %v", a.Role(), a.owner.has(testVIP), b.owner.has(testVIP))
		}
		if n := a.ann.n.Load() - garps; n != 3 {
			t.Fatalf("a sent %d GARPs after b released, want one burst of 3", n)
		}
		if pi, _ := a.Peer(); pi.Priority != 0 || pi.Role != Backup {
			t.Fatalf("a last heard %+v, want b's priority-0 release", pi)
		}
	})
}

func TestNodeTrackingReconcileAndBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn := newFakeNet()
		a := startFake(t, fn, addr1, addr2, 150, func(c *Config) { c.NoPreempt = true })
		b := startFake(t, fn, addr2, addr1, 100, func(c *Config) { c.NoPreempt = true })
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if a.Role() != Master {
			t.Fatalf("a is %v", a.Role())
		}

		// a loses Redis: the healthy b takes over at once despite nopreempt.
		a.SetHealthy(false)
		synctest.Wait()
		if a.Role() != Backup || b.Role() != Master || !b.owner.has(testVIP) || a.owner.has(testVIP) {
			t.Fatalf("after a unhealthy: a=%v b=%v", a.Role(), b.Role())
		}

		// Someone deletes the VIP from the master: restored within 1s, with GARPs.
		time.Sleep(500 * time.Millisecond) // let the claim's GARP burst finish
		garps := b.ann.n.Load()
		b.owner.Del(testVIP)
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if !b.owner.has(testVIP) || b.Stats().VIPRepairs != 1 || b.ann.n.Load() != garps+3 {
			t.Fatalf("VIP not restored: has %v, stats %+v", b.owner.has(testVIP), b.Stats())
		}
		// Someone adds it on the backup: removed.
		a.owner.Add(testVIP)
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		if a.owner.has(testVIP) || a.Stats().VIPRepairs != 1 {
			t.Fatalf("stray VIP not removed from the backup: %+v", a.Stats())
		}

		// Bad input at b: counted by reason, state unchanged.
		forged := sampleAdvert()
		forged.Sender, forged.Priority, forged.Time = addr1, 254, time.Now()
		fb, _ := Marshal(forged, []byte("not-the-shared-secret"))
		for _, d := range [][]byte{fb, []byte("hello"), fb[:30]} {
			fn.inject(addr2, addr1, d)
		}
		synctest.Wait()
		st := b.Stats()
		if st.Rejected[ReasonBadMAC] != 1 || st.Rejected[ReasonNotAdvert] != 1 || st.Rejected[ReasonTruncated] != 1 || b.Role() != Master {
			t.Fatalf("after bad input: role %v rejected %v", b.Role(), st.Rejected)
		}

		// b cannot (re-)add the VIP: FAULT, a (unhealthy, but the only
		// candidate) claims after its skew, and b returns once the hold ends.
		b.owner.setFailAdd(errors.New("operation not permitted"))
		b.owner.Del(testVIP)
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		if b.Role() != Fault || a.Role() != Master {
			t.Fatalf("after add failure: a=%v b=%v, want MASTER/FAULT", a.Role(), b.Role())
		}
		b.owner.setFailAdd(nil)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if b.Role() != Master || !b.owner.has(testVIP) || a.Role() != Backup {
			t.Fatalf("after the hold: a=%v b=%v", a.Role(), b.Role())
		}
		a.halt(t)
		b.halt(t)
	})
}

// TestNodeLoopbackUDP runs two Nodes (no VIP) with the real UDP transport on
// 127.0.0.1 and 127.0.0.2; no root needed.
func TestNodeLoopbackUDP(t *testing.T) {
	freePort := func(ip string) uint16 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Skipf("cannot bind %s: %v", ip, err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
	a1, a2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	p1, p2 := freePort("127.0.0.1"), freePort("127.0.0.2")
	mk := func(self netip.Addr, port uint16, peer netip.AddrPort, prio uint8) *Node {
		n, err := New(Config{Peers: []netip.AddrPort{peer}, Address: self, Port: port, Priority: prio,
			Interval: 50 * time.Millisecond, Secret: testKey}, testLogger(t, self.String()))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a := mk(a1, p1, netip.AddrPortFrom(a2, p2), 200)
	b := mk(a2, p2, netip.AddrPortFrom(a1, p1), 100)
	bch, unsub := b.Subscribe()
	defer unsub()
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- a.Run(ctxA) }()
	go func() { doneB <- b.Run(ctxB) }()
	defer func() { stopA(); stopB(); <-doneA; <-doneB }()

	deadline := time.Now().Add(5 * time.Second)
	for !(a.IsMaster() && b.Role() == Backup && b.Stats().AdvertsReceived > 2) {
		if time.Now().After(deadline) {
			t.Fatalf("no election: a=%v b=%v", a.Role(), b.Role())
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.SetPayload(3, "127.0.0.1:6379")
	// The longest membership crosses a real socket in one datagram.
	long := longest().Membership
	if err := a.SetMembership(long); err != nil {
		t.Fatal(err)
	}
	for {
		if pi, _ := b.Peer(); pi.Membership.Version == long.Version && slices.Equal(pi.Membership.Servers, long.Servers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never heard the longest membership; rejected %v", nonZero(b.Stats().Rejected))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Forged and garbage datagrams from a real socket are counted. They come
	// from a's address but not from its port, which b's peer names: dropped
	// before decoding.
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a1, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(a2, p2)))
	if err != nil {
		t.Fatal(err)
	}
	forged := sampleAdvert()
	forged.Sender, forged.Time = a1, time.Now()
	fb, _ := Marshal(forged, []byte("wrong-secret-wrong-secret"))
	c.Write(fb)
	c.Write([]byte{0x72, 0x76, 0x01})
	c.Close()

	drain(bch)
	stopped := time.Now()
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	doneA <- nil
	ch := waitRole(t, bch, Master)
	took := ch.At.Sub(stopped)
	skew := SkewTime(100, 50*time.Millisecond)
	t.Logf("loopback graceful takeover: %v (skew %v); a's Run returned %v after b's claim", took, skew, returned.Sub(ch.At))
	if returned.Before(ch.At) {
		t.Fatalf("a's Run returned %v before b claimed the VIP", ch.At.Sub(returned))
	}
	if took > skew+200*time.Millisecond {
		t.Fatalf("graceful takeover took %v, want about the skew %v", took, skew)
	}
	st := b.Stats()
	if st.Rejected[ReasonNotPeer] != 2 || st.Rejected[ReasonBadMAC] != 0 || st.Rejected[ReasonTruncated] != 0 {
		t.Fatalf("rejected %v, want two not-peer", nonZero(st.Rejected))
	}
	if st.RecvBuffer <= 0 {
		t.Errorf("receive buffer %d", st.RecvBuffer)
	}
	if b.Payload() != (Payload{3, "127.0.0.1:6379"}) {
		t.Fatalf("payload %+v not inherited", b.Payload())
	}
}

var stranger = netip.MustParseAddr("10.0.0.9")

// TestNodeDropsNonPeersFirst: datagrams from an address other than the
// peers' (or from another port, for a peer configured with one) are
// dropped before they are decoded, even a correctly signed advert that
// would make the master step down, and counted as not-peer. From the
// peer's address and port, the MAC decides.
func TestNodeDropsNonPeersFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peerPort := func(c *Config) { c.Peers[0] = netip.AddrPortFrom(c.Peers[0].Addr(), DefaultPort) }
		fn, a, _ := settledPair(t, peerPort)
		// Signed with the shared key: it would outrank a.
		claim := func(sender netip.Addr, boot uint64) Advert {
			return Advert{Priority: 254, Healthy: true, Role: Master, Interval: 200 * time.Millisecond,
				Sender: sender, BootID: boot, Seq: 1, Time: time.Now()}
		}
		fromStranger, _ := Marshal(claim(stranger, 7), testKey)
		fromB, _ := Marshal(claim(addr2, 8), testKey)
		forgedB, _ := Marshal(claim(addr2, 9), []byte("not-the-shared-secret"))
		fn.inject(addr1, stranger, fromStranger)
		fn.inject(addr1, stranger, []byte("hello"))
		fn.injectPort(addr1, netip.AddrPortFrom(addr2, 40000), fromB) // a names b's port
		fn.inject(addr1, addr2, forgedB)
		synctest.Wait()
		st := a.Stats()
		want := map[Reason]uint64{ReasonNotPeer: 3, ReasonBadMAC: 1}
		for _, r := range Reasons {
			if st.Rejected[r] != want[r] {
				t.Errorf("rejected %v: %d, want %d", r, st.Rejected[r], want[r])
			}
		}
		if a.Role() != Master || st.Transitions != 2 {
			t.Fatalf("a is %v after %d transitions", a.Role(), st.Transitions)
		}
		// The same signed advert from b's address and port is accepted.
		fn.inject(addr1, addr2, fromB)
		synctest.Wait()
		if a.Role() != Backup {
			t.Fatalf("a is %v after a priority-254 advert from its peer", a.Role())
		}
	})
}

// TestNodeTimerCatchesUp: while the node's reader is stalled (as behind a
// flood), the master's adverts and junk pile up in the queue; when the
// master-down timer fires, the node first reads everything that arrived
// before it, so the backup never claims while the master is advertising.
func TestNodeTimerCatchesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn, a, b := settledPair(t, nil)
		b.tr.stall(true)
		fn.inject(addr2, addr1, []byte("junk")) // the last wake-up before the stall
		synctest.Wait()
		before := b.Stats()
		junk := 0
		for i := 0; i < 60; i++ { // 3s
			for j := 0; j < 20; j++ {
				fn.inject(addr2, addr1, []byte("junk"))
				junk++
			}
			time.Sleep(50 * time.Millisecond)
		}
		synctest.Wait()
		after := b.Stats()
		heard := after.AdvertsReceived - before.AdvertsReceived
		read := after.Rejected[ReasonNotAdvert] - before.Rejected[ReasonNotAdvert]
		t.Logf("stalled for 3s: read %d adverts and %d of %d junk datagrams at the timers", heard, read, junk)
		if b.Role() != Backup || a.Role() != Master || after.Transitions != before.Transitions {
			t.Fatalf("a=%v b=%v after %d transitions", a.Role(), b.Role(), after.Transitions-before.Transitions)
		}
		if heard < 3 || read == 0 {
			t.Fatalf("the timers read %d adverts and %d junk datagrams", heard, read)
		}
		b.tr.stall(false)
	})
}

// TestNodeDefersTakeoverOnDrops: the master goes silent while the backup's
// receive queue keeps overflowing. The master's adverts may have been among
// the lost datagrams, so the backup takes over only when the loss hold
// (DefaultLossHold after it last heard the master) ends, and counts it.
func TestNodeDefersTakeoverOnDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn, _, b := settledPair(t, nil)
		ch, unsub := b.Subscribe()
		defer unsub()
		fn.setCut(addr1, true)
		synctest.Wait()
		heard, _ := b.Peer()
		for i := 0; i < 40; i++ { // 12s: longer than the hold
			b.tr.addDropped(100)
			fn.inject(addr2, stranger, []byte("x")) // a read, which notices
			time.Sleep(300 * time.Millisecond)
		}
		c := waitRole(t, ch, Master)
		hold := DefaultLossHold(100, 200*time.Millisecond)
		if took := c.At.Sub(heard.HeardAt); took != hold {
			t.Errorf("claimed %v after the master was last heard, want the loss hold %v", took, hold)
		}
		st := b.Stats()
		if st.RecvDropped != 4000 || st.TakeoverDeferrals < 20 || st.Rejected[ReasonNotPeer] != 40 {
			t.Errorf("dropped %d, deferrals %d, not-peer %d; want 4000, ≥20, 40", st.RecvDropped, st.TakeoverDeferrals, st.Rejected[ReasonNotPeer])
		}
	})
}

// TestNodeFloodLogsOnce: a flood is logged once per kind, then once every
// 10s with the count of what was not, while every datagram is counted.
func TestNodeFloodLogsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn := newFakeNet()
		var mu sync.Mutex
		var logs strings.Builder
		logger := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(b)
		}), nil))
		startFake(t, fn, addr1, addr2, 150, nil)
		b := startFakeLog(t, fn, addr2, addr1, 100, nil, logger)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		fa := sampleAdvert()
		fa.Sender, fa.Time = addr1, time.Now()
		forged, _ := Marshal(fa, []byte("not-the-shared-secret"))
		flood := func(n int) {
			for range n {
				fn.inject(addr2, stranger, []byte("junk"))
				fn.inject(addr2, addr1, forged)
			}
			b.tr.addDropped(5)
			fn.inject(addr2, stranger, []byte("junk"))
			synctest.Wait()
		}
		lines := func(substr string) (out []string) {
			mu.Lock()
			defer mu.Unlock()
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, substr) {
					out = append(out, l)
				}
			}
			return out
		}
		flood(1000)
		time.Sleep(11 * time.Second)
		flood(1)
		for _, tc := range []struct {
			what, second string
		}{
			{"reason=not-peer", "suppressed=1000"},
			{"reason=bad-mac", "suppressed=999"},
			{"receive queue overflowed", "suppressed=0"},
		} {
			got := lines(tc.what)
			if len(got) != 2 || strings.Contains(got[0], "suppressed") || (tc.second != "suppressed=0" && !strings.Contains(got[1], tc.second)) {
				t.Errorf("%s: logged %d lines, want 2, the second with %s:\n%s", tc.what, len(got), tc.second, strings.Join(got, "\n"))
			}
		}
		st := b.Stats()
		if st.Rejected[ReasonNotPeer] != 1003 || st.Rejected[ReasonBadMAC] != 1001 || st.RecvDropped != 10 || b.Role() != Backup {
			t.Errorf("not-peer %d, bad-mac %d, dropped %d, role %v", st.Rejected[ReasonNotPeer], st.Rejected[ReasonBadMAC], st.RecvDropped, b.Role())
		}
	})
}
