package network

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	s, errs := Config{Enabled: true}.resolve()
	if errs != nil {
		t.Fatal(errs)
	}
	if s.bridge != "vmbr0" || s.subnet != netip.MustParsePrefix("10.100.0.0/16") || s.gateway != netip.MustParseAddr("10.100.0.1") || s.uplink != "" || len(s.dns) != 0 {
		t.Fatalf("defaults: %+v", s)
	}
}

func TestConfigKeepsExplicitSettings(t *testing.T) {
	s, errs := Config{Bridge: "br-test", Subnet: "192.168.50.0/24", Gateway: "192.168.50.254", DNS: []string{"192.168.50.53", "2001:db8::53"}, Uplink: "none"}.resolve()
	if errs != nil {
		t.Fatal(errs)
	}
	want := []netip.Addr{netip.MustParseAddr("192.168.50.53"), netip.MustParseAddr("2001:db8::53")}
	if s.bridge != "br-test" || s.gateway != netip.MustParseAddr("192.168.50.254") || !slices.Equal(s.dns, want) || s.uplink != UplinkNone {
		t.Fatalf("settings: %+v", s)
	}
}

func TestConfigRejectsBadSettingsNamingEach(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"bridge name too long", Config{Bridge: "a-very-long-bridge"}, []string{`network bridge "a-very-long-bridge" is not allowed: 1 to 15 bytes`}},
		{"bridge name with a slash", Config{Bridge: "br/0"}, []string{`network bridge "br/0"`}},
		{"host port out of range", Config{HostPorts: []int{80, 0, 70000}}, []string{`network host_ports "0" is not allowed: a TCP port from 1 to 65535`, `network host_ports "70000"`}},
		{"uplink with a space", Config{Uplink: "eth 0"}, []string{`network uplink "eth 0" is not allowed`, `or "none"`}},
		{"subnet that is not CIDR", Config{Subnet: "10.100.0.0"}, []string{`network subnet "10.100.0.0" is not allowed: an IPv4 network in CIDR notation`}},
		{"IPv6 subnet", Config{Subnet: "fd00::/64"}, []string{`network subnet "fd00::/64"`}},
		{"subnet too small", Config{Subnet: "10.0.0.0/31"}, []string{`network subnet "10.0.0.0/31" is not allowed: a prefix of at most /30`}},
		{"subnet with host bits", Config{Subnet: "10.100.3.7/16"}, []string{`network subnet "10.100.3.7/16" is not allowed: the network address with no host bits set: 10.100.0.0/16`}},
		{"gateway outside the subnet", Config{Gateway: "10.101.0.1"}, []string{`network gateway "10.101.0.1" is not allowed: an address inside 10.100.0.0/16`}},
		{"gateway on the broadcast address", Config{Subnet: "10.1.2.0/24", Gateway: "10.1.2.255"}, []string{`network gateway "10.1.2.255"`}},
		{"dns that is a name", Config{DNS: []string{"dns.example"}}, []string{`network dns "dns.example" is not allowed: an IPv4 or IPv6 address`}},
		{"every bad setting at once", Config{Bridge: "", Subnet: "x", DNS: []string{"y"}, Uplink: "a:b"}, []string{`subnet "x"`, `dns "y"`, `uplink "a:b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.cfg.Check()
			for _, err := range errs {
				var se *SettingError
				if !errors.As(err, &se) || !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("%v is not a *SettingError and ErrInvalidConfig", err)
				}
			}
			if len(errs) == 0 {
				t.Fatal("no error")
			}
			err := errors.Join(errs...)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestBroadcastAndHostAddresses(t *testing.T) {
	p := netip.MustParsePrefix("10.1.2.0/23")
	if got := broadcast(p); got != netip.MustParseAddr("10.1.3.255") {
		t.Fatalf("broadcast(%s) = %s", p, got)
	}
	for addr, want := range map[string]bool{"10.1.2.0": false, "10.1.2.1": true, "10.1.3.254": true, "10.1.3.255": false, "10.1.4.1": false} {
		if got := hostAddress(p, netip.MustParseAddr(addr)); got != want {
			t.Errorf("hostAddress(%s, %s) = %v, want %v", p, addr, got, want)
		}
	}
}

func TestTapNameFitsAnInterfaceNameAndFollowsTheID(t *testing.T) {
	a, b := TapName("01JD8X3K5QZ9ABCDEFGHJKMNPQ"), TapName("01JD8X3K5QZ9ABCDEFGHJKMNPR")
	if a != "hmcdefghjkmnpq" {
		t.Fatalf("TapName = %q", a)
	}
	if len(a) > 15 || checkIfName(a) != "" {
		t.Fatalf("TapName %q is not a valid interface name", a)
	}
	if a == b {
		t.Fatalf("two ids share the TAP name %q", a)
	}
}

func TestParseMAC(t *testing.T) {
	for in, want := range map[string]string{"02:AB:cd:00:00:01": "02:ab:cd:00:00:01", "02-00-00-00-00-09": "02:00:00:00:00:09"} {
		if got, err := ParseMAC(in); err != nil || got != want {
			t.Errorf("ParseMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"01:00:5e:00:00:01", "00:00:00:00:00:00", "02:00:00:00:00", "02:00:00:00:00:00:00:01", "zz:00:00:00:00:01"} {
		if _, err := ParseMAC(bad); !errors.Is(err, ErrInvalidAddress) || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseMAC(%q) = %v, want ErrInvalidAddress naming it", bad, err)
		}
	}
}

func TestDerivedMACNamesTheAddress(t *testing.T) {
	if got := macFor(netip.MustParseAddr("10.100.1.2")); got != "02:68:0a:64:01:02" {
		t.Fatalf("macFor = %s", got)
	}
}

func TestAddressesAnInstanceCanHave(t *testing.T) {
	a := Addresses{Subnet: netip.MustParsePrefix("10.1.2.0/24"), Gateway: netip.MustParseAddr("10.1.2.254")}
	if a.First() != netip.MustParseAddr("10.1.2.1") || a.Last() != netip.MustParseAddr("10.1.2.254") {
		t.Fatalf("range %s to %s", a.First(), a.Last())
	}
	for addr, want := range map[string]bool{
		"10.1.2.0": false, "10.1.2.1": true, "10.1.2.253": true, "10.1.2.254": false, "10.1.2.255": false,
		"10.1.3.1": false, "::ffff:10.1.2.5": false, "fd00::5": false,
	} {
		if got := a.Leasable(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Leasable(%s) = %v, want %v", addr, got, want)
		}
	}
	n, err := New(nil, Config{Subnet: "10.1.2.0/24", Gateway: "10.1.2.254"}, "")
	if err != nil || n.Addresses() != a {
		t.Fatalf("New: %v, addresses %+v, want %+v", err, n.Addresses(), a)
	}
}
