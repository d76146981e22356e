package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

var _ Host = (*SSH)(nil)

// SSH is a host reached over SSH: commands run as argv in sessions, files move over SFTP, unix
// sockets are reached by stream-local forwarding, and locks are flock(1) locks on the host. All
// SSH values for one host and set of credentials share one connection. Paths are absolute paths
// on the host. The login shell of the remote user must be a POSIX shell.
type SSH struct {
	c         *sshConn
	closeOnce sync.Once
	lz4Once   sync.Once
	lz4Path   string // the host's lz4, "" when it has none
}

// DialSSH connects to the host described by cfg, or joins the process's existing connection to
// it. Close releases it.
func DialSSH(ctx context.Context, cfg SSHConfig) (*SSH, error) {
	t, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	creds, err := newCredentials(cfg, t)
	if err != nil {
		return nil, err
	}
	keys, err := newHostKeys(cfg, t)
	if err != nil {
		return nil, err
	}
	if cfg.InsecureIgnoreHostKey && cfg.Warn != nil {
		cfg.Warn(fmt.Sprintf("insecure_ignore_host_key is set: the host key of %s is not checked, so a machine in between can pose as the host and read or change everything sent to it. Pin the key with host_key, or add it to a known_hosts file, instead.", t.addr()))
	}
	key := connKey(cfg, t, creds)
	registry.Lock()
	c := registry.conns[key]
	if c == nil {
		c = &sshConn{key: key, t: t, creds: creds, keys: keys, execSlots: make(chan struct{}, t.maxSessions-2)}
		registry.conns[key] = c
	}
	c.refs++
	registry.Unlock()
	s := &SSH{c: c}
	if _, err := c.get(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases this value's share of the connection; the last one closes it.
func (s *SSH) Close() error {
	s.closeOnce.Do(func() {
		registry.Lock()
		s.c.refs--
		last := s.c.refs == 0
		if last && registry.conns[s.c.key] == s.c {
			delete(registry.conns, s.c.key)
		}
		registry.Unlock()
		if last {
			s.c.shutdown()
		}
	})
	return nil
}

// Handshakes is the number of SSH logins the shared connection has made, reconnects and jump
// hosts included.
func (s *SSH) Handshakes() int64 { return s.c.handshakes.Load() }

// String is the host as "user@host:port".
func (s *SSH) String() string { return s.c.t.endpoint.String() }

// call runs op on a live connection. If the connection turns out to have died under it, op is
// repeated once on a new connection when retry says that is safe; otherwise the error wraps
// ErrConnectionLost.
func (s *SSH) call(ctx context.Context, retry bool, op func(*generation) error) error {
	for attempt := 0; ; attempt++ {
		g, err := s.c.get(ctx)
		if err != nil {
			return err
		}
		err = op(g)
		if !g.lost(err) {
			return err
		}
		if !retry || attempt > 0 {
			if errors.Is(err, ErrConnectionLost) {
				return err
			}
			return fmt.Errorf("%w to %s: %w", ErrConnectionLost, s.c.t.endpoint, err)
		}
	}
}

// files runs op with the SFTP client; every file operation here is safe to repeat.
func (s *SSH) files(ctx context.Context, op func(*generation, *sftp.Client) error) error {
	return s.call(ctx, true, func(g *generation) error { return op(g, g.sftp) })
}

// session opens a session for a command, within the server's session limit. Opening is repeated
// on a new connection when the old one died, since nothing has run yet.
func (s *SSH) session(ctx context.Context) (*ssh.Session, *generation, func(), error) {
	select {
	case s.c.execSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, nil, fmt.Errorf("ssh: waiting for a free session on %s: %w", s.c.t.endpoint, ctx.Err())
	}
	var sess *ssh.Session
	var gen *generation
	err := s.call(ctx, true, func(g *generation) error {
		gen = g
		// The server frees a closed session's slot a moment after it reads the close, so a
		// session opened right behind it may be refused: wait a little and ask again.
		var err error
		for wait := 10 * time.Millisecond; ; wait *= 2 {
			sess, err = g.client.NewSession()
			var open *ssh.OpenChannelError
			if !errors.As(err, &open) || wait > 2*time.Second {
				return err
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	if err != nil {
		<-s.c.execSlots
		var open *ssh.OpenChannelError
		if errors.As(err, &open) {
			return nil, nil, nil, fmt.Errorf("ssh: %s refused a new session (%v); is its MaxSessions lower than the %d sessions this connection may use?", s.c.t.endpoint, err, s.c.t.maxSessions)
		}
		return nil, nil, nil, err
	}
	return sess, gen, func() { sess.Close(); <-s.c.execSlots }, nil
}

// exec runs a command line in one session, streaming stdin, and waits for it or for ctx.
func (s *SSH) exec(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, cmdline string) error {
	sess, g, release, err := s.session(ctx)
	if err != nil {
		return err
	}
	defer release()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	if err := sess.Start(cmdline); err != nil {
		return s.explain(g, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		return s.explain(g, err)
	case <-ctx.Done():
		// Kill it (servers without signal support stop it when the session closes and its
		// output pipes break). Wait is not awaited: it may wait on a stdin that never ends.
		_ = sess.Signal(ssh.SIGKILL)
		return ctx.Err()
	}
}

// explain marks an error of a started command that the connection's end caused.
func (s *SSH) explain(g *generation, err error) error {
	if err != nil && g.lost(err) {
		return fmt.Errorf("%w to %s: %w", ErrConnectionLost, s.c.t.endpoint, err)
	}
	return err
}

func (s *SSH) Run(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("run: empty command")
	}
	var stdout, stderr syncBuffer
	if err := s.exec(ctx, stdin, &stdout, &stderr, shellJoin(argv)); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", argv[0], err, lastLines(msg, 20))
	}
	return stdout.Bytes(), nil
}

// syncBuffer is a buffer that a command abandoned at its deadline may still write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) String() string { return string(s.Bytes()) }

// detachScript starts "$@" in its own session with its output appended to the log, and prints
// its pid. A background job of a shell without job control is not a process group leader, so
// setsid(1) calls setsid(2) without forking and $! is the program's own pid.
const detachScript = `log=$1; shift
for c in setsid "$1"; do
	command -v "$c" >/dev/null 2>&1 || { echo "$c: command not found" >&2; exit 127; }
done
(umask 027 && : >>"$log") || exit 1
setsid "$@" </dev/null >>"$log" 2>&1 &
echo $!
`

func (s *SSH) StartDetached(ctx context.Context, argv []string, logPath string) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("start: empty command")
	}
	var stdout, stderr syncBuffer
	cmd := shellJoin(append([]string{"sh", "-c", detachScript, "sh", logPath}, argv...))
	if err := s.exec(ctx, nil, &stdout, &stderr, cmd); err != nil {
		return 0, fmt.Errorf("start %s: %w: %s", argv[0], err, strings.TrimSpace(stderr.String()))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(stdout.String()))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("start %s: the host printed %q instead of a pid", argv[0], stdout.String())
	}
	return pid, nil
}

func (s *SSH) ProcessAlive(ctx context.Context, pid int, marker string) (bool, error) {
	if pid <= 0 {
		return false, nil
	}
	var alive bool
	err := s.files(ctx, func(_ *generation, c *sftp.Client) error {
		// Both files in one round trip's time; the cmdline is only used when stat says alive.
		var cmdline []byte
		var cmdErr error
		read := make(chan struct{})
		go func() {
			defer close(read)
			cmdline, cmdErr = readProc(c, fmt.Sprintf("/proc/%d/cmdline", pid))
		}()
		stat, err := readProc(c, fmt.Sprintf("/proc/%d/stat", pid))
		<-read
		if errors.Is(err, fs.ErrNotExist) {
			alive = false
			return nil
		}
		if err != nil {
			return err
		}
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			alive = false
			return nil
		}
		alive = cmdErr == nil && bytes.Contains(cmdline, []byte(marker))
		return nil
	})
	return alive, err
}

// signalScript sends a signal; a process that is already gone is not an error, one that may not
// be signalled is.
const signalScript = `kill -s "$1" "$2" 2>/dev/null && exit 0
[ -d "/proc/$2" ] || exit 0
exec kill -s "$1" "$2"`

func (s *SSH) Signal(ctx context.Context, pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
	if name == "" {
		return fmt.Errorf("signal %d to pid %d: not a signal of this platform", sig, pid)
	}
	if _, err := s.Run(ctx, nil, "sh", "-c", signalScript, "sh", name, strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("signal %d to pid %d: %w", sig, pid, err)
	}
	return nil
}

func (s *SSH) DialUnix(ctx context.Context, p string) (net.Conn, error) {
	var conn net.Conn
	err := s.call(ctx, true, func(g *generation) error {
		var err error
		conn, err = g.client.DialContext(ctx, "unix", p)
		if err == nil || g.lost(err) {
			return err
		}
		var open *ssh.OpenChannelError
		if errors.As(err, &open) && open.Reason == ssh.Prohibited {
			return fmt.Errorf("dial unix %s: %s forbids unix socket forwarding (AllowStreamLocalForwarding or DisableForwarding in its sshd_config): %w", p, s.c.t.endpoint, err)
		}
		if _, serr := g.sftp.Lstat(p); errors.Is(serr, fs.ErrNotExist) {
			return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: p, Net: "unix"}, Err: &os.SyscallError{Syscall: "connect", Err: syscall.ENOENT}}
		}
		return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: p, Net: "unix"}, Err: err}
	})
	return conn, err
}

