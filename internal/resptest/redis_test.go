package resptest

import (
	"testing"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// Every type a real Redis sends, through DEBUG PROTOCOL, in RESP2 and
// RESP3: what this client reads is what the server wrote.
func TestRealRedisTypes(t *testing.T) {
	r := redistest.Start(t, "--enable-debug-command", "yes")
	c := Dial(t, r.Addr)
	resp2 := map[string]string{
		"string":   `"Hello World"`,
		"integer":  "12345",
		"double":   `"3.141"`,
		"bignum":   `"1234567999999999999999999999999999999"`,
		"null":     "<nil>",
		"array":    "[0,1,2]",
		"set":      "[0,1,2]",
		"map":      "[0,0,1,1,2,0]",
		"attrib":   `"Some real reply following the attribute"`,
		"verbatim": `"This is a verbatim\nstring"`,
		"true":     "1",
		"false":    "0",
	}
	resp3 := map[string]string{
		"string":   `"Hello World"`,
		"integer":  "12345",
		"double":   "3.141",
		"bignum":   "1234567999999999999999999999999999999",
		"null":     "<nil>",
		"array":    "[0,1,2]",
		"set":      "[0,1,2]",
		"map":      "[0,f,1,t,2,f]",
		"attrib":   `|["key-popularity",["key:123",90]] "Some real reply following the attribute"`,
		"verbatim": `"txt:This is a verbatim\nstring"`,
		"true":     "t",
		"false":    "f",
	}
	for _, p := range []struct {
		proto string
		want  map[string]string
	}{{"2", resp2}, {"3", resp3}} {
		proto, want := p.proto, p.want
		if v := c.Do("HELLO", proto); v.IsError() {
			t.Fatalf("HELLO %s: %s", proto, v)
		}
		for typ, w := range want {
			v := c.Do("DEBUG", "PROTOCOL", typ)
			if v.String() != w {
				t.Errorf("RESP%s DEBUG PROTOCOL %s = %s (raw %q), want %s", proto, typ, v, v.Raw, w)
			}
			if p, err := Parse(v.Raw); err != nil || p.String() != v.String() {
				t.Errorf("RESP%s DEBUG PROTOCOL %s: its raw bytes parse as %s, %v", proto, typ, p, err)
			}
		}
	}
	// A push, in RESP3 (the connection's protocol now): the invalidation
	// of a tracked key.
	other := Dial(t, r.Addr)
	Expect(t, c.Do("CLIENT", "TRACKING", "ON"), "OK")
	c.Do("GET", "tracked")
	Expect(t, other.Do("SET", "tracked", "1"), "OK")
	if v := c.Read(); v.Type != '>' || v.String() != `["invalidate",["tracked"]]` {
		t.Errorf("invalidation push: %s (raw %q)", v, v.Raw)
	}
}
