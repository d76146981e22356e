package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// On-demand ("lazy") restore, Cloud Hypervisor v52 on: vm.restore with memory_restore_mode
// OnDemand registers guest RAM with a userfaultfd and returns without reading the memory image; a
// handler thread copies each page in from the image when the guest first touches it. What the
// source (vmm/src/memory_manager.rs, restore_by_uffd) says about the image: the handler opens it
// once and keeps it open. In v52 it serves faults until the VM shuts down; from v53 on it also
// copies in the pages nobody asked for, one per idle turn, and closes the image when every page
// is in (until then vm.snapshot answers 500 "still in progress"). Either way the image is in use
// for as long as the VMM may run, so the driver's promise (vmm.LazyRestorer) is: until it exits.

var _ vmm.LazyRestorer = (*Driver)(nil)

const (
	// LazyMinMajor is the first release with memory_restore_mode and resume (v52); older servers
	// ignore both fields silently and would copy the memory in.
	LazyMinMajor = 52
	onDemand     = "OnDemand"
	// devUserfaultfd is the device CH asks for a userfaultfd first (Linux 6.1+): it needs only
	// read and write permission on it.
	devUserfaultfd = "/dev/userfaultfd"
	// unprivilegedSysctl is vm.unprivileged_userfaultfd, which exists when the kernel has
	// userfaultfd at all; at 0 the userfaultfd(2) call CH falls back to needs CAP_SYS_PTRACE.
	unprivilegedSysctl = "/proc/sys/vm/unprivileged_userfaultfd"
	capSysPtrace       = 19
)

// CheckLazyRestore says why a VMM on h cannot restore on demand: a release before v52, or no
// usable userfaultfd.
func (d *Driver) CheckLazyRestore(ctx context.Context, h host.Host) error {
	version, err := d.Version(ctx, h)
	if err != nil {
		return err
	}
	if err := lazyVersion(version); err != nil {
		return err
	}
	return d.userfaultfd(ctx, h)
}

func lazyVersion(version string) error {
	major, err := majorVersion(version)
	if err != nil {
		return err
	}
	if major < LazyMinMajor {
		return fmt.Errorf("cloud-hypervisor %s restores eagerly only: on-demand restore (memory_restore_mode OnDemand) needs v%d or later", version, LazyMinMajor)
	}
	return nil
}

func (d *Driver) userfaultfd(ctx context.Context, h host.Host) error {
	if d.Userfaultfd != nil {
		return d.Userfaultfd(ctx, h)
	}
	return CheckUserfaultfd(ctx, h)
}

// CheckUserfaultfd says why a VMM started on h could not get a userfaultfd the two ways Cloud
// Hypervisor tries (vmm/src/uffd.rs): /dev/userfaultfd, readable and writable by the user the
// VMM runs as, else the userfaultfd(2) call, which needs a kernel with userfaultfd and either
// vm.unprivileged_userfaultfd = 1 or CAP_SYS_PTRACE. It looks through h, so it works over SSH.
func CheckUserfaultfd(ctx context.Context, h host.Host) error {
	var devWhy string
	switch fi, err := h.Stat(ctx, devUserfaultfd); {
	case err == nil && fi.Mode()&fs.ModeCharDevice != 0:
		if _, err := h.Run(ctx, nil, "test", "-r", devUserfaultfd, "-a", "-w", devUserfaultfd); err == nil {
			return nil
		}
		devWhy = devUserfaultfd + " is not readable and writable by the user the VMM runs as"
	case err == nil:
		devWhy = devUserfaultfd + " is not a character device"
	case errors.Is(err, fs.ErrNotExist):
		devWhy = "there is no " + devUserfaultfd + " (Linux 6.1 or later has it)"
	default:
		return fmt.Errorf("userfaultfd: %w", err)
	}
	data, err := h.ReadFile(ctx, unprivilegedSysctl)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no usable userfaultfd: %s, and the kernel has no userfaultfd(2) (no vm.unprivileged_userfaultfd sysctl)", devWhy)
	}
	if err != nil {
		return fmt.Errorf("userfaultfd: %w", err)
	}
	if strings.TrimSpace(string(data)) == "1" {
		return nil
	}
	if ok, err := hasCapability(ctx, h, capSysPtrace); err != nil || ok {
		return err
	}
	return fmt.Errorf("no usable userfaultfd: %s, and userfaultfd(2) is refused to the VMM's user: vm.unprivileged_userfaultfd is %s and it lacks CAP_SYS_PTRACE "+
		"(make %s readable and writable by it, or set the sysctl vm.unprivileged_userfaultfd=1)", devWhy, strings.TrimSpace(string(data)), devUserfaultfd)
}

// hasCapability reads the effective capabilities of a process of h's user (the one that reads
// the file: this process locally, the SSH session's over SSH), which the VMMs it starts inherit.
func hasCapability(ctx context.Context, h host.Host, bit uint) (bool, error) {
	data, err := h.ReadFile(ctx, "/proc/self/status")
	if err != nil {
		return false, fmt.Errorf("userfaultfd: read the capabilities: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("userfaultfd: CapEff %q: %w", strings.TrimSpace(v), err)
			}
			return caps&(1<<bit) != 0, nil
		}
	}
	return false, errors.New("userfaultfd: /proc/self/status has no CapEff line")
}

// RestoreLazily starts a VMM and restores the snapshot in snapshotDir on demand, resumed in the
// same request (resume: true): the guest runs as soon as vm.restore answers.
func (d *Driver) RestoreLazily(ctx context.Context, h host.Host, cfg vmm.Config, snapshotDir string) (int, error) {
	if !filepath.IsAbs(snapshotDir) {
		return 0, fmt.Errorf("restore: snapshot directory %q is not an absolute path", snapshotDir)
	}
	if err := checkConfig(cfg); err != nil {
		return 0, err
	}
	if err := d.userfaultfd(ctx, h); err != nil {
		return 0, fmt.Errorf("%w: %w", vmm.ErrNoLazyRestore, err)
	}
	pid, c, ping, err := d.start(ctx, h, cfg)
	if err != nil {
		return 0, err
	}
	defer c.close()
	// The gate is the version of the VMM that answers, not the binary's word for it.
	if err := lazyVersion(ping.Version); err != nil {
		d.abandon(ctx, h, cfg, pid)
		return 0, fmt.Errorf("%w: %w", vmm.ErrNoLazyRestore, err)
	}
	err = c.put(ctx, "vm.restore", lazyRestoreConfig{SourceURL: "file://" + snapshotDir, MemoryRestoreMode: onDemand, Resume: true})
	if err == nil {
		err = expectState(ctx, c, "Running")
	}
	if err != nil {
		d.abandon(ctx, h, cfg, pid)
		return 0, fmt.Errorf("restore %s on demand in %s: %w", snapshotDir, cfg.Dir, err)
	}
	return pid, nil
}
