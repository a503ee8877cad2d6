package vip

import (
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestUDPTransport: the Linux transport's contract, on 127.0.0.1.
func TestUDPTransport(t *testing.T) {
	tr, err := listenUDP(netip.MustParseAddrPort("127.0.0.1:0"), nil, DefaultRecvBuffer)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	t.Logf("receive buffer: asked for %d bytes, the kernel reports %d", DefaultRecvBuffer, tr.RecvBuffer())
	if tr.RecvBuffer() < 2*212992 { // more than the usual net.core.rmem_default
		t.Errorf("receive buffer %d", tr.RecvBuffer())
	}
	self := tr.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(self))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	from := c.LocalAddr().(*net.UDPAddr).AddrPort()

	ps := newDatagrams(rxBatch, rxBufLen)
	if k, err := tr.Read(ps); k != 0 || err != nil {
		t.Fatalf("Read of an empty queue: %d, %v", k, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- tr.Wait() }()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v with nothing queued", err)
	case <-time.After(20 * time.Millisecond):
	}
	// A zero-length datagram first: it is queued, though it has no bytes.
	sent := time.Now()
	c.Write(nil)
	c.Write([]byte("hello"))
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("Wait missed a queued datagram")
	}
	time.Sleep(10 * time.Millisecond) // the second one
	k, err := tr.Read(ps)
	if err != nil || k != 2 {
		t.Fatalf("Read: %d, %v", k, err)
	}
	if ps[0].n != 0 || string(ps[1].buf[:ps[1].n]) != "hello" || ps[1].from != from {
		t.Fatalf("read %d bytes, then %q from %v (want from %v)", ps[0].n, ps[1].buf[:ps[1].n], ps[1].from, from)
	}
	if d := ps[1].at.Sub(sent); d < -time.Millisecond || d > time.Second {
		t.Fatalf("received at %v, %v after it was sent", ps[1].at, d)
	}

	// Overflow: a small buffer, filled past it; the drops are counted.
	small, err := listenUDP(netip.MustParseAddrPort("127.0.0.1:0"), nil, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	c2, _ := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(small.conn.LocalAddr().(*net.UDPAddr).AddrPort()))
	defer c2.Close()
	for range 200 {
		c2.Write([]byte("flood"))
	}
	read := 0
	for {
		k, err := small.Read(ps)
		if err != nil {
			t.Fatal(err)
		}
		read += k
		if k < len(ps) {
			break
		}
	}
	if d := small.Dropped(); int(d)+read != 200 || d == 0 {
		t.Fatalf("read %d, dropped %d of 200 (buffer %d bytes)", read, d, small.RecvBuffer())
	}

	tr.Close()
	if err := tr.Wait(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Wait after Close: %v", err)
	}
	if _, err := tr.Read(ps); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
}

// BenchmarkReadBatch: what one datagram of a flood costs the node's loop,
// read from a real socket in batches, by kind: from a stranger (dropped by
// address), or with the peer's address and port and a wrong MAC (a forged
// advert: the HMAC is computed). Compare BenchmarkReceiver.
func BenchmarkReadBatch(b *testing.B) {
	fa := sampleAdvert()
	fa.Time = time.Now()
	forged, _ := Marshal(fa, []byte("wrong-key-wrong-key-wrong"))
	junk := make([]byte, 100)
	rand.Read(junk)
	for _, bc := range []struct {
		name      string
		fromPeer  bool
		datagram  []byte
		wantCount Reason
	}{
		{"stranger", false, forged, ReasonNotPeer},
		{"peer-junk", true, junk, ReasonNotAdvert},
		{"peer-forged", true, forged, ReasonBadMAC},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr, err := listenUDP(netip.MustParseAddrPort("127.0.0.1:0"), nil, DefaultRecvBuffer)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			dst := tr.conn.LocalAddr().(*net.UDPAddr).AddrPort()
			peer, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
			other, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
			defer peer.Close()
			defer other.Close()
			cfg := Config{Peers: []netip.AddrPort{peer.LocalAddr().(*net.UDPAddr).AddrPort()},
				Address: netip.MustParseAddr("127.0.0.1"), Secret: testKey}.withDefaults()
			n := newNode(cfg, nil)
			n.d = &deps{tr: tr}
			n.st = NewState(cfg.params()) // Init: adverts would change nothing
			src := other
			if bc.fromPeer {
				src = peer
			}
			// Fill the queue 100 batches at a time: the timer stops and
			// starts once per fill, not per batch.
			read, queued := 0, 0
			for b.Loop() {
				if queued == 0 {
					b.StopTimer()
					for range 100 * rxBatch {
						src.WriteToUDPAddrPort(bc.datagram, dst)
					}
					queued = 100 * rxBatch
					b.StartTimer()
				}
				n.readBatch()
				read += rxBatch
				queued -= rxBatch
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(read), "ns/datagram")
			if got := n.Stats().Rejected[bc.wantCount]; int(got) != read {
				b.Fatalf("counted %d %v of %d", got, bc.wantCount, read)
			}
		})
	}
}
