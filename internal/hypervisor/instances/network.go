package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// An instance's network interface in the flows: its IP and MAC are leased on create and written
// to metadata before any TAP exists; its TAP (named from the id) is made just before a VMM starts
// (boot or restore) and removed whenever the VMM is gone (clearPID); the lease is released once
// the instance's files are gone. Nothing of it outlives a failed create.

// NetworkSpec is an instance's network settings.
type NetworkSpec struct {
	// Disabled gives the instance no network interface.
	Disabled bool
	// IP is a fixed address inside the host network's subnet; "" takes the next free one.
	IP string
	// MAC is a fixed unicast MAC address; "" derives one from the IP.
	MAC string
	// PeerGroups are the groups whose guests this one reaches on the bridge, and is reached by;
	// guests that share none are isolated from each other (network/isolation.go). They change
	// without a restart.
	PeerGroups []string
}

func (ns *NetworkSpec) validate() []error {
	if ns == nil {
		return nil
	}
	var errs []error
	if ns.Disabled && (ns.IP != "" || ns.MAC != "") {
		errs = append(errs, &FieldError{Field: "network", Value: "disabled", Allowed: "no ip or mac for an instance without a network"})
	}
	if ns.IP != "" {
		if err := ValidateIP(ns.IP); err != nil {
			errs = append(errs, err)
		}
	}
	if ns.MAC != "" {
		if err := ValidateMAC(ns.MAC); err != nil {
			errs = append(errs, err)
		}
	}
	for _, g := range ns.PeerGroups {
		if err := ValidatePeerGroup(g); err != nil {
			errs = append(errs, err)
		}
	}
	if ns.Disabled && len(ns.PeerGroups) > 0 {
		errs = append(errs, &FieldError{Field: "network", Value: "disabled", Allowed: "no peer_groups for an instance without a network"})
	}
	return errs
}

// ValidatePeerGroup checks the name of a peer group.
func ValidatePeerGroup(g string) error {
	if network.CheckPeerGroup(g) != nil {
		return &FieldError{Field: "network.peer_groups", Value: g, Allowed: network.PeerGroupRule}
	}
	return nil
}

// peerGroupsOf is what a spec asks for, sorted and without repeats; nil for none.
func peerGroupsOf(ns *NetworkSpec) []string {
	if ns == nil || len(ns.PeerGroups) == 0 {
		return nil
	}
	return slices.Compact(slices.Sorted(slices.Values(ns.PeerGroups)))
}

// ValidateIP checks a fixed instance address; which addresses the host network can lease is
// network.Addresses' rule, checked once the host network is known.
func ValidateIP(ip string) error {
	if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
		return &FieldError{Field: "network.ip", Value: ip, Allowed: "an IPv4 address inside the provider's network subnet; leave ip out for the next free one"}
	}
	return nil
}

// ValidateMAC checks a fixed instance MAC address.
func ValidateMAC(mac string) error {
	if _, err := network.ParseMAC(mac); err != nil {
		return &FieldError{Field: "network.mac", Value: mac, Allowed: "a unicast MAC address such as 02:00:00:00:00:01 (six bytes, the first one even); leave mac out for one derived from the ip"}
	}
	return nil
}

// NetworkDiff names the network settings of want that differ from have, an instance's; unset
// ones ask for nothing.
func NetworkDiff(have, want *NetworkSpec) []string {
	if want == nil || have == nil {
		return nil
	}
	if want.Disabled != have.Disabled {
		return []string{"network"}
	}
	var diff []string
	if want.IP != "" && want.IP != have.IP {
		diff = append(diff, "network.ip")
	}
	if mac, err := network.ParseMAC(want.MAC); want.MAC != "" && (err != nil || mac != have.MAC) {
		diff = append(diff, "network.mac")
	}
	return diff
}

// networkSpec is the instance's network as settings.
func (md *metadata) networkSpec() *NetworkSpec {
	if md.IPAddress == "" {
		return &NetworkSpec{Disabled: true}
	}
	return &NetworkSpec{IP: md.IPAddress, MAC: md.MACAddress, PeerGroups: md.PeerGroups}
}

// setLease records the instance's addresses and the TAP device named from its id.
func (md *metadata) setLease(l *network.Lease) {
	if l == nil {
		return
	}
	md.IPAddress, md.MACAddress, md.TapDevice = l.IP.String(), l.MAC, network.TapName(md.ID)
}

// vmmNet is the VMM's network device; nil when the instance has no network.
func (md *metadata) vmmNet() *vmm.NetConfig {
	if md.IPAddress == "" {
		return nil
	}
	return &vmm.NetConfig{Tap: md.TapDevice, MAC: md.MACAddress}
}

