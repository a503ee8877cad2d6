package vip

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef-test-key")

func sampleAdvert() Advert {
	return Advert{
		Priority: 150, Healthy: true, Role: Master, Interval: 200 * time.Millisecond,
		Sender: addr2, BootID: 0xdeadbeefcafe, Seq: 42, Time: time.Unix(0, 1767225600123456789),
		Payload: Payload{Epoch: 7, Master: "10.9.0.2:6379"},
	}
}

func TestAdvertRoundTrip(t *testing.T) {
	for _, a := range []Advert{
		sampleAdvert(),
		{Priority: 0, Healthy: false, Role: Fault, Interval: time.Millisecond, Sender: netip.MustParseAddr("fd00::1"), Time: time.Unix(0, 0)},
		{Priority: 254, Healthy: true, Role: Init, Interval: 65535 * time.Millisecond, Sender: addr1, Seq: ^uint64(0), BootID: ^uint64(0),
			Time: time.Unix(0, -1), Payload: Payload{Epoch: ^uint64(0), Master: strings.Repeat("m", maxMasterLen)}},
		withMembership(sampleAdvert(), 3, "10.9.0.1:6379", "10.9.0.2:6379", "redis-3.example:6379"),
		withMembership(sampleAdvert(), 1),
		longest(),
	} {
		b, err := Marshal(a, testKey)
		if err != nil {
			t.Fatal(err)
		}
		want := minAdvertLen + len(a.Payload.Master)
		if a.Membership.Version != 0 {
			want += membershipHead + len(strings.Join(a.Membership.Servers, ","))
		}
		if len(b) != want || len(b) > maxAdvertLen {
			t.Errorf("length %d, want %d (at most %d)", len(b), want, maxAdvertLen)
		}
		got, err := Unmarshal(b, testKey)
		if err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Errorf("round trip\n got %+v\nwant %+v", got, a)
		}
	}
}

func withMembership(a Advert, version uint64, servers ...string) Advert {
	a.Membership = Membership{Version: version, Servers: servers}
	return a
}

// longest is the longest advert: the longest master and membership.
func longest() Advert {
	a := sampleAdvert()
	a.Payload.Master = strings.Repeat("m", maxMasterLen)
	var servers []string
	for n := 0; n+16 <= MaxMembershipLen; n += 16 {
		servers = append(servers, "10.99.0.1:6379") // 14, and a comma
	}
	servers = append(servers, strings.Repeat("h", MaxMembershipLen-len(strings.Join(servers, ","))-1))
	a.Membership = Membership{Version: ^uint64(0), Servers: servers}
	return a
}

