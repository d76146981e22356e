package cloudhypervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func wantVCPUs(t *testing.T, vm *VM, want int) {
	t.Helper()
	got, err := vm.VCPUs(testContext(t))
	if err != nil || got != want {
		t.Errorf("VCPUs() = %d, %v; want %d", got, err, want)
	}
}

// vCPUs change within max_vcpus, a removal waits for the guest to eject, and a snapshot and
// restore keep the count.
func TestSetVCPUs(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		inst.cfg.MaxVCPUs = 4
		_, vm := boot(t, hn, inst)
		wantVCPUs(t, vm, 2)
		if err := vm.SetVCPUs(ctx, 4); err != nil {
			t.Fatal(err)
		}
		wantVCPUs(t, vm, 4)
		start := time.Now()
		if err := vm.SetVCPUs(ctx, 2); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 500*time.Millisecond {
			t.Errorf("SetVCPUs(2) returned after %s, before the guest ejected the vCPUs", took)
		}
		// The removal has finished: the next resize is taken at once; the boot vCPUs can go too.
		if err := vm.SetVCPUs(ctx, 1); err != nil {
			t.Fatal(err)
		}
		wantVCPUs(t, vm, 1)
		if err := vm.SetVCPUs(ctx, 3); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []int{0, 5} {
			if err := vm.SetVCPUs(ctx, bad); err == nil || !strings.Contains(err.Error(), "must be from 1 to the ceiling 4") {
				t.Errorf("SetVCPUs(%d): %v", bad, err)
			}
		}
		wantVCPUs(t, vm, 3)

		if err := vm.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		snap := filepath.Join(inst.cfg.Dir, "snapshot")
		if err := os.MkdirAll(snap, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := vm.Snapshot(ctx, snap); err != nil {
			t.Fatal(err)
		}
		if err := vm.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		wantGone(t, hn, inst)
		if _, err := hn.driver().Restore(ctx, hn.host(), inst.cfg, snap); err != nil {
			t.Fatal(err)
		}
		vm = connect(t, hn, inst)
		wantVCPUs(t, vm, 3)
		if err := vm.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		wantGone(t, hn, inst)
	})
}

func TestSetVCPUsWithoutSlots(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		_, vm := boot(t, hn, newInstance(t, hn, 0))
		if err := vm.SetVCPUs(ctx, 2); err != nil {
			t.Errorf("SetVCPUs to the boot count: %v", err)
		}
		if err := vm.SetVCPUs(ctx, 3); err == nil || !strings.Contains(err.Error(), "no vCPU slots") {
			t.Errorf("SetVCPUs past the boot count without slots: %v", err)
		}
		wantVCPUs(t, vm, 2)
	})
}
