package vip

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"time"
)

// Wire format of an advert, version 1 (all integers big-endian):
//
//	off  len  field
//	0    2    magic "rv"
//	2    1    version (1)
//	3    1    flags (bit 0: sender unhealthy; bit 1: membership follows
//	          the master; other bits must be zero)
//	4    1    priority (0 = releasing the VIP)
//	5    1    sender role (0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT)
//	6    2    advert interval, milliseconds (1–65535)
//	8    16   sender address (IPv4 as v4-mapped IPv6)
//	24   8    boot id (random per process start)
//	32   8    sequence number (increases by one per advert within a boot)
//	40   8    sender clock, Unix nanoseconds
//	48   8    payload epoch
//	56   2    payload master length n (0–512)
//	58   n    payload master (host:port)
//	58+n 32   HMAC-SHA256 over bytes [0, 58+n) with the shared secret
//
// With flag bit 1 the membership follows the master, before the MAC (which
// then covers it too):
//
//	58+n    8  membership version (not 0)
//	66+n    2  membership length m (0–MaxMembershipLen)
//	68+n    m  the servers, comma-separated
//	68+n+m  32 HMAC-SHA256 over bytes [0, 68+n+m)
//
// A node sends the flag only once main has set a membership (version 1 and
// up: the servers were changed at run time). A build without it drops such
// an advert as malformed, so both nodes of a pair must run a build that
// knows it before servers are added or removed.
const (
	advertVersion  = 1
	headerLen      = 58
	macLen         = sha256.Size
	maxMasterLen   = 512
	membershipHead = 10 // version and length
	minAdvertLen   = headerLen + macLen
	maxAdvertLen   = headerLen + maxMasterLen + membershipHead + MaxMembershipLen + macLen
	flagUnhealthy  = 1 << 0
	flagMembership = 1 << 1
	knownFlags     = flagUnhealthy | flagMembership
	magic0, magic1 = 'r', 'v'
)

// MaxMembershipLen bounds the membership an advert carries: its servers
// joined with commas. With the longest master that keeps the longest advert
// (1412 bytes) in one IPv4 datagram on a 1500-byte MTU.
const MaxMembershipLen = 800

// Membership is main's list of Redis servers, carried in adverts so that
// the peer can adopt it; the vip package does not interpret it. Version 0
// means none: it is not sent.
type Membership struct {
	Version uint64
	Servers []string // each without a comma; joined, at most MaxMembershipLen bytes
}

// encodedLen is the length of m's servers on the wire.
func (m Membership) encodedLen() int {
	n := 0
	for i, s := range m.Servers {
		if i > 0 {
			n++
		}
		n += len(s)
	}
	return n
}

// Check reports whether m can be carried in an advert.
func (m Membership) Check() error {
	if m.Version == 0 {
		if len(m.Servers) > 0 {
			return errors.New("membership: servers without a version")
		}
		return nil
	}
	for _, s := range m.Servers {
		if strings.IndexByte(s, ',') >= 0 {
			return fmt.Errorf("membership: server %q holds a comma", s)
		}
	}
	if n := m.encodedLen(); n > MaxMembershipLen {
		return fmt.Errorf("membership: %d bytes of servers, at most %d", n, MaxMembershipLen)
	}
	return nil
}

// Advert is one decoded advertisement.
type Advert struct {
	Priority uint8
	Healthy  bool
	Role     Role
	Interval time.Duration // whole milliseconds on the wire
	Sender   netip.Addr
	BootID   uint64
	Seq      uint64
	Time     time.Time // the sender's clock, nanoseconds on the wire
	Payload  Payload
	// Membership is main's list of servers; the zero value is not sent.
	Membership Membership
}

// Reason says why an incoming packet was rejected. A Reason is an error, so
// callers can test errors.Is(err, vip.ReasonBadMAC).
type Reason uint8

const (
	ReasonTruncated Reason = iota + 1 // shorter than its own length says
	ReasonNotAdvert                   // wrong magic: not ours at all
	ReasonVersion                     // a version this build does not speak
	ReasonBadMAC                      // forged, corrupted, or a different secret
	ReasonMalformed                   // authenticated but a field is invalid, or trailing bytes
	ReasonStale                       // sender clock outside the replay window
	ReasonReplay                      // sequence or boot id not newer than the last accepted
	ReasonSelf                        // our own address or boot id: a loop or an address clash
	ReasonNotPeer                     // from an address (or port) that is not a configured peer; dropped before any decoding

	lastReason = ReasonNotPeer
)

