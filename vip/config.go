package vip

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/config"
)

// Defaults, used where a Config field is zero.
const (
	DefaultPriority          = 100
	DefaultInterval          = 200 * time.Millisecond
	DefaultReplayWindow      = 10 * time.Second
	DefaultGARPCount         = 3
	DefaultGARPSpacing       = 100 * time.Millisecond
	DefaultGARPRefresh       = 10 * time.Second
	DefaultReconcileInterval = time.Second
	DefaultFaultHold         = 2 * time.Second
	// MinSecretLen is the shortest Secret accepted.
	MinSecretLen = 16
)

// Config configures a Node. The zero value of every optional field means its
// default, given in the field's comment.
type Config struct {
	// Interface is the network interface that holds the VIP, e.g. "eth0".
	// Required when VIP is set.
	Interface string
	// VIP is the virtual address and prefix length to add to Interface,
	// e.g. 10.0.0.100/24. IPv4 only (gratuitous ARP). If zero, the node runs
	// the election (Role, IsMaster, payload) but manages no address.
	VIP netip.Prefix
	// Peers are the other nodes' advert endpoints. A zero port means Port.
	// Required, at least one. See ParsePeers.
	Peers []netip.AddrPort
	// Address is this node's own address: adverts are sent from and received
	// on it, and it breaks priority ties (higher wins). If zero, the source
	// address the kernel picks to reach the first peer is used.
	Address netip.Addr
	// Port is the UDP port this node receives adverts on. If zero,
	// DefaultPort (5405).
	Port uint16
	// Priority is 1–254, higher wins. If zero, 100.
	Priority uint8
	// Interval between a master's adverts, whole milliseconds, 10ms–65.535s.
	// A backup takes over after 3 × Interval + (256 − Priority) × Interval
	// / 256 without adverts. If zero, 200ms.
	Interval time.Duration
	// NoPreempt keeps a recovered higher-priority node as backup while a
	// healthy master exists (keepalived's nopreempt). Default false:
	// preemption on.
	NoPreempt bool
	// PreemptDelay is how long a backup must keep seeing a lower-priority
	// master before it takes over. Zero: at once. Does not apply when the
	// master is unhealthy (TrackDemote).
	PreemptDelay time.Duration
	// Secret is the shared HMAC-SHA256 key for adverts, at least 16 bytes.
	// Required when VIP is set; without a VIP an empty secret leaves adverts
	// unauthenticated.
	Secret []byte
	// ReplayWindow is how far a sender's clock may be from ours before its
	// adverts are rejected as stale. The nodes' clocks must agree within it.
	// If zero, 10s.
	ReplayWindow time.Duration
	// Track is what the node does while SetHealthy(false): TrackDemote
	// (default) or TrackFault.
	Track TrackMode
	// GARPCount is how many gratuitous ARPs announce a claimed VIP. If zero, 3.
	GARPCount int
	// GARPSpacing is the gap between them. If zero, 100ms.
	GARPSpacing time.Duration
	// GARPRefresh is the period of one refreshing gratuitous ARP while
	// master. If zero, 10s; negative disables refreshing.
	GARPRefresh time.Duration
	// ReconcileInterval is the period of the check that the VIP is present
	// exactly while master (netlink updates also trigger it). If zero, 1s.
	ReconcileInterval time.Duration
	// FaultHold is how long the node stays in FAULT after it failed to add
	// the VIP before it runs for master again. If zero, 2s.
	FaultHold time.Duration
	// HandoverTimeout bounds a graceful stop of the master (Run's context
	// cancelled): it keeps the VIP, sending a priority-0 advert every
	// Interval, until it hears the peer claim master, and removes it then
	// or after HandoverTimeout, whichever comes first; Run returns after
	// that. With a live peer the handover takes about the peer's skew time
	// (≈122ms at priority 100, 200ms interval). If zero,
	// DefaultHandoverTimeout: the master-down interval of a priority-1
	// peer plus one Interval (999.2ms at 200ms), by when a live peer has
	// claimed even if every release was lost, and its first advert has had
	// an interval to arrive. Negative: remove the VIP at once, then send
	// the release (the peer claims after its skew; nobody holds the VIP
	// meanwhile).
	HandoverTimeout time.Duration
}

// DefaultHandoverTimeout is the HandoverTimeout used when it is zero:
// MasterDownInterval(1, interval) + interval.
func DefaultHandoverTimeout(interval time.Duration) time.Duration {
	return MasterDownInterval(1, interval) + interval
}

// pkg names this package in a *config.FieldError.
const pkg = "vip"

func fieldErr(field, format string, args ...any) error {
	return config.Errorf(pkg, field, format, args...)
}

