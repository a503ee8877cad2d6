package events

import (
	"log/slog"
	"sync"
	"time"
)

// Kinds of events. The replication manager's other decisions (a server
// discovered, a promotion that failed, a stall) keep the names the
// replication package gives them.
const (
	Failover      = "failover"       // a new master after the old one was lost; Duration: without a master
	Switchover    = "switchover"     // a planned change of master; Duration: writes held
	MasterChanged = "master-changed" // a different master found (adopted at start, or observed without authority)
	Master        = "master"         // a master confirmed without a change of epoch
	MasterLost    = "master-lost"
	NoMaster      = "no-master"
	Promotion     = "promotion"   // REPLICAOF NO ONE sent to a replica
	Demotion      = "demotion"    // an old master that came back made a replica
	SplitBrain    = "split-brain" // two masters (or two VIP holders): the loser made to follow the winner
	Repoint       = "repoint"     // a replica pointed at the master
	LostBytes     = "lost-bytes"  // writes a demoted server had that the master never got, discarded
	Down          = "down"
	Up            = "up"

	VIPMaster   = "vip-master"   // this proxy holds the VIP (and the authority over replication)
	VIPBackup   = "vip-backup"   // this proxy stands by
	VIPYielded  = "vip-yielded"  // this proxy gave the VIP up to a higher-ranked proxy that claimed it too
	VIPFault    = "vip-fault"    // this proxy may not hold the VIP (it reaches no Redis, or cannot add the address)
	VIPReleased = "vip-released" // this proxy gave the VIP up (shutdown)
	PeerHeard   = "peer-heard"   // adverts from the other proxy arrive (again), or it changed role
	PeerLost    = "peer-lost"    // the other proxy's adverts stopped
)

// Event is one entry of the history.
type Event struct {
	// Seq numbers the events of one process from 1, in order; Ring.Add
	// sets it.
	Seq   uint64     `json:"seq"`
	Time  time.Time  `json:"time"`
	Kind  string     `json:"kind"`
	Level slog.Level `json:"level"` // INFO, or WARN for what an operator should look at
	// Epoch is the replication epoch once the event happened.
	Epoch   uint64   `json:"epoch"`
	Servers []string `json:"servers,omitempty"` // Redis servers or proxies concerned; for a change of master, old then new
	Message string   `json:"message"`
	// Duration is how long it took, for the kinds that say so (0: none).
	Duration time.Duration `json:"duration_ns,omitempty"`
}

// Ring holds the newest events, up to its capacity. Its methods are safe
// for concurrent use.
type Ring struct {
	mu      sync.Mutex
	buf     []Event // circular: the oldest at first, len(buf) == capacity
	first   int
	n       int
	seq     uint64
	changed chan struct{} // closed by the next Add
}

// NewRing returns a ring that keeps the newest capacity events (at least 1).
func NewRing(capacity int) *Ring {
	return &Ring{buf: make([]Event, max(capacity, 1)), changed: make(chan struct{})}
}

// Add numbers e, stamps it with the current time if it has none, stores it
// (dropping the oldest if the ring is full), and returns it as stored.
func (r *Ring) Add(e Event) Event {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	e.Seq = r.seq
	if r.n < len(r.buf) {
		r.buf[(r.first+r.n)%len(r.buf)] = e
		r.n++
	} else {
		r.buf[r.first] = e
		r.first = (r.first + 1) % len(r.buf)
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return e
}

// Since returns copies of the events held with a Seq above seq (their
// Servers slices are shared: do not modify them), oldest first, the
// Seq of the newest event added (0: none yet), and a channel closed by the
// next Add, so a caller can wait for more without missing any. A seq above
// the newest (a caller that knew an earlier process) counts as 0: every
// event held is newer to it.
func (r *Ring) Since(seq uint64) (evs []Event, last uint64, changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq > r.seq {
		seq = 0
	}
	// The ring holds r.seq-r.n+1 .. r.seq.
	for i := int(max(seq, r.seq-uint64(r.n)) - (r.seq - uint64(r.n))); i < r.n; i++ {
		evs = append(evs, r.buf[(r.first+i)%len(r.buf)])
	}
	return evs, r.seq, r.changed
}
