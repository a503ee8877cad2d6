package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redis-proxy/redis-proxy/vip"
)

func TestMembershipChanges(t *testing.T) {
	m := membership{Version: 4, Servers: []string{"a:1", "b:1"}}
	tests := []struct {
		name string
		op   func(membership) (membership, error)
		want membership
		code int // 0: accepted
	}{
		{"add", func(m membership) (membership, error) { return withServer(m, "c:1") }, membership{5, []string{"a:1", "b:1", "c:1"}}, 0},
		{"add a member", func(m membership) (membership, error) { return withServer(m, "b:1") }, m, http.StatusConflict},
		{"add without a port", func(m membership) (membership, error) { return withServer(m, "c") }, m, http.StatusBadRequest},
		{"add port 0", func(m membership) (membership, error) { return withServer(m, "c:0") }, m, http.StatusBadRequest},
		{"add with a comma", func(m membership) (membership, error) { return withServer(m, "c:1,d:1") }, m, http.StatusBadRequest},
		{"add past the heartbeat's room", func(m membership) (membership, error) {
			return withServer(m, strings.Repeat("h", vip.MaxMembershipLen)+":1")
		}, m, http.StatusBadRequest},
		{"remove", func(m membership) (membership, error) { return withoutServer(m, "a:1") }, membership{5, []string{"b:1"}}, 0},
		{"remove a stranger", func(m membership) (membership, error) { return withoutServer(m, "c:1") }, m, http.StatusNotFound},
		{"remove the last", func(m membership) (membership, error) {
			return withoutServer(membership{1, []string{"a:1"}}, "a:1")
		}, membership{1, []string{"a:1"}}, http.StatusConflict},
	}
	for _, tt := range tests {
		before := membership{Version: m.Version, Servers: slices.Clone(m.Servers)}
		got, err := tt.op(m)
		var me *membersError
		switch {
		case tt.code == 0 && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.code != 0 && (!errors.As(err, &me) || me.code != tt.code):
			t.Errorf("%s: err %v, want status %d", tt.name, err, tt.code)
		case !got.equal(tt.want):
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
		if !m.equal(before) {
			t.Fatalf("%s changed its input", tt.name)
		}
	}
}

// TestShouldAdopt: the pair's rule. A higher version wins; at the same
// version the active proxy keeps its list and the other takes it (as does
// a proxy taking over from the one active until then); version 0 (the
// environment) never travels.
func TestShouldAdopt(t *testing.T) {
	v := func(n uint64, s ...string) membership { return membership{Version: n, Servers: s} }
	tests := []struct {
		name      string
		own, peer membership
		keep      bool
		want      bool
	}{
		{"newer, backup", v(3, "a", "b"), v(4, "a", "b", "c"), false, true},
		{"newer, holder", v(3, "a", "b"), v(4, "a", "b", "c"), true, true},
		{"older: kept (the backup's change the holder never heard)", v(5, "a", "c"), v(4, "a", "b"), false, false},
		{"older, holder", v(5, "a"), v(4, "a", "b"), true, false},
		{"same", v(4, "a", "b"), v(4, "a", "b"), false, false},
		{"same version, other list: the backup follows the holder", v(4, "a", "c"), v(4, "a", "b"), false, true},
		{"same version, other list: the holder keeps its own", v(4, "a", "c"), v(4, "a", "b"), true, false},
		{"same version, other list: taking over from the peer (keep false)", v(4, "a", "c"), v(4, "a", "b"), false, true},
		{"peer never changed", v(0, "a"), v(0, "b"), false, false},
		{"peer never changed, ours did", v(2, "a"), v(0, "b"), false, false},
	}
	for _, tt := range tests {
		if got := shouldAdopt(tt.own, tt.peer, tt.keep); got != tt.want {
			t.Errorf("%s: shouldAdopt = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := prepareStateDir(dir); err != nil {
		t.Fatalf("prepareStateDir creates the directory: %v", err)
	}
	if _, _, ok, err := loadMembership(dir); ok || err != nil {
		t.Fatalf("no file yet: ok %v, err %v", ok, err)
	}
	m := membership{Version: 7, Servers: []string{"10.0.0.1:6379", "redis-c:6379"}}
	if err := saveMembership(dir, m, "added redis-c:6379"); err != nil {
		t.Fatal(err)
	}
	got, rec, ok, err := loadMembership(dir)
	if err != nil || !ok || !got.equal(m) || rec.Change != "added redis-c:6379" || rec.UpdatedAt.IsZero() {
		t.Fatalf("load after save: %+v %+v ok=%v err=%v", got, rec, ok, err)
	}
	fi, err := os.Stat(filepath.Join(dir, membershipFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v", err, fi.Mode())
	}
	// Saved again: replaced whole, no temporary file left behind.
	m2 := membership{Version: 8, Servers: []string{"10.0.0.1:6379"}}
	if err := saveMembership(dir, m2, "removed redis-c:6379"); err != nil {
		t.Fatal(err)
	}
	if got, _, _, _ := loadMembership(dir); !got.equal(m2) {
		t.Fatalf("after the second save: %+v", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("files left in the state directory: %v", ents)
	}

	for name, content := range map[string]string{
		"not JSON":   "servers: a",
		"version 0":  `{"version":0,"servers":["a:1"]}`,
		"no servers": `{"version":3,"servers":[]}`,
		"bad server": `{"version":3,"servers":["a"]}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, membershipFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := loadMembership(dir); err == nil || !strings.Contains(err.Error(), "move it away") {
			t.Errorf("%s: err %v, want a refusal that says what to do", name, err)
		}
	}

	if os.Geteuid() != 0 { // root writes anywhere
		ro := t.TempDir()
		os.Chmod(ro, 0o500)
		if err := prepareStateDir(ro); err == nil || !strings.Contains(err.Error(), "REDIS_PROXY_STATE_DIR") {
			t.Errorf("read-only state dir: %v", err)
		}
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if err := prepareStateDir(file); err == nil || !strings.Contains(err.Error(), "REDIS_PROXY_STATE_DIR") {
		t.Errorf("a file as state dir: %v", err)
	}
}

// TestServersSubcommand: what `redis-proxy servers` sends, with the token.
func TestServersSubcommand(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.RawQuery+" "+r.Header.Get("Authorization"))
		io.WriteString(w, `{"version":1}`+"\n")
	}))
	defer srv.Close()
	a := adminEnv{Listen: srv.Listener.Addr().String(), Token: testToken}
	var out, errb bytes.Buffer
	for _, args := range [][]string{{}, {"add", "10.0.0.3:6379"}, {"remove", "[fd00::3]:6379"}} {
		if rc := serversCmd(a, args, &out, &errb); rc != 0 {
			t.Fatalf("servers %v: exit %d: %s", args, rc, errb.String())
		}
	}
	want := []string{
		"GET /servers? Bearer " + testToken,
		"POST /servers?addr=10.0.0.3%3A6379 Bearer " + testToken,
		"DELETE /servers/%5Bfd00::3%5D:6379? Bearer " + testToken,
	}
	if !slices.Equal(got, want) {
		t.Errorf("requests\n got %q\nwant %q", got, want)
	}
	for _, args := range [][]string{{"add"}, {"remove"}, {"drop", "a:1"}, {"add", "a:1", "b:1"}} {
		errb.Reset()
		if rc := serversCmd(a, args, &out, &errb); rc != 2 || !strings.Contains(errb.String(), "usage: redis-proxy servers") {
			t.Errorf("servers %v: exit %d, stderr %q; want 2 and the usage", args, rc, errb.String())
		}
	}
}
