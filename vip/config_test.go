package vip

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/config"
)

func validConfig() Config {
	return Config{
		Interface: "eth0",
		VIP:       netip.MustParsePrefix("10.0.0.100/24"),
		Peers:     []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:0")},
		Address:   addr1,
		Secret:    []byte("0123456789abcdef"),
	}
}

func TestValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	noVIP := validConfig()
	noVIP.VIP, noVIP.Secret, noVIP.Interface = netip.Prefix{}, nil, ""
	if err := noVIP.Validate(); err != nil {
		t.Fatalf("election-only config: %v", err)
	}
	for _, tc := range []struct {
		field string
		mut   func(*Config)
	}{
		{"Priority", func(c *Config) { c.Priority = 255 }},
		{"Interval", func(c *Config) { c.Interval = 5 * time.Millisecond }},
		{"Interval", func(c *Config) { c.Interval = 70 * time.Second }},
		{"Interval", func(c *Config) { c.Interval = 1500 * time.Microsecond }},
		{"Peers", func(c *Config) { c.Peers = nil }},
		{"Peers", func(c *Config) { c.Peers = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:1")} }},
		{"Peers", func(c *Config) { c.Peers = []netip.AddrPort{netip.MustParseAddrPort("[fd00::2]:1")} }},
		{"Peers", func(c *Config) { c.Peers = []netip.AddrPort{netip.AddrPortFrom(addr1, 0)} }},
		{"Address", func(c *Config) { c.Address = netip.MustParseAddr("224.0.0.18") }},
		{"PreemptDelay", func(c *Config) { c.PreemptDelay = -time.Second }},
		{"Track", func(c *Config) { c.Track = 7 }},
		{"GARPCount", func(c *Config) { c.GARPCount = 1000 }},
		{"GARPSpacing", func(c *Config) { c.GARPSpacing = -1 }},
		{"ReconcileInterval", func(c *Config) { c.ReconcileInterval = -1 }},
		{"FaultHold", func(c *Config) { c.FaultHold = -1 }},
		{"ReplayWindow", func(c *Config) { c.ReplayWindow = -1 }},
		{"Secret", func(c *Config) { c.Secret = nil }},
		{"Secret", func(c *Config) { c.Secret = []byte("short") }},
		{"VIP", func(c *Config) { c.VIP = netip.MustParsePrefix("fd00::100/64") }},
		{"VIP", func(c *Config) { c.VIP = netip.PrefixFrom(addr1, 24) }},
		{"Interface", func(c *Config) { c.Interface = "" }},
	} {
		c := validConfig()
		tc.mut(&c)
		err := c.Validate()
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Pkg != "vip" || fe.Field != tc.field {
			t.Errorf("want a %s error, got %v", tc.field, err)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error: %q", err)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := validConfig().withDefaults()
	if c.Port != 5405 || c.Priority != 100 || c.Interval != 200*time.Millisecond || c.GARPCount != 3 ||
		c.GARPSpacing != 100*time.Millisecond || c.GARPRefresh != 10*time.Second || c.ReplayWindow != 10*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	if c.Peers[0] != netip.MustParseAddrPort("10.0.0.2:5405") {
		t.Fatalf("peer without port got %v, want port 5405", c.Peers[0])
	}
	if p := c.params(); !p.Preempt || p.GARPRefresh != 10*time.Second {
		t.Fatalf("params %+v", p)
	}
	c.GARPRefresh = -1
	if p := c.params(); p.GARPRefresh != 0 {
		t.Fatalf("negative refresh should disable it, got %v", p.GARPRefresh)
	}
	// The handover waits out a priority-1 peer's master-down interval plus
	// one interval for its advert: 3×200ms + 255×200ms/256 + 200ms.
	if want := 999218750 * time.Nanosecond; c.HandoverTimeout != want || c.params().HandoverTimeout != want {
		t.Fatalf("handover timeout %v (params %v), want %v", c.HandoverTimeout, c.params().HandoverTimeout, want)
	}
	if c := (Config{Interval: time.Second}).withDefaults(); c.HandoverTimeout != 4996093750*time.Nanosecond {
		t.Fatalf("handover timeout at a 1s interval: %v", c.HandoverTimeout)
	}
	c.HandoverTimeout = -1
	if p := c.params(); p.HandoverTimeout != 0 {
		t.Fatalf("negative handover timeout should disable the handover, got %v", p.HandoverTimeout)
	}
}

func TestParsePeers(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"10.0.0.2", []string{"10.0.0.2:0"}, false},
		{"10.0.0.2:5406, 10.0.0.3", []string{"10.0.0.2:5406", "10.0.0.3:0"}, false},
		{" [fd00::2]:5405 ,fd00::3,", []string{"[fd00::2]:5405", "[fd00::3]:0"}, false},
		{"", nil, true},
		{"host.example:5405", nil, true},
		{"10.0.0.2:0", nil, true},
		{"10.0.0.2:99999", nil, true},
		{"10.0.0.2:x", nil, true},
	} {
		got, err := ParsePeers(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParsePeers(%q) err = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ParsePeers(%q) = %v, want %v", tc.in, s, tc.want)
		}
	}
}

func TestMissingCaps(t *testing.T) {
	for _, tc := range []struct {
		capEff string
		want   string // substring; "" means nil
	}{
		{"000001fffeffffff", ""},
		{"0000000000003000", ""},                           // exactly NET_ADMIN|NET_RAW
		{"0000000000001000", "missing NET_RAW"},            // NET_ADMIN only
		{"0000000000002000", "missing NET_ADMIN ("},        // NET_RAW only
		{"0000000000000000", "missing NET_ADMIN, NET_RAW"}, // unprivileged
		{"zz", "parse CapEff"},
	} {
		err := missingCaps("Name:\tx\nCapInh:\t0\nCapEff:\t" + tc.capEff + "\nCapBnd:\t0\n")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CapEff %s: %v, want nil", tc.capEff, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CapEff %s: %v, want it to say %q", tc.capEff, err, tc.want)
		}
	}
	if err := missingCaps("Name:\tx\n"); err == nil {
		t.Error("no CapEff line: want an error")
	}
	// This process: as root here both are present; otherwise the message
	// must name what is missing.
	if err := CheckCapabilities(); err != nil && !strings.Contains(err.Error(), "missing") {
		t.Errorf("CheckCapabilities: %v", err)
	}
}
