package cloudhypervisor

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// boot boots inst and connects to its VMM.
func boot(t *testing.T, hn harness, inst instance) (int, *VM) {
	t.Helper()
	ctx := testContext(t)
	pid, err := hn.driver().Boot(ctx, hn.host(), inst.cfg)
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	return pid, connect(t, hn, inst)
}

func connect(t *testing.T, hn harness, inst instance) *VM {
	t.Helper()
	vm, err := hn.driver().Connect(testContext(t), hn.host(), inst.cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = vm.Close() })
	return vm.(*VM)
}

func wantState(t *testing.T, vm *VM, want vmm.State) {
	t.Helper()
	st, err := vm.State(testContext(t))
	if err != nil || st != want {
		t.Fatalf("state %q, %v; want %s", st, err, want)
	}
}

func readConsole(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// waitConsole waits for the console log to read want: the relay copies the VMM's output there
// as it comes.
func waitConsole(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := readConsole(t, path)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("console %q, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantGone checks that neither a VMM nor a console relay runs for inst and its socket is gone.
func wantGone(t *testing.T, hn harness, inst instance) {
	t.Helper()
	sock := socketPath(inst.cfg)
	if hn.alive(sock) {
		t.Errorf("a VMM still runs for %s", sock)
	}
	if hn.alive(SerialPath(inst.cfg)) {
		t.Errorf("a console relay still runs for %s", SerialPath(inst.cfg))
	}
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket %s: %v, want it removed", sock, err)
	}
}

const started = system.MarkerStarted + "\n"

func TestBootRunsTheGuestAndQuitStopsTheVMM(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		pid, vm := boot(t, hn, inst)
		if pid <= 0 {
			t.Errorf("pid %d", pid)
		}
		wantState(t, vm, vmm.Running)
		waitConsole(t, inst.cfg.ConsoleLog, started)
		if _, err := os.Stat(logPath(inst.cfg)); err != nil {
			t.Errorf("VMM output: %v", err)
		}
		if err := vm.Quit(testContext(t)); err != nil {
			t.Fatalf("Quit: %v", err)
		}
		wantGone(t, hn, inst)
		if alive, _ := hn.host().ProcessAlive(testContext(t), pid, socketPath(inst.cfg)); alive {
			t.Errorf("pid %d alive after Quit", pid)
		}
		if _, err := os.Stat(relayPidPath(inst.cfg)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("relay pid file after Quit: %v", err)
		}
	})
}

// A VMM that was killed (or died) leaves its relay to notice by itself; Reap returns only once
// the relay has copied the rest and gone, so that removing the instance right after leaves no
// process of it behind.
func TestReapWaitsForTheRelayOfAKilledVMM(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		pid, _ := boot(t, hn, inst)
		waitConsole(t, inst.cfg.ConsoleLog, started)
		if err := hn.host().Signal(ctx, pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := hn.driver().Reap(ctx, hn.host(), inst.cfg); err != nil {
			t.Fatalf("Reap: %v", err)
		}
		if hn.alive(SerialPath(inst.cfg)) {
			t.Errorf("a console relay still runs for %s after Reap", SerialPath(inst.cfg))
		}
		if _, err := os.Stat(relayPidPath(inst.cfg)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("relay pid file after Reap: %v", err)
		}
		if err := hn.driver().Reap(ctx, hn.host(), inst.cfg); err != nil {
			t.Errorf("a second Reap: %v", err)
		}
	})
}

// The manager finds a boot's output past the console log's size before the boot: the log must
// only ever grow, across boots, standby and restore.
func TestConsoleLogOnlyGrows(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		want := ""
		for range 2 {
			_, vm := boot(t, hn, inst)
			want += started
			waitConsole(t, inst.cfg.ConsoleLog, want)
			if err := vm.Quit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		snap := standby(t, hn, inst)
		want += started
		waitConsole(t, inst.cfg.ConsoleLog, want)
		if _, err := hn.driver().Restore(ctx, hn.host(), inst.cfg, snap); err != nil {
			t.Fatal(err)
		}
		vm := connect(t, hn, inst)
		if err := vm.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		if err := vm.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		// The restored guest printed nothing new; nothing earlier was lost.
		waitConsole(t, inst.cfg.ConsoleLog, want)
	})
}

