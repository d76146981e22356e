package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// Volumes on the host (docs/adr/0008-volumes.md):
//
//	volumes/{id}/metadata.json   name, size, source, attachments; written last by a create
//	volumes/{id}/data.raw        the sparse ext4 image
//	volumes/{id}/.lock           held while the metadata is read and written
//	volumes/names/{name}         symlink to the id
//	volumes/names/.{name}.lock   held by a create from first step to last, and by a delete's unlink

func (l layout) volumes() string                 { return path.Join(l.dataDir, "volumes") }
func (l layout) volumeNames() string             { return path.Join(l.volumes(), "names") }
func (l layout) volumeDir(id string) string      { return path.Join(l.volumes(), id) }
func (l layout) volumeMetadata(id string) string { return path.Join(l.volumeDir(id), "metadata.json") }
func (l layout) volumeData(id string) string     { return path.Join(l.volumeDir(id), "data.raw") }
func (l layout) volumeLock(id string) string     { return path.Join(l.volumeDir(id), ".lock") }
func (l layout) volumeSeed(id string) string     { return path.Join(l.volumeDir(id), ".seed") }
func (l layout) volumeName(name string) string   { return path.Join(l.volumeNames(), name) }
func (l layout) volumeNameLock(name string) string {
	return path.Join(l.volumeNames(), "."+name+".lock")
}
func (l layout) volumeRemoving(id string) string { return path.Join(l.volumes(), "."+id+".removing") }

// volumeMetadataVersion is the format of a volume's metadata.json.
const volumeMetadataVersion = 1

