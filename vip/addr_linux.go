package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
)

// netlinkOwner is the production addrOwner and addrWatcher. The link is
// looked up by name on every call, so a re-created interface is followed.
type netlinkOwner struct {
	h      *netlink.Handle
	ifname string
	onErr  func(error) // subscription errors, for the log
}

func newNetlinkOwner(ifname string) (*netlinkOwner, error) {
	h, err := netlink.NewHandle(syscall.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	o := &netlinkOwner{h: h, ifname: ifname}
	if _, err := o.link(); err != nil {
		h.Close()
		return nil, err
	}
	return o, nil
}

func (o *netlinkOwner) Close() { o.h.Close() }

func (o *netlinkOwner) link() (netlink.Link, error) {
	l, err := o.h.LinkByName(o.ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", o.ifname, err)
	}
	return l, nil
}

func (o *netlinkOwner) List() ([]netip.Prefix, error) {
	l, err := o.link()
	if err != nil {
		return nil, err
	}
	addrs, err := o.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", o.ifname, err)
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (o *netlinkOwner) Add(p netip.Prefix) error {
	l, err := o.link()
	if err != nil {
		return err
	}
	// Replace is create-or-update, so a VIP already present is no error.
	if err := o.h.AddrReplace(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, o.ifname, err)
	}
	return nil
}

func (o *netlinkOwner) Del(p netip.Prefix) error {
	l, err := o.link()
	if err != nil {
		return err
	}
	err = o.h.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)})
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove %s from %s: %w", p, o.ifname, err)
	}
	return nil
}

// Watch forwards address updates of this interface until ctx is done. A
// failed or broken subscription is retried every second; the caller's
// periodic check covers the gap.
func (o *netlinkOwner) Watch(ctx context.Context, notify chan<- struct{}) {
	for {
		ch, done, index, err := o.subscribe(ctx)
		if err != nil {
			if o.onErr != nil {
				o.onErr(err)
			}
		} else {
			forward(ctx, ch, index, notify)
			close(done) // closes the socket; the library then closes ch
			for range ch {
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (o *netlinkOwner) subscribe(ctx context.Context) (chan netlink.AddrUpdate, chan struct{}, int, error) {
	l, err := o.link()
	if err != nil {
		return nil, nil, 0, err
	}
	ch := make(chan netlink.AddrUpdate, 16)
	done := make(chan struct{})
	err = netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil && o.onErr != nil {
				o.onErr(err)
			}
		},
	})
	if err != nil {
		close(done)
		return nil, nil, 0, fmt.Errorf("subscribe to address updates: %w", err)
	}
	return ch, done, l.Attrs().Index, nil
}

// forward passes on updates of link index until ch closes or ctx is done.
func forward(ctx context.Context, ch <-chan netlink.AddrUpdate, index int, notify chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			if u.LinkIndex != index {
				continue
			}
			select {
			case notify <- struct{}{}:
			default:
			}
		}
	}
}

// garpSender is the production announcer: a send-only raw packet socket on
// the interface.
type garpSender struct {
	conn *packet.Conn
	hw   net.HardwareAddr
}

func newGARPSender(ifname string) (*garpSender, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address", ifname)
	}
	// The filter rejects every frame: this socket only sends, and must not
	// queue up every ARP packet on the link.
	drop := []bpf.RawInstruction{{Op: 0x06, K: 0}} // BPF_RET|BPF_K 0
	c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: drop})
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on %s: %w", ifname, err)
	}
	return &garpSender{conn: c, hw: ifi.HardwareAddr}, nil
}

func (g *garpSender) Close() error { return g.conn.Close() }

// Announce broadcasts an ARP request for ip from ip (a gratuitous ARP), which
// makes neighbours on the link update their entry for ip to our MAC.
func (g *garpSender) Announce(ip netip.Addr) error {
	p, err := arp.NewPacket(arp.OperationRequest, g.hw, ip, ethernet.Broadcast, ip)
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s: %w", ip, err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s: %w", ip, err)
	}
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: g.hw, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s: %w", ip, err)
	}
	if _, err := g.conn.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
		return fmt.Errorf("gratuitous arp for %s: %w", ip, err)
	}
	return nil
}

// CheckCapabilities returns a one-line error naming the capabilities this
// process lacks to own a VIP (NET_ADMIN to add addresses, NET_RAW to send
// gratuitous ARP), or nil if it has both.
func CheckCapabilities() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("check capabilities: %w", err)
	}
	return missingCaps(string(b))
}
