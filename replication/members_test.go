package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

func TestCheckServers(t *testing.T) {
	base := State{Servers: []string{"a", "b", "c"}, Master: "a"}
	tests := []struct {
		name    string
		st      func(State) State
		servers []string
		refused string // "" when accepted
	}{
		{"add", nil, []string{"a", "b", "c", "d"}, ""},
		{"remove a replica", nil, []string{"a", "b"}, ""},
		{"reorder", nil, []string{"c", "b", "a"}, ""},
		{"add and remove at once", nil, []string{"a", "d"}, ""},
		{"remove the master", nil, []string{"b", "c"}, "a is the master: switch over"},
		{"empty", nil, nil, "at least one server must remain"},
		{"duplicate", nil, []string{"a", "b", "b"}, "b is listed twice"},
		{"no master: any but the promotion target",
			func(s State) State { s.Master, s.Promotion = "", Promotion{Target: "b", From: "a"}; return s },
			[]string{"b", "c"}, ""},
		{"the promotion target",
			func(s State) State { s.Master, s.Promotion = "", Promotion{Target: "b", From: "a"}; return s },
			[]string{"a", "c"}, "b is being promoted"},
		{"switchover source",
			func(s State) State { s.Master, s.Switch = "", Switch{From: "a", To: "b"}; return s },
			[]string{"b", "c"}, "a takes part in a switchover"},
		{"switchover target",
			func(s State) State { s.Master, s.Switch = "", Switch{From: "a", To: "b"}; return s },
			[]string{"a", "c"}, "b takes part in a switchover"},
		{"switchover: a bystander", func(s State) State { s.Master, s.Switch = "", Switch{From: "a", To: "b"}; return s },
			[]string{"a", "b"}, ""},
	}
	for _, tt := range tests {
		st := base
		if tt.st != nil {
			st = tt.st(st)
		}
		err := CheckServers(st, tt.servers)
		switch {
		case tt.refused == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.name, err)
		case tt.refused != "" && (err == nil || !errors.Is(err, ErrServersRefused) || !strings.Contains(err.Error(), tt.refused)):
			t.Errorf("%s: err %v, want ErrServersRefused saying %q", tt.name, err, tt.refused)
		}
	}
}

func TestCaughtUp(t *testing.T) {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	samples := []OffsetSample{
		{ReplID: "OLD", Offset: 50, At: at(0)},
		{ReplID: "X", Offset: 100, At: at(0)},
		{ReplID: "X", Offset: 200, At: at(250)},
		{ReplID: "X", Offset: 300, At: at(500)},
		{ReplID: "X", Offset: 400, At: at(750)},
	}
	tests := []struct {
		name   string
		replID string
		offset int64
		at     time.Time
		maxLag time.Duration
		want   bool
		from   int64 // the sample compared with
	}{
		{"holds what the master had maxLag before", "X", 100, at(1000), time.Second, true, 100},
		{"short of it", "X", 99, at(1000), time.Second, false, 100},
		{"the oldest sample in the window counts", "X", 200, at(1100), time.Second, true, 200},
		{"a tighter lag asks for more", "X", 250, at(760), 300 * time.Millisecond, false, 300},
		{"a tighter lag, met", "X", 300, at(760), 300 * time.Millisecond, true, 300},
		{"samples after the check do not count", "X", 100, at(100), time.Second, true, 100},
		{"nothing sampled before the check", "X", 1000, at(-1), time.Second, false, 0},
		{"nothing sampled within the lag", "X", 1000, at(5000), time.Second, false, 0},
		{"another history is not comparable", "Y", 1000, at(1000), time.Second, false, 0},
		{"the old history by its own samples", "OLD", 50, at(10), time.Second, true, 50},
	}
	for _, tt := range tests {
		s, ok := caughtUp(samples, tt.replID, tt.offset, tt.at, tt.maxLag)
		if ok != tt.want || s.Offset != tt.from {
			t.Errorf("%s: caughtUp = %v against offset %d, want %v against %d", tt.name, ok, s.Offset, tt.want, tt.from)
		}
	}
}

