package replication

import (
	"slices"
	"time"
)

// Status is the manager's view for operators: JSON-able, a snapshot.
type Status struct {
	Epoch        uint64         `json:"epoch"`
	Master       string         `json:"master"` // "" while there is none
	Replicas     []string       `json:"replicas"`
	Authority    bool           `json:"authority"`
	Waiting      string         `json:"waiting,omitempty"`   // why there is no master
	Promoting    string         `json:"promoting,omitempty"` // failover in flight to this server
	Servers      []ServerStatus `json:"servers"`
	Failovers    uint64         `json:"failovers"`               // unplanned changes of master since start
	Switchovers  uint64         `json:"switchovers"`             // planned changes of master (switchovers) since start
	LastFailover *Failover      `json:"last_failover,omitempty"` // nil until the first change of master, of any kind
	// LostBytes counts replication-stream bytes thrown away by making
	// servers that held them replicas of a master that never got them
	// (a returning old master's unreplicated writes, the loser of a split).
	LostBytes int64     `json:"lost_bytes"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ServerStatus is one server as last seen.
type ServerStatus struct {
	Addr       string    `json:"addr"`
	Discovered bool      `json:"discovered,omitempty"` // reported by a master, not configured
	Joining    bool      `json:"joining,omitempty"`    // added at run time, not caught up yet: serves no reads
	Up         bool      `json:"up"`
	Role       Role      `json:"role,omitempty"`
	MasterAddr string    `json:"master_addr,omitempty"` // replica: whom it follows
	LinkUp     bool      `json:"link_up,omitempty"`
	Offset     int64     `json:"offset"`
	LagBytes   int64     `json:"lag_bytes,omitempty"` // replica of the master: how far behind it is
	Following  bool      `json:"following,omitempty"` // a replica of the master: LagBytes is known
	Priority   int       `json:"priority,omitempty"`
	RunID      string    `json:"run_id,omitempty"`
	ReplID     string    `json:"replid,omitempty"`
	LastOK     time.Time `json:"last_ok,omitzero"`
	Error      string    `json:"error,omitempty"` // the newest check's failure or LOADING/MASTERDOWN reply
	// With MaxReplicaLag: Lag is how long before this snapshot the master
	// last held no more than this replica holds (an upper bound of its
	// staleness, measured against the master's checks); Lagging says it is
	// out of the read rotation because Lag exceeds the bound.
	Lag     time.Duration `json:"lag_ns,omitempty"`
	Lagging bool          `json:"lagging,omitempty"`
}

func statusOf(st State, now time.Time) Status {
	s := Status{
		Epoch:       st.Published.Epoch,
		Master:      st.Published.Master,
		Replicas:    slices.Clone(st.Published.Replicas),
		Authority:   st.Authority,
		Waiting:     st.Waiting,
		Promoting:   st.Promotion.Target,
		Failovers:   st.Failovers,
		Switchovers: st.Switchovers,
		LostBytes:   st.LostBytes,
		UpdatedAt:   now,
	}
	if s.Replicas == nil {
		s.Replicas = []string{}
	}
	if st.LastFailover.Kind != "" {
		f := st.LastFailover
		s.LastFailover = &f
	}
	var masterOffset int64 = -1
	if m, ok := st.Nodes[st.Master]; ok && m.Info.Role == RoleMaster {
		masterOffset = m.Info.Offset
	}
	d := decider{st: &st}
	for _, a := range d.addrs() {
		n := st.Nodes[a]
		ss := ServerStatus{
			Addr: a, Discovered: n.Discovered, Joining: n.Joining, Up: !n.Down && !n.LastOK.IsZero(),
			Role: n.Info.Role, MasterAddr: n.Info.MasterAddr, LinkUp: n.Info.LinkUp,
			Offset: n.Info.Offset, Priority: n.Info.Priority, RunID: n.Info.RunID, ReplID: n.Info.ReplID,
			LastOK: n.LastOK, Error: n.Err, Lagging: n.Lagging,
		}
		if !n.HeldAt.IsZero() {
			ss.Lag = max(0, now.Sub(n.HeldAt))
		}
		if n.Reply != "" {
			ss.Error = n.Reply
		}
		if masterOffset >= 0 && n.Info.Role == RoleReplica && st.Master != "" && d.replicaOf(n, st.Nodes[st.Master]) {
			ss.LagBytes = max(0, masterOffset-n.Info.Offset)
			ss.Following = true
		}
		s.Servers = append(s.Servers, ss)
	}
	return s
}
