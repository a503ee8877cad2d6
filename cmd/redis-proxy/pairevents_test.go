package main

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/events"
	"github.com/redis-proxy/redis-proxy/vip"
)

func TestVIPEvent(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		from, to vip.Role
		reason   string
		kind     string
		level    slog.Level
		says     string
	}{
		{vip.Backup, vip.Master, "master down", events.VIPMaster, slog.LevelWarn, "took the VIP 10.0.0.100/24: no advert from a proxy holding it (master down)"},
		{vip.Backup, vip.Master, "preempting lower-priority master 10.0.0.2", events.VIPMaster, slog.LevelInfo, "holds the VIP 10.0.0.100/24 and decides for replication: preempting"},
		{vip.Master, vip.Backup, "master 10.0.0.2 outranks us (priority 200 vs 100)", events.VIPYielded, slog.LevelWarn, "gave the VIP 10.0.0.100/24 up to a higher-ranked proxy that claims it too (a preemption, or two holders after a partition): master 10.0.0.2 outranks us"},
		{vip.Init, vip.Backup, "start", events.VIPBackup, slog.LevelInfo, "this proxy is the backup: start"},
		{vip.Fault, vip.Backup, "healthy again", events.VIPBackup, slog.LevelInfo, "backup: healthy again"},
		{vip.Master, vip.Fault, "unhealthy", events.VIPFault, slog.LevelWarn, "may not hold the VIP 10.0.0.100/24: unhealthy"},
		{vip.Master, vip.Releasing, "shutdown: handing the vip over", events.VIPReleased, slog.LevelInfo, "handing the VIP 10.0.0.100/24 over"},
		{vip.Releasing, vip.Init, "shutdown: 10.0.0.2 claimed the vip", events.VIPReleased, slog.LevelInfo, "released the VIP 10.0.0.100/24"},
		{vip.Master, vip.Init, "shutdown", events.VIPReleased, slog.LevelInfo, "released the VIP"},
		{vip.Backup, vip.Init, "shutdown", events.VIPReleased, slog.LevelInfo, "left the election: shutdown"},
	} {
		ev := vipEvent(vip.Change{From: tc.from, To: tc.to, Reason: tc.reason, At: at}, "10.0.0.100/24", 7, peerSample{})
		if ev.Kind != tc.kind || ev.Level != tc.level || !strings.Contains(ev.Message, tc.says) || ev.Epoch != 7 || !ev.Time.Equal(at) {
			t.Errorf("%s -> %s (%s): %s %s %q epoch %d, want %s %s %q", tc.from, tc.to, tc.reason, ev.Kind, ev.Level, ev.Message, ev.Epoch, tc.kind, tc.level, tc.says)
		}
	}
	if ev := vipEvent(vip.Change{From: vip.Backup, To: vip.Master, Reason: "master down"}, "", 0, peerSample{}); !strings.Contains(ev.Message, "took the VIP:") {
		t.Errorf("without a VIP address: %q", ev.Message)
	}
	// The other proxy released the VIP (a priority-0 advert as INIT) just
	// before: a handover, not a loss.
	released := peerSample{at: at, ok: true, peer: vip.PeerInfo{Addr: netip.MustParseAddr("10.0.0.2"), Role: vip.Init, HeardAt: at.Add(-time.Millisecond)}}
	ev := vipEvent(vip.Change{From: vip.Backup, To: vip.Master, Reason: "master down", At: at}, "", 0, released)
	if ev.Kind != events.VIPMaster || ev.Level != slog.LevelInfo || ev.Message != "this proxy took the VIP, handed over by the other proxy 10.0.0.2 (it is shutting down)" {
		t.Errorf("after a release: %s %s %q", ev.Kind, ev.Level, ev.Message)
	}
	// A release heard after the change did not cause it.
	late := released
	late.peer.HeardAt = at.Add(time.Millisecond)
	if ev := vipEvent(vip.Change{From: vip.Backup, To: vip.Master, Reason: "master down", At: at}, "", 0, late); ev.Level != slog.LevelWarn {
		t.Errorf("a release heard after the takeover: %s %q", ev.Level, ev.Message)
	}
}

