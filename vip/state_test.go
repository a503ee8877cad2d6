package vip

import (
	"math/rand"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

var (
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	addr1 = netip.MustParseAddr("10.0.0.1")
	addr2 = netip.MustParseAddr("10.0.0.2")
)

func TestTimerArithmetic(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		prio       uint8
		interval   time.Duration
		skew, down time.Duration
	}{
		{100, 200 * ms, 121875 * time.Microsecond, 721875 * time.Microsecond},
		{150, 200 * ms, 82812500, 682812500},
		{254, 200 * ms, 1562500, 601562500},
		{1, 200 * ms, 199218750, 799218750},
		{100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{128, 10 * ms, 5 * ms, 35 * ms},
	} {
		if got := SkewTime(tc.prio, tc.interval); got != tc.skew {
			t.Errorf("SkewTime(%d, %v) = %v, want %v", tc.prio, tc.interval, got, tc.skew)
		}
		if got := MasterDownInterval(tc.prio, tc.interval); got != tc.down {
			t.Errorf("MasterDownInterval(%d, %v) = %v, want %v", tc.prio, tc.interval, got, tc.down)
		}
	}
	// Higher priority always waits strictly less.
	for p := 1; p < 254; p++ {
		if MasterDownInterval(uint8(p), 200*ms) <= MasterDownInterval(uint8(p+1), 200*ms) {
			t.Fatalf("master-down interval not decreasing at priority %d", p)
		}
	}
}

func defaultParams() Params {
	return Params{
		Self: addr1, Priority: 100, Interval: 200 * time.Millisecond, Preempt: true,
		GARPCount: 3, GARPSpacing: 100 * time.Millisecond, GARPRefresh: 10 * time.Second, FaultHold: 2 * time.Second,
		HandoverTimeout: DefaultHandoverTimeout(200 * time.Millisecond),
	}
}

// driver runs Step on a fake clock, firing timers like Node does.
type driver struct {
	t   *testing.T
	st  State
	now time.Time
	// log of every effect with the time it was emitted
	effs []timed
}

type timed struct {
	at time.Time
	e  Effect
}

func newDriver(t *testing.T, p Params) *driver {
	return &driver{t: t, st: NewState(p), now: t0}
}

func (d *driver) ev(e Event) []Effect {
	d.t.Helper()
	var effs []Effect
	d.st, effs = Step(d.st, e, d.now)
	for _, e := range effs {
		d.effs = append(d.effs, timed{d.now, e})
	}
	return effs
}

// advance moves the clock by dur, delivering a Tick at every deadline.
func (d *driver) advance(dur time.Duration) {
	d.t.Helper()
	end := d.now.Add(dur)
	for i := 0; ; i++ {
		if i > 100000 {
			d.t.Fatal("timer never advances")
		}
		at := d.st.TimerAt
		if at.IsZero() || at.After(end) {
			break
		}
		d.now = at
		d.ev(Tick{})
	}
	d.now = end
}

// when returns the time of the first effect matching f after since, or zero.
func (d *driver) when(since time.Time, f func(Effect) bool) time.Time {
	for _, te := range d.effs {
		if !te.at.Before(since) && f(te.e) {
			return te.at
		}
	}
	return time.Time{}
}

func becameMaster(e Effect) bool { tr, ok := e.(Transition); return ok && tr.To == Master }
func becameBackup(e Effect) bool { tr, ok := e.(Transition); return ok && tr.To == Backup }

func masterAdvert(from netip.Addr, prio uint8) AdvertReceived {
	return AdvertReceived{From: from, Priority: prio, Healthy: true, Role: Master, Interval: 200 * time.Millisecond}
}

func TestStartThenMasterDown(t *testing.T) {
	d := newDriver(t, defaultParams())
	effs := d.ev(Start{})
	want := []Effect{RemoveVIP{}, Transition{Init, Backup, "start"}, SetTimer{At: t0.Add(721875 * time.Microsecond)}}
	if !reflect.DeepEqual(effs, want) {
		t.Fatalf("start effects\n got %v\nwant %v", effs, want)
	}
	d.advance(721874 * time.Microsecond)
	if d.st.Role != Backup {
		t.Fatalf("role %v before master-down, want BACKUP", d.st.Role)
	}
	effs = nil
	d.now = d.now.Add(time.Microsecond)
	effs = d.ev(Tick{})
	want = []Effect{
		Transition{Backup, Master, "master down"},
		AddVIP{},
		SendGARP{Count: 3},
		SendAdvert{Priority: 100, Healthy: true, Role: Master},
		SetTimer{At: d.now.Add(200 * time.Millisecond)},
	}
	if !reflect.DeepEqual(effs, want) {
		t.Fatalf("master-down effects\n got %v\nwant %v", effs, want)
	}
	// Adverts every interval, a GARP refresh every 10s.
	since := d.now
	d.advance(10 * time.Second)
	adverts, garps := 0, 0
	for _, te := range d.effs {
		if te.at.After(since) {
			switch e := te.e.(type) {
			case SendAdvert:
				adverts++
			case SendGARP:
				garps++
				if e.Count != 1 {
					t.Errorf("refresh GARP count %d, want 1", e.Count)
				}
			}
		}
	}
	if adverts != 50 || garps != 1 {
		t.Errorf("in 10s: %d adverts, %d GARP refreshes; want 50, 1", adverts, garps)
	}
}

// TestMasterSeesAdvert: a master meeting another master's advert steps down
// exactly when the other outranks it (health, priority, then address).
func TestMasterSeesAdvert(t *testing.T) {
	lower := netip.MustParseAddr("10.0.0.0")
	for _, tc := range []struct {
		name        string
		ourHealthy  bool
		from        netip.Addr
		prio        uint8
		healthy     bool
		role        Role
		wantStepDwn bool
	}{
		{"higher priority", true, addr2, 101, true, Master, true},
		{"lower priority", true, addr2, 99, true, Master, false},
		{"equal priority, higher address", true, addr2, 100, true, Master, true},
		{"equal priority, lower address", true, lower, 100, true, Master, false},
		{"higher priority but unhealthy", true, addr2, 200, false, Master, false},
		{"we are unhealthy, peer healthy lower prio", false, lower, 1, true, Master, true},
		{"both unhealthy, higher priority", false, addr2, 101, false, Master, true},
		{"priority 0 release", true, addr2, 0, true, Init, false},
		{"not a master", true, addr2, 200, true, Backup, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, defaultParams())
			d.ev(Start{})
			d.advance(time.Second)
			if !tc.ourHealthy {
				d.ev(TrackingChanged{Healthy: false})
			}
			effs := d.ev(AdvertReceived{From: tc.from, Priority: tc.prio, Healthy: tc.healthy, Role: tc.role, Interval: 200 * time.Millisecond})
			stepped := d.st.Role == Backup
			if stepped != tc.wantStepDwn {
				t.Fatalf("stepped down = %v, want %v (effects %v)", stepped, tc.wantStepDwn, effs)
			}
			release := SendAdvert{Priority: 0, Healthy: tc.ourHealthy, Role: Backup}
			if stepped {
				// The VIP goes before the release that tells the winner to
				// re-announce it.
				rm, rel := effectIndex(effs, RemoveVIP{}), effectIndex(effs, release)
				if rm < 0 || rel < rm {
					t.Errorf("stepping down: want remove-vip then %v, got %v", release, effs)
				}
				if hasEffect(effs, SendGARP{Count: 3}) {
					t.Errorf("the loser sent GARPs: %v", effs)
				}
				return
			}
			if _, ok := effs[0].(SendAdvert); !ok {
				t.Errorf("a master that keeps the VIP answers with an advert at once, got %v", effs)
			}
			// A rival master, or a peer releasing, may have drawn the
			// neighbours to its MAC: re-announce.
			wantGARP := tc.prio == 0 || tc.role == Master
			if got := hasEffect(effs, SendGARP{Count: 3}); got != wantGARP {
				t.Errorf("GARP burst = %v, want %v (effects %v)", got, wantGARP, effs)
			}
		})
	}
}

