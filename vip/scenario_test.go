package vip

import (
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/scenarios/*.golden")

// TestScenarios replays testdata/scenarios/*.txt against Step on a fake
// clock and compares the transcript with the .golden file beside it.
//
// One command a line ('#' starts a comment):
//
//	config self=10.0.0.1 prio=100 interval=200ms preempt=on delay=0s track=demote garp=3 spacing=100ms refresh=10s hold=2s window=10s handover=999.21875ms [losshold=7.21875s]
//	start | shutdown | add-failed
//	dropped N                       the receive queue overflowed: N datagrams lost
//	tick 700ms                      advance the clock, firing every timer due
//	health up|down
//	payload epoch 3 master r1:6379
//	advert from 10.0.0.2 prio 150 [role MASTER] [unhealthy] [interval 200ms]
//	       [epoch 7 master r2:6379] [seq N] [boot N] [age 30s]
//	       [key wrong] [truncate N] [version N]
//	replay                          resend the previous advert's bytes
//	raw 0102ff                      a datagram of these bytes
//
// Adverts are marshalled, signed, then pass the same receiver as Node's
// (decode, MAC, self, replay window) before reaching Step; rejections are
// printed with their reason.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := runScenario(string(src))
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(f, ".txt") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./vip -run TestScenarios -update)", err)
			}
			if got != string(want) {
				t.Errorf("transcript differs from %s (rerun with -update and review the diff):\n%s", golden, diffLines(string(want), got))
			}
		})
	}
}

const scenarioKey = "scenario-secret-0123456789"

type scenario struct {
	st      State
	now, t0 time.Time
	rcv     *receiver
	seq     map[netip.Addr]uint64
	last    []byte
	out     strings.Builder
}

func runScenario(src string) (string, error) {
	s := &scenario{t0: t0, now: t0, seq: map[netip.Addr]uint64{}}
	for i, line := range strings.Split(src, "\n") {
		if c := strings.IndexByte(line, '#'); c >= 0 {
			line = line[:c]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if err := s.exec(f); err != nil {
			return "", fmt.Errorf("line %d %q: %w", i+1, strings.TrimSpace(line), err)
		}
	}
	return s.out.String(), nil
}

func (s *scenario) rel(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return "+" + t.Sub(s.t0).String()
}

func (s *scenario) step(label string, ev Event) {
	var effs []Effect
	s.st, effs = Step(s.st, ev, s.now)
	fmt.Fprintf(&s.out, "%s %s\n", s.rel(s.now), label)
	for _, e := range effs {
		if st, ok := e.(SetTimer); ok {
			fmt.Fprintf(&s.out, "    set-timer %s\n", s.rel(st.At))
			continue
		}
		if td, ok := e.(TakeoverDeferred); ok {
			fmt.Fprintf(&s.out, "    takeover-deferred until %s\n", s.rel(td.Until))
			continue
		}
		fmt.Fprintf(&s.out, "    %s\n", e)
	}
	fmt.Fprintf(&s.out, "    = %s\n", s.summary())
}

func (s *scenario) summary() string {
	st := s.st
	var b strings.Builder
	b.WriteString(st.Role.String())
	if !st.Healthy {
		b.WriteString(" unhealthy")
	}
	fmt.Fprintf(&b, " epoch %d master %q", st.Payload.Epoch, st.Payload.Master)
	if st.CurrentMaster.IsValid() && st.Role != Master {
		fmt.Fprintf(&b, " following %s", st.CurrentMaster)
	}
	if st.Role == Backup {
		fmt.Fprintf(&b, " down-at %s", s.rel(st.MasterDownAt))
		if !st.PreemptAt.IsZero() {
			fmt.Fprintf(&b, " preempt-at %s", s.rel(st.PreemptAt))
		}
	}
	if st.Role == Releasing {
		fmt.Fprintf(&b, " release-at %s", s.rel(st.ReleaseAt))
	}
	return b.String()
}

func (s *scenario) exec(f []string) error {
	cmd, args := f[0], f[1:]
	if s.rcv == nil && cmd != "config" {
		if err := s.configure(nil); err != nil {
			return err
		}
	}
	switch cmd {
	case "config":
		return s.configure(args)
	case "start":
		s.step("start", Start{})
	case "shutdown":
		s.step("shutdown", Shutdown{})
	case "add-failed":
		s.step("add-failed", AddFailed{})
	case "dropped":
		if len(args) != 1 {
			return fmt.Errorf("want: dropped N")
		}
		n, err := strconv.ParseUint(args[0], 10, 64)
		if err != nil {
			return err
		}
		s.step("dropped "+args[0], PacketsDropped{N: n})
	case "tick":
		if len(args) != 1 {
			return fmt.Errorf("want: tick DURATION")
		}
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return err
		}
		end := s.now.Add(d)
		for i := 0; ; i++ {
			if i > 10000 {
				return fmt.Errorf("timer does not advance")
			}
			at := s.st.TimerAt
			if at.IsZero() || at.After(end) {
				break
			}
			s.now = at
			s.step("timer", Tick{})
		}
		s.now = end
		fmt.Fprintf(&s.out, "%s (tick %s done)\n", s.rel(s.now), d)
	case "health":
		if len(args) != 1 || (args[0] != "up" && args[0] != "down") {
			return fmt.Errorf("want: health up|down")
		}
		s.step("health "+args[0], TrackingChanged{Healthy: args[0] == "up"})
	case "payload":
		if len(args) != 4 || args[0] != "epoch" || args[2] != "master" {
			return fmt.Errorf("want: payload epoch N master HOST:PORT")
		}
		e, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			return err
		}
		s.step(strings.Join(f, " "), PayloadSet{Payload: Payload{Epoch: e, Master: args[3]}})
	case "advert":
		return s.advert(f)
	case "replay":
		if s.last == nil {
			return fmt.Errorf("nothing to replay")
		}
		s.deliver("replay", s.last)
	case "raw":
		b, err := hex.DecodeString(strings.Join(args, ""))
		if err != nil {
			return err
		}
		s.deliver(strings.Join(f, " "), b)
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}

func (s *scenario) configure(args []string) error {
	p := defaultParams()
	window := 10 * time.Second
	for _, kv := range args {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("config: want key=value, got %q", kv)
		}
		var err error
		dur := func() (d time.Duration) { d, err = time.ParseDuration(v); return d }
		switch k {
		case "self":
			p.Self, err = netip.ParseAddr(v)
		case "prio":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 8)
			p.Priority = uint8(n)
		case "interval":
			p.Interval = dur()
		case "preempt":
			p.Preempt = v == "on"
		case "delay":
			p.PreemptDelay = dur()
		case "track":
			p.Track = map[string]TrackMode{"demote": TrackDemote, "fault": TrackFault}[v]
		case "garp":
			p.GARPCount, err = strconv.Atoi(v)
		case "spacing":
			p.GARPSpacing = dur()
		case "refresh":
			p.GARPRefresh = dur()
		case "hold":
			p.FaultHold = dur()
		case "window":
			window = dur()
		case "handover":
			p.HandoverTimeout = dur()
		case "losshold":
			p.LossHold = dur()
		default:
			return fmt.Errorf("config: unknown key %q", k)
		}
		if err != nil {
			return fmt.Errorf("config %s: %w", k, err)
		}
	}
	s.st = NewState(p)
	s.rcv = newReceiver([]byte(scenarioKey), p.Self, 1, window)
	fmt.Fprintf(&s.out, "# self %s prio %d interval %v preempt %v delay %v track %s garp %d spacing %v refresh %v hold %v window %v handover %v",
		p.Self, p.Priority, p.Interval, p.Preempt, p.PreemptDelay, p.Track, p.GARPCount, p.GARPSpacing, p.GARPRefresh, p.FaultHold, window, p.HandoverTimeout)
	if p.LossHold > 0 { // only where set, so older scenarios' goldens stand
		fmt.Fprintf(&s.out, " losshold %v", p.LossHold)
	}
	s.out.WriteString("\n")
	return nil
}

func (s *scenario) advert(f []string) error {
	a := Advert{Healthy: true, Role: Master, Interval: 200 * time.Millisecond, Time: s.now}
	key := []byte(scenarioKey)
	var seq uint64
	truncate, version := -1, -1
	args := f[1:]
	for len(args) > 0 {
		k := args[0]
		if k == "unhealthy" {
			a.Healthy = false
			args = args[1:]
			continue
		}
		if len(args) < 2 {
			return fmt.Errorf("advert: %q needs a value", k)
		}
		v := args[1]
		args = args[2:]
		var err error
		var n uint64
		switch k {
		case "from":
			a.Sender, err = netip.ParseAddr(v)
		case "prio":
			n, err = strconv.ParseUint(v, 10, 8)
			a.Priority = uint8(n)
		case "role":
			r, ok := map[string]Role{"INIT": Init, "BACKUP": Backup, "MASTER": Master, "FAULT": Fault}[v]
			if !ok {
				err = fmt.Errorf("role %q", v)
			}
			a.Role = r
		case "interval":
			a.Interval, err = time.ParseDuration(v)
		case "epoch":
			a.Payload.Epoch, err = strconv.ParseUint(v, 10, 64)
		case "master":
			a.Payload.Master = v
		case "seq":
			seq, err = strconv.ParseUint(v, 10, 64)
		case "boot":
			a.BootID, err = strconv.ParseUint(v, 10, 64)
		case "age":
			var d time.Duration
			d, err = time.ParseDuration(v)
			a.Time = s.now.Add(-d)
		case "key":
			key = []byte(v)
		case "truncate":
			truncate, err = strconv.Atoi(v)
		case "version":
			version, err = strconv.Atoi(v)
		default:
			return fmt.Errorf("advert: unknown field %q", k)
		}
		if err != nil {
			return fmt.Errorf("advert %s: %w", k, err)
		}
	}
	if !a.Sender.IsValid() {
		return fmt.Errorf("advert: from is required")
	}
	if a.BootID == 0 {
		a.BootID = uint64(a.Sender.As4()[3]) << 8
	}
	if seq == 0 {
		s.seq[a.Sender]++
		seq = s.seq[a.Sender]
	}
	a.Seq = seq
	b, err := Marshal(a, key)
	if err != nil {
		return err
	}
	if version >= 0 {
		b[2] = byte(version)
	}
	if truncate >= 0 && truncate < len(b) {
		b = b[:truncate]
	}
	s.last = b
	s.deliver(strings.Join(f, " "), b)
	return nil
}

// deliver runs b through the receiver and, if accepted, Step.
func (s *scenario) deliver(label string, b []byte) {
	a, err := s.rcv.accept(b, s.now)
	if err != nil {
		fmt.Fprintf(&s.out, "%s %s\n    rejected: %s\n    = %s\n", s.rel(s.now), label, ReasonOf(err).String(), s.summary())
		return
	}
	s.step(label, a.event())
}

// diffLines is a minimal line diff for the failure message.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n   got %q\n", i+1, wl, gl)
			if b.Len() > 4000 {
				b.WriteString("  ...\n")
				break
			}
		}
	}
	return b.String()
}