// Reasons lists every Reason, for exporting counters with stable labels.
var Reasons = []Reason{ReasonTruncated, ReasonNotAdvert, ReasonVersion, ReasonBadMAC, ReasonMalformed, ReasonStale, ReasonReplay, ReasonSelf, ReasonNotPeer}

func (r Reason) String() string {
	switch r {
	case ReasonTruncated:
		return "truncated"
	case ReasonNotAdvert:
		return "not-advert"
	case ReasonVersion:
		return "version"
	case ReasonBadMAC:
		return "bad-mac"
	case ReasonMalformed:
		return "malformed"
	case ReasonStale:
		return "stale"
	case ReasonReplay:
		return "replay"
	case ReasonSelf:
		return "self"
	case ReasonNotPeer:
		return "not-peer"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

func (r Reason) Error() string { return "advert rejected: " + r.String() }

// RejectError is a rejection with its detail. It unwraps to its Reason.
type RejectError struct {
	Reason Reason
	Detail string
}

func (e *RejectError) Error() string { return e.Reason.Error() + ": " + e.Detail }
func (e *RejectError) Unwrap() error { return e.Reason }

// rejecter builds rejections. A quiet one returns the bare Reason, which
// costs no formatting and no allocation: a node under a flood counts
// rejections and describes only the few it logs (the detail is a closure,
// run only when wanted).
type rejecter bool

const (
	quiet   rejecter = false
	verbose rejecter = true
)

func (v rejecter) reject(r Reason, detail func() string) error {
	if v == quiet {
		return r
	}
	return &RejectError{Reason: r, Detail: detail()}
}

// ReasonOf returns the Reason of an error from Unmarshal or the replay
// check, or 0 if err is not a rejection.
func ReasonOf(err error) Reason {
	if r, ok := err.(Reason); ok {
		return r // (no errors.As for the common case: its target escapes, one allocation per rejected packet)
	}
	var r Reason
	if errors.As(err, &r) {
		return r
	}
	return 0
}

// AppendMarshal appends the signed encoding of a to dst.
func (a *Advert) AppendMarshal(dst, key []byte) ([]byte, error) {
	ms := a.Interval.Milliseconds()
	switch {
	case ms < 1 || ms > 0xffff:
		return dst, fmt.Errorf("marshal advert: interval %v outside 1ms–65.535s", a.Interval)
	case len(a.Payload.Master) > maxMasterLen:
		return dst, fmt.Errorf("marshal advert: master %d bytes, at most %d", len(a.Payload.Master), maxMasterLen)
	case !a.Sender.IsValid():
		return dst, errors.New("marshal advert: no sender address")
	case a.Role > Fault:
		return dst, fmt.Errorf("marshal advert: invalid role %d", a.Role)
	}
	if err := a.Membership.Check(); err != nil {
		return dst, fmt.Errorf("marshal advert: %w", err)
	}
	start := len(dst)
	var flags byte
	if !a.Healthy {
		flags |= flagUnhealthy
	}
	if a.Membership.Version != 0 {
		flags |= flagMembership
	}
	dst = append(dst, magic0, magic1, advertVersion, flags, a.Priority, byte(a.Role))
	dst = binary.BigEndian.AppendUint16(dst, uint16(ms))
	s16 := a.Sender.As16()
	dst = append(dst, s16[:]...)
	dst = binary.BigEndian.AppendUint64(dst, a.BootID)
	dst = binary.BigEndian.AppendUint64(dst, a.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(a.Time.UnixNano()))
	dst = binary.BigEndian.AppendUint64(dst, a.Payload.Epoch)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Payload.Master)))
	dst = append(dst, a.Payload.Master...)
	if a.Membership.Version != 0 {
		dst = binary.BigEndian.AppendUint64(dst, a.Membership.Version)
		dst = binary.BigEndian.AppendUint16(dst, uint16(a.Membership.encodedLen()))
		for i, s := range a.Membership.Servers {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, s...)
		}
	}
	return appendMAC(dst, start, key), nil
}

