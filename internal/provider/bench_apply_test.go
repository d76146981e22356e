package provider

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// BenchmarkApplyStandbyAndRestore times whole `terraform apply` runs of a 2 GiB guest holding 1
// GiB of live data (half of it incompressible): Running → Standby, and Standby → Running, each
// next to its baseline from the same run: `lz4 -d` of the snapshot the standby wrote, to
// /dev/null, for the restore (goal: ≤ 2x).
func BenchmarkApplyStandbyAndRestore(b *testing.B) {
	lz4 := testutil.RequireTool(b, "lz4")
	s := newStandbyBench(b, 1, false) // the provider as a user runs it; its one instance is not used here
	dir := filepath.Join(s.work, "restore")
	writeFile(b, filepath.Join(dir, "main.tf"), s.header("")+fmt.Sprintf(`
variable "state" {
  type = string
}
resource "hypeman_instance" "big" {
  name           = "restore-bench"
  image          = %q
  memory         = "2GiB"
  overlay_size   = "128MiB"
  entrypoint     = ["/bin/sh", "-c", %q]
  state          = var.state
}
`, s.image, testutil.LiveDataScript(1<<30)))
	apply := func(state string) time.Duration {
		return s.run(dir, "apply", "-auto-approve", "-input=false", "-var", "state="+state)
	}
	apply("Running")
	b.Cleanup(func() { s.run(dir, "destroy", "-auto-approve", "-input=false", "-var", "state=Running") })
	console := waitFilled(b, s.dataDir)

	var standby, restore, lz4d time.Duration
	var compressed int64
	n := 0
	for b.Loop() {
		n++
		standby += apply("Standby")
		snap, err := filepath.Glob(filepath.Join(filepath.Dir(filepath.Dir(console)), "snapshots", "snapshot-latest", "memory-ranges.lz4"))
		if err != nil || len(snap) != 1 {
			b.Fatalf("the compressed snapshot: %v %v", snap, err)
		}
		fi, err := os.Stat(snap[0])
		if err != nil {
			b.Fatal(err)
		}
		compressed = fi.Size()
		t := time.Now()
		if out, err := exec.Command("sh", "-c", `"$1" -d -q -c "$2" > /dev/null`, "lz4d", lz4, snap[0]).CombinedOutput(); err != nil {
			b.Fatalf("lz4 -d: %v %s", err, out)
		}
		lz4d += time.Since(t)
		restore += apply("Running")
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
	b.ReportMetric(ms(standby), "standby_apply_ms")
	b.ReportMetric(ms(restore), "restore_apply_ms")
	b.ReportMetric(ms(lz4d), "lz4d_ms")
	b.ReportMetric(ms(restore)/ms(lz4d), "restore/lz4d")
	b.Logf("2 GiB guest, 1 GiB live: terraform apply to Standby %.0f ms, to Running %.0f ms; lz4 -d of its %d MiB snapshot %.0f ms: restore is %.1fx lz4 -d (goal 2x)",
		ms(standby), ms(restore), compressed>>20, ms(lz4d), ms(restore)/ms(lz4d))
}

// waitFilled waits for the guest of the restore benchmark to print "filled", and returns the path
// of its console log.
func waitFilled(b *testing.B, dataDir string) string {
	b.Helper()
	filled := regexp.MustCompile(`(?m)^filled\r?$`)
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		logs, _ := filepath.Glob(filepath.Join(dataDir, "guests", "*", "logs", "console.log"))
		for _, l := range logs {
			if data, err := os.ReadFile(l); err == nil && filled.Match(data) {
				return l
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.Fatal("the guest did not fill its memory within 10 minutes")
	return ""
}
