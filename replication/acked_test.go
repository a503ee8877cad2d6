package replication

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHoldForAcked(t *testing.T) {
	now := t0.Add(time.Minute)
	replica := func(addr string, off int64, replID string) Node {
		return Node{Addr: addr, Info: Info{Role: RoleReplica, ReplID: replID, Offset: off, Priority: 100}}
	}
	best := replica("c", 1100, "X")
	tests := []struct {
		name     string
		acks     int
		linked   []LinkedReplica
		b        Node          // the state of b, the other replica
		servers  []string      // default a b c
		waiting  time.Duration // how long the wait has gone on (0: it has not begun)
		hold     bool
		event    string // the event emitted, "" none
		detailOf string // a part of its detail
	}{
		{"no write acks: never held", 0, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: 1200, Promotable: true}},
			Node{Addr: "b", Down: true}, nil, 0, false, "", ""},
		{"b acknowledged more and is down: held", 1, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: 1200, Promotable: true}},
			Node{Addr: "b", Down: true}, nil, 0, true, EventPromotionHeld, "b (offset 1200)"},
		{"still within the wait: held, no second event", 1, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: 1200, Promotable: true}},
			Node{Addr: "b", Down: true}, nil, time.Second, true, "", ""},
		{"the wait is over: promoted, reported", 1, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: 1200, Promotable: true}},
			Node{Addr: "b", Down: true}, nil, DefaultPromotionWait, false, EventAckedAtRisk, "without b (offset 1200)"},
		{"b's own check is ahead of its acknowledgement", 1, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: 1000, Promotable: true}},
			func() Node { n := replica("b", 1300, "X"); n.Down = true; return n }(), nil, 0, true, EventPromotionHeld, "b (offset 1300)"},
		{"best holds all b was known to: not held", 1, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: 1100, Promotable: true}},
			func() Node { n := replica("b", 1050, "X"); n.Down = true; return n }(), nil, 0, false, "", ""},
		{"b's offset unknown: held", 1, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: -1, Promotable: true}},
			Node{Addr: "b", Down: true}, nil, 0, true, EventPromotionHeld, "b (offset unknown)"},
		{"b of another history: held", 1, []LinkedReplica{{Addr: "b", ReplID: "W", Acked: 900, Promotable: true}},
			Node{Addr: "b", Down: true}, nil, 0, true, EventPromotionHeld, "b (offset 900)"},
		{"b may never be promoted: not waited for, reported", 1, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: 1200}},
			Node{Addr: "b", Down: true}, nil, 0, false, EventAckedAtRisk, "without b (offset 1200)"},
		{"b was removed: ignored", 1, []LinkedReplica{{Addr: "b", ReplID: "X", Acked: 1200, Promotable: true}},
			Node{Addr: "b", Down: true}, []string{"a", "c"}, 0, false, "", ""},
		{"b not linked at the master's last check: not waited for", 1, nil,
			Node{Addr: "b", Down: true}, nil, 0, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := tt.servers
			if servers == nil {
				servers = []string{"a", "b", "c"}
			}
			st := NewState(servers, time.Second, 250*time.Millisecond, true)
			st.WriteAcks, st.Linked = tt.acks, tt.linked
			st.Nodes["b"], st.Nodes["c"] = tt.b, best
			if tt.waiting > 0 {
				st.AckWait = now.Add(-tt.waiting)
				st.Waiting = "waiting up to 5s for b (offset 1200): it may hold acknowledged writes c (offset 1100) lacks"
			}
			d := &decider{st: &st, now: now}
			if got := d.holdForAcked(best, []Node{best}); got != tt.hold {
				t.Errorf("held = %v, want %v", got, tt.hold)
			}
			var events []string
			for _, a := range d.acts {
				events = append(events, a.Event+" "+a.Detail)
			}
			switch {
			case tt.event == "" && len(events) > 0:
				t.Errorf("events %q, want none", events)
			case tt.event != "" && (len(events) != 1 || !strings.HasPrefix(events[0], tt.event+" ") || !strings.Contains(events[0], tt.detailOf)):
				t.Errorf("events %q, want one %s mentioning %q", events, tt.event, tt.detailOf)
			}
			if tt.hold && st.AckWait.IsZero() {
				t.Error("held without recording when the wait began")
			}
		})
	}
}

