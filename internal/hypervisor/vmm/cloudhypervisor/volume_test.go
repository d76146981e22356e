package cloudhypervisor

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Volumes are further disks after the instance's own; the VMM gets each with its serial and
// read-only flag, and a restore brings back the same ones.

// withVolumes adds two volume disks, one writable and one read-only, after inst's own.
func withVolumes(t *testing.T, inst instance) instance {
	t.Helper()
	var disks []vmm.Disk
	for _, v := range []struct {
		name, serial string
		readonly     bool
	}{{"rw.raw", "01JVOLWRITABLE000001", false}, {"ro.raw", "01JVOLREADONLY000002", true}} {
		p := filepath.Join(inst.cfg.Dir, v.name)
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		disks = append(disks, vmm.Disk{Path: p, Serial: v.serial, ReadOnly: v.readonly})
	}
	inst.cfg.Disks = append(append([]vmm.Disk(nil), inst.cfg.Disks...), disks...)
	return inst
}

// diskShape is what the tests compare of one DiskConfig.
type diskShape struct {
	Path     string `json:"path"`
	Serial   string `json:"serial"`
	Readonly bool   `json:"readonly"`
}

func wantDisks(cfg vmm.Config) []diskShape {
	var out []diskShape
	for _, d := range cfg.Disks {
		out = append(out, diskShape{Path: d.Path, Serial: d.Serial, Readonly: d.ReadOnly})
	}
	return out
}

func infoDisks(t *testing.T, vm *VM) []diskShape {
	t.Helper()
	var info struct {
		Config struct {
			Disks []diskShape `json:"disks"`
		} `json:"config"`
	}
	if err := vm.c.do(testContext(t), http.MethodGet, "vm.info", nil, &info); err != nil {
		t.Fatal(err)
	}
	return info.Config.Disks
}

func TestBootSendsEveryVolumeDiskAndRestoreKeepsThem(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		inst := newInstance(t, hn, 0)
		inst = withVolumes(t, inst)
		want := wantDisks(inst.cfg)
		_, vm := boot(t, hn, inst)
		if got := infoDisks(t, vm); !slices.Equal(got, want) {
			t.Errorf("disks after boot\n got %+v\nwant %+v", got, want)
		}
		if err := vm.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		wantGone(t, hn, inst)
		snap := standby(t, hn, inst)
		var saved struct {
			Disks []diskShape `json:"disks"`
		}
		b, err := os.ReadFile(filepath.Join(snap, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &saved); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(saved.Disks, want) {
			t.Errorf("disks in the snapshot's config.json\n got %+v\nwant %+v", saved.Disks, want)
		}
		wantGone(t, hn, inst)
		if _, err := hn.driver().Restore(ctx, hn.host(), inst.cfg, snap); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		vm = connect(t, hn, inst)
		if got := infoDisks(t, vm); !slices.Equal(got, want) {
			t.Errorf("disks after restore\n got %+v\nwant %+v", got, want)
		}
		if err := vm.Quit(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// CH locks disk images at boot: shared for read-only ones, exclusive for writable ones.
func TestReadOnlyVolumesAreSharedAndWritableOnesAreNot(t *testing.T) {
	forEachHarness(t, func(t *testing.T, hn harness) {
		ctx := testContext(t)
		shared := filepath.Join(t.TempDir(), "shared.raw")
		if err := os.WriteFile(shared, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		attached := func(readonly bool) instance {
			inst := newInstance(t, hn, 0)
			inst.cfg.Disks = append(inst.cfg.Disks, vmm.Disk{Path: shared, Serial: "01JVOLSHARED00000003", ReadOnly: readonly})
			return inst
		}
		a, b := attached(true), attached(true)
		_, vmA := boot(t, hn, a)
		_, vmB := boot(t, hn, b)

		writer := attached(false)
		if _, err := hn.driver().Boot(ctx, hn.host(), writer.cfg); err == nil || !strings.Contains(err.Error(), "lock") {
			t.Errorf("Boot with the shared read-only image writable: %v; want CH's lock error", err)
		}
		wantGone(t, hn, writer)
		for _, vm := range []*VM{vmA, vmB} {
			if err := vm.Quit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		_, vmW := boot(t, hn, writer)
		if err := vmW.Quit(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
