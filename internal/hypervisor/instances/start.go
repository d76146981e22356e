package instances

import (
	"bytes"
	"context"
	"fmt"
	"strings"
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

	_ = m.host.Remove(ctx, drv.SocketPath(cfg)) // a stale socket from a VMM that died
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
