package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestProcessesSeeAChildUntilItIsAZombie(t *testing.T) {
	// tail follows the file until it is killed, and starts no process of its own.
	marker := filepath.Join(t.TempDir(), "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tail", "-f", marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid

	// Until the child has exec'd, /proc shows it with the command line of this process or none.
	deadline := time.Now().Add(10 * time.Second)
	p, ok := ReadProcess(pid)
	for ok && !slices.Equal(p.Args, cmd.Args) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		p, ok = ReadProcess(pid)
	}
	if !ok || p.PPID != os.Getpid() || !slices.Equal(p.Args, cmd.Args) || p.Exe == "" {
		t.Fatalf("ReadProcess(%d) = %+v, %v; want this test's child %v", pid, p, ok, cmd.Args)
	}
	if got := ProcessesMentioning(marker); !slices.Equal(got, []int{pid}) {
		t.Fatalf("ProcessesMentioning = %v, want [%d]", got, pid)
	}
	if got := ProcessesMentioning(marker + "-other"); len(got) != 0 {
		t.Fatalf("ProcessesMentioning of another marker = %v", got)
	}

	// Killed but not yet waited for, the child is a zombie: no longer a live process.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, ok := ReadProcess(pid); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed child %d still reads as live", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := ProcessesMentioning(marker); len(got) != 0 {
		t.Errorf("ProcessesMentioning lists the zombie: %v", got)
	}
	if slices.ContainsFunc(Processes(), func(p Process) bool { return p.PID == os.Getpid() }) {
		t.Error("Processes lists this process")
	}
}
