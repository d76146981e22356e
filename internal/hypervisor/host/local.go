package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/logtail"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
)

var _ Host = Local{}

// Local is the machine the provider runs on.
type Local struct{}

func (Local) Run(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("run: empty command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", argv[0], err, lastLines(msg, 20))
	}
	return stdout.Bytes(), nil
}

func (Local) StartDetached(_ context.Context, argv []string, logPath string) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("start: empty command")
	}
	// Private, and never through a link: the directory may be the VMM user's, who could have left one.
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() { _ = logFile.Close() }()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer func() { _ = devNull.Close() }()
	closeInheritedOnExec()
	// Not CommandContext: the process must outlive the request that started it.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = devNull
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", argv[0], err)
	}
	// Reap it when it exits so that a dead VMM never lingers as a zombie of this process.
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

// closeInheritedOnExec marks the descriptors this process inherited (above standard error)
// close-on-exec, as Go marks its own: a detached VMM would otherwise hold them for the VM's
// life, a lock that whoever started terraform holds (flock(1) around it, say) included.
func closeInheritedOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

func (Local) ProcessAlive(_ context.Context, pid int, marker string) (bool, error) {
	if pid <= 0 {
		return false, nil
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The state field follows the parenthesised command name, which may itself contain spaces.
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
		return false, nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false, nil
	}
	return bytes.Contains(cmdline, []byte(marker)), nil
}

func (Local) Processes(_ context.Context, mentioning string) ([]Process, error) {
	if err := checkMentioning(mentioning); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("processes: %w", err)
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		// A zombie's command line is empty, and a process gone meanwhile has none.
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, []byte(mentioning)) {
			continue
		}
		out = append(out, Process{PID: pid, Args: splitCmdline(cmdline)})
	}
	return out, nil
}

func (Local) Signal(_ context.Context, pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d to pid %d: %w", sig, pid, err)
	}
	return nil
}

func (Local) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

func (Local) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func (Local) ReadFile(_ context.Context, path string) ([]byte, error) { return os.ReadFile(path) }

func (Local) WriteFile(_ context.Context, path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Create makes a new file private (0600): what is streamed into files is snapshot memory.
func (Local) Create(_ context.Context, path string) (io.WriteCloser, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
}

func (Local) Open(_ context.Context, path string) (io.ReadCloser, error) { return os.Open(path) }

func (Local) Stat(_ context.Context, path string) (fs.FileInfo, error) { return os.Stat(path) }

func (Local) ReadDir(_ context.Context, path string) ([]fs.FileInfo, error) {
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	infos := make([]fs.FileInfo, 0, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while listing
		}
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

func (Local) MkdirAll(_ context.Context, path string, perm fs.FileMode) error {
	return os.MkdirAll(path, perm)
}

func (Local) Remove(_ context.Context, path string) error { return os.Remove(path) }

func (Local) RemoveAll(_ context.Context, path string) error { return os.RemoveAll(path) }

func (Local) Rename(_ context.Context, from, to string) error { return os.Rename(from, to) }

func (Local) Symlink(_ context.Context, target, link string) error { return os.Symlink(target, link) }

func (Local) Readlink(_ context.Context, path string) (string, error) { return os.Readlink(path) }

func (Local) Truncate(_ context.Context, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (Local) Lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	err = poll.Until(ctx, 20*time.Millisecond, func(context.Context) (bool, error) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil
		}
		return true, err
	})
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); _ = f.Close() }, nil
}

func (Local) LookPath(_ context.Context, name string) (string, error) { return exec.LookPath(name) }

func (Local) FreeSpace(_ context.Context, path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	return available(st.Bavail, uint64(st.Frsize), uint64(st.Bsize)), nil
}

// available is free blocks in bytes: blocks are fragments of frsize bytes, or of bsize where a
// filesystem reports no fragment size.
func available(blocks, frsize, bsize uint64) int64 {
	if frsize == 0 {
		frsize = bsize
	}
	return int64(min(blocks*frsize, 1<<63-1))
}

// lastLines keeps the end of a long tool message, where the reason usually is.
func lastLines(s string, n int) string {
	lines, dropped := logtail.Lines(s, n)
	if dropped == 0 {
		return s
	}
	return "…" + strconv.Itoa(dropped) + " lines…\n" + strings.Join(lines, "\n")
}
