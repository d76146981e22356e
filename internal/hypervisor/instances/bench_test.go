package instances

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/compress"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// BenchmarkLZ4VersusCLI compresses and decompresses a real snapshot memory image (a guest put in
// Standby with compression off) with the project's code and with `lz4 -1` / `lz4 -d`, in one run.
// Reported: throughput ratios ours/CLI (goal ≥ 1) and compression ratios (goal: ours ≥ the CLI's).
func BenchmarkLZ4VersusCLI(b *testing.B) {
	lz4cli := testutil.RequireTool(b, "lz4")
	raw := realSnapshotMemory(b)
	fi, err := os.Stat(raw)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	ctx := context.Background()
	var ours, cli, oursD, cliD time.Duration
	var oursSize, cliSize int64
	for b.Loop() {
		t := time.Now()
		n, err := compress.File(ctx, host.Local{}, raw, filepath.Join(dir, "ours.lz4"))
		if err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t)
		oursSize = n

		t = time.Now()
		if out, err := exec.Command(lz4cli, "-1", "-f", "-q", raw, filepath.Join(dir, "cli.lz4")).CombinedOutput(); err != nil {
			b.Fatalf("lz4 -1: %v %s", err, out)
		}
		cli += time.Since(t)
		cfi, _ := os.Stat(filepath.Join(dir, "cli.lz4"))
		cliSize = cfi.Size()

		t = time.Now()
		if _, err := compress.Decompress(ctx, host.Local{}, filepath.Join(dir, "ours.lz4"), filepath.Join(dir, "ours.raw")); err != nil {
			b.Fatal(err)
		}
		oursD += time.Since(t)

		t = time.Now()
		if out, err := exec.Command(lz4cli, "-d", "-f", "-q", filepath.Join(dir, "cli.lz4"), filepath.Join(dir, "cli.raw")).CombinedOutput(); err != nil {
			b.Fatalf("lz4 -d: %v %s", err, out)
		}
		cliD += time.Since(t)
	}
	mb := float64(fi.Size()) / (1 << 20)
	b.ReportMetric(mb, "MiB-input")
	b.ReportMetric(cli.Seconds()/ours.Seconds(), "compress-speed-ours/cli")
	b.ReportMetric(cliD.Seconds()/oursD.Seconds(), "decompress-speed-ours/cli")
	b.ReportMetric(float64(fi.Size())/float64(oursSize), "ratio-ours")
	b.ReportMetric(float64(fi.Size())/float64(cliSize), "ratio-cli")
}

var snapshotMemory struct {
	once sync.Once
	path string
	err  error
}

// realSnapshotMemory boots a guest that touches some memory, puts it in Standby uncompressed and
// returns its memory image. It is made once per test binary.
func realSnapshotMemory(b *testing.B) string {
	b.Helper()
	env := newTestEnv(b)
	snapshotMemory.once.Do(func() {
		env.m.opts.CompressSnapshots = false
		ctx := context.Background()
		spec := env.spec("lz4bench")
		spec.Entrypoint = []string{"/bin/sh", "-c", `dd if=/dev/urandom of=/tmp/noise bs=1M count=8 2>/dev/null; cat /bin/busybox /bin/busybox > /tmp/text; ` + counterScript}
		inst, err := env.m.Create(ctx, spec, Running)
		if err != nil {
			snapshotMemory.err = err
			return
		}
		env.waitCount(b, inst, 3, 0)
		if _, err := env.m.SetState(ctx, inst.ID, Standby); err != nil {
			snapshotMemory.err = err
			return
		}
		keep, err := os.MkdirTemp("", "hypeman-bench-")
		if err != nil {
			snapshotMemory.err = err
			return
		}
		snapshotMemory.path = filepath.Join(keep, vmm.MemoryFile)
		snapshotMemory.err = os.Rename(filepath.Join(inst.Dir, "snapshots", "snapshot-latest", vmm.MemoryFile), snapshotMemory.path)
	})
	if snapshotMemory.err != nil {
		b.Fatal(snapshotMemory.err)
	}
	return snapshotMemory.path
}

// BenchmarkCreatePhases creates instances from a cached image and reports each phase of the boot
// path. "manager" is everything but the VMM process start and the guest's boot (goal ≤ 300 ms);
// "conversions" counts image conversions on creates after the first (goal 0).
func BenchmarkCreatePhases(b *testing.B) {
	env := newTestEnv(b)
	ctx := context.Background()
	var mu sync.Mutex
	phases := map[string]float64{}
	var conversions int
	env.m.opts.Log = func(_ context.Context, msg string, f map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		switch msg {
		case "guest program started", "overlay ready", "image ready":
			for k, v := range f {
				if ms, ok := v.(float64); ok {
					phases[k] += ms
				}
			}
		}
	}
	env.m.images.Log = func(_ context.Context, msg string, _ map[string]any) {
		if msg == "image converted" {
			mu.Lock()
			conversions++
			mu.Unlock()
		}
	}
	spec := env.spec("warm")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	if _, err := env.m.Create(ctx, spec, Stopped); err != nil { // warms image and system caches
		b.Fatal(err)
	}
	mu.Lock()
	clear(phases)
	conversions = 0
	mu.Unlock()
	i := 0
	for b.Loop() {
		i++
		spec.Name = "bench-" + string(rune('a'+i%26)) + time.Now().Format("150405")
		t := time.Now()
		inst, err := env.m.Create(ctx, spec, Running)
		if err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		phases["total_ms"] += float64(time.Since(t).Microseconds()) / 1000
		mu.Unlock()
		b.StopTimer()
		if err := env.m.Delete(ctx, inst.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(i)
	for k, v := range phases {
		b.ReportMetric(v/n, k)
	}
	manager := phases["total_ms"] - phases["vmm_start_ms"] - phases["guest_boot_ms"]
	b.ReportMetric(manager/n, "manager_ms")
	b.ReportMetric(300/(manager/n), "manager-budget-300ms/actual")
	b.ReportMetric(float64(conversions), "conversions")
}
