// Command testprogress turns `go test -json` into progress an operator can
// follow: one line per top-level test as it ends and one per package, as
// `go test` prints them, while the output of everything that passes is
// dropped and the whole output of what fails is printed (a failed test
// with its subtests, and a failed package's own output: a build error, a
// panic, a timeout's goroutine dump, the tests it left unfinished). It
// ends with one line, "tests: N passed, N failed, N skipped", counting
// top-level tests. scripts/test.sh pipes the layers through it:
//
//	go test -json ./... | go run ./internal/testprogress
//
// It exits 0 whatever the tests did (go test's own exit code says that)
// and 1 only if it cannot read its input.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// event is one line of test2json (go doc test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
	Elapsed    float64
}

type pkgState struct {
	own   strings.Builder             // output outside any test
	tests map[string]*strings.Builder // top-level test -> its output and its subtests'
	order []string                    // top-level tests in the order they started
}

type progress struct {
	w                    io.Writer
	pkgs                 map[string]*pkgState
	passed, failed, skip int
	width                int
}

func main() {
	p := &progress{w: os.Stdout, pkgs: map[string]*pkgState{}}
	if err := p.run(os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "testprogress: %v\n", err)
		os.Exit(1)
	}
}

func (p *progress) run(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(p.w, "%s\n", line) // not an event: go's own message
			continue
		}
		p.event(e)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fmt.Fprintf(p.w, "tests: %d passed, %d failed, %d skipped\n", p.passed, p.failed, p.skip)
	return nil
}

func (p *progress) pkg(name string) *pkgState {
	ps := p.pkgs[name]
	if ps == nil {
		ps = &pkgState{tests: map[string]*strings.Builder{}}
		p.pkgs[name] = ps
	}
	return ps
}

func (p *progress) event(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(p.w, e.Output) // a compile error: at once, whole
		return
	case "build-fail":
		return
	}
	ps := p.pkg(e.Package)
	top, _, sub := strings.Cut(e.Test, "/")
	if e.Test == "" {
		switch e.Action {
		case "output":
			ps.own.WriteString(e.Output)
		case "pass", "fail", "skip":
			p.packageDone(e, ps)
		}
		return
	}
	buf := ps.tests[top]
	if buf == nil {
		buf = &strings.Builder{}
		ps.tests[top] = buf
		ps.order = append(ps.order, top)
	}
	switch e.Action {
	case "output":
		buf.WriteString(e.Output)
	case "pass", "fail", "skip":
		if sub {
			return // reported with its top-level test
		}
		p.testDone(e, ps, buf)
		delete(ps.tests, top)
	}
}

func (p *progress) testDone(e event, ps *pkgState, out *strings.Builder) {
	d := time.Duration(e.Elapsed * float64(time.Second)).Round(10 * time.Millisecond)
	switch e.Action {
	case "pass":
		p.passed++
		fmt.Fprintf(p.w, "    PASS %s %s (%v)\n", short(e.Package), e.Test, d)
	case "skip":
		p.skip++
		reason := ""
		for _, l := range strings.Split(out.String(), "\n") {
			if t := strings.TrimSpace(l); strings.Contains(t, ".go:") && reason == "" {
				reason = ": " + t // the t.Skip message
			}
		}
		fmt.Fprintf(p.w, "    SKIP %s %s%s\n", short(e.Package), e.Test, reason)
	case "fail":
		p.failed++
		fmt.Fprintf(p.w, "    FAIL %s %s (%v)\n", short(e.Package), e.Test, d)
		fmt.Fprint(p.w, out.String())
	}
}

func (p *progress) packageDone(e event, ps *pkgState) {
	switch e.Action {
	case "pass":
		fmt.Fprintf(p.w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
	case "skip":
		fmt.Fprintf(p.w, "?   \t%s\t[no test files]\n", e.Package)
	case "fail":
		// What the package printed outside tests, and the tests it did
		// not finish (a panic or a timeout ends the binary mid-test).
		for _, name := range ps.order {
			if out, ok := ps.tests[name]; ok {
				fmt.Fprintf(p.w, "    (did not finish) %s %s\n", short(e.Package), name)
				fmt.Fprint(p.w, out.String())
			}
		}
		fmt.Fprint(p.w, ps.own.String())
		fmt.Fprintf(p.w, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
	}
	delete(p.pkgs, e.Package)
}

// short drops the module path from a package's import path.
func short(pkg string) string {
	return strings.TrimPrefix(pkg, "github.com/redis-proxy/redis-proxy/")
}