func TestPeerEvent(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const silence = time.Second
	peerAddr := netip.MustParseAddr("10.0.0.2")
	sample := func(at time.Duration, heard time.Duration, role vip.Role, prio uint8, me vip.Role) peerSample {
		return peerSample{at: t0.Add(at), ok: true, role: me,
			peer: vip.PeerInfo{Addr: peerAddr, Role: role, Priority: prio, Healthy: true, HeardAt: t0.Add(heard)}}
	}
	never := peerSample{at: t0, role: vip.Backup}
	for _, tc := range []struct {
		name      string
		prev, cur peerSample
		kind      string // "": no event
		says      string
	}{
		{"never heard", never, peerSample{at: t0.Add(time.Second), role: vip.Backup}, "", ""},
		{"first advert", never, sample(time.Second, time.Second, vip.Master, 100, vip.Backup), events.PeerHeard, "the other proxy 10.0.0.2 holds the VIP (priority 100)"},
		{"adverts keep coming", sample(time.Second, time.Second, vip.Master, 100, vip.Backup), sample(2*time.Second, 1900*time.Millisecond, vip.Master, 100, vip.Backup), "", ""},
		{"adverts stop", sample(time.Second, time.Second, vip.Master, 100, vip.Backup), sample(2500*time.Millisecond, time.Second, vip.Master, 100, vip.Master), events.PeerLost, "no advert from the other proxy 10.0.0.2 for 1.5s (it held the VIP)"},
		// A backup takes over once its master is silent for its master-down
		// interval: the peer is lost at that moment, not a tick later.
		{"silent exactly the interval", sample(time.Second, time.Second, vip.Master, 100, vip.Backup), sample(2*time.Second, time.Second, vip.Master, 100, vip.Master), events.PeerLost, "for 1s"},
		{"still silent", sample(3*time.Second, time.Second, vip.Master, 100, vip.Master), sample(4*time.Second, time.Second, vip.Master, 100, vip.Master), "", ""},
		{"heard again after silence", sample(3*time.Second, time.Second, vip.Master, 100, vip.Backup), sample(4*time.Second, 4*time.Second, vip.Master, 100, vip.Backup), events.PeerHeard, "holds the VIP"},
		{"a rival master while we hold the VIP", sample(3*time.Second, time.Second, vip.Master, 100, vip.Master), sample(4*time.Second, 4*time.Second, vip.Master, 50, vip.Master), events.SplitBrain, "split brain: both proxies hold the VIP; the other proxy 10.0.0.2 (priority 50) is outranked and yields"},
		{"the rival yields", sample(4*time.Second, 4*time.Second, vip.Master, 50, vip.Master), sample(4200*time.Millisecond, 4200*time.Millisecond, vip.Backup, 0, vip.Master), events.PeerHeard, "gave the VIP up (it advertises BACKUP)"},
		{"the yielded peer goes quiet: normal", sample(4200*time.Millisecond, 4200*time.Millisecond, vip.Backup, 0, vip.Master), sample(6*time.Second, 4200*time.Millisecond, vip.Backup, 0, vip.Master), "", ""},
		{"the master hands over at shutdown", sample(time.Second, time.Second, vip.Master, 100, vip.Backup), sample(1200*time.Millisecond, 1200*time.Millisecond, vip.Init, 0, vip.Backup), events.PeerHeard, "shutting down and hands the VIP over"},
		{"after its release, silence is normal", sample(1200*time.Millisecond, 1200*time.Millisecond, vip.Init, 0, vip.Master), sample(5*time.Second, 1200*time.Millisecond, vip.Init, 0, vip.Master), "", ""},
		{"unhealthy master", never, func() peerSample {
			s := sample(time.Second, time.Second, vip.Master, 100, vip.Backup)
			s.peer.Healthy = false
			return s
		}(), events.PeerHeard, "priority 100, reaching no Redis"},
	} {
		ev, ok := peerEvent(tc.prev, tc.cur, silence, 3)
		switch {
		case tc.kind == "" && ok:
			t.Errorf("%s: unexpected %s %q", tc.name, ev.Kind, ev.Message)
		case tc.kind != "" && !ok:
			t.Errorf("%s: no event, want %s", tc.name, tc.kind)
		case ok && (ev.Kind != tc.kind || !strings.Contains(ev.Message, tc.says) || ev.Epoch != 3 ||
			len(ev.Servers) != 1 || ev.Servers[0] != "10.0.0.2" || !ev.Time.Equal(tc.cur.at)):
			t.Errorf("%s: %s %q %v epoch %d at %v, want %s %q", tc.name, ev.Kind, ev.Message, ev.Servers, ev.Epoch, ev.Time, tc.kind, tc.says)
		}
	}
}