func hasEffect(effs []Effect, e Effect) bool { return effectIndex(effs, e) >= 0 }

func effectIndex(effs []Effect, e Effect) int {
	for i, x := range effs {
		if reflect.DeepEqual(x, e) {
			return i
		}
	}
	return -1
}

// TestReannounceRateLimit: a master re-sends its GARP burst once per contest
// with a rival master (a contest ends after a master-down interval without
// the rival's adverts, or with its release), and on a release unless its own
// burst (3 × 100ms spacing: its last GARP 200ms after the first) is still
// going out.
func TestReannounceRateLimit(t *testing.T) {
	ms := time.Millisecond
	rival := masterAdvert(addr2, 50)
	slowRival := rival
	slowRival.Interval = time.Second
	sick := masterAdvert(addr2, 200) // outranks our priority, but not our health
	sick.Healthy = false
	release := AdvertReceived{From: addr2, Priority: 0, Healthy: true, Role: Backup, Interval: 200 * ms}
	notMaster := rival
	notMaster.Role = Backup
	down := MasterDownInterval(100, 200*ms) // ours, with the rival's interval: 721.875ms

	type heard struct {
		after time.Duration // since the previous advert (the first: since we became master + 1s)
		adv   AdvertReceived
		burst bool
	}
	flood := []heard{{0, rival, true}}
	for i := 0; i < 40; i++ { // 8s of adverts every interval: a one-way partition
		flood = append(flood, heard{200 * ms, rival, false})
	}
	for _, tc := range []struct {
		name  string
		heard []heard
	}{
		{"rival master", []heard{{0, rival, true}}},
		{"unhealthy rival master of higher priority", []heard{{0, sick, true}}},
		{"release", []heard{{0, release, true}}},
		{"advert not claiming master", []heard{{0, notMaster, false}}},
		{"flood of rival adverts: one burst", flood},
		{"gap under the master-down interval: same contest", []heard{{0, rival, true}, {down - 1, rival, false}}},
		{"gap of the master-down interval: new contest", []heard{{0, rival, true}, {down, rival, true}}},
		{"a slow rival's master-down interval: same contest", []heard{{0, slowRival, true}, {3 * time.Second, slowRival, false}}},
		{"release while our burst goes out", []heard{{0, rival, true}, {199 * ms, release, false}}},
		{"release after our burst", []heard{{0, rival, true}, {200 * ms, release, true}}},
		{"release after a long contest", append(flood[:len(flood):len(flood)], heard{200 * ms, release, true})},
		{"release ends the contest", []heard{{0, rival, true}, {10 * ms, release, false}, {300 * ms, rival, true}}},
		// A yielding rival repeats its release every interval for three
		// intervals (State.YieldUntil): only the first re-announces.
		{"repeated release", []heard{{0, release, true}, {100 * ms, release, false}, {100 * ms, release, false}, {200 * ms, release, false}}},
		{"release long after the last", []heard{{0, release, true}, {time.Second, release, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, defaultParams())
			d.ev(Start{})
			d.advance(time.Second) // master since +721.875ms; its claim burst is over
			for i, h := range tc.heard {
				d.advance(h.after)
				effs := d.ev(h.adv)
				if d.st.Role != Master {
					t.Fatalf("advert %d: role %v, want MASTER", i, d.st.Role)
				}
				if got := hasEffect(effs, SendGARP{Count: 3}); got != h.burst {
					t.Fatalf("advert %d (prio %d %v) at +%v: burst = %v, want %v (effects %v)",
						i, h.adv.Priority, h.adv.Role, d.now.Sub(t0), got, h.burst, effs)
				}
			}
		})
	}
}

