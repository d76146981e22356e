package qemu

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// The migration stream compressed by lz4 as QEMU writes it, and decompressed by lz4 as QEMU reads
// it back; a compressor that fails in the middle fails the step and leaves what was there.
func TestCompressedSnapshotStreamsThroughLZ4(t *testing.T) {
	lz4 := testutil.RequireTool(t, "lz4")
	failing := filepath.Join(testutil.FailingLZ4(t, 4<<20), "lz4")
	cfg := guestConfig(t, 0, 0)
	h := host.Local{}
	ctx := testContext(t)
	pid := boot(t, cfg)
	vm := connect(t, cfg)
	waitCount(t, cfg, 3)
	sc, ok := vm.(vmm.StreamCompressor)
	if !ok {
		t.Fatal("the QEMU VM does not compress its snapshot stream")
	}
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}

	// A compressor that dies after 4 MiB: the snapshot fails, no memory image is left, and the
	// guest goes on when resumed.
	bad := t.TempDir()
	if err := sc.SnapshotCompressed(ctx, bad, failing); err == nil {
		t.Fatal("a snapshot through a failing compressor succeeded")
	} else {
		t.Logf("snapshot through a failing compressor: %v", err)
	}
	assertNoMemoryImage(t, bad)
	assertState(t, vm, vmm.Paused)
	if err := vm.Resume(ctx); err != nil {
		t.Fatalf("Resume after the failed snapshot: %v", err)
	}
	waitCount(t, cfg, lastCount(t, cfg)+2)

	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap := t.TempDir()
	if err := sc.SnapshotCompressed(ctx, snap, lz4); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(snap, vmm.MemoryFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the compressed snapshot wrote a raw memory image too: %v", err)
	}
	head, err := exec.Command("sh", "-c", "'"+lz4+"' -d -q -c '"+filepath.Join(snap, vmm.CompressedMemoryFile)+"' | head -c 8").Output()
	if err != nil || !bytes.Equal(head, streamHeader) {
		t.Fatalf("the compressed memory image decompresses to % x (%v), want a migration stream", head, err)
	}
	before := lastCount(t, cfg)
	quit(t, vm, cfg, pid)

	// A decompressor that dies after 4 MiB: the restore fails and leaves no QEMU.
	if pid, err := New().RestoreCompressed(ctx, h, cfg, snap, failing); err == nil {
		t.Fatalf("a restore through a failing decompressor succeeded (pid %d)", pid)
	} else if !strings.Contains(err.Error(), "load of migration failed") {
		t.Errorf("restore through a failing decompressor: %v, want QEMU's own reason", err)
	}
	if left := qemuPIDs(cfg.Dir); len(left) > 0 {
		t.Fatalf("QEMU %v left running after a failed restore", left)
	}
	// Without lz4 on the host a compressed snapshot is refused with the way out.
	if _, err := New().Restore(ctx, h, cfg, snap); err == nil || !strings.Contains(err.Error(), "install lz4") {
		t.Fatalf("restore of a compressed snapshot without lz4: %v, want one saying to install lz4", err)
	}

	pid, err = New().RestoreCompressed(ctx, h, cfg, snap, lz4)
	if err != nil {
		t.Fatal(err)
	}
	vm = connect(t, cfg)
	assertState(t, vm, vmm.Paused)
	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitCount(t, cfg, before+3)
	assertContinued(t, cfg)
	quit(t, vm, cfg, pid)
}

// assertNoMemoryImage checks that a failed snapshot left nothing in dir, even once the stream's
// command has had a moment more to end.
func assertNoMemoryImage(t *testing.T, dir string) {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("a failed snapshot left %s", e.Name())
	}
}
