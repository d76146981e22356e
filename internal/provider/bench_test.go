package provider

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// standbyBench is the setup the plan benchmarks share: the provider built as a binary and
// installed through dev_overrides, as a user would run it, and n hypeman_instance resources in
// Standby on this machine, applied from the configuration in vms.
//
// Only the first instance is really booted and put in Standby; the others are created Stopped
// and given a hard link of its snapshot, which makes them Standby to the manager (a refresh reads
// no snapshot content), and keeps the benchmark from booting n VMs.
//
// With countCPU, each provider binary is started through a wrapper (pluginCPU) that records the
// CPU time of the provider process alone, so that a run reports it apart from Terraform's own.
type standbyBench struct {
	b        *testing.B
	n        int
	countCPU bool
	tf       string
	env      []string
	work     string
	bin      string
	dataDir  string
	kernel   string
	modules  string
	image    string
	vms      string
}

func newStandbyBench(b *testing.B, n int, countCPU bool, buildFlags ...string) *standbyBench {
	s := &standbyBench{b: b, n: n, countCPU: countCPU, tf: testutil.RequireTool(b, "terraform"), work: b.TempDir()}
	testutil.RequireTool(b, "qemu-system-x86_64")
	s.kernel, s.modules = testutil.Kernel(b)
	s.dataDir = testutil.ShortTempDir(b)
	b.Cleanup(func() { killAll(s.dataDir) })
	s.image = testutil.Registry(b) + "/test/busybox:latest"
	testutil.Push(b, s.image, testutil.BusyboxImage(b))

	s.bin = filepath.Join(s.work, "bin")
	overrides := filepath.Join(s.work, "overrides")
	s.installPlugin(overrides, "hypeman", append([]string{"build"}, append(buildFlags, "../..")...))
	rc := filepath.Join(s.work, "terraformrc")
	writeFile(b, rc, fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"hypeman/hypeman\" = %q\n    \"hypeman/noop\" = %q\n  }\n  direct {}\n}\n", overrides, overrides))
	s.env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1")

	s.vms = filepath.Join(s.work, "vms")
	writeFile(b, filepath.Join(s.vms, "main.tf"), s.config(n, ""))
	s.run(s.vms, "apply", "-auto-approve", "-input=false", "-var", "first=Standby", "-var", "others=Stopped")
	linkSnapshots(b, s.dataDir, n)
	s.plan(s.vms) // warm, and no changes
	return s
}

// installPlugin builds terraform-provider-<name> with `go <build...>` into overrides or, with
// countCPU, puts there the wrapper Terraform starts in its place (see pluginCPU).
func (s *standbyBench) installPlugin(overrides, name string, build []string) {
	s.b.Helper()
	real := filepath.Join(s.bin, "terraform-provider-"+name)
	if !s.countCPU {
		real = filepath.Join(overrides, "terraform-provider-"+name)
	}
	args := append([]string{build[0], "-o", real}, build[1:]...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		s.b.Fatalf("build %s: %v\n%s", name, err, out)
	}
	if !s.countCPU {
		return
	}
	self, err := os.Executable()
	if err != nil {
		s.b.Fatal(err)
	}
	wrapper := filepath.Join(overrides, "terraform-provider-"+name)
	writeFile(s.b, wrapper, fmt.Sprintf("#!/bin/sh\n%s=%q exec %q \"$@\"\n", pluginCPUPluginEnv, real, self))
	if err := os.Chmod(wrapper, 0o755); err != nil {
		s.b.Fatal(err)
	}
}