// TestReleaseDuringClaimBurst: a release that answers our claim (preemption:
// the old master hears the new one and steps down) needs no second burst.
func TestReleaseDuringClaimBurst(t *testing.T) {
	d := newDriver(t, defaultParams())
	d.ev(Start{})
	d.advance(MasterDownInterval(100, 200*time.Millisecond))
	if d.st.Role != Master {
		t.Fatalf("role %v, want MASTER", d.st.Role)
	}
	d.advance(50 * time.Millisecond)
	if effs := d.ev(AdvertReceived{From: addr2, Priority: 0, Healthy: true, Role: Backup}); hasEffect(effs, SendGARP{Count: 3}) {
		t.Fatalf("second burst 50ms into the claim burst: %v", effs)
	}
	// The refresh (a single GARP) replaces a burst: a release after it
	// re-announces.
	d.advance(10 * time.Second)
	if effs := d.ev(AdvertReceived{From: addr2, Priority: 0, Healthy: true, Role: Backup}); !hasEffect(effs, SendGARP{Count: 3}) {
		t.Fatalf("no burst on a release after the refresh: %v", effs)
	}
}

// TestPreemption: a backup facing a master, per preempt mode, delay and
// health. wantAt is when it takes over, relative to the first advert; -1
// means it stays backup while the master keeps advertising.
func TestPreemption(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name          string
		ourPrio       uint8
		preempt       bool
		delay         time.Duration
		track         TrackMode
		ourHealthy    bool
		masterPrio    uint8
		masterHealthy bool
		wantAt        time.Duration
	}{
		{"preempt lower master at once", 150, true, 0, TrackDemote, true, 100, true, 0},
		{"preempt after delay", 150, true, 1000 * ms, TrackDemote, true, 100, true, 1000 * ms},
		{"nopreempt keeps backup", 150, false, 0, TrackDemote, true, 100, true, -1},
		{"equal priority never preempts", 100, true, 0, TrackDemote, true, 100, true, -1},
		{"higher master not preempted", 100, true, 0, TrackDemote, true, 150, true, -1},
		{"unhealthy master yields despite nopreempt", 100, false, 0, TrackDemote, true, 150, false, 0},
		{"unhealthy master yields despite delay", 100, true, time.Second, TrackDemote, true, 150, false, 0},
		{"unhealthy backup does not preempt healthy master", 150, true, 0, TrackDemote, false, 100, true, -1},
		{"both unhealthy: priority decides", 150, true, 0, TrackDemote, false, 100, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := defaultParams()
			p.Priority, p.Preempt, p.PreemptDelay, p.Track = tc.ourPrio, tc.preempt, tc.delay, tc.track
			d := newDriver(t, p)
			if !tc.ourHealthy {
				d.ev(TrackingChanged{Healthy: false})
			}
			d.ev(Start{})
			first := d.now
			adv := masterAdvert(addr2, tc.masterPrio)
			adv.Healthy = tc.masterHealthy
			for i := 0; i < 15 && d.st.Role == Backup; i++ { // 3s of adverts
				d.ev(adv)
				d.advance(200 * ms)
			}
			got := d.when(first, becameMaster)
			switch {
			case tc.wantAt < 0 && !got.IsZero():
				t.Fatalf("took over at +%v, want to stay backup", got.Sub(first))
			case tc.wantAt >= 0 && got.IsZero():
				t.Fatalf("stayed backup, want takeover at +%v", tc.wantAt)
			case tc.wantAt >= 0 && got.Sub(first) != tc.wantAt:
				t.Fatalf("took over at +%v, want +%v", got.Sub(first), tc.wantAt)
			}
		})
	}
}