// appendMAC appends the HMAC of dst[start:] to dst.
func appendMAC(dst []byte, start int, key []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(dst[start:])
	return mac.Sum(dst)
}

// Marshal returns the signed encoding of a.
func Marshal(a Advert, key []byte) ([]byte, error) {
	return a.AppendMarshal(make([]byte, 0, minAdvertLen+len(a.Payload.Master)+membershipHead+a.Membership.encodedLen()), key)
}

// Unmarshal decodes b and verifies its MAC with key. Errors are
// *RejectError carrying a Reason; Unmarshal never panics and does not retain
// b. It does not check freshness: see replayGuard.
func Unmarshal(b, key []byte) (Advert, error) {
	return decode(b, hmac.New(sha256.New, key), nil, verbose)
}

// decode is Unmarshal with the MAC's hash given (keyed, in any state), room
// for the sum (nil: allocated) and the rejections built by v.
func decode(b []byte, mac hash.Hash, sum []byte, v rejecter) (Advert, error) {
	var a Advert
	if len(b) >= 2 && (b[0] != magic0 || b[1] != magic1) {
		return a, v.reject(ReasonNotAdvert, func() string { return fmt.Sprintf("magic %#02x%02x", b[0], b[1]) })
	}
	if len(b) >= 3 && b[2] != advertVersion {
		return a, v.reject(ReasonVersion, func() string { return fmt.Sprintf("version %d, want %d", b[2], advertVersion) })
	}
	if len(b) < minAdvertLen {
		return a, v.reject(ReasonTruncated, func() string { return fmt.Sprintf("%d bytes, need at least %d", len(b), minAdvertLen) })
	}
	n := int(binary.BigEndian.Uint16(b[56:58]))
	if n > maxMasterLen {
		return a, v.reject(ReasonMalformed, func() string { return fmt.Sprintf("master length %d exceeds %d", n, maxMasterLen) })
	}
	body := headerLen + n // where the MAC starts
	if b[3]&flagMembership != 0 {
		// The flag is read before the MAC is checked, to find the MAC; a
		// forged flag only moves where a forged MAC is looked for.
		if len(b) < body+membershipHead+macLen {
			return a, v.reject(ReasonTruncated, func() string { return fmt.Sprintf("%d bytes, too short for a membership", len(b)) })
		}
		m := int(binary.BigEndian.Uint16(b[body+8 : body+10]))
		if m > MaxMembershipLen {
			return a, v.reject(ReasonMalformed, func() string { return fmt.Sprintf("membership length %d exceeds %d", m, MaxMembershipLen) })
		}
		body += membershipHead + m
	}
	want := body + macLen
	if len(b) < want {
		return a, v.reject(ReasonTruncated, func() string { return fmt.Sprintf("%d bytes, header says %d", len(b), want) })
	}
	if len(b) > want {
		return a, v.reject(ReasonMalformed, func() string { return fmt.Sprintf("%d trailing bytes", len(b)-want) })
	}
	mac.Reset()
	mac.Write(b[:body])
	if !hmac.Equal(mac.Sum(sum[:0]), b[body:]) {
		return a, v.reject(ReasonBadMAC, func() string { return "hmac mismatch" })
	}
	flags := b[3]
	if flags&^knownFlags != 0 {
		return a, v.reject(ReasonMalformed, func() string { return fmt.Sprintf("unknown flags %#02x", flags) })
	}
	a.Healthy = flags&flagUnhealthy == 0
	a.Priority = b[4]
	if b[5] > byte(Fault) {
		return a, v.reject(ReasonMalformed, func() string { return fmt.Sprintf("role %d", b[5]) })
	}
	a.Role = Role(b[5])
	ms := binary.BigEndian.Uint16(b[6:8])
	if ms == 0 {
		return a, v.reject(ReasonMalformed, func() string { return "interval 0" })
	}
	a.Interval = time.Duration(ms) * time.Millisecond
	a.Sender = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
	if a.Sender.IsUnspecified() {
		return a, v.reject(ReasonMalformed, func() string { return "unspecified sender" })
	}
	a.BootID = binary.BigEndian.Uint64(b[24:32])
	a.Seq = binary.BigEndian.Uint64(b[32:40])
	a.Time = time.Unix(0, int64(binary.BigEndian.Uint64(b[40:48])))
	a.Payload.Epoch = binary.BigEndian.Uint64(b[48:56])
	a.Payload.Master = string(b[headerLen : headerLen+n])
	if flags&flagMembership != 0 {
		off := headerLen + n
		a.Membership.Version = binary.BigEndian.Uint64(b[off : off+8])
		if a.Membership.Version == 0 {
			return a, v.reject(ReasonMalformed, func() string { return "membership version 0" })
		}
		if list := b[off+membershipHead : body]; len(list) > 0 {
			a.Membership.Servers = strings.Split(string(list), ",")
		}
	}
	return a, nil
}

