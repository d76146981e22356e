package chstandin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// BuildBinary builds the stand-in binary (cmd/cloud-hypervisor) once per test process and returns
// its path. The binary is kept in the temporary directory under a name derived from the test
// binary and the command's source, so that later runs of the same code reuse it.
func BuildBinary(t testing.TB) string {
	t.Helper()
	goTool := testutil.RequireTool(t, "go")
	built.once.Do(func() { built.path, built.err = buildBinary(goTool) })
	if built.err != nil {
		t.Fatalf("build the cloud-hypervisor stand-in: %v", built.err)
	}
	return built.path
}

func buildBinary(goTool string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the stand-in's source")
	}
	src := filepath.Dir(file)
	cmdDir := filepath.Join(src, "cmd", "cloud-hypervisor")
	root, err := moduleRoot(src)
	if err != nil {
		return "", err
	}
	key, err := buildKey(cmdDir)
	if err != nil {
		return "", err
	}
	base := filepath.Join(os.TempDir(), "hypeman-chstandin")
	out := filepath.Join(base, key, "cloud-hypervisor")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	pruneBuilds(base, key)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	rel, err := filepath.Rel(root, cmdDir)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(goTool, "build", "-o", tmp, "./"+filepath.ToSlash(rel))
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./%s: %w\n%s", rel, err, msg)
	}
	// Rename is atomic, so test processes building at the same time never see half a binary.
	return out, os.Rename(tmp, out)
}

// buildKey changes whenever the code that goes into the binary may have: the test binary links
// the same stand-in package, and the command's own source is hashed beside it.
func buildKey(cmdDir string) (string, error) {
	h := sha256.New()
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	files, err := filepath.Glob(filepath.Join(cmdDir, "*.go"))
	if err != nil {
		return "", err
	}
	for _, path := range append([]string{exe}, files...) {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// pruneBuilds removes binaries of other keys that nothing has used for a day.
func pruneBuilds(base, keep string) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && e.Name() != keep && time.Since(info.ModTime()) > 24*time.Hour {
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
}

func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}
