package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// hostsUnderTest are the implementations every behaviour test runs against: this machine
// directly, and this machine through a real OpenSSH server. Both see the same files, so each
// test checks its results with the os package. Under -short only the local host runs: the SSH
// host needs a real sshd.
func hostsUnderTest(t *testing.T) map[string]Host {
	t.Helper()
	if testing.Short() {
		return map[string]Host{"local": Local{}}
	}
	d := testutil.StartSSHD(t)
	s := dialFixture(t, d, SSHConfig{})
	return map[string]Host{"local": Local{}, "ssh": s}
}

// dialFixture connects to the fixture with its client key and known_hosts, unless cfg says
// otherwise, and closes the connection when the test ends.
func dialFixture(t *testing.T, d *testutil.SSHD, cfg SSHConfig) *SSH {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = d.URL()
	}
	if cfg.PrivateKey == "" && cfg.PrivateKeyFile == "" {
		cfg.PrivateKeyFile = d.ClientKeyFile
	}
	if cfg.KnownHostsFile == "" && cfg.HostKey == "" && !cfg.InsecureIgnoreHostKey {
		cfg.KnownHostsFile = d.KnownHostsFile
	}
	if cfg.SSHConfigFile == "" {
		cfg.SSHConfigFile = "none"
	}
	if cfg.AgentSocket == "" {
		cfg.DisableAgent = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := DialSSH(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func forEachHost(t *testing.T, fn func(t *testing.T, h Host, dir string)) {
	for name, h := range hostsUnderTest(t) {
		t.Run(name, func(t *testing.T) { fn(t, h, t.TempDir()) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestFilesBehaveTheSameOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, dir string) {
		ctx := ctxT(t)
		p := filepath.Join(dir, "a.json")

		if _, err := h.ReadFile(ctx, p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ReadFile of a missing file: %v, want ErrNotExist", err)
		}
		if err := h.WriteFile(ctx, p, []byte("first"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := h.WriteFile(ctx, p, []byte("second"), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := h.ReadFile(ctx, p); err != nil || string(b) != "second" {
			t.Fatalf("ReadFile after two writes: %q, %v", b, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode after WriteFile(0600): %v, %v", fi.Mode(), err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("WriteFile left temporary files: %v", entries)
		}

		big := make([]byte, 300*1024+17) // several SFTP packets, not a multiple of any
		_, _ = rand.Read(big)
		bigPath := filepath.Join(dir, "big")
		if err := h.WriteFile(ctx, bigPath, big, 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := h.ReadFile(ctx, bigPath); err != nil || !bytes.Equal(b, big) {
			t.Fatalf("ReadFile of a 300 KiB file: %d bytes, %v", len(b), err)
		}

		fi, err := h.Stat(ctx, bigPath)
		if err != nil || fi.Size() != int64(len(big)) || fi.IsDir() || fi.Name() != "big" {
			t.Fatalf("Stat: %v %v", fi, err)
		}
		if _, err := h.Stat(ctx, filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat of a missing file: %v", err)
		}
		if fi, err := h.Stat(ctx, dir); err != nil || !fi.IsDir() {
			t.Fatalf("Stat of a directory: %v %v", fi, err)
		}

		nested := filepath.Join(dir, "x", "y", "z")
		if err := h.MkdirAll(ctx, nested, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := h.MkdirAll(ctx, nested, 0o750); err != nil {
			t.Fatalf("MkdirAll of an existing directory: %v", err)
		}
		if fi, err := os.Stat(nested); err != nil || !fi.IsDir() {
			t.Fatalf("MkdirAll made %v, %v", fi, err)
		}
		if err := h.MkdirAll(ctx, filepath.Join(bigPath, "sub"), 0o750); err == nil {
			t.Fatal("MkdirAll below a file succeeded")
		}

		infos, err := h.ReadDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, fi := range infos {
			names = append(names, fi.Name())
			if fi.Name() == "big" && fi.Size() != int64(len(big)) {
				t.Errorf("ReadDir size of big: %d", fi.Size())
			}
			if fi.Name() == "x" && !fi.IsDir() {
				t.Errorf("ReadDir: x is not a directory")
			}
		}
		if strings.Join(names, ",") != "a.json,big,x" {
			t.Fatalf("ReadDir names %v, want sorted a.json,big,x", names)
		}
		if _, err := h.ReadDir(ctx, filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ReadDir of a missing directory: %v", err)
		}

		moved := filepath.Join(dir, "moved")
		if err := h.Rename(ctx, p, moved); err != nil {
			t.Fatal(err)
		}
		if err := h.WriteFile(ctx, p, []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := h.Rename(ctx, p, moved); err != nil {
			t.Fatalf("Rename over an existing file: %v", err)
		}
		if b, _ := os.ReadFile(moved); string(b) != "new" {
			t.Fatalf("after Rename over a file it holds %q", b)
		}
		if err := h.Rename(ctx, filepath.Join(dir, "x"), filepath.Join(dir, "x2")); err != nil {
			t.Fatalf("Rename of a directory: %v", err)
		}

		if err := h.Remove(ctx, moved); err != nil {
			t.Fatal(err)
		}
		if err := h.Remove(ctx, moved); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Remove of a missing file: %v", err)
		}
		if err := h.Remove(ctx, filepath.Join(dir, "x2")); err == nil {
			t.Fatal("Remove of a non-empty directory succeeded")
		}
		if err := h.RemoveAll(ctx, filepath.Join(dir, "x2")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "x2")); !os.IsNotExist(err) {
			t.Fatalf("RemoveAll left %v", err)
		}
		if err := h.RemoveAll(ctx, filepath.Join(dir, "x2")); err != nil {
			t.Fatalf("RemoveAll of a missing path: %v", err)
		}
	})
}

func TestStreamsSymlinksAndSparseFilesBehaveTheSameOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, dir string) {
		ctx := ctxT(t)
		data := make([]byte, 5<<20+3)
		_, _ = rand.Read(data)
		p := filepath.Join(dir, "stream")
		w, err := h.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := h.Open(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if cerr := r.Close(); cerr != nil {
			t.Fatalf("closing what Open returned: %v", cerr)
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Open read %d of %d bytes back, %v", len(got), len(data), err)
		}
		if _, err := h.Open(ctx, filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open of a missing file: %v", err)
		}
		if _, err := h.Create(ctx, filepath.Join(dir, "nope", "f")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Create in a missing directory: %v", err)
		}

		link := filepath.Join(dir, "names-web")
		if err := h.Symlink(ctx, "01ID", link); err != nil {
			t.Fatal(err)
		}
		if err := h.Symlink(ctx, "02OTHER", link); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("Symlink over an existing link: %v, want ErrExist", err)
		}
		if target, err := h.Readlink(ctx, link); err != nil || target != "01ID" {
			t.Fatalf("Readlink: %q, %v", target, err)
		}
		if _, err := h.Readlink(ctx, filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Readlink of a missing link: %v", err)
		}

		sparse := filepath.Join(dir, "overlay.raw")
		if err := h.Truncate(ctx, sparse, 1<<30); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(sparse, &st); err != nil || st.Size != 1<<30 || st.Blocks*512 > 1<<20 {
			t.Fatalf("Truncate made size %d with %d bytes allocated (%v), want a sparse 1 GiB", st.Size, st.Blocks*512, err)
		}
		if err := h.Truncate(ctx, sparse, 4096); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(sparse); fi.Size() != 4096 {
			t.Fatalf("Truncate of an existing file: size %d", fi.Size())
		}
	})
}

func TestCommandsBehaveTheSameOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, dir string) {
		ctx := ctxT(t)
		args := []string{"it's", `"double"`, "$(touch " + dir + "/pwned)", "`touch " + dir + "/pwned`", "  two  spaces ",
			"new\nline", "", "*", "${HOME}", `back\slash`, "semi;colon", "a|b", "tab\there", "-n"}
		out, err := h.Run(ctx, nil, append([]string{"printf", `%s\0`}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(args, "\x00") + "\x00"; string(out) != want {
			t.Fatalf("argv reached the program as\n%q\nwant\n%q", out, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "pwned")); !os.IsNotExist(err) {
			t.Fatal("an argument was run as a command")
		}

		out, err = h.Run(ctx, strings.NewReader("from stdin\n"), "cat")
		if err != nil || string(out) != "from stdin\n" {
			t.Fatalf("Run with stdin: %q, %v", out, err)
		}
		_, err = h.Run(ctx, nil, "sh", "-c", "echo the reason >&2; exit 3")
		if err == nil || !strings.Contains(err.Error(), "the reason") {
			t.Fatalf("a failing command: %v, want its stderr in the error", err)
		}
		if _, err := h.Run(ctx, nil, "/nonexistent/tool"); err == nil {
			t.Fatal("Run of a missing program succeeded")
		}
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		_, err = h.Run(cctx, nil, "sleep", "30")
		cancel()
		if err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("Run did not stop at the deadline: %v after %v", err, time.Since(start))
		}

		if p, err := h.LookPath(ctx, "sh"); err != nil || !filepath.IsAbs(p) {
			t.Fatalf("LookPath sh: %q, %v", p, err)
		}
		if _, err := h.LookPath(ctx, "no-such-tool-anywhere"); !errors.Is(err, exec.ErrNotFound) {
			t.Fatalf("LookPath of a missing tool: %v, want exec.ErrNotFound", err)
		}
	})
}

func TestFreeSpaceIsTheSameOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, dir string) {
		ctx := ctxT(t)
		testutil.MountTmpfs(t, dir, 8*mib)
		if free, err := h.FreeSpace(ctx, dir); err != nil || free != 8*mib {
			t.Fatalf("FreeSpace of an empty 8 MiB tmpfs: %d, %v", free, err)
		}
		file := filepath.Join(dir, "three-mib")
		if err := os.WriteFile(file, make([]byte, 3*mib), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dir, file} {
			if free, err := h.FreeSpace(ctx, p); err != nil || free != 5*mib {
				t.Fatalf("FreeSpace of %s after writing 3 MiB: %d, %v; want %d", p, free, err, 5*mib)
			}
		}
		if _, err := h.FreeSpace(ctx, filepath.Join(dir, "missing", "x")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("FreeSpace of a missing path: %v, want ErrNotExist", err)
		}
	})
}

