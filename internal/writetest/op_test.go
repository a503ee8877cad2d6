package writetest

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// ack is an acknowledged SET sent at sent ms and answered at done ms.
func ack(key string, sent, done int) Op {
	return Op{Cmd: "SET", Key: key, Value: key, Sent: ms(sent), Done: ms(done)}
}

func fail(key string, sent, done int, msg string) Op {
	o := ack(key, sent, done)
	o.Err = errors.New(msg)
	return o
}

func TestOutage(t *testing.T) {
	// Acknowledgements at 0, 10, 20, then a hole until 500, then 510;
	// one arrived out of order (done 15 recorded last); failures count
	// for nothing.
	ops := []Op{ack("a", 0, 0), ack("b", 5, 10), ack("c", 15, 20), fail("x", 21, 400, "EOF"),
		ack("d", 30, 500), ack("e", 505, 510), ack("f", 12, 15)}
	tests := []struct {
		name     string
		from, to int
		gap      time.Duration
		back     int
	}{
		{"across the hole", 0, 600, 480 * time.Millisecond, 500},
		{"from inside the hole", 100, 600, 400 * time.Millisecond, 500},
		{"unrecovered: counted to the end", 100, 300, 200 * time.Millisecond, 300},
		{"after the last acknowledgement", 510, 900, 390 * time.Millisecond, 900},
		{"acknowledgements after the end do not count", 100, 450, 350 * time.Millisecond, 450},
	}
	for _, tt := range tests {
		gap, back := Outage(ops, ms(tt.from), ms(tt.to))
		if gap != tt.gap || !back.Equal(ms(tt.back)) {
			t.Errorf("%s: Outage(%d, %d) = %v, back at %v; want %v, back at %dms", tt.name, tt.from, tt.to, gap, back.Sub(t0), tt.gap, tt.back)
		}
	}
	// Counted from the last acknowledgement before the fault instead.
	if got := LastAck(ops, ms(100)); !got.Equal(ms(20)) {
		t.Errorf("LastAck(100ms) = %v, want 20ms", got.Sub(t0))
	}
	if got := LastAck(ops, ms(0)); !got.Equal(ms(0)) {
		t.Errorf("LastAck with none before = %v, want the time given", got.Sub(t0))
	}
	if gap, _ := Outage(ops, LastAck(ops, ms(100)), ms(600)); gap != 480*time.Millisecond {
		t.Errorf("Outage from LastAck(100ms) = %v, want 480ms", gap)
	}
	if gap, back := Outage(nil, ms(0), ms(50)); gap != 50*time.Millisecond || !back.Equal(ms(50)) {
		t.Errorf("Outage with no ops = %v %v", gap, back)
	}
}

func TestSelections(t *testing.T) {
	get := Op{Cmd: "GET", Key: "b", Value: "b", Sent: ms(11), Done: ms(12)}
	stale := Op{Cmd: "GET", Key: "c", Value: "c", Sent: ms(30), Done: ms(31), Err: errors.New(`read back "x", want "c"`)}
	ops := []Op{ack("a", 0, 5), fail("b", 1, 200, "EOF"), ack("b", 6, 10), get, stale, {Cmd: "dial", Sent: ms(40), Done: ms(41), Err: errors.New("refused")}}
	keys := func(ops []Op) string {
		var s []string
		for _, o := range ops {
			s = append(s, o.Cmd+" "+o.Key)
		}
		return strings.Join(s, ",")
	}
	if got := keys(Acked(ops)); got != "SET a,SET b,GET b" {
		t.Errorf("Acked = %s", got)
	}
	if got := keys(Failed(ops)); got != "SET b,GET c,dial " {
		t.Errorf("Failed = %s", got)
	}
	if got := keys(Writes(ops)); got != "SET a,SET b,SET b" {
		t.Errorf("Writes = %s", got)
	}
	if got := AckedWrites(ops); len(got) != 2 || got["a"] != "a" || got["b"] != "b" {
		t.Errorf("AckedWrites = %v", got)
	}
	if o, ok := FirstAck(ops, ms(5)); !ok || o.Key != "b" || o.Cmd != "SET" {
		t.Errorf("FirstAck(5ms) = %+v %v, want the SET of b (done at 10ms)", o, ok)
	}
	if _, ok := FirstAck(ops, ms(12)); ok {
		t.Errorf("FirstAck after the last acknowledgement found one")
	}
	if got := MaxLatency(ops, ms(100), ms(150)); got != 199*time.Millisecond {
		t.Errorf("MaxLatency(100, 150) = %v, want the failed SET's 199ms", got)
	}
	if got := MaxLatency(ops, ms(6), ms(9)); got != 199*time.Millisecond {
		t.Errorf("MaxLatency(6, 9) = %v", got)
	}
	if got := MaxLatency(ops, ms(300), ms(400)); got != 0 {
		t.Errorf("MaxLatency with nothing outstanding = %v", got)
	}
	if !stale.Stale() || get.Stale() || ops[1].Stale() {
		t.Errorf("Stale is wrong")
	}
	want := "\n  b sent 1ms after the event, answered after 199ms: EOF\n  (dial) sent 40ms after the event, answered after 1ms: refused"
	if got := Describe([]Op{ops[1], ops[5]}, t0); got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func TestOpJSON(t *testing.T) {
	ops := []Op{ack("k:1", 0, 3), fail("k:2", 4, 9, "i/o timeout"), {Cmd: "dial", Sent: ms(1), Done: ms(2), Err: errors.New("refused")}}
	for _, o := range ops {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var back Op
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if back.Cmd != o.Cmd || back.Key != o.Key || back.Value != o.Value || !back.Sent.Equal(o.Sent) || !back.Done.Equal(o.Done) ||
			(back.Err == nil) != (o.Err == nil) || o.Err != nil && back.Err.Error() != o.Err.Error() {
			t.Errorf("%+v came back from %s as %+v", o, b, back)
		}
	}
}

func TestRecorder(t *testing.T) {
	var r Recorder
	done := make(chan bool)
	for w := range 4 {
		go func() {
			for i := range 100 {
				r.Add(ack("k", w, i))
			}
			done <- true
		}()
	}
	for range 4 {
		<-done
	}
	ops := r.Ops()
	if len(ops) != 400 || r.Count(func(o Op) bool { return o.Sent.Equal(ms(2)) }) != 100 {
		t.Errorf("recorded %d ops", len(ops))
	}
	ops[0].Key = "changed"
	if slices.ContainsFunc(r.Ops(), func(o Op) bool { return o.Key == "changed" }) {
		t.Errorf("Ops is not a copy")
	}
}
