package chstandin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// startBinary runs the stand-in binary on a socket in a new directory.
func startBinary(t *testing.T, env ...string) (*exec.Cmd, *testServer, *syncLog) {
	t.Helper()
	bin := BuildBinary(t)
	dir := testutil.ShortTempDir(t)
	sock := filepath.Join(dir, "ch.sock")
	cmd := exec.Command(bin, "--api-socket", "path="+sock)
	cmd.Env = append(os.Environ(), env...)
	out := &syncLog{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitForSocket(t, sock)
	return cmd, &testServer{t: t, dir: dir, sock: sock, client: unixClient(sock)}, out
}

func waitForSocket(t *testing.T, sock string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket at %s", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the stand-in binary did not exit")
		return nil
	}
}

func TestBinaryPrintsItsVersion(t *testing.T) {
	bin := BuildBinary(t)
	for _, mode := range Modes {
		cmd := exec.Command(bin, "--version")
		cmd.Env = append(os.Environ(), ModeEnv+"="+string(mode))
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != mode.VersionLine() {
			t.Errorf("%s: %q, %v", mode, out, err)
		}
	}
}

func TestBinaryExitsZeroAfterVMMShutdown(t *testing.T) {
	cmd, ts, _ := startBinary(t)
	g := makeGuestFiles(t, ts.dir)
	ts.enter(stateRunning, g)
	if r := ts.put("vmm.shutdown", ""); r.status != http.StatusOK {
		t.Fatalf("vmm.shutdown: %d %s", r.status, r.body)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Errorf("exit: %v, want status 0", err)
	}
	if _, err := os.Stat(ts.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after exit: %v", err)
	}
}

func TestBinaryExitsZeroOnSIGTERM(t *testing.T) {
	cmd, ts, _ := startBinary(t)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Errorf("exit: %v, want status 0", err)
	}
	if _, err := os.Stat(ts.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after SIGTERM: %v", err)
	}
}

func TestBinaryDiesLeavingItsSocket(t *testing.T) {
	cmd, ts, _ := startBinary(t, FaultsEnv+"=die-after-boot")
	ts.enter(stateRunning, makeGuestFiles(t, ts.dir))
	err := waitExit(t, cmd)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("exit %v, want death by SIGKILL", err)
	}
	if _, err := os.Stat(ts.sock); err != nil {
		t.Errorf("a dead VMM leaves its socket: %v", err)
	}
}

func TestBinaryLogsSpecViolations(t *testing.T) {
	_, ts, out := startBinary(t)
	if r := ts.put("vm.create", `{"cpus":{"boot_vcpus":1,"max_vcpus":1}}`); r.status != http.StatusBadRequest {
		t.Errorf("a config without payload: %d %s", r.status, r.body)
	}
	// The binary logs the violation as it answers; the line may reach the pipe a moment later.
	var v []string
	_ = poll.Within(context.Background(), 5*time.Second, 10*time.Millisecond, func(context.Context) (bool, error) {
		v = LogViolations([]byte(out.String()))
		return len(v) > 0, nil
	})
	if len(v) != 1 || !strings.Contains(v[0], "payload") {
		t.Errorf("violations in the log %q, want one about the payload", v)
	}
}

func TestBinaryV52RefusesAStaleSocket(t *testing.T) {
	bin := BuildBinary(t)
	sock := filepath.Join(testutil.ShortTempDir(t), "ch.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--api-socket", sock)
	cmd.Env = append(os.Environ(), ModeEnv+"=v52")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "address already in use") {
		t.Errorf("exit %v, output %q; want status 1 and EADDRINUSE", err, out)
	}
}

func TestBinaryServesAnInheritedSocket(t *testing.T) {
	bin := BuildBinary(t)
	sock := filepath.Join(testutil.ShortTempDir(t), "ch.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--api-socket", "fd=3")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	// The binary owns the socket now; closing this copy must not unlink it.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = l.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ts := &testServer{t: t, sock: sock, client: unixClient(sock)}
	if r := ts.do(http.MethodGet, "vmm.ping", ""); r.status != http.StatusOK {
		t.Errorf("ping over fd=3: %d %s", r.status, r.body)
	}
}