// TestPreemptDelayResetsWhenOutranked: a pending preemption is dropped when
// the node stops outranking the master.
func TestPreemptDelayResetsWhenOutranked(t *testing.T) {
	p := defaultParams()
	p.Priority, p.PreemptDelay = 150, time.Second
	d := newDriver(t, p)
	d.ev(Start{})
	d.ev(masterAdvert(addr2, 100))
	d.advance(500 * time.Millisecond)
	d.ev(masterAdvert(addr2, 200)) // the master got promoted above us
	for i := 0; i < 10; i++ {
		d.advance(200 * time.Millisecond)
		d.ev(masterAdvert(addr2, 200))
	}
	if d.st.Role != Backup {
		t.Fatalf("role %v, want BACKUP", d.st.Role)
	}
}

func TestBackupTakeover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		last  AdvertReceived
		after time.Duration // from the last advert to the takeover
	}{
		{"master silent", masterAdvert(addr2, 150), MasterDownInterval(100, 200*time.Millisecond)},
		{"master released (priority 0)", AdvertReceived{From: addr2, Priority: 0, Healthy: true, Role: Init, Interval: 200 * time.Millisecond}, SkewTime(100, 200*time.Millisecond)},
		{"master with 1s interval silent", AdvertReceived{From: addr2, Priority: 150, Healthy: true, Role: Master, Interval: time.Second}, MasterDownInterval(100, time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, defaultParams())
			d.ev(Start{})
			d.ev(masterAdvert(addr2, 150))
			d.advance(100 * time.Millisecond)
			d.ev(tc.last)
			last := d.now
			d.advance(5 * time.Second)
			got := d.when(last, becameMaster)
			if got.IsZero() || got.Sub(last) != tc.after {
				t.Fatalf("took over %v after the last advert, want %v", got.Sub(last), tc.after)
			}
		})
	}
}

func TestTrackFault(t *testing.T) {
	p := defaultParams()
	p.Track = TrackFault
	d := newDriver(t, p)
	d.ev(Start{})
	d.advance(time.Second)
	d.ev(PayloadSet{Payload: Payload{Epoch: 3, Master: "r1:6379"}})
	effs := d.ev(TrackingChanged{Healthy: false})
	want := []Effect{
		Transition{Master, Fault, "unhealthy"},
		RemoveVIP{},
		SendAdvert{Priority: 0, Healthy: false, Role: Fault, Payload: Payload{Epoch: 3, Master: "r1:6379"}},
		SetTimer{},
	}
	if !reflect.DeepEqual(effs, want) {
		t.Fatalf("going unhealthy\n got %v\nwant %v", effs, want)
	}
	d.advance(5 * time.Second)
	d.ev(masterAdvert(addr2, 50))
	if d.st.Role != Fault {
		t.Fatalf("role %v while unhealthy, want FAULT", d.st.Role)
	}
	d.ev(TrackingChanged{Healthy: true})
	if d.st.Role != Backup {
		t.Fatalf("role %v once healthy, want BACKUP", d.st.Role)
	}
	// Starting unhealthy goes straight to FAULT.
	d2 := newDriver(t, p)
	d2.ev(TrackingChanged{Healthy: false})
	d2.ev(Start{})
	d2.advance(5 * time.Second)
	if d2.st.Role != Fault {
		t.Fatalf("started unhealthy: role %v, want FAULT", d2.st.Role)
	}
}

