// Package network gives instances their place on the host network: one bridge per host with the
// gateway address and a NAT rule to the uplink, one TAP device per running instance, and IP and
// MAC addresses leased for an instance's whole life. Leases live on the host next to the
// instances, so concurrent creates and separate provider runs never hand out one address twice.
package network

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// Network is the host network of one data directory.
type Network struct {
	h   host.Host
	s   settings
	dir string // leases and locks, on the host
}

// New checks cfg and returns the host network it describes, keeping its state in dir on h. It
// touches nothing on the host; Setup does.
func New(h host.Host, cfg Config, dir string) (*Network, error) {
	s, errs := cfg.resolve()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Network{h: h, s: s, dir: dir}, nil
}

// Bridge is the name of the bridge instances join.
func (n *Network) Bridge() string { return n.s.bridge }

// Subnet is the network instance addresses come from.
func (n *Network) Subnet() netip.Prefix { return n.s.subnet }

// Gateway is the bridge's address, the guests' default route.
func (n *Network) Gateway() netip.Addr { return n.s.gateway }

// DNS are the name servers guests are given.
func (n *Network) DNS() []netip.Addr { return n.s.dns }

// Interface is ip with the subnet's prefix length, as a guest configures it.
func (n *Network) Interface(ip netip.Addr) netip.Prefix {
	return netip.PrefixFrom(ip, n.s.subnet.Bits())
}

// alias marks what this data directory made on the host: the bridge's alias is alias(""), each
// TAP's is alias(owner). Interface aliases hold up to 255 bytes, and the data directory names the
// provider installation, so two installations on one host never take each other's devices.
func (n *Network) alias(owner string) string {
	if owner == "" {
		return "hypeman:" + n.dir
	}
	return "hypeman:" + n.dir + ":" + owner
}

// Setup brings the host network to its configured state and returns the uplink guests are
// masqueraded out of ("" for none). It is idempotent and safe to run from several processes at
// once: it checks the tools and the capability it needs, refuses a subnet that overlaps a host
// route, creates the bridge with the gateway address, and creates (or removes) the NAT rule.
func (n *Network) Setup(ctx context.Context) (uplink string, err error) {
	if err := n.h.MkdirAll(ctx, n.dir, 0o750); err != nil {
		return "", fmt.Errorf("network state directory: %w", err)
	}
	unlock, err := n.h.Lock(ctx, path.Join(n.dir, "setup.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := n.h.LookPath(ctx, "ip"); err != nil {
		return "", fmt.Errorf("%w: the ip command (iproute2) is not installed on the host", ErrMissingTool)
	}
	if err := n.checkCapability(ctx); err != nil {
		return "", err
	}
	routes, err := n.routes(ctx)
	if err != nil {
		return "", err
	}
	if err := n.checkOverlap(routes); err != nil {
		return "", err
	}
	if err := n.ensureBridge(ctx); err != nil {
		return "", err
	}
	uplink, err = n.uplink(ctx, routes)
	if err != nil {
		return "", err
	}
	if uplink == "" {
		err = n.removeNAT(ctx)
	} else {
		err = n.ensureNAT(ctx, uplink)
	}
	if err != nil {
		return "", err
	}
	if err := n.recordUplink(ctx, uplink); err != nil {
		return "", err
	}
	return uplink, nil
}

// Teardown removes what Setup made: the NAT rule, and the bridge when this data directory
// created it and no interface is attached to it any more.
func (n *Network) Teardown(ctx context.Context) error {
	if err := n.removeNAT(ctx); err != nil {
		return err
	}
	if err := n.removeIsolation(ctx); err != nil {
		return err
	}
	br, ok, err := n.linkByName(ctx, n.s.bridge)
	if err != nil {
		return err
	}
	if !ok || br.Alias != n.alias("") {
		return nil // gone already, or not this data directory's to remove
	}
	links, err := n.links(ctx, "")
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Master == n.s.bridge {
			return nil
		}
	}
	if _, err := n.ip(ctx, "link", "delete", "dev", n.s.bridge); err != nil && !isNoDevice(err) {
		return fmt.Errorf("delete bridge %s: %w", n.s.bridge, err)
	}
	return nil
}

// capNetAdmin is CAP_NET_ADMIN's bit in a capability set.
const capNetAdmin = 12