func TestBetterDurable(t *testing.T) {
	n := func(addr string, prio int, off int64) Node {
		return Node{Addr: addr, Info: Info{Role: RoleReplica, Priority: prio, Offset: off}}
	}
	tests := []struct {
		name string
		in   []Node
		want string
	}{
		{"the larger offset wins over priority", []Node{n("a", 10, 100), n("b", 100, 500)}, "b"},
		{"priority at equal offsets", []Node{n("a", 100, 500), n("b", 10, 500)}, "b"},
		{"address breaks a full tie", []Node{n("b", 100, 500), n("a", 100, 500)}, "a"},
	}
	for _, tt := range tests {
		if got := slices.MinFunc(tt.in, betterDurable).Addr; got != tt.want {
			t.Errorf("%s: best = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestNoteLinked(t *testing.T) {
	now := t0.Add(time.Minute)
	st := NewState([]string{"a", "b", "c", "d", "e", "f"}, time.Second, 250*time.Millisecond, true)
	st.WriteAcks, st.Master = 1, "a"
	up := func(addr string, in Info) Node { return Node{Addr: addr, LastObs: now, LastOK: now, Info: in} }
	st.Nodes["a"] = up("a", Info{Role: RoleMaster, ReplID: "X", Offset: 500, Replicas: []ReplicaEntry{
		{Addr: "10.0.0.2:6379", State: "online", Offset: 480}, // b, as the master sees it
		{Addr: "d", State: "online", Offset: 300},
		{Addr: "e", State: "online", Offset: 490},
		{Addr: "f", State: "wait_bgsave"},
	}})
	b := up("b", Info{Role: RoleReplica, MasterAddr: "a", LinkUp: true, ReplID: "X", Offset: 490, Priority: 100})
	b.Remote = "10.0.0.2:6379"
	st.Nodes["b"] = b
	st.Nodes["c"] = up("c", Info{Role: RoleReplica, MasterAddr: "a", LinkUp: true, ReplID: "X", Offset: 470, Priority: 100})
	d := up("d", Info{Role: RoleReplica, MasterAddr: "a", LinkUp: true, ReplID: "X", Offset: 300, Priority: 100})
	d.Joining = true
	st.Nodes["d"] = d
	st.Nodes["e"] = up("e", Info{Role: RoleReplica, MasterAddr: "a", LinkUp: true, ReplID: "X", Offset: 490, Priority: 0})
	st.Nodes["f"] = up("f", Info{Role: RoleReplica, MasterAddr: "a", ReplID: "X", Priority: 100})
	dc := &decider{st: &st, now: now}
	dc.noteLinked()
	want := []LinkedReplica{
		{Addr: "b", ReplID: "X", Acked: 480, Promotable: true},
		{Addr: "c", ReplID: "X", Acked: -1, Promotable: true},
		{Addr: "d", ReplID: "X", Acked: 300},
		{Addr: "e", ReplID: "X", Acked: 490},
	}
	if !slices.Equal(st.Linked, want) || !st.LinkedAt.Equal(now) {
		t.Errorf("Linked = %+v at %v, want %+v at %v", st.Linked, st.LinkedAt, want, now)
	}
	// A failed check of the master keeps what its last good one said.
	m := st.Nodes["a"]
	m.Err, m.LastObs = "timeout", now.Add(time.Second)
	st.Nodes["a"] = m
	before := slices.Clone(st.Linked)
	dc.noteLinked()
	if !slices.Equal(st.Linked, before) {
		t.Errorf("a failed check of the master changed Linked to %+v", st.Linked)
	}
}
