package replication

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// TestScenarios runs the golden scenario files in testdata/. Each line is a
// step; lines starting with ">" are the expected output of the preceding
// decide or status step. With -update the expected lines are rewritten.
//
//	servers a b c              configured servers (first line)
//	down-after 1s              State.DownAfter (default 1s)
//	check-interval 250ms       State.CheckInterval (default 250ms)
//	authority on|off           State.Authority (default on)
//	tick 250ms                 advance the clock; the manager runs meanwhile
//	stall 10s                  advance the clock with the manager stopped
//	observe a down [err=...]   a failed check
//	observe a silent [busy=2s] a check that timed out; busy: the proxy has had a
//	                           long command in flight there for that long
//	observe a busy             a BUSY reply (a script past busy-reply-threshold)
//	busy-grace 6s              State.BusyGrace (default 0)
//	observe a loading          a LOADING reply (also: masterdown)
//	observe a master id=X [id2=W off2=N] off=N [replicas=b,c] [runid=r]
//	observe b replica of=a link=up|down id=X off=N [prio=N] [runid=r]
//	result promote|replicaof a ok|<error>
//	switchover b               ask for a planned switchover to b
//	switched b promoted|<error> the outcome of the switchover action
//	set-servers a b d          ask to replace the configured servers (ObsServers)
//	join-max-lag 1s            State.JoinMaxLag (default 0: DefaultJoinMaxLag)
//	max-replica-lag 1s         State.MaxReplicaLag (default 0: no bound)
//	write-acks 1               State.WriteAcks (default 0)
//	promotion-wait 3s          State.PromotionWait (default 0: DefaultPromotionWait)
//	                           (a master's replicas=b@1200,c: b listed at offset 1200)
//	decide                     call Decide with the observations since the last decide
//	status                     print epoch, master, failovers and lost bytes
//	                           (with max-replica-lag: each replica's lag and lagging)
//
// A scenario shows only the decisions that matter; the manager decides every
// half check interval in between. So tick stands for time the manager ran
// (its last decision is taken to be the new now), stall for time it did not
// (docker pause, SIGSTOP, a blocked loop): the gap Decide sees.
//
// Every decide also checks that Decide left its input unchanged.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in testdata: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := runScenario(t, string(data))
			if *update {
				if err := os.WriteFile(f, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(data) {
				t.Errorf("%s: output differs (run with -update to accept)\n%s", f, lineDiff(string(data), got))
			}
		})
	}
}

func runScenario(t *testing.T, text string) string {
	t.Helper()
	return playScenario(t, text, nil)
}

