// Package vmm is the seam between the instance manager and a virtual machine monitor. Cloud
// Hypervisor and QEMU each implement Driver; the flows above are written once against it.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

// State is what a live VMM reports about its guest.
type State string

const (
	// Created: the VMM holds a VM configuration that has not booted (or, for Cloud Hypervisor,
	// that was shut down: it reports Created again).
	Created State = "Created"
	Running State = "Running"
	Paused  State = "Paused"
	// Shutdown: the VMM is up and the guest is off. Only drivers that can tell report it.
	Shutdown State = "Shutdown"
)

// ErrNoVM means the VMM process answers but holds no VM at all.
var ErrNoVM = errors.New("the VMM holds no VM")

// Disk is one block device. Serial is what the guest init finds it by.
type Disk struct {
	Path     string `json:"path"`
	Serial   string `json:"serial"`
	ReadOnly bool   `json:"readonly"`
}

// NetConfig is the guest's one network interface: a TAP device on the host, which exists before
// the VMM starts, and the MAC address the guest sees.
type NetConfig struct {
	Tap string `json:"tap"`
	MAC string `json:"mac"`
}

// Config is everything needed to start a VMM for one instance. Restoring a snapshot needs the
// same Config that booted the VM (identical devices).
type Config struct {
	// Dir is the instance directory; sockets and the VMM's own output live in it.
	Dir     string `json:"dir"`
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	// VCPUs is the number of vCPUs the guest boots with.
	VCPUs int `json:"vcpus"`
	// MaxVCPUs, when set, is the most vCPUs the guest can have while it runs: SetVCPUs gives it
	// from 1 to MaxVCPUs (VCPURange). 0 leaves it the VCPUs it boots with.
	MaxVCPUs int `json:"max_vcpus,omitempty"`
	// MemoryBytes is the memory the guest boots with.
	MemoryBytes int64 `json:"memory_bytes"`
	// HotplugBytes is how much memory can be added after boot (0: none).
	HotplugBytes int64  `json:"hotplug_bytes"`
	Disks        []Disk `json:"disks"`
	// Net is the network interface; nil gives the guest none.
	Net *NetConfig `json:"net,omitempty"`
	// ConsoleLog receives the guest's serial console; it is appended to, never truncated.
	ConsoleLog string `json:"console_log"`
	// Accelerator is "kvm" or "tcg" (resolved from "auto" by the caller).
	Accelerator string `json:"accelerator"`
	// RAMFile, when set, is a file on the host that holds the guest's boot memory (MemoryBytes)
	// for the VM's whole life, mapped shared: a snapshot then leaves that memory in the file
	// instead of copying it, and a restore maps the same file again, so the guest's pages are
	// read when it first touches them (lazy restore). "" gives the guest anonymous memory.
	RAMFile string `json:"ram_file,omitempty"`
}

// Driver starts VMM processes and connects to them.
type Driver interface {
	// Name is the hypervisor's name as users write it: "qemu" or "cloud-hypervisor".
	Name() string
	// Program is the executable the driver runs its VMM processes as, the first word of their
	// command line: a name looked up on the host's PATH, or a path.
	Program() string
	// SocketName is the file name of the VMM's control socket in cfg.Dir (see SocketPath).
	SocketName() string
	// LogName is the file name in cfg.Dir that the VMM's own standard output and error are
	// appended to (see LogPath).
	LogName() string
	// Available reports whether the VMM binary is installed on h.
	Available(ctx context.Context, h host.Host) bool
	// Version is the VMM's version string; snapshots are only restored by the same version.
	Version(ctx context.Context, h host.Host) (string, error)
	// Boot starts a VMM process for cfg and boots the guest. It returns the VMM's pid once the
	// VMM answers on its socket and the guest is running.
	Boot(ctx context.Context, h host.Host, cfg Config) (pid int, err error)
	// Restore starts a VMM process and restores the snapshot in snapshotDir into it. The guest is
	// left Paused. The snapshot's memory image is MemoryFile, uncompressed (the manager
	// decompresses a CompressedMemoryFile first), unless the driver is a CompressedRestorer.
	Restore(ctx context.Context, h host.Host, cfg Config, snapshotDir string) (pid int, err error)
	// Connect opens a control connection to the VMM running for cfg.
	Connect(ctx context.Context, h host.Host, cfg Config) (VM, error)
	// Reap is called once the VMM process for cfg has exited, however it ended (quit, killed, or
	// on its own): it waits for what the driver runs beside the VMM to finish, and stops what does
	// not, so that no process of the instance outlives its VMM. Reaping twice is harmless.
	Reap(ctx context.Context, h host.Host, cfg Config) error
}

// VCPURange is the vCPU counts a VM booted with cfg can be given live: 1 to MaxVCPUs, or only
// the VCPUs it booted with when it has no MaxVCPUs.
func VCPURange(cfg Config) (lowest, highest int) {
	if cfg.MaxVCPUs == 0 {
		return cfg.VCPUs, cfg.VCPUs
	}
	return 1, cfg.MaxVCPUs
}

// CheckVCPURange refuses a SetVCPUs of n that VCPURange does not allow.
func CheckVCPURange(cfg Config, n int) error {
	lowest, highest := VCPURange(cfg)
	switch {
	case n >= lowest && n <= highest:
		return nil
	case lowest == highest:
		return fmt.Errorf("vcpus %d: this VM has no vCPU slots, so it keeps its %d vCPUs", n, lowest)
	}
	return fmt.Errorf("vcpus %d: must be from %d to the ceiling %d", n, lowest, highest)
}

