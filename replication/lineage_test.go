package replication

import "testing"

func TestLostBytes(t *testing.T) {
	// Measured on redis-server 7.0: master X at offset 157, replica promoted
	// (new ID Y, replid2 X, second_repl_offset 158), then one more SET of 28
	// bytes on the old master: offset 185.
	oldMaster := position{ReplID: "X", Offset: 185}
	promoted := position{ReplID: "Y", ReplID2: "X", SecondOffset: 158, Offset: 157}
	tests := []struct {
		name          string
		loser, winner position
		links         []Link
		want          int64
	}{
		{"old master with writes the new master never got", oldMaster, promoted, nil, 28},
		{"old master that had nothing extra", position{ReplID: "X", Offset: 157}, promoted, nil, 0},
		{"new master wrote more since; loser still only loses its own extra", oldMaster,
			position{ReplID: "Y", ReplID2: "X", SecondOffset: 158, Offset: 9000}, nil, 28},
		{"same history, loser behind", position{ReplID: "X", Offset: 100}, position{ReplID: "X", Offset: 300}, nil, 0},
		{"same history, loser ahead", position{ReplID: "X", Offset: 300}, position{ReplID: "X", Offset: 100}, nil, 200},
		{"unrelated histories: all of the loser's stream", position{ReplID: "Q", Offset: 700}, promoted, nil, 700},
		{"fresh server loses nothing", position{ReplID: "Q", Offset: 0}, promoted, nil, 0},
		{"siblings forked from one history", position{ReplID: "Z", ReplID2: "X", SecondOffset: 151, Offset: 400}, promoted, nil, 400 - 150},
		{"two promotions later, through a remembered link", oldMaster,
			position{ReplID: "W", ReplID2: "Y", SecondOffset: 301, Offset: 500},
			[]Link{{ReplID: "Y", Parent: "X", Fork: 157}}, 28},
		{"two promotions later, without the link", oldMaster,
			position{ReplID: "W", ReplID2: "Y", SecondOffset: 301, Offset: 500}, nil, 185},
	}
	for _, tt := range tests {
		if got := lostBytes(tt.loser, tt.winner, tt.links); got != tt.want {
			t.Errorf("%s: lostBytes = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestDescends(t *testing.T) {
	x := position{ReplID: "X", Offset: 185}
	y := position{ReplID: "Y", ReplID2: "X", SecondOffset: 158, Offset: 157}
	w := position{ReplID: "W", ReplID2: "Y", SecondOffset: 301, Offset: 500}
	links := []Link{{ReplID: "Y", Parent: "X", Fork: 157}}
	tests := []struct {
		name  string
		a, b  position
		links []Link
		want  bool
	}{
		{"promoted replica descends from the old master", y, x, nil, true},
		{"old master does not descend from the promoted replica", x, y, nil, false},
		{"same history is not descent", x, position{ReplID: "X", Offset: 10}, nil, false},
		{"grandchild through a link", w, x, links, true},
		{"grandchild without the link is unknown", w, x, nil, false},
		{"unrelated", position{ReplID: "Q"}, x, nil, false},
		{"empty id", y, position{}, nil, false},
	}
	for _, tt := range tests {
		if got := descends(tt.a, tt.b, tt.links); got != tt.want {
			t.Errorf("%s: descends = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestChainStopsOnCycle(t *testing.T) {
	links := []Link{{ReplID: "A", Parent: "B", Fork: 10}, {ReplID: "B", Parent: "A", Fork: 5}}
	if got := chain(position{ReplID: "A", Offset: 20}, links); len(got) != 2 {
		t.Fatalf("chain = %v, want A then B and no loop", got)
	}
}