func TestTrackDemoteMasterAdvertisesAtOnce(t *testing.T) {
	d := newDriver(t, defaultParams())
	d.ev(Start{})
	d.advance(time.Second)
	effs := d.ev(TrackingChanged{Healthy: false})
	if len(effs) == 0 {
		t.Fatal("no effects")
	}
	if a, ok := effs[0].(SendAdvert); !ok || a.Healthy || a.Priority != 100 {
		t.Fatalf("want an immediate unhealthy advert at priority 100, got %v", effs)
	}
	if d.st.Role != Master {
		t.Fatalf("demoted master with no rival: role %v, want MASTER", d.st.Role)
	}
}

func TestAddFailedHoldsFault(t *testing.T) {
	d := newDriver(t, defaultParams())
	d.ev(Start{})
	d.advance(time.Second)
	failedAt := d.now
	d.ev(AddFailed{})
	if d.st.Role != Fault {
		t.Fatalf("role %v, want FAULT", d.st.Role)
	}
	d.advance(10 * time.Second)
	back := d.when(failedAt, becameBackup)
	if back.Sub(failedAt) != 2*time.Second {
		t.Fatalf("back to BACKUP after %v, want the 2s hold", back.Sub(failedAt))
	}
	if d.when(back, becameMaster).IsZero() {
		t.Fatal("never ran for master again")
	}
}

func TestPayload(t *testing.T) {
	d := newDriver(t, defaultParams())
	d.ev(PayloadSet{Payload: Payload{Epoch: 2, Master: "a:1"}})
	d.ev(Start{})
	adv := masterAdvert(addr2, 150)
	adv.Payload = Payload{Epoch: 7, Master: "b:2"}
	effs := d.ev(adv)
	if !hasEffect(effs, PayloadAdopted{From: addr2, Payload: adv.Payload}) {
		t.Fatalf("newer payload not adopted: %v", effs)
	}
	adv.Payload = Payload{Epoch: 5, Master: "c:3"}
	d.ev(adv)
	d.ev(PayloadSet{Payload: Payload{Epoch: 6, Master: "d:4"}})
	if d.st.Payload != (Payload{Epoch: 7, Master: "b:2"}) {
		t.Fatalf("payload %+v, want the highest epoch 7 b:2", d.st.Payload)
	}
	d.advance(time.Second) // the master is gone: we take over with its decision
	var sent SendAdvert
	for _, te := range d.effs {
		if a, ok := te.e.(SendAdvert); ok {
			sent = a
		}
	}
	if sent.Payload != (Payload{Epoch: 7, Master: "b:2"}) {
		t.Fatalf("new master advertises %+v, want the inherited 7 b:2", sent.Payload)
	}
	effs = d.ev(PayloadSet{Payload: Payload{Epoch: 8, Master: "e:5"}})
	if len(effs) == 0 || !reflect.DeepEqual(effs[0], SendAdvert{Priority: 100, Healthy: true, Role: Master, Payload: Payload{Epoch: 8, Master: "e:5"}}) {
		t.Fatalf("a master advertises a new payload at once, got %v", effs)
	}
}

