package instances

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// The on-disk layout (docs/adr/0005-on-disk-layout.md). Paths are on the host, so they use
// package path.
type layout struct{ dataDir string }

func (l layout) guests() string            { return path.Join(l.dataDir, "guests") }
func (l layout) names() string             { return path.Join(l.dataDir, "names") }
func (l layout) images() string            { return path.Join(l.dataDir, "images") }
func (l layout) system() string            { return path.Join(l.dataDir, "system") }
func (l layout) network() string           { return path.Join(l.dataDir, "network") }
func (l layout) dir(id string) string      { return path.Join(l.guests(), id) }
func (l layout) name(name string) string   { return path.Join(l.names(), name) }
func (l layout) metadata(id string) string { return path.Join(l.dir(id), "metadata.json") }
func (l layout) lock(id string) string     { return path.Join(l.dir(id), ".lock") }
func (l layout) overlay(id string) string  { return path.Join(l.dir(id), "overlay.raw") }
func (l layout) config(id string) string   { return path.Join(l.dir(id), "config.erofs") }
func (l layout) logs(id string) string     { return path.Join(l.dir(id), "logs") }
func (l layout) console(id string) string  { return path.Join(l.logs(id), "console.log") }
func (l layout) snapshots(id string) string {
	return path.Join(l.dir(id), "snapshots")
}
func (l layout) snapshot(id string) string { return path.Join(l.snapshots(id), "snapshot-latest") }

// nameLock serializes the removal of a name's link; a name never starts with a dot.
func (l layout) nameLock(name string) string { return path.Join(l.names(), "."+name+".lock") }

// removing is where an instance's directory is moved to be removed (removeDir).
func (l layout) removing(id string) string { return path.Join(l.guests(), "."+id+".removing") }

// partialSnapshot is where a snapshot is written and compressed before it is published by rename,
// so snapshot-latest only ever holds a complete snapshot.
func (l layout) partialSnapshot(id string) string {
	return path.Join(l.snapshots(id), "snapshot-latest.partial")
}

// errCorruptMetadata: metadata.json exists but cannot be read as one; Delete still removes such
// an instance.
var errCorruptMetadata = errors.New("corrupt instance metadata")

// metadataVersion is the format of metadata.json this manager writes. A change of layout bumps it
// and teaches loadMetadata to migrate the older format.
// Version 2 added max_memory_bytes (resize.go); older files have none, which means memory.
// Version 3 added max_vcpus, and the VMM's (vmm.Config.MaxVCPUs): a VMM booted with vCPU slots,
// whose Standby snapshot an older manager would restore without its vCPUs. Older files have none,
// which means no slots.
const metadataVersion = 3

// errNewerMetadata: metadata.json was written by a newer manager, in a format this one cannot read
// safely.
var errNewerMetadata = errors.New("instance metadata written by a newer provider")

