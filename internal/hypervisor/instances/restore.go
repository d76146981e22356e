package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/compress"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// restore wakes a guest from its snapshot into a new VMM and leaves it Paused; resume then runs it
// and drops the snapshot. A failed restore keeps the snapshot, so the instance stays in Standby.
func (m *Manager) restore(ctx context.Context, md *metadata) error {
	t0 := time.Now()
	drv, err := m.driver(md.Hypervisor)
	if err != nil {
		return err
	}
	if err := m.checkRestorable(ctx, drv, md); err != nil {
		return err
	}
	// A lazy snapshot is restored on demand when the VMM can (lazy.go); else on as below.
	if done, err := m.restoreLazily(ctx, drv, md); done {
		return err
	}
	snap := m.layout.snapshot(md.ID)
	raw := path.Join(snap, vmm.MemoryFile)
	compressed := path.Join(snap, vmm.CompressedMemoryFile)
	// A driver that reads the compressed image as it lies gets it with the host's lz4; otherwise it
	// is decompressed beside the snapshot first, and that copy goes once the VMM has read it.
	cr, streams := drv.(vmm.CompressedRestorer)
	lz4 := ""
	decompressed := false
	if _, err := m.host.Stat(ctx, compressed); err == nil {
		if streams {
			lz4 = m.lz4Tool(ctx, md.ID)
		}
		if lz4 == "" {
			if err := m.checkRestoreRoom(ctx, md); err != nil {
				return err
			}
			if _, err := compress.Decompress(ctx, m.host, compressed, raw); err != nil {
				return fmt.Errorf("restore %s: decompress the snapshot: %w (%s)", md.Name, err, keptInStandby(md.Name))
			}
			decompressed = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	t1 := time.Now()
	_ = m.host.Remove(ctx, vmm.SocketPath(drv, md.VMM))
	// The snapshot's device names the TAP it was taken with: the same one comes back.
	pid := 0
	err = m.plugTap(ctx, md, md.VMM.Net)
	if err == nil {
		if lz4 != "" {
			pid, err = cr.RestoreCompressed(ctx, m.host, md.VMM, snap, lz4)
		} else {
			pid, err = drv.Restore(ctx, m.host, md.VMM, snap)
		}
	}
	if err != nil {
		undo := context.WithoutCancel(ctx)
		_ = m.unplugTap(undo, md)
		if decompressed {
			_ = m.host.Remove(undo, raw)
		}
		return fmt.Errorf("restore %s: %w (%s)", md.Name, err, keptInStandby(md.Name))
	}
	md.PID, md.Booted, md.StartedAt = pid, true, time.Now().UTC()
	if err := m.saveMetadata(ctx, md); err != nil {
		_ = m.killVMM(context.WithoutCancel(ctx), md)
		return err
	}
	if decompressed {
		// The VMM has read the memory image; the compressed copy stays until the guest runs.
		_ = m.host.Remove(ctx, raw)
	}
	m.log(ctx, "restored", map[string]any{"id": md.ID, "pid": pid, "decompress_ms": t1.Sub(t0).Milliseconds(), "restore_ms": time.Since(t1).Milliseconds(),
		"streamed": lz4 != ""})
	return nil
}

// checkRestorable refuses a snapshot that the installed VMM or the kernel could not resume.
func (m *Manager) checkRestorable(ctx context.Context, drv vmm.Driver, md *metadata) error {
	version, err := m.vmmVersion(ctx, drv)
	if err != nil {
		return fmt.Errorf("%s version: %w", drv.Name(), err)
	}
	if version != md.HypervisorVersion {
		return fmt.Errorf("%w: the snapshot of %s was taken by %s %s, but %s is installed now; only the same version can restore it (install %s again; %s)",
			ErrInvalidState, md.Name, drv.Name(), md.HypervisorVersion, version, md.HypervisorVersion, keptInStandby(md.Name))
	}
	for _, f := range []string{md.VMM.Kernel, md.VMM.Initrd} {
		if _, err := m.host.Stat(ctx, f); err != nil {
			return fmt.Errorf("%w: the snapshot of %s needs %s, which is gone: %v (%s)", ErrInvalidState, md.Name, f, err, keptInStandby(md.Name))
		}
	}
	return nil
}

// keptInStandby ends every restore error: what is kept, and the way out when the snapshot cannot
// be restored.
func keptInStandby(name string) string {
	return fmt.Sprintf("the snapshot is kept; %s stays in Standby. If the snapshot cannot be restored, set state = \"Stopped\" and "+
		"discard_snapshot = true: the snapshot is deleted and the overlay kept as it was when the snapshot was taken "+
		"(the guest's memory is lost, as in a power cut)", name)
}

// discardSnapshot takes a Standby instance to Stopped by deleting its snapshot, when asked to
// explicitly (WithDiscardSnapshot). The overlay is left as the snapshot found it.
func (m *Manager) discardSnapshot(ctx context.Context, md *metadata) error {
	size, err := m.snapshotBytes(ctx, md.ID)
	if err != nil {
		return fmt.Errorf("discard the snapshot of %s: %w", md.Name, err)
	}
	// The memory image goes first: without it the instance is Stopped even if the rest stays.
	snap := m.layout.snapshot(md.ID)
	for _, f := range []string{vmm.CompressedMemoryFile, vmm.MemoryFile} {
		if err := m.host.Remove(ctx, path.Join(snap, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("discard the snapshot of %s: %w (%s stays in Standby)", md.Name, err, md.Name)
		}
	}
	if err := m.host.RemoveAll(ctx, m.layout.snapshots(md.ID)); err != nil {
		return fmt.Errorf("discard the snapshot of %s: %w", md.Name, err)
	}
	if err := m.dropRAMFile(ctx, md); err != nil { // the memory the snapshot left there
		return fmt.Errorf("discard the snapshot of %s: %w", md.Name, err)
	}
	m.log(ctx, "snapshot discarded", map[string]any{"id": md.ID, "bytes": size})
	return nil
}
