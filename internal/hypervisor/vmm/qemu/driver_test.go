package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Every test here runs one real guest under TCG at a time.

func boot(t *testing.T, cfg vmm.Config) int {
	t.Helper()
	pid, err := New().Boot(testContext(t), host.Local{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func connect(t *testing.T, cfg vmm.Config) vmm.VM {
	t.Helper()
	vm, err := New().Connect(testContext(t), host.Local{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Close() })
	return vm
}

func assertState(t *testing.T, vm vmm.VM, want vmm.State) {
	t.Helper()
	got, err := vm.State(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("state = %s, want %s", got, want)
	}
}

// quit stops QEMU and checks that the process and its socket are gone.
func quit(t *testing.T, vm vmm.VM, cfg vmm.Config, pid int) {
	t.Helper()
	if err := vm.Quit(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if alive, _ := (host.Local{}).ProcessAlive(context.Background(), pid, cfg.Dir); alive {
		t.Fatalf("QEMU %d is still alive after Quit returned", pid)
	}
	if _, err := os.Stat(socketPath(cfg)); !errors.Is(err, fs.ErrNotExist) {
		if _, derr := (host.Local{}).DialUnix(context.Background(), socketPath(cfg)); derr == nil {
			t.Fatalf("the QMP socket still answers after Quit")
		}
	}
}

func TestBootPauseResumeQuit(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	pid := boot(t, cfg)
	if alive, err := (host.Local{}).ProcessAlive(context.Background(), pid, cfg.Dir); err != nil || !alive {
		t.Fatalf("Boot returned pid %d, which is not a live QEMU for %s (%v)", pid, cfg.Dir, err)
	}
	vm := connect(t, cfg)
	// A second handle while the first is open, as the manager holds them: neither blocks the other.
	other := connect(t, cfg)
	assertState(t, vm, vmm.Running)
	assertState(t, other, vmm.Running)
	// Many readers at once, as Terraform refreshes a resource and a data source together: QEMU
	// serves one monitor client at a time, and every one of them must still get its answer.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := New().Connect(testContext(t), host.Local{}, cfg)
			if err == nil {
				var st vmm.State
				if st, err = h.State(testContext(t)); err == nil && st != vmm.Running {
					err = fmt.Errorf("state %s", st)
				}
				_ = h.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a concurrent state query failed: %v", err)
		}
	}

	if _, err := New().Boot(testContext(t), host.Local{}, cfg); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second Boot for the same directory: err = %v, want one saying a QEMU is already running", err)
	}

	waitCount(t, cfg, 2)
	lines := console(t, cfg)
	for _, want := range []string{
		"serial=" + system.SerialRootfs + " ro=1",
		"serial=" + system.SerialOverlay + " ro=0",
		"serial=" + system.SerialConfig + " ro=1",
	} {
		if countLines(lines, want) != 1 {
			t.Errorf("the guest did not report a disk with %q; console:\n%s", want, tail(lines, 20))
		}
	}

	ctx := testContext(t)
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	assertState(t, vm, vmm.Paused)
	before, _ := os.Stat(cfg.ConsoleLog)
	time.Sleep(1500 * time.Millisecond)
	after, _ := os.Stat(cfg.ConsoleLog)
	if before.Size() != after.Size() {
		t.Errorf("the console grew from %d to %d bytes while the guest was paused", before.Size(), after.Size())
	}

	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	assertState(t, vm, vmm.Running)
	waitCount(t, cfg, lastCount(t, cfg)+3)

	quit(t, vm, cfg, pid)
	if _, err := New().Connect(ctx, host.Local{}, cfg); err == nil {
		t.Error("Connect succeeded after Quit")
	}
}

func TestSnapshotRestoreContinuesTheGuest(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	h := host.Local{}
	ctx := testContext(t)
	pid := boot(t, cfg)
	vm := connect(t, cfg)
	waitCount(t, cfg, 3)

	if err := vm.Snapshot(ctx, t.TempDir()); err == nil || !strings.Contains(err.Error(), "must be paused") {
		t.Fatalf("Snapshot of a running VM: err = %v, want one saying it must be paused", err)
	}

	// A snapshot the VM then resumes from, as when a later step of a standby fails.
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.Snapshot(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	assertState(t, vm, vmm.Paused)
	if err := vm.Resume(ctx); err != nil {
		t.Fatalf("Resume after a snapshot: %v", err)
	}
	assertState(t, vm, vmm.Running)
	waitCount(t, cfg, lastCount(t, cfg)+3)

	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap := t.TempDir()
	if err := vm.Snapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	checkSnapshotFiles(t, cfg, snap)
	before := lastCount(t, cfg)
	quit(t, vm, cfg, pid)

	t.Run("a truncated memory image fails and leaves no QEMU", func(t *testing.T) {
		bad := copySnapshot(t, snap)
		mem := filepath.Join(bad, vmm.MemoryFile)
		info, err := os.Stat(mem)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(mem, info.Size()/2); err != nil {
			t.Fatal(err)
		}
		pid, err := New().Restore(ctx, h, cfg, bad)
		if err == nil {
			t.Fatalf("Restore of a truncated memory image succeeded (pid %d)", pid)
		}
		if !strings.Contains(err.Error(), "load of migration failed") {
			t.Errorf("err = %v, want QEMU's own reason from %s", err, logName)
		}
		if left := qemuPIDs(cfg.Dir); len(left) > 0 {
			t.Fatalf("QEMU %v left running after a failed restore", left)
		}
	})

	pid, err := New().Restore(ctx, h, cfg, snap)
	if err != nil {
		t.Fatal(err)
	}
	vm = connect(t, cfg)
	assertState(t, vm, vmm.Paused)
	time.Sleep(time.Second)
	if got := lastCount(t, cfg); got != before {
		t.Fatalf("the restored guest counted to %d before Resume; the snapshot was taken at %d", got, before)
	}
	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	assertState(t, vm, vmm.Running)
	waitCount(t, cfg, before+5)

	assertContinued(t, cfg) // the guest went on where it stopped
	quit(t, vm, cfg, pid)
}

func checkSnapshotFiles(t *testing.T, cfg vmm.Config, dir string) {
	t.Helper()
	info, err := os.Stat(filepath.Join(dir, vmm.MemoryFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() < 1<<20 {
		t.Errorf("memory image is %d bytes, too small for a 256 MiB guest", info.Size())
	}
	var saved vmm.Config
	readJSON(t, filepath.Join(dir, snapshotConfig), &saved)
	if !reflect.DeepEqual(saved, cfg) {
		t.Errorf("config.json = %+v, want %+v", saved, cfg)
	}
	var state snapshotInfo
	readJSON(t, filepath.Join(dir, snapshotState), &state)
	version, err := New().Version(context.Background(), host.Local{})
	if err != nil {
		t.Fatal(err)
	}
	if state.Driver != "qemu" || state.Version != version || time.Since(state.CreatedAt) > time.Hour {
		t.Errorf("state.json = %+v, want driver qemu, version %s, created now", state, version)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("snapshot directory holds %d files, want memory-ranges, config.json and state.json", len(entries))
	}
}

func readJSON(t *testing.T, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

func copySnapshot(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	for _, name := range []string{vmm.MemoryFile, snapshotConfig, snapshotState} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestSetMemoryGrowsTheGuest(t *testing.T) {
	cfg := guestConfig(t, 256*mib, 0)
	ctx := testContext(t)
	pid := boot(t, cfg)
	vm := connect(t, cfg)
	waitCount(t, cfg, 1)
	_, mem := counts(t, cfg)
	bootKB := mem[len(mem)-1]

	if err := vm.SetMemory(ctx, cfg.MemoryBytes+128*mib); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, cfg, 30*time.Second, "MemTotal to grow by 128 MiB", func([]string) bool {
		_, mem := counts(t, cfg)
		return mem[len(mem)-1]-bootKB >= 128*1024
	})
	if got := qomSize(t, cfg, "size"); got != 128*mib {
		t.Errorf("the guest has plugged %d bytes of virtio-mem, want %d", got, 128*mib)
	}

	if err := vm.SetMemory(ctx, cfg.MemoryBytes+128*mib); err != nil {
		t.Errorf("asking for the current size: %v", err)
	}
	for _, bad := range []int64{cfg.MemoryBytes + 1*mib, cfg.MemoryBytes + 512*mib, cfg.MemoryBytes - 2*mib} {
		if err := vm.SetMemory(ctx, bad); err == nil {
			t.Errorf("SetMemory(%d) succeeded", bad)
		}
	}
	if got := qomSize(t, cfg, "requested-size"); got != 128*mib {
		t.Errorf("a refused SetMemory changed the requested size to %d", got)
	}
	if err := vm.SetMemory(ctx, cfg.MemoryBytes); err != nil {
		t.Fatal(err)
	}
	if got := qomSize(t, cfg, "requested-size"); got != 0 {
		t.Errorf("after shrinking to the boot size virtio-mem is asked for %d bytes, want 0", got)
	}
	quit(t, vm, cfg, pid)
}

func qomSize(t *testing.T, cfg vmm.Config, property string) int64 {
	t.Helper()
	m, err := dialMonitor(testContext(t), host.Local{}, socketPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	var n int64
	if err := m.execute(testContext(t), "qom-get", qomArgs{Path: hotplugDevice, Property: property}, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPowerButtonPowersTheGuestOff(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	pid := boot(t, cfg)
	vm := connect(t, cfg)
	waitCount(t, cfg, 2) // the init starts its power button handler before the program
	if err := vm.PowerButton(testContext(t)); err != nil {
		t.Fatal(err)
	}
	// The handler stops the program; the init then powers off, which ends QEMU (-no-reboot).
	waitGone(t, cfg, pid, 60*time.Second)
	if countLines(console(t, cfg), system.MarkerExited) != 1 {
		t.Errorf("the guest did not report its program's end; console:\n%s", tail(console(t, cfg), 15))
	}
	if err := vm.Quit(testContext(t)); err != nil {
		t.Errorf("Quit after the guest powered off: %v", err)
	}
}

func TestGuestPoweroffEndsQEMU(t *testing.T) {
	cfg := guestConfig(t, 0, 3) // the program exits after three counts and the init powers off
	pid := boot(t, cfg)
	waitGone(t, cfg, pid, 90*time.Second)
	if countLines(console(t, cfg), system.MarkerExited+"0") != 1 {
		t.Errorf("the guest did not report its program's exit; console:\n%s", tail(console(t, cfg), 15))
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	version, err := New().Version(context.Background(), host.Local{})
	if err != nil {
		t.Fatal(err)
	}
	stream := append([]byte("QEVM\x00\x00\x00\x03"), []byte(strings.Repeat("not a device section ", 1000))...)
	tests := []struct {
		name    string
		memory  []byte // nil: no memory file
		version string
		modify  func(*vmm.Config)
		want    string
	}{
		{name: "missing memory image", want: "memory-ranges"},
		{name: "empty memory image", memory: []byte{}, want: "is empty"},
		{name: "compressed memory image", memory: []byte{0x04, 0x22, 0x4d, 0x18, 1, 2, 3, 4, 5}, want: "not a QEMU migration stream"},
		{name: "garbage after the header", memory: stream, want: logName},
		{name: "another QEMU version", memory: stream, version: "1.0.0", want: "QEMU 1.0.0"},
		{name: "other devices", memory: stream, modify: func(c *vmm.Config) { c.VCPUs = 2 }, want: "vcpus was 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := t.TempDir()
			taken := cfg
			if tt.modify != nil {
				tt.modify(&taken)
			}
			v := version
			if tt.version != "" {
				v = tt.version
			}
			writeJSON(t, filepath.Join(snap, snapshotConfig), taken)
			writeJSON(t, filepath.Join(snap, snapshotState), snapshotInfo{Driver: "qemu", Version: v, CreatedAt: time.Now()})
			if tt.memory != nil {
				if err := os.WriteFile(filepath.Join(snap, vmm.MemoryFile), tt.memory, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			pid, err := New().Restore(testContext(t), host.Local{}, cfg, snap)
			if err == nil {
				t.Fatalf("Restore succeeded (pid %d)", pid)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %q", err, tt.want)
			}
			if pid != 0 {
				t.Errorf("a failed Restore returned pid %d", pid)
			}
			if left := qemuPIDs(cfg.Dir); len(left) > 0 {
				t.Fatalf("QEMU %v left running after a failed restore", left)
			}
		})
	}
}

func writeJSON(t *testing.T, p string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBootReportsWhyQEMUFailed(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	cfg.Kernel = filepath.Join(cfg.Dir, "no-such-vmlinux")
	pid, err := New().Boot(testContext(t), host.Local{}, cfg)
	if err == nil {
		t.Fatalf("Boot without a kernel succeeded (pid %d)", pid)
	}
	if !strings.Contains(err.Error(), logName) || !strings.Contains(err.Error(), "no-such-vmlinux") {
		t.Errorf("err = %v, want QEMU's own complaint about the kernel from %s", err, logName)
	}
	if left := qemuPIDs(cfg.Dir); len(left) > 0 {
		t.Fatalf("QEMU %v left running after a failed boot", left)
	}
}

func TestProbeTellsWhetherGuestsRun(t *testing.T) {
	requireGuest(t)
	ctx := testContext(t)
	h := host.Local{}
	if ok, err := probe(ctx, h, shared.sys.Kernel, "tcg", ""); err != nil || !ok {
		t.Errorf("probe under TCG = %t, %v; want true: the kernel boots there", ok, err)
	}
	if ok, err := probe(ctx, h, system.DefaultBusybox, "tcg", ""); err != nil || ok {
		t.Errorf("probe of a file that is no kernel = %t, %v; want false", ok, err)
	}
	if _, err := probe(ctx, h, filepath.Join(t.TempDir(), "missing"), "tcg", ""); err == nil {
		t.Error("probe of a missing kernel did not fail")
	}
	ok, err := New().ProbeKVM(ctx, h, shared.sys.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guests run under KVM on this machine: %t", ok)
}
