package network

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"path"
	"sort"
	"strings"
)

// Lease is the IP and MAC address that belong to one instance for its whole life.
type Lease struct {
	Owner string     `json:"owner"` // instance id
	IP    netip.Addr `json:"ip"`
	MAC   string     `json:"mac"` // lower-case, colon-separated
}

// Request asks for particular addresses; an empty field takes the next free one.
type Request struct {
	IP  string
	MAC string
}

// leaseFile is leases.json: every lease of the data directory, sorted by address.
type leaseFile struct {
	Leases []Lease `json:"leases"`
}

func (n *Network) leasesPath() string { return path.Join(n.dir, "leases.json") }

// withLeases runs fn on the lease table while holding the host-wide lease lock, and writes the
// table back (atomically) when fn changed it. Every process that allocates on this host takes
// the same lock, which is what makes allocation race-free across provider runs.
func (n *Network) withLeases(ctx context.Context, fn func(*leaseFile) (changed bool, err error)) error {
	if err := n.h.MkdirAll(ctx, n.dir, 0o750); err != nil {
		return fmt.Errorf("network state directory: %w", err)
	}
	unlock, err := n.h.Lock(ctx, path.Join(n.dir, "leases.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	var t leaseFile
	b, err := n.h.ReadFile(ctx, n.leasesPath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read the address leases: %w", err)
	default:
		if err := json.Unmarshal(b, &t); err != nil {
			return fmt.Errorf("the address leases in %s are corrupt: %w", n.leasesPath(), err)
		}
	}
	changed, err := fn(&t)
	if err != nil || !changed {
		return err
	}
	sort.Slice(t.Leases, func(i, j int) bool { return t.Leases[i].IP.Less(t.Leases[j].IP) })
	out, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	if err := n.h.WriteFile(ctx, n.leasesPath(), out, 0o640); err != nil {
		return fmt.Errorf("write the address leases: %w", err)
	}
	return nil
}

// Allocate leases an IP and a MAC address to owner: the requested ones, or the lowest free
// address of the subnet and a MAC derived from it. An owner that already holds a lease gets it
// back, so a retried create does not take a second address.
func (n *Network) Allocate(ctx context.Context, owner string, req Request) (Lease, error) {
	if owner == "" {
		return Lease{}, errors.New("allocate: empty owner")
	}
	var wantIP netip.Addr
	if req.IP != "" {
		a := n.Addresses()
		ip, err := netip.ParseAddr(req.IP)
		if err != nil || !a.Leasable(ip) {
			return Lease{}, fmt.Errorf("%w: ip %q is not an address of the subnet %s that an instance can have (from %s to %s, except the gateway %s)",
				ErrInvalidAddress, req.IP, a.Subnet, a.First(), a.Last(), a.Gateway)
		}
		wantIP = ip
	}
	wantMAC := ""
	if req.MAC != "" {
		mac, err := ParseMAC(req.MAC)
		if err != nil {
			return Lease{}, err
		}
		wantMAC = mac
	}
	var lease Lease
	err := n.withLeases(ctx, func(t *leaseFile) (bool, error) {
		usedIP := map[netip.Addr]string{}
		usedMAC := map[string]string{macFor(n.s.gateway): "the bridge"}
		for _, l := range t.Leases {
			if l.Owner == owner {
				if (wantIP.IsValid() && wantIP != l.IP) || (wantMAC != "" && wantMAC != l.MAC) {
					return false, fmt.Errorf("%w: instance %s already holds ip %s and mac %s", ErrAddressInUse, owner, l.IP, l.MAC)
				}
				lease = l
				return false, nil
			}
			usedIP[l.IP], usedMAC[l.MAC] = "instance "+l.Owner, "instance "+l.Owner
		}
		lease = Lease{Owner: owner, IP: wantIP, MAC: wantMAC}
		if lease.IP.IsValid() {
			if by, ok := usedIP[lease.IP]; ok {
				return false, fmt.Errorf("%w: ip %s belongs to %s", ErrAddressInUse, lease.IP, by)
			}
		} else if lease.IP = n.firstFree(usedIP); !lease.IP.IsValid() {
			return false, fmt.Errorf("%w: all of %s is leased (%d instances)", ErrSubnetFull, n.s.subnet, len(t.Leases))
		}
		if lease.MAC != "" {
			if by, ok := usedMAC[lease.MAC]; ok {
				return false, fmt.Errorf("%w: mac %s belongs to %s", ErrAddressInUse, lease.MAC, by)
			}
		} else {
			mac, err := freeMAC(lease.IP, usedMAC)
			if err != nil {
				return false, err
			}
			lease.MAC = mac
		}
		t.Leases = append(t.Leases, lease)
		return true, nil
	})
	return lease, err
}

// Release frees the addresses of owner; an owner without a lease is no error.
func (n *Network) Release(ctx context.Context, owner string) error {
	return n.withLeases(ctx, func(t *leaseFile) (bool, error) {
		kept := t.Leases[:0]
		for _, l := range t.Leases {
			if l.Owner != owner {
				kept = append(kept, l)
			}
		}
		changed := len(kept) != len(t.Leases)
		t.Leases = kept
		return changed, nil
	})
}

// Leases lists every lease, sorted by address.
func (n *Network) Leases(ctx context.Context) ([]Lease, error) {
	var out []Lease
	err := n.withLeases(ctx, func(t *leaseFile) (bool, error) {
		out = append(out, t.Leases...)
		return false, nil
	})
	return out, err
}

// firstFree is the lowest address an instance can have that is not used; invalid when there is
// none.
func (n *Network) firstFree(used map[netip.Addr]string) netip.Addr {
	a := n.Addresses()
	for ip, last := a.First(), a.Last(); ip.IsValid() && !last.Less(ip); ip = ip.Next() {
		if _, taken := used[ip]; !taken && a.Leasable(ip) {
			return ip
		}
	}
	return netip.Addr{}
}

// Addresses is which addresses of a host network an instance can have: those of the subnet other
// than its network and broadcast addresses and the gateway.
type Addresses struct {
	Subnet  netip.Prefix
	Gateway netip.Addr
}

// Addresses is which addresses the instances of this network can have.
func (n *Network) Addresses() Addresses { return Addresses{Subnet: n.s.subnet, Gateway: n.s.gateway} }

// Leasable reports whether an instance can have ip.
func (a Addresses) Leasable(ip netip.Addr) bool { return hostAddress(a.Subnet, ip) && ip != a.Gateway }

// First is the lowest address an instance can have, unless it is the gateway.
func (a Addresses) First() netip.Addr { return a.Subnet.Addr().Next() }

// Last is the highest address an instance can have, unless it is the gateway.
func (a Addresses) Last() netip.Addr { return broadcast(a.Subnet).Prev() }

// macPrefix starts every MAC this package makes: locally administered, unicast, and "h" in its
// second byte. The four bytes after it are the instance's IPv4 address, so a MAC names its IP at
// a glance and never collides with another derived one.
var macPrefix = [2]byte{0x02, 0x68}

// macFor is the MAC derived from an IPv4 address.
func macFor(ip netip.Addr) string {
	a := ip.As4()
	return net.HardwareAddr{macPrefix[0], macPrefix[1], a[0], a[1], a[2], a[3]}.String()
}

// freeMAC is the MAC derived from ip, or a random one with the same prefix when a fixed MAC of
// another instance already took it.
func freeMAC(ip netip.Addr, used map[string]string) (string, error) {
	mac := macFor(ip)
	for range 64 {
		if _, taken := used[mac]; !taken {
			return mac, nil
		}
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		mac = net.HardwareAddr(append(macPrefix[:], b...)).String()
	}
	return "", fmt.Errorf("%w: no free MAC address found", ErrSubnetFull)
}

// ParseMAC checks that s is a unicast Ethernet (48-bit) MAC address an instance can have, and
// returns it lower-case and colon-separated.
func ParseMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || hw[0]&1 != 0 || strings.Trim(hw.String(), "0:") == "" {
		return "", fmt.Errorf("%w: mac %q is not a unicast Ethernet address such as 02:00:00:00:00:01 (six bytes, the first one even)", ErrInvalidAddress, s)
	}
	return hw.String(), nil
}
