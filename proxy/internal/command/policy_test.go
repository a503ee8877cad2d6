package command

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// The policy's pure parts: the glob CONFIG GET patterns are matched with,
// and the redaction of a CONFIG GET reply. (policy.txt holds the
// decisions.)

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "requirepass", true},
		{"*", "", false}, // stringmatchlen needs a byte to match; KEYS * special-cases it
		{"", "", true},
		{"", "a", false},
		{"requirepass", "RequirePass", true},
		{"REQUIRE*", "requirepass", true},
		{"*pass", "requirepass", true},
		{"*pass*", "tls-key-file-pass", true},
		{"?equirepass", "requirepass", true},
		{"??quirepass", "requirepass", true},
		{"?quirepass", "requirepass", false},
		{"[rq]equirepass", "requirepass", true},
		{"[^r]equirepass", "requirepass", false},
		{"[a-z]equirepass", "requirepass", true},
		{"[z-a]equirepass", "requirepass", true}, // a reversed range is a range
		{"[A-Z]equirepass", "requirepass", true}, // without regard to case
		{"[\\]]x", "]x", true},
		{"\\*", "*", true},
		{"\\*", "a", false},
		{"tls-*-pass", "tls-key-file-pass", true},
		{"tls-*-pass", "tls-client-key-file-pass", true},
		{"master*", "masterauth", true},
		{"master*", "maxmemory", false},
		{"*a*b*c*", "aXbYc", true},
		{"*a*b*c*", "aXcYb", false},
		{"[abc", "a", true}, // an unclosed class ends with the pattern
		{"a[bc", "ab", true},
		{"a**", "a", true},
		{"a*", "", false},
	} {
		if got := globMatch([]byte(tc.pattern), []byte(tc.s)); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestGlobMatchesLikeRedis: CONFIG GET on a real Redis answers with the
// parameters a pattern matches; for every secret parameter, the proxy's
// glob agrees on random patterns.
func TestGlobMatchesLikeRedis(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "pw", "--masterauth", "ma", "--masteruser", "mu")
	c := srv.Dial(redis.DialPassword("pw"))
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"*", "?", "[a-s]", "[^x]", "pass", "re", "master", "tls-", "-", "a", "\\*", "[rm]", "user", "auth", "key", "file", "client"}
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		var b strings.Builder
		for range 1 + r.IntN(4) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		pattern := b.String()
		reply, err := redis.Strings(c.Do("CONFIG", "GET", pattern))
		if err != nil {
			t.Fatalf("CONFIG GET %q: %v", pattern, err)
		}
		got := map[string]bool{}
		for i := 0; i < len(reply); i += 2 {
			got[reply[i]] = true
		}
		for _, s := range secretParams {
			if m := globMatch([]byte(pattern), []byte(s)); m != got[s] {
				t.Fatalf("pattern %q, parameter %s: the proxy's glob says %v, Redis %v", pattern, s, m, got[s])
			}
		}
	}
}

func TestRedactSecrets(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"resp2", "*4\r\n$11\r\nrequirepass\r\n$2\r\npw\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
			"*4\r\n$11\r\nrequirepass\r\n$10\r\n(redacted)\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"},
		{"resp3 map", "%2\r\n$10\r\nmasterauth\r\n$2\r\nma\r\n$10\r\nmasteruser\r\n$2\r\nmu\r\n",
			"%2\r\n$10\r\nmasterauth\r\n$10\r\n(redacted)\r\n$10\r\nmasteruser\r\n$10\r\n(redacted)\r\n"},
		{"not set: nothing to hide", "*2\r\n$11\r\nrequirepass\r\n$0\r\n\r\n", "*2\r\n$11\r\nrequirepass\r\n$0\r\n\r\n"},
		{"no secret", "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n", "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"},
		{"empty", "*0\r\n", "*0\r\n"},
		{"an error", "-ERR x\r\n", "-ERR x\r\n"},
		{"name's case", "*2\r\n$11\r\nRequirePass\r\n$1\r\nx\r\n", "*2\r\n$11\r\nRequirePass\r\n$10\r\n(redacted)\r\n"},
		{"malformed: as it is", "*2\r\n$11\r\nrequirepass\r\n$5\r\nab\r\n", "*2\r\n$11\r\nrequirepass\r\n$5\r\nab\r\n"},
		{"trailing bytes: as it is", "*2\r\n$11\r\nrequirepass\r\n$1\r\nx\r\n+OK\r\n", "*2\r\n$11\r\nrequirepass\r\n$1\r\nx\r\n+OK\r\n"},
	} {
		in := []byte(tc.in)
		if got := RedactSecrets(in); string(got) != tc.want {
			t.Errorf("%s: RedactSecrets(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
		if string(in) != tc.in {
			t.Errorf("%s: the reply given changed", tc.name)
		}
	}
}