// guestNetwork is what the guest init configures eth0 with (system.ConfigNet*).
type guestNetwork struct {
	Address string // ip/prefix length
	Gateway string
	DNS     []string
	MAC     string
}

// guestNetwork is the instance's interface as the guest configures it; nil when it has none.
func (m *Manager) guestNetwork(md *metadata) (*guestNetwork, error) {
	if md.IPAddress == "" {
		return nil, nil
	}
	if m.net == nil {
		return nil, m.errNoHostNetwork(md)
	}
	ip, err := netip.ParseAddr(md.IPAddress)
	if err != nil || !m.net.Subnet().Contains(ip) {
		return nil, fmt.Errorf("%w: instance %s has the address %s, outside the host network's subnet %s (the subnet changed after it was created); recreate the instance",
			ErrInvalidConfig, md.Name, md.IPAddress, m.net.Subnet())
	}
	g := &guestNetwork{Address: m.net.Interface(ip).String(), Gateway: m.net.Gateway().String(), MAC: md.MACAddress}
	for _, d := range m.net.DNS() {
		g.DNS = append(g.DNS, d.String())
	}
	return g, nil
}

// Addresses is which addresses instances can have on the host network; nil when they get no
// network.
func (m *Manager) Addresses() *network.Addresses {
	if m.net == nil {
		return nil
	}
	a := m.net.Addresses()
	return &a
}

func (m *Manager) errNoHostNetwork(md *metadata) error {
	return fmt.Errorf("%w: instance %s has the network address %s, but this provider has no host network configured; configure it again, or recreate the instance without a network",
		ErrInvalidConfig, md.Name, md.IPAddress)
}

// ensureNetwork sets the host network up once per manager, and then removes what crashed or
// killed instances left of theirs.
func (m *Manager) ensureNetwork(ctx context.Context) error {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	if m.netReady {
		return nil
	}
	t0 := time.Now()
	uplink, err := m.net.Setup(ctx)
	if err != nil {
		return fmt.Errorf("host network: %w", err)
	}
	m.netReady = true
	m.log(ctx, "host network ready", map[string]any{"bridge": m.net.Bridge(), "subnet": m.net.Subnet().String(), "uplink": uplink, "ms": time.Since(t0).Milliseconds()})
	removed, err := m.RemoveNetworkOrphans(ctx)
	if err != nil {
		m.log(ctx, "could not remove orphaned network devices", map[string]any{"error": err.Error()})
	} else if len(removed) > 0 {
		m.log(ctx, "removed orphaned network devices", map[string]any{"removed": removed})
	}
	return nil
}

// allocateNetwork leases the addresses of a new instance; nil when it gets no network.
func (m *Manager) allocateNetwork(ctx context.Context, id string, ns *NetworkSpec) (*network.Lease, error) {
	if ns != nil && ns.Disabled {
		return nil, nil
	}
	if m.net == nil {
		if ns != nil && (ns.IP != "" || ns.MAC != "") {
			return nil, &FieldError{Field: "network", Value: strings.Trim(ns.IP+" "+ns.MAC, " "), Allowed: "no fixed ip or mac: this provider has no host network configured"}
		}
		return nil, nil
	}
	if err := m.ensureNetwork(ctx); err != nil {
		return nil, err
	}
	var req network.Request
	if ns != nil {
		req = network.Request{IP: ns.IP, MAC: ns.MAC}
	}
	lease, err := m.net.Allocate(ctx, id, req)
	if errors.Is(err, network.ErrInvalidAddress) || errors.Is(err, network.ErrAddressInUse) {
		return nil, fmt.Errorf("%w: network: %w", ErrInvalidConfig, err)
	}
	if err != nil {
		return nil, fmt.Errorf("lease a network address: %w", err)
	}
	m.log(ctx, "network address leased", map[string]any{"id": id, "ip": lease.IP.String(), "mac": lease.MAC})
	return &lease, nil
}

// plugTap makes the instance's TAP device for a VMM about to start with nc. Its lease is
// asserted again first, so an address is never used by two instances even if the lease table
// was lost.
func (m *Manager) plugTap(ctx context.Context, md *metadata, nc *vmm.NetConfig) error {
	if nc == nil {
		return nil
	}
	if m.net == nil {
		return m.errNoHostNetwork(md)
	}
	if err := m.ensureNetwork(ctx); err != nil {
		return err
	}
	if _, err := m.net.Allocate(ctx, md.ID, network.Request{IP: md.IPAddress, MAC: nc.MAC}); err != nil {
		return fmt.Errorf("the network address of %s: %w", md.Name, err)
	}
	if err := m.net.CreateTap(ctx, nc.Tap, md.ID, m.vmmUser(md.Hypervisor)); err != nil {
		return fmt.Errorf("the network device of %s: %w", md.Name, err)
	}
	// The TAP is isolated before any VMM can send through it: fail closed.
	if err := m.net.Join(ctx, nc.Tap, md.PeerGroups); err != nil {
		_ = network.DeleteTap(context.WithoutCancel(ctx), m.host, nc.Tap)
		return fmt.Errorf("the network isolation of %s: %w", md.Name, err)
	}
	return nil
}