// header is the terraform block and the provider block of the benchmarks' configurations, with
// extra provider settings.
func (s *standbyBench) header(providerExtra string) string {
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
`, s.dataDir, s.kernel, s.modules, providerExtra)
}

// config is the configuration of the first n instances, with extra provider settings.
func (s *standbyBench) config(n int, providerExtra string) string {
	return s.header(providerExtra) + fmt.Sprintf(`
variable "first" {
  type = string
}
variable "others" {
  type = string
}
resource "hypeman_instance" "vm" {
  count        = %d
  name         = "bench-${count.index}"
  image        = %q
  memory       = "256MiB"
  overlay_size = "128MiB"
  entrypoint   = ["/bin/sh", "-c", "while true; do sleep 1; done"]
  state        = count.index == 0 ? var.first : var.others
}
`, n, s.image)
}

// withProvider makes a configuration directory for the same instances (a copy of their state)
// with extra provider settings, and returns it.
func (s *standbyBench) withProvider(name, providerExtra string) string {
	return s.subset(name, s.n, providerExtra)
}

// subset makes a configuration directory for the first n instances, with a copy of their state
// (and of no other), and returns it.
func (s *standbyBench) subset(name string, n int, providerExtra string) string {
	s.b.Helper()
	dir := filepath.Join(s.work, name)
	writeFile(s.b, filepath.Join(dir, "main.tf"), s.config(n, providerExtra))
	raw, err := os.ReadFile(filepath.Join(s.vms, "terraform.tfstate"))
	if err != nil {
		s.b.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal(raw, &state); err != nil {
		s.b.Fatal(err)
	}
	for _, r := range state["resources"].([]any) {
		res := r.(map[string]any)
		var kept []any
		for _, inst := range res["instances"].([]any) {
			if key, ok := inst.(map[string]any)["index_key"].(float64); ok && int(key) < n {
				kept = append(kept, inst)
			}
		}
		res["instances"] = kept
	}
	out, err := json.Marshal(state)
	if err != nil {
		s.b.Fatal(err)
	}
	writeFile(s.b, filepath.Join(dir, "terraform.tfstate"), string(out))
	return dir
}

// cost is what one terraform command took.
type cost struct {
	wall time.Duration
	// plugin is the CPU time (user + system) of the provider processes the command started.
	plugin time.Duration
	// total is the CPU time of terraform and every process it waited for.
	total time.Duration
}

// run runs terraform in dir with extra environment variables and returns what it cost.
func (s *standbyBench) runEnv(dir string, env []string, args ...string) cost {
	s.b.Helper()
	cpuFile := filepath.Join(s.work, "plugin-cpu")
	_ = os.Remove(cpuFile)
	cmd := exec.Command(s.tf, append([]string{"-chdir=" + dir}, args...)...)
	cmd.Env = append(append(slices.Clone(s.env), pluginCPUFileEnv+"="+cpuFile), env...)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	c := cost{wall: time.Since(t0)}
	if err != nil {
		s.b.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		c.total = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c.plugin = pluginCPUOf(s.b, cpuFile)
	return c
}

// run runs terraform in dir and returns how long it took.
func (s *standbyBench) run(dir string, args ...string) time.Duration {
	s.b.Helper()
	return s.runEnv(dir, nil, args...).wall
}

// plan plans the instances' configuration in dir, which refreshes them all; a change fails it.
func (s *standbyBench) plan(dir string) time.Duration {
	return s.planCost(dir).wall
}

func (s *standbyBench) planCost(dir string, env ...string) cost {
	return s.runEnv(dir, env, "plan", "-input=false", "-detailed-exitcode", "-var", "first=Standby", "-var", "others=Standby")
}

func (s *standbyBench) destroy() {
	s.run(s.vms, "destroy", "-auto-approve", "-input=false", "-var", "first=Standby", "-var", "others=Standby")
}

// BenchmarkPlanRefreshOf30StandbyInstances times `terraform plan` (which refreshes every resource)
// of 30 hypeman_instance resources in Standby against 30 terraform_data resources, in one run.
// Reported: the ratio hypeman/terraform_data (goal ≤ 1.5) and both times.
func BenchmarkPlanRefreshOf30StandbyInstances(b *testing.B) {
	s := newStandbyBench(b, 30, false)
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
	s := newStandbyBench(b, 30, false)
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
func linkSnapshots(b *testing.B, dataDir string, n int) {
	b.Helper()
	guests, err := filepath.Glob(filepath.Join(dataDir, "guests", "*"))
	if err != nil || len(guests) != n {
		b.Fatalf("want %d instances, found %d (%v)", n, len(guests), err)
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
