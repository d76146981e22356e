package host

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
)

// sessionTries is how often a refused session is asked for; the pauses between grow from 10 ms
// to 1.28 s, 2.55 s in all.
const sessionTries = 9

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
		tries := 0
		return poll.Backoff(ctx, 10*time.Millisecond, 2*time.Second, func(context.Context) (bool, error) {
			tries++
			var err error
			sess, err = g.client.NewSession()
			var open *ssh.OpenChannelError
			if errors.As(err, &open) && tries < sessionTries {
				return false, nil
			}
			return true, err
		})
	})
	if err != nil {
		<-s.c.execSlots
		var open *ssh.OpenChannelError
		if errors.As(err, &open) {
			return nil, nil, nil, fmt.Errorf("ssh: %s refused a new session (%v); is its MaxSessions lower than the %d sessions this connection may use?", s.c.t.endpoint, err, s.c.t.maxSessions)
		}
		return nil, nil, nil, err
	}
	return sess, gen, func() { _ = sess.Close(); <-s.c.execSlots }, nil
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
[ ! -L "$log" ] || { echo "$log is a symbolic link" >&2; exit 1; }
(umask 077 && : >>"$log") || exit 1
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

// processScript prints "PID HEX" for every process whose command line contains the line on its
// standard input, HEX being the command line's bytes (NULs included, which no shell variable
// holds). The string comes on standard input so that no command line of the script contains
// it but grep's, which has exited when its list is read.
const processScript = `IFS= read -r m || exit 2
for c in grep od tr; do
	command -v "$c" >/dev/null 2>&1 || { echo "$c: command not found" >&2; exit 127; }
done
for f in $(grep -lF -e "$m" /proc/[0-9]*/cmdline 2>/dev/null); do
	p=${f#/proc/}
	h=$(od -An -v -tx1 "$f" 2>/dev/null | tr -d ' \n')
	[ -z "$h" ] || echo "${p%/cmdline} $h"
done
exit 0`

func (s *SSH) Processes(ctx context.Context, mentioning string) ([]Process, error) {
	if err := checkMentioning(mentioning); err != nil {
		return nil, err
	}
	out, err := s.Run(ctx, strings.NewReader(mentioning+"\n"), "sh", "-c", processScript, "sh")
	if err != nil {
		return nil, fmt.Errorf("processes: %w", err)
	}
	var procs []Process
	for line := range strings.Lines(string(out)) {
		pidText, hexText, ok := strings.Cut(strings.TrimSpace(line), " ")
		pid, perr := strconv.Atoi(pidText)
		cmdline, herr := hex.DecodeString(hexText)
		if !ok || perr != nil || herr != nil || pid <= 0 {
			return nil, fmt.Errorf("processes: the host printed %q, not a pid and a command line", line)
		}
		if bytes.Contains(cmdline, []byte(mentioning)) { // the pid may have been taken meanwhile
			procs = append(procs, Process{PID: pid, Args: splitCmdline(cmdline)})
		}
	}
	return procs, nil
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

func (s *SSH) LookPath(ctx context.Context, name string) (string, error) {
	p, _, err := s.lookPath(ctx, name)
	return p, err
}

// lookPath is LookPath, and whether the host's shell answered: it said where name is, or ran and
// said there is none. A lookup that was cancelled, refused or cut off has no answer.
func (s *SSH) lookPath(ctx context.Context, name string) (p string, answered bool, err error) {
	out, err := s.Run(ctx, nil, "sh", "-c", `command -v "$1"`, "sh", name)
	p = strings.TrimSpace(string(out))
	if errors.Is(err, ErrConnectionLost) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "", false, err
	}
	if err != nil || !strings.HasPrefix(p, "/") {
		var exit *ssh.ExitError
		answered = err == nil || errors.As(err, &exit) && exit.Signal() == ""
		return "", answered, &exec.Error{Name: name, Err: exec.ErrNotFound}
	}
	return p, true, nil
}

// dfScript prints what POSIX df -P says is available, in KiB, on the filesystem holding "$1"; a
// missing path says so as the os package does.
const dfScript = `[ -e "$1" ] || { echo "statfs $1: no such file or directory" >&2; exit 2; }
exec df -P -k -- "$1"`

// dfAvailable is FreeSpace through df, for SFTP servers that cannot tell it.
func (s *SSH) dfAvailable(ctx context.Context, p string) (int64, error) {
	out, err := s.Run(ctx, nil, "sh", "-c", dfScript, "sh", p)
	var exit *ssh.ExitError
	if errors.As(err, &exit) && exit.ExitStatus() == 2 {
		return 0, &fs.PathError{Op: "statfs", Path: p, Err: fs.ErrNotExist}
	}
	if err != nil {
		return 0, err
	}
	kib, err := parseDF(out)
	if err != nil {
		return 0, fmt.Errorf("df -P -k %s: %w", p, err)
	}
	return kib * 1024, nil
}

// parseDF reads the Available column of df -P's one filesystem line: the field before the
// capacity ("12%"), since the filesystem name and the mount point may hold spaces.
func parseDF(out []byte) (int64, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	for i := 2; i < len(fields); i++ {
		if c := fields[i]; len(c) > 1 && strings.HasSuffix(c, "%") && strings.Trim(c[:len(c)-1], "0123456789") == "" {
			return strconv.ParseInt(fields[i-1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no Available column in %q", out)
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
	lz4 := s.lz4(ctx)
	if lz4 == "" {
		return false, nil
	}
	mode := "-1"
	if decompress {
		mode = "-d"
	}
	if _, err := s.Run(ctx, nil, lz4, mode, "-q", "-f", src, dst); err != nil {
		_ = s.Remove(context.WithoutCancel(ctx), dst)
		return true, err
	}
	return true, nil
}

// lz4 is the host's lz4, "" when it has none or the lookup got no answer. Only an answer is
// remembered: a lookup that was cancelled or lost its connection is made again next time.
func (s *SSH) lz4(ctx context.Context) string {
	s.lz4Mu.Lock()
	defer s.lz4Mu.Unlock()
	if !s.lz4Known {
		p, answered, _ := s.lookPath(ctx, "lz4")
		if !answered {
			return ""
		}
		s.lz4Known, s.lz4Path = true, p
	}
	return s.lz4Path
}
