package proxy

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/config"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// Every name Reloadable accepts is a field of Config, and Reload copies
// exactly those: a field added to the list but misspelt would be silently
// ignored by the reflection in Reload.
func TestReloadableNamesConfigFields(t *testing.T) {
	ct := reflect.TypeOf(Config{})
	for _, f := range reloadable {
		if _, ok := ct.FieldByName(f); !ok {
			t.Errorf("reloadable names %q, which is not a field of Config", f)
		}
	}
	for _, f := range []string{"PoolSize", "EventLoops", "BackendPassword", "MaxInflightMemory", "BusyPoll"} {
		if Reloadable(f) {
			t.Errorf("Reloadable(%q) = true: New built something from it that Reload does not rebuild", f)
		}
	}
}

// A reload changes the client password and the read policy of a running
// proxy: a client authenticated before keeps working, a new client needs
// the new password (the old one is refused), and reads go to the replica
// from then on. An invalid configuration changes nothing.
func TestReloadPasswordAndReadPolicy(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t)
	replica.ReplicaOf(master)
	cfg := Config{ClientPassword: "old-password"}
	tp := startProxy(t, cfg, master.Addr, replica.Addr)

	before := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, before.Do("AUTH", "old-password"), "OK")
	resptest.Expect(t, before.Do("SET", "reload:k", "v"), "OK")
	expectReplicated(t, "reload:k", replica)
	gets := stCmdStat(t, replica, "get")
	resptest.Expect(t, before.Do("GET", "reload:k"), `"v"`)
	if n := stCmdStat(t, replica, "get"); n != gets {
		t.Fatalf("a GET reached the replica with ReadFrom master (%d GETs, was %d)", n, gets)
	}

	// Invalid: the operator password may not be the client password.
	bad := cfg
	bad.ClientPassword, bad.OperatorPassword, bad.ReadFrom = "same", "same", ReadFromReplicas
	changed, err := tp.Reload(bad)
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "OperatorPassword" || changed != nil {
		t.Fatalf("Reload(invalid) = %v, %v; want a FieldError for OperatorPassword and nothing changed", changed, err)
	}
	fresh := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, fresh.Do("AUTH", "same"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	resptest.Expect(t, fresh.Do("AUTH", "old-password"), "OK")
	resptest.Expect(t, fresh.Do("GET", "reload:k"), `"v"`)
	if n := stCmdStat(t, replica, "get"); n != gets {
		t.Fatalf("the refused reload changed the read policy: a GET reached the replica")
	}

	start := tp.cfg()
	next := cfg
	next.ClientPassword, next.ReadFrom, next.HoldTimeout, next.PoolSize = "new-password", ReadFromReplicas, 3*time.Second, 7
	changed, err = tp.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ClientPassword", "ReadFrom", "HoldTimeout"}; !reflect.DeepEqual(changed, want) {
		t.Errorf("Reload changed %v, want %v", changed, want)
	}
	// Nothing else is other than New made it, before or after (EventLoops
	// and PoolSize, say, which size the pools made from then on).
	made := cfg
	if made.EventLoops == 0 {
		made.EventLoops = *eventLoops // as serveProxy does
	}
	made = made.withDefaults()
	for _, c := range []struct {
		when string
		cfg  *Config
	}{{"before the reload", start}, {"after the reload", tp.cfg()}} {
		want, got := reflect.ValueOf(made), reflect.ValueOf(*c.cfg)
		for i := 0; i < want.NumField(); i++ {
			f := want.Type().Field(i)
			if Reloadable(f.Name) || f.Type.Kind() == reflect.Func || f.Name == "Logger" {
				continue
			}
			if !reflect.DeepEqual(want.Field(i).Interface(), got.Field(i).Interface()) {
				t.Errorf("%s: %s is %v, New made it %v", c.when, f.Name, got.Field(i).Interface(), want.Field(i).Interface())
			}
		}
	}
	// The client authenticated before the reload keeps its session.
	resptest.Expect(t, before.Do("GET", "reload:k"), `"v"`)
	old := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, old.Do("AUTH", "old-password"), "(error) WRONGPASS invalid username-password pair or user is disabled.")
	resptest.Expect(t, old.Do("GET", "reload:k"), "(error) NOAUTH Authentication required.")
	c := resptest.Dial(t, tp.Addr)
	resptest.Expect(t, c.Do("AUTH", "new-password"), "OK")
	for i := 0; i < 10; i++ {
		resptest.Expect(t, c.Do("GET", "reload:k"), `"v"`)
	}
	if n := stCmdStat(t, replica, "get"); n < gets+10 {
		t.Errorf("the replica ran %d GETs after ReadFrom became replicas, want at least 10", n-gets)
	}

	// And back to the master.
	changed, err = tp.Reload(cfg)
	if err != nil || len(changed) != 3 {
		t.Fatalf("Reload back = %v, %v", changed, err)
	}
	gets = stCmdStat(t, replica, "get")
	resptest.Expect(t, c.Do("GET", "reload:k"), `"v"`)
	if n := stCmdStat(t, replica, "get"); n != gets {
		t.Errorf("a GET reached the replica after ReadFrom went back to master")
	}
}
