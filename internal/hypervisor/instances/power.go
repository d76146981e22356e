package instances

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// BootTimeout bounds the wait for the guest's program when the caller's context has no deadline.
const BootTimeout = 2 * time.Minute

// start boots a stopped instance: a fresh config disk, a new VMM, and the wait until the guest
// init reports that the program started. On failure the VMM is gone again.
func (m *Manager) start(ctx context.Context, md *metadata) error {
	t0 := time.Now()
	drv, err := m.driver(md.Hypervisor)
	if err != nil {
		return err
	}
	phases := map[string]any{"id": md.ID}
	lap := func(name string) {
		now := time.Now()
		phases[name+"_ms"] = float64(now.Sub(t0).Microseconds()) / 1000
		t0 = now
	}
	img, err := m.image(ctx, md)
	if err != nil {
		return err
	}
	lap("image")
	sys, err := system.Prepare(ctx, m.host, m.opts.System)
	if err != nil {
		return fmt.Errorf("prepare kernel and initrd: %w", err)
	}
	lap("system")
	accel, err := m.accelerator(ctx, drv, sys)
	if err != nil {
		return err
	}
	lap("accelerator")
	prog, err := resolveProgram(md.spec(), img)
	if err != nil {
		return err
	}
	gnet, err := m.guestNetwork(md)
	if err != nil {
		return err
	}
	if err := m.writeConfigDisk(ctx, md.ID, prog, md.Name, gnet); err != nil {
		return err
	}
	lap("config_disk")
	version, err := m.vmmVersion(ctx, drv)
	if err != nil {
		return fmt.Errorf("%s version: %w", drv.Name(), err)
	}
	lap("vmm_version")
	cfg := vmm.Config{
		Dir: m.layout.dir(md.ID), Kernel: sys.Kernel, Initrd: sys.Initrd, Cmdline: system.BaseCmdline,
		VCPUs: md.VCPUs, MemoryBytes: md.Memory, HotplugBytes: md.Hotplug,
		Disks: []vmm.Disk{
			{Path: img.Rootfs, Serial: system.SerialRootfs, ReadOnly: true},
			{Path: m.layout.overlay(md.ID), Serial: system.SerialOverlay},
			{Path: m.layout.config(md.ID), Serial: system.SerialConfig, ReadOnly: true},
		},
		ConsoleLog: m.layout.console(md.ID), Accelerator: accel, Net: md.vmmNet(),
	}
	offset := m.consoleSize(ctx, md.ID)

	_ = m.host.Remove(ctx, vmm.SocketPath(drv, cfg)) // a stale socket from a VMM that died
	if err := m.plugTap(ctx, md, cfg.Net); err != nil {
		return err
	}
	lap("tap")
	pid, err := drv.Boot(ctx, m.host, cfg)
	if err != nil {
		_ = m.unplugTap(context.WithoutCancel(ctx), md)
		return fmt.Errorf("start %s: %w%s", drv.Name(), err, m.consoleTail(ctx, md.ID, offset))
	}
	lap("vmm_start")
	md.PID, md.VMM, md.Booted, md.StartedAt = pid, cfg, true, time.Now().UTC()
	md.HypervisorVersion, md.Accelerator = version, accel
	md.KernelHash, md.InitrdHash, md.KernelRelease = sys.KernelHash, sys.InitrdHash, sys.KernelRelease
	if err := m.saveMetadata(ctx, md); err != nil {
		_ = m.killVMM(context.WithoutCancel(ctx), md)
		return err
	}
	lap("metadata")
	if err := m.waitStarted(ctx, md, offset); err != nil {
		_ = m.killVMM(context.WithoutCancel(ctx), md)
		return err
	}
	lap("guest_boot")
	phases["pid"], phases["accelerator"] = pid, accel
	m.log(ctx, "guest program started", phases)
	m.growMemory(ctx, md)
	return nil
}

