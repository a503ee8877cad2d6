package replication

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Role is what a server says it is in its ROLE reply.
type Role string

const (
	RoleMaster  Role = "master"
	RoleReplica Role = "replica" // Redis says "slave"
)

// Info is what one valid check of a server returned: ROLE, INFO replication
// and the run id from INFO server. It is a value; Decide never changes one.
type Info struct {
	Role   Role   `json:"role"`
	RunID  string `json:"run_id,omitempty"`
	Remote string `json:"remote,omitempty"` // ip:port the check's connection reached

	// Replication lineage (INFO replication). A replica reports the IDs of
	// the master it follows. ReplID2/SecondOffset are set after a promotion:
	// the history of ReplID2 is shared up to offset SecondOffset-1.
	ReplID       string `json:"replid,omitempty"`
	ReplID2      string `json:"replid2,omitempty"`
	Offset       int64  `json:"offset"`
	SecondOffset int64  `json:"second_offset,omitempty"`

	// Replica side.
	MasterAddr     string `json:"master_addr,omitempty"` // host:port it replicates from
	LinkUp         bool   `json:"link_up,omitempty"`
	SyncInProgress bool   `json:"sync_in_progress,omitempty"`
	Priority       int    `json:"priority,omitempty"` // replica-priority; 0 = never promote

	// Master side: the replicas it reports (INFO replication slaveN lines).
	Replicas []ReplicaEntry `json:"replicas,omitempty"`
}

// ReplicaEntry is one slaveN line of a master's INFO replication.
type ReplicaEntry struct {
	Addr   string `json:"addr"` // ip:port as the master sees it
	State  string `json:"state"`
	Offset int64  `json:"offset"`
	Lag    int64  `json:"lag"` // seconds since the replica's last ack
}

func (i Info) position() position {
	return position{ReplID: i.ReplID, ReplID2: i.ReplID2, Offset: i.Offset, SecondOffset: i.SecondOffset}
}

// noReplID is what Redis reports as master_replid2 when there is none.
const noReplID = "0000000000000000000000000000000000000000"

// parseInfo parses the text of an INFO reply into its key:value fields.
func parseInfo(text string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = v
		}
	}
	return m
}

// roleReply is the part of a ROLE reply the manager uses.
type roleReply struct {
	role       Role
	masterAddr string // replica: its master
	state      string // replica: connect, connecting, sync, connected, handshake
}

// parseRole interprets a ROLE reply as redigo returns it.
func parseRole(reply any) (roleReply, error) {
	vs, ok := reply.([]any)
	if !ok || len(vs) == 0 {
		return roleReply{}, fmt.Errorf("unexpected ROLE reply %T", reply)
	}
	name, err := str(vs[0])
	if err != nil {
		return roleReply{}, fmt.Errorf("ROLE: %w", err)
	}
	switch name {
	case "master":
		return roleReply{role: RoleMaster}, nil
	case "slave", "replica":
		if len(vs) < 4 {
			return roleReply{}, fmt.Errorf("short ROLE reply for a replica: %d elements", len(vs))
		}
		host, err := str(vs[1])
		if err != nil {
			return roleReply{}, fmt.Errorf("ROLE master host: %w", err)
		}
		port, err := str(vs[2])
		if err != nil {
			return roleReply{}, fmt.Errorf("ROLE master port: %w", err)
		}
		state, err := str(vs[3])
		if err != nil {
			return roleReply{}, fmt.Errorf("ROLE link state: %w", err)
		}
		return roleReply{role: RoleReplica, masterAddr: net.JoinHostPort(host, port), state: state}, nil
	default:
		return roleReply{}, fmt.Errorf("server is a %s, not a master or replica", name)
	}
}

func str(v any) (string, error) {
	switch v := v.(type) {
	case []byte:
		return string(v), nil
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	default:
		return "", fmt.Errorf("unexpected element %T", v)
	}
}

// buildInfo combines a ROLE reply and the text of INFO replication. ROLE is
// authoritative for the role and the master address; INFO gives lineage,
// offsets, priority and the replicas a master reports.
func buildInfo(role roleReply, replication string) (Info, error) {
	f := parseInfo(replication)
	if _, ok := f["role"]; !ok {
		return Info{}, errors.New("INFO replication has no role field")
	}
	in := Info{
		Role:         role.role,
		ReplID:       f["master_replid"],
		ReplID2:      f["master_replid2"],
		Offset:       atoi(f["master_repl_offset"], 0),
		SecondOffset: atoi(f["second_repl_offset"], -1),
	}
	if in.ReplID2 == noReplID {
		in.ReplID2 = ""
	}
	if in.SecondOffset < 0 {
		in.SecondOffset = 0
	}
	switch in.Role {
	case RoleReplica:
		in.MasterAddr = role.masterAddr
		in.LinkUp = role.state == "connected" && f["master_link_status"] == "up"
		in.SyncInProgress = f["master_sync_in_progress"] == "1"
		in.Priority = int(atoi(f["slave_priority"], 100))
	case RoleMaster:
		in.Priority = int(atoi(f["slave_priority"], 100))
		n := int(atoi(f["connected_slaves"], 0))
		for i := 0; i < n; i++ {
			line, ok := f["slave"+strconv.Itoa(i)]
			if !ok {
				continue
			}
			if e, ok := parseReplicaLine(line); ok {
				in.Replicas = append(in.Replicas, e)
			}
		}
	}
	return in, nil
}

// parseReplicaLine parses "ip=127.0.0.1,port=6380,state=online,offset=1,lag=0".
func parseReplicaLine(line string) (ReplicaEntry, bool) {
	var ip, port string
	var e ReplicaEntry
	for _, kv := range strings.Split(line, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "ip":
			ip = v
		case "port":
			port = v
		case "state":
			e.State = v
		case "offset":
			e.Offset = atoi(v, 0)
		case "lag":
			e.Lag = atoi(v, 0)
		}
	}
	if ip == "" || port == "" {
		return ReplicaEntry{}, false
	}
	e.Addr = net.JoinHostPort(ip, port)
	return e, true
}

func atoi(s string, def int64) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return def
	}
	return n
}
