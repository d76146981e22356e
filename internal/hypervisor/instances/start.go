package instances

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// ProgramSettle is how long a boot keeps watching the program after it started: a program that
// exits within it (or whose guest powers off) fails the boot, instead of passing for Running.
const ProgramSettle = 2 * time.Second

// BootTimeout bounds the wait for the guest's program when the caller's context has no deadline.
const BootTimeout = 2 * time.Minute

// start boots a stopped instance: a fresh config disk, a new VMM, and the wait until the guest
// init reports that the program started. On failure the VMM is gone again.
func (m *Manager) start(ctx context.Context, md *metadata) error {
	drv, err := m.driver(md.Hypervisor)
	if err != nil {
		return err
	}
	laps := newLaps(md.ID)
	b, err := m.prepareBoot(ctx, md, drv, laps)
	if err != nil {
		return err
	}
	offset := m.consoleSize(ctx, md.ID)

	_ = m.host.Remove(ctx, vmm.SocketPath(drv, b.cfg)) // a stale socket from a VMM that died
	if err := m.plugTap(ctx, md, b.cfg.Net); err != nil {
		return err
	}
	laps.lap("tap")
	pid, err := drv.Boot(ctx, m.host, b.cfg)
	if err != nil {
		_ = m.unplugTap(context.WithoutCancel(ctx), md)
		return fmt.Errorf("start %s: %w%s", drv.Name(), err, m.consoleTail(ctx, md.ID, offset))
	}
	laps.lap("vmm_start")
	md.PID, md.VMM, md.Booted, md.StartedAt, md.Ended = pid, b.cfg, true, time.Now().UTC(), nil
	md.HypervisorVersion, md.Accelerator = b.version, b.cfg.Accelerator
	md.KernelHash, md.InitrdHash, md.KernelRelease = b.sys.KernelHash, b.sys.InitrdHash, b.sys.KernelRelease
	md.BootConsole = offset // where a wait for a console line starts reading (wait.go)
	if err := m.saveMetadata(ctx, md); err != nil {
		_ = m.killVMM(context.WithoutCancel(ctx), md)
		return err
	}
	laps.lap("metadata")
	if err := m.waitStarted(ctx, md, offset); err != nil {
		_ = m.killVMM(context.WithoutCancel(ctx), md)
		return err
	}
	laps.lap("guest_boot")
	if err := m.watchSettle(ctx, md, offset); err != nil {
		_ = m.killVMM(context.WithoutCancel(ctx), md) // saves md.Ended with the cleared pid
		return err
	}
	laps.fields["pid"], laps.fields["accelerator"] = pid, b.cfg.Accelerator
	m.log(ctx, "guest program started", laps.fields)
	m.giveLiveSizes(ctx, md)
	return m.awaitReady(ctx, md, offset, "boot")
}

// boot is what a fresh boot of an instance starts its VMM with.
type boot struct {
	cfg     vmm.Config
	sys     *system.Artifacts
	version string // the VMM's
}

// prepareBoot readies everything a fresh boot needs before a VMM starts: the image, the kernel
// and initrd, the accelerator, a new config disk and the VMM's version.
func (m *Manager) prepareBoot(ctx context.Context, md *metadata, drv vmm.Driver, laps *laps) (*boot, error) {
	img, err := m.image(ctx, md)
	if err != nil {
		return nil, err
	}
	laps.lap("image")
	sys, err := system.Prepare(ctx, m.host, m.opts.System)
	if err != nil {
		return nil, fmt.Errorf("prepare kernel and initrd: %w", err)
	}
	laps.lap("system")
	accel, err := m.accelerator(ctx, drv, sys)
	if err != nil {
		return nil, err
	}
	laps.lap("accelerator")
	prog, err := resolveProgram(md.spec(), img)
	if err != nil {
		return nil, err
	}
	gnet, err := m.guestNetwork(md)
	if err != nil {
		return nil, err
	}
	// Each boot checks the holds again: a crash may have left a mount without its record.
	if err := m.attach(ctx, md, md.Volumes); err != nil {
		return nil, err
	}
	if err := m.writeConfigDisk(ctx, md.ID, prog, md.Name, gnet, m.guestVolumes(md)); err != nil {
		return nil, err
	}
	laps.lap("config_disk")
	version, err := m.vmmVersion(ctx, drv)
	if err != nil {
		return nil, fmt.Errorf("%s version: %w", drv.Name(), err)
	}
	laps.lap("vmm_version")
	lay := md.spec().layout()
	cfg := vmm.Config{
		Dir: m.layout.dir(md.ID), Kernel: sys.Kernel, Initrd: sys.Initrd, Cmdline: system.BaseCmdline,
		VCPUs: md.VCPUs, MaxVCPUs: md.MaxVCPUs, MemoryBytes: lay.boot, HotplugBytes: lay.region,
		Disks: []vmm.Disk{
			{Path: img.Rootfs, Serial: system.SerialRootfs, ReadOnly: true},
			{Path: m.layout.overlay(md.ID), Serial: system.SerialOverlay},
			{Path: m.layout.config(md.ID), Serial: system.SerialConfig, ReadOnly: true},
		},
		ConsoleLog: m.layout.console(md.ID), Accelerator: accel, Net: md.vmmNet(),
	}
	for _, v := range md.Volumes {
		cfg.Disks = append(cfg.Disks, vmm.Disk{Path: m.layout.volumeData(v.VolumeID), Serial: system.VolumeSerial(v.VolumeID), ReadOnly: v.ReadOnly})
	}
	m.lazyBoot(drv, &cfg)
	return &boot{cfg: cfg, sys: sys, version: version}, nil
}

