package vmm

import (
	"context"
	"errors"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// LazyRestorer is implemented by drivers whose VMM can restore a snapshot without reading its
// memory image first: the guest runs at once, and each page is read from the image when the
// guest first touches it (Cloud Hypervisor's on-demand restore, userfaultfd). Drivers without it
// restore eagerly (Driver.Restore).
type LazyRestorer interface {
	// CheckLazyRestore says why h cannot restore lazily; nil when it can. It starts nothing.
	CheckLazyRestore(ctx context.Context, h host.Host) error
	// RestoreLazily starts a VMM, restores the snapshot in snapshotDir into it without reading
	// its memory image (MemoryFile, uncompressed) and runs the guest: it is left Running. The VMM
	// keeps the memory image open to serve the guest's pages from it until it exits, so the
	// caller keeps the file (its name may move within its filesystem) until then. An error that
	// wraps ErrNoLazyRestore means that nothing was restored and no VMM was left running: the
	// caller can restore eagerly instead.
	RestoreLazily(ctx context.Context, h host.Host, cfg Config, snapshotDir string) (pid int, err error)
}

// ErrNoLazyRestore is why a lazy restore was not attempted: the VMM or the host cannot do it.
var ErrNoLazyRestore = errors.New("lazy restore is not available")

// LazyBooter is implemented by LazyRestorers that can restore lazily only a guest booted for it
// (QEMU: one whose memory lives in a RAM file). LazyBoot fills in what cfg, the config of a guest
// about to boot, needs for that. A guest booted without it is restored eagerly.
type LazyBooter interface {
	LazyBoot(cfg *Config)
}
