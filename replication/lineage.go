package replication

// Redis names each history of writes with a replication ID. A replica that
// is promoted starts a new ID and keeps the old one as master_replid2, with
// second_repl_offset one past the last byte it shares with the old history.
// From that, two servers' data can be compared without any state kept by
// the proxy: the comparison survives a restart of the proxy. Links remembered
// in State extend the comparison across several promotions.

// position is where a server's data stands in the replication history.
type position struct {
	ReplID       string
	ReplID2      string
	Offset       int64
	SecondOffset int64 // 0 when there is no ReplID2
}

// Link records that history ReplID forked from Parent after byte Fork.
type Link struct {
	ReplID string `json:"replid"`
	Parent string `json:"parent"`
	Fork   int64  `json:"fork"`
}

// maxLinks bounds the lineage remembered in State.
const maxLinks = 32

func (p position) link() (Link, bool) {
	if p.ReplID == "" || p.ReplID2 == "" || p.SecondOffset <= 0 {
		return Link{}, false
	}
	return Link{ReplID: p.ReplID, Parent: p.ReplID2, Fork: p.SecondOffset - 1}, true
}

// segment: the history id is shared by this server's data up to byte upTo.
type segment struct {
	id   string
	upTo int64
}

// chain lists the histories p's data belongs to, newest first.
func chain(p position, links []Link) []segment {
	if p.ReplID == "" {
		return nil
	}
	out := []segment{{p.ReplID, p.Offset}}
	cur, upTo := p.ReplID, p.Offset
	if l, ok := p.link(); ok {
		cur, upTo = l.Parent, min(l.Fork, upTo)
		out = append(out, segment{cur, upTo})
	}
	seen := map[string]bool{p.ReplID: true, cur: true}
	for {
		next := false
		for _, l := range links {
			if l.ReplID == cur && !seen[l.Parent] {
				cur, upTo = l.Parent, min(l.Fork, upTo)
				seen[cur] = true
				out = append(out, segment{cur, upTo})
				next = true
				break
			}
		}
		if !next {
			return out
		}
	}
}

// commonOffset returns how many bytes of history a and b share, and whether
// they share a history at all.
func commonOffset(a, b position, links []Link) (int64, bool) {
	ca, cb := chain(a, links), chain(b, links)
	for _, x := range ca {
		for _, y := range cb {
			if x.id == y.id {
				return min(x.upTo, y.upTo), true
			}
		}
	}
	return 0, false
}

// lostBytes is how many bytes of replication stream loser has that winner
// never got: what a resync of loser from winner throws away. With no shared
// history, all of loser's stream is lost.
func lostBytes(loser, winner position, links []Link) int64 {
	common, _ := commonOffset(loser, winner, links)
	return max(0, loser.Offset-common)
}

// descends reports whether x's history forked from y's: x was promoted (or
// follows a server promoted) from y's history, so x's data is the newer.
// Two servers on the same history do not descend from each other.
func descends(x, y position, links []Link) bool {
	if y.ReplID == "" || x.ReplID == y.ReplID {
		return false
	}
	for i, s := range chain(x, links) {
		if i > 0 && s.id == y.ReplID {
			return true
		}
	}
	return false
}
