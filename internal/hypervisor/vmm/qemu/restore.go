package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// streamHeader opens every QEMU migration stream: "QEVM" and format version 3.
var streamHeader = []byte("QEVM\x00\x00\x00\x03")

// Restore starts QEMU with cfg's devices waiting for a migration stream, feeds it the snapshot in
// snapshotDir and returns its pid with the guest Paused. On failure no QEMU process is left.
func (*Driver) Restore(ctx context.Context, h host.Host, cfg vmm.Config, snapshotDir string) (int, error) {
	memPath := path.Join(snapshotDir, vmm.MemoryFile)
	quoted, err := shellQuote(memPath)
	if err != nil {
		return 0, err
	}
	info, err := readSnapshot(ctx, h, cfg, snapshotDir)
	if err != nil {
		return 0, err
	}
	// QEMU would wait forever on an empty stream, and an unreadable one is better refused here.
	if err := checkStream(ctx, h, memPath); err != nil {
		return 0, err
	}
	if err := checkRAMFile(ctx, h, cfg); err != nil {
		return 0, err
	}
	return launch(ctx, h, cfg, true, func(m *monitor) error {
		if running := m.version.String(); running != info.Version {
			return fmt.Errorf("the snapshot in %s was taken by QEMU %s, but QEMU %s is running; only the same version can restore it", snapshotDir, info.Version, running)
		}
		if err := ignoreShared(ctx, m, cfg); err != nil {
			return err
		}
		if err := m.execute(ctx, "migrate-incoming", map[string]any{"uri": "exec:cat " + quoted}, nil); err != nil {
			return err
		}
		if err := waitMigration(ctx, m); err != nil {
			return fmt.Errorf("restore %s: %w", memPath, err)
		}
		return m.requireStatus(ctx, "paused", "after the restore")
	})
}

// readSnapshot reads what Snapshot wrote beside the memory image and checks that cfg describes
// the same devices, which QEMU needs to load the stream.
func readSnapshot(ctx context.Context, h host.Host, cfg vmm.Config, dir string) (*snapshotInfo, error) {
	var info snapshotInfo
	var taken vmm.Config
	for name, v := range map[string]any{snapshotState: &info, snapshotConfig: &taken} {
		b, err := h.ReadFile(ctx, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("snapshot in %s is incomplete: %w", dir, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("snapshot file %s: %w", path.Join(dir, name), err)
		}
	}
	if info.Driver != driverName {
		return nil, fmt.Errorf("the snapshot in %s was written by %q, not %q", dir, info.Driver, driverName)
	}
	if err := sameDevices(taken, cfg); err != nil {
		return nil, fmt.Errorf("the snapshot in %s cannot be restored with this config: %w", dir, err)
	}
	return &info, nil
}

// sameDevices compares what shapes the VM's hardware; paths and the kernel command line may differ.
func sameDevices(taken, cfg vmm.Config) error {
	for _, f := range []struct {
		name    string
		was, is any
	}{
		{"vcpus", taken.VCPUs, cfg.VCPUs},
		{"memory bytes", taken.MemoryBytes, cfg.MemoryBytes},
		{"hotplug bytes", taken.HotplugBytes, cfg.HotplugBytes},
		{"accelerator", taken.Accelerator, cfg.Accelerator},
		{"disk count", len(taken.Disks), len(cfg.Disks)},
	} {
		if f.was != f.is {
			return fmt.Errorf("%s was %v when the snapshot was taken and is %v now", f.name, f.was, f.is)
		}
	}
	for i := range cfg.Disks {
		was, is := taken.Disks[i], cfg.Disks[i]
		if was.Serial != is.Serial || was.ReadOnly != is.ReadOnly {
			return fmt.Errorf("disk %d was serial %q readonly %t when the snapshot was taken and is serial %q readonly %t now",
				i, was.Serial, was.ReadOnly, is.Serial, is.ReadOnly)
		}
	}
	return nil
}

// checkStream checks that p starts like a QEMU migration stream.
func checkStream(ctx context.Context, h host.Host, p string) error {
	f, err := h.Open(ctx, p)
	if err != nil {
		return fmt.Errorf("snapshot memory image: %w", err)
	}
	defer func() { _ = f.Close() }()
	head := make([]byte, len(streamHeader))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("snapshot memory image %s: %w", p, err)
	}
	if n == 0 {
		return fmt.Errorf("snapshot memory image %s is empty", p)
	}
	if !bytes.Equal(head[:n], streamHeader) {
		return fmt.Errorf("snapshot memory image %s is not a QEMU migration stream (it starts with % x, not % x)", p, head[:n], streamHeader)
	}
	return nil
}
