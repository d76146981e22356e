package network

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Config is the host network that instances join: one bridge with the gateway address, one IPv4
// subnet the instances' addresses come from, and NAT from the subnet out of the uplink.
type Config struct {
	// Enabled turns networking on. The zero Config leaves instances without a network device.
	Enabled bool
	// Bridge is the Linux bridge every instance's TAP joins (default DefaultBridge).
	Bridge string
	// Subnet is the IPv4 network of the bridge in CIDR notation (default DefaultSubnet).
	Subnet string
	// Gateway is the bridge's own address and the guests' default route (default: the subnet's
	// first address).
	Gateway string
	// DNS are the name servers guests get in /etc/resolv.conf; none leaves the image's file alone.
	DNS []string
	// Uplink is the interface guest traffic leaves the host through, masqueraded. "" picks the
	// interface of the host's default route (no NAT when there is none); UplinkNone turns NAT off.
	Uplink string
	// HostPorts are the TCP ports of the gateway address that guests may reach on the host (see
	// isolation.go); none by default.
	HostPorts []int
}

// Defaults and special values of Config.
const (
	DefaultBridge = "vmbr0"
	DefaultSubnet = "10.100.0.0/16"
	// UplinkNone keeps guests on the bridge: no NAT rule, whatever routes the host has.
	UplinkNone = "none"
)

// maxPrefixBits leaves a subnet room for the gateway and at least one instance.
const maxPrefixBits = 30

// settings is a validated Config with its defaults applied.
type settings struct {
	bridge  string
	subnet  netip.Prefix
	gateway netip.Addr
	dns     []netip.Addr
	uplink  string // "" = the default route's interface
	ports   []int
}

// Check applies the defaults and checks every setting of c as New does, without a host: one
// *SettingError for each setting that is not allowed, none when c is good.
func (c Config) Check() []error {
	_, errs := c.resolve()
	return errs
}

// resolve applies the defaults and checks every setting, reporting all that are wrong at once.
func (c Config) resolve() (settings, []error) {
	s := settings{bridge: c.Bridge, uplink: c.Uplink}
	if s.bridge == "" {
		s.bridge = DefaultBridge
	}
	subnet := c.Subnet
	if subnet == "" {
		subnet = DefaultSubnet
	}
	var errs []error
	if err := checkIfName(s.bridge); err != "" {
		errs = append(errs, &SettingError{Setting: "bridge", Value: s.bridge, Allowed: err})
	}
	if s.uplink != "" && s.uplink != UplinkNone {
		if err := checkIfName(s.uplink); err != "" {
			errs = append(errs, &SettingError{Setting: "uplink", Value: s.uplink, Allowed: err + `, or "none"`})
		}
	}
	p, err := netip.ParsePrefix(subnet)
	switch {
	case err != nil || !p.Addr().Is4():
		errs = append(errs, &SettingError{Setting: "subnet", Value: subnet, Allowed: "an IPv4 network in CIDR notation, such as " + DefaultSubnet})
	case p.Bits() > maxPrefixBits:
		errs = append(errs, &SettingError{Setting: "subnet", Value: subnet, Allowed: fmt.Sprintf("a prefix of at most /%d, which leaves room for the gateway and instances", maxPrefixBits)})
	case p != p.Masked():
		errs = append(errs, &SettingError{Setting: "subnet", Value: subnet, Allowed: "the network address with no host bits set: " + p.Masked().String()})
	default:
		s.subnet = p
	}
	if s.subnet.IsValid() {
		s.gateway = s.subnet.Addr().Next()
		if c.Gateway != "" {
			gw, err := netip.ParseAddr(c.Gateway)
			if err != nil || !hostAddress(s.subnet, gw) {
				errs = append(errs, &SettingError{Setting: "gateway", Value: c.Gateway, Allowed: "an address inside " + s.subnet.String() + " other than its network and broadcast addresses"})
			}
			s.gateway = gw
		}
	}
	for _, p := range c.HostPorts {
		if p < 1 || p > 65535 {
			errs = append(errs, &SettingError{Setting: "host_ports", Value: fmt.Sprint(p), Allowed: "a TCP port from 1 to 65535"})
			continue
		}
		if !slices.Contains(s.ports, p) {
			s.ports = append(s.ports, p)
		}
	}
	slices.Sort(s.ports)
	for _, d := range c.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil || a.Zone() != "" {
			errs = append(errs, &SettingError{Setting: "dns", Value: d, Allowed: "an IPv4 or IPv6 address"})
			continue
		}
		s.dns = append(s.dns, a)
	}
	return s, errs
}

// checkIfName says what is wrong with a Linux interface name, or "" when nothing is.
func checkIfName(name string) string {
	const rule = "1 to 15 bytes without '/', ':' or white space, other than . and .."
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\r\v\f") {
		return rule
	}
	return ""
}

// hostAddress reports whether a is an address of p that a host can have: inside p, and neither
// its network nor its broadcast address.
func hostAddress(p netip.Prefix, a netip.Addr) bool {
	return a.Is4() && p.Contains(a) && a != p.Addr() && a != broadcast(p)
}

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}