// unplugTap removes the instance's TAP device, once no VMM holds it, and its isolation rules.
func (m *Manager) unplugTap(ctx context.Context, md *metadata) error {
	if err := network.DeleteTap(ctx, m.host, md.TapDevice); err != nil {
		return err
	}
	if m.net == nil || md.TapDevice == "" {
		return nil
	}
	return m.net.Leave(ctx, md.TapDevice)
}

// setPeerGroups gives the instance new peer groups; a guest that is on the bridge reaches its
// new peers at once. The caller holds the instance lock.
func (m *Manager) setPeerGroups(ctx context.Context, md *metadata, groups []string) error {
	md.PeerGroups = groups
	if err := m.saveMetadata(ctx, md); err != nil {
		return err
	}
	if m.net == nil || md.TapDevice == "" {
		return nil
	}
	return m.net.Join(ctx, md.TapDevice, groups) // a TAP that is not on the bridge drops out again
}

// releaseLease frees the instance's addresses, even when networking has since been turned off.
func (m *Manager) releaseLease(ctx context.Context, md *metadata) error {
	if md.IPAddress == "" {
		return nil
	}
	n := m.net
	if n == nil {
		var err error
		if n, err = network.New(m.host, network.Config{}, m.layout.network()); err != nil {
			return err
		}
	}
	return n.Release(ctx, md.ID)
}

// busyWait is how long the orphan sweep waits for an instance's lock before it leaves the
// instance alone: an instance in the middle of an operation looks after its own TAP.
const busyWait = 100 * time.Millisecond

// RemoveNetworkOrphans removes what crashes and out-of-band kills left behind: TAP devices of
// this data directory whose instance is gone or has no VMM, and leases of instances whose
// directory is gone. It returns what it removed. Without a host network it does nothing.
func (m *Manager) RemoveNetworkOrphans(ctx context.Context) ([]string, error) {
	if m.net == nil {
		return nil, nil
	}
	var removed []string
	taps, err := m.net.Taps(ctx)
	if err != nil {
		return nil, err
	}
	for _, tap := range taps {
		orphan, err := m.tapOrphaned(ctx, tap)
		if err != nil {
			return removed, err
		}
		if !orphan {
			continue
		}
		if err := network.DeleteTap(ctx, m.host, tap.Name); err != nil {
			return removed, err
		}
		removed = append(removed, "tap "+tap.Name)
	}
	leases, err := m.net.Leases(ctx)
	if err != nil {
		return removed, err
	}
	for _, l := range leases {
		if _, err := m.host.Stat(ctx, m.layout.dir(l.Owner)); !errors.Is(err, fs.ErrNotExist) {
			continue // the directory is made before the lease, so an instance being created keeps it
		}
		if err := m.net.Release(ctx, l.Owner); err != nil {
			return removed, err
		}
		removed = append(removed, "lease "+l.IP.String())
	}
	return removed, nil
}

// tapOrphaned reports whether tap belongs to no live VMM: its instance is gone, names another
// TAP, or has no VMM running. A busy instance is not looked at.
func (m *Manager) tapOrphaned(ctx context.Context, tap network.Tap) (bool, error) {
	md, err := m.loadMetadata(ctx, tap.Owner)
	if errors.Is(err, ErrNotFound) {
		return true, nil // a TAP is only made after the metadata is written
	}
	if err != nil {
		return false, err
	}
	if md.TapDevice != tap.Name {
		return true, nil
	}
	lctx, cancel := context.WithTimeout(ctx, busyWait)
	unlock, err := m.host.Lock(lctx, m.layout.lock(md.ID))
	cancel()
	if err != nil {
		return false, nil
	}
	defer unlock()
	if md, err = m.loadMetadata(ctx, tap.Owner); errors.Is(err, ErrNotFound) {
		return true, nil // deleted meanwhile
	} else if err != nil {
		return false, err
	}
	alive, err := m.host.ProcessAlive(ctx, md.PID, m.layout.dir(md.ID))
	return !alive, err
}
