package instances

import (
	"context"
	"errors"
	"fmt"
	"path"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/compress"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// standby puts a running (or paused) guest to sleep on disk: check the room for the snapshot, give
// back hotplugged memory, pause, snapshot into a partial directory (compressing the memory image),
// publish the snapshot, stop the VMM. Until the snapshot is published any failure resumes the
// guest (or leaves it paused if it was), so a failed standby never loses the VM.
func (m *Manager) standby(ctx context.Context, md *metadata, running bool) (err error) {
	t0 := time.Now()
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer func() { _ = vm.Close() }()
	partial := m.layout.partialSnapshot(md.ID)
	// What an interrupted standby left is never a snapshot; it goes first, and frees its room.
	if err := m.host.RemoveAll(ctx, partial); err != nil {
		return err
	}
	if err := m.checkStandbyRoom(ctx, md); err != nil {
		return fmt.Errorf("standby %s: %w%s (nothing was done: %s is still %s)", md.Name, err, m.heldNote(ctx, md), md.Name, leftIn(running))
	}
	published := false
	defer func() {
		if err == nil || published {
			return
		}
		// Undo: the guest goes back to what it was doing, and no partial snapshot stays behind.
		undo := context.WithoutCancel(ctx)
		_ = m.host.RemoveAll(undo, partial)
		if errors.Is(err, syscall.ENOSPC) {
			err = m.outOfRoom(undo, md, err)
		}
		if running {
			if rerr := vm.Resume(undo); rerr != nil {
				err = fmt.Errorf("%w; resuming the guest afterwards failed too: %v", err, rerr)
				return
			}
			m.giveLiveSizes(undo, md)
		}
		err = fmt.Errorf("%w (standby undone: %s is %s)", err, md.Name, leftIn(running))
	}()

	if running {
		if md.VMM.HotplugBytes > 0 { // down to the boot memory, which is all the snapshot then holds
			if err := vm.SetMemory(ctx, md.VMM.MemoryBytes); err != nil {
				m.log(ctx, "could not shrink memory before the snapshot", map[string]any{"id": md.ID, "error": err.Error()})
			}
		}
		if err := vm.Pause(ctx); err != nil {
			return fmt.Errorf("pause %s: %w", md.Name, err)
		}
	}
	if err := m.host.MkdirAll(ctx, partial, 0o700); err != nil {
		return err
	}
	fields := map[string]any{"id": md.ID}
	// Lazy snapshots (lazy.go) stay uncompressed: the VMM maps the raw image at restore.
	lazy := m.snapshotsLazily(ctx, md)
	if err := m.writeSnapshot(ctx, vm, md, partial, m.opts.CompressSnapshots && !lazy, fields); err != nil {
		return err
	}
	if err := m.recordSnapshotMode(ctx, md, partial, lazy); err != nil {
		return err
	}
	if err := m.host.RemoveAll(ctx, m.layout.snapshot(md.ID)); err != nil {
		return err
	}
	if err := m.host.Rename(ctx, partial, m.layout.snapshot(md.ID)); err != nil {
		return fmt.Errorf("publish the snapshot of %s: %w", md.Name, err)
	}
	published = true
	// From here the snapshot is the VM: stopping the VMM cannot lose it.
	if err := m.quitVMM(ctx, md); err != nil {
		return fmt.Errorf("stop the VMM of %s after its snapshot: %w", md.Name, err)
	}
	fields["total_ms"] = time.Since(t0).Milliseconds()
	m.log(ctx, "standby complete", fields)
	return nil
}

// leftIn is the state a standby that did not happen leaves the guest in.
func leftIn(running bool) State {
	if running {
		return Running
	}
	return Paused
}

// writeSnapshot snapshots the paused guest into the partial directory and, when compressed,
// leaves its memory image compressed there. A VMM that streams its memory image
// has it compressed on the way by the host's lz4, so the raw image never reaches the disk and the
// compression overlaps the snapshot; otherwise (Cloud Hypervisor writes its memory file itself)
// the image is compressed right after, beside the raw one, which then goes. fields gets the phase
// times for the log.
func (m *Manager) writeSnapshot(ctx context.Context, vm vmm.VM, md *metadata, partial string, compressed bool, fields map[string]any) error {
	t0 := time.Now()
	if sc, ok := vm.(vmm.StreamCompressor); ok && compressed {
		if lz4 := m.lz4Tool(ctx, md.ID); lz4 != "" {
			if err := sc.SnapshotCompressed(ctx, partial, lz4); err != nil {
				return fmt.Errorf("snapshot %s (compressed as it is written by %s): %w", md.Name, lz4, err)
			}
			fi, err := m.host.Stat(ctx, path.Join(partial, vmm.CompressedMemoryFile))
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", md.Name, err)
			}
			fields["snapshot_ms"], fields["compressed_bytes"], fields["streamed"] = time.Since(t0).Milliseconds(), fi.Size(), true
			return nil
		}
	}
	if err := vm.Snapshot(ctx, partial); err != nil {
		return fmt.Errorf("snapshot %s: %w", md.Name, err)
	}
	fields["snapshot_ms"] = time.Since(t0).Milliseconds()
	if !compressed {
		return nil
	}
	t1 := time.Now()
	raw := path.Join(partial, vmm.MemoryFile)
	fi, err := m.host.Stat(ctx, raw)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", md.Name, err)
	}
	if err := m.checkCompressRoom(ctx, md, fi.Size()); err != nil {
		return fmt.Errorf("standby %s: %w", md.Name, err)
	}
	n, err := compress.File(ctx, m.host, raw, path.Join(partial, vmm.CompressedMemoryFile))
	if err != nil {
		return fmt.Errorf("compress the snapshot of %s: %w", md.Name, err)
	}
	if err := m.host.Remove(ctx, raw); err != nil {
		return err
	}
	fields["compressed_bytes"], fields["compress_ms"] = n, time.Since(t1).Milliseconds()
	return nil
}
