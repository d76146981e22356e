package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Volumes are further disks after the three of the boot contract; these guests write to them raw.

const (
	serialRW = "01JVOLWRITABLE000001"
	serialRO = "01JVOLREADONLY000002"
)

// volumeImage is a zero-filled image of 1 MiB in dir.
func volumeImage(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, make([]byte, mib), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// withVolumes is a guest config with disks appended; the program writes to each of them.
func withVolumes(t *testing.T, countTo int, disks ...vmm.Disk) vmm.Config {
	t.Helper()
	var serials []string
	for _, d := range disks {
		serials = append(serials, d.Serial)
	}
	cfg := guestConfig(t, 0, countTo, "WRITE_SERIALS="+strings.Join(serials, " "))
	cfg.Disks = append(cfg.Disks, disks...)
	return cfg
}

// waitWrites waits until the guest has reported its write to every disk it was given.
func waitWrites(t *testing.T, cfg vmm.Config, n int) []string {
	t.Helper()
	var writes []string
	waitConsole(t, cfg, 90*time.Second, "the guest's disk writes", func(lines []string) bool {
		writes = writes[:0]
		for _, l := range lines {
			if strings.HasPrefix(l, "test-guest: write ") {
				writes = append(writes, l)
			}
		}
		return len(writes) >= n
	})
	return writes
}

func TestVolumeDisksReachTheGuestAndReadOnlyIsHonoured(t *testing.T) {
	dir := t.TempDir()
	rw, ro := volumeImage(t, dir, "rw.raw"), volumeImage(t, dir, "ro.raw")
	cfg := withVolumes(t, 3, vmm.Disk{Path: rw, Serial: serialRW}, vmm.Disk{Path: ro, Serial: serialRO, ReadOnly: true})
	pid := boot(t, cfg)
	waitGone(t, cfg, pid, 90*time.Second)
	lines := console(t, cfg)
	for _, want := range []string{"serial=" + serialRW + " ro=0", "serial=" + serialRO + " ro=1", "test-guest: write " + serialRW + " ok"} {
		if countLines(lines, want) != 1 {
			t.Errorf("no %q on the console:\n%s", want, tail(lines, 20))
		}
	}
	failed := "test-guest: write " + serialRO + " failed: "
	if n := countLines(lines, failed); n != 1 {
		t.Errorf("the write to the read-only disk did not fail; console:\n%s", tail(lines, 20))
	}
	for _, l := range lines {
		if strings.Contains(l, failed) {
			t.Logf("the guest's write to the read-only disk: %s", l)
		}
		if strings.Contains(l, failed) && !strings.Contains(l, "Read-only file system") && !strings.Contains(l, "I/O error") &&
			!strings.Contains(l, "Operation not permitted") && !strings.Contains(l, "Permission denied") {
			t.Errorf("the write failed for another reason than a read-only disk: %s", l)
		}
	}
	if got := readPrefix(t, rw, 64); !strings.HasPrefix(got, "test-guest wrote "+serialRW+"\n") {
		t.Errorf("the writable image starts with %q, want the guest's line", got)
	}
	if got := readPrefix(t, ro, 64); got != strings.Repeat("\x00", 64) {
		t.Errorf("the read-only image was changed: it starts with %q", got)
	}
}

func readPrefix(t *testing.T, p string, n int) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

// QEMU locks its images: a read-only disk takes a shared lock that lets others read but not write,
// a writable one an exclusive lock.
func TestImageLocksLetGuestsShareOnlyReadOnlyDisks(t *testing.T) {
	shared := volumeImage(t, t.TempDir(), "shared.raw")
	ro := vmm.Disk{Path: shared, Serial: serialRO, ReadOnly: true}
	rw := vmm.Disk{Path: shared, Serial: serialRW}

	a, b := withVolumes(t, 0, ro), withVolumes(t, 0, ro)
	pidA, pidB := boot(t, a), boot(t, b)
	for _, cfg := range []vmm.Config{a, b} {
		writes := waitWrites(t, cfg, 1)
		if !strings.Contains(writes[0], "failed") {
			t.Errorf("a guest sharing the read-only image wrote to it: %s", writes[0])
		}
	}

	writer := withVolumes(t, 0, rw)
	wantLockRefusal(t, writer, "writable while two others have it read-only")
	quit(t, connect(t, a), a, pidA)
	quit(t, connect(t, b), b, pidB)

	// Once the readers are gone the image can be written, and then no reader gets in.
	pidW := boot(t, writer)
	waitWrites(t, writer, 1)
	wantLockRefusal(t, withVolumes(t, 0, ro), "read-only while another writes it")
	quit(t, connect(t, writer), writer, pidW)
}

func TestSnapshotRestoreKeepsTheVolumeDisks(t *testing.T) {
	dir := t.TempDir()
	cfg := withVolumes(t, 0, vmm.Disk{Path: volumeImage(t, dir, "rw.raw"), Serial: serialRW},
		vmm.Disk{Path: volumeImage(t, dir, "ro.raw"), Serial: serialRO, ReadOnly: true})
	ctx := testContext(t)
	pid := boot(t, cfg)
	vm := connect(t, cfg)
	waitCount(t, cfg, 3)
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap := t.TempDir()
	if err := vm.Snapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	before := lastCount(t, cfg)
	quit(t, vm, cfg, pid)

	t.Run("a volume turned writable is refused", func(t *testing.T) {
		changed := cfg
		changed.Disks = append([]vmm.Disk(nil), cfg.Disks...)
		changed.Disks[4].ReadOnly = false
		if pid, err := New().Restore(ctx, host.Local{}, changed, snap); err == nil || !strings.Contains(err.Error(), "disk 4") {
			t.Fatalf("Restore with a read-only volume made writable: pid %d, err %v; want a refusal naming disk 4", pid, err)
		}
		if left := qemuPIDs(cfg.Dir); len(left) > 0 {
			t.Fatalf("QEMU %v left running after a refused restore", left)
		}
	})
	t.Run("a volume left out is refused", func(t *testing.T) {
		changed := cfg
		changed.Disks = cfg.Disks[:4]
		if _, err := New().Restore(ctx, host.Local{}, changed, snap); err == nil || !strings.Contains(err.Error(), "disk count was 5") {
			t.Fatalf("Restore without a volume: err %v; want a refusal naming the disk count", err)
		}
	})

	pid, vm = restoreRunning(t, cfg, snap)
	waitCount(t, cfg, before+3)
	lines := console(t, cfg)
	if n := countLines(lines, "test-guest: boot"); n != 1 {
		t.Errorf("the guest booted %d times, want once", n)
	}
	quit(t, vm, cfg, pid)
}

// wantLockRefusal checks that booting cfg fails on QEMU's image lock and leaves no QEMU.
func wantLockRefusal(t *testing.T, cfg vmm.Config, how string) {
	t.Helper()
	if pid, err := New().Boot(testContext(t), host.Local{}, cfg); err == nil {
		t.Errorf("a guest opened the image %s (pid %d)", how, pid)
	} else if !strings.Contains(err.Error(), `"write" lock`) {
		t.Errorf("err = %v, want QEMU's lock error", err)
	}
	if left := qemuPIDs(cfg.Dir); len(left) > 0 {
		t.Fatalf("QEMU %v left running after a refused boot", left)
	}
}
