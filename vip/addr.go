package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// addrOwner manages the addresses of one interface.
type addrOwner interface {
	// List returns the addresses on the interface.
	List() ([]netip.Prefix, error)
	// Add adds p; adding an address already present succeeds.
	Add(p netip.Prefix) error
	// Del removes p; removing an absent address succeeds.
	Del(p netip.Prefix) error
}

// announcer sends one gratuitous ARP for ip.
type announcer interface {
	Announce(ip netip.Addr) error
}

// addrWatcher reports (by a non-blocking send on notify) that the addresses
// of the interface may have changed. Watch blocks until ctx is done.
type addrWatcher interface {
	Watch(ctx context.Context, notify chan<- struct{})
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// hasAddr reports whether addrs holds the address of p (any prefix length).
func hasAddr(addrs []netip.Prefix, p netip.Prefix) bool {
	for _, a := range addrs {
		if a.Addr() == p.Addr() {
			return true
		}
	}
	return false
}

// Capability bits from linux/capability.h.
const (
	capNetAdmin = 12
	capNetRaw   = 13
)

// missingCaps parses the CapEff line of /proc/self/status.
func missingCaps(status string) error {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return fmt.Errorf("check capabilities: parse CapEff %q: %w", strings.TrimSpace(v), err)
		}
		var missing []string
		if caps&(1<<capNetAdmin) == 0 {
			missing = append(missing, "NET_ADMIN")
		}
		if caps&(1<<capNetRaw) == 0 {
			missing = append(missing, "NET_RAW")
		}
		if len(missing) > 0 {
			return fmt.Errorf("vip needs capabilities NET_ADMIN and NET_RAW; missing %s (grant with e.g. docker run --cap-add %s)",
				strings.Join(missing, ", "), strings.Join(missing, " --cap-add "))
		}
		return nil
	}
	return errors.New("check capabilities: no CapEff line in /proc/self/status")
}