// image finds the instance's image in the cache, pulling it again if the cache lost it.
func (m *Manager) image(ctx context.Context, md *metadata) (*images.Image, error) {
	img, err := m.images.Lookup(ctx, md.ImageDigest)
	if err == nil {
		return img, nil
	}
	img, err = m.images.Pull(ctx, md.Image)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", md.Image, err)
	}
	if img.Digest != md.ImageDigest {
		return nil, fmt.Errorf("image %s now resolves to %s, but the instance was created from %s, which is no longer cached", md.Image, img.Digest, md.ImageDigest)
	}
	return img, nil
}

// waitStarted waits for the guest init's start marker on the console after offset.
func (m *Manager) waitStarted(ctx context.Context, md *metadata, offset int64) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, BootTimeout)
		defer cancel()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		console := m.consoleSince(ctx, md.ID, offset)
		if bytes.Contains(console, []byte(system.MarkerStarted)) {
			return nil
		}
		if i := bytes.Index(console, []byte(system.MarkerError)); i >= 0 {
			line, _, _ := bytes.Cut(console[i+len(system.MarkerError):], []byte("\n"))
			return fmt.Errorf("the guest could not start the program: %s%s", strings.TrimSpace(string(line)), tail(console))
		}
		if i%5 == 0 {
			alive, err := m.host.ProcessAlive(ctx, md.PID, m.layout.dir(md.ID))
			if err == nil && !alive {
				return fmt.Errorf("the %s process exited before the guest started the program%s%s", md.Hypervisor, tail(console), m.vmmOutputTail(ctx, md))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the guest did not start the program in time (%w)%s", ctx.Err(), tail(console))
		case <-tick.C:
		}
	}
}

// lastExit describes how the guest's program last ended, from the console.
func (m *Manager) lastExit(ctx context.Context, id string) string {
	console := m.consoleSince(ctx, id, 0)
	i := bytes.LastIndex(console, []byte(system.MarkerExited))
	if i < 0 {
		return "stopped without reporting an exit code"
	}
	code, _, _ := bytes.Cut(console[i+len(system.MarkerExited):], []byte("\n"))
	return "exited with code " + strings.TrimSpace(string(code))
}

func (m *Manager) consoleSize(ctx context.Context, id string) int64 {
	if fi, err := m.host.Stat(ctx, m.layout.console(id)); err == nil {
		return fi.Size()
	}
	return 0
}

// consoleSince reads the console from offset on. The console keeps the history of every boot, so
// the boot wait, which polls it, seeks past what it has already seen instead of reading it all.
func (m *Manager) consoleSince(ctx context.Context, id string, offset int64) []byte {
	f, err := m.host.Open(ctx, m.layout.console(id))
	if err != nil {
		return nil
	}
	defer f.Close()
	if s, ok := f.(io.Seeker); ok {
		if _, err := s.Seek(offset, io.SeekStart); err != nil {
			return nil
		}
	} else if n, err := io.CopyN(io.Discard, f, offset); err != nil || n < offset {
		return nil
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	return b
}

func (m *Manager) consoleTail(ctx context.Context, id string, offset int64) string {
	return tail(m.consoleSince(ctx, id, offset))
}

func (m *Manager) vmmOutputTail(ctx context.Context, md *metadata) string {
	drv, err := m.driver(md.Hypervisor)
	if err != nil {
		return ""
	}
	b, err := m.host.ReadFile(ctx, vmm.LogPath(drv, md.VMM))
	if err != nil || len(b) == 0 {
		return ""
	}
	return "\n" + md.Hypervisor + " output:" + tail(b)
}

// tail keeps the last lines of a console for an error message.
func tail(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\nlast console lines:\n  " + strings.Join(lines, "\n  ")
}

func (m *Manager) growMemory(ctx context.Context, md *metadata) {
	if md.Hotplug == 0 {
		return
	}
	if err := m.setMemory(ctx, md, md.Memory+md.Hotplug); err != nil {
		m.log(ctx, "could not grow memory; the guest keeps its boot memory", map[string]any{"id": md.ID, "error": err.Error()})
	}
}

func (m *Manager) setMemory(ctx context.Context, md *metadata, bytes int64) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer vm.Close()
	return vm.SetMemory(ctx, bytes)
}

// pause pauses a running guest.
func (m *Manager) pause(ctx context.Context, md *metadata) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer vm.Close()
	if err := vm.Pause(ctx); err != nil {
		return fmt.Errorf("pause %s: %w", md.Name, err)
	}
	return nil
}

