package instances

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

// Attachments. An instance's metadata lists the mounts it wants (Volumes); each volume's metadata
// records the instances that hold it. A record counts only while its instance exists, is not what
// a dead create left, and still lists the volume: every other record is stale, ignored, and
// pruned at the volume's next write. So a crash between the two writes never binds a volume for
// good. Lock order: instance locks first, then volume locks sorted by id; an instance's lock is
// never waited for under a volume's (a create's liveness is only tried, for creatorWait).

// holderCache judges records, reading each instance's metadata once.
type holderCache struct {
	m    *Manager
	seen map[string]*metadata // nil: gone or stale
}

func newHolderCache(m *Manager) *holderCache { return &holderCache{m: m, seen: map[string]*metadata{}} }

// live is the records of vmd that stand.
func (c *holderCache) live(ctx context.Context, vmd *volumeMetadata) ([]attachment, error) {
	var out []attachment
	for _, a := range vmd.Attachments {
		md, err := c.instance(ctx, a.InstanceID)
		if err != nil {
			return nil, err
		}
		if md != nil && slices.ContainsFunc(md.Volumes, func(v VolumeMount) bool { return v.VolumeID == vmd.ID }) {
			out = append(out, a)
		}
	}
	return out, nil
}

// instance is the metadata of a holding instance, or nil when it is gone or a dead create's.
func (c *holderCache) instance(ctx context.Context, id string) (*metadata, error) {
	if md, ok := c.seen[id]; ok {
		return md, nil
	}
	md, err := c.m.loadMetadata(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		md = nil
	case errors.Is(err, errCorruptMetadata) || errors.Is(err, errNewerMetadata):
		return nil, fmt.Errorf("instance %s holds a volume, but %w", id, err)
	case err != nil:
		return nil, err
	case md.Creating != nil:
		var live bool
		md, live, err = c.m.settle(ctx, md)
		switch {
		case errors.Is(err, ErrNotFound):
			md = nil
		case err != nil:
			return nil, err
		case md.Creating != nil && !live:
			md = nil // a create that died holds nothing
		}
	}
	c.seen[id] = md
	return md, nil
}

// conflict is the live record that stands in the way of instance attaching a volume with
// readonly, or nil.
func conflict(live []attachment, instance string, readonly bool) *attachment {
	for i, a := range live {
		if a.InstanceID != instance && (!readonly || !a.ReadOnly) {
			return &live[i]
		}
	}
	return nil
}

func errVolumeHeld(vmd *volumeMetadata, by *attachment, readonly bool) error {
	how := "writable"
	if readonly {
		how = "read-only"
	}
	held := "is attached"
	if !by.ReadOnly {
		held = "is attached writable"
	}
	return fmt.Errorf("%w: volume %s (%s) cannot be attached %s: it %s to %s; a writable volume is attached to one instance at a time",
		ErrVolumeInUse, vmd.Name, vmd.ID, how, held, describeHolders([]attachment{*by}))
}

// checkSerials refuses two mounts whose disks the guest could not tell apart.
func checkSerials(mounts []VolumeMount) error {
	seen := map[string]string{}
	for _, v := range mounts {
		s := system.VolumeSerial(v.VolumeID)
		if o, ok := seen[s]; ok && o != v.VolumeID {
			return fmt.Errorf("%w: volumes %s and %s share the disk serial %s (the first %d characters of their ids), which the guest finds volumes by; attach one of them to another instance",
				ErrInvalidConfig, o, v.VolumeID, s, system.VolumeSerialLength)
		}
		seen[s] = v.VolumeID
	}
	return nil
}

// byVolume is mounts sorted by volume id: the order volume locks are taken in.
func byVolume(mounts []VolumeMount) []VolumeMount {
	s := slices.Clone(mounts)
	sort.Slice(s, func(i, j int) bool { return s[i].VolumeID < s[j].VolumeID })
	return s
}