// metadata is metadata.json: the desired config, what booted it, and the VMM's pid.
type metadata struct {
	// FormatVersion is the layout of this file; 0 (absent) was written before the field existed
	// and is version 1.
	FormatVersion int `json:"format_version"`

	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	ImageDigest string            `json:"image_digest"`
	VCPUs       int               `json:"vcpus"`
	MaxVCPUs    int               `json:"max_vcpus,omitempty"`
	Memory      int64             `json:"memory_bytes"`
	Hotplug     int64             `json:"hotplug_bytes"`
	MaxMemory   int64             `json:"max_memory_bytes,omitempty"`
	OverlaySize int64             `json:"overlay_bytes"`
	Entrypoint  []string          `json:"entrypoint"`
	Cmd         []string          `json:"cmd"`
	Env         map[string]string `json:"env"`
	Workdir     string            `json:"workdir"`

	// The instance's network interface, fixed for its life; all empty when it has none.
	IPAddress  string `json:"ip_address,omitempty"`
	MACAddress string `json:"mac_address,omitempty"`
	TapDevice  string `json:"tap_device,omitempty"`
	// PeerGroups are the guests this one may reach on the bridge (NetworkSpec.PeerGroups).
	PeerGroups []string `json:"peer_groups,omitempty"`

	Hypervisor        string `json:"hypervisor"`
	HypervisorVersion string `json:"hypervisor_version"`
	Accelerator       string `json:"accelerator"`
	KernelHash        string `json:"kernel_sha256"`
	InitrdHash        string `json:"initrd_sha256"`
	KernelRelease     string `json:"kernel_release"`

	// VMM is the config the current VMM (or the snapshot) was started with; a restore uses it
	// unchanged so that the devices are identical.
	VMM vmm.Config `json:"vmm"`
	PID int        `json:"pid"`
	// Booted is set once the current VMM's guest has booted; it tells a Cloud Hypervisor VM that
	// was shut down (reported as "Created") from one that never booted.
	Booted bool `json:"booted"`

	CreatedAt time.Time `json:"created_at"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Ended is how the last boot ended, when the manager saw it end on its own (console.go); a
	// new boot clears it.
	Ended *bootEnd `json:"ended,omitempty"`

	// Volumes are the mounts the instance wants; each volume records its hold (volume_attach.go).
	Volumes []VolumeMount `json:"volumes,omitempty"`

	// WaitFor is what a boot or a restore to Running waits for (wait.go); BootConsole is where the
	// current boot's console output starts in the console log.
	WaitFor     *WaitSpec `json:"wait_for,omitempty"`
	BootConsole int64     `json:"boot_console_offset,omitempty"`

	// Creating marks an instance whose create has not finished, and names the process running
	// it (creating.go); the create's last metadata write drops it.
	Creating *creator `json:"creating,omitempty"`
}

func (md *metadata) spec() Spec {
	return Spec{
		Name: md.Name, Image: md.Image, VCPUs: md.VCPUs, MaxVCPUs: md.MaxVCPUs, Memory: md.Memory, MaxMemory: md.MaxMemory, Hotplug: md.Hotplug,
		OverlaySize: md.OverlaySize, Entrypoint: md.Entrypoint, Cmd: md.Cmd, Env: md.Env,
		Workdir: md.Workdir, Hypervisor: md.Hypervisor, Network: md.networkSpec(), Volumes: md.Volumes,
		WaitFor: md.WaitFor,
	}
}

func (m *Manager) loadMetadata(ctx context.Context, id string) (*metadata, error) {
	var md metadata
	err := m.readVersioned(ctx, m.layout.metadata(id), id, metadataVersion, &md, &md.FormatVersion)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no instance with id %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	md.FormatVersion = metadataVersion // versions 0 and 1 are the same layout; 2 and 3 only add fields, absent (0) before
	return &md, nil
}

func (m *Manager) saveMetadata(ctx context.Context, md *metadata) error {
	md.FormatVersion = metadataVersion
	return m.writeVersioned(ctx, m.layout.metadata(md.ID), md.ID, md, 0o600)
}

// readVersioned decodes the metadata file p of what (an instance or "volume <id>") into v, whose
// format version is at version: one newer than newest is refused (errNewerMetadata), one that
// cannot be decoded is errCorruptMetadata. A missing file is an error wrapping fs.ErrNotExist.
func (m *Manager) readVersioned(ctx context.Context, p, what string, newest int, v any, version *int) error {
	b, err := m.host.ReadFile(ctx, p)
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err != nil {
		return fmt.Errorf("read metadata of %s: %w", what, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: metadata of %s: %w", errCorruptMetadata, what, err)
	}
	if *version > newest {
		return fmt.Errorf("%w: metadata of %s has format version %d, and this provider reads up to %d; upgrade the provider",
			errNewerMetadata, what, *version, newest)
	}
	return nil
}

// writeVersioned writes v as the metadata file p of what, atomically.
func (m *Manager) writeVersioned(ctx context.Context, p, what string, v any, perm fs.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := m.host.WriteFile(ctx, p, b, perm); err != nil {
		return fmt.Errorf("write metadata of %s: %w", what, err)
	}
	return nil
}

// ulidRE matches instance ids: ULIDs in Crockford base32, which never look like a name (names are lower-case).
var ulidRE = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)

// resolve turns an id or a name into an id.
func (m *Manager) resolve(ctx context.Context, idOrName string) (string, error) {
	if ulidRE.MatchString(idOrName) {
		if _, err := m.host.Stat(ctx, m.layout.metadata(idOrName)); err == nil {
			return idOrName, nil
		}
	}
	if ValidateName(idOrName) != nil {
		return "", fmt.Errorf("%w: no instance with id or name %q", ErrNotFound, idOrName)
	}
	id, err := m.host.Readlink(ctx, m.layout.name(idOrName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: no instance with id or name %q", ErrNotFound, idOrName)
	}
	if err != nil {
		return "", err
	}
	return id, nil
}

// snapshotBytes is the size of a complete snapshot's memory image, or -1 when there is none. A
// snapshot directory only exists once complete (it is published by rename), so finding the memory
// image is enough: one or two stats, which matters over SSH.
func (m *Manager) snapshotBytes(ctx context.Context, id string) (int64, error) {
	for _, name := range []string{vmm.MemoryFile + ".lz4", vmm.MemoryFile} {
		fi, err := m.host.Stat(ctx, path.Join(m.layout.snapshot(id), name))
		if err == nil {
			return fi.Size(), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return -1, err
		}
	}
	return -1, nil
}

// withLock runs fn holding the instance's lock, so two operations on one instance (from this or
// another process) never interleave. An instance whose create never finished is refused: only
// Delete, or a create of its name, removes it.
func (m *Manager) withLock(ctx context.Context, id string, fn func() error) error {
	return m.lockInstance(ctx, id, func() error {
		if md, err := m.loadMetadata(ctx, id); err == nil && md.Creating != nil {
			return errUnfinished(md)
		}
		return fn()
	})
}

// lockInstance runs fn holding the instance's lock.
func (m *Manager) lockInstance(ctx context.Context, id string, fn func() error) error {
	unlock, err := m.host.Lock(ctx, m.layout.lock(id))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: no instance with id %s", ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// removeDir removes the instance's directory. It is moved out of the way first, so that an
// operation arriving meanwhile finds no directory, instead of creating the lock file again in one
// half removed (which would make the removal fail, and give it a lock of its own).
func (m *Manager) removeDir(ctx context.Context, id string) error {
	gone := m.layout.removing(id)
	if err := m.host.RemoveAll(ctx, gone); err != nil { // what a removal cut short left
		return err
	}
	err := m.host.Rename(ctx, m.layout.dir(id), gone)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return m.host.RemoveAll(ctx, gone)
}