// TestShutdown: a master stopping gracefully keeps the VIP (Releasing)
// until the peer's advert claims master or the handover timeout passes,
// re-sending its priority-0 advert every interval meanwhile; any other role
// stops at once.
func TestShutdown(t *testing.T) {
	ms := time.Millisecond
	handover := DefaultHandoverTimeout(200 * ms) // 999.21875ms
	release := SendAdvert{Priority: 0, Healthy: true, Role: Init}
	claim := masterAdvert(addr2, 100)

	d := newDriver(t, defaultParams())
	d.ev(Start{})
	d.advance(time.Second)
	stopped := d.now
	effs := d.ev(Shutdown{})
	want := []Effect{Transition{Master, Releasing, "shutdown: handing the vip over"}, release, SetTimer{At: stopped.Add(200 * ms)}}
	if !reflect.DeepEqual(effs, want) {
		t.Fatalf("master shutdown\n got %v\nwant %v", effs, want)
	}
	if d.st.Stopped || d.st.Role != Releasing {
		t.Fatalf("after shutdown: role %v stopped %v, want RELEASING, running", d.st.Role, d.st.Stopped)
	}
	released := func(reason string) []Effect {
		return []Effect{RemoveVIP{}, Transition{Releasing, Init, reason}, SetTimer{}}
	}

	for _, tc := range []struct {
		name string
		// heard arrive in order, after is since the previous (the first:
		// since the shutdown); want is the effects of the last.
		heard []AdvertReceived
		after []time.Duration
		want  []Effect
	}{
		{"the peer's master advert", []AdvertReceived{claim}, []time.Duration{122 * ms}, released("shutdown: 10.0.0.2 claimed the vip")},
		{"a higher-priority master's advert", []AdvertReceived{masterAdvert(addr2, 200)}, []time.Duration{0}, released("shutdown: 10.0.0.2 claimed the vip")},
		{"an unhealthy master's advert", []AdvertReceived{{From: addr2, Priority: 1, Role: Master, Interval: 200 * ms}}, []time.Duration{0}, released("shutdown: 10.0.0.2 claimed the vip")},
		{"a release is not a claim", []AdvertReceived{{From: addr2, Priority: 0, Healthy: true, Role: Init}}, []time.Duration{50 * ms}, nil},
		{"not a master", []AdvertReceived{{From: addr2, Priority: 100, Healthy: true, Role: Backup}}, []time.Duration{50 * ms}, nil},
		{"our own advert", []AdvertReceived{masterAdvert(addr1, 100)}, []time.Duration{50 * ms}, nil},
		{"claim after a lost release", []AdvertReceived{claim}, []time.Duration{300 * ms}, released("shutdown: 10.0.0.2 claimed the vip")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *d
			r.t, r.effs = t, nil
			for i, a := range tc.heard {
				r.advance(tc.after[i])
				effs = r.ev(a)
			}
			if !reflect.DeepEqual(effs, tc.want) {
				t.Fatalf("effects\n got %v\nwant %v", effs, tc.want)
			}
			if tc.want == nil && (r.st.Role != Releasing || r.st.Stopped) {
				t.Fatalf("role %v stopped %v, want still RELEASING", r.st.Role, r.st.Stopped)
			}
			if tc.want != nil && (r.st.Role != Init || !r.st.Stopped) {
				t.Fatalf("role %v stopped %v, want INIT, stopped", r.st.Role, r.st.Stopped)
			}
			// Meanwhile: a priority-0 advert every interval, never a GARP,
			// never the VIP touched.
			for _, te := range r.effs {
				switch e := te.e.(type) {
				case SendGARP, AddVIP:
					t.Errorf("releasing node: %v at +%v", e, te.at.Sub(stopped))
				case SendAdvert:
					if e != release || te.at.Sub(stopped)%(200*ms) != 0 {
						t.Errorf("releasing node sent %v at +%v, want %v every 200ms", e, te.at.Sub(stopped), release)
					}
				}
			}
		})
	}

	t.Run("no peer answers", func(t *testing.T) {
		r := *d
		r.t, r.effs = t, nil
		r.advance(5 * time.Second)
		var sent []time.Duration
		for _, te := range r.effs {
			if e, ok := te.e.(SendAdvert); ok && e == release {
				sent = append(sent, te.at.Sub(stopped))
			}
		}
		if want := []time.Duration{200 * ms, 400 * ms, 600 * ms, 800 * ms}; !reflect.DeepEqual(sent, want) {
			t.Errorf("releases re-sent at %v, want %v", sent, want)
		}
		rm := r.when(stopped, func(e Effect) bool { return e == RemoveVIP{} })
		if rm.Sub(stopped) != handover {
			t.Fatalf("vip removed at +%v, want the handover timeout %v", rm.Sub(stopped), handover)
		}
		last := r.effs[len(r.effs)-3:]
		if want := released("shutdown: no peer claimed the vip within 999.21875ms"); !reflect.DeepEqual(effectsOf(last), want) {
			t.Fatalf("at the timeout\n got %v\nwant %v", effectsOf(last), want)
		}
	})

	t.Run("inputs while releasing", func(t *testing.T) {
		r := *d
		r.t, r.effs = t, nil
		for _, ev := range []Event{Shutdown{}, Start{}, TrackingChanged{Healthy: false}, TrackingChanged{Healthy: true},
			PayloadSet{Payload: Payload{Epoch: 9, Master: "x:1"}}, AddFailed{}} {
			if effs := r.ev(ev); len(effs) != 0 {
				t.Errorf("releasing node reacted to %#v: %v", ev, effs)
			}
		}
		if r.st.Role != Releasing {
			t.Fatalf("role %v, want RELEASING", r.st.Role)
		}
	})

	// Once stopped, nothing.
	r := *d
	r.ev(claim)
	for _, ev := range []Event{Tick{}, Start{}, Shutdown{}, masterAdvert(addr2, 1), TrackingChanged{}, AddFailed{}} {
		if _, effs := Step(r.st, ev, r.now.Add(time.Hour)); len(effs) != 0 {
			t.Fatalf("stopped node reacted to %T: %v", ev, effs)
		}
	}

	// A backup leaves quietly, at once.
	b := newDriver(t, defaultParams())
	b.ev(Start{})
	if effs := b.ev(Shutdown{}); !reflect.DeepEqual(effs, []Effect{Transition{Backup, Init, "shutdown"}, SetTimer{}}) || !b.st.Stopped {
		t.Fatalf("backup shutdown: %v", effs)
	}
	// So does a faulty node.
	p := defaultParams()
	p.Track = TrackFault
	f := newDriver(t, p)
	f.ev(TrackingChanged{Healthy: false})
	f.ev(Start{})
	if effs := f.ev(Shutdown{}); !reflect.DeepEqual(effs, []Effect{Transition{Fault, Init, "shutdown"}, SetTimer{}}) || !f.st.Stopped {
		t.Fatalf("fault shutdown: %v", effs)
	}

	// Without a handover timeout a master releases at once: the VIP goes
	// before the release advert, then it stops.
	p = defaultParams()
	p.HandoverTimeout = 0
	m := newDriver(t, p)
	m.ev(Start{})
	m.advance(time.Second)
	want = []Effect{RemoveVIP{}, release, Transition{Master, Init, "shutdown"}, SetTimer{}}
	if effs := m.ev(Shutdown{}); !reflect.DeepEqual(effs, want) || !m.st.Stopped {
		t.Fatalf("shutdown without handover\n got %v\nwant %v", effs, want)
	}
}

