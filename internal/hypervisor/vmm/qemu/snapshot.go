package qemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"syscall"
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
	// Plugged are the vCPUs SetVCPUs added: the restore starts QEMU with them (vcpus.go).
	Plugged []hotpluggableCPU `json:"plugged_vcpus,omitempty"`
}

// unlimitedBandwidth lifts QEMU's migration cap (128 MiB/s by default), which applies even while
// the VM is paused. Bytes per second.
const unlimitedBandwidth = 1 << 40

// nearlyFull is the free space below which a filesystem that a snapshot's stream failed on counts
// as full: the stream ran out of room.
const nearlyFull = 1 << 20

// pollInterval paces the polls of QEMU and of the host while waiting.
const pollInterval = 50 * time.Millisecond

// Snapshot writes the paused VM's migration stream into dir as vmm.MemoryFile.
func (v *vm) Snapshot(ctx context.Context, dir string) error {
	return v.snapshot(ctx, dir, vmm.MemoryFile, nil)
}

var _ vmm.StreamCompressor = (*vm)(nil)

// SnapshotCompressed writes the paused VM's migration stream into dir as vmm.CompressedMemoryFile,
// compressed by lz4 as QEMU produces it: the raw stream never reaches the disk. lz4 runs at its
// fastest level, as compress.Level, and without the frame's content checksum, which would cost a
// pass over the whole stream; every block still has its size, and QEMU checks the stream it loads.
// Its blocks are 64 KiB (-B4), one pipe buffer: QEMU writes the next while lz4 compresses the
// last, where lz4's default 4 MiB blocks hold QEMU up while each is compressed, which takes twice
// as long (BenchmarkSnapshotStream) for the same size within 0.2%.
func (v *vm) SnapshotCompressed(ctx context.Context, dir, lz4 string) error {
	return v.snapshot(ctx, dir, vmm.CompressedMemoryFile, []string{lz4, "-1", "-q", "-B4", "-c", "--no-frame-crc"})
}

