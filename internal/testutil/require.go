// Package testutil holds what the project's tests share: requirements that skip locally and fail
// in CI, the skip of the slow tier under -short, the test kernel, OCI images in a loopback
// registry, an sshd fixture, short temporary directories and a /proc reader.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run in CI, where a missing requirement is a failure, never a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipShort skips the test under -short, the fast tier (`make unit`), saying what it needs that
// makes it slow: a VM, a real sshd, Terraform, a network namespace. It skips in CI too: the
// fast tier is whatever runs in seconds with nothing booted, wherever it runs.
func SkipShort(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("slow tier, skipped under -short: needs %s", needs)
	}
}

// slowTools are the tools whose tests belong to the slow tier, with what they bring.
var slowTools = map[string]string{
	"qemu-system-x86_64": "QEMU to boot a VM",
	"terraform":          "Terraform",
}

// Require skips the test when cond is false (fails it in CI), saying why.
func Require(t testing.TB, cond bool, why string) {
	t.Helper()
	if cond {
		return
	}
	if InCI() {
		t.Fatalf("requirement not met in CI: %s (run scripts/install-deps.sh)", why)
	}
	t.Skipf("skipped: %s (run scripts/install-deps.sh)", why)
}

// RequireTool returns the path of an executable on PATH, skipping (failing in CI) when it is
// missing; under -short it skips for the tools of the slow tier (QEMU, Terraform).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	if needs, ok := slowTools[name]; ok {
		SkipShort(t, needs)
	}
	p, err := exec.LookPath(name)
	Require(t, err == nil, name+" is not installed")
	return p
}

// KernelDir is where scripts/install-deps.sh unpacks the test kernel.
func KernelDir() string {
	if d := os.Getenv("HYPEMAN_KERNEL_DIR"); d != "" {
		return d
	}
	return "/var/cache/hypeman/kernel"
}

// Kernel returns the test kernel's bzImage and its modules directory (lib/modules/RELEASE); it
// skips under -short, as what needs the kernel boots it or takes it apart.
func Kernel(t testing.TB) (vmlinuz, modules string) {
	t.Helper()
	SkipShort(t, "the test kernel")
	dir := KernelDir()
	vmlinuz, err1 := filepath.EvalSymlinks(filepath.Join(dir, "vmlinuz"))
	modules, err2 := filepath.EvalSymlinks(filepath.Join(dir, "modules"))
	Require(t, err1 == nil && err2 == nil, "no test kernel in "+dir)
	return vmlinuz, modules
}
