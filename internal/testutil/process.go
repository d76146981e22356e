package testutil

import (
	"bytes"
	"os"
	"strconv"
	"strings"
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
