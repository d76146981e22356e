package instances

import (
	"context"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// A live memory resize (256 MiB → 768 MiB within a 1 GiB ceiling, and back) next to its baseline
// measured in the same run on the same instance: a restart in place (a change of vcpus, which
// shuts the guest down and boots it again). The times are the manager's Update, until the guest
// holds the new memory or its program runs again.
func BenchmarkResizeLiveVsRestartInPlace(b *testing.B) {
	env := newTestEnv(b)
	env.m = env.manager(b, func(o *Options) { o.Log = func(context.Context, string, map[string]any) {} })
	ctx := context.Background()
	spec := env.spec("resizebench")
	spec.Memory, spec.MaxMemory = 256*units.MiB, 1*units.GiB
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		b.Fatal(err)
	}
	var live, restart time.Duration
	b.ResetTimer()
	for range b.N {
		for _, size := range []int64{768 * units.MiB, 256 * units.MiB} {
			spec.Memory = size
			t0 := time.Now()
			if _, err := env.m.Update(ctx, inst.ID, spec); err != nil {
				b.Fatal(err)
			}
			live += time.Since(t0)
		}
		spec.VCPUs = 3 - spec.VCPUs // 1 ↔ 2
		t0 := time.Now()
		got, err := env.m.Update(ctx, inst.ID, spec)
		if err != nil {
			b.Fatal(err)
		}
		restart += time.Since(t0)
		if got.PID == inst.PID || got.State != Running {
			b.Fatalf("the vcpus change did not restart the instance in place: %+v", got)
		}
		inst = got
	}
	b.StopTimer()
	n := float64(b.N)
	liveMS := float64(live.Milliseconds()) / n / 2
	restartMS := float64(restart.Milliseconds()) / n
	b.ReportMetric(liveMS, "live-resize-ms")
	b.ReportMetric(restartMS, "restart-in-place-ms")
	b.ReportMetric(liveMS/restartMS, "live/restart")
	b.Logf("memory resize of a running guest: %.0f ms live (virtio-mem, the program runs on), %.0f ms for a restart in place of the same instance: %.3fx",
		liveMS, restartMS, liveMS/restartMS)
	if err := env.m.Delete(ctx, inst.ID); err != nil {
		b.Fatal(err)
	}
}