// playScenario runs a scenario and returns its output; onDecide, if set,
// sees what each decide step returned, at the scenario's time.
func playScenario(t *testing.T, text string, onDecide func(st State, acts []Action, now time.Time)) string {
	t.Helper()
	var out strings.Builder
	st := NewState(nil, time.Second, 250*time.Millisecond, true)
	now := t0
	var pending []Observation
	sc := bufio.NewScanner(strings.NewReader(text))
	lineNo := 0
	for sc.Scan() {
		line := sc.Text()
		lineNo++
		if strings.HasPrefix(line, ">") {
			continue // expected output; regenerated below
		}
		out.WriteString(line + "\n")
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		fail := func(format string, args ...any) {
			t.Fatalf("line %d %q: %s", lineNo, line, fmt.Sprintf(format, args...))
		}
		switch f[0] {
		case "servers":
			st.Servers = f[1:]
		case "down-after":
			st.DownAfter = mustDuration(t, f[1])
		case "check-interval":
			st.CheckInterval = mustDuration(t, f[1])
		case "busy-grace":
			st.BusyGrace = mustDuration(t, f[1])
		case "join-max-lag":
			st.JoinMaxLag = mustDuration(t, f[1])
		case "max-replica-lag":
			st.MaxReplicaLag = mustDuration(t, f[1])
		case "promotion-wait":
			st.PromotionWait = mustDuration(t, f[1])
		case "write-acks":
			n, err := strconv.Atoi(f[1])
			if err != nil {
				fail("%v", err)
			}
			st.WriteAcks = n
		case "set-servers":
			pending = append(pending, Observation{Kind: ObsServers, Servers: f[1:], At: now})
		case "authority":
			st.Authority = f[1] == "on"
		case "tick":
			now = now.Add(mustDuration(t, f[1]))
			if !st.LastDecide.IsZero() {
				st.LastDecide = now
			}
		case "stall":
			now = now.Add(mustDuration(t, f[1]))
		case "observe":
			o, err := parseObservation(f[1:], now)
			if err != nil {
				fail("%v", err)
			}
			pending = append(pending, o)
		case "result":
			o := Observation{Kind: ObsResult, Addr: f[2], At: now}
			switch f[1] {
			case "promote":
				o.Action = ActPromote
			case "replicaof":
				o.Action = ActReplicaOf
			default:
				fail("unknown action")
			}
			if rest := strings.Join(f[3:], " "); rest != "ok" {
				o.Err = rest
			}
			pending = append(pending, o)
		case "switchover":
			pending = append(pending, Observation{Kind: ObsSwitchover, Addr: f[1], At: now})
		case "switched":
			o := Observation{Kind: ObsSwitchoverResult, Addr: f[1], At: now}
			if rest := strings.Join(f[2:], " "); rest == "promoted" {
				o.Promoted = true
			} else {
				o.Err = rest
			}
			pending = append(pending, o)
		case "decide":
			before := deepCopy(st)
			next, acts := Decide(st, pending, now)
			if !reflect.DeepEqual(before, st) {
				fail("Decide modified its input state")
			}
			st, pending = next, nil
			if onDecide != nil {
				onDecide(st, acts, now)
			}
			for _, a := range acts {
				out.WriteString("> " + a.String() + "\n")
			}
		case "status":
			lf := st.LastFailover
			fmt.Fprintf(&out, "> status epoch=%d master=%s failovers=%d lost=%d", st.Epoch, orDash(st.Master), st.Failovers, st.LostBytes)
			if st.Switchovers > 0 { // (only then, so that the other scenarios read as before)
				fmt.Fprintf(&out, " switchovers=%d", st.Switchovers)
			}
			if lf.Kind != "" {
				fmt.Fprintf(&out, " last=%s:%s->%s:%v:lost=%d", lf.Kind, orDash(lf.From), lf.To, lf.Duration, lf.LostBytes)
			}
			if st.MaxReplicaLag > 0 {
				for _, a := range st.Servers {
					n := st.Nodes[a]
					if n.HeldAt.IsZero() && !n.Lagging {
						continue
					}
					lag := "?"
					if !n.HeldAt.IsZero() {
						lag = now.Sub(n.HeldAt).String()
					}
					fmt.Fprintf(&out, " %s:lag=%s", a, lag)
					if n.Lagging {
						out.WriteString(":lagging")
					}
				}
			}
			out.WriteString("\n")
		default:
			fail("unknown step")
		}
	}
	return out.String()
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func parseObservation(f []string, now time.Time) (Observation, error) {
	if len(f) < 2 {
		return Observation{}, fmt.Errorf("want: observe ADDR KIND ...")
	}
	o := Observation{Kind: ObsCheck, Addr: f[0], At: now}
	kv := map[string]string{}
	for _, s := range f[2:] {
		k, v, _ := strings.Cut(s, "=")
		kv[k] = v
	}
	num := func(k string, def int64) int64 {
		if v, ok := kv[k]; ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
		return def
	}
	in := Info{
		RunID: kv["runid"], Remote: kv["remote"],
		ReplID: kv["id"], ReplID2: kv["id2"], Offset: num("off", 0), SecondOffset: num("off2", 0),
		Priority: int(num("prio", 100)),
	}
	switch f[1] {
	case "down":
		o.Err = "connection refused"
		if i := slices.IndexFunc(f, func(s string) bool { return strings.HasPrefix(s, "err=") }); i >= 0 {
			o.Err = strings.TrimPrefix(strings.Join(f[i:], " "), "err=")
		}
	case "silent":
		o.Err, o.Silent = "check "+f[0]+": read: i/o timeout", true
		if v, ok := kv["busy"]; ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				return Observation{}, fmt.Errorf("busy=%s: %w", v, err)
			}
			o.BusySince = now.Add(-d)
		}
	case "busy":
		o.Reply = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
	case "loading":
		o.Reply = "LOADING Redis is loading the dataset in memory"
	case "masterdown":
		o.Reply = "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
	case "master":
		in.Role = RoleMaster
		if r := kv["replicas"]; r != "" {
			for _, a := range strings.Split(r, ",") {
				a, off, _ := strings.Cut(a, "@")
				n, _ := strconv.ParseInt(off, 10, 64)
				in.Replicas = append(in.Replicas, ReplicaEntry{Addr: a, State: "online", Offset: n})
			}
		}
		o.Info = in
	case "replica":
		in.Role = RoleReplica
		in.MasterAddr = kv["of"]
		in.LinkUp = kv["link"] == "up"
		o.Info = in
	default:
		return Observation{}, fmt.Errorf("unknown observation %q", f[1])
	}
	return o, nil
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// deepCopy copies v through reflection, independently of State.clone, so
// that a missing copy in Decide cannot hide behind the same mistake here.
func deepCopy[T any](v T) T {
	var out T
	copyValue(reflect.ValueOf(&out).Elem(), reflect.ValueOf(v))
	return out
}

