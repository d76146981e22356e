package testutil

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Hang stops process pid, as a VMM stuck in the kernel or in a deadlock is: alive, and silent. It
// returns once every thread of it has stopped (kill(2) only starts the stop, and a thread that has
// not reached it yet can still answer); the process is continued when the test ends.
func Hang(tb testing.TB, pid int) {
	tb.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	var running []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if running = runningThreads(tb, pid); len(running) == 0 {
			return
		}
	}
	tb.Fatalf("process %d did not stop within 10s of SIGSTOP: threads %v", pid, running)
}

// runningThreads lists the threads of pid that are not stopped, as "tid:state".
func runningThreads(tb testing.TB, pid int) []string {
	tb.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		tb.Fatalf("the threads of process %d: %v", pid, err)
	}
	var out []string
	for _, task := range tasks {
		stat, err := os.ReadFile(task)
		if err != nil {
			continue // the thread has exited
		}
		// The state follows the parenthesised command name, which may contain spaces.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] != 'T' && stat[i+2] != 't' {
			out = append(out, filepath.Base(filepath.Dir(task))+":"+string(stat[i+2]))
		}
	}
	return out
}