func TestBootSendsRawDisksAndTheSerialFile(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 256*mib)
		_, vm := boot(t, hn, inst)
		var info struct {
			Config struct {
				Disks []struct {
					Path      string `json:"path"`
					Serial    string `json:"serial"`
					Readonly  bool   `json:"readonly"`
					ImageType string `json:"image_type"`
				} `json:"disks"`
				Serial  consoleConfig `json:"serial"`
				Console consoleConfig `json:"console"`
				Memory  memoryConfig  `json:"memory"`
				Cpus    cpusConfig    `json:"cpus"`
			} `json:"config"`
		}
		if err := vm.c.do(testContext(t), http.MethodGet, "vm.info", nil, &info); err != nil {
			t.Fatal(err)
		}
		c := info.Config
		if len(c.Disks) != 2 || c.Disks[0].ImageType != "Raw" || c.Disks[0].Serial != "hypeman-rootfs" || !c.Disks[0].Readonly || c.Disks[1].Readonly {
			t.Errorf("disks %+v", c.Disks)
		}
		if c.Serial != (consoleConfig{Mode: "File", File: SerialPath(inst.cfg)}) || c.Console.Mode != "Off" {
			t.Errorf("serial %+v, console %+v", c.Serial, c.Console)
		}
		if c.Memory.HotplugMethod != "VirtioMem" || c.Memory.HotplugSize != 256*mib || c.Cpus != (cpusConfig{BootVcpus: 2, MaxVcpus: 2}) {
			t.Errorf("memory %+v, cpus %+v", c.Memory, c.Cpus)
		}
	})
}

func TestPauseAndResumeAreIdempotent(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		_, vm := boot(t, hn, newInstance(t, hn, 0))
		for range 2 {
			// The second pause is a 500 from the server; the VM is paused, so it succeeded.
			if err := vm.Pause(ctx); err != nil {
				t.Fatalf("Pause: %v", err)
			}
			wantState(t, vm, vmm.Paused)
		}
		for range 2 {
			if err := vm.Resume(ctx); err != nil {
				t.Fatalf("Resume: %v", err)
			}
			wantState(t, vm, vmm.Running)
		}
	})
}

func TestStandbyAndRestore(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 256*mib)
		if err := os.WriteFile(inst.cfg.ConsoleLog, []byte("earlier boot\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, vm := boot(t, hn, inst)
		history := "earlier boot\n" + started
		waitConsole(t, inst.cfg.ConsoleLog, history)
		if err := vm.SetMemory(ctx, 384*mib); err != nil {
			t.Fatalf("SetMemory: %v", err)
		}
		if err := vm.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		snap := filepath.Join(inst.cfg.Dir, "snapshots", "snapshot-latest")
		if err := os.MkdirAll(snap, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := vm.Snapshot(ctx, snap); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		for _, name := range []string{"config.json", "state.json", vmm.MemoryFile} {
			if _, err := os.Stat(filepath.Join(snap, name)); err != nil {
				t.Errorf("snapshot file: %v", err)
			}
		}
		wantState(t, vm, vmm.Paused)
		if err := vm.Quit(ctx); err != nil {
			t.Fatalf("Quit: %v", err)
		}
		wantGone(t, hn, inst)

		pid, err := hn.driver().Restore(ctx, hn.host(), inst.cfg, snap)
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if pid <= 0 {
			t.Errorf("pid %d", pid)
		}
		vm = connect(t, hn, inst)
		wantState(t, vm, vmm.Paused)
		if err := vm.Resume(ctx); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		wantState(t, vm, vmm.Running)
		// The restored guest has the memory it had.
		if err := vm.SetMemory(ctx, 384*mib); err != nil {
			t.Errorf("SetMemory to the restored size: %v", err)
		}
		if err := vm.Quit(ctx); err != nil {
			t.Fatalf("Quit: %v", err)
		}
		wantGone(t, hn, inst)
		if got := readConsole(t, inst.cfg.ConsoleLog); got != history {
			t.Errorf("console after restore and quit %q, want %q", got, history)
		}
	})
}

func TestSnapshotOfARunningVMSaysWhy(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		_, vm := boot(t, hn, inst)
		err := vm.Snapshot(testContext(t), snapshotDir(t, inst, "snap"))
		if err == nil || !strings.Contains(err.Error(), "snapshot needs the VM Paused, and it is Running") {
			t.Errorf("Snapshot of a running VM: %v", err)
		}
		wantState(t, vm, vmm.Running)
	})
}

