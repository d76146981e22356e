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

// standbyBench is the setup the plan benchmarks share: the provider built as a binary and
// installed through dev_overrides, as a user would run it, and 30 hypeman_instance resources in
// Standby on this machine, applied from the configuration in vms.
//
// Only the first instance is really booted and put in Standby; the other 29 are created Stopped
// and given a hard link of its snapshot, which makes them Standby to the manager (a refresh reads
// no snapshot content), and keeps the benchmark from booting 30 VMs.
type standbyBench struct {
	b       *testing.B
	tf      string
	env     []string
	work    string
	dataDir string
	kernel  string
	modules string
	image   string
	vms     string
}

func newStandbyBench(b *testing.B) *standbyBench {
	s := &standbyBench{b: b, tf: testutil.RequireTool(b, "terraform"), work: b.TempDir()}
	testutil.RequireTool(b, "qemu-system-x86_64")
	s.kernel, s.modules = testutil.Kernel(b)
	s.dataDir = testutil.ShortTempDir(b)
	b.Cleanup(func() { killAll(s.dataDir) })
	s.image = testutil.Registry(b) + "/test/busybox:latest"
	testutil.Push(b, s.image, testutil.BusyboxImage(b))

	bin := filepath.Join(s.work, "bin")
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "terraform-provider-hypeman"), "../..").CombinedOutput(); err != nil {
		b.Fatalf("build the provider: %v\n%s", err, out)
	}
	rc := filepath.Join(s.work, "terraformrc")
	writeFile(b, rc, fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"hypeman/hypeman\" = %q\n  }\n  direct {}\n}\n", bin))
	s.env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1")

	s.vms = filepath.Join(s.work, "vms")
	writeFile(b, filepath.Join(s.vms, "main.tf"), s.config(""))
	s.run(s.vms, "apply", "-auto-approve", "-input=false", "-var", "others=Stopped")
	linkSnapshots(b, s.dataDir)
	s.plan(s.vms) // warm, and no changes
	return s
}

// config is the configuration of the 30 instances, with extra provider settings.
func (s *standbyBench) config(providerExtra string) string {
	return fmt.Sprintf(`
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
%s}
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
`, s.dataDir, s.kernel, s.modules, providerExtra, s.image)
}

// withProvider makes a configuration directory for the same instances (a copy of their state)
// with extra provider settings, and returns it.
func (s *standbyBench) withProvider(name, providerExtra string) string {
	dir := filepath.Join(s.work, name)
	writeFile(s.b, filepath.Join(dir, "main.tf"), s.config(providerExtra))
	state, err := os.ReadFile(filepath.Join(s.vms, "terraform.tfstate"))
	if err != nil {
		s.b.Fatal(err)
	}
	writeFile(s.b, filepath.Join(dir, "terraform.tfstate"), string(state))
	return dir
}

// run runs terraform in dir and returns how long it took.
func (s *standbyBench) run(dir string, args ...string) time.Duration {
	s.b.Helper()
	cmd := exec.Command(s.tf, append([]string{"-chdir=" + dir}, args...)...)
	cmd.Env = s.env
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		s.b.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return time.Since(t0)
}

// plan plans the instances' configuration in dir, which refreshes all 30; a change fails it.
func (s *standbyBench) plan(dir string) time.Duration {
	return s.run(dir, "plan", "-input=false", "-detailed-exitcode", "-var", "others=Standby")
}

func (s *standbyBench) destroy() {
	s.run(s.vms, "destroy", "-auto-approve", "-input=false", "-var", "others=Standby")
}

// BenchmarkPlanRefreshOf30StandbyInstances times `terraform plan` (which refreshes every resource)
// of 30 hypeman_instance resources in Standby against 30 terraform_data resources, in one run.
// Reported: the ratio hypeman/terraform_data (goal ≤ 1.5) and both times.
func BenchmarkPlanRefreshOf30StandbyInstances(b *testing.B) {
	s := newStandbyBench(b)
	plain := filepath.Join(s.work, "plain")
	writeFile(b, filepath.Join(plain, "main.tf"), `
resource "terraform_data" "x" {
  count = 30
  input = "bench-${count.index}"
}
`)
	s.run(plain, "init", "-input=false")
	s.run(plain, "apply", "-auto-approve", "-input=false")

	var hypeman, baseline time.Duration
	for b.Loop() {
		hypeman += s.plan(s.vms)
		baseline += s.run(plain, "plan", "-input=false", "-detailed-exitcode")
	}
	b.ReportMetric(hypeman.Seconds()/baseline.Seconds(), "hypeman/terraform_data")
	b.ReportMetric(float64(hypeman.Milliseconds())/float64(b.N), "hypeman-plan-ms")
	b.ReportMetric(float64(baseline.Milliseconds())/float64(b.N), "terraform_data-plan-ms")
	s.destroy()
}

// BenchmarkPlanRefreshOverSSH times `terraform plan` of the same 30 Standby instances once with
// the provider on this machine and once reaching it as an SSH host (an sshd on 127.0.0.1), in
// one run. Reported: the ratio ssh/local (goal ≤ 2), both times, and the SSH logins per plan
// (goal 1), counted in sshd's log.
func BenchmarkPlanRefreshOverSSH(b *testing.B) {
	d := testutil.StartSSHD(b)
	s := newStandbyBench(b)
	overSSH := s.withProvider("ssh", sshSettings(d, d.ClientKeyFile, d.KnownHostsFile))
	s.plan(overSSH) // warm, and no changes over SSH either

	var local, remote time.Duration
	var handshakes int
	for b.Loop() {
		local += s.plan(s.vms)
		before := logins(d)
		remote += s.plan(overSSH)
		handshakes += logins(d) - before
	}
	b.ReportMetric(remote.Seconds()/local.Seconds(), "ssh/local")
	b.ReportMetric(float64(local.Milliseconds())/float64(b.N), "local-plan-ms")
	b.ReportMetric(float64(remote.Milliseconds())/float64(b.N), "ssh-plan-ms")
	b.ReportMetric(float64(handshakes)/float64(b.N), "ssh-handshakes/plan")
	s.destroy()
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
