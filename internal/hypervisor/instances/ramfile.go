package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Guests booted for lazy restore. A driver that restores lazily only a guest booted for it
// (vmm.LazyBooter: QEMU, whose guest memory then lives in a RAM file in the instance directory)
// is asked to prepare each boot while snapshot_mode is lazy. The RAM file is the guest's memory
// for as long as the guest runs or sleeps in Standby; it goes when no VMM runs and no snapshot
// needs it.

// lazyBoot prepares cfg, the config of a guest about to boot, for a lazy restore later.
func (m *Manager) lazyBoot(drv vmm.Driver, cfg *vmm.Config) {
	if lb, ok := drv.(vmm.LazyBooter); ok && m.opts.SnapshotMode == SnapshotLazy {
		lb.LazyBoot(cfg)
	}
}

// bootedEagerly is why the running guest of md cannot be snapshotted for a lazy restore even
// though its driver restores lazily: it was booted before snapshot_mode was lazy. "" otherwise.
func bootedEagerly(drv vmm.Driver, md *metadata) string {
	if _, ok := drv.(vmm.LazyBooter); ok && md.VMM.RAMFile == "" {
		return md.Name + " was booted before snapshot_mode was lazy, so its memory is not in a RAM file; it is snapshotted lazily after its next boot"
	}
	return ""
}

// dropRAMFile removes the RAM file of md's guest once no VMM runs and no snapshot holds the
// guest's memory in it: a guest that stopped, or whose snapshot was discarded. The caller has
// recorded that no VMM runs.
func (m *Manager) dropRAMFile(ctx context.Context, md *metadata) error {
	if md.VMM.RAMFile == "" {
		return nil
	}
	if snap, err := m.snapshotBytes(ctx, md.ID); err != nil || snap >= 0 {
		return err // in Standby: the RAM file is the snapshot's memory
	}
	if err := m.host.Remove(ctx, md.VMM.RAMFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the RAM file %s of %s: %w", md.VMM.RAMFile, md.Name, err)
	}
	return nil
}
