package main

import (
	"strings"
	"testing"
)

// What passes is one line; what fails is shown whole: the failed test with
// its subtests' output, and a failed package's own output and unfinished
// tests.
func TestProgress(t *testing.T) {
	in := `{"Action":"start","Package":"m/a"}
{"Action":"run","Package":"m/a","Test":"TestOK"}
{"Action":"output","Package":"m/a","Test":"TestOK","Output":"quiet\n"}
{"Action":"pass","Package":"m/a","Test":"TestOK","Elapsed":1.5}
{"Action":"run","Package":"m/a","Test":"TestBad"}
{"Action":"output","Package":"m/a","Test":"TestBad/sub","Output":"    bad_test.go:9: wanted 1\n"}
{"Action":"fail","Package":"m/a","Test":"TestBad/sub","Elapsed":0}
{"Action":"fail","Package":"m/a","Test":"TestBad","Elapsed":0.01}
{"Action":"run","Package":"m/a","Test":"TestSkip"}
{"Action":"output","Package":"m/a","Test":"TestSkip","Output":"    x_test.go:3: no redis-server\n"}
{"Action":"skip","Package":"m/a","Test":"TestSkip","Elapsed":0}
{"Action":"output","Package":"m/a","Output":"FAIL\n"}
{"Action":"fail","Package":"m/a","Elapsed":2}
{"Action":"run","Package":"m/b","Test":"TestHang"}
{"Action":"output","Package":"m/b","Test":"TestHang","Output":"still going\n"}
{"Action":"output","Package":"m/b","Output":"panic: test timed out\n"}
{"Action":"fail","Package":"m/b","Elapsed":600}
{"ImportPath":"m/c","Action":"build-output","Output":"c.go:1: syntax error\n"}
not json: go vet says hi
{"Action":"skip","Package":"m/d"}
`
	var out strings.Builder
	p := &progress{w: &out, pkgs: map[string]*pkgState{}}
	if err := p.run(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	want := `    PASS m/a TestOK (1.5s)
    FAIL m/a TestBad (10ms)
    bad_test.go:9: wanted 1
    SKIP m/a TestSkip: x_test.go:3: no redis-server
FAIL
FAIL	m/a	2.000s
    (did not finish) m/b TestHang
still going
panic: test timed out
FAIL	m/b	600.000s
c.go:1: syntax error
not json: go vet says hi
?   	m/d	[no test files]
tests: 1 passed, 1 failed, 1 skipped
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