func copyValue(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Map:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.MakeMapWithSize(src.Type(), src.Len()))
		for it := src.MapRange(); it.Next(); {
			v := reflect.New(src.Type().Elem()).Elem()
			copyValue(v, it.Value())
			dst.SetMapIndex(it.Key(), v)
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.MakeSlice(src.Type(), src.Len(), src.Len()))
		for i := 0; i < src.Len(); i++ {
			copyValue(dst.Index(i), src.Index(i))
		}
	case reflect.Struct:
		if src.Type() == reflect.TypeOf(time.Time{}) {
			dst.Set(src)
			return
		}
		for i := 0; i < src.NumField(); i++ {
			copyValue(dst.Field(i), src.Field(i))
		}
	default:
		dst.Set(src)
	}
}

// TestDecideRandom drives Decide with random observations and checks that
// it never changes its input, is deterministic, and keeps its invariants.
func TestDecideRandom(t *testing.T) {
	servers := []string{"a", "b", "c"}
	known := []string{"a", "b", "c", "d"} // d: added and removed at run time
	ids := []string{"X", "Y", "Z"}
	for seed := uint64(0); seed < 120; seed++ {
		r := rand.New(rand.NewPCG(seed, 1))
		st := NewState(servers, time.Second, 250*time.Millisecond, r.IntN(4) != 0)
		// Half the seeds bound replica reads, half have writes acknowledged
		// by replicas (independently).
		if seed%2 == 1 {
			st.MaxReplicaLag = 500 * time.Millisecond
		}
		if seed%4 >= 2 {
			st.WriteAcks, st.PromotionWait = 1, 2*time.Second
		}
		now := t0
		for step := 0; step < 50; step++ {
			now = now.Add(time.Duration(r.IntN(600)) * time.Millisecond)
			var obs []Observation
			for _, a := range known {
				if r.IntN(3) == 0 {
					continue
				}
				obs = append(obs, randomObservation(r, a, known, ids, now))
			}
			if r.IntN(10) == 0 {
				obs = append(obs, Observation{Kind: ObsSwitchover, Addr: known[r.IntN(4)], At: now})
			}
			// The manager decides a change of servers alone, never with the
			// outcome of a switchover (Manager.changeServers).
			if r.IntN(8) == 0 {
				var list []string
				for _, i := range r.Perm(4)[:r.IntN(5)] {
					list = append(list, known[i])
				}
				obs = append(obs, Observation{Kind: ObsServers, Servers: list, At: now})
			} else if st.Switch.To != "" {
				obs = append(obs, Observation{Kind: ObsSwitchoverResult, Addr: st.Switch.To, At: now, Promoted: r.IntN(2) == 0})
			}
			if step%15 == 14 {
				st.Authority = !st.Authority
			}
			before := deepCopy(st)
			next, acts := Decide(st, obs, now)
			if !reflect.DeepEqual(before, st) {
				t.Fatalf("seed %d step %d: Decide modified its input", seed, step)
			}
			again, acts2 := Decide(st, obs, now)
			if !reflect.DeepEqual(next, again) || !reflect.DeepEqual(acts, acts2) {
				t.Fatalf("seed %d step %d: Decide is not deterministic", seed, step)
			}
			checkInvariants(t, seed, step, st, next, acts)
			// Feed back a result for every action, as the manager does.
			st = next
			for _, a := range acts {
				if a.Kind == ActPromote || a.Kind == ActReplicaOf {
					res := Observation{Kind: ObsResult, Addr: a.Addr, Action: a.Kind, At: now}
					if r.IntN(4) == 0 {
						res.Err = "i/o timeout"
					}
					st, _ = Decide(st, []Observation{res}, now)
				}
			}
		}
	}
}