const mib = 1 << 20

func TestDetachedProcessesBehaveTheSameOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, dir string) {
		ctx := ctxT(t)
		logPath := filepath.Join(dir, "vmm.log")
		// The directory is an argument the program ignores, as a VMM's command line names its own.
		argv := []string{"/bin/sh", "-c", "sleep 300; exit 0", dir}
		pid, err := h.StartDetached(ctx, argv, logPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		waitFor(t, func() bool {
			p, ok := testutil.ReadProcess(pid)
			return ok && slices.Equal(p.Args, argv)
		}, "the returned pid to be the program itself, not a wrapper")
		if sid, _ := unix.Getsid(pid); sid != pid {
			t.Errorf("the program is not in its own session: sid %d", sid)
		}
		if _, err := os.Stat(logPath); err != nil {
			t.Errorf("the log file was not created: %v", err)
		}
		if alive, err := h.ProcessAlive(ctx, pid, dir); err != nil || !alive {
			t.Fatalf("ProcessAlive with its marker: %v, %v", alive, err)
		}
		if alive, err := h.ProcessAlive(ctx, pid, "some other marker"); err != nil || alive {
			t.Fatalf("ProcessAlive with a foreign marker: %v, %v", alive, err)
		}
		if err := h.Signal(ctx, pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			alive, err := h.ProcessAlive(ctx, pid, dir)
			return err == nil && !alive
		}, "the process to end after SIGTERM")
		if err := h.Signal(ctx, pid, syscall.SIGKILL); err != nil {
			t.Fatalf("Signal to a process that is gone: %v", err)
		}
		if alive, err := h.ProcessAlive(ctx, 0, dir); err != nil || alive {
			t.Fatalf("ProcessAlive(0): %v, %v", alive, err)
		}

		if _, err := h.StartDetached(ctx, []string{"/nonexistent/vmm"}, logPath); err == nil {
			t.Fatal("StartDetached of a missing program succeeded")
		}
	})
}