// TestJoiningSamplesBounded: while a server stays joining (a replica that
// never catches up), the master's samples are kept only as long as they can
// be compared, and never more than maxSamples.
func TestJoiningSamplesBounded(t *testing.T) {
	st := NewState([]string{"a"}, time.Second, 10*time.Millisecond, true)
	now := t0
	st, _ = Decide(st, []Observation{{Kind: ObsCheck, Addr: "a", At: now, Info: Info{Role: RoleMaster, ReplID: "X", Offset: 1}}}, now)
	st, _ = Decide(st, []Observation{{Kind: ObsServers, Servers: []string{"a", "d"}, At: now}}, now)
	for i := 0; i < 2000; i++ {
		now = now.Add(5 * time.Millisecond)
		st, _ = Decide(st, []Observation{
			{Kind: ObsCheck, Addr: "a", At: now, Info: Info{Role: RoleMaster, ReplID: "X", Offset: int64(1000 + i)}},
			{Kind: ObsCheck, Addr: "d", At: now, Info: Info{Role: RoleReplica, MasterAddr: "a", LinkUp: true, ReplID: "X", Offset: 1}},
		}, now)
		if len(st.MasterOffsets) > maxSamples {
			t.Fatalf("step %d: %d samples kept, at most %d", i, len(st.MasterOffsets), maxSamples)
		}
		if old := st.MasterOffsets[0].At; now.Sub(old) > st.joinMaxLag()+st.DownAfter {
			t.Fatalf("step %d: a sample %v old is kept", i, now.Sub(old))
		}
	}
	if !st.Nodes["d"].Joining {
		t.Fatal("d caught up with offset 1")
	}
	if len(st.Published.Replicas) != 0 {
		t.Fatalf("a joining replica is published: %v", st.Published.Replicas)
	}
	// Caught up: the samples go.
	now = now.Add(5 * time.Millisecond)
	st, _ = Decide(st, []Observation{
		{Kind: ObsCheck, Addr: "d", At: now, Info: Info{Role: RoleReplica, MasterAddr: "a", LinkUp: true, ReplID: "X", Offset: 5000}},
	}, now)
	if st.Nodes["d"].Joining || st.MasterOffsets != nil {
		t.Fatalf("after catching up: joining %v, %d samples", st.Nodes["d"].Joining, len(st.MasterOffsets))
	}
}

// SetServers with real servers: an added server with data of its own is
// made a replica of the master and routed once it has caught up; removing
// the master is refused before commit is called; a failing commit cancels
// the change; a removed replica leaves the topology when SetServers returns
// and is not rediscovered although it still replicates.
func TestSetServers(t *testing.T) {
	a, b, d := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)
	mustDo(t, a, "SET", "k", "from-a")
	mustDo(t, d, "SET", "own", "d's own data")
	h := startManager(t, true, a, b)
	h.waitTopology("a with b", 3*time.Second, is(a.Addr, b.Addr))
	ctx := context.Background()

	commits := 0
	commit := func() error { commits++; return nil }
	err := h.m.SetServers(ctx, []string{b.Addr}, commit)
	if !errors.Is(err, ErrServersRefused) || !strings.Contains(err.Error(), "is the master") || commits != 0 {
		t.Fatalf("removing the master: err %v, commits %d; want refused before commit", err, commits)
	}
	if err := h.m.SetServers(ctx, []string{a.Addr, b.Addr, "no-port"}, commit); !errors.Is(err, ErrServersRefused) || commits != 0 {
		t.Fatalf("a bad address: err %v, commits %d", err, commits)
	}
	if err := h.m.SetServers(ctx, []string{a.Addr, b.Addr, d.Addr}, func() error { return errors.New("disk full") }); err == nil ||
		!strings.Contains(err.Error(), "disk full") {
		t.Fatalf("a failing commit: err %v", err)
	}
	time.Sleep(3 * testInterval)
	if r, _ := role(t, d); r != "master" || serverStatus(h.m.Status(), d.Addr).Addr != "" {
		t.Fatalf("a change whose commit failed was applied: d is %s, status %+v", r, serverStatus(h.m.Status(), d.Addr))
	}

	if err := h.m.SetServers(ctx, []string{a.Addr, b.Addr, d.Addr}, commit); err != nil || commits != 1 {
		t.Fatalf("add d: err %v, commits %d", err, commits)
	}
	if sd := serverStatus(h.m.Status(), d.Addr); !sd.Joining {
		t.Errorf("d just added: %+v, want joining", sd)
	}
	h.waitTopology("d routed", 10*time.Second, is(a.Addr, b.Addr, d.Addr))
	if r, port := role(t, d); r != "slave" || port != fmt.Sprint(a.Port) {
		t.Fatalf("d is %s %s, want a replica of %d", r, port, a.Port)
	}
	if sd := serverStatus(h.m.Status(), d.Addr); sd.Joining || !sd.LinkUp {
		t.Errorf("d routed: %+v, want caught up with its link up", sd)
	}
	if v, _ := redis.String(d.Do("GET", "k")); v != "from-a" {
		t.Errorf("d has k=%q, want the master's data", v)
	}
	if n, _ := redis.Int(d.Do("EXISTS", "own")); n != 0 {
		t.Errorf("d kept its own key")
	}

	if err := h.m.SetServers(ctx, []string{a.Addr, b.Addr}, commit); err != nil {
		t.Fatalf("remove d: %v", err)
	}
	if tp := h.m.Topology(); slices.Contains(tp.Replicas, d.Addr) {
		t.Fatalf("d still routed when SetServers returned: %+v", tp)
	}
	time.Sleep(5 * testInterval)
	if sd := serverStatus(h.m.Status(), d.Addr); sd.Addr != "" {
		t.Errorf("removed d is still watched: %+v", sd)
	}
	if r, port := role(t, d); r != "slave" || port != fmt.Sprint(a.Port) {
		t.Errorf("removed d was touched: %s %s", r, port)
	}
}