func randomObservation(r *rand.Rand, addr string, servers, ids []string, now time.Time) Observation {
	o := Observation{Kind: ObsCheck, Addr: addr, At: now}
	n := len(servers)
	switch r.IntN(6) {
	case 0:
		o.Err = "connection refused"
	case 1:
		o.Reply = "LOADING"
	case 2, 3:
		o.Info = Info{Role: RoleMaster, ReplID: ids[r.IntN(3)], Offset: int64(r.IntN(1000)), Priority: 100}
		if r.IntN(2) == 0 {
			o.Info.Replicas = []ReplicaEntry{{Addr: servers[r.IntN(n)], State: "online", Offset: int64(r.IntN(1000))}}
		}
		if r.IntN(2) == 0 {
			o.Info.ReplID2, o.Info.SecondOffset = ids[r.IntN(3)], int64(r.IntN(1000)+1)
		}
	default:
		o.Info = Info{Role: RoleReplica, MasterAddr: servers[r.IntN(n)], LinkUp: r.IntN(2) == 0,
			ReplID: ids[r.IntN(3)], Offset: int64(r.IntN(1000)), Priority: r.IntN(3) * 50, RunID: strconv.Itoa(r.IntN(9))}
	}
	return o
}

func checkInvariants(t *testing.T, seed uint64, step int, prev, next State, acts []Action) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Fatalf("seed %d step %d: %s\nactions: %v", seed, step, fmt.Sprintf(format, args...), acts)
	}
	if next.Epoch < prev.Epoch {
		fail("epoch went back from %d to %d", prev.Epoch, next.Epoch)
	}
	for _, a := range next.Servers {
		if n, ok := next.Nodes[a]; !ok || n.Discovered {
			fail("configured server %s has no node, or a discovered one", a)
		}
	}
	for _, a := range next.Removed {
		if n, ok := next.Nodes[a]; ok && n.Discovered {
			fail("removed server %s was rediscovered", a)
		}
	}
	for _, a := range acts {
		switch a.Kind {
		case ActServers:
			for _, s := range []string{prev.Master, prev.Promotion.Target, prev.Switch.From, prev.Switch.To} {
				if s != "" && !slices.Contains(a.Servers, s) {
					fail("removed %s, the master or part of a failover", s)
				}
			}
			if len(a.Servers) == 0 {
				fail("accepted an empty list of servers")
			}
		case ActServersRefused:
			if a.Detail == "" {
				fail("refused a change of servers without a reason")
			}
		case ActPromote, ActReplicaOf, ActSwitchover:
			if !prev.Authority {
				fail("acted without authority: %v", a)
			}
			if !slices.Contains(next.Servers, a.Addr) {
				fail("acted on a server that is not configured: %v", a)
			}
		case ActPublish:
			tp := a.Topology
			if tp.Master != "" && !slices.Contains(next.Servers, tp.Master) {
				fail("published unconfigured master %q", tp.Master)
			}
			if slices.Contains(tp.Replicas, tp.Master) {
				fail("master %q published as its own replica", tp.Master)
			}
			for _, r := range tp.Replicas {
				if n := next.Nodes[r]; n.Joining || !slices.Contains(next.Servers, r) {
					fail("published replica %s is joining or not configured", r)
				}
			}
			if tp.Master == "" && len(tp.Replicas) > 0 {
				fail("replicas published without a master")
			}
		}
	}
	for _, a := range acts {
		if next.Holding && (a.Kind == ActPromote || a.Kind == ActReplicaOf || a.Kind == ActSwitchover) {
			fail("acted while holding after a stall: %v", a)
		}
	}
	for addr, n := range next.Nodes {
		// A newly down server was silent for DownAfter while the manager ran.
		if p, ok := prev.Nodes[addr]; n.Down && ok && !p.Down {
			from := n.LastOK
			for _, t := range []time.Time{n.Since, next.Resumed} {
				if t.After(from) {
					from = t
				}
			}
			if silent := next.LastDecide.Sub(from); silent < next.DownAfter {
				fail("%s declared down after %v of silence since the manager resumed", addr, silent)
			}
		}
	}
	if next.Master != "" {
		if n := next.Nodes[next.Master]; n.Down {
			fail("master %s is down", next.Master)
		}
	}
	checkLagBound(fail, next)
	checkAckedWait(fail, next, acts)
	if !next.Published.Equal(Topology{Epoch: next.Epoch, Master: next.Master, Replicas: next.Published.Replicas}) {
		fail("published %v but state says epoch=%d master=%q", next.Published, next.Epoch, next.Master)
	}
}

