//go:build !linux

package vip

import (
	"context"
	"errors"
	"net/netip"
)

// Owning a VIP needs netlink and packet sockets, which exist on Linux only.
// Elsewhere the binary builds and runs as a plain proxy (no VIP set); a node
// given a VIP fails to start with this error.
var errNeedsLinux = errors.New("vip: owning a virtual IP needs Linux (netlink and packet sockets)")

type netlinkOwner struct{ onErr func(error) }

func newNetlinkOwner(string) (*netlinkOwner, error)                  { return nil, errNeedsLinux }
func (o *netlinkOwner) Close()                                       {}
func (o *netlinkOwner) List() ([]netip.Prefix, error)                { return nil, errNeedsLinux }
func (o *netlinkOwner) Add(netip.Prefix) error                       { return errNeedsLinux }
func (o *netlinkOwner) Del(netip.Prefix) error                       { return errNeedsLinux }
func (o *netlinkOwner) Watch(ctx context.Context, _ chan<- struct{}) { <-ctx.Done() }

type garpSender struct{}

func newGARPSender(string) (*garpSender, error) { return nil, errNeedsLinux }
func (g *garpSender) Close() error              { return nil }
func (g *garpSender) Announce(netip.Addr) error { return errNeedsLinux }

// CheckCapabilities fails: no VIP can be owned here.
func CheckCapabilities() error { return errNeedsLinux }
