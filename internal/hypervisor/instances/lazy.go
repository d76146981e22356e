package instances

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Lazy snapshots: standby leaves the memory image uncompressed, and restore hands it to a VMM
// that reads each page when the guest first touches it (vmm.LazyRestorer), so the guest runs
// without waiting for its memory to be read in. Each snapshot records how it was taken, so that
// restoring it does not depend on the mode the provider has now. The VMM keeps the image open
// while it may still read from it; the image is kept, under another name, until the VMM exits.

// SnapshotMode is how standby writes a snapshot's memory image and how restore reads it back.
type SnapshotMode string

const (
	// SnapshotCompressed: the image is LZ4-compressed on standby (with CompressSnapshots), and
	// decompressed and read in whole before the guest runs again.
	SnapshotCompressed SnapshotMode = "compressed"
	// SnapshotLazy: the image is kept as the VMM wrote it, and restore maps it in on demand.
	// Drivers or hosts that cannot restore so fall back to SnapshotCompressed, and say why.
	SnapshotLazy SnapshotMode = "lazy"
)

// SnapshotModes are the modes by name.
var SnapshotModes = []string{string(SnapshotCompressed), string(SnapshotLazy)}

// ValidateSnapshotMode refuses a mode that is not one of SnapshotModes.
func ValidateSnapshotMode(mode string) error {
	for _, m := range SnapshotModes {
		if mode == m {
			return nil
		}
	}
	return &FieldError{Field: "snapshot_mode", Value: mode, Allowed: "use " + strings.Join(SnapshotModes, " or ")}
}

// snapshotRecordFile is written into a snapshot beside the VMM's files: how it was taken.
const snapshotRecordFile = "hypeman-snapshot.json"

type snapshotRecord struct {
	Mode SnapshotMode `json:"mode"`
}

// heldMemory is where the memory image of a lazily restored instance waits for its VMM to exit.
func (l layout) heldMemory(id string) string { return path.Join(l.dir(id), vmm.MemoryFile+".in-use") }

// whyNotLazy is why md's snapshots cannot be restored lazily on this host; "" when they can.
func (m *Manager) whyNotLazy(ctx context.Context, hypervisor string) string {
	drv, err := m.driver(hypervisor)
	if err != nil {
		return err.Error()
	}
	lr, ok := drv.(vmm.LazyRestorer)
	if !ok {
		return drv.Name() + " restores snapshots eagerly only: the whole memory image is read in before the guest runs"
	}
	if err := lr.CheckLazyRestore(ctx, m.host); err != nil {
		return err.Error()
	}
	return ""
}

// LazyRestoreWarning is what a manager configured for lazy snapshots should tell the user about
// the default hypervisor at configuration time: "" when it restores lazily on this host.
func (m *Manager) LazyRestoreWarning(ctx context.Context) string {
	if m.opts.SnapshotMode != SnapshotLazy {
		return ""
	}
	if why := m.whyNotLazy(ctx, m.opts.DefaultHypervisor); why != "" {
		return fmt.Sprintf("snapshot_mode is %q, but instances on %s will be restored eagerly, and their snapshots compressed as in %q mode: %s",
			SnapshotLazy, m.opts.DefaultHypervisor, SnapshotCompressed, why)
	}
	return ""
}

// snapshotsLazily tells a standby whether md's snapshot is to be lazy: the provider is set so and
// md's VMM can restore it lazily on this host (when not, the reason is logged and the snapshot is
// compressed as in compressed mode).
func (m *Manager) snapshotsLazily(ctx context.Context, md *metadata) bool {
	if m.opts.SnapshotMode != SnapshotLazy {
		return false
	}
	why := m.whyNotLazy(ctx, md.Hypervisor)
	if drv, err := m.driver(md.Hypervisor); why == "" && err == nil {
		why = bootedEagerly(drv, md)
	}
	if why != "" {
		m.log(ctx, "snapshot compressed instead of lazy", map[string]any{"id": md.ID, "reason": why})
		return false
	}
	return true
}

// recordSnapshotMode writes into the partial snapshot how it was taken.
func (m *Manager) recordSnapshotMode(ctx context.Context, md *metadata, partial string, lazy bool) error {
	mode := SnapshotCompressed
	if lazy {
		mode = SnapshotLazy
	}
	data, _ := json.Marshal(snapshotRecord{Mode: mode})
	if err := m.host.WriteFile(ctx, path.Join(partial, snapshotRecordFile), data, 0o600); err != nil {
		return fmt.Errorf("record how the snapshot of %s was taken: %w", md.Name, err)
	}
	return nil
}