// laps times the phases of a flow for its log line: each lap is the milliseconds since the last.
type laps struct {
	t0     time.Time
	fields map[string]any
}

func newLaps(id string) *laps { return &laps{t0: time.Now(), fields: map[string]any{"id": id}} }

func (l *laps) lap(name string) {
	now := time.Now()
	l.fields[name+"_ms"] = float64(now.Sub(l.t0).Microseconds()) / 1000
	l.t0 = now
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
	var console []byte
	looks := 0
	err := poll.Until(ctx, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		console = m.consoleSince(ctx, md.ID, offset)
		if bytes.Contains(console, []byte(system.MarkerStarted)) {
			return true, nil
		}
		if i := bytes.Index(console, []byte(system.MarkerError)); i >= 0 {
			line, _, _ := bytes.Cut(console[i+len(system.MarkerError):], []byte("\n"))
			return false, fmt.Errorf("the guest could not start the program: %s%s", strings.TrimSpace(string(line)), tail(console))
		}
		if looks%5 == 0 {
			alive, err := m.host.ProcessAlive(ctx, md.PID, m.layout.dir(md.ID))
			if err == nil && !alive {
				return false, fmt.Errorf("the %s process exited before the guest started the program%s%s", md.Hypervisor, tail(console), m.vmmOutputTail(ctx, md))
			}
		}
		looks++
		return false, nil
	})
	if poll.Stopped(err) {
		return fmt.Errorf("the guest did not start the program in time (%w)%s", err, tail(console))
	}
	return err
}

// watchSettle watches the first ProgramSettle after the program started. When the program exits,
// or the VMM ends, meanwhile, the boot fails with the exit code and the console's last lines, and
// md.Ended keeps how it ended for state_reason.
func (m *Manager) watchSettle(ctx context.Context, md *metadata, offset int64) error {
	ended := func(ctx context.Context) (bool, error) {
		c := m.consoleSince(ctx, md.ID, offset)
		if i := bytes.Index(c, []byte(system.MarkerExited)); i >= 0 && bytes.IndexByte(c[i:], '\n') >= 0 {
			return true, nil
		}
		alive, err := m.host.ProcessAlive(ctx, md.PID, m.layout.dir(md.ID))
		return err == nil && !alive, nil
	}
	err := poll.Within(ctx, ProgramSettle, 200*time.Millisecond, ended)
	switch {
	case errors.Is(err, poll.ErrTimeout):
		return nil // still running: it settled
	case err != nil:
		return fmt.Errorf("watch the program of %s after it started: %w", md.Name, err)
	}
	m.waitGone(ctx, md, 3*time.Second) // the guest powers off after the exit: its last lines
	end := m.readBootEnd(ctx, md.ID)
	md.Ended = &end
	console := m.consoleTail(ctx, md.ID, offset)
	if end.ExitCode != nil {
		return exitError(fmt.Sprintf("the program of %s exited with code %d right after it started; an instance runs as long as its program does%s",
			md.Name, *end.ExitCode, console))
	}
	return exitError(fmt.Sprintf("%s ended right after its program started: %s%s%s", md.Name, end.Reason, console, m.vmmOutputTail(ctx, md)))
}

// giveLiveSizes gives a guest that booted, or was restored, what it has while running
// (resize.go): the memory above its boot memory, and the vCPUs its metadata asks for, which a
// change made while it was in Standby leaves different from those in its snapshot.
func (m *Manager) giveLiveSizes(ctx context.Context, md *metadata) {
	if md.VMM.HotplugBytes == 0 && md.VMM.MaxVCPUs == 0 {
		return
	}
	fail := func(what string, err error) {
		m.log(ctx, what, map[string]any{"id": md.ID, "error": err.Error()})
	}
	vm, err := m.connect(ctx, md)
	if err != nil {
		fail("could not give the guest its memory and vcpus", err)
		return
	}
	defer func() { _ = vm.Close() }()
	if md.VMM.HotplugBytes > 0 {
		if err := vm.SetMemory(ctx, md.spec().LiveMemory()); err != nil {
			fail("could not grow memory; the guest keeps its boot memory", err)
		}
	}
	if md.VMM.MaxVCPUs > 0 {
		if err := vm.SetVCPUs(ctx, md.VCPUs); err != nil {
			fail("could not give the guest its vcpus; it keeps those it has", err)
		}
	}
}