func TestBetterReplica(t *testing.T) {
	n := func(addr string, prio int, off int64, run string) Node {
		return Node{Addr: addr, Info: Info{Role: RoleReplica, Priority: prio, Offset: off, RunID: run}}
	}
	tests := []struct {
		name string
		in   []Node
		want string
	}{
		{"lower priority wins over offset", []Node{n("a", 100, 500, "1"), n("b", 10, 100, "2")}, "b"},
		{"larger offset at equal priority", []Node{n("a", 100, 100, "1"), n("b", 100, 500, "2")}, "b"},
		{"smaller run id at equal offset", []Node{n("a", 100, 100, "9"), n("b", 100, 100, "2")}, "b"},
		{"address breaks a full tie", []Node{n("b", 100, 100, ""), n("a", 100, 100, "")}, "a"},
	}
	for _, tt := range tests {
		if got := slices.MinFunc(tt.in, betterReplica).Addr; got != tt.want {
			t.Errorf("%s: best = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// checkLagBound: with MaxReplicaLag, every replica in the rotation holds
// what the master held at a sample of its history no more than the bound
// before this decision.
func checkLagBound(fail func(string, ...any), st State) {
	if st.MaxReplicaLag <= 0 {
		return
	}
	now := st.LastDecide
	for _, a := range st.Published.Replicas {
		n := st.Nodes[a]
		if n.Lagging {
			fail("published replica %s is lagging", a)
		}
		ok := false
		for _, s := range st.MasterOffsets {
			if s.ReplID == n.Info.ReplID && s.Offset <= n.Info.Offset && now.Sub(s.At) <= st.MaxReplicaLag {
				ok = true
			}
		}
		if !ok {
			fail("published replica %s (%s at %d) covers no sample of the master within %v: %v",
				a, n.Info.ReplID, n.Info.Offset, st.MaxReplicaLag, st.MasterOffsets)
		}
	}
	if len(st.MasterOffsets) > maxSamples+2 {
		fail("%d samples of the master kept", len(st.MasterOffsets))
	}
}

// checkAckedWait: with WriteAcks, a promotion goes to a replica that holds
// at least the last known offset of every linked replica that is not
// reachable, unless PromotionWait has passed since the wait began and the
// risk is reported first.
func checkAckedWait(fail func(string, ...any), st State, acts []Action) {
	if st.WriteAcks <= 0 {
		return
	}
	now := st.LastDecide
	for i, a := range acts {
		if a.Kind != ActPromote {
			continue
		}
		target := st.Nodes[a.Addr]
		for _, l := range st.Linked {
			n, ok := st.Nodes[l.Addr]
			if l.Addr == a.Addr || !ok || !l.Promotable || (!n.Down && n.fresh()) {
				continue
			}
			known := l.Acked
			if n.Info.ReplID == l.ReplID {
				known = max(known, n.Info.Offset)
			}
			if known >= 0 && target.Info.ReplID == l.ReplID && target.Info.Offset >= known {
				continue
			}
			if st.AckWait.IsZero() || now.Sub(st.AckWait) < st.promotionWait() {
				fail("promoted %s at %d while %s (last known %d) was unreachable, without waiting", a.Addr, target.Info.Offset, l.Addr, known)
			}
			if i == 0 || acts[i-1].Event != EventAckedAtRisk {
				fail("promoted %s without reporting the risk to %s's writes", a.Addr, l.Addr)
			}
		}
	}
}
