package instances

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Update changes an instance's program (entrypoint, cmd, env, workdir), its sizes (resize.go:
// memory and vcpus within their ceilings live, anything else by a restart in place; overlay_size
// only grows),
// its peer groups (at once, whatever its state), and its image reference
// to another spelling of the image it has (another tag, transport or a digest that resolves to
// the same manifest). A running or paused guest is restarted in place to pick up a new program,
// keeping its overlay, and comes back in the same state; a stopped one takes it at its next
// start; a new spelling alone restarts nothing. Its volumes (Spec.Volumes) change the same way,
// checked against the volumes' other holders; a Standby instance refuses either change. Anything
// else in spec must match the instance.
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
		if err := m.checkWaitFor(spec); err != nil {
			return err
		}
		digest := md.ImageDigest
		if spec.Image != md.Image {
			if digest, err = m.images.Resolve(ctx, spec.Image); err != nil {
				return fmt.Errorf("cannot tell whether image %s is the instance's image %s (%s): %w", spec.Image, md.Image, md.ImageDigest, err)
			}
		}
		if diff := immutableDiff(md.spec(), md.ImageDigest, spec, digest); len(diff) > 0 {
			return fmt.Errorf("%w: %s cannot change on an existing instance (the instance must be replaced)", ErrInvalidConfig, strings.Join(diff, ", "))
		}
		if groups := peerGroupsOf(spec.Network); spec.Network != nil && !slices.Equal(groups, md.PeerGroups) {
			if err := m.setPeerGroups(ctx, md, groups); err != nil {
				return fmt.Errorf("change the peer groups of %s: %w", md.Name, err)
			}
		}
		newProgram := !sameProgram(md.spec(), spec)
		newVolumes := !sameMounts(md.Volumes, spec.Volumes)
		md.Image = spec.Image
		md.WaitFor = spec.WaitFor // applies from the next boot or restore: nothing restarts for it
		obs, err := m.observe(ctx, md)
		if err != nil {
			return err
		}
		cur, before := obs.state, obs.spec(md) // the memory the guest has, when a resize did not finish
		changes, err := resizeChanges(before, m.bootedLayout(md, cur), cur, spec)
		if err != nil {
			return err
		}
		md.VCPUs, md.MaxVCPUs, md.Memory, md.MaxMemory, md.Hotplug = spec.VCPUs, spec.MaxVCPUs, spec.Memory, spec.MaxMemory, spec.Hotplug
		if !newProgram && !newVolumes && len(changes) == 0 {
			return m.saveMetadata(ctx, md) // at most the same sizes written another way
		}
		restart := newProgram || newVolumes || needs(changes, ActionRestart)
		if cur == Standby && restart {
			what := "its program"
			switch {
			case !newProgram && !newVolumes:
				what = attributes(changes)
			case !newProgram:
				what = "its volumes"
			}
			return fmt.Errorf("%w: %s is in Standby; changing %s needs a restart, which would discard the snapshot. Set state = \"Running\" first, then change it", ErrInvalidState, md.Name, what)
		}
		if newProgram || newVolumes {
			img, err := m.image(ctx, md)
			if err != nil {
				return err
			}
			if _, err := resolveProgram(spec, img); err != nil {
				return err
			}
		}
		if newVolumes {
			if err := m.rebindVolumes(ctx, md, spec.Volumes); err != nil {
				return err
			}
		}
		md.Entrypoint, md.Cmd, md.Env, md.Workdir = spec.Entrypoint, spec.Cmd, spec.Env, spec.Workdir
		if err := m.saveMetadata(ctx, md); err != nil {
			return err
		}
		if len(changes) > 0 {
			m.log(ctx, "resizing", map[string]any{"id": id, "state": string(cur), "changes": fmt.Sprint(changes)})
		}
		switch {
		case cur == Stopped:
			return m.growOverlay(ctx, id, spec.OverlaySize)
		case !restart && needs(changes, ActionLive):
			return m.resizeLive(ctx, md, before)
		case !restart:
			return nil // Standby: the restore gives the new memory and vCPUs (power.go)
		}
		m.log(ctx, "restarting in place to apply a new program, volumes or size", map[string]any{"id": id, "state": string(cur)})
		if err := m.reach(ctx, id, Stopped); err != nil {
			return fmt.Errorf("restart %s in place: %w; it is left %s", md.Name, err, m.stateOf(ctx, id))
		}
		if err := m.growOverlay(ctx, id, spec.OverlaySize); err != nil {
			return fmt.Errorf("restart %s in place: %w; it is left %s", md.Name, err, m.stateOf(ctx, id))
		}
		back := cur
		if back != Paused {
			back = Running
		}
		if err := m.reach(ctx, id, back); err != nil {
			return fmt.Errorf("restart %s in place: %w; it is left %s", md.Name, err, m.stateOf(ctx, id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m.Get(ctx, id)
}

// immutableDiff names the fields that differ and need a new instance. Images are compared by
// the manifest digests their references resolve to, so another spelling of one image is none.
func immutableDiff(have Spec, haveDigest string, want Spec, wantDigest string) []string {
	var diff []string
	if have.Name != want.Name {
		diff = append(diff, "name")
	}
	if have.Image != want.Image && haveDigest != wantDigest {
		diff = append(diff, fmt.Sprintf("image (%s is %s, the instance has %s)", want.Image, wantDigest, haveDigest))
	}
	if have.Hypervisor != want.Hypervisor {
		diff = append(diff, "hypervisor")
	}
	return append(diff, NetworkDiff(have.Network, want.Network)...)
}

// sameProgram reports whether two specs run the same program.
func sameProgram(a, b Spec) bool {
	return slices.Equal(a.Entrypoint, b.Entrypoint) && (a.Entrypoint == nil) == (b.Entrypoint == nil) &&
		slices.Equal(a.Cmd, b.Cmd) && (a.Cmd == nil) == (b.Cmd == nil) &&
		maps.Equal(a.Env, b.Env) && (a.Env == nil) == (b.Env == nil) && a.Workdir == b.Workdir
}

// sameMounts reports whether two lists attach the same volumes in the same way.
func sameMounts(a, b []VolumeMount) bool { return slices.Equal(a, b) }

// rebindVolumes moves md from its mounts to want: the metadata lists want first, then the new
// holds are recorded (checked under the volumes' locks), then the dropped ones are detached. A
// refused hold puts the metadata and the records back as they were. The caller holds md's lock
// and saves md afterwards.
func (m *Manager) rebindVolumes(ctx context.Context, md *metadata, want []VolumeMount) error {
	old := md.Volumes
	md.Volumes = want
	if err := m.saveMetadata(ctx, md); err != nil {
		md.Volumes = old
		return err
	}
	if err := m.attach(ctx, md, want); err != nil {
		md.Volumes = old
		uctx := context.WithoutCancel(ctx)
		if serr := m.saveMetadata(uctx, md); serr != nil {
			return fmt.Errorf("%w; and its volumes could not be put back: %w", err, serr)
		}
		_ = m.attach(uctx, md, old) // the records attach undid for volumes the instance keeps
		return err
	}
	var dropped []string
	for _, v := range old {
		if !slices.ContainsFunc(want, func(w VolumeMount) bool { return w.VolumeID == v.VolumeID }) {
			dropped = append(dropped, v.VolumeID)
		}
	}
	m.detach(ctx, md.ID, dropped)
	return nil
}
