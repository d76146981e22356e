package qemu

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// onlineCPUs is the guest's /sys/devices/system/cpu/online in its last count line ("0-2").
func onlineCPUs(t *testing.T, cfg vmm.Config) string {
	t.Helper()
	lines := console(t, cfg)
	for i := len(lines) - 1; i >= 0; i-- {
		if _, after, ok := strings.Cut(lines[i], " cpus_online "); ok && strings.HasPrefix(lines[i], "test-guest: count ") {
			online, _, _ := strings.Cut(after, " ")
			return online
		}
	}
	return ""
}

func waitOnline(t *testing.T, cfg vmm.Config, want string) {
	t.Helper()
	waitConsole(t, cfg, 60*time.Second, "the guest's online CPUs to be "+want, func([]string) bool { return onlineCPUs(t, cfg) == want })
}

func assertVCPUs(t *testing.T, vm vmm.VM, want int) {
	t.Helper()
	got, err := vm.VCPUs(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("VCPUs() = %d, want %d", got, want)
	}
}

// A guest booted with 2 vCPUs of at most 3 has them all online from the start, gets the third
// while its program runs on and brings it online, and keeps it through a snapshot and restore.
func TestSetVCPUsAddsLiveAndARestoreKeepsThem(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	cfg.VCPUs, cfg.MaxVCPUs = 2, 3
	ctx := testContext(t)
	h := host.Local{}
	pid := boot(t, cfg)
	vm := connect(t, cfg)
	waitCount(t, cfg, 1)
	assertVCPUs(t, vm, 2)
	if got := onlineCPUs(t, cfg); got != "0-1" {
		t.Fatalf("the guest boots with CPUs %q online, want 0-1", got)
	}

	if err := vm.SetVCPUs(ctx, 3); err != nil {
		t.Fatal(err)
	}
	assertVCPUs(t, vm, 3)
	waitOnline(t, cfg, "0-2")
	if err := vm.SetVCPUs(ctx, 3); err != nil {
		t.Errorf("asking for the current count: %v", err)
	}
	for _, bad := range []int{0, 4} {
		if err := vm.SetVCPUs(ctx, bad); err == nil {
			t.Errorf("SetVCPUs(%d) succeeded", bad)
		}
	}
	assertVCPUs(t, vm, 3)

	// The snapshot records the plugged vCPUs and the restore starts QEMU with them.
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(cfg.Dir, "snapshot")
	if err := h.MkdirAll(ctx, snap, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := vm.Snapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	before := lastCount(t, cfg)
	quit(t, vm, cfg, pid)
	pid, vm = restoreRunning(t, cfg, snap)
	waitCount(t, cfg, before+3)
	assertVCPUs(t, vm, 3)
	if got := onlineCPUs(t, cfg); got != "0-2" {
		t.Errorf("after the restore the guest has CPUs %q online, want 0-2", got)
	}

	// Fewer are refused: QEMU only adds vCPUs live (vcpus.go).
	if err := vm.SetVCPUs(ctx, 2); err == nil || !strings.Contains(err.Error(), "QEMU only adds vCPUs live") {
		t.Errorf("SetVCPUs(2) of 3: %v", err)
	}
	assertVCPUs(t, vm, 3)
	assertContinued(t, cfg)
	quit(t, vm, cfg, pid)
}

func TestSetVCPUsWithoutSlots(t *testing.T) {
	v := &vm{cfg: vmm.Config{VCPUs: 2}}
	if err := v.SetVCPUs(t.Context(), 2); err != nil {
		t.Errorf("asking for the boot count: %v", err)
	}
	if err := v.SetVCPUs(t.Context(), 3); err == nil || !strings.Contains(err.Error(), "no vCPU slots") {
		t.Errorf("SetVCPUs(3) without slots: %v", err)
	}
	if n, err := v.VCPUs(t.Context()); n != 2 || err != nil {
		t.Errorf("VCPUs() = %d, %v; want 2", n, err)
	}
}

func TestSMPAndPlugArgs(t *testing.T) {
	cfg := baseConfig()
	cfg.VCPUs, cfg.MaxVCPUs = 3, 4
	got, err := commandLine(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	// The boot CPU, and the others as devices that can be removed again.
	if !containsSeq(got, []string{"-smp", "cpus=1,maxcpus=4,sockets=4,cores=1,threads=1",
		"-device", "max-x86_64-cpu,id=vcpu-core0-socket1-thread0,core-id=0,socket-id=1,thread-id=0",
		"-device", "max-x86_64-cpu,id=vcpu-core0-socket2-thread0,core-id=0,socket-id=2,thread-id=0", "-m"}) {
		t.Errorf("argv lacks -smp cpus=1,maxcpus=4 in 4 sockets and two vCPU devices: %q", got)
	}
	// A restore starts with the vCPUs the snapshot had instead.
	if got, _ := commandLine(cfg, true); !containsSeq(got, []string{"-smp", "cpus=1,maxcpus=4,sockets=4,cores=1,threads=1", "-m"}) {
		t.Errorf("a restore's argv: %q", got)
	}
	cfg.MaxVCPUs = 0
	if got, _ := commandLine(cfg, false); !containsSeq(got, []string{"-smp", "3", "-m"}) {
		t.Errorf("without a ceiling: %q", got)
	}
	for _, bad := range []int{1, 256} {
		cfg.MaxVCPUs = bad
		if _, err := commandLine(cfg, false); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("max vcpus %d", bad)) {
			t.Errorf("max vcpus %d: %v", bad, err)
		}
	}
	slot := hotpluggableCPU{Type: "max-x86_64-cpu", Props: map[string]int{"thread-id": 0, "socket-id": 3, "core-id": 0}}
	if got, want := plugArgs([]hotpluggableCPU{slot}), []string{"-device", "max-x86_64-cpu,id=vcpu-core0-socket3-thread0,core-id=0,socket-id=3,thread-id=0"}; !slices.Equal(got, want) {
		t.Errorf("plugArgs = %q, want %q", got, want)
	}
}