// snapshot writes the paused VM's migration stream through filter (a command that reads the
// stream on its standard input and writes the memory image on its standard output; none: as it
// is) into the file name in dir. The stream passes the migration socket to a relay on the host
// (relay.go); the image is written under a temporary name, new for every snapshot, and the relay
// renames it once it has written all of it (so a snapshot whose caller died still completes).
func (v *vm) snapshot(ctx context.Context, dir, name string, filter []string) error {
	if !path.IsAbs(dir) {
		return fmt.Errorf("snapshot directory %q must be absolute", dir)
	}
	memPath := path.Join(dir, name)
	var token [8]byte
	_, _ = rand.Read(token[:])
	partial := memPath + ".partial-" + hex.EncodeToString(token[:])
	// A snapshot holds one memory image: what an earlier one left under either name goes.
	for _, f := range []string{vmm.MemoryFile, vmm.CompressedMemoryFile} {
		if err := v.h.Remove(ctx, path.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	id, err := lookupUser(ctx, v.h, v.user)
	if err != nil {
		return err
	}
	var qemuVersion string
	var plugged []hotpluggableCPU
	var r *relay
	err = v.session(ctx, func(m *monitor) error {
		qemuVersion = m.version.String()
		if err := abandonMigration(ctx, m); err != nil {
			return err
		}
		status, err := m.status(ctx)
		if err != nil {
			return err
		}
		if status == "postmigrate" {
			// A snapshot completed for a caller that died, and QEMU takes no other until the VM has
			// run again: it runs for a moment and is stopped again.
			if err := m.execute(ctx, "cont", nil, nil); err != nil {
				return fmt.Errorf("snapshot: leave the postmigrate state of an earlier snapshot: %w", err)
			}
			if err := m.execute(ctx, "stop", nil, nil); err != nil {
				return err
			}
			if status, err = m.status(ctx); err != nil {
				return err
			}
		}
		if state, err := stateOf(status); err != nil || state != vmm.Paused {
			return fmt.Errorf("snapshot: the VM must be paused, but QEMU's run state is %q", status)
		}
		if plugged, err = v.plugged(ctx, m); err != nil {
			return err
		}
		if err := m.execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": unlimitedBandwidth}, nil); err != nil {
			return err
		}
		if err := ignoreShared(ctx, m, v.cfg); err != nil {
			return err
		}
		if err := v.h.Remove(ctx, migrationPath(v.cfg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove a stale migration socket: %w", err)
		}
		if r, err = startRelay(ctx, v.h, v.cfg, id, receiveScript, partial, memPath, filter); err != nil {
			return err
		}
		if err := r.listening(ctx); err != nil {
			return err
		}
		if err := m.execute(ctx, "migrate", map[string]any{"uri": "unix:" + migrationPath(v.cfg)}, nil); err != nil {
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
		// QEMU reports "completed" once it has sent the stream; the relay may still be writing.
		err = r.wait(ctx, finishTimeout)
	}
	if err == nil {
		err = v.checkImage(ctx, memPath)
	}
	if err != nil {
		undo := context.WithoutCancel(ctx)
		// QEMU only sees the relay fail ("Broken pipe"); what is left free tells why.
		if free, ferr := v.h.FreeSpace(undo, dir); ferr == nil && free < nearlyFull {
			err = fmt.Errorf("%w: %w on %s, which the memory image filled", err, syscall.ENOSPC, dir)
		}
		if r != nil {
			r.abandon(undo)
		}
		for _, f := range []string{partial, memPath, migrationPath(v.cfg)} {
			_ = v.h.Remove(undo, f)
		}
		return err
	}
	_ = v.h.Remove(ctx, migrationPath(v.cfg))
	config, err := json.MarshalIndent(v.cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := v.h.WriteFile(ctx, path.Join(dir, snapshotConfig), config, 0o600); err != nil {
		return err
	}
	info, err := json.MarshalIndent(snapshotInfo{Driver: driverName, Version: qemuVersion, CreatedAt: time.Now().UTC(), Plugged: plugged}, "", "  ")
	if err != nil {
		return err
	}
	return v.h.WriteFile(ctx, path.Join(dir, snapshotState), info, 0o600)
}

// finishTimeout bounds the wait for the relay once QEMU has handed it the whole stream: what is
// left is at most a pipe's and a compressor block's worth.
const finishTimeout = 30 * time.Second

// commandEndTimeout bounds the wait for the relay of a failed stream to end.
const commandEndTimeout = 5 * time.Second

// checkImage checks the memory image p the relay wrote and renamed into place.
func (v *vm) checkImage(ctx context.Context, p string) error {
	info, err := v.h.Stat(ctx, p)
	if err != nil {
		return fmt.Errorf("snapshot: the memory image %s: %w", p, err)
	}
	if info.Size() == 0 {
		return fmt.Errorf("snapshot: QEMU wrote an empty memory image %s", p)
	}
	return nil
}

// waitMigration polls query-migrate until the migration (outgoing or incoming) has completed.
func waitMigration(ctx context.Context, m *monitor) error {
	var status string
	open, stop := m.whileOpen(ctx)
	defer stop()
	// Each query runs under ctx itself: a monitor that closes mid-query says so in its own error.
	err := poll.Until(open, pollInterval, func(context.Context) (bool, error) {
		var info migrationInfo
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

// cancelTimeout bounds the wait for a cancelled migration to stop.
const cancelTimeout = 30 * time.Second

// abandonMigration cancels a migration that is still under way, and waits until it has stopped.
// Only a caller that died leaves one (a provider killed in the middle of a standby): its stream
// would go on being written, and the VM would be stopped again when it completed.
func abandonMigration(ctx context.Context, m *monitor) error {
	status, err := migrationStatus(ctx, m)
	if err != nil || !underWay(status) {
		return err
	}
	if status != "cancelling" {
		if err := m.execute(ctx, "migrate_cancel", nil, nil); err != nil {
			return fmt.Errorf("cancel the migration left %s by an earlier snapshot: %w", status, err)
		}
	}
	err = poll.Within(ctx, cancelTimeout, pollInterval, func(ctx context.Context) (bool, error) {
		status, err = migrationStatus(ctx, m)
		return err == nil && !underWay(status), err
	})
	if errors.Is(err, poll.ErrTimeout) {
		return fmt.Errorf("the migration left by an earlier snapshot is still %s %s after migrate_cancel", status, cancelTimeout)
	}
	return err
}

// migrationInfo is what query-migrate says about the last migration.
type migrationInfo struct {
	Status    string `json:"status"` // "" before the first migration
	ErrorDesc string `json:"error-desc"`
}

func migrationStatus(ctx context.Context, m *monitor) (string, error) {
	var info migrationInfo
	err := m.execute(ctx, "query-migrate", nil, &info)
	return info.Status, err
}

// underWay tells a migration that has not ended from one that completed, failed or was
// cancelled (or that never was).
func underWay(status string) bool {
	switch status {
	case "", "none", "completed", "failed", "cancelled":
		return false
	}
	return true
}