// withDefaults returns c with every zero optional field set to its default,
// Peers copied (a zero port replaced by Port) and addresses unmapped. It is
// the only place defaults are applied.
func (c Config) withDefaults() Config {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.ReplayWindow == 0 {
		c.ReplayWindow = DefaultReplayWindow
	}
	if c.GARPCount == 0 {
		c.GARPCount = DefaultGARPCount
	}
	if c.GARPSpacing == 0 {
		c.GARPSpacing = DefaultGARPSpacing
	}
	if c.GARPRefresh == 0 {
		c.GARPRefresh = DefaultGARPRefresh
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.FaultHold == 0 {
		c.FaultHold = DefaultFaultHold
	}
	if c.HandoverTimeout == 0 {
		c.HandoverTimeout = DefaultHandoverTimeout(c.Interval)
	}
	peers := make([]netip.AddrPort, len(c.Peers))
	for i, p := range c.Peers {
		if p.Port() == 0 {
			p = netip.AddrPortFrom(p.Addr(), c.Port)
		}
		peers[i] = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
	}
	c.Peers = peers
	c.Address = c.Address.Unmap()
	return c
}

// Validate reports the first invalid field of c, with defaults applied, as a
// *config.FieldError. It does not touch the system; New also checks the
// interface and the capabilities.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Priority == 255 {
		return fieldErr("Priority", "must be 1-254, got 255")
	}
	if c.Interval < 10*time.Millisecond || c.Interval > 65535*time.Millisecond || c.Interval%time.Millisecond != 0 {
		return fieldErr("Interval", "must be whole milliseconds within 10ms-65.535s, got %v", c.Interval)
	}
	if len(c.Peers) == 0 {
		return fieldErr("Peers", "at least one peer IP[:port] is required")
	}
	if c.Address.IsValid() && (c.Address.IsUnspecified() || c.Address.IsMulticast()) {
		return fieldErr("Address", "must be a unicast address, got %s", c.Address)
	}
	for _, p := range c.Peers {
		a := p.Addr()
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return fieldErr("Peers", "%s is not a unicast address", p)
		}
		if c.Address.IsValid() && a.Is4() != c.Address.Is4() {
			return fieldErr("Peers", "%s is not of the same IP family as Address %s", p, c.Address)
		}
		if a == c.Address && p.Port() == c.Port {
			return fieldErr("Peers", "%s is this node's own Address and Port", p)
		}
	}
	if c.PreemptDelay < 0 {
		return fieldErr("PreemptDelay", "must not be negative, got %v", c.PreemptDelay)
	}
	if c.ReplayWindow < 0 {
		return fieldErr("ReplayWindow", "must be positive, got %v", c.ReplayWindow)
	}
	if c.Track > TrackFault {
		return fieldErr("Track", "must be demote or fault, got %v", c.Track)
	}
	if c.GARPCount < 1 || c.GARPCount > 100 {
		return fieldErr("GARPCount", "must be 1-100, got %d", c.GARPCount)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"GARPSpacing", c.GARPSpacing}, {"ReconcileInterval", c.ReconcileInterval}, {"FaultHold", c.FaultHold}} {
		if d.v < 0 {
			return fieldErr(d.field, "must not be negative, got %v", d.v)
		}
	}
	if len(c.Secret) > 0 && len(c.Secret) < MinSecretLen {
		return fieldErr("Secret", "must be at least %d bytes, got %d", MinSecretLen, len(c.Secret))
	}
	if c.VIP.IsValid() {
		if !c.VIP.Addr().Is4() || c.VIP.Addr().IsUnspecified() {
			return fieldErr("VIP", "must be an IPv4 address with prefix length, e.g. 10.0.0.100/24, got %s", c.VIP)
		}
		if c.VIP.Addr() == c.Address {
			return fieldErr("VIP", "%s is this node's own Address", c.VIP.Addr())
		}
		if c.Interface == "" {
			return fieldErr("Interface", "is required with a VIP")
		}
		if len(c.Secret) == 0 {
			return fieldErr("Secret", "is required with a VIP (at least %d bytes)", MinSecretLen)
		}
	}
	return nil
}

// params derives the state machine's inputs.
func (c Config) params() Params {
	refresh := c.GARPRefresh
	if refresh < 0 {
		refresh = 0
	}
	handover := c.HandoverTimeout
	if handover < 0 {
		handover = 0
	}
	return Params{
		Self:            c.Address,
		Priority:        c.Priority,
		Interval:        c.Interval,
		Preempt:         !c.NoPreempt,
		PreemptDelay:    c.PreemptDelay,
		Track:           c.Track,
		GARPCount:       c.GARPCount,
		GARPSpacing:     c.GARPSpacing,
		GARPRefresh:     refresh,
		FaultHold:       c.FaultHold,
		HandoverTimeout: handover,
		LossHold:        DefaultLossHold(c.Priority, c.Interval),
	}
}

// localAddrFor returns the source address the kernel would use to reach
// peer. No packet is sent.
func localAddrFor(peer netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(peer))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find local address towards %s: %w", peer, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
