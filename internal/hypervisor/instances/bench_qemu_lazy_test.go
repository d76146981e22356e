package instances

import (
	"context"
	"fmt"
	"os"
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
	for _, size := range []int64{256 * units.MiB, units.GiB, 2 * units.GiB} {
		b.Run(fmt.Sprintf("%dMiB", size/units.MiB), func(b *testing.B) {
			var eager, lazy, cat time.Duration
			n := 0
			for b.Loop() {
				n++
				b.StopTimer()
				e := halfFullGuestInStandby(b, env, managers[SnapshotCompressed], "qeager", size)
				l := halfFullGuestInStandby(b, env, managers[SnapshotLazy], "qlazy", size)
				if mode, err := managers[SnapshotLazy].snapshotMode(context.Background(), l.ID); err != nil || mode != SnapshotLazy {
					b.Fatalf("the lazy guest's snapshot is %q (%v)", mode, err)
				}
				ram := filepath.Join(l.Dir, "memory.ram")
				b.StartTimer()

				cat += timeCommand(b, ram, os.DevNull, "cat")
				eager += timed(b, func() error { return wantRunning(managers[SnapshotCompressed], e) })
				lazy += timed(b, func() error { return wantRunning(managers[SnapshotLazy], l) })

				b.StopTimer()
				for m, inst := range map[*Manager]*Instance{managers[SnapshotCompressed]: e, managers[SnapshotLazy]: l} {
					if err := m.Delete(context.Background(), inst.ID); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
			b.ReportMetric(ms(eager), "eager_ms")
			b.ReportMetric(ms(lazy), "lazy_ms")
			b.ReportMetric(ms(cat), "cat_ms")
			b.ReportMetric(ms(eager)/ms(lazy), "eager/lazy")
			b.ReportMetric(ms(cat)/ms(lazy), "cat/lazy")
			b.ReportMetric(300/ms(lazy), "lazy-budget-300ms/actual")
			b.Logf("QEMU, %d MiB, half used: eager %.1f ms, lazy %.1f ms, cat of the RAM file %.1f ms", size/units.MiB, ms(eager), ms(lazy), ms(cat))
		})
	}
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
