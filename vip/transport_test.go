package vip

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestSourceFilter(t *testing.T) {
	peers, err := ParsePeers("10.0.0.2, 10.0.0.3:5406, fd00::2")
	if err != nil {
		t.Fatal(err)
	}
	f := newSourceFilter(peers)
	for _, tc := range []struct {
		from string
		want bool
	}{
		{"10.0.0.2:5405", true},
		{"10.0.0.2:40000", true}, // no port named: any port
		{"[::ffff:10.0.0.2]:5405", true},
		{"10.0.0.3:5406", true},
		{"10.0.0.3:5405", false}, // port named: that port only
		{"[fd00::2]:1", true},
		{"10.0.0.4:5405", false},
		{"10.0.0.1:5405", false},
		{"[fd00::3]:5405", false},
		{"0.0.0.0:0", false},
	} {
		if got := f.admits(netip.MustParseAddrPort(tc.from)); got != tc.want {
			t.Errorf("admits(%s) = %v, want %v", tc.from, got, tc.want)
		}
	}
	if (sourceFilter{}).admits(netip.MustParseAddrPort("10.0.0.2:5405")) {
		t.Error("an empty filter admits")
	}
}

// TestNewFilter: New filters on the peers as configured, a port only where
// one was named (Config.Port fills in the others for sending).
func TestNewFilter(t *testing.T) {
	peers, _ := ParsePeers("10.0.0.2,10.0.0.3:5406")
	n, err := New(Config{Peers: peers, Address: netip.MustParseAddr("10.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]bool{"10.0.0.2:1234": true, "10.0.0.3:5406": true, "10.0.0.3:5405": false, "10.0.0.1:5405": false} {
		if got := n.filter.admits(netip.MustParseAddrPort(from)); got != want {
			t.Errorf("admits(%s) = %v, want %v", from, got, want)
		}
	}
	if want := netip.MustParseAddrPort("10.0.0.2:5405"); n.cfg.Peers[0] != want {
		t.Errorf("sends to %v, want %v", n.cfg.Peers[0], want)
	}
}

func TestMemQueue(t *testing.T) {
	q := newMemQueue(3)
	from := netip.MustParseAddrPort("10.0.0.2:5405")
	ps := newDatagrams(2, 8)
	if k, err := q.Read(ps); k != 0 || err != nil {
		t.Fatalf("empty Read: %d, %v", k, err)
	}
	at := time.Now()
	for _, s := range []string{"a", "bb", "ccc", "dddd"} {
		q.push([]byte(s), from, at)
	}
	if err := q.Wait(); err != nil {
		t.Fatal(err)
	}
	if k, _ := q.Read(ps); k != 2 || string(ps[0].buf[:ps[0].n]) != "a" || string(ps[1].buf[:ps[1].n]) != "bb" || ps[1].from != from || !ps[1].at.Equal(at) {
		t.Fatalf("Read %d: %q %q", k, ps[0].buf[:ps[0].n], ps[1].buf[:ps[1].n])
	}
	if k, _ := q.Read(ps); k != 1 || string(ps[0].buf[:ps[0].n]) != "ccc" {
		t.Fatalf("second Read %d: %q", k, ps[0].buf[:ps[0].n])
	}
	if q.Dropped() != 1 {
		t.Fatalf("dropped %d, want the one pushed to a full queue", q.Dropped())
	}
	done := make(chan error)
	go func() { done <- q.Wait() }()
	q.close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Wait after close: %v", err)
	}
	if _, err := q.Read(ps); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after close: %v", err)
	}
}
