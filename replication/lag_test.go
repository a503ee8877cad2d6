package replication

import (
	"testing"
	"time"
)

func TestReplicaLag(t *testing.T) {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// The master every 250ms, at 100 bytes a check; then a new history.
	samples := []OffsetSample{
		{ReplID: "X", Offset: 1000, At: at(0)},
		{ReplID: "X", Offset: 1100, At: at(250)},
		{ReplID: "X", Offset: 1200, At: at(500)},
		{ReplID: "X", Offset: 1300, At: at(750)},
	}
	tests := []struct {
		name    string
		samples []OffsetSample
		replID  string
		offset  int64
		now     int
		maxLag  time.Duration
		held    int // ms; -1: none
		want    lagVerdict
	}{
		{"current", samples, "X", 1300, 800, time.Second, 750, lagWithin},
		{"between two samples holds the older", samples, "X", 1250, 800, time.Second, 500, lagWithin},
		{"exactly the bound is within", samples, "X", 1000, 1000, time.Second, 0, lagWithin},
		{"past the bound", samples, "X", 1000, 1001, time.Second, 0, lagBeyond},
		{"below every sample, samples reach back", samples, "X", 900, 1000, time.Second, -1, lagBeyond},
		{"below every sample, too early to say", samples, "X", 900, 900, time.Second, -1, lagUnknown},
		{"another history", samples, "Y", 5000, 800, time.Second, -1, lagUnknown},
		{"no samples", nil, "X", 1000, 800, time.Second, -1, lagUnknown},
		{"ahead of the newest sample", samples, "X", 1400, 1700, time.Second, 750, lagWithin},
		{"master silent since: its newest sample ages", samples, "X", 1300, 1800, time.Second, 750, lagBeyond},
	}
	for _, tt := range tests {
		held, v := replicaLag(tt.samples, tt.replID, tt.offset, at(tt.now), tt.maxLag)
		wantHeld := time.Time{}
		if tt.held >= 0 {
			wantHeld = at(tt.held)
		}
		if v != tt.want || !held.At.Equal(wantHeld) {
			t.Errorf("%s: replicaLag = %v held at %v, want %v held at %v", tt.name, v, held.At.Sub(t0), tt.want, wantHeld.Sub(t0))
		}
	}
}

// TestSamplesBounded: however long the bound and however often the master
// is checked, the buffer stays within maxSamples (and a couple), keeps the
// newest sample, and reaches back over the whole window.
func TestSamplesBounded(t *testing.T) {
	st := NewState([]string{"a", "b"}, time.Second, 10*time.Millisecond, true)
	st.MaxReplicaLag = time.Minute
	now := t0
	off := int64(0)
	for i := 0; i < 20000; i++ { // 200s of checks every 10ms
		now = now.Add(10 * time.Millisecond)
		off += 10
		st, _ = Decide(st, []Observation{
			{Kind: ObsCheck, Addr: "a", At: now, Info: Info{Role: RoleMaster, ReplID: "X", Offset: off}},
			{Kind: ObsCheck, Addr: "b", At: now, Info: Info{Role: RoleReplica, MasterAddr: "a", LinkUp: true, ReplID: "X", Offset: off}},
		}, now)
	}
	s := st.MasterOffsets
	if len(s) > maxSamples+2 {
		t.Errorf("%d samples kept, want at most %d", len(s), maxSamples+2)
	}
	if newest := s[len(s)-1]; !newest.At.Equal(now) || newest.Offset != off {
		t.Errorf("newest sample %+v, want the master's last check at %v", newest, now)
	}
	if reach := now.Sub(s[0].At); reach < st.MaxReplicaLag {
		t.Errorf("samples reach back %v, want at least the bound %v", reach, st.MaxReplicaLag)
	}
	for i := 1; i < len(s)-1; i++ {
		if gap := s[i].At.Sub(s[i-1].At); gap > st.sampleSpacing()+10*time.Millisecond {
			t.Errorf("samples %d and %d are %v apart, want at most the spacing plus a check", i-1, i, gap)
		}
	}
	if got := st.Published.Replicas; len(got) != 1 || got[0] != "b" {
		t.Errorf("a current replica is not in the rotation: %v", got)
	}
}
