package instances

import (
	"context"
	"fmt"
	"strings"
)

// Update changes an instance's program (entrypoint, cmd, env, workdir). A running or paused guest
// is restarted in place to pick it up, keeping its overlay, and comes back in the same state; a
// stopped one takes it at its next start. Anything else in spec must match the instance.
func (m *Manager) Update(ctx context.Context, idOrName string, spec Spec) (*Instance, error) {
	id, err := m.resolve(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	err = m.withLock(ctx, id, func() error {
		md, err := m.loadMetadata(ctx, id)
		if err != nil {
			return err
		}
		if spec.Hypervisor == "" {
			spec.Hypervisor = md.Hypervisor
		}
		if err := spec.Validate(); err != nil {
			return err
		}
		if diff := immutableDiff(md.spec(), spec); len(diff) > 0 {
			return fmt.Errorf("%w: %s cannot change on an existing instance (the instance must be replaced)", ErrInvalidConfig, strings.Join(diff, ", "))
		}
		cur, _, err := m.deriveState(ctx, md)
		if err != nil {
			return err
		}
		if cur == Standby {
			return fmt.Errorf("%w: %s is in Standby; changing its program needs a restart, which would discard the snapshot. Set state = \"Running\" first, then change it", ErrInvalidState, md.Name)
		}
		img, err := m.image(ctx, md)
		if err != nil {
			return err
		}
		if _, err := resolveProgram(spec, img); err != nil {
			return err
		}
		md.Entrypoint, md.Cmd, md.Env, md.Workdir = spec.Entrypoint, spec.Cmd, spec.Env, spec.Workdir
		if err := m.saveMetadata(ctx, md); err != nil {
			return err
		}
		if cur == Stopped {
			return nil
		}
		m.log(ctx, "restarting to apply a new program", map[string]any{"id": id, "state": string(cur)})
		if err := m.reach(ctx, id, Stopped); err != nil {
			return err
		}
		back := cur
		if back != Paused {
			back = Running
		}
		return m.reach(ctx, id, back)
	})
	if err != nil {
		return nil, err
	}
	return m.Get(ctx, id)
}

// immutableDiff names the fields that differ and need a new instance.
func immutableDiff(have, want Spec) []string {
	var diff []string
	if have.Name != want.Name {
		diff = append(diff, "name")
	}
	if have.Image != want.Image {
		diff = append(diff, "image")
	}
	if have.VCPUs != want.VCPUs {
		diff = append(diff, "vcpus")
	}
	if have.Memory != want.Memory {
		diff = append(diff, "memory")
	}
	if have.Hotplug != want.Hotplug {
		diff = append(diff, "hotplug_memory")
	}
	if have.OverlaySize != want.OverlaySize {
		diff = append(diff, "overlay_size")
	}
	if have.Hypervisor != want.Hypervisor {
		diff = append(diff, "hypervisor")
	}
	return append(diff, NetworkDiff(have.Network, want.Network)...)
}
