package qemu

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/logtail"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// killTimeout bounds the wait for a killed QEMU to disappear.
const killTimeout = 10 * time.Second

// errExited means QEMU ended while the driver was still setting it up.
var errExited = errors.New("QEMU exited")

// process is a QEMU process this driver has just started and is still setting up.
type process struct {
	h         host.Host
	cfg       vmm.Config
	pid       int
	logOffset int64 // where this run's output starts in qemu-stdout.log
}

// launch starts QEMU for cfg, waits until it answers on QMP and runs setup over that connection.
// It returns the pid, or an error with QEMU's own output and no process left behind. incoming, for
// a restore, is the snapshot's record: QEMU waits for its stream, with the vCPUs it had plugged.
func launch(ctx context.Context, h host.Host, cfg vmm.Config, user string, incoming *snapshotInfo, setup func(*monitor) error) (int, error) {
	argv, err := commandLine(cfg, incoming != nil)
	if err != nil {
		return 0, err
	}
	if incoming != nil {
		argv = append(argv, plugArgs(incoming.Plugged)...)
	}
	p, err := start(ctx, h, cfg, user, argv)
	if err != nil {
		return 0, err
	}
	if err := p.withMonitor(ctx, setup); err != nil {
		return 0, p.fail(ctx, err)
	}
	return p.pid, nil
}

// start starts QEMU detached as user, its output appended to qemu-stdout.log in cfg.Dir.
func start(ctx context.Context, h host.Host, cfg vmm.Config, user string, argv []string) (*process, error) {
	if pid := readPID(ctx, h, cfg); pid > 0 {
		return nil, fmt.Errorf("a QEMU process (pid %d) is already running for %s", pid, cfg.Dir)
	}
	// No QEMU runs for the directory now, so nothing in it changes under the grant.
	as, err := grant(ctx, h, cfg, user)
	if err != nil {
		return nil, err
	}
	argv = append(as.setpriv(true), argv...)
	logPath := path.Join(cfg.Dir, logName)
	var offset int64
	if info, err := h.Stat(ctx, logPath); err == nil {
		offset = info.Size()
	}
	pid, err := h.StartDetached(ctx, argv, logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", Binary, err)
	}
	return &process{h: h, cfg: cfg, pid: pid, logOffset: offset}, nil
}

// withMonitor waits until QEMU answers on its QMP socket and runs fn over that connection.
func (p *process) withMonitor(ctx context.Context, fn func(*monitor) error) error {
	sock := socketPath(p.cfg)
	var m *monitor
	var dialErr error
	err := poll.Until(ctx, pollInterval, func(ctx context.Context) (bool, error) {
		alive, err := p.alive(ctx)
		if err != nil {
			return false, err
		}
		if !alive {
			return false, fmt.Errorf("%w (pid %d) before its QMP socket answered", errExited, p.pid)
		}
		m, dialErr = dialMonitor(ctx, p.h, sock)
		return dialErr == nil, nil
	})
	if poll.Stopped(err) {
		return fmt.Errorf("QEMU (pid %d) did not answer on %s: %w (last error: %v)", p.pid, sock, err, dialErr)
	}
	if err != nil {
		return err
	}
	defer func() { _ = m.Close() }()
	return fn(m)
}

// alive reports whether the process still runs. A process in the middle of exec shows no
// command line yet, so "gone" is only believed when a second look agrees.
func (p *process) alive(ctx context.Context) (bool, error) {
	var alive bool
	looks := 0
	err := poll.Until(ctx, pollInterval, func(ctx context.Context) (bool, error) {
		looks++
		var err error
		alive, err = p.h.ProcessAlive(ctx, p.pid, p.cfg.Dir)
		return alive || looks == 2, err
	})
	return alive, err
}

// fail kills the process (a failed start leaves no QEMU behind) and returns err with the end of
// QEMU's own output, where QEMU says what went wrong.
func (p *process) fail(ctx context.Context, err error) error {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	if kerr := p.h.Signal(kctx, p.pid, syscall.SIGKILL); kerr != nil {
		err = fmt.Errorf("%w; killing QEMU (pid %d) failed too: %v", err, p.pid, kerr)
	} else if kerr := waitExit(kctx, p.h, p.pid, p.cfg.Dir); kerr != nil {
		err = fmt.Errorf("%w; QEMU (pid %d) did not exit after SIGKILL: %v", err, p.pid, kerr)
	}
	if out := p.output(kctx); out != "" {
		return fmt.Errorf("%w\n%s: %s", err, logName, out)
	}
	return err
}

// output is the end of what this run of QEMU printed, "" if nothing.
func (p *process) output(ctx context.Context) string {
	b, err := p.h.ReadFile(ctx, path.Join(p.cfg.Dir, logName))
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	if p.logOffset <= int64(len(b)) {
		b = b[p.logOffset:]
	}
	lines, _ := logtail.Lines(strings.TrimSpace(string(b)), 20)
	return strings.Join(lines, "\n")
}

// waitExit waits until pid, a QEMU for the instance directory dir, has gone.
func waitExit(ctx context.Context, h host.Host, pid int, dir string) error {
	err := poll.Until(ctx, pollInterval, host.Exited(h, pid, dir))
	if poll.Stopped(err) {
		return fmt.Errorf("waiting for QEMU (pid %d) to exit: %w", pid, err)
	}
	return err
}

// readPID is the pid of the live QEMU for cfg from its pid file, or 0 when there is none.
func readPID(ctx context.Context, h host.Host, cfg vmm.Config) int {
	b, err := h.ReadFile(ctx, path.Join(cfg.Dir, pidName))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if alive, err := h.ProcessAlive(ctx, pid, cfg.Dir); err != nil || !alive {
		return 0
	}
	return pid
}
