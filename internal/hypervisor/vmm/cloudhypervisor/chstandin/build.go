package chstandin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
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

// cmdPackage is the import path of the stand-in command, cmd/cloud-hypervisor below this package.
var cmdPackage = reflect.TypeFor[Server]().PkgPath() + "/cmd/cloud-hypervisor"

// BuildBinary builds the stand-in binary (cmd/cloud-hypervisor) once per test process and returns
// its path. The binary is kept in the temporary directory under a name derived from the test
// binary and the command's source, so that later runs of the same code reuse it.
//
// It is built from the source tree with the go tool, found by import path from the working
// directory: go test runs every test in its package's directory, inside this module. Tests that
// run the binary start real processes: they skip under -short.
func BuildBinary(t testing.TB) string {
	t.Helper()
	testutil.SkipShort(t, "the stand-in binary, built with go build and run as processes")
	goTool := testutil.RequireTool(t, "go")
	built.once.Do(func() { built.path, built.err = buildBinary(goTool) })
	if built.err != nil {
		t.Fatalf("build the cloud-hypervisor stand-in: %v", built.err)
	}
	return built.path
}

func buildBinary(goTool string) (string, error) {
	out, err := exec.Command(goTool, "list", "-f", "{{.Dir}}", cmdPackage).Output()
	if err != nil {
		return "", fmt.Errorf("go list %s (run the tests inside the module): %w%s", cmdPackage, err, stderr(err))
	}
	cmdDir := strings.TrimSpace(string(out))
	key, err := buildKey(cmdDir)
	if err != nil {
		return "", err
	}
	base := filepath.Join(os.TempDir(), "hypeman-chstandin")
	bin := filepath.Join(base, key, "cloud-hypervisor")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	pruneBuilds(base, key)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	if msg, err := exec.Command(goTool, "build", "-o", tmp, cmdPackage).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", cmdPackage, err, msg)
	}
	// Rename is atomic, so test processes building at the same time never see half a binary.
	return bin, os.Rename(tmp, bin)
}

func stderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
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
		_ = f.Close()
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
