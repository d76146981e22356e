package provider

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// BenchmarkPlanRefreshOf30StandbyInstances times `terraform plan` (which refreshes every resource)
// of 30 hypeman_instance resources in Standby against 30 terraform_data resources, in one run, with
// the provider built as a binary and installed through dev_overrides as a user would run it.
// Reported: the ratio hypeman/terraform_data (goal ≤ 1.5) and both times.
//
// Only the first instance is really booted and put in Standby; the other 29 are created Stopped
// and given a hard link of its snapshot, which makes them Standby to the manager (a refresh reads
// no snapshot content), and keeps the benchmark from booting 30 VMs.
func BenchmarkPlanRefreshOf30StandbyInstances(b *testing.B) {
	tf := testutil.RequireTool(b, "terraform")
	testutil.RequireTool(b, "qemu-system-x86_64")
	kernel, modules := testutil.Kernel(b)
	work := b.TempDir()
	dataDir, err := os.MkdirTemp("", "hm-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { killAll(dataDir); os.RemoveAll(dataDir) })
	ref := testutil.Registry(b) + "/test/busybox:latest"
	testutil.Push(b, ref, testutil.BusyboxImage(b))

	bin := filepath.Join(work, "bin")
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "terraform-provider-hypeman"), "../..").CombinedOutput(); err != nil {
		b.Fatalf("build the provider: %v\n%s", err, out)
	}
	rc := filepath.Join(work, "terraformrc")
	writeFile(b, rc, fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"hypeman/hypeman\" = %q\n  }\n  direct {}\n}\n", bin))
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1")
	run := func(dir string, args ...string) time.Duration {
		cmd := exec.Command(tf, append([]string{"-chdir=" + dir}, args...)...)
		cmd.Env = env
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return time.Since(t0)
	}

	vms := filepath.Join(work, "vms")
	writeFile(b, filepath.Join(vms, "main.tf"), fmt.Sprintf(`
terraform {
  required_providers {
    hypeman = { source = "hypeman/hypeman" }
  }
}
provider "hypeman" {
  data_dir       = %q
  hypervisor     = "qemu"
  accelerator    = "tcg"
  kernel         = %q
  kernel_modules = %q
}
variable "others" {
  type = string
}
resource "hypeman_instance" "vm" {
  count        = 30
  name         = "bench-${count.index}"
  image        = %q
  memory       = "256MiB"
  overlay_size = "128MiB"
  entrypoint   = ["/bin/sh", "-c", "while true; do sleep 1; done"]
  state        = count.index == 0 ? "Standby" : var.others
}
`, dataDir, kernel, modules, ref))
	run(vms, "apply", "-auto-approve", "-input=false", "-var", "others=Stopped")
	linkSnapshots(b, dataDir)
	run(vms, "plan", "-input=false", "-detailed-exitcode", "-var", "others=Standby") // warm, and no changes

	plain := filepath.Join(work, "plain")
	writeFile(b, filepath.Join(plain, "main.tf"), `
resource "terraform_data" "x" {
  count = 30
  input = "bench-${count.index}"
}
`)
	run(plain, "init", "-input=false")
	run(plain, "apply", "-auto-approve", "-input=false")

	var hypeman, baseline time.Duration
	for b.Loop() {
		hypeman += run(vms, "plan", "-input=false", "-detailed-exitcode", "-var", "others=Standby")
		baseline += run(plain, "plan", "-input=false", "-detailed-exitcode")
	}
	b.ReportMetric(hypeman.Seconds()/baseline.Seconds(), "hypeman/terraform_data")
	b.ReportMetric(float64(hypeman.Milliseconds())/float64(b.N), "hypeman-plan-ms")
	b.ReportMetric(float64(baseline.Milliseconds())/float64(b.N), "terraform_data-plan-ms")
	run(vms, "destroy", "-auto-approve", "-input=false", "-var", "others=Standby")
}

// linkSnapshots gives every Stopped instance of dataDir a hard link of the one real snapshot.
func linkSnapshots(b *testing.B, dataDir string) {
	b.Helper()
	guests, err := filepath.Glob(filepath.Join(dataDir, "guests", "*"))
	if err != nil || len(guests) != 30 {
		b.Fatalf("want 30 instances, found %d (%v)", len(guests), err)
	}
	var source string
	for _, g := range guests {
		if _, err := os.Stat(filepath.Join(g, "snapshots", "snapshot-latest")); err == nil {
			source = filepath.Join(g, "snapshots", "snapshot-latest")
		}
	}
	if source == "" {
		b.Fatal("no instance is in Standby")
	}
	for _, g := range guests {
		dst := filepath.Join(g, "snapshots", "snapshot-latest")
		if dst == source {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command("cp", "-al", source, dst).CombinedOutput(); err != nil {
			b.Fatalf("link the snapshot: %v %s", err, out)
		}
	}
}

func writeFile(b *testing.B, path, content string) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}

// killAll stops every process whose command line names dir (VMMs left by a failed run).
func killAll(dir string) {
	for _, pid := range vmmPIDs(dir) {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}
