package qemu

import (
	"context"
	"fmt"
	"path"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// ramFileName is the RAM file of a guest booted for lazy restore, in its instance directory.
const ramFileName = "memory.ram"

// LazyBoot gives the guest a RAM file (ramfile.go), which is what lets its snapshots be restored
// lazily.
func (*Driver) LazyBoot(cfg *vmm.Config) { cfg.RAMFile = path.Join(cfg.Dir, ramFileName) }

// CheckLazyRestore: QEMU needs nothing of the host for a lazy restore beyond what a boot needs;
// which guests can be restored so is up to how they were booted (LazyBoot).
func (*Driver) CheckLazyRestore(context.Context, host.Host) error { return nil }

// RestoreLazily restores the snapshot of a guest booted with a RAM file and runs it: QEMU maps
// the RAM file again and loads only the device state, so the guest runs before its memory is
// read. A guest booted without one has its memory in the snapshot's stream: ErrNoLazyRestore.
// On failure no QEMU is left, and the RAM file is as the snapshot left it: the guest never ran.
func (d *Driver) RestoreLazily(ctx context.Context, h host.Host, cfg vmm.Config, snapshotDir string) (int, error) {
	if cfg.RAMFile == "" {
		return 0, fmt.Errorf("%w: the guest was booted without a RAM file (before snapshot_mode was lazy), so its memory is in the snapshot's stream; it boots with one next time", vmm.ErrNoLazyRestore)
	}
	pid, err := d.Restore(ctx, h, cfg, snapshotDir)
	if err != nil {
		return 0, err
	}
	vm, err := d.Connect(ctx, h, cfg)
	if err == nil {
		err = vm.Resume(ctx)
		_ = vm.Close()
	}
	if err != nil {
		undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = h.Signal(undo, pid, syscall.SIGKILL)
		_ = waitExit(undo, h, pid, cfg.Dir)
		return 0, fmt.Errorf("run the restored guest: %w", err)
	}
	return pid, nil
}
