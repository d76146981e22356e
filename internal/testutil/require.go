// Package testutil holds what the project's tests share: requirements that skip locally and fail
// in CI, and the test kernel.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run in CI, where a missing requirement is a failure, never a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

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

// RequireTool returns the path of an executable on PATH, skipping (failing in CI) when it is missing.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
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

// Kernel returns the test kernel's bzImage and its modules directory (lib/modules/RELEASE).
func Kernel(t testing.TB) (vmlinuz, modules string) {
	t.Helper()
	dir := KernelDir()
	vmlinuz, err1 := filepath.EvalSymlinks(filepath.Join(dir, "vmlinuz"))
	modules, err2 := filepath.EvalSymlinks(filepath.Join(dir, "modules"))
	Require(t, err1 == nil && err2 == nil, "no test kernel in "+dir)
	return vmlinuz, modules
}