func effectsOf(ts []timed) []Effect {
	out := make([]Effect, len(ts))
	for i, te := range ts {
		out[i] = te.e
	}
	return out
}

// randomEvent draws an event a real loop could deliver.
func randomEvent(r *rand.Rand) (Event, time.Duration) {
	from := []netip.Addr{addr2, netip.MustParseAddr("10.0.0.0"), addr1}[r.Intn(3)]
	adv := AdvertReceived{
		From: from, Priority: uint8(r.Intn(4) * 60), Healthy: r.Intn(3) > 0, Role: Role(r.Intn(4)),
		Interval: time.Duration(1+r.Intn(3)) * 100 * time.Millisecond,
		Payload:  Payload{Epoch: uint64(r.Intn(5)), Master: []string{"", "a:1", "b:2"}[r.Intn(3)]},
	}
	evs := []Event{Tick{}, Tick{}, Tick{}, adv, adv, adv, TrackingChanged{Healthy: r.Intn(2) == 0},
		PayloadSet{Payload: adv.Payload}, AddFailed{}, Start{}, PacketsDropped{N: uint64(1 + r.Intn(1000))}}
	if r.Intn(200) == 0 {
		evs = append(evs, Shutdown{})
	}
	return evs[r.Intn(len(evs))], time.Duration(r.Intn(400)) * time.Millisecond
}

// TestStepPure: Step leaves its input alone, is deterministic, and keeps the
// invariants: the VIP is added only on becoming master and removed on
// leaving it (a graceful stop: on leaving Releasing), so "holds the VIP"
// equals "is master or releasing"; only a master sends a non-zero-priority
// advert or GARPs; a timer is always pending while running.
func TestStepPure(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for run := 0; run < 300; run++ {
		p := defaultParams()
		p.Priority = uint8(1 + r.Intn(254))
		p.Preempt = r.Intn(2) == 0
		p.PreemptDelay = time.Duration(r.Intn(3)) * 300 * time.Millisecond
		p.Track = TrackMode(r.Intn(2))
		p.LossHold = time.Duration(r.Intn(3)) * DefaultLossHold(p.Priority, p.Interval) / 2
		st := NewState(p)
		now := t0
		holds := false
		for i := 0; i < 300; i++ {
			ev, dt := randomEvent(r)
			now = now.Add(dt)
			if _, ok := ev.(Tick); ok && !st.TimerAt.IsZero() && st.TimerAt.After(now) {
				now = st.TimerAt
			}
			before := st
			next, effs := Step(st, ev, now)
			if !reflect.DeepEqual(before, st) {
				t.Fatalf("Step modified its input")
			}
			again, effs2 := Step(st, ev, now)
			if !reflect.DeepEqual(next, again) || !reflect.DeepEqual(effs, effs2) {
				t.Fatalf("Step is not deterministic")
			}
			for _, e := range effs {
				switch e := e.(type) {
				case AddVIP:
					holds = true
				case RemoveVIP:
					holds = false
				case SendAdvert:
					if e.Priority != 0 && next.Role != Master {
						t.Fatalf("%v sent a priority-%d advert", next.Role, e.Priority)
					}
				case SendGARP:
					if next.Role != Master {
						t.Fatalf("%v sent GARPs", next.Role)
					}
				case TakeoverDeferred:
					if next.Role != Backup || e.Until.After(st.LossHoldUntil) || !e.Until.Equal(next.MasterDownAt) {
						t.Fatalf("%v deferred to %v, hold until %v", next.Role, e.Until, st.LossHoldUntil)
					}
				}
			}
			// A releasing master keeps the VIP until it stops.
			if holds != (next.Role == Master || next.Role == Releasing) {
				t.Fatalf("run %d step %d: after %T role %v but holds VIP = %v (effects %v)", run, i, ev, next.Role, holds, effs)
			}
			if next.Role != Init && next.TimerAt.IsZero() && next.Role != Fault {
				t.Fatalf("%v with no timer pending", next.Role)
			}
			if next.Payload.Epoch < st.Payload.Epoch {
				t.Fatalf("epoch went back from %d to %d", st.Payload.Epoch, next.Payload.Epoch)
			}
			st = next
		}
	}
}