func (s *SSH) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var data []byte
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		data, err = readFile(c, p)
		return err
	})
	return data, err
}

// readFile reads a whole file in two round trips: the size and the handle at once, then the
// content and a read past its end (which says EOF, or that the file grew) at once.
func readFile(c *sftp.Client, p string) ([]byte, error) {
	var size int64 = -1
	sized := make(chan struct{})
	go func() {
		defer close(sized)
		if fi, err := c.Stat(p); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}()
	f, err := c.Open(p)
	<-sized
	return readOpened(f, err, p, size)
}

// readProc reads a /proc file, which reports no size: it is read until EOF.
func readProc(c *sftp.Client, p string) ([]byte, error) {
	f, err := c.Open(p)
	return readOpened(f, err, p, 0)
}

func readOpened(f *sftp.File, err error, p string, size int64) ([]byte, error) {
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	// Nothing waits on the close of a read-only handle; the server handles it in order.
	defer func() { go f.Close() }()
	head := make([]byte, max(size, 0))
	var headLen int
	var headErr error
	read := make(chan struct{})
	go func() {
		defer close(read)
		if len(head) > 0 {
			headLen, headErr = f.ReadAt(head, 0)
		}
	}()
	rest, restErr := readFrom(f, int64(len(head)))
	<-read
	if headErr != nil && !errors.Is(headErr, io.EOF) {
		return nil, pathErr("read", p, headErr)
	}
	if restErr != nil {
		return nil, pathErr("read", p, restErr)
	}
	if headLen < len(head) {
		if len(rest) == 0 {
			return head[:headLen], nil // shrunk since the stat
		}
		// Shrunk and grew again between the two reads: read it as it is now.
		all, err := readFrom(f, 0)
		return all, pathErr("read", p, err)
	}
	return append(head, rest...), nil
}