func TestSnapshotRefusesANonEmptyDirectory(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		_, vm := boot(t, hn, inst)
		if err := vm.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		dir := snapshotDir(t, inst, "snap")
		if err := os.WriteFile(filepath.Join(dir, "config.json"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := vm.Snapshot(ctx, dir); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Errorf("Snapshot into a used directory: %v", err)
		}
	})
}

func TestSetMemory(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		_, vm := boot(t, hn, newInstance(t, hn, 256*mib))
		steps := []struct {
			bytes int64
			ok    bool
		}{
			{256 * mib, true}, // the current size: no request at all
			{384 * mib, true},
			{384 * mib, true}, // the server would answer 500; the driver skips it
			{512 * mib, true},
			{640 * mib, false}, // past boot + hotplug
			{128 * mib, false}, // below the boot size
			{257 * mib, false}, // not a 2 MiB step
			{256 * mib, true},
		}
		for _, s := range steps {
			err := vm.SetMemory(ctx, s.bytes)
			if (err == nil) != s.ok {
				t.Errorf("SetMemory(%d MiB): %v, want ok=%v", s.bytes/mib, err, s.ok)
			}
		}
		info, err := vm.c.info(ctx)
		if err != nil || info.MemoryActualSize != 256*mib {
			t.Errorf("memory_actual_size %d, %v; want %d", info.MemoryActualSize, err, 256*mib)
		}
	})
}

func TestSetMemoryWaitsForTheGuest(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		const delay = 300 * time.Millisecond
		hn.setFaults("slow-plug=" + delay.String())
		ctx := testContext(t)
		_, vm := boot(t, hn, newInstance(t, hn, 256*mib))
		start := time.Now()
		if err := vm.SetMemory(ctx, 384*mib); err != nil {
			t.Fatalf("SetMemory: %v", err)
		}
		if took := time.Since(start); took < delay {
			t.Errorf("SetMemory returned after %v, before the guest plugged the memory (%v)", took, delay)
		}
		if info, err := vm.c.info(ctx); err != nil || info.MemoryActualSize != 384*mib {
			t.Errorf("memory_actual_size %d, %v; want 384 MiB", info.MemoryActualSize, err)
		}
	})
}

func TestSetMemorySaysHowFarTheGuestGot(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		hn.setFaults("stuck-plug")
		_, vm := boot(t, hn, newInstance(t, hn, 256*mib))
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		err := vm.SetMemory(ctx, 384*mib)
		if err == nil || !strings.Contains(err.Error(), "the guest has 268435456 bytes") {
			t.Errorf("SetMemory with a guest that never plugs: %v", err)
		}
	})
}

func TestBootAttachesTheTAP(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		inst.cfg.Net = &vmm.NetConfig{Tap: "hm-test0", MAC: "02:00:0a:64:00:02"}
		_, vm := boot(t, hn, inst)
		var info struct {
			Config struct {
				Net []netConfig `json:"net"`
			} `json:"config"`
		}
		if err := vm.c.do(testContext(t), http.MethodGet, "vm.info", nil, &info); err != nil {
			t.Fatal(err)
		}
		if len(info.Config.Net) != 1 || info.Config.Net[0] != (netConfig{Tap: "hm-test0", Mac: "02:00:0a:64:00:02"}) {
			t.Errorf("net %+v", info.Config.Net)
		}
	})
}

func TestSetMemoryWithoutHotplug(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		_, vm := boot(t, hn, newInstance(t, hn, 0))
		if err := vm.SetMemory(ctx, 256*mib); err != nil {
			t.Errorf("SetMemory to the boot size: %v", err)
		}
		if err := vm.SetMemory(ctx, 384*mib); err == nil || !strings.Contains(err.Error(), "no memory hotplug") {
			t.Errorf("SetMemory past the boot size without hotplug: %v", err)
		}
	})
}

func TestStateOfAVMMWithoutVM(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		_, vm := boot(t, hn, newInstance(t, hn, 0))
		if err := vm.c.put(ctx, "vm.delete", nil); err != nil {
			t.Fatal(err)
		}
		// 500 up to v52, 404 from v53: both mean "no VM".
		if _, err := vm.State(ctx); !errors.Is(err, vmm.ErrNoVM) {
			t.Errorf("State: %v, want ErrNoVM", err)
		}
		if err := vm.Pause(ctx); !errors.Is(err, vmm.ErrNoVM) {
			t.Errorf("Pause: %v, want an error that says there is no VM", err)
		}
	})
}

