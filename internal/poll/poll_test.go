package poll

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	start := time.Now()
	n := 0
	at := Until(t, time.Second, "the third call", func() bool { n++; return n == 3 })
	if n != 3 || at.Before(start.Add(2*Interval)) {
		t.Errorf("Until returned after %d calls, %v after the start", n, at.Sub(start))
	}
}

// fatalT records Fatalf instead of ending the test.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func (f *fatalT) Helper() {}

func TestUntilTimesOut(t *testing.T) {
	ft := &fatalT{TB: t}
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != ft {
				panic(r)
			}
		}()
		Until(ft, 50*time.Millisecond, "never", func() bool { return false })
	}()
	if ft.msg != "not within 50ms: never" {
		t.Errorf("failure message %q", ft.msg)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Errorf("gave up after %v, want about 50ms", d)
	}
}

func TestUntilNil(t *testing.T) {
	n := 0
	UntilNil(t, time.Second, "the third call", func() error {
		n++
		if n < 3 {
			return fmt.Errorf("call %d", n)
		}
		return nil
	})
	if n != 3 {
		t.Errorf("UntilNil returned after %d calls", n)
	}

	ft := &fatalT{TB: t}
	func() {
		defer func() {
			if r := recover(); r != ft {
				panic(r)
			}
		}()
		UntilNil(ft, 50*time.Millisecond, "never", func() error { return errors.New("2 clients") })
	}()
	if ft.msg != "not within 50ms: never (last: 2 clients)" {
		t.Errorf("failure message %q", ft.msg)
	}
}
