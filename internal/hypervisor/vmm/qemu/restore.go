package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// streamHeader opens every QEMU migration stream: "QEVM" and format version 3.
var streamHeader = []byte("QEVM\x00\x00\x00\x03")

// Restore starts QEMU with cfg's devices waiting for a migration stream, feeds it the snapshot in
// snapshotDir and returns its pid with the guest Paused. On failure no QEMU process is left.
func (d *Driver) Restore(ctx context.Context, h host.Host, cfg vmm.Config, snapshotDir string) (int, error) {
	return d.RestoreCompressed(ctx, h, cfg, snapshotDir, "")
}

var _ vmm.CompressedRestorer = (*Driver)(nil)

// RestoreCompressed is Restore for a snapshot that holds either memory image: a
// vmm.CompressedMemoryFile streams into QEMU through `lz4 -d`, with no raw copy on disk; a
// vmm.MemoryFile (a snapshot taken uncompressed) streams as it is. lz4 is the host's lz4 tool,
// needed only for the first.
func (d *Driver) RestoreCompressed(ctx context.Context, h host.Host, cfg vmm.Config, snapshotDir, lz4 string) (int, error) {
	info, err := readSnapshot(ctx, h, cfg, snapshotDir)
	if err != nil {
		return 0, err
	}
	memPath, filter, err := streamSource(ctx, h, snapshotDir, lz4)
	if err != nil {
		return 0, err
	}
	if err := checkRAMFile(ctx, h, cfg); err != nil {
		return 0, err
	}
	var r *relay
	pid, err := launch(ctx, h, cfg, d.user, info, func(m *monitor) error {
		if running := m.version.String(); running != info.Version {
			return fmt.Errorf("the snapshot in %s was taken by QEMU %s, but QEMU %s is running; only the same version can restore it", snapshotDir, info.Version, running)
		}
		if err := ignoreShared(ctx, m, cfg); err != nil {
			return err
		}
		// The relay connects as the user QEMU runs as, to the socket QEMU listens on.
		id, err := lookupUser(ctx, h, d.user)
		if err != nil {
			return err
		}
		_ = h.Remove(ctx, migrationPath(cfg))
		if err := m.execute(ctx, "migrate-incoming", map[string]any{"uri": "unix:" + migrationPath(cfg)}, nil); err != nil {
			return err
		}
		if r, err = startRelay(ctx, h, cfg, id, sendScript, memPath, "", filter); err != nil {
			return err
		}
		wctx, stop := r.failed(ctx)
		err = waitMigration(wctx, m)
		stop()
		if err != nil {
			if rerr := r.wait(ctx, commandEndTimeout); rerr != nil {
				err = fmt.Errorf("%w; %w", err, rerr)
			}
			return fmt.Errorf("restore %s: %w", memPath, err)
		}
		if err := r.wait(ctx, finishTimeout); err != nil {
			return fmt.Errorf("restore %s: %w", memPath, err)
		}
		return m.requireStatus(ctx, "paused", "after the restore")
	})
	_ = h.Remove(context.WithoutCancel(ctx), migrationPath(cfg))
	return pid, err
}

// lz4Magic opens every LZ4 frame.
var lz4Magic = []byte{0x04, 0x22, 0x4d, 0x18}

// streamSource finds the memory image in dir and returns it with the command that turns it into
// the migration stream (none: it is the stream). QEMU would wait forever on an empty stream, and
// an unreadable one is better refused here, so the image's first bytes are checked first.
func streamSource(ctx context.Context, h host.Host, dir, lz4 string) (memPath string, filter []string, err error) {
	compressed := path.Join(dir, vmm.CompressedMemoryFile)
	_, err = h.Stat(ctx, compressed)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		memPath = path.Join(dir, vmm.MemoryFile)
		if err := checkStream(ctx, h, memPath, streamHeader, "a QEMU migration stream"); err != nil {
			return "", nil, err
		}
		return memPath, nil, nil
	case err != nil:
		return "", nil, fmt.Errorf("snapshot memory image: %w", err)
	case lz4 == "":
		return "", nil, fmt.Errorf("the snapshot memory image %s is compressed, and restoring it needs the lz4 tool on the host, which was not found; install lz4", compressed)
	}
	if err := checkStream(ctx, h, compressed, lz4Magic, "an LZ4 frame"); err != nil {
		return "", nil, err
	}
	return compressed, []string{lz4, "-d", "-q", "-c"}, nil
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
		{"max vcpus", taken.MaxVCPUs, cfg.MaxVCPUs}, // 0 is another layout (-smp), not the same as vcpus
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

// checkStream checks that the file p starts with header, which is what.
func checkStream(ctx context.Context, h host.Host, p string, header []byte, what string) error {
	f, err := h.Open(ctx, p)
	if err != nil {
		return fmt.Errorf("snapshot memory image: %w", err)
	}
	defer func() { _ = f.Close() }()
	head := make([]byte, len(header))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("snapshot memory image %s: %w", p, err)
	}
	if n == 0 {
		return fmt.Errorf("snapshot memory image %s is empty", p)
	}
	if !bytes.Equal(head[:n], header) {
		return fmt.Errorf("snapshot memory image %s is not %s (it starts with % x, not % x)", p, what, head[:n], header)
	}
	return nil
}
