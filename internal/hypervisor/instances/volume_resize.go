package instances

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// Resizing a volume. The guest has no resize2fs and no agent that could run one, so a volume
// grows on the host while no VMM has it open: its Running and Paused holders are restarted in
// place around the grow, and a Standby holder refuses it, since its restore needs the disk it left.

// resizePlan is what a resize would do: the holders it restarts, in instance id order.
type resizePlan struct {
	vmd      *volumeMetadata
	restarts []holderState
}

type holderState struct {
	id, name string
	state    State
}

// planResize checks a resize of the volume to size against its holders' states. The holders'
// locks are the caller's to take when it acts on the plan.
func (m *Manager) planResize(ctx context.Context, id string, size int64) (*resizePlan, error) {
	vmd, err := m.loadVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := CheckVolumeResize(vmd.Size, size); err != nil {
		return nil, err
	}
	p := &resizePlan{vmd: vmd}
	if size == vmd.Size {
		return p, nil
	}
	live, err := newHolderCache(m).live(ctx, vmd)
	if err != nil {
		return nil, err
	}
	for _, a := range live {
		md, err := m.loadMetadata(ctx, a.InstanceID)
		if err != nil {
			return nil, err
		}
		st, reason, err := m.deriveState(ctx, md)
		if err != nil {
			return nil, err
		}
		switch st {
		case Stopped:
		case Running, Paused:
			p.restarts = append(p.restarts, holderState{md.ID, md.Name, st})
		case Standby:
			return nil, fmt.Errorf("%w: volume %s cannot grow now: instance %s (%s) is in Standby; its restore needs the disk as it was; set its state to Running (or Stopped) first",
				ErrVolumeInUse, vmd.Name, md.Name, md.ID)
		default:
			if reason != "" {
				reason = " (" + reason + ")"
			}
			return nil, fmt.Errorf("%w: volume %s cannot grow now: instance %s (%s) is %s%s; set its state to Running or Stopped first",
				ErrVolumeInUse, vmd.Name, md.Name, md.ID, st, reason)
		}
	}
	sort.Slice(p.restarts, func(i, j int) bool { return p.restarts[i].id < p.restarts[j].id })
	return p, nil
}

// ResizeEffect tells, changing nothing, what ResizeVolume(idOrName, size) would do: the names of
// the instances it would restart in place, or the error it would fail with.
func (m *Manager) ResizeEffect(ctx context.Context, idOrName string, size int64) (restarts []string, err error) {
	id, err := m.resolveVolume(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	p, err := m.planResize(ctx, id, size)
	if err != nil {
		return nil, err
	}
	for _, h := range p.restarts {
		restarts = append(restarts, h.name)
	}
	sort.Strings(restarts)
	return restarts, nil
}

// ResizeVolume grows a volume to size (CheckVolumeResize: never shrinks). A volume no running VMM
// has open grows on the host; the instances that hold it Running or Paused are restarted in place
// around the resize (stopped, grown, brought back to their state), and a holder in Standby
// refuses it with ErrVolumeInUse (its restore needs the disk it left).
func (m *Manager) ResizeVolume(ctx context.Context, idOrName string, size int64) (*Volume, error) {
	id, err := m.resolveVolume(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	if err := m.CheckVolumeTools(ctx); err != nil {
		return nil, err
	}
	for range 3 {
		p, err := m.planResize(ctx, id, size)
		if err != nil {
			return nil, err
		}
		if size == p.vmd.Size {
			return m.GetVolume(ctx, id)
		}
		err = m.resizeHeld(ctx, p, size)
		if !errors.Is(err, errHoldersChanged) {
			if err != nil {
				return nil, err
			}
			return m.GetVolume(ctx, id)
		}
	}
	return nil, fmt.Errorf("%w: the instances holding the volume kept changing while it was resized; try again", ErrVolumeInUse)
}

var errHoldersChanged = errors.New("the volume's holders changed")

// resizeHeld takes the locks of p's restarts (sorted by id), checks under them and the volume's
// lock that the plan still holds, stops them, grows the volume, and brings them back.
func (m *Manager) resizeHeld(ctx context.Context, p *resizePlan, size int64) error {
	var hold func(i int) error
	hold = func(i int) error {
		if i < len(p.restarts) {
			return m.withLock(ctx, p.restarts[i].id, func() error { return hold(i + 1) })
		}
		now, err := m.planResize(ctx, p.vmd.ID, size)
		if err != nil {
			return err
		}
		if !slices.Equal(now.restarts, p.restarts) {
			return errHoldersChanged
		}
		return m.growHeld(ctx, p, size)
	}
	return hold(0)
}

// growHeld stops the restarts, grows the volume under its lock and brings them back; the caller
// holds their locks.
func (m *Manager) growHeld(ctx context.Context, p *resizePlan, size int64) error {
	var stopped []holderState
	back := func() error {
		var errs []error
		for _, h := range stopped {
			m.log(ctx, "bringing an instance back after a volume resize", map[string]any{"id": h.id, "volume": p.vmd.ID, "state": string(h.state)})
			if err := m.reach(ctx, h.id, h.state); err != nil {
				errs = append(errs, fmt.Errorf("instance %s (%s) could not return to %s and is left %s: %w", h.name, h.id, h.state, m.stateOf(ctx, h.id), err))
			}
		}
		return errors.Join(errs...)
	}
	for _, h := range p.restarts {
		m.log(ctx, "stopping an instance to resize its volume", map[string]any{"id": h.id, "volume": p.vmd.ID, "state": string(h.state)})
		if err := m.reach(ctx, h.id, Stopped); err != nil {
			return errors.Join(fmt.Errorf("resize volume %s: stop instance %s: %w", p.vmd.Name, h.name, err), back())
		}
		stopped = append(stopped, h)
	}
	err := m.withVolumeLock(ctx, p.vmd.ID, func(vmd *volumeMetadata) error {
		if vmd.Size >= size {
			return nil
		}
		m.log(ctx, "volume growing", map[string]any{"volume": vmd.ID, "from": vmd.Size, "to": size})
		if err := growExt4(ctx, m.host, m.layout.volumeData(vmd.ID), vmd.Size, size); err != nil {
			return fmt.Errorf("resize volume %s from %s to %s: %w", vmd.Name, units.Format(vmd.Size), units.Format(size), err)
		}
		vmd.Size = size // only once the filesystem has grown
		return m.saveVolume(ctx, vmd)
	})
	return errors.Join(err, back())
}

// stateOf is the instance's state for an error message.
func (m *Manager) stateOf(ctx context.Context, id string) State {
	md, err := m.loadMetadata(ctx, id)
	if err != nil {
		return Unknown
	}
	st, _, err := m.deriveState(ctx, md)
	if err != nil {
		return Unknown
	}
	return st
}