// SocketPath is the control socket of the VMM that d runs for cfg. The VMM's command line always
// contains cfg.Dir, which tells it from a recycled pid.
func SocketPath(d Driver, cfg Config) string { return path.Join(cfg.Dir, d.SocketName()) }

// LogPath is the file the VMM that d runs for cfg appends its own output to.
func LogPath(d Driver, cfg Config) string { return path.Join(cfg.Dir, d.LogName()) }

// VM is a control connection to one running VMM.
type VM interface {
	// State reports the guest's state; ErrNoVM when the VMM holds none.
	State(ctx context.Context) (State, error)
	Pause(ctx context.Context) error
	// Resume runs a paused guest. A snapshot that was left unfinished (its caller died) is
	// abandoned first, so that it cannot pause the guest again when it completes.
	Resume(ctx context.Context) error
	// Snapshot writes the paused guest into dir, which exists and is empty. The memory image is
	// the file MemoryFile in dir; config.json and state.json sit beside it. A snapshot that was
	// left unfinished, or that finished for a caller that died, does not stand in the way.
	Snapshot(ctx context.Context, dir string) error
	// PowerButton asks the guest to power off (ACPI). It does not wait.
	PowerButton(ctx context.Context) error
	// SetMemory asks for a total guest memory size between the boot size and boot + hotplug, and
	// returns once the guest has reached it (or with an error saying how far it got). Asking for
	// the current size is not an error.
	SetMemory(ctx context.Context, bytes int64) error
	// Memory reports the guest's total memory now: the boot size and what it has plugged of the
	// hotplug region, which lags a SetMemory that has not finished (or whose caller died).
	Memory(ctx context.Context) (int64, error)
	// SetVCPUs asks for n vCPUs (VCPURange) and returns once the VMM has them: an added one is
	// there for the guest to bring online (its init does), a removed one is gone once the guest
	// has given it up (ACPI eject). Only a VCPURemover's VMs take fewer vCPUs live; the others
	// refuse. Asking for the current count is not an error.
	SetVCPUs(ctx context.Context, n int) error
	// VCPUs reports how many vCPUs the VM has now, which lags a SetVCPUs that has not finished.
	VCPUs(ctx context.Context) (int, error)
	// Quit stops the VMM process (the guest with it) and returns once it has gone.
	Quit(ctx context.Context) error
	Close() error
}

// MemoryFile is the name of a snapshot's memory image inside the snapshot directory, for every
// driver (Cloud Hypervisor's own name).
const MemoryFile = "memory-ranges"

// CompressedMemoryFile is the memory image as an LZ4 frame (the lz4 tool's format), which takes
// MemoryFile's place in a compressed snapshot. A snapshot holds one of the two, never both.
const CompressedMemoryFile = MemoryFile + ".lz4"

// StreamCompressor is implemented by VMs whose VMM hands the memory image over as a stream (QEMU's
// migration stream), so that it is compressed on its way to disk: the raw image is never written,
// and the compression overlaps the snapshot instead of following it. VMs without it write
// MemoryFile, and the manager compresses it afterwards.
type StreamCompressor interface {
	// SnapshotCompressed is Snapshot with the memory image written as CompressedMemoryFile
	// instead of MemoryFile, compressed on the way by lz4, the host's lz4 tool (a path on the
	// host). A compressor that fails fails the snapshot and leaves no memory image in dir.
	SnapshotCompressed(ctx context.Context, dir, lz4 string) error
}

// CompressedRestorer is implemented by drivers that restore a snapshot holding a
// CompressedMemoryFile as it lies, decompressing it on its way into the VMM with lz4, the host's
// lz4 tool: no raw copy of the memory image is written. RestoreCompressed restores a snapshot
// holding MemoryFile too (one taken uncompressed), as Restore does.
type CompressedRestorer interface {
	RestoreCompressed(ctx context.Context, h host.Host, cfg Config, snapshotDir, lz4 string) (pid int, err error)
}

// DiskError is a failed write to one of the guest's disks that made the VMM pause the guest by
// itself, instead of failing the guest's I/O. The write is kept and retried when the guest is
// resumed, so nothing the guest wrote is lost.
type DiskError struct {
	// Path is the disk image the write failed on; "" when the VMM does not say.
	Path string
	// NoSpace: the filesystem holding Path is full (ENOSPC).
	NoSpace bool
}

// DiskErrorReporter is implemented by VMs whose VMM pauses the guest when a disk write fails, as
// QEMU does on a full filesystem. Such a guest reports State Paused; Resume retries the write.
type DiskErrorReporter interface {
	// DiskError is the failed write that paused the guest; nil when the guest is not paused by one.
	DiskError(ctx context.Context) (*DiskError, error)
}

// VCPURemover is implemented by drivers whose VMs give vCPUs back live (SetVCPUs to fewer than the
// VM has). Any other driver's VMs only take more live: fewer vCPUs need a new boot.
type VCPURemover interface {
	RemovesVCPUs() bool
}

// KVMProber is implemented by drivers that can also run without KVM (QEMU's TCG). It reports
// whether a guest actually runs under KVM on h: /dev/kvm can open and still hang every guest, as
// under broken nested virtualisation.
type KVMProber interface {
	ProbeKVM(ctx context.Context, h host.Host, kernel string) (bool, error)
}

// UserRunner is implemented by drivers that can start their VMM processes as an unprivileged user
// of the host instead of the user the host runs commands as (docs/adr/0010-vmm-least-privilege.md).
// The driver hands that user what the VMM opens before each start.
type UserRunner interface {
	// RunAs makes the driver start every later VMM process as user; "" or "root" starts them as
	// the host's own user.
	RunAs(user string)
}