// snapshotMode is how the snapshot of id was taken; snapshots that do not say are compressed.
func (m *Manager) snapshotMode(ctx context.Context, id string) (SnapshotMode, error) {
	data, err := m.host.ReadFile(ctx, path.Join(m.layout.snapshot(id), snapshotRecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return SnapshotCompressed, nil
	}
	if err != nil {
		return "", err
	}
	var rec snapshotRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return "", fmt.Errorf("%s: %w", snapshotRecordFile, err)
	}
	return rec.Mode, nil
}

// restoreLazily restores md's snapshot on demand when it was taken for that and the VMM can;
// done is false when the caller restores it eagerly instead (the reason is logged). On success
// the guest runs, and the snapshot is dropped but for its memory image, which the VMM reads from.
// A failure keeps the snapshot, as an eager restore's does.
func (m *Manager) restoreLazily(ctx context.Context, drv vmm.Driver, md *metadata) (done bool, err error) {
	mode, err := m.snapshotMode(ctx, md.ID)
	if err != nil {
		return true, fmt.Errorf("restore %s: %w (%s)", md.Name, err, keptInStandby(md.Name))
	}
	if mode != SnapshotLazy {
		return false, nil
	}
	eagerly := func(why string) (bool, error) {
		m.log(ctx, "restoring eagerly", map[string]any{"id": md.ID, "reason": why})
		return false, nil
	}
	lr, ok := drv.(vmm.LazyRestorer)
	if !ok {
		return eagerly(drv.Name() + " restores snapshots eagerly only")
	}
	snap := m.layout.snapshot(md.ID)
	raw := path.Join(snap, vmm.MemoryFile)
	if _, err := m.host.Stat(ctx, raw); err != nil {
		return eagerly("no uncompressed memory image: " + err.Error())
	}
	t0 := time.Now()
	_ = m.host.Remove(ctx, vmm.SocketPath(drv, md.VMM))
	pid := 0
	err = m.plugTap(ctx, md, md.VMM.Net)
	if err == nil {
		pid, err = lr.RestoreLazily(ctx, m.host, md.VMM, snap)
	}
	if err != nil {
		_ = m.unplugTap(context.WithoutCancel(ctx), md)
		if errors.Is(err, vmm.ErrNoLazyRestore) {
			return eagerly(err.Error())
		}
		return true, fmt.Errorf("restore %s: %w (%s)", md.Name, err, keptInStandby(md.Name))
	}
	md.PID, md.Booted, md.StartedAt = pid, true, time.Now().UTC()
	if err := m.saveMetadata(ctx, md); err != nil {
		_ = m.killVMM(context.WithoutCancel(ctx), md)
		return true, err
	}
	// The guest runs: from here the snapshot would be stale. Its memory image moves aside (the
	// VMM's open file moves with it) and stays until the VMM has exited (dropHeldMemory).
	if err := m.host.Rename(ctx, raw, m.layout.heldMemory(md.ID)); err != nil {
		m.log(ctx, "memory image not kept aside; its room comes back when the VMM exits", map[string]any{"id": md.ID, "error": err.Error()})
	}
	if err := m.host.RemoveAll(ctx, m.layout.snapshots(md.ID)); err != nil {
		return true, fmt.Errorf("drop the restored snapshot of %s: %w", md.Name, err)
	}
	m.log(ctx, "restored lazily", map[string]any{"id": md.ID, "pid": pid, "restore_ms": time.Since(t0).Milliseconds()})
	return true, nil
}

// heldNote adds to a refused standby the room that a lazy restore's memory image takes until the
// VMM stops; "" when there is none.
func (m *Manager) heldNote(ctx context.Context, md *metadata) string {
	fi, err := m.host.Stat(ctx, m.layout.heldMemory(md.ID))
	if err != nil {
		return ""
	}
	return fmt.Sprintf("; %s of what is used there is the memory image %s was lazily restored from (%s), which its VMM may still read and which is deleted when the VMM stops",
		size(fi.Size()), md.Name, m.layout.heldMemory(md.ID))
}

// dropHeldMemory removes the memory image a lazy restore kept for the VMM, once no VMM runs.
func (m *Manager) dropHeldMemory(ctx context.Context, md *metadata) error {
	if err := m.host.Remove(ctx, m.layout.heldMemory(md.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the memory image %s of %s: %w", m.layout.heldMemory(md.ID), md.Name, err)
	}
	return nil
}