// readFrom reads from off to EOF, a packet's worth per request.
func readFrom(f *sftp.File, off int64) ([]byte, error) {
	var out []byte
	buf := make([]byte, 32*1024)
	for {
		n, err := f.ReadAt(buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func (s *SSH) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	return s.files(ctx, func(g *generation, c *sftp.Client) error {
		var suffix [8]byte
		_, _ = rand.Read(suffix[:])
		tmp := path.Join(path.Dir(p), "."+path.Base(p)+".tmp-"+hex.EncodeToString(suffix[:]))
		f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return pathErr("open", tmp, err)
		}
		err = writeAndClose(g, f, data, perm)
		if err == nil {
			err = s.rename(g, c, tmp, p)
		}
		if err != nil {
			_ = c.Remove(tmp)
			return pathErr("write", p, err)
		}
		return nil
	})
}

func writeAndClose(g *generation, f *sftp.File, data []byte, perm fs.FileMode) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && g.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *SSH) rename(g *generation, c *sftp.Client, from, to string) error {
	if g.posixMove {
		return c.PosixRename(from, to)
	}
	return c.Rename(from, to)
}

func (s *SSH) Create(ctx context.Context, p string) (io.WriteCloser, error) {
	var f *sftp.File
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		f, err = c.Create(p)
		return pathErr("open", p, err)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (s *SSH) Open(ctx context.Context, p string) (io.ReadCloser, error) {
	var f *sftp.File
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		f, err = c.Open(p)
		return pathErr("open", p, err)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (s *SSH) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		fi, err = c.Stat(p)
		return pathErr("stat", p, err)
	})
	return fi, err
}

func (s *SSH) ReadDir(ctx context.Context, p string) ([]fs.FileInfo, error) {
	var infos []fs.FileInfo
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		infos, err = c.ReadDirContext(ctx, p)
		return pathErr("open", p, err)
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
	return infos, nil
}

func (s *SSH) MkdirAll(ctx context.Context, p string, perm fs.FileMode) error {
	return s.files(ctx, func(_ *generation, c *sftp.Client) error { return mkdirAll(c, p, perm) })
}

// mkdirAll makes p and its missing parents with mode perm; the common case, p exists, is one
// request.
func mkdirAll(c *sftp.Client, p string, perm fs.FileMode) error {
	fi, err := c.Stat(p)
	if err == nil {
		if fi.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.ENOTDIR}
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return pathErr("mkdir", p, err)
	}
	if parent := path.Dir(p); parent != p {
		if err := mkdirAll(c, parent, perm); err != nil {
			return err
		}
	}
	if err := c.Mkdir(p); err != nil {
		if fi, serr := c.Stat(p); serr == nil && fi.IsDir() {
			return nil // made by someone else meanwhile
		}
		return pathErr("mkdir", p, err)
	}
	return pathErr("chmod", p, c.Chmod(p, perm))
}

