package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// A guest whose boot memory lives in a RAM file: its snapshot leaves the memory in the file (the
// stream holds only the device state), and a restore maps the file again, so that the guest runs
// on where it stopped without its memory being read first.
func TestRAMFileSnapshotLeavesTheMemoryInTheFileAndRestoreMapsIt(t *testing.T) {
	const fillMiB = 96
	cfg := guestConfig(t, 0, 0, "FILL_MB=96")
	cfg.RAMFile = filepath.Join(cfg.Dir, "memory.ram")
	h := host.Local{}
	ctx := testContext(t)
	// A RAM file left by an earlier boot, with a second name that keeps it if the boot lets go.
	earlier := cfg.RAMFile + ".earlier"
	if err := os.WriteFile(cfg.RAMFile, []byte("memory of an earlier boot"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(cfg.RAMFile, earlier); err != nil {
		t.Fatal(err)
	}

	pid := boot(t, cfg)
	vm := connect(t, cfg)
	if old, err := os.ReadFile(earlier); err != nil || string(old) != "memory of an earlier boot" {
		t.Errorf("the boot reused the RAM file of an earlier boot (%v); it must make it anew", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(cfg.RAMFile, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != cfg.MemoryBytes || st.Blocks*512 < cfg.MemoryBytes {
		t.Errorf("RAM file: %d bytes, %d allocated; want %d, all allocated (a full disk must not fail a page the guest touches)", st.Size, st.Blocks*512, cfg.MemoryBytes)
	}
	if cmdline, err := os.ReadFile(filepathProc(pid)); err != nil || !strings.Contains(string(cmdline), "free-page-reporting=off") {
		t.Errorf("QEMU's command line does not turn free-page reporting off for a RAM-file guest (%v): %q", err, cmdline)
	}
	waitConsole(t, cfg, 2*time.Minute, "the guest's fill", func(lines []string) bool { return countLines(lines, "test-guest: filled") == 1 })
	waitCount(t, cfg, 3)

	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap := t.TempDir()
	if err := vm.Snapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	stream, err := os.Stat(filepath.Join(snap, vmm.MemoryFile))
	if err != nil {
		t.Fatal(err)
	}
	// The guest holds 96 MiB of data that is not zero, which a stream with the memory in it carries.
	if stream.Size() > 16*mib {
		t.Errorf("the snapshot stream is %d bytes; with the memory left in the RAM file it holds the device state only", stream.Size())
	}
	before := lastCount(t, cfg)
	quit(t, vm, cfg, pid)
	if _, err := os.Stat(cfg.RAMFile); err != nil {
		t.Fatalf("the RAM file is gone after the VMM quit: %v", err)
	}

	t.Run("a snapshot whose RAM file is gone is refused and leaves no QEMU", func(t *testing.T) {
		moved := cfg.RAMFile + ".moved"
		if err := os.Rename(cfg.RAMFile, moved); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = os.Rename(moved, cfg.RAMFile) }()
		if pid, err := New().Restore(ctx, h, cfg, snap); err == nil || !strings.Contains(err.Error(), "RAM file") {
			t.Fatalf("Restore without the RAM file: pid %d, %v; want an error naming the RAM file", pid, err)
		}
		if left := qemuPIDs(cfg.Dir); len(left) > 0 {
			t.Fatalf("QEMU %v left running after a refused restore", left)
		}
	})

	start := time.Now()
	pid, err = New().Restore(ctx, h, cfg, snap)
	restored := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	vm = connect(t, cfg)
	assertState(t, vm, vmm.Paused)
	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	running := time.Since(start)
	waitCount(t, cfg, before+5)
	assertContinued(t, cfg)
	t.Logf("%d MiB guest holding %d MiB: stream %d bytes, restore %v, running after %v", cfg.MemoryBytes/mib, fillMiB, stream.Size(), restored, running)
	quit(t, vm, cfg, pid)
}

func filepathProc(pid int) string { return fmt.Sprintf("/proc/%d/cmdline", pid) }