// TestLongestAdvertFitsOneDatagram: the longest advert fits the receive
// buffer and an IPv4 datagram on a 1500-byte MTU (20 bytes of IP header, 8
// of UDP), so it is never fragmented.
func TestLongestAdvertFitsOneDatagram(t *testing.T) {
	b, err := Marshal(longest(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != maxAdvertLen || len(b) >= rxBufLen || len(b) > 1500-20-8 {
		t.Fatalf("longest advert %d bytes (maxAdvertLen %d, receive buffer %d, one datagram %d)", len(b), maxAdvertLen, rxBufLen, 1500-28)
	}
	t.Logf("longest advert: %d bytes", len(b))
}

func TestMarshalRejectsInvalid(t *testing.T) {
	for name, mut := range map[string]func(*Advert){
		"zero interval":             func(a *Advert) { a.Interval = 0 },
		"interval > 65s":            func(a *Advert) { a.Interval = 66 * time.Second },
		"no sender":                 func(a *Advert) { a.Sender = netip.Addr{} },
		"master too long":           func(a *Advert) { a.Payload.Master = strings.Repeat("x", maxMasterLen+1) },
		"bad role":                  func(a *Advert) { a.Role = 9 },
		"servers without a version": func(a *Advert) { a.Membership.Servers = []string{"a:1"} },
		"a comma in a server":       func(a *Advert) { *a = withMembership(*a, 1, "a:1,b:2") },
		"membership too long": func(a *Advert) {
			*a = withMembership(*a, 1, strings.Repeat("x", MaxMembershipLen+1))
		},
	} {
		a := sampleAdvert()
		mut(&a)
		if _, err := Marshal(a, testKey); err == nil {
			t.Errorf("%s: Marshal accepted it", name)
		}
	}
}

// resign recomputes the MAC after a test edits the body, so that the field
// checks behind the MAC are reached.
func resign(b []byte) []byte {
	n := len(b) - macLen
	return appendMAC(b[:n:n], 0, testKey)
}

func TestUnmarshalReasons(t *testing.T) {
	good, err := Marshal(sampleAdvert(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	withM, err := Marshal(withMembership(sampleAdvert(), 4, "a:1", "b:2"), testKey)
	if err != nil {
		t.Fatal(err)
	}
	editM := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), withM...)) }
	mOff := headerLen + len(sampleAdvert().Payload.Master) // where the membership starts
	for _, tc := range []struct {
		name string
		b    []byte
		want Reason
	}{
		{"empty", nil, ReasonTruncated},
		{"one byte", []byte{'r'}, ReasonTruncated},
		{"header only", good[:headerLen], ReasonTruncated},
		{"missing last MAC byte", good[:len(good)-1], ReasonTruncated},
		{"not ours", []byte("GET / HTTP/1.1\r\n"), ReasonNotAdvert},
		{"version 2", edit(func(b []byte) []byte { b[2] = 2; return b }), ReasonVersion},
		{"version 2, short", []byte{'r', 'v', 2}, ReasonVersion},
		{"flipped body bit", edit(func(b []byte) []byte { b[4] ^= 1; return b }), ReasonBadMAC},
		{"flipped MAC bit", edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ReasonBadMAC},
		{"wrong key", func() []byte { b, _ := Marshal(sampleAdvert(), []byte("another-key-of-16+")); return b }(), ReasonBadMAC},
		{"trailing byte", append(append([]byte(nil), good...), 0), ReasonMalformed},
		{"master length too big", edit(func(b []byte) []byte { b[56], b[57] = 0xff, 0xff; return b }), ReasonMalformed},
		{"unknown flag", edit(func(b []byte) []byte { b[3] |= 0x80; return resign(b) }), ReasonMalformed},
		{"bad role", edit(func(b []byte) []byte { b[5] = 7; return resign(b) }), ReasonMalformed},
		{"zero interval", edit(func(b []byte) []byte { b[6], b[7] = 0, 0; return resign(b) }), ReasonMalformed},
		{"unspecified sender", edit(func(b []byte) []byte { clear(b[8:24]); return resign(b) }), ReasonMalformed},
		{"membership: flag without one", edit(func(b []byte) []byte { b[3] |= flagMembership; return resign(b) }), ReasonTruncated},
		{"membership: flag cleared", editM(func(b []byte) []byte { b[3] &^= flagMembership; return resign(b) }), ReasonMalformed},
		{"membership: flipped server bit", editM(func(b []byte) []byte { b[len(b)-macLen-1] ^= 1; return b }), ReasonBadMAC},
		{"membership: version 0", editM(func(b []byte) []byte { clear(b[mOff : mOff+8]); return resign(b) }), ReasonMalformed},
		{"membership: length too big", editM(func(b []byte) []byte { b[mOff+8], b[mOff+9] = 0xff, 0xff; return b }), ReasonMalformed},
		{"membership: length past the end", editM(func(b []byte) []byte { b[mOff+9] += 40; return b }), ReasonTruncated},
		{"membership: missing MAC byte", withM[:len(withM)-1], ReasonTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(tc.b, testKey)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want reason %v", err, tc.want)
			}
			var re *RejectError
			if !errors.As(err, &re) || re.Reason != tc.want || ReasonOf(err) != tc.want {
				t.Fatalf("err %#v is not a *RejectError with reason %v", err, tc.want)
			}
		})
	}
}