// volumeMetadata is a volume's metadata.json.
type volumeMetadata struct {
	FormatVersion int       `json:"format_version"`
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Size          int64     `json:"size_bytes"`
	Source        string    `json:"source,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	// Attachments are the instances that recorded a hold on the volume; a record whose instance
	// is gone (or no longer lists the volume) is stale, ignored and pruned at the next write.
	Attachments []attachment `json:"attachments"`
}

// attachment is one recorded hold of an instance on a volume.
type attachment struct {
	InstanceID   string `json:"instance_id"`
	InstanceName string `json:"instance_name"`
	MountPath    string `json:"mount_path"`
	ReadOnly     bool   `json:"readonly"`
}

func volumeNotFound(idOrName string) error {
	return fmt.Errorf("%w: no volume with id or name %q", ErrVolumeNotFound, idOrName)
}

// loadVolume reads a volume's metadata. A directory without metadata is what a create left that
// has not finished (or died): ErrVolumeNotFound.
func (m *Manager) loadVolume(ctx context.Context, id string) (*volumeMetadata, error) {
	var vmd volumeMetadata
	err := m.readVersioned(ctx, m.layout.volumeMetadata(id), "volume "+id, volumeMetadataVersion, &vmd, &vmd.FormatVersion)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, volumeNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	return &vmd, nil
}

func (m *Manager) saveVolume(ctx context.Context, vmd *volumeMetadata) error {
	vmd.FormatVersion = volumeMetadataVersion
	return m.writeVersioned(ctx, m.layout.volumeMetadata(vmd.ID), "volume "+vmd.ID, vmd, 0o600)
}

// resolveVolume turns a volume's id or name into its id; ErrVolumeNotFound when neither names a
// volume whose create finished.
func (m *Manager) resolveVolume(ctx context.Context, idOrName string) (string, error) {
	id := idOrName
	if !ulidRE.MatchString(idOrName) {
		if ValidateName(idOrName) != nil {
			return "", volumeNotFound(idOrName)
		}
		owner, err := m.host.Readlink(ctx, m.layout.volumeName(idOrName))
		if errors.Is(err, fs.ErrNotExist) {
			return "", volumeNotFound(idOrName)
		}
		if err != nil {
			return "", fmt.Errorf("read the reservation of volume name %q: %w", idOrName, err)
		}
		id = owner
	}
	if _, err := m.host.Stat(ctx, m.layout.volumeMetadata(id)); errors.Is(err, fs.ErrNotExist) {
		return "", volumeNotFound(idOrName)
	} else if err != nil {
		return "", err
	}
	return id, nil
}

// withVolumeLock runs fn holding the volume's lock, with its metadata as read under it.
func (m *Manager) withVolumeLock(ctx context.Context, id string, fn func(*volumeMetadata) error) error {
	unlock, err := m.host.Lock(ctx, m.layout.volumeLock(id))
	if errors.Is(err, fs.ErrNotExist) {
		return volumeNotFound(id)
	}
	if err != nil {
		return fmt.Errorf("lock volume %s: %w", id, err)
	}
	defer unlock()
	vmd, err := m.loadVolume(ctx, id)
	if err != nil {
		return err
	}
	return fn(vmd)
}

// CreateVolume makes a volume: a sparse image of spec.Size formatted ext4 (lazy init), seeded from
// spec.Source when set. Its name is reserved on the host as an instance's is: two creates of one
// name make one volume, and the other fails with ErrNameTaken. A failed create leaves nothing.
func (m *Manager) CreateVolume(ctx context.Context, spec VolumeSpec) (_ *Volume, err error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := m.CheckVolumeTools(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	for _, d := range []string{m.layout.volumes(), m.layout.volumeNames()} {
		if err := m.host.MkdirAll(ctx, d, 0o700); err != nil {
			return nil, fmt.Errorf("create volume %s: prepare %s: %w", spec.Name, d, err)
		}
	}
	// The name's lock is held for the whole create, so a create that finds a link without
	// metadata and gets the lock knows that create died.
	unlockName, err := m.host.Lock(ctx, m.layout.volumeNameLock(spec.Name))
	if err != nil {
		return nil, fmt.Errorf("create volume %s: lock its name: %w", spec.Name, err)
	}
	defer unlockName()
	if err := m.claimVolumeName(ctx, spec.Name); err != nil {
		return nil, err
	}
	var undo cleanups
	defer func() {
		if err != nil {
			undo.run(context.WithoutCancel(ctx))
		}
	}()
	id := ulid.Make().String()
	if err := m.host.MkdirAll(ctx, m.layout.volumeDir(id), 0o700); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", spec.Name, err)
	}
	undo.push(func(ctx context.Context) { _ = m.removeVolumeDir(ctx, id) })
	if err := m.host.Symlink(ctx, id, m.layout.volumeName(spec.Name)); err != nil {
		return nil, fmt.Errorf("create volume %s: reserve its name: %w", spec.Name, err)
	}
	undo.push(func(ctx context.Context) { _ = m.unlinkVolumeName(ctx, spec.Name, id) })
	m.log(ctx, "volume reserved", map[string]any{"id": id, "name": spec.Name, "bytes": spec.Size})
	if err := m.formatVolume(ctx, id, spec); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", spec.Name, err)
	}
	vmd := &volumeMetadata{ID: id, Name: spec.Name, Size: spec.Size, Source: spec.Source,
		CreatedAt: time.Now().UTC(), Attachments: []attachment{}}
	if err := m.saveVolume(ctx, vmd); err != nil { // last: metadata marks a finished create
		return nil, fmt.Errorf("create volume %s: %w", spec.Name, err)
	}
	m.log(ctx, "volume created", map[string]any{"id": id, "name": spec.Name, "ms": time.Since(t0).Milliseconds()})
	return m.GetVolume(ctx, id)
}

// claimVolumeName checks, under the name's lock, that name is free: a link to a finished
// volume is ErrNameTaken; one to what a create that died left (a directory without metadata, or
// none) is removed with that directory.
func (m *Manager) claimVolumeName(ctx context.Context, name string) error {
	owner, err := m.host.Readlink(ctx, m.layout.volumeName(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the reservation of volume name %q: %w", name, err)
	}
	_, err = m.loadVolume(ctx, owner)
	switch {
	case err == nil:
		return errVolumeNameTaken(name, owner)
	case !errors.Is(err, ErrVolumeNotFound):
		return fmt.Errorf("%w (%v)", errVolumeNameTaken(name, owner), err)
	}
	m.log(ctx, "reclaiming the name of an interrupted volume create", map[string]any{"name": name, "stale_id": owner})
	if err := m.removeVolumeDir(ctx, owner); err != nil {
		return fmt.Errorf("reclaim volume name %q from the interrupted create of %s: %w", name, owner, err)
	}
	if err := m.host.Remove(ctx, m.layout.volumeName(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reclaim volume name %q: %w", name, err)
	}
	return nil
}

func errVolumeNameTaken(name, owner string) error {
	return fmt.Errorf("%w: volume name %q is taken by volume %s", ErrNameTaken, name, owner)
}

// VolumeNameHolder tells, changing nothing, whether a volume create could take name: "" and nil
// when it is free; else the holder's id with ErrNameTaken (or ErrNameBeingCreated).
func (m *Manager) VolumeNameHolder(ctx context.Context, name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	owner, err := m.host.Readlink(ctx, m.layout.volumeName(name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the reservation of volume name %q: %w", name, err)
	}
	_, err = m.loadVolume(ctx, owner)
	switch {
	case err == nil:
		return owner, errVolumeNameTaken(name, owner)
	case !errors.Is(err, ErrVolumeNotFound):
		return owner, fmt.Errorf("%w (%v)", errVolumeNameTaken(name, owner), err)
	}
	// No metadata yet: a create that runs holds the name's lock; one that died left it free.
	lctx, cancel := context.WithTimeout(ctx, creatorWait)
	defer cancel()
	unlock, err := m.host.Lock(lctx, m.layout.volumeNameLock(name))
	switch {
	case err == nil:
		unlock()
		return "", nil
	case ctx.Err() == nil && lctx.Err() != nil:
		return owner, fmt.Errorf("%w: volume name %q is being created by another operation (volume %s)", ErrNameBeingCreated, name, owner)
	}
	return "", fmt.Errorf("check the reservation of volume name %q: %w", name, err)
}

// formatVolume makes data.raw: sparse, ext4 with lazy init, seeded from spec.Source.
func (m *Manager) formatVolume(ctx context.Context, id string, spec VolumeSpec) error {
	data := m.layout.volumeData(id)
	// Made private first: Truncate alone would create it readable by the group.
	if err := m.host.WriteFile(ctx, data, nil, 0o600); err != nil {
		return fmt.Errorf("create the disk image: %w", err)
	}
	if err := m.host.Truncate(ctx, data, spec.Size); err != nil {
		return fmt.Errorf("create the disk image: %w", err)
	}
	seed := ""
	if spec.Source != "" {
		seed = m.layout.volumeSeed(id)
		defer func() { _ = m.host.RemoveAll(context.WithoutCancel(ctx), seed) }()
		t0 := time.Now()
		if err := m.seedTree(ctx, spec.Source, seed); err != nil {
			return err
		}
		m.log(ctx, "volume seed extracted", map[string]any{"id": id, "source": spec.Source, "ms": time.Since(t0).Milliseconds()})
	}
	if err := mkfsExt4(ctx, m.host, data, spec.Name, seed); err != nil {
		if spec.Source != "" && errors.Is(err, errExt4Full) {
			return fmt.Errorf("%w: source %s needs more than size %s: %w", ErrInvalidConfig, spec.Source, units.Format(spec.Size), err)
		}
		return err
	}
	return nil
}

// seedTree writes what source holds into dir on the host.
func (m *Manager) seedTree(ctx context.Context, source, dir string) error {
	if err := m.host.MkdirAll(ctx, dir, 0o700); err != nil {
		return fmt.Errorf("seed from %s: %w", source, err)
	}
	if tarball, ok := strings.CutPrefix(source, VolumeTarPrefix); ok {
		// GNU tar keeps members inside dir (it strips "/" and skips ".."), and keeps numeric owners.
		if _, err := m.host.Run(ctx, nil, "tar", "--extract", "--file="+tarball, "--directory="+dir,
			"--numeric-owner", "--same-owner", "--same-permissions"); err != nil {
			return fmt.Errorf("seed from %s: %w", source, err)
		}
		return nil
	}
	if err := m.images.ExtractTo(ctx, source, dir); err != nil {
		return fmt.Errorf("seed from %s: %w", source, err)
	}
	return nil
}

// removeVolumeDir removes a volume's directory, moved aside first so that nothing locks it again
// while it goes (as removeDir does for an instance).
func (m *Manager) removeVolumeDir(ctx context.Context, id string) error {
	gone := m.layout.volumeRemoving(id)
	if err := m.host.RemoveAll(ctx, gone); err != nil {
		return err
	}
	err := m.host.Rename(ctx, m.layout.volumeDir(id), gone)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return m.host.RemoveAll(ctx, gone)
}

// unlinkVolumeName removes volumes/names/{name} if it points at id.
func (m *Manager) unlinkVolumeName(ctx context.Context, name, id string) error {
	link := m.layout.volumeName(name)
	owner, err := m.host.Readlink(ctx, link)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && owner != id) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.host.Remove(ctx, link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// GetVolume finds a volume by id or name; ErrVolumeNotFound when there is none.
func (m *Manager) GetVolume(ctx context.Context, idOrName string) (*Volume, error) {
	id, err := m.resolveVolume(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	vmd, err := m.loadVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	vols, err := m.viewVolumes(ctx, []*volumeMetadata{vmd})
	if err != nil {
		return nil, err
	}
	return vols[0], nil
}

// ListVolumes lists every volume on the host, ordered by name.
func (m *Manager) ListVolumes(ctx context.Context) ([]*Volume, error) {
	entries, err := m.host.ReadDir(ctx, m.layout.volumes())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var mds []*volumeMetadata
	for _, e := range entries {
		if !e.IsDir() || !ulidRE.MatchString(e.Name()) {
			continue
		}
		vmd, err := m.loadVolume(ctx, e.Name())
		if errors.Is(err, ErrVolumeNotFound) {
			continue // being created, or what a create that died left
		}
		if err != nil {
			return nil, err
		}
		mds = append(mds, vmd)
	}
	return m.viewVolumes(ctx, mds)
}

// viewVolumes is the public view of volumes: their live holders, and the bytes their images
// take, asked of the host in one command for all of them.
func (m *Manager) viewVolumes(ctx context.Context, mds []*volumeMetadata) ([]*Volume, error) {
	if len(mds) == 0 {
		return nil, nil
	}
	paths := make([]string, len(mds))
	for i, vmd := range mds {
		paths[i] = m.layout.volumeData(vmd.ID)
	}
	alloc, err := allocatedBytes(ctx, m.host, paths)
	if err != nil {
		return nil, err
	}
	holders := newHolderCache(m)
	out := make([]*Volume, len(mds))
	for i, vmd := range mds {
		live, err := holders.live(ctx, vmd)
		if err != nil {
			return nil, err
		}
		v := &Volume{ID: vmd.ID, Name: vmd.Name, Size: vmd.Size, AllocatedBytes: alloc[i], Source: vmd.Source,
			CreatedAt: vmd.CreatedAt, Path: paths[i], AttachedTo: []VolumeAttachment{}}
		for _, a := range live {
			v.AttachedTo = append(v.AttachedTo, VolumeAttachment(a))
		}
		sort.Slice(v.AttachedTo, func(i, j int) bool { return v.AttachedTo[i].InstanceName < v.AttachedTo[j].InstanceName })
		out[i] = v
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteVolume removes a volume and its data. One attached to any instance is refused with
// ErrVolumeInUse naming the instance; ErrVolumeNotFound when there is none.
func (m *Manager) DeleteVolume(ctx context.Context, idOrName string) error {
	id, err := m.resolveVolume(ctx, idOrName)
	if err != nil {
		return err
	}
	var name string
	err = m.withVolumeLock(ctx, id, func(vmd *volumeMetadata) error {
		live, err := newHolderCache(m).live(ctx, vmd)
		if err != nil {
			return err
		}
		if len(live) > 0 {
			return fmt.Errorf("%w: volume %s (%s) is attached to %s; detach it (or delete the instance) first",
				ErrVolumeInUse, vmd.Name, vmd.ID, describeHolders(live))
		}
		name = vmd.Name
		if err := m.removeVolumeDir(ctx, id); err != nil {
			return fmt.Errorf("delete volume %s: remove its files: %w", vmd.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	unlock, err := m.host.Lock(ctx, m.layout.volumeNameLock(name))
	if err != nil {
		return fmt.Errorf("delete volume %s: lock its name: %w", name, err)
	}
	defer unlock()
	if err := m.unlinkVolumeName(ctx, name, id); err != nil {
		return fmt.Errorf("delete volume %s: release its name: %w", name, err)
	}
	m.log(ctx, "volume deleted", map[string]any{"id": id, "name": name})
	return nil
}

// describeHolders names instances for an error: `instance "db" (01J…)`, joined by commas.
func describeHolders(as []attachment) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = "instance " + strconv.Quote(a.InstanceName) + " (" + a.InstanceID + ")"
	}
	return strings.Join(s, ", ")
}