func TestPlainTextErrorsAreUnderstood(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		hn.setFaults("text-errors")
		ctx := testContext(t)
		_, vm := boot(t, hn, newInstance(t, hn, 0))
		if err := vm.Resume(ctx); err != nil {
			t.Errorf("Resume of a running VM: %v", err)
		}
		if err := vm.c.put(ctx, "vm.delete", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := vm.State(ctx); !errors.Is(err, vmm.ErrNoVM) {
			t.Errorf("State: %v, want ErrNoVM", err)
		}
	})
}

func TestFaultSnapshot500LeavesTheVMPaused(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		hn.setFaults("snapshot-500")
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		_, vm := boot(t, hn, inst)
		if err := vm.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		err := vm.Snapshot(ctx, snapshotDir(t, inst, "snap"))
		if err == nil || !strings.Contains(err.Error(), "No space left on device") || !strings.Contains(err.Error(), "the VM is Paused") {
			t.Errorf("Snapshot: %v", err)
		}
		wantState(t, vm, vmm.Paused)
		if err := vm.Resume(ctx); err != nil {
			t.Errorf("Resume after a failed snapshot: %v", err)
		}
	})
}

// standby boots inst, snapshots it and quits, returning the snapshot directory.
func standby(t *testing.T, hn harness, inst instance) string {
	t.Helper()
	ctx := testContext(t)
	_, vm := boot(t, hn, inst)
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap := snapshotDir(t, inst, "snap")
	if err := vm.Snapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if err := vm.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	return snap
}

// snapshotDir makes an empty directory for a snapshot in inst's directory, as the manager does.
func snapshotDir(t *testing.T, inst instance, name string) string {
	t.Helper()
	dir := filepath.Join(inst.cfg.Dir, "snapshots", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFaultRestoreFailLeavesNoProcess(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		snap := standby(t, hn, inst)
		hn.setFaults("restore-fail")
		_, err := hn.driver().Restore(testContext(t), hn.host(), inst.cfg, snap)
		if err == nil || !strings.Contains(err.Error(), "The VM could not be restored") {
			t.Errorf("Restore: %v", err)
		}
		wantGone(t, hn, inst)
		if got := readConsole(t, inst.cfg.ConsoleLog); got != started {
			t.Errorf("console after a failed restore %q, want the history %q", got, started)
		}
	})
}

func TestRestoreOfAMissingSnapshotFails(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		_, err := hn.driver().Restore(testContext(t), hn.host(), inst.cfg, filepath.Join(inst.cfg.Dir, "nothing"))
		if err == nil {
			t.Error("Restore of a missing snapshot succeeded")
		}
		wantGone(t, hn, inst)
	})
}

func TestSlowBootPastTheDeadlineLeavesNoProcess(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		hn.setFaults("slow-boot=5s")
		inst := newInstance(t, hn, 0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := hn.driver().Boot(ctx, hn.host(), inst.cfg)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Boot: %v, want the deadline", err)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("Boot took %v past a 1s deadline", took)
		}
		wantGone(t, hn, inst)
	})
}

func TestSlowStartPastTheStartTimeout(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		hn.setFaults("slow-start=5s")
		hn.driver().StartTimeout = 500 * time.Millisecond
		inst := newInstance(t, hn, 0)
		_, err := hn.driver().Boot(testContext(t), hn.host(), inst.cfg)
		if err == nil || !strings.Contains(err.Error(), "did not answer") {
			t.Errorf("Boot: %v", err)
		}
		wantGone(t, hn, inst)
	})
}

func TestVMMDeathIsNoticed(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		hn.setFaults("die-after-boot=100ms")
		inst := newInstance(t, hn, 0)
		pid, vm := boot(t, hn, inst)
		ctx := testContext(t)
		sock := socketPath(inst.cfg)
		for hn.alive(sock) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		if alive, _ := hn.host().ProcessAlive(ctx, pid, sock); alive {
			t.Fatalf("pid %d still alive", pid)
		}
		if _, err := hn.driver().Connect(ctx, hn.host(), inst.cfg); err == nil {
			t.Error("Connect to a dead VMM succeeded")
		}
		// Quit of a VMM that is already gone succeeds, clears its stale socket and the console.
		if err := vm.Quit(ctx); err != nil {
			t.Errorf("Quit of a dead VMM: %v", err)
		}
		wantGone(t, hn, inst)
		// A new VMM starts over the stale state.
		hn.setFaults("")
		_, vm = boot(t, hn, inst)
		wantState(t, vm, vmm.Running)
	})
}