func (s *SSH) Remove(ctx context.Context, p string) error {
	// Not repeated on a new connection: a repeat would report a removed file as missing.
	return s.call(ctx, false, func(g *generation) error { return pathErr("remove", p, g.sftp.Remove(p)) })
}

func (s *SSH) RemoveAll(ctx context.Context, p string) error {
	// One command instead of a request per file: an unpacked image has thousands.
	_, err := s.Run(ctx, nil, "rm", "-rf", "--", p)
	return err
}

func (s *SSH) Rename(ctx context.Context, from, to string) error {
	return s.call(ctx, false, func(g *generation) error {
		if err := s.rename(g, g.sftp, from, to); err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: unwrapPathErr(err)}
		}
		return nil
	})
}

func (s *SSH) Symlink(ctx context.Context, target, link string) error {
	return s.call(ctx, false, func(g *generation) error {
		err := g.sftp.Symlink(target, link)
		if err == nil || g.lost(err) {
			return err
		}
		// SFTP v3 reports "failure" for an existing link; find out which failure it was.
		if _, lerr := g.sftp.Lstat(link); lerr == nil {
			return &os.LinkError{Op: "symlink", Old: target, New: link, Err: fs.ErrExist}
		}
		return &os.LinkError{Op: "symlink", Old: target, New: link, Err: unwrapPathErr(err)}
	})
}

func (s *SSH) Readlink(ctx context.Context, p string) (string, error) {
	var target string
	err := s.files(ctx, func(_ *generation, c *sftp.Client) (err error) {
		target, err = c.ReadLink(p)
		return pathErr("readlink", p, err)
	})
	return target, err
}

func (s *SSH) Truncate(ctx context.Context, p string, size int64) error {
	return s.files(ctx, func(_ *generation, c *sftp.Client) error {
		f, err := c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return pathErr("open", p, err)
		}
		if err != nil { // it exists
			return pathErr("truncate", p, c.Truncate(p, size))
		}
		err = f.Chmod(0o640)
		if err == nil {
			err = f.Truncate(size)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return pathErr("truncate", p, err)
	})
}

func (s *SSH) Lock(ctx context.Context, p string) (func(), error) {
	if strings.ContainsAny(p, "\n\x00") {
		return nil, fmt.Errorf("lock %q: a lock path cannot contain a newline or NUL", p)
	}
	local, err := s.c.locks.lock(ctx, p)
	if err != nil {
		return nil, err
	}
	var remote func()
	err = s.call(ctx, true, func(g *generation) error {
		k, err := g.lockKeeper()
		if err != nil {
			return err
		}
		remote, err = k.lock(ctx, p)
		if err != nil && ctx.Err() == nil && !g.lost(err) {
			if _, serr := g.sftp.Stat(path.Dir(p)); errors.Is(serr, fs.ErrNotExist) {
				return &fs.PathError{Op: "lock", Path: p, Err: fs.ErrNotExist}
			}
		}
		return err
	})
	if err != nil {
		local()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { remote(); local() }) }, nil
}

func (s *SSH) LookPath(ctx context.Context, name string) (string, error) {
	out, err := s.Run(ctx, nil, "sh", "-c", `command -v "$1"`, "sh", name)
	p := strings.TrimSpace(string(out))
	if errors.Is(err, ErrConnectionLost) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "", err
	}
	if err != nil || !strings.HasPrefix(p, "/") {
		return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
	}
	return p, nil
}

// pathErr gives an SFTP error the shape of the os package's: a *fs.PathError naming the path, so
// errors.Is(err, fs.ErrNotExist) and the message read the same as on the local host.
func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// shellJoin makes a command line that a POSIX shell splits back into exactly argv: every item is
// single-quoted, so nothing in it is expanded.
func shellJoin(argv []string) string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

var _ LZ4er = (*SSH)(nil)

// LZ4 runs the host's own lz4 (frame format, level 1, as the provider writes it), so a snapshot's
// memory never crosses the network. Without lz4 on the host it reports handled = false.
func (s *SSH) LZ4(ctx context.Context, src, dst string, decompress bool) (bool, error) {
	s.lz4Once.Do(func() { s.lz4Path, _ = s.LookPath(ctx, "lz4") })
	if s.lz4Path == "" {
		return false, nil
	}
	mode := "-1"
	if decompress {
		mode = "-d"
	}
	if _, err := s.Run(ctx, nil, s.lz4Path, mode, "-q", "-f", src, dst); err != nil {
		_ = s.Remove(context.WithoutCancel(ctx), dst)
		return true, err
	}
	return true, nil
}
