package replication

import (
	"reflect"
	"testing"
)

const masterInfo = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n" +
	"slave0:ip=127.0.0.1,port=7002,state=online,offset=157,lag=0\r\n" +
	"slave1:ip=10.0.0.9,port=6379,state=wait_bgsave,offset=0,lag=1\r\n" +
	"master_failover_state:no-failover\r\n" +
	"master_replid:33a2d213c563385b948341e54d9c29f61c0a3e16\r\n" +
	"master_replid2:0000000000000000000000000000000000000000\r\n" +
	"master_repl_offset:157\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\n"

const replicaInfo = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7001\r\n" +
	"master_link_status:up\r\nmaster_last_io_seconds_ago:1\r\nmaster_sync_in_progress:0\r\n" +
	"slave_read_repl_offset:157\r\nslave_repl_offset:157\r\nslave_priority:10\r\nslave_read_only:1\r\n" +
	"replica_announced:1\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n" +
	"master_replid:3c317a1ea28370e83c9596bd7f689673b975f001\r\n" +
	"master_replid2:33a2d213c563385b948341e54d9c29f61c0a3e16\r\n" +
	"master_repl_offset:157\r\nsecond_repl_offset:158\r\n"

func TestParseRole(t *testing.T) {
	tests := []struct {
		name    string
		reply   any
		want    roleReply
		wantErr bool
	}{
		{"master", []any{[]byte("master"), int64(185), []any{[]any{[]byte("127.0.0.1"), []byte("7002"), []byte("185")}}},
			roleReply{role: RoleMaster}, false},
		{"replica", []any{[]byte("slave"), []byte("127.0.0.1"), int64(7001), []byte("connected"), int64(157)},
			roleReply{role: RoleReplica, masterAddr: "127.0.0.1:7001", state: "connected"}, false},
		{"replica of an IPv6 master", []any{[]byte("slave"), []byte("::1"), int64(7001), []byte("connect"), int64(-1)},
			roleReply{role: RoleReplica, masterAddr: "[::1]:7001", state: "connect"}, false},
		{"sentinel", []any{[]byte("sentinel"), []any{}}, roleReply{}, true},
		{"short", []any{[]byte("slave"), []byte("h")}, roleReply{}, true},
		{"not an array", []byte("master"), roleReply{}, true},
	}
	for _, tt := range tests {
		got, err := parseRole(tt.reply)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: parseRole = %+v, %v; want %+v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	got, err := buildInfo(roleReply{role: RoleMaster}, masterInfo)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{
		Role: RoleMaster, ReplID: "33a2d213c563385b948341e54d9c29f61c0a3e16", Offset: 157, Priority: 100,
		Replicas: []ReplicaEntry{
			{Addr: "127.0.0.1:7002", State: "online", Offset: 157},
			{Addr: "10.0.0.9:6379", State: "wait_bgsave", Lag: 1},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("master:\n got %+v\nwant %+v", got, want)
	}

	got, err = buildInfo(roleReply{role: RoleReplica, masterAddr: "127.0.0.1:7001", state: "connected"}, replicaInfo)
	if err != nil {
		t.Fatal(err)
	}
	want = Info{
		Role: RoleReplica, MasterAddr: "127.0.0.1:7001", LinkUp: true, Priority: 10,
		ReplID: "3c317a1ea28370e83c9596bd7f689673b975f001", ReplID2: "33a2d213c563385b948341e54d9c29f61c0a3e16",
		Offset: 157, SecondOffset: 158,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("replica:\n got %+v\nwant %+v", got, want)
	}

	// ROLE says the link is still being set up: not up, whatever INFO said a moment before.
	got, _ = buildInfo(roleReply{role: RoleReplica, masterAddr: "127.0.0.1:7001", state: "sync"}, replicaInfo)
	if got.LinkUp {
		t.Error("replica in sync reported with link up")
	}

	if _, err := buildInfo(roleReply{role: RoleMaster}, "# Replication\r\n"); err == nil {
		t.Error("INFO without role accepted")
	}
}
