package network

import (
	"context"
	"fmt"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// TapPrefix starts the name of every TAP device this package makes.
const TapPrefix = "hm"

// tapIDChars is how much of an instance id names its TAP: with the prefix it fills the 15 bytes
// a Linux interface name holds, and the tail of a ULID is random, so names do not collide.
const tapIDChars = 12

// TapName is the TAP device of the instance with id.
func TapName(id string) string {
	if len(id) > tapIDChars {
		id = id[len(id)-tapIDChars:]
	}
	return TapPrefix + strings.ToLower(id)
}

// Tap is a TAP device this data directory made.
type Tap struct {
	Name  string
	Owner string // the instance id it was made for
	// Master is the bridge it is attached to ("" when none).
	Master string
}

// CreateTap makes the TAP device name for owner, attached to the bridge and up, before a VMM
// opens it. A device of that name left behind (its VMM died) is replaced. user, when not "", is
// the host user the VMM runs as, who is let open the device without privilege.
func (n *Network) CreateTap(ctx context.Context, name, owner, user string) error {
	if err := checkIfName(name); err != "" {
		return fmt.Errorf("%w: TAP name %q: %s", ErrInvalidConfig, name, err)
	}
	add := []string{"tuntap", "add", "dev", name, "mode", "tap"}
	if user != "" {
		add = append(add, "user", user)
	}
	if _, err := n.ip(ctx, add...); err != nil {
		if derr := DeleteTap(ctx, n.h, name); derr != nil {
			return fmt.Errorf("create TAP %s: %w", name, err)
		}
		if _, err := n.ip(ctx, add...); err != nil {
			return fmt.Errorf("create TAP %s: %w", name, err)
		}
	}
	if _, err := n.ip(ctx, "link", "set", "dev", name, "master", n.s.bridge, "alias", n.alias(owner), "up"); err != nil {
		_ = DeleteTap(context.WithoutCancel(ctx), n.h, name)
		return fmt.Errorf("attach TAP %s to bridge %s: %w", name, n.s.bridge, err)
	}
	return nil
}

// DeleteTap removes the TAP device name from h; one that does not exist is no error. It needs no
// network configuration, so a TAP can be removed after networking was turned off.
func DeleteTap(ctx context.Context, h host.Host, name string) error {
	if name == "" {
		return nil
	}
	_, err := h.Run(ctx, nil, "ip", "link", "delete", "dev", name)
	if err != nil && !isNoDevice(err) {
		return fmt.Errorf("delete TAP %s: %w", name, err)
	}
	return nil
}

// Taps lists the TAP devices this data directory made, as their aliases record.
func (n *Network) Taps(ctx context.Context) ([]Tap, error) {
	links, err := n.links(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list the host's interfaces: %w", err)
	}
	prefix := n.alias("") + ":"
	var taps []Tap
	for _, l := range links {
		owner, ok := strings.CutPrefix(l.Alias, prefix)
		if !ok || l.LinkInfo.Kind != "tun" || !strings.HasPrefix(l.Name, TapPrefix) {
			continue
		}
		taps = append(taps, Tap{Name: l.Name, Owner: owner, Master: l.Master})
	}
	return taps, nil
}
