package cloudhypervisor

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// The VMM starts with the seccomp filter on, and the VM is created with Landlock and the one
// rule the driver adds: the instance directory, read-write.
func TestBootSandboxesTheVMM(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		inst := newInstance(t, hn, 0)
		pid, vm := boot(t, hn, inst)
		argv := hn.argv(pid)
		if i := slices.Index(argv, "--seccomp"); i < 0 || i+1 >= len(argv) || argv[i+1] != "true" {
			t.Errorf("command line %q, want --seccomp true", argv)
		}
		var info struct {
			Config struct {
				LandlockEnable bool             `json:"landlock_enable"`
				LandlockRules  []landlockConfig `json:"landlock_rules"`
			} `json:"config"`
		}
		if err := vm.c.do(testContext(t), http.MethodGet, "vm.info", nil, &info); err != nil {
			t.Fatal(err)
		}
		want := []landlockConfig{{Path: inst.cfg.Dir, Access: "rw"}}
		if !info.Config.LandlockEnable || !slices.Equal(info.Config.LandlockRules, want) {
			t.Errorf("landlock_enable %v, rules %+v; want true, %+v", info.Config.LandlockEnable, info.Config.LandlockRules, want)
		}
	})
}

// Standby, restore and standby again, the way the manager lays snapshots out: a new directory
// each time, and the snapshots removed after the restore. The restored VMM's rules come from
// the snapshot's config.json and bind to what their paths name at the restore.
func TestSnapshotAndRestoreWorkUnderLandlock(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		snaps := filepath.Join(inst.cfg.Dir, "snapshots")
		first := standby(t, hn, inst)
		latest := filepath.Join(snaps, "latest")
		if err := os.Rename(first, latest); err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			if _, err := hn.driver().Restore(ctx, hn.host(), inst.cfg, latest); err != nil {
				t.Fatalf("round %d: Restore: %v", round, err)
			}
			vm := connect(t, hn, inst)
			if err := vm.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(snaps); err != nil {
				t.Fatal(err)
			}
			if err := vm.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			partial := snapshotDir(t, inst, "partial")
			if err := vm.Snapshot(ctx, partial); err != nil {
				t.Fatalf("round %d: a snapshot of the restored VM: %v", round, err)
			}
			if err := vm.Quit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(partial, latest); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// A snapshot directory outside the rules: the driver refuses it and says why, and the VMM, asked
// directly, refuses it the way Landlock makes the real one fail. The VM stays Paused.
func TestSnapshotOutsideTheRulesFails(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		_, vm := boot(t, hn, inst)
		if err := vm.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		outside := t.TempDir()
		err := vm.Snapshot(ctx, outside)
		if err == nil || !strings.Contains(err.Error(), outside) || !strings.Contains(err.Error(), "Landlock") {
			t.Errorf("Snapshot outside the instance directory: %v", err)
		}
		err = vm.c.put(ctx, "vm.snapshot", vmSnapshotConfig{DestinationURL: "file://" + outside})
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusInternalServerError ||
			!slices.Contains(apiErr.Messages, "Error creating VM config snapshot file") || apiErr.Messages[len(apiErr.Messages)-1] != "Permission denied (os error 13)" {
			t.Errorf("vm.snapshot outside the rules: %v", err)
		}
		if entries, _ := os.ReadDir(outside); len(entries) > 0 {
			t.Errorf("the refused snapshot left %s behind", entries[0].Name())
		}
		wantState(t, vm, vmm.Paused)
	})
}

// On a kernel without Landlock the boot fails, says why and what the host needs, and leaves no
// process behind.
func TestBootOnAKernelWithoutLandlockSaysWhatIsNeeded(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		hn.setFaults("no-landlock")
		inst := newInstance(t, hn, 0)
		_, err := hn.driver().Boot(testContext(t), hn.host(), inst.cfg)
		if err == nil || !strings.Contains(err.Error(), "Failed to apply landlock config during vm_create") || !strings.Contains(err.Error(), "Linux 6.2 or later") {
			t.Errorf("Boot without Landlock: %v", err)
		}
		wantGone(t, hn, inst)
	})
}
