// Package host is the seam between the instance manager and the machine its VMs run on: running
// commands, files, unix sockets and detached processes. Local is this machine; an SSH-reached host
// implements the same interface, so nothing above this package asks which one it has.
package host

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"syscall"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
)

// Host is one machine that runs VMs. Every path is a path on that machine.
type Host interface {
	// Run runs argv (never through a shell) with stdin, and returns its standard output. A non-zero
	// exit is an error that carries the command's standard error.
	Run(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error)
	// StartDetached starts argv in its own session, with standard input from /dev/null and standard
	// output and error appended to logPath, so that it outlives the caller. It returns the pid.
	StartDetached(ctx context.Context, argv []string, logPath string) (int, error)
	// ProcessAlive reports whether pid is a live (not zombie) process whose command line contains
	// marker, which guards against a recycled pid.
	ProcessAlive(ctx context.Context, pid int, marker string) (bool, error)
	// Processes lists the live processes whose command line contains mentioning, in one look at
	// the host's process table; the look's own helpers are left out. mentioning must not be
	// empty or hold a newline or NUL.
	Processes(ctx context.Context, mentioning string) ([]Process, error)
	// Signal sends sig to pid; a process that is already gone is not an error.
	Signal(ctx context.Context, pid int, sig syscall.Signal) error
	// DialUnix connects to a unix stream socket.
	DialUnix(ctx context.Context, path string) (net.Conn, error)
	// DialTCP connects to a TCP address from the host (over SSH, from the remote machine, so a
	// guest on the host's bridge is reached where it lives).
	DialTCP(ctx context.Context, addr string) (net.Conn, error)

	ReadFile(ctx context.Context, path string) ([]byte, error)
	// WriteFile writes data atomically: a temporary file in the same directory, then a rename.
	WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error
	// Create creates or truncates path for streaming writes.
	Create(ctx context.Context, path string) (io.WriteCloser, error)
	// Open opens path for streaming reads.
	Open(ctx context.Context, path string) (io.ReadCloser, error)
	Stat(ctx context.Context, path string) (fs.FileInfo, error)
	ReadDir(ctx context.Context, path string) ([]fs.FileInfo, error)
	MkdirAll(ctx context.Context, path string, perm fs.FileMode) error
	Remove(ctx context.Context, path string) error
	RemoveAll(ctx context.Context, path string) error
	Rename(ctx context.Context, from, to string) error
	// Symlink creates link pointing at target; it fails with fs.ErrExist when link exists, which
	// makes it an atomic reservation.
	Symlink(ctx context.Context, target, link string) error
	Readlink(ctx context.Context, path string) (string, error)
	// Truncate sets the size of path, creating it sparse if it does not exist.
	Truncate(ctx context.Context, path string, size int64) error
	// Lock takes an exclusive lock named by path (created if missing), waiting until ctx is done.
	Lock(ctx context.Context, path string) (unlock func(), err error)
	// LookPath finds an executable on the host's PATH.
	LookPath(ctx context.Context, name string) (string, error)
	// FreeSpace is how many bytes can still be written to the filesystem that holds path (what
	// df calls available); a missing path is an error wrapping fs.ErrNotExist.
	FreeSpace(ctx context.Context, path string) (int64, error)
}

// Process is a live process of a host, as its /proc shows it.
type Process struct {
	PID int
	// Args is the command line, argument by argument.
	Args []string
}

// checkMentioning refuses what no command line can be searched for.
func checkMentioning(s string) error {
	if s == "" || strings.ContainsAny(s, "\n\x00") {
		return fmt.Errorf("processes: %q is not a string a command line can be searched for (empty, or a newline or NUL in it)", s)
	}
	return nil
}

// splitCmdline splits the bytes of /proc/PID/cmdline into the arguments: each one ends in a NUL.
func splitCmdline(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\x00")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// LZ4er is implemented by hosts where a file is better compressed where it lies than streamed
// through the provider and back (an SSH-reached host with the lz4 tool). handled is false when
// the host cannot do it, and the caller streams instead.
type LZ4er interface {
	LZ4(ctx context.Context, src, dst string, decompress bool) (handled bool, err error)
}

// Exited is the condition that process pid, which ProcessAlive knows by marker, has exited. Every
// wait for a process to end is poll.Until or poll.Within on it.
func Exited(h Host, pid int, marker string) poll.Cond {
	return func(ctx context.Context) (bool, error) {
		alive, err := h.ProcessAlive(ctx, pid, marker)
		return err == nil && !alive, err
	}
}
