package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Process is a live process of this machine, as /proc shows it.
type Process struct {
	PID  int
	PPID int
	// Args is the command line, argument by argument.
	Args []string
	// Exe is the path of the executable, "" when it cannot be read.
	Exe string
}

// Mentions reports whether the command line contains s.
func (p Process) Mentions(s string) bool { return strings.Contains(strings.Join(p.Args, "\x00"), s) }

// String is the command line, for messages.
func (p Process) String() string { return strings.Join(p.Args, " ") }

// ReadProcess reads the process pid; ok is false when it is gone or a zombie.
func ReadProcess(pid int) (p Process, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return Process{}, false
	}
	// The fields after the parenthesised command name (which may hold spaces): state, ppid, ...
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Process{}, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
		return Process{}, false
	}
	p = Process{PID: pid}
	p.PPID, _ = strconv.Atoi(f[1])
	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		return Process{}, false
	}
	if s := strings.TrimSuffix(string(cmdline), "\x00"); s != "" {
		p.Args = strings.Split(s, "\x00")
	}
	p.Exe, _ = os.Readlink(dir + "/exe")
	return p, true
}

// Processes lists the live (not zombie) processes other than this one.
func Processes() []Process {
	var out []Process
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if p, ok := ReadProcess(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// ProcessesMentioning lists the live processes other than this one whose command line contains
// s: the VMMs of an instance directory, say, which a test checks are gone.
func ProcessesMentioning(s string) []int {
	var pids []int
	for _, p := range Processes() {
		if p.Mentions(s) {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// FakeProcess starts a process whose command line is argv0 followed by args, as a VMM's would
// read, but that only sleeps (a shell started under another name), and waits until /proc shows
// it so. It is killed when the test ends.
func FakeProcess(t testing.TB, argv0 string, args ...string) int {
	t.Helper()
	cmd := &exec.Cmd{Path: "/bin/sh", Args: append([]string{argv0, "-c", "sleep 300; exit 0"}, args...)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p, ok := ReadProcess(cmd.Process.Pid); ok && slices.Equal(p.Args, cmd.Args) {
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q did not start", cmd.Args)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
