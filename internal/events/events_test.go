package events

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func seqs(evs []Event) []uint64 {
	var s []uint64
	for _, e := range evs {
		s = append(s, e.Seq)
	}
	return s
}

func TestRingSince(t *testing.T) {
	for _, tc := range []struct {
		capacity, added int
		since           uint64
		want            []uint64
	}{
		{capacity: 4, added: 0, since: 0, want: nil},
		{capacity: 4, added: 3, since: 0, want: []uint64{1, 2, 3}},
		{capacity: 4, added: 3, since: 1, want: []uint64{2, 3}},
		{capacity: 4, added: 3, since: 3, want: nil},
		{capacity: 4, added: 4, since: 0, want: []uint64{1, 2, 3, 4}},
		// Full: the oldest are dropped, newest last.
		{capacity: 4, added: 6, since: 0, want: []uint64{3, 4, 5, 6}},
		{capacity: 4, added: 6, since: 2, want: []uint64{3, 4, 5, 6}},
		{capacity: 4, added: 6, since: 4, want: []uint64{5, 6}},
		{capacity: 4, added: 6, since: 6, want: nil},
		{capacity: 4, added: 11, since: 9, want: []uint64{10, 11}},
		// A seq from an earlier process (above the newest) gets everything.
		{capacity: 4, added: 2, since: 9, want: []uint64{1, 2}},
		{capacity: 1, added: 3, since: 0, want: []uint64{3}},
		{capacity: 0, added: 2, since: 0, want: []uint64{2}}, // at least one is kept
	} {
		t.Run(fmt.Sprintf("cap%d_added%d_since%d", tc.capacity, tc.added, tc.since), func(t *testing.T) {
			r := NewRing(tc.capacity)
			for i := 0; i < tc.added; i++ {
				e := r.Add(Event{Kind: Down, Message: fmt.Sprint("event ", i+1)})
				if e.Seq != uint64(i+1) || e.Time.IsZero() {
					t.Fatalf("Add #%d returned seq %d time %v", i+1, e.Seq, e.Time)
				}
			}
			evs, last, _ := r.Since(tc.since)
			if got := seqs(evs); !slices.Equal(got, tc.want) {
				t.Errorf("Since(%d) = %v, want %v", tc.since, got, tc.want)
			}
			for _, e := range evs {
				if want := fmt.Sprint("event ", e.Seq); e.Message != want {
					t.Errorf("event %d says %q, want %q", e.Seq, e.Message, want)
				}
			}
			if last != uint64(tc.added) {
				t.Errorf("last = %d, want %d", last, tc.added)
			}
		})
	}
}

func TestRingAddKeepsAGivenTime(t *testing.T) {
	r := NewRing(2)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if e := r.Add(Event{Time: at}); !e.Time.Equal(at) {
		t.Errorf("Add changed the time to %v", e.Time)
	}
}

func TestRingChangedWakesOnAdd(t *testing.T) {
	r := NewRing(2)
	_, _, changed := r.Since(0)
	select {
	case <-changed:
		t.Fatal("changed closed before any Add")
	default:
	}
	r.Add(Event{Kind: Up})
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Fatal("changed not closed by Add")
	}
	// A new channel for the next one.
	_, last, changed := r.Since(1)
	if last != 1 {
		t.Fatalf("last = %d", last)
	}
	select {
	case <-changed:
		t.Fatal("the channel after Add is already closed")
	default:
	}
}

func TestEventJSON(t *testing.T) {
	e := Event{Seq: 7, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Kind: Failover, Level: slog.LevelWarn, Epoch: 3,
		Servers: []string{"a:1", "b:2"}, Message: "failover", Duration: 1500 * time.Millisecond}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":7,"time":"2025-01-02T03:04:05Z","kind":"failover","level":"WARN","epoch":3,"servers":["a:1","b:2"],"message":"failover","duration_ns":1500000000}`
	if string(b) != want {
		t.Errorf("JSON:\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(Event{Kind: Up})
	if strings.Contains(string(b), "duration") || strings.Contains(string(b), "servers") {
		t.Errorf("empty duration and servers are omitted: %s", b)
	}
}
