package instances

import (
	"context"
	"errors"
)

// The manager's volume operations. Every one works on the local host and over SSH alike.

var errVolumesNotBuilt = errors.New("volumes are not implemented yet")

// CreateVolume makes a volume: a sparse image of spec.Size formatted ext4 (lazy init), seeded from
// spec.Source when set. Its name is reserved on the host as an instance's is: two creates of one
// name make one volume, and the other fails with ErrNameTaken. A failed create leaves nothing.
func (m *Manager) CreateVolume(ctx context.Context, spec VolumeSpec) (*Volume, error) {
	return nil, errVolumesNotBuilt
}

// GetVolume finds a volume by id or name; ErrVolumeNotFound when there is none.
func (m *Manager) GetVolume(ctx context.Context, idOrName string) (*Volume, error) {
	return nil, errVolumesNotBuilt
}

// ListVolumes lists every volume on the host, ordered by name.
func (m *Manager) ListVolumes(ctx context.Context) ([]*Volume, error) {
	return nil, errVolumesNotBuilt
}

// VolumeNameHolder tells, changing nothing, whether a volume create could take name: "" and nil
// when it is free; else the holder's id with ErrNameTaken (or ErrNameBeingCreated).
func (m *Manager) VolumeNameHolder(ctx context.Context, name string) (string, error) {
	return "", errVolumesNotBuilt
}

// ResizeVolume grows a volume to size (CheckVolumeResize: never shrinks). A volume no running VMM
// has open grows on the host; the instances that hold it Running or Paused are restarted in place
// around the resize (stopped, grown, brought back to their state), and a holder in Standby
// refuses it with ErrVolumeInUse (its restore needs the disk it left).
func (m *Manager) ResizeVolume(ctx context.Context, idOrName string, size int64) (*Volume, error) {
	return nil, errVolumesNotBuilt
}

// ResizeEffect tells, changing nothing, what ResizeVolume(idOrName, size) would do: the names of
// the instances it would restart in place, or the error it would fail with.
func (m *Manager) ResizeEffect(ctx context.Context, idOrName string, size int64) (restarts []string, err error) {
	return nil, errVolumesNotBuilt
}

// DeleteVolume removes a volume and its data. One attached to any instance is refused with
// ErrVolumeInUse naming the instance; ErrVolumeNotFound when there is none.
func (m *Manager) DeleteVolume(ctx context.Context, idOrName string) error {
	return errVolumesNotBuilt
}

// MountProblem is one mount of a CheckMounts call that could not be attached now.
type MountProblem struct {
	// Index is the mount's position in the list checked.
	Index int
	// Holder is the id of the instance whose hold on the volume stands in the way; "" when the
	// volume does not exist.
	Holder string
	// Err is an ErrVolumeNotFound or an ErrVolumeInUse, in words that name the volume and holder.
	Err error
}

// CheckMounts tells, changing nothing, whether instance (an id, or "" for one not created yet)
// could attach mounts now: each volume exists (ErrVolumeNotFound), and a writable one is held by no
// other instance, a read-only one by no other instance writably (ErrVolumeInUse). For plan-time
// checks; Create and Update check again under the volumes' locks. The error is for a host that
// could not be asked.
func (m *Manager) CheckMounts(ctx context.Context, instance string, mounts []VolumeMount) ([]MountProblem, error) {
	return nil, errVolumesNotBuilt
}