// attach records md's hold on each of mounts, checking each against the volume's live holders
// under its lock. The caller holds md's instance lock, and md lists mounts in Volumes already
// (so a record made here is never stale). On failure, the records this call added are removed
// again; a hold the instance had before stays.
func (m *Manager) attach(ctx context.Context, md *metadata, mounts []VolumeMount) (err error) {
	if err := checkSerials(mounts); err != nil {
		return err
	}
	var done []string
	defer func() {
		if err != nil {
			m.detach(context.WithoutCancel(ctx), md.ID, done)
		}
	}()
	for _, v := range byVolume(mounts) {
		had := false
		err := m.withVolumeLock(ctx, v.VolumeID, func(vmd *volumeMetadata) error {
			live, err := newHolderCache(m).live(ctx, vmd)
			if err != nil {
				return err
			}
			if by := conflict(live, md.ID, v.ReadOnly); by != nil {
				return errVolumeHeld(vmd, by, v.ReadOnly)
			}
			had = slices.ContainsFunc(live, func(a attachment) bool { return a.InstanceID == md.ID })
			vmd.Attachments = append(without(live, md.ID), attachment{InstanceID: md.ID, InstanceName: md.Name,
				MountPath: v.MountPath, ReadOnly: v.ReadOnly})
			return m.saveVolume(ctx, vmd)
		})
		if errors.Is(err, ErrVolumeNotFound) {
			return fmt.Errorf("%w: volume %s, which instance %s mounts at %s, does not exist", ErrVolumeNotFound, v.VolumeID, md.Name, v.MountPath)
		}
		if err != nil {
			return fmt.Errorf("attach volume %s to %s: %w", v.VolumeID, md.Name, err)
		}
		if !had {
			done = append(done, v.VolumeID)
		}
		m.log(ctx, "volume attached", map[string]any{"id": md.ID, "volume": v.VolumeID, "mount_path": v.MountPath, "readonly": v.ReadOnly})
	}
	return nil
}

// detach removes the instance's records from the volumes, pruning stale ones too. A volume that is
// gone has nothing to detach; a failure is logged, since a record left behind goes stale by
// itself once the instance no longer lists the volume.
func (m *Manager) detach(ctx context.Context, instance string, volumes []string) {
	ids := slices.Clone(volumes)
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		err := m.withVolumeLock(ctx, id, func(vmd *volumeMetadata) error {
			live, err := newHolderCache(m).live(ctx, vmd)
			if err != nil {
				return err
			}
			vmd.Attachments = without(live, instance)
			return m.saveVolume(ctx, vmd)
		})
		if err != nil && !errors.Is(err, ErrVolumeNotFound) {
			m.log(ctx, "could not detach a volume; its record goes stale", map[string]any{"id": instance, "volume": id, "error": err.Error()})
			continue
		}
		m.log(ctx, "volume detached", map[string]any{"id": instance, "volume": id})
	}
}

// without is as without instance's record.
func without(as []attachment, instance string) []attachment {
	out := []attachment{}
	for _, a := range as {
		if a.InstanceID != instance {
			out = append(out, a)
		}
	}
	return out
}

func volumeIDs(mounts []VolumeMount) []string {
	ids := make([]string, len(mounts))
	for i, v := range mounts {
		ids[i] = v.VolumeID
	}
	return ids
}

// guestVolumes and volumeDisks are what a boot gives the guest for md's mounts.
func (m *Manager) guestVolumes(md *metadata) []guestVolume {
	var out []guestVolume
	for _, v := range md.Volumes {
		out = append(out, guestVolume{Serial: system.VolumeSerial(v.VolumeID), Path: v.MountPath, ReadOnly: v.ReadOnly})
	}
	return out
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
	var problems []MountProblem
	holders := newHolderCache(m)
	for i, v := range mounts {
		var vmd *volumeMetadata
		err := volumeNotFound(v.VolumeID)
		if ValidateVolumeID(v.VolumeID) == nil {
			vmd, err = m.loadVolume(ctx, v.VolumeID)
		}
		if errors.Is(err, ErrVolumeNotFound) {
			problems = append(problems, MountProblem{Index: i, Err: fmt.Errorf("%w: no volume with id %q", ErrVolumeNotFound, v.VolumeID)})
			continue
		}
		if err != nil {
			return nil, err
		}
		live, err := holders.live(ctx, vmd)
		if err != nil {
			return nil, err
		}
		if by := conflict(live, instance, v.ReadOnly); by != nil {
			problems = append(problems, MountProblem{Index: i, Holder: by.InstanceID, Err: errVolumeHeld(vmd, by, v.ReadOnly)})
		}
	}
	return problems, nil
}