// resume resumes a paused guest. A snapshot left from a restore is dropped now that the guest
// runs again: from here on it would be stale.
func (m *Manager) resume(ctx context.Context, md *metadata) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer vm.Close()
	if err := vm.Resume(ctx); err != nil {
		return fmt.Errorf("resume %s: %w", md.Name, err)
	}
	if err := m.host.RemoveAll(ctx, m.layout.snapshots(md.ID)); err != nil {
		return fmt.Errorf("drop the restored snapshot of %s: %w", md.Name, err)
	}
	m.growMemory(ctx, md)
	return nil
}

// stop powers the guest off gracefully (so the overlay is flushed), and stops the VMM by force
// when the guest has not gone within StopTimeout.
func (m *Manager) stop(ctx context.Context, md *metadata) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer vm.Close()
	st, err := vm.State(ctx)
	if err == nil && st == vmm.Paused {
		err = m.resume(ctx, md) // a paused guest cannot react to the power button
	}
	if err == nil && (st == vmm.Running || st == vmm.Paused) {
		// The button is pressed again every few seconds: a press that lands while the guest is
		// still booting (before its handler listens) is lost, and pressing twice is harmless.
		deadline := time.Now().Add(m.opts.StopTimeout)
		for err == nil {
			if err = vm.PowerButton(ctx); err != nil {
				break
			}
			if m.waitGone(ctx, md, min(powerButtonRepeat, time.Until(deadline))) {
				m.log(ctx, "guest powered off", map[string]any{"id": md.ID})
				return m.clearPID(ctx, md)
			}
			if !time.Now().Before(deadline) || ctx.Err() != nil {
				m.log(ctx, "guest did not power off in time; stopping the VMM", map[string]any{"id": md.ID, "timeout": m.opts.StopTimeout.String()})
				break
			}
		}
	}
	if err != nil {
		m.log(ctx, "graceful power-off failed; stopping the VMM", map[string]any{"id": md.ID, "error": err.Error()})
	}
	return m.quitVMM(ctx, md)
}

// powerButtonRepeat is how long stop waits for the guest before pressing the power button again.
const powerButtonRepeat = 3 * time.Second

// quitVMM stops the VMM process: politely through its API, then by signal.
func (m *Manager) quitVMM(ctx context.Context, md *metadata) error {
	if vm, err := m.connect(ctx, md); err == nil {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = vm.Quit(qctx)
		cancel()
		vm.Close()
		if err == nil && m.waitGone(ctx, md, 5*time.Second) {
			return m.clearPID(ctx, md)
		}
	}
	return m.killVMM(ctx, md)
}

// killVMM ends the VMM process: SIGTERM, then SIGKILL.
func (m *Manager) killVMM(ctx context.Context, md *metadata) error {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		alive, err := m.host.ProcessAlive(ctx, md.PID, m.layout.dir(md.ID))
		if err != nil {
			return err
		}
		if !alive {
			return m.clearPID(ctx, md)
		}
		if err := m.host.Signal(ctx, md.PID, sig); err != nil {
			return err
		}
		if m.waitGone(ctx, md, 5*time.Second) {
			return m.clearPID(ctx, md)
		}
	}
	return fmt.Errorf("the %s process %d of %s did not exit after SIGKILL", md.Hypervisor, md.PID, md.Name)
}

// waitGone waits up to d for the VMM process to exit.
func (m *Manager) waitGone(ctx context.Context, md *metadata, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		alive, err := m.host.ProcessAlive(ctx, md.PID, m.layout.dir(md.ID))
		if err == nil && !alive {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clearPID records that no VMM runs, and removes its socket and its TAP device.
func (m *Manager) clearPID(ctx context.Context, md *metadata) error {
	if drv, err := m.driver(md.Hypervisor); err == nil && md.VMM.Dir != "" {
		if err := m.host.Remove(ctx, vmm.SocketPath(drv, md.VMM)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	md.PID, md.Booted, md.StartedAt = 0, false, time.Time{}
	if err := m.saveMetadata(ctx, md); err != nil {
		return err
	}
	return m.unplugTap(ctx, md)
}
