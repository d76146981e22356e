package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Files of a snapshot beside vmm.MemoryFile.
const (
	snapshotConfig = "config.json" // the vmm.Config that booted the VM: restore needs identical devices
	snapshotState  = "state.json"  // snapshotInfo
)

// snapshotInfo is what wrote a snapshot.
type snapshotInfo struct {
	Driver    string    `json:"driver"`
	Version   string    `json:"qemu_version"`
	CreatedAt time.Time `json:"created_at"`
}

// unlimitedBandwidth lifts QEMU's migration cap (128 MiB/s by default), which applies even while
// the VM is paused. Bytes per second.
const unlimitedBandwidth = 1 << 40

// pollInterval paces the polls of QEMU and of the host while waiting.
const pollInterval = 50 * time.Millisecond

// Snapshot writes the paused VM's migration stream into dir. QEMU 7.2 has no file: migration, so
// the stream goes through a shell command; it is written under a temporary name and renamed at the
// end, because QEMU reports "completed" before the command has finished writing.
func (v *vm) Snapshot(ctx context.Context, dir string) error {
	if !path.IsAbs(dir) {
		return fmt.Errorf("snapshot directory %q must be absolute", dir)
	}
	memPath := path.Join(dir, vmm.MemoryFile)
	partial := memPath + ".partial"
	quotedMem, err := shellQuote(memPath)
	if err != nil {
		return err
	}
	quotedPartial, _ := shellQuote(partial)
	for _, p := range []string{memPath, partial} {
		if err := v.h.Remove(ctx, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	var qemuVersion string
	err = v.session(ctx, func(m *monitor) error {
		qemuVersion = m.version.String()
		status, err := m.status(ctx)
		if err != nil {
			return err
		}
		if state, err := stateOf(status); err != nil || state != vmm.Paused {
			return fmt.Errorf("snapshot: the VM must be paused, but QEMU's run state is %q", status)
		}
		if err := m.execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": unlimitedBandwidth}, nil); err != nil {
			return err
		}
		uri := fmt.Sprintf("exec:cat > %s && mv %s %s", quotedPartial, quotedPartial, quotedMem)
		if err := m.execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
			return err
		}
		if err := waitMigration(ctx, m); err != nil {
			if ctx.Err() != nil {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				_ = m.execute(cctx, "migrate_cancel", nil, nil)
				cancel()
			}
			return fmt.Errorf("snapshot: %w", err)
		}
		return nil
	})
	if err == nil {
		err = v.waitFile(ctx, memPath)
	}
	if err != nil {
		_ = v.h.Remove(context.WithoutCancel(ctx), partial)
		return err
	}
	config, err := json.MarshalIndent(v.cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := v.h.WriteFile(ctx, path.Join(dir, snapshotConfig), config, 0o640); err != nil {
		return err
	}
	info, err := json.MarshalIndent(snapshotInfo{Driver: driverName, Version: qemuVersion, CreatedAt: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	return v.h.WriteFile(ctx, path.Join(dir, snapshotState), info, 0o640)
}

// waitFile waits for the migration command to rename its output into place.
func (v *vm) waitFile(ctx context.Context, p string) error {
	err := poll.Until(ctx, pollInterval, func(ctx context.Context) (bool, error) {
		info, err := v.h.Stat(ctx, p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return false, nil
		case err != nil:
			return false, err
		case info.Size() == 0:
			return false, fmt.Errorf("snapshot: QEMU wrote an empty memory image %s", p)
		}
		return true, nil
	})
	if poll.Stopped(err) {
		return fmt.Errorf("snapshot: waiting for the memory image %s: %w", p, err)
	}
	return err
}

// waitMigration polls query-migrate until the migration (outgoing or incoming) has completed.
func waitMigration(ctx context.Context, m *monitor) error {
	var status string
	open, stop := m.whileOpen(ctx)
	defer stop()
	// Each query runs under ctx itself: a monitor that closes mid-query says so in its own error.
	err := poll.Until(open, pollInterval, func(context.Context) (bool, error) {
		var info struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := m.execute(ctx, "query-migrate", nil, &info); err != nil {
			return false, err
		}
		status = info.Status
		switch info.Status {
		case "completed":
			return true, nil
		case "failed", "cancelled":
			return false, fmt.Errorf("migration %s: %s", info.Status, info.ErrorDesc)
		}
		return false, nil
	})
	if poll.Stopped(err) {
		if ctx.Err() == nil {
			return fmt.Errorf("waiting for the migration: %w", m.err)
		}
		return fmt.Errorf("waiting for the migration (status %q): %w", status, ctx.Err())
	}
	return err
}

// shellQuote quotes a path for the shell that runs exec: migration commands. A path holding a
// single quote is refused rather than escaped: it has no business in an instance directory.
func shellQuote(p string) (string, error) {
	if strings.Contains(p, "'") {
		return "", fmt.Errorf("path %q contains a single quote, which QEMU's migration command cannot take", p)
	}
	return "'" + p + "'", nil
}