func TestReplayGuard(t *testing.T) {
	now := t0
	adv := func(boot, seq uint64, age time.Duration) Advert {
		a := sampleAdvert()
		a.BootID, a.Seq, a.Time = boot, seq, now.Add(-age)
		return a
	}
	g := newReplayGuard(10 * time.Second)
	for i, tc := range []struct {
		a    Advert
		want Reason // 0: accepted
	}{
		{adv(1, 5, 0), 0},
		{adv(1, 5, 0), ReasonReplay},               // same sequence
		{adv(1, 4, 0), ReasonReplay},               // older
		{adv(1, 6, 0), 0},                          // next
		{adv(1, 100, 0), 0},                        // gaps are fine (lost packets)
		{adv(1, 101, 11*time.Second), ReasonStale}, // clock too far behind
		{adv(1, 101, -11*time.Second), ReasonStale},
		{adv(2, 1, time.Second), ReasonReplay}, // other boot, older clock: a recording
		{adv(2, 1, -time.Millisecond), 0},      // other boot, newer clock: a restart
		{adv(1, 102, -time.Millisecond), ReasonReplay},
		{adv(2, 2, -time.Millisecond), 0},
	} {
		err := g.check(tc.a, now)
		if got := ReasonOf(err); got != tc.want {
			t.Fatalf("case %d (boot %d seq %d): reason %v, want %v (%v)", i, tc.a.BootID, tc.a.Seq, got, tc.want, err)
		}
	}
	// A rejection records nothing: a later fresh advert is still accepted.
	if err := g.check(adv(2, 3, -2*time.Millisecond), now); err != nil {
		t.Fatal(err)
	}
}

func TestReceiverRejectsSelf(t *testing.T) {
	r := newReceiver(testKey, addr1, 9, time.Minute)
	for _, a := range []Advert{
		func() Advert { a := sampleAdvert(); a.Sender = addr1; a.Time = t0; return a }(),
		func() Advert { a := sampleAdvert(); a.BootID = 9; a.Time = t0; return a }(),
	} {
		b, _ := Marshal(a, testKey)
		if _, err := r.accept(b, t0); ReasonOf(err) != ReasonSelf {
			t.Errorf("accept own advert: %v, want self", err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	good, _ := Marshal(sampleAdvert(), testKey)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte{})
	f.Add([]byte("rv\x01"))
	long := sampleAdvert()
	long.Payload.Master = strings.Repeat("h", maxMasterLen)
	b, _ := Marshal(long, testKey)
	f.Add(b)
	b, _ = Marshal(longest(), testKey)
	f.Add(b)
	b, _ = Marshal(withMembership(sampleAdvert(), 2, "a:1", "", "b:2"), testKey)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := append([]byte(nil), b...)
		a, err := Unmarshal(b, testKey)
		if !bytes.Equal(b, orig) {
			t.Fatal("Unmarshal modified its input")
		}
		if err != nil {
			if ReasonOf(err) == 0 {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		again, err := Marshal(a, testKey)
		if err != nil {
			t.Fatalf("accepted advert does not re-marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-marshal differs\n in %x\nout %x", b, again)
		}
	})
}

// BenchmarkReceiver: what the node spends on a datagram from a peer's
// address before it can reject it, by kind: a forged advert (the HMAC is
// computed: the cost a flood with the peer's address forged can impose per
// datagram), and bytes that are not an advert. Neither allocates.
func BenchmarkReceiver(b *testing.B) {
	r := newReceiver(testKey, addr1, 9, time.Minute)
	a := sampleAdvert()
	a.Time = time.Now()
	forged, _ := Marshal(a, []byte("wrong-key-wrong-key-wrong-key"))
	for _, bc := range []struct {
		name string
		b    []byte
		want Reason
	}{{"forged", forged, ReasonBadMAC}, {"junk", []byte("GET / HTTP/1.1\r\n"), ReasonNotAdvert}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.accept(bc.b, t0); err != bc.want {
					b.Fatal(err)
				}
			}
		})
	}
}
