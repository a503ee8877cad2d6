package replication

import "slices"

// Topology is the routing view of the Redis servers: which one accepts
// writes and which replicas may serve reads. It is a value; the proxy
// reads it and never changes it.
type Topology struct {
	// Epoch increases by one with every promotion this deployment made.
	// Zero means no promotion has happened (the layout was found as is).
	Epoch uint64 `json:"epoch"`
	// Master is the host:port of the server that accepts writes, or ""
	// when no master is known (all down, or a failover in progress).
	Master string `json:"master"`
	// Replicas are the host:port of replicas of Master whose replication
	// link is up, in a stable order. They may serve reads.
	Replicas []string `json:"replicas"`
}

// Equal reports whether t and o route the same way.
func (t Topology) Equal(o Topology) bool {
	return t.Epoch == o.Epoch && t.Master == o.Master && slices.Equal(t.Replicas, o.Replicas)
}
