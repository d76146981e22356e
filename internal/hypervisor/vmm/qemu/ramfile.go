package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// A guest booted with a RAM file (vmm.Config.RAMFile) has its boot memory in a file, mapped shared:
//
//	boot      the file is made anew and its whole size allocated on disk (fallocate), so that a
//	          full disk can never fail a page the guest touches (QEMU would die of SIGBUS);
//	snapshot  x-ignore-shared leaves the file's memory out of the migration stream, which then
//	          holds the device state and the hot-plugged memory only;
//	restore   QEMU maps the same file again and loads the small stream: the guest runs before its
//	          memory is read, each page coming from the file when first touched.
//
// Free-page reporting stays off for such a guest: it would punch holes in the file, and the page
// that refills a hole needs room on the disk again.

// ramBackend is the id of the memory backend that holds a RAM-file guest's boot memory.
const ramBackend = "ram0"

// ramFileArgs are the memory arguments that put the boot memory in cfg.RAMFile; the machine
// option that names the backend goes with -M.
func ramFileArgs(cfg vmm.Config) []string {
	return []string{"-object", fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,share=on", ramBackend, cfg.MemoryBytes/mib, optValue(cfg.RAMFile))}
}

// machineArgs is the -M option: q35, with the RAM file's backend as the boot memory when there is one.
func machineArgs(cfg vmm.Config) []string {
	if cfg.RAMFile == "" {
		return []string{"-M", "q35"}
	}
	return []string{"-M", "q35,memory-backend=" + ramBackend}
}

// freshRAMFile makes cfg's RAM file anew, its whole size allocated, for a guest that boots: no
// memory of an earlier boot survives in it.
func freshRAMFile(ctx context.Context, h host.Host, cfg vmm.Config) error {
	if cfg.RAMFile == "" {
		return nil
	}
	if err := h.Remove(ctx, cfg.RAMFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the old RAM file: %w", err)
	}
	if _, err := h.Run(ctx, nil, "fallocate", "-l", strconv.FormatInt(cfg.MemoryBytes, 10), cfg.RAMFile); err != nil {
		_ = h.Remove(context.WithoutCancel(ctx), cfg.RAMFile)
		return fmt.Errorf("allocate %d bytes for the guest's memory in %s: %w", cfg.MemoryBytes, cfg.RAMFile, err)
	}
	return nil
}

// checkRAMFile checks, before a restore, that the RAM file the snapshot left its memory in is
// still there and whole.
func checkRAMFile(ctx context.Context, h host.Host, cfg vmm.Config) error {
	if cfg.RAMFile == "" {
		return nil
	}
	fi, err := h.Stat(ctx, cfg.RAMFile)
	if err != nil {
		return fmt.Errorf("the snapshot's memory is in the RAM file %s: %w", cfg.RAMFile, err)
	}
	if fi.Size() != cfg.MemoryBytes {
		return fmt.Errorf("the RAM file %s holds %d bytes, but the guest's memory is %d", cfg.RAMFile, fi.Size(), cfg.MemoryBytes)
	}
	return nil
}

// ignoreShared tells QEMU, on both ends of a snapshot of a RAM-file guest, to leave the shared
// memory out of the stream; both ends must agree, or the stream does not load.
func ignoreShared(ctx context.Context, m *monitor, cfg vmm.Config) error {
	if cfg.RAMFile == "" {
		return nil
	}
	caps := []map[string]any{{"capability": "x-ignore-shared", "state": true}}
	if err := m.execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return fmt.Errorf("leave the RAM file out of the snapshot: %w", err)
	}
	return nil
}

func validateRAMFile(cfg vmm.Config) error {
	if cfg.RAMFile != "" && !path.IsAbs(cfg.RAMFile) {
		return fmt.Errorf("%w: RAM file path %q must be absolute", ErrInvalidConfig, cfg.RAMFile)
	}
	return nil
}