// checkCapability reads the effective capabilities of a command run the way ip and nft are: a
// provider whose own capabilities are not inherited would pass a check of itself and fail later.
func (n *Network) checkCapability(ctx context.Context) error {
	out, err := n.h.Run(ctx, nil, "cat", "/proc/self/status")
	if err != nil {
		return fmt.Errorf("read the capabilities commands run with on the host: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return fmt.Errorf("unexpected CapEff line %q in /proc/self/status: %w", sc.Text(), err)
		}
		if caps&(1<<capNetAdmin) == 0 {
			return fmt.Errorf("%w: commands run on the host without CAP_NET_ADMIN (effective capabilities %s), which creating the bridge %s and TAP devices needs; run the provider as root on the host, or give it CAP_NET_ADMIN as an ambient capability",
				ErrNotPermitted, strings.TrimSpace(v), n.s.bridge)
		}
		return nil
	}
	return fmt.Errorf("no CapEff line in /proc/self/status of the host")
}

// checkOverlap refuses a subnet that a route of the host already covers, in part or whole,
// through another interface: the host could not tell the guests from that network.
func (n *Network) checkOverlap(routes []route) error {
	for _, r := range routes {
		p, ok := r.prefix()
		if !ok || r.Dev == n.s.bridge || !p.Overlaps(n.s.subnet) {
			continue
		}
		return fmt.Errorf("%w: network subnet %s overlaps the host route %s dev %s; choose a subnet that no route of the host covers",
			ErrSubnetOverlap, n.s.subnet, r.Dst, r.Dev)
	}
	return nil
}

// ensureBridge creates the bridge when it is missing (with a fixed MAC: a bridge that takes its
// ports' lowest MAC would change it whenever a TAP comes or goes, and guests would lose the
// gateway), adds the gateway address and brings it up.
func (n *Network) ensureBridge(ctx context.Context) error {
	br, ok, err := n.linkByName(ctx, n.s.bridge)
	if err != nil {
		return fmt.Errorf("inspect bridge %s: %w", n.s.bridge, err)
	}
	if !ok {
		if br, err = n.createBridge(ctx); err != nil {
			return err
		}
	}
	if br.LinkInfo.Kind != "bridge" {
		return fmt.Errorf("%w: network bridge %q names an existing %s interface of the host, not a bridge; choose another bridge name",
			ErrInvalidConfig, n.s.bridge, orUnknown(br.LinkInfo.Kind))
	}
	gw := netip.PrefixFrom(n.s.gateway, n.s.subnet.Bits()).String()
	if _, err := n.ip(ctx, "address", "replace", gw, "dev", n.s.bridge); err != nil {
		return fmt.Errorf("add the gateway address %s to bridge %s: %w", gw, n.s.bridge, err)
	}
	if _, err := n.ip(ctx, "link", "set", "dev", n.s.bridge, "up"); err != nil {
		return fmt.Errorf("bring bridge %s up: %w", n.s.bridge, err)
	}
	return nil
}

// createBridge adds the bridge and marks it as this data directory's.
func (n *Network) createBridge(ctx context.Context) (link, error) {
	_, err := n.ip(ctx, "link", "add", "name", n.s.bridge, "address", macFor(n.s.gateway), "type", "bridge")
	if err != nil {
		// Another installation may have created it a moment ago.
		if br, ok, _ := n.linkByName(ctx, n.s.bridge); ok {
			return br, nil
		}
		return link{}, fmt.Errorf("create bridge %s: %w", n.s.bridge, err)
	}
	if _, err := n.ip(ctx, "link", "set", "dev", n.s.bridge, "alias", n.alias("")); err != nil {
		return link{}, fmt.Errorf("mark bridge %s: %w", n.s.bridge, err)
	}
	br := link{Name: n.s.bridge}
	br.LinkInfo.Kind = "bridge"
	return br, nil
}

func orUnknown(kind string) string {
	if kind == "" {
		return "physical or unknown"
	}
	return kind
}

// uplink is the interface to masquerade out of: the configured one, which must exist, or the
// default route's, or none.
func (n *Network) uplink(ctx context.Context, routes []route) (string, error) {
	switch n.s.uplink {
	case UplinkNone:
		return "", nil
	case "":
		for _, r := range routes {
			if r.Dst == "default" && r.Dev != "" && r.Dev != n.s.bridge {
				return r.Dev, nil
			}
		}
		return "", nil
	}
	if _, ok, err := n.linkByName(ctx, n.s.uplink); err != nil {
		return "", err
	} else if !ok {
		return "", &SettingError{Setting: "uplink", Value: n.s.uplink, Allowed: `an interface the host has, "" for the default route's, or "none"`}
	}
	return n.s.uplink, nil
}

// forwarding reads whether the host routes IPv4 between interfaces, which NAT needs.
func (n *Network) forwarding(ctx context.Context) (bool, error) {
	b, err := n.h.ReadFile(ctx, "/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return false, fmt.Errorf("read net.ipv4.ip_forward: %w", err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
}
