package instances

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// BenchmarkQEMULazyRestore measures Standby → Running on real QEMU guests (TCG) of 256 MiB, 1 GiB
// and 2 GiB that hold half their memory in live data (half of it incompressible, as in
// BenchmarkSnapshotStream): with compressed snapshots (eager: QEMU loads the whole stream through
// lz4 -d before the guest runs) and with lazy ones (QEMU maps the guest's RAM file and loads the
// device state only). The time is SetState's, until the guest runs. The floor is `cat` of the
// bytes the lazy guest's memory is read from (its RAM file), to /dev/null, on the page cache the
// standby left warm. Goal: lazy ≤ 300 ms, whatever the memory size.
func BenchmarkQEMULazyRestore(b *testing.B) {
	env := newTestEnv(b)
	managers := map[SnapshotMode]*Manager{}
	for _, mode := range []SnapshotMode{SnapshotCompressed, SnapshotLazy} {
		managers[mode] = env.manager(b, func(o *Options) {
			o.Drivers = []vmm.Driver{qemu.New()} // the driver itself: a wrapper would hide LazyBooter
			o.SnapshotMode, o.Log = mode, nil
		})
	}
	benchEagerVersusLazy(b, managers, "QEMU under TCG",
		func(b *testing.B, m *Manager, prefix string, size int64) *Instance {
			inst := halfFullGuestInStandby(b, env, m, "q"+prefix, size)
			if mode, err := m.snapshotMode(context.Background(), inst.ID); err != nil || mode != m.opts.SnapshotMode {
				b.Fatalf("%s's snapshot is %q (%v), want %q", inst.Name, mode, err, m.opts.SnapshotMode)
			}
			return inst
		},
		func(lazy *Instance) string { return filepath.Join(lazy.Dir, "memory.ram") })
}

// halfFullGuestInStandby creates a guest of size bytes on m, lets it fill half its memory, and
// puts it in Standby.
func halfFullGuestInStandby(b *testing.B, env *testEnv, m *Manager, prefix string, size int64) *Instance {
	b.Helper()
	ctx := context.Background()
	spec := env.spec(fmt.Sprintf("%s-%d", prefix, size/units.MiB))
	spec.Memory, spec.Hotplug = size, 0
	spec.Entrypoint = []string{"/bin/sh", "-c", testutil.LiveDataScript(size / 2)}
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		b.Fatal(err)
	}
	waitConsoleLine(b, env, inst, "filled", 10*time.Minute)
	if _, err := m.SetState(ctx, inst.ID, Standby); err != nil {
		b.Fatal(err)
	}
	return inst
}