func TestUnixSocketsAndLocksBehaveTheSameOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, dir string) {
		ctx := ctxT(t)
		sock := filepath.Join(dir, "api.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close() }()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer func() { _ = c.Close() }(); _, _ = io.Copy(c, c) }()
			}
		}()
		conn, err := h.DialUnix(ctx, sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping\n" {
			t.Fatalf("echo over the socket: %q, %v", buf, err)
		}
		_ = conn.Close()
		if _, err := h.DialUnix(ctx, filepath.Join(dir, "missing.sock")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("DialUnix of a missing socket: %v, want ErrNotExist", err)
		}

		lockPath := filepath.Join(dir, ".lock")
		unlock, err := h.Lock(ctx, lockPath)
		if err != nil {
			t.Fatal(err)
		}
		// Another holder, in this process or another one, waits.
		for name, other := range map[string]Host{"same host": h, "local": Local{}} {
			wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err := other.Lock(wctx, lockPath)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a second Lock (%s) while held: %v, want a deadline error", name, err)
			}
		}
		unlock()
		unlock() // a second unlock is harmless
		again, err := Local{}.Lock(ctx, lockPath)
		if err != nil {
			t.Fatalf("Lock after unlock: %v", err)
		}
		again()
		if _, err := h.Lock(ctx, filepath.Join(dir, "gone", ".lock")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Lock in a missing directory: %v, want ErrNotExist", err)
		}
	})
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProcessScanBehavesTheSameOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, dir string) {
		ctx := ctxT(t)
		// A VMM's command line names paths under its instance directory, some inside options.
		marker := dir + "/guests/"
		argv := []string{"/bin/sh", "-c", "sleep 300; exit 0", "vmm", "-pidfile", marker + "A/vmm.pid",
			"two  words", "", "path=" + marker + "A/ctl.sock,server=on"}
		start := func(argv []string) int {
			pid, err := h.StartDetached(ctx, argv, filepath.Join(dir, "out.log"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
			waitFor(t, func() bool {
				p, ok := testutil.ReadProcess(pid)
				return ok && slices.Equal(p.Args, argv)
			}, "the process to run")
			return pid
		}
		pid := start(argv)
		start([]string{"/bin/sh", "-c", "sleep 300; exit 0", "vmm", dir + "/guests-other/A/ctl.sock"}) // a near miss
		// A zombie whose command line named the marker: it is no live process.
		zombie := exec.Command("/bin/sh", "-c", "exit 0", "vmm", marker+"Z/ctl.sock")
		if err := zombie.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { _, ok := testutil.ReadProcess(zombie.Process.Pid); return !ok }, "the zombie")

		procs, err := h.Processes(ctx, marker)
		_ = zombie.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if len(procs) != 1 || procs[0].PID != pid || !slices.Equal(procs[0].Args, argv) {
			t.Fatalf("Processes(%q) = %+v, want only pid %d with its exact argv %q", marker, procs, pid, argv)
		}

		if procs, err := h.Processes(ctx, dir+"/nothing-runs-here/"); err != nil || len(procs) != 0 {
			t.Fatalf("Processes of a string no command line holds: %v, %v", procs, err)
		}
		for _, bad := range []string{"", "two\nlines", "nul\x00"} {
			if _, err := h.Processes(ctx, bad); err == nil {
				t.Errorf("Processes(%q) succeeded", bad)
			}
		}
		if err := h.Signal(ctx, pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { alive, _ := h.ProcessAlive(ctx, pid, marker); return !alive }, "the process to end")
		if procs, err := h.Processes(ctx, marker); err != nil || len(procs) != 0 {
			t.Fatalf("Processes after the process ended: %v, %v", procs, err)
		}
	})
}

