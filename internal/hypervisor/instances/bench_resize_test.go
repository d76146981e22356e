package instances

import (
	"context"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// A live memory resize (256 MiB → 768 MiB within a 1 GiB ceiling, and back) and a live vCPU
// addition (1 → 2 within max_vcpus 3) next to their baseline measured in the same run on the same
// instance: a restart in place (2 → 1 vCPUs, which QEMU takes only by shutting the guest down and
// booting it again). The times are the manager's Update, until the guest holds the new memory, the
// VMM has the new vCPU, or the program runs again.
func BenchmarkResizeLiveVsRestartInPlace(b *testing.B) {
	env := newTestEnv(b)
	env.m = env.manager(b, func(o *Options) { o.Log = func(context.Context, string, map[string]any) {} })
	ctx := context.Background()
	spec := env.spec("resizebench")
	spec.Memory, spec.MaxMemory = 256*units.MiB, 1*units.GiB
	spec.VCPUs, spec.MaxVCPUs = 1, 3
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		b.Fatal(err)
	}
	var live, liveVCPU, restart time.Duration
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
		spec.VCPUs = 2
		t0 := time.Now()
		got, err := env.m.Update(ctx, inst.ID, spec)
		if err != nil {
			b.Fatal(err)
		}
		liveVCPU += time.Since(t0)
		if got.PID != inst.PID || got.VCPUs != 2 {
			b.Fatalf("the vcpus change was not live: %+v", got)
		}
		spec.VCPUs = 1
		t0 = time.Now()
		got, err = env.m.Update(ctx, inst.ID, spec)
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
	vcpuMS := float64(liveVCPU.Milliseconds()) / n
	restartMS := float64(restart.Milliseconds()) / n
	b.ReportMetric(liveMS, "live-resize-ms")
	b.ReportMetric(vcpuMS, "live-vcpu-ms")
	b.ReportMetric(restartMS, "restart-in-place-ms")
	b.ReportMetric(liveMS/restartMS, "live/restart")
	b.ReportMetric(vcpuMS/restartMS, "live-vcpu/restart")
	b.Logf("memory resize of a running guest: %.0f ms live (virtio-mem, the program runs on), %.0f ms for a restart in place of the same instance: %.3fx",
		liveMS, restartMS, liveMS/restartMS)
	b.Logf("a vCPU added to a running guest: %.0f ms live (device_add), against the same restart in place: %.3fx", vcpuMS, vcpuMS/restartMS)
	if err := env.m.Delete(ctx, inst.ID); err != nil {
		b.Fatal(err)
	}
}