func TestPowerButtonMakesTheVMMExit(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		_, vm := boot(t, hn, inst)
		if err := vm.PowerButton(ctx); err != nil {
			t.Fatalf("PowerButton: %v", err)
		}
		if err := waitGone(ctx, hn.host(), vm.pid, vm.socket); err != nil {
			t.Fatalf("the VMM did not exit after the guest powered off: %v", err)
		}
		if err := vm.Quit(ctx); err != nil {
			t.Errorf("Quit after power-off: %v", err)
		}
		if got := readConsole(t, inst.cfg.ConsoleLog); got != started {
			t.Errorf("console %q", got)
		}
	})
}

func TestBootRefusesASecondVMMForTheInstance(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		_, vm := boot(t, hn, inst)
		_, err := hn.driver().Boot(testContext(t), hn.host(), inst.cfg)
		if err == nil || !strings.Contains(err.Error(), "already answers") {
			t.Errorf("second Boot: %v", err)
		}
		wantState(t, vm, vmm.Running)
		time.Sleep(100 * time.Millisecond) // time for a wrongly restarted relay to copy again
		waitConsole(t, inst.cfg.ConsoleLog, started)
	})
}

func TestBootOverAStaleSocket(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		// Left by a VMM that was killed; v52 would refuse to bind over it.
		if err := os.WriteFile(socketPath(inst.cfg), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, vm := boot(t, hn, inst)
		wantState(t, vm, vmm.Running)
	})
}

func TestVersionAndAvailability(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		v, err := hn.driver().Version(ctx, hn.host())
		if err != nil || !strings.HasPrefix(v, "v5") {
			t.Errorf("Version %q, %v", v, err)
		}
		if !hn.driver().Available(ctx, hn.host()) {
			t.Error("the stand-in is not available")
		}
		missing := &Driver{Binary: filepath.Join(t.TempDir(), "cloud-hypervisor")}
		if missing.Available(ctx, hn.host()) {
			t.Error("a missing binary is available")
		}
	})
}

func TestBootRejectsConfigsCHCannotRun(t *testing.T) {
	hn := newInProcessHarness(t, chstandin.V53)
	base := newInstance(t, hn, 0).cfg
	tests := []struct {
		name string
		edit func(c *vmm.Config)
		want string
	}{
		{"hotplug not a multiple of 128 MiB", func(c *vmm.Config) { c.HotplugBytes = 100 * mib }, "multiple of 128 MiB"},
		{"serial longer than 20 bytes", func(c *vmm.Config) { c.Disks[0].Serial = "a-serial-of-21-bytes!" }, "at most 20"},
		{"tcg", func(c *vmm.Config) { c.Accelerator = "tcg" }, "kvm only"},
		{"no kernel", func(c *vmm.Config) { c.Kernel = "" }, "no kernel"},
		{"no vcpus", func(c *vmm.Config) { c.VCPUs = 0 }, "at least 1"},
		{"relative directory", func(c *vmm.Config) { c.Dir = "guests/x" }, "absolute"},
		{"socket path too long", func(c *vmm.Config) { c.Dir = "/" + strings.Repeat("d", 120) }, "too long"},
		{"network interface without a TAP", func(c *vmm.Config) { c.Net = &vmm.NetConfig{MAC: "02:00:00:00:00:01"} }, "TAP"},
		{"malformed MAC", func(c *vmm.Config) { c.Net = &vmm.NetConfig{Tap: "t0", MAC: "02:00"} }, "MAC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.Disks = append([]vmm.Disk(nil), base.Disks...)
			tt.edit(&cfg)
			_, err := hn.driver().Boot(testContext(t), hn.host(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Boot: %v, want an error about %q", err, tt.want)
			}
			if len(hn.(*inProcessHarness).h.vmms) != 0 {
				t.Error("a VMM was started for a config that cannot run")
			}
		})
	}
}
