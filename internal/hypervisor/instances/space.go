package instances

import (
	"context"
	"fmt"
	"path"
	"syscall"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// The room on the host's disk that snapshots need, checked before they are written so that a
// full disk is refused with the numbers instead of failing half-way. Every refusal wraps
// syscall.ENOSPC: it reads "no space left on device", and errors.Is finds it.

// snapshotRoom is the most a snapshot's memory image takes before it is compressed: the guest's
// whole memory, hotplug included (QEMU's stream is smaller where pages are zero).
func snapshotRoom(cfg vmm.Config) int64 {
	if cfg.RAMFile != "" { // the boot memory stays in the RAM file (ramfile.go)
		return cfg.HotplugBytes + deviceStateRoom
	}
	return cfg.MemoryBytes + cfg.HotplugBytes
}

// deviceStateRoom bounds the device state a snapshot holds beside the memory: a few hundred KiB
// for the devices a guest here has, with a wide margin.
const deviceStateRoom = 64 << 20

// needRoom fails unless the filesystem holding dir has need bytes free; what says what needs them.
func (m *Manager) needRoom(ctx context.Context, dir string, need int64, what string) error {
	free, err := m.host.FreeSpace(ctx, dir)
	if err != nil {
		return fmt.Errorf("free space in %s: %w", dir, err)
	}
	if free < need {
		return fmt.Errorf("%w on %s: %s needs %s, and %s are free", syscall.ENOSPC, dir, what, size(need), size(free))
	}
	return nil
}

// checkStandbyRoom is the check before a standby pauses the guest: room for its memory image.
func (m *Manager) checkStandbyRoom(ctx context.Context, md *metadata) error {
	return m.needRoom(ctx, m.layout.dir(md.ID), snapshotRoom(md.VMM),
		"the snapshot of "+md.Name+" (its memory image, before compression, is up to the guest's memory)")
}

// checkCompressRoom is the check before the memory image is compressed: its compressed copy is
// written beside it, and is at most as large.
func (m *Manager) checkCompressRoom(ctx context.Context, md *metadata, rawBytes int64) error {
	return m.needRoom(ctx, m.layout.dir(md.ID), rawBytes,
		fmt.Sprintf("compressing the snapshot of %s (the compressed copy is written beside the %s memory image)", md.Name, size(rawBytes)))
}

// checkRestoreRoom is the check before a compressed snapshot is decompressed for a restore: the
// memory image comes back beside it. A refusal keeps the snapshot.
func (m *Manager) checkRestoreRoom(ctx context.Context, md *metadata) error {
	err := m.needRoom(ctx, m.layout.dir(md.ID), snapshotRoom(md.VMM),
		"restoring "+md.Name+" (its memory image is decompressed beside the snapshot, up to the guest's memory)")
	if err != nil {
		return fmt.Errorf("restore %s: %w (the snapshot is kept; %s stays in Standby)", md.Name, err, md.Name)
	}
	return nil
}

// outOfRoom adds to the error of a standby that filled the disk what a snapshot needs and what is
// free once the partial one is gone.
func (m *Manager) outOfRoom(ctx context.Context, md *metadata, err error) error {
	dir := m.layout.dir(md.ID)
	if free, ferr := m.host.FreeSpace(ctx, dir); ferr == nil {
		err = fmt.Errorf("%w; a snapshot of %s needs up to %s on %s before compression, and %s are free there without it",
			err, md.Name, size(snapshotRoom(md.VMM)), dir, size(free))
	}
	return err
}

// resumeRoom is the free space a guest that a full disk stopped must have before it is resumed:
// less would stop it again at its first write.
const resumeRoom = units.MiB

// checkResumeRoom refuses to resume a guest that a full disk stopped while that disk is still full.
func (m *Manager) checkResumeRoom(ctx context.Context, md *metadata, de *vmm.DiskError) error {
	if !de.NoSpace || de.Path == "" {
		return nil
	}
	dir := path.Dir(de.Path)
	free, err := m.host.FreeSpace(ctx, dir)
	if err != nil || free >= resumeRoom {
		return err
	}
	return stillFull(md, dir, free, "")
}

// stillFull is the error of a resume that found no room; why adds what showed it.
func stillFull(md *metadata, dir string, free int64, why string) error {
	return fmt.Errorf("resume %s: still %w on %s: %d bytes free%s; free space there and apply again (the guest stays Paused and keeps every write it was making)",
		md.Name, syscall.ENOSPC, dir, free, why)
}

// diskErrorReason is the state_reason of a guest its VMM paused on a failed disk write.
func diskErrorReason(de *vmm.DiskError) string {
	switch {
	case de.NoSpace && de.Path != "":
		return "guest stopped by an I/O error: no space left on device on " + path.Dir(de.Path)
	case de.NoSpace:
		return "guest stopped by an I/O error: no space left on device"
	case de.Path != "":
		return "guest stopped by an I/O error writing " + de.Path
	}
	return "guest stopped by an I/O error"
}

// size is a byte count for a message: exact, and in MiB or GiB for a reader.
func size(n int64) string {
	switch {
	case n >= units.GiB:
		return fmt.Sprintf("%d bytes (%.1f GiB)", n, float64(n)/float64(units.GiB))
	case n >= units.MiB:
		return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/float64(units.MiB))
	}
	return fmt.Sprintf("%d bytes", n)
}
