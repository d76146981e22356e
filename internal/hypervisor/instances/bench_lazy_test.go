package instances

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
)

// BenchmarkLazyRestore measures Standby → Running (SetState returns once the VMM reports the
// guest Running) for guests of 256 MiB, 1 GiB and 2 GiB that have used half their memory, with
// compressed snapshots (eager: decompress the image, then the VMM reads it all in) and lazy ones
// (the VMM maps the image and reads pages on demand), on the Cloud Hypervisor stand-in, which
// reads memory-ranges as CH does: whole for Copy, nothing up front for OnDemand. The floor is
// `cat` of the same uncompressed image to /dev/null. Everything runs on a warm page cache: the
// snapshots were just written. Goal: lazy ≤ 300 ms, whatever the memory size.
func BenchmarkLazyRestore(b *testing.B) {
	env := newTestEnv(b)
	b.Setenv(chstandin.ModeEnv, "v53")
	b.Setenv(chstandin.FaultsEnv, "fill=50")
	bin := chstandin.BuildBinary(b)
	managers := map[SnapshotMode]*Manager{}
	for _, mode := range []SnapshotMode{SnapshotCompressed, SnapshotLazy} {
		managers[mode] = env.manager(b, func(o *Options) {
			o.Drivers = []vmm.Driver{&cloudhypervisor.Driver{Binary: bin}}
			o.DefaultHypervisor, o.Accelerator, o.StopTimeout = "cloud-hypervisor", "auto", 5*time.Second
			o.SnapshotMode, o.Log = mode, nil
		})
	}
	benchEagerVersusLazy(b, managers, "the stand-in, warm cache",
		func(b *testing.B, m *Manager, prefix string, size int64) *Instance {
			return standbyGuest(b, env, m, prefix, size)
		},
		func(lazy *Instance) string {
			return filepath.Join(lazy.Dir, "snapshots", "snapshot-latest", vmm.MemoryFile)
		})
}

// benchEagerVersusLazy times Standby → Running of guests of 256 MiB, 1 GiB and 2 GiB, one put in
// Standby by standby on each manager, next to `cat` of the file floor names (what the lazy guest's
// memory is read from) to /dev/null, and reports each with the ratios.
func benchEagerVersusLazy(b *testing.B, managers map[SnapshotMode]*Manager, what string,
	standby func(b *testing.B, m *Manager, prefix string, size int64) *Instance, floor func(lazy *Instance) string) {
	for _, size := range []int64{256 * units.MiB, units.GiB, 2 * units.GiB} {
		b.Run(fmt.Sprintf("%dMiB", size/units.MiB), func(b *testing.B) {
			var eager, lazy, cat time.Duration
			n := 0
			for b.Loop() {
				n++
				b.StopTimer()
				e := standby(b, managers[SnapshotCompressed], "eager", size)
				l := standby(b, managers[SnapshotLazy], "lazy", size)
				b.StartTimer()

				cat += timed(b, func() error { return exec.Command("sh", "-c", `cat "$1" > /dev/null`, "cat", floor(l)).Run() })
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
			b.Logf("%d MiB, half used: eager %.1f ms, lazy %.1f ms, cat of what the lazy guest reads %.1f ms (%s)", size/units.MiB, ms(eager), ms(lazy), ms(cat), what)
		})
	}
}

// standbyGuest creates a guest of size bytes on m and puts it in Standby.
func standbyGuest(b *testing.B, env *testEnv, m *Manager, prefix string, size int64) *Instance {
	b.Helper()
	spec := env.spec(fmt.Sprintf("%s-%d-%d", prefix, size/units.MiB, time.Now().UnixNano()%1e6))
	spec.Memory = size
	inst, err := m.Create(context.Background(), spec, Standby)
	if err != nil {
		b.Fatal(err)
	}
	return inst
}

func wantRunning(m *Manager, inst *Instance) error {
	got, err := m.SetState(context.Background(), inst.ID, Running)
	if err == nil && got.State != Running {
		err = fmt.Errorf("%s is %s after the restore", inst.Name, got.State)
	}
	return err
}

func timed(b *testing.B, f func() error) time.Duration {
	b.Helper()
	t := time.Now()
	if err := f(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t)
}