// replayGuard rejects adverts outside the clock window and adverts not newer
// than the last accepted one from the same sender: within a boot the
// sequence must increase; a new boot id is accepted only with a later clock
// than the last accepted advert, so recordings of an earlier boot cannot be
// replayed. Only authenticated adverts reach it, so its map is bounded by the
// number of real nodes. Not safe for concurrent use.
type replayGuard struct {
	window time.Duration
	last   map[netip.Addr]seen
}

type seen struct {
	boot, seq uint64
	time      time.Time
}

func newReplayGuard(window time.Duration) *replayGuard {
	return &replayGuard{window: window, last: make(map[netip.Addr]seen)}
}

// check records a as the latest from its sender if it is fresh, else
// returns a *RejectError (ReasonStale or ReasonReplay) and records nothing.
func (g *replayGuard) check(a Advert, now time.Time) error {
	return g.checkBy(a, now, verbose)
}

func (g *replayGuard) checkBy(a Advert, now time.Time, v rejecter) error {
	if d := now.Sub(a.Time); d > g.window || d < -g.window {
		return v.reject(ReasonStale, func() string {
			return fmt.Sprintf("sender clock %v off by %v, window %v", a.Sender, d.Round(time.Millisecond), g.window)
		})
	}
	if l, ok := g.last[a.Sender]; ok {
		if a.BootID == l.boot && a.Seq <= l.seq {
			return v.reject(ReasonReplay, func() string { return fmt.Sprintf("%v seq %d, last %d", a.Sender, a.Seq, l.seq) })
		}
		if a.BootID != l.boot && !a.Time.After(l.time) {
			return v.reject(ReasonReplay, func() string { return fmt.Sprintf("%v boot %x older than boot %x", a.Sender, a.BootID, l.boot) })
		}
	}
	g.last[a.Sender] = seen{boot: a.BootID, seq: a.Seq, time: a.Time}
	return nil
}

// receiver turns packets into adverts Step may see: decode, authenticate,
// drop our own, check freshness. Not safe for concurrent use.
type receiver struct {
	self   netip.Addr
	bootID uint64
	guard  *replayGuard
	mac    hash.Hash // keyed with the shared secret, reused for every packet
	sum    [sha256.Size]byte
}

func newReceiver(key []byte, self netip.Addr, bootID uint64, window time.Duration) *receiver {
	return &receiver{self: self, bootID: bootID, guard: newReplayGuard(window), mac: hmac.New(sha256.New, key)}
}

// accept returns the advert in b, or why it is rejected as a bare Reason:
// counting a flood's rejections costs neither formatting nor allocation.
// explain describes a rejection.
func (r *receiver) accept(b []byte, now time.Time) (Advert, error) {
	return r.acceptBy(b, now, quiet)
}

// explain returns accept's rejection of b at now as a *RejectError with its
// detail, for the log. A rejection records nothing, so it is the same.
func (r *receiver) explain(b []byte, now time.Time) error {
	_, err := r.acceptBy(b, now, verbose)
	return err
}

func (r *receiver) acceptBy(b []byte, now time.Time, v rejecter) (Advert, error) {
	a, err := decode(b, r.mac, r.sum[:], v)
	if err != nil {
		return a, err
	}
	if a.Sender == r.self || a.BootID == r.bootID {
		return a, v.reject(ReasonSelf, func() string { return fmt.Sprintf("sender %v boot %x is this node", a.Sender, a.BootID) })
	}
	if err := r.guard.checkBy(a, now, v); err != nil {
		return a, err
	}
	return a, nil
}

func (a Advert) event() AdvertReceived {
	return AdvertReceived{From: a.Sender, Priority: a.Priority, Healthy: a.Healthy, Role: a.Role, Interval: a.Interval, Payload: a.Payload}
}