// TestPacketsDropped: a backup whose receive queue overflowed acts as if
// its master had just advertised, but never past LossHold after it last
// heard one; a release, or any other role, is not deferred.
func TestPacketsDropped(t *testing.T) {
	ms := time.Millisecond
	down := MasterDownInterval(100, 200*ms) // 721.875ms
	hold := DefaultLossHold(100, 200*ms)    // 7.21875s
	p := defaultParams()
	p.LossHold = hold
	deferral := func(effs []Effect) (time.Time, bool) {
		for _, e := range effs {
			if d, ok := e.(TakeoverDeferred); ok {
				return d.Until, true
			}
		}
		return time.Time{}, false
	}

	t.Run("defers within the hold", func(t *testing.T) {
		d := newDriver(t, p)
		d.ev(Start{})
		d.ev(masterAdvert(addr2, 150))
		heard := d.now
		// Drops every 500ms: each pushes the deadline to a master-down
		// interval from then, until the hold caps it.
		for d.st.MasterDownAt.Before(heard.Add(hold)) {
			d.advance(500 * ms)
			if d.st.Role != Backup {
				t.Fatalf("claimed at +%v, %v after the master was last heard", d.now.Sub(t0), d.now.Sub(heard))
			}
			want := d.now.Add(down)
			if cap := heard.Add(hold); want.After(cap) {
				want = cap
			}
			prev := d.st.MasterDownAt
			until, ok := deferral(d.ev(PacketsDropped{N: 10}))
			if !d.st.MasterDownAt.Equal(want) || ok != want.After(prev) || (ok && !until.Equal(want)) {
				t.Fatalf("drop at +%v: down-at +%v (deferral %v to +%v), want +%v", d.now.Sub(t0), d.st.MasterDownAt.Sub(t0), ok, until.Sub(t0), want.Sub(t0))
			}
		}
		d.ev(PacketsDropped{N: 10}) // capped: nothing more
		d.advance(hold)
		if got := d.when(heard, becameMaster); !got.Equal(heard.Add(hold)) {
			t.Fatalf("claimed at +%v, want at the end of the hold +%v", got.Sub(t0), heard.Add(hold).Sub(t0))
		}
	})

	t.Run("an advert restarts the hold", func(t *testing.T) {
		d := newDriver(t, p)
		d.ev(Start{})
		d.ev(masterAdvert(addr2, 150))
		d.advance(5 * time.Second)
		d.ev(masterAdvert(addr2, 150))
		if want := d.now.Add(hold); !d.st.LossHoldUntil.Equal(want) {
			t.Fatalf("hold until +%v, want +%v", d.st.LossHoldUntil.Sub(t0), want.Sub(t0))
		}
	})

	t.Run("nothing to defer", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			setup func(d *driver)
		}{
			{"just heard the master", func(d *driver) { d.ev(masterAdvert(addr2, 150)) }},
			{"the master released", func(d *driver) {
				d.ev(masterAdvert(addr2, 150))
				d.advance(100 * ms)
				d.ev(AdvertReceived{From: addr2, Priority: 0, Healthy: true, Role: Init, Interval: 200 * ms})
				d.advance(50 * ms)
			}},
			{"master", func(d *driver) { d.advance(time.Second) }},
			{"no loss hold", func(d *driver) {
				d.st.LossHold, d.st.LossHoldUntil = 0, time.Time{}
				d.ev(masterAdvert(addr2, 150))
				d.advance(500 * ms)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d := newDriver(t, p)
				d.ev(Start{})
				tc.setup(d)
				before := d.st
				if effs := d.ev(PacketsDropped{N: 1}); len(effs) != 0 || !reflect.DeepEqual(before, d.st) {
					t.Fatalf("%v: effects %v, state changed %v", before.Role, effs, !reflect.DeepEqual(before, d.st))
				}
			})
		}
	})
}
