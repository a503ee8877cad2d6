package replication

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestHistoryEvents plays golden scenarios and checks the operator's events
// the manager derives from each decision (history.note), one line each:
// kind, servers, epoch, level, duration, then the message.
func TestHistoryEvents(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		want     []string
	}{
		{"master_dies", []string{
			"master a epoch=0 INFO: a is master (epoch 0)",
			"down a epoch=0 WARN: a is down: connection refused",
			"master-lost a epoch=0 WARN: master a lost: down",
			"promotion b epoch=0 WARN: promoting b to master (REPLICAOF NO ONE): a was lost",
			"failover a,b epoch=1 WARN 1.005s: failover from a to b, epoch 1: 1.005s without a master (lost detected after 1s, new master confirmed 5ms later)",
			"repoint c,b epoch=1 INFO: c pointed at the master b",
		}},
		{"old_master_returns", []string{
			"master a epoch=0 INFO: a is master (epoch 0)",
			"down a epoch=0 WARN: a is down: connection refused",
			"master-lost a epoch=0 WARN: master a lost: down",
			"promotion b epoch=0 WARN: promoting b to master (REPLICAOF NO ONE): a was lost",
			"failover a,b epoch=1 WARN 1.005s: failover from a to b, epoch 1: 1.005s without a master (lost detected after 1s, new master confirmed 5ms later)",
			"up a epoch=1 INFO: a is up",
			"demotion a,b epoch=1 WARN: old master a is back: made a replica of b; the 28 bytes of writes it has that b never got will be discarded",
			"lost-bytes a epoch=1 WARN: 28 bytes of writes discarded on a: it had them as a master, the master b never got them",
		}},
		{"two_masters_split", []string{
			"master b epoch=0 INFO: b is master (epoch 0)",
			"split-brain a,b epoch=0 WARN: split brain resolved: a was a master too; made a replica of b; the 1000 bytes of writes it has that b never got will be discarded",
			"lost-bytes a epoch=0 WARN: 1000 bytes of writes discarded on a: it had them as a master, the master b never got them",
		}},
		{"switchover", []string{
			"master a epoch=0 INFO: a is master (epoch 0)",
			"switchover-aborted b epoch=0 WARN: b: switchover aborted (replica did not catch up; a stays master)",
			"switchover a,b epoch=1 INFO 100ms: switchover from a to b, epoch 1: writes held 100ms",
			"repoint c,b epoch=1 INFO: c pointed at the master b",
		}},
		{"all_die_one_returns", []string{
			"master a epoch=0 INFO: a is master (epoch 0)",
			"down a epoch=0 WARN: a is down: connection refused",
			"down b epoch=0 WARN: b is down: connection refused",
			"down c epoch=0 WARN: c is down: connection refused",
			"master-lost a epoch=0 WARN: master a lost: down",
			"no-master  epoch=0 WARN: no master: no server reachable",
			"up c epoch=1 INFO: c is up",
			"master-changed a,c epoch=1 WARN 12s: c is master, epoch 1: the first server back, after 12s without a master (it was a)",
			"up a epoch=1 INFO: a is up",
			"demotion a,c epoch=1 WARN: old master a is back: made a replica of c; the 100 bytes of writes it has that c never got will be discarded",
			"lost-bytes a epoch=1 WARN: 100 bytes of writes discarded on a: it had them as a master, the master c never got them",
			"up b epoch=1 INFO: b is up",
			"repoint b,c epoch=1 INFO: b pointed at the master c",
		}},
		{"replica_lagging", []string{
			"master a epoch=0 INFO: a is master (epoch 0)",
			"replica-lagging c epoch=0 WARN: c left the read rotation: at offset 1140 it holds what the master held 1.125s before, at offset 1100 (bound 1s)",
			"replica-caught-up c epoch=0 INFO: c back in the read rotation: at offset 1450 it holds what the master held 500ms before, at offset 1400 (bound 1s)",
		}},
		{"acked_wait_expires", []string{
			"master a epoch=0 INFO: a is master (epoch 0)",
			"down a epoch=0 WARN: a is down: connection refused",
			"down b epoch=0 WARN: b is down: connection refused",
			"master-lost a epoch=0 WARN: master a lost: down",
			"promotion-held c epoch=0 WARN: promotion of c held: waiting up to 3s for b (offset 1200): it may hold acknowledged writes c (offset 1100) lacks",
			"acked-writes-at-risk c epoch=0 WARN: promoting c at offset 1100 without b (offset 1200), linked to the master: acknowledged writes it lacks may be lost; waited 3s",
			"promotion c epoch=0 WARN: promoting c to master (REPLICAOF NO ONE): a was lost",
			"failover a,c epoch=1 WARN 4.255s: failover from a to c, epoch 1: 4.255s without a master (lost detected after 1.25s, new master confirmed 3.005s later)",
		}},
		{"acked_offset_first", []string{
			"master a epoch=0 INFO: a is master (epoch 0)",
			"down a epoch=0 WARN: a is down: connection refused",
			"master-lost a epoch=0 WARN: master a lost: down",
			"acked-writes-at-risk c epoch=0 WARN: promoting c at offset 1200 without d (offset 1300), linked to the master: acknowledged writes it lacks may be lost",
			"promotion c epoch=0 WARN: promoting c to master (REPLICAOF NO ONE): a was lost",
		}},
		// Without authority: the same history, told as observed.
		{"observe_only", []string{
			"master a epoch=0 INFO: a is master (epoch 0)",
			"down a epoch=0 WARN: a is down: connection refused",
			"master-lost a epoch=0 WARN: master a lost: 0 masters up",
			"no-master  epoch=0 WARN: no master: no master up",
			"master-changed a,b epoch=1 INFO 6.25s: b is master, epoch 1, as observed (this proxy has no authority; it was a)",
			"up a epoch=1 INFO: a is up",
			"master-lost b epoch=1 WARN: master b lost: 2 masters up",
			"no-master  epoch=1 WARN: no master: several masters up: a,b",
			"master b epoch=1 INFO: b is master (epoch 1)",
			"demotion a,b epoch=1 INFO: old master a is back: made a replica of b",
		}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tc.scenario + ".txt")
			if err != nil {
				t.Fatal(err)
			}
			var h history
			var got []string
			playScenario(t, string(data), func(st State, acts []Action, now time.Time) {
				for _, a := range acts {
					n, ok := h.note(st, a, now)
					if !ok {
						if a.Kind == ActEvent || a.Kind == ActPromote || a.Kind == ActReplicaOf {
							t.Errorf("%v: no event", a)
						}
						continue
					}
					e := n.ev
					if !e.Time.Equal(now) {
						t.Errorf("%v: event time %v, want the decision's %v", a, e.Time, now)
					}
					if n.msg == "" {
						t.Errorf("%v: no log message", a)
					}
					line := fmt.Sprintf("%s %s epoch=%d %s", e.Kind, strings.Join(e.Servers, ","), e.Epoch, e.Level)
					if e.Duration > 0 {
						line += " " + e.Duration.String()
					}
					got = append(got, line+": "+e.Message)
				}
			})
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestHistoryLogLines: the log message of each event stays what operators
// and tests search for.
func TestHistoryLogLines(t *testing.T) {
	st := NewState([]string{"a", "b"}, time.Second, 250*time.Millisecond, true)
	st.Nodes["a"] = Node{Addr: "a", Info: Info{Role: RoleMaster}}
	st.LastFailover = Failover{Kind: "failover", Epoch: 2, From: "a", To: "b", Duration: time.Second}
	st.Epoch = 2
	for _, tc := range []struct {
		a    Action
		msg  string
		attr string
	}{
		{Action{Kind: ActEvent, Event: EventDown, Addr: "a", Detail: "refused"}, "server down", "detail=refused"},
		{Action{Kind: ActEvent, Event: EventMasterChanged, Addr: "b", Detail: "x"}, "master changed", "duration=1s"},
		{Action{Kind: ActPromote, Addr: "b"}, "promoting replica", "event=promotion"},
		{Action{Kind: ActReplicaOf, Addr: "a", Master: "b", LostBytes: 5}, "demoting master; its unreplicated writes will be discarded", "lost_bytes=5"},
		{Action{Kind: ActReplicaOf, Addr: "a", Master: "b"}, "demoting master", "master=b"},
		{Action{Kind: ActEvent, Event: EventBusy, Addr: "a"}, "server busy running a long command: alive", "event=busy"},
		{Action{Kind: ActEvent, Event: "something-new", Addr: "a"}, "something-new", "event=something-new"},
	} {
		var h history
		n, ok := h.note(st, tc.a, t0)
		if !ok {
			t.Errorf("%v: no event", tc.a)
			continue
		}
		var attrs []string
		for i := 0; i+1 < len(n.attrs); i += 2 {
			attrs = append(attrs, fmt.Sprintf("%v=%v", n.attrs[i], n.attrs[i+1]))
		}
		if n.msg != tc.msg || !strings.Contains(strings.Join(attrs, " "), tc.attr) {
			t.Errorf("%v: logged %q %v, want %q with %s", tc.a, n.msg, attrs, tc.msg, tc.attr)
		}
		if n.ev.Epoch != 2 {
			t.Errorf("%v: epoch %d, want 2", tc.a, n.ev.Epoch)
		}
	}
	for _, a := range []Action{{Kind: ActPublish}, {Kind: ActSwitchover, Addr: "b"}, {Kind: ActReject, Addr: "b"}} {
		var h history
		if _, ok := h.note(st, a, t0); ok {
			t.Errorf("%v is not an event", a)
		}
	}
}

func TestTidy(t *testing.T) {
	for in, want := range map[string]string{
		"no decision for 658.899199ms":           "no decision for 659ms",
		"after 1.654951236s":                     "after 1.655s",
		"failover from=a epoch=1 after=1.005s":   "failover from=a epoch=1 after=1.005s",
		"check 127.0.0.1:7101: connection reset": "check 127.0.0.1:7101: connection reset",
		"bytes=28":                               "bytes=28",
		"waited 250µs":                           "waited 250µs",
		"":                                       "",
	} {
		if got := tidy(in); got != want {
			t.Errorf("tidy(%q) = %q, want %q", in, got, want)
		}
	}
}
