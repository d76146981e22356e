package instances

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// QEMU in lazy mode, on a real VM: the guest boots with its memory in a RAM file, the snapshot
// leaves the memory there, and Running maps it again: the counter goes on, from the same boot.
// The RAM file stays while the snapshot needs it and goes when the guest stops.
func TestQEMULazyRestoreMapsTheRAMFileAndTheGuestCountsOn(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	m := env.manager(t, func(o *Options) {
		o.Drivers = []vmm.Driver{qemu.New()} // the driver itself: a wrapper would hide LazyBooter
		o.SnapshotMode = SnapshotLazy
	})
	if w := m.LazyRestoreWarning(context.Background()); w != "" {
		t.Errorf("lazy mode on QEMU warns %q", w)
	}
	ctx := testContext(t)
	spec := env.spec("qlazy")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	ram := filepath.Join(inst.Dir, "memory.ram")
	if fi, err := os.Stat(ram); err != nil || fi.Size() != spec.Memory {
		t.Fatalf("RAM file of a guest booted in lazy mode: %v", err)
	}
	env.m = m
	env.waitCount(t, inst, 2, 0)

	got, err := m.SetState(ctx, inst.ID, Standby)
	if err != nil || got.State != Standby {
		t.Fatalf("standby: %v (%+v)", err, got)
	}
	wantSnapshotMode(t, m, inst, SnapshotLazy)
	if _, err := os.Stat(ram); err != nil {
		t.Fatalf("the RAM file went with the standby: %v", err)
	}
	before := consoleCounts(t, inst)

	got, err = m.SetState(ctx, inst.ID, Running)
	if err != nil || got.State != Running {
		t.Fatalf("restore: %v (%+v)", err, got)
	}
	counts := waitCounts(t, inst, len(before)+3)
	wantCountingOn(t, counts)
	if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest")); !os.IsNotExist(err) {
		t.Errorf("the snapshot is still there after the guest ran: %v", err)
	}

	if got, err = m.SetState(ctx, inst.ID, Stopped); err != nil || got.State != Stopped {
		t.Fatalf("stop: %v (%+v)", err, got)
	}
	if _, err := os.Stat(ram); !os.IsNotExist(err) {
		t.Errorf("the RAM file of a stopped guest is still there: %v", err)
	}
	env.deleteAndCheckGone(t, got)
}

// A guest that was booted before the provider was set to lazy has no RAM file: its snapshot is
// taken and restored eagerly, and says why.
func TestQEMUGuestBootedEagerlyIsSnapshottedEagerly(t *testing.T) {
	drv := qemu.New()
	md := &metadata{Name: "old", VMM: vmm.Config{Dir: "/data/guests/01J"}}
	if why := bootedEagerly(drv, md); !strings.Contains(why, "booted before snapshot_mode was lazy") {
		t.Errorf("bootedEagerly = %q", why)
	}
	drv.LazyBoot(&md.VMM)
	if why := bootedEagerly(drv, md); why != "" || md.VMM.RAMFile != "/data/guests/01J/memory.ram" {
		t.Errorf("after LazyBoot: %q, RAM file %q", why, md.VMM.RAMFile)
	}
	m, err := New(Options{Host: host.Local{}, DataDir: testutil.ShortTempDir(t), Drivers: []vmm.Driver{drv}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := vmm.Config{Dir: "/data/guests/01J"}
	m.lazyBoot(drv, &cfg)
	if cfg.RAMFile != "" {
		t.Errorf("a compressed-mode manager gave the guest a RAM file %q", cfg.RAMFile)
	}
}

// A RAM-file guest's snapshot holds no boot memory: a standby needs room for the device state and
// the hot-plugged memory only.
func TestSnapshotRoomOfARAMFileGuestLeavesOutItsBootMemory(t *testing.T) {
	cfg := vmm.Config{MemoryBytes: 4 << 30, HotplugBytes: 1 << 30}
	if got := snapshotRoom(cfg); got != 5<<30 {
		t.Errorf("room for a guest with anonymous memory: %d, want its whole memory", got)
	}
	cfg.RAMFile = "/data/guests/01J/memory.ram"
	if got := snapshotRoom(cfg); got != 1<<30+deviceStateRoom {
		t.Errorf("room for a RAM-file guest: %d, want its hot-plugged memory and the device state", got)
	}
}