// A descriptor this process inherited without close-on-exec (a lock that flock(1) holds around
// the run, say) must not live on in a detached VMM for the VM's whole life.
func TestDetachedProcessesInheritNoDescriptorOfTheCaller(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "held.lock")
	fd, err := syscall.Open(lock, syscall.O_CREAT|syscall.O_RDWR, 0o600) // no O_CLOEXEC, as an inherited one
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Close(fd) }()
	pid, err := Local{}.StartDetached(ctxT(t), []string{"/bin/sh", "-c", "sleep 300; exit 0", dir}, filepath.Join(dir, "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	waitFor(t, func() bool { p, ok := testutil.ReadProcess(pid); return ok && slices.Contains(p.Args, dir) }, "the process to run")
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fds {
		if target, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", e.Name())); target == lock {
			t.Fatalf("the detached process holds the caller's descriptor of %s as fd %s", lock, e.Name())
		}
	}
}

// The wait for a guest's port dials from the host: over SSH the remote machine makes the
// connection. The listener is on the loopback, which both hosts in the suite share.
func TestTCPDialsBehaveTheSameOnEveryHost(t *testing.T) {
	forEachHost(t, func(t *testing.T, h Host, _ string) {
		ctx := ctxT(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("banner\n"))
				_ = c.Close()
			}
		}()
		addr := l.Addr().String()
		conn, err := h.DialTCP(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(conn)
		_ = conn.Close()
		if err != nil || string(b) != "banner\n" {
			t.Fatalf("read %q, %v from %s", b, err, addr)
		}
		_ = l.Close() // nothing listens on the port any more
		if c, err := h.DialTCP(ctx, addr); err == nil {
			_ = c.Close()
			t.Fatalf("DialTCP of %s with nothing listening succeeded", addr)
		}
	})
}
