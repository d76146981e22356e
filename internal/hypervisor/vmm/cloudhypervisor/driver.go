// Package cloudhypervisor drives Cloud Hypervisor: one cloud-hypervisor process per instance,
// controlled through its REST API on {Dir}/ch.sock. Besides cloud-hypervisor (v51 or later), the
// host needs sh and GNU tail, which relay the guest's serial console to the console log, and a
// kernel with Landlock ABI 3 (Linux 6.2 on), which the VMM sandboxes itself with (landlock.go).
package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/logtail"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

var _ vmm.Driver = (*Driver)(nil)

const (
	// DefaultBinary is the executable looked up on the host's PATH.
	DefaultBinary = "cloud-hypervisor"
	// MinMajor is the oldest release the driver drives: DiskConfig.image_type exists from v51
	// on, and an older server drops it silently and probes the format of guest-written disks.
	MinMajor = 51

	socketName = "ch.sock"
	logName    = "ch-stdout.log"
	// maxSocketPath is the room in sockaddr_un.sun_path, terminating NUL excluded.
	maxSocketPath = 107
	mib           = 1 << 20
	// hotplugAlign is virtio-mem's alignment for hotplug_size; boot fails otherwise.
	hotplugAlign = 128 * mib
	// virtioMemBlock is the granularity of a virtio-mem resize.
	virtioMemBlock = 2 * mib
	maxSerial      = 20
	pollInterval   = 20 * time.Millisecond
)

// Driver starts and controls cloud-hypervisor processes.
type Driver struct {
	// Binary is the cloud-hypervisor executable: a name looked up on the host's PATH, or a path.
	Binary string
	// StartTimeout bounds the wait for a new VMM to answer on its socket; 0 means 10s.
	StartTimeout time.Duration
	// Userfaultfd says why a VMM on h could not get a userfaultfd, which an on-demand restore
	// needs (nil when it can); nil means CheckUserfaultfd.
	Userfaultfd func(ctx context.Context, h host.Host) error
}

// New returns a driver for the cloud-hypervisor on the host's PATH.
func New() *Driver { return &Driver{Binary: DefaultBinary} }

func (d *Driver) Name() string { return "cloud-hypervisor" }

func (d *Driver) binary() string {
	if d.Binary == "" {
		return DefaultBinary
	}
	return d.Binary
}

func (d *Driver) startTimeout() time.Duration {
	if d.StartTimeout <= 0 {
		return 10 * time.Second
	}
	return d.StartTimeout
}

func (d *Driver) Available(ctx context.Context, h host.Host) bool {
	bin := d.binary()
	if strings.Contains(bin, "/") {
		fi, err := h.Stat(ctx, bin)
		return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
	}
	_, err := h.LookPath(ctx, bin)
	return err == nil
}

// Version is the build version `cloud-hypervisor --version` prints, such as "v53.0".
func (d *Driver) Version(ctx context.Context, h host.Host) (string, error) {
	out, err := h.Run(ctx, nil, d.binary(), "--version")
	if err != nil {
		return "", fmt.Errorf("cloud-hypervisor version: %w", err)
	}
	return parseVersion(string(out))
}

var versionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)`)

// parseVersion reads the first line of `cloud-hypervisor --version`: "cloud-hypervisor v53.0",
// possibly with a git suffix ("v53.0-246-gae44c2971-dirty").
func parseVersion(out string) (string, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "cloud-hypervisor" || !versionRE.MatchString(fields[1]) {
		return "", fmt.Errorf("cloud-hypervisor --version printed %q, want \"cloud-hypervisor vMAJOR.MINOR\"", line)
	}
	return fields[1], nil
}

// majorVersion reads the major number of "53.0.0" or "v53.0-246-g…".
func majorVersion(version string) (int, error) {
	m := versionRE.FindStringSubmatch(version)
	if m == nil {
		return 0, fmt.Errorf("cloud-hypervisor version %q is not MAJOR.MINOR[.PATCH]", version)
	}
	return strconv.Atoi(m[1])
}

func (d *Driver) Program() string { return d.binary() }

func (d *Driver) SocketName() string { return socketName }

func (d *Driver) LogName() string { return logName }

// Reap waits for the console relay of the exited VMM to copy the rest and exit (see waitRelay).
func (d *Driver) Reap(ctx context.Context, h host.Host, cfg vmm.Config) error {
	return waitRelay(ctx, h, cfg)
}

func socketPath(cfg vmm.Config) string { return filepath.Join(cfg.Dir, socketName) }

// logPath is where the VMM's standard output and error are appended.
func logPath(cfg vmm.Config) string { return filepath.Join(cfg.Dir, logName) }

// Boot starts a VMM, creates the VM from cfg and boots it.
func (d *Driver) Boot(ctx context.Context, h host.Host, cfg vmm.Config) (int, error) {
	config, err := vmConfigFor(cfg)
	if err != nil {
		return 0, err
	}
	return d.startWith(ctx, h, cfg, "boot the VM", func(c *client) error {
		if err := c.put(ctx, "vm.create", config); err != nil {
			return landlockHint(err)
		}
		if err := c.put(ctx, "vm.boot", nil); err != nil {
			return err
		}
		return expectState(ctx, c, "Running")
	})
}

// Restore starts a VMM and restores the snapshot in snapshotDir into it; the guest stays Paused.
func (d *Driver) Restore(ctx context.Context, h host.Host, cfg vmm.Config, snapshotDir string) (int, error) {
	if !filepath.IsAbs(snapshotDir) {
		return 0, fmt.Errorf("restore: snapshot directory %q is not an absolute path", snapshotDir)
	}
	if err := checkConfig(cfg); err != nil {
		return 0, err
	}
	return d.startWith(ctx, h, cfg, "restore "+snapshotDir, func(c *client) error {
		if err := c.put(ctx, "vm.restore", restoreConfig{SourceURL: "file://" + snapshotDir, Prefault: false}); err != nil {
			return err
		}
		return expectState(ctx, c, "Paused")
	})
}

// startWith starts a VMM for cfg and runs steps against it. If they fail, the VMM is of no use
// (a failed restore even leaves it without a VM) and is killed.
func (d *Driver) startWith(ctx context.Context, h host.Host, cfg vmm.Config, what string, steps func(*client) error) (int, error) {
	pid, c, _, err := d.start(ctx, h, cfg)
	if err != nil {
		return 0, err
	}
	defer c.close()
	if err := steps(c); err != nil {
		d.abandon(ctx, h, cfg, pid)
		return 0, fmt.Errorf("%s in %s: %w", what, cfg.Dir, err)
	}
	return pid, nil
}

func expectState(ctx context.Context, c *client, want string) error {
	info, err := c.info(ctx)
	if err != nil {
		return err
	}
	if info.State != want {
		return fmt.Errorf("the VM is %s, want %s", info.State, want)
	}
	return nil
}

// Connect opens a control connection to the VMM running for cfg.
func (d *Driver) Connect(ctx context.Context, h host.Host, cfg vmm.Config) (vmm.VM, error) {
	sock := socketPath(cfg)
	c := newClient(h, sock)
	ping, err := c.ping(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the VMM of %s: %w", cfg.Dir, err)
	}
	return &VM{c: c, h: h, cfg: cfg, socket: sock, pid: ping.Pid}, nil
}

// start launches a VMM with no VM for cfg and waits until it answers. It returns the pid, a
// client and what the VMM answered to vmm.ping; on error nothing it started is left behind.
func (d *Driver) start(ctx context.Context, h host.Host, cfg vmm.Config) (int, *client, vmmPing, error) {
	version, err := d.Version(ctx, h)
	if err != nil {
		return 0, nil, vmmPing{}, err
	}
	sock := socketPath(cfg)
	c := newClient(h, sock)
	// A VMM that still answers owns the socket; anything else there is stale, and up to v52 a
	// stale socket makes the new VMM fail with "address in use".
	pingCtx, cancel := context.WithTimeout(ctx, time.Second)
	_, err = c.ping(pingCtx)
	cancel()
	if err == nil {
		return 0, nil, vmmPing{}, fmt.Errorf("a VMM already answers on %s", sock)
	}
	if err := h.Remove(ctx, sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, nil, vmmPing{}, fmt.Errorf("remove the stale socket %s: %w", sock, err)
	}
	// The relay copies the new VMM's serial file from its start: it must not hold an old one.
	if err := h.Remove(ctx, SerialPath(cfg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, nil, vmmPing{}, fmt.Errorf("remove the old serial file: %w", err)
	}
	// --seccomp true is CH's default, said anyway: the filter must never be off by a changed
	// default. Landlock is not a flag here: --landlock needs a payload on the command line, so
	// it is enabled in vm.create (landlock.go).
	argv := []string{d.binary(), "--api-socket", "path=" + sock, "--seccomp", "true"}
	pid, err := h.StartDetached(ctx, argv, logPath(cfg))
	if err != nil {
		return 0, nil, vmmPing{}, fmt.Errorf("start cloud-hypervisor: %w", err)
	}
	var ping vmmPing
	err = startRelay(ctx, h, cfg, pid)
	if err == nil {
		if ping, err = d.waitForAPI(ctx, h, c, pid, cfg); err == nil {
			err = checkVersion(version, ping)
		}
	}
	if err != nil {
		d.abandon(ctx, h, cfg, pid)
		return 0, nil, vmmPing{}, err
	}
	return pid, c, ping, nil
}

// waitForAPI polls vmm.ping until the new VMM answers, it exits, or the start timeout passes.
func (d *Driver) waitForAPI(ctx context.Context, h host.Host, c *client, pid int, cfg vmm.Config) (vmmPing, error) {
	ctx, cancel := context.WithTimeout(ctx, d.startTimeout())
	defer cancel()
	var ping vmmPing
	var pingErr error
	err := poll.Until(ctx, pollInterval, func(ctx context.Context) (bool, error) {
		pingCtx, pingCancel := context.WithTimeout(ctx, time.Second)
		ping, pingErr = c.ping(pingCtx)
		pingCancel()
		if pingErr == nil {
			return true, nil
		}
		if alive, aliveErr := h.ProcessAlive(ctx, pid, c.socket); aliveErr == nil && !alive {
			return false, fmt.Errorf("cloud-hypervisor (pid %d) exited before answering on %s: %s", pid, c.socket, logTail(ctx, h, cfg))
		}
		return false, nil
	})
	if poll.Stopped(err) {
		return vmmPing{}, fmt.Errorf("cloud-hypervisor (pid %d) did not answer on %s within %v: %w", pid, c.socket, d.startTimeout(), pingErr)
	}
	if err != nil {
		return vmmPing{}, err
	}
	return ping, nil
}

// logTail is the end of the VMM's output, where the reason it exited is.
func logTail(ctx context.Context, h host.Host, cfg vmm.Config) string {
	data, err := h.ReadFile(ctx, logPath(cfg))
	if err != nil {
		return "no output (" + err.Error() + ")"
	}
	lines, _ := logtail.Lines(strings.TrimSpace(string(data)), 20)
	return strings.Join(lines, "\n")
}

// checkVersion ties the VMM that answered to the binary whose version was read, and refuses
// releases older than MinMajor.
func checkVersion(binaryVersion string, ping vmmPing) error {
	major, err := majorVersion(ping.Version)
	if err != nil {
		return err
	}
	if major < MinMajor {
		return fmt.Errorf("cloud-hypervisor %s is too old: the driver needs v%d or later", ping.Version, MinMajor)
	}
	if ping.BuildVersion != "" && ping.BuildVersion != binaryVersion {
		return fmt.Errorf("the VMM reports build %s but the binary's --version says %s", ping.BuildVersion, binaryVersion)
	}
	return nil
}

// abandon kills a VMM this driver started and cleans up after it, even when ctx is done.
func (d *Driver) abandon(ctx context.Context, h host.Host, cfg vmm.Config, pid int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	sock := socketPath(cfg)
	_ = h.Signal(ctx, pid, syscall.SIGKILL)
	_ = waitGone(ctx, h, pid, sock)
	// A killed VMM leaves its socket behind.
	_ = h.Remove(ctx, sock)
	_ = waitRelay(ctx, h, cfg)
}

// waitGone waits until process pid (0: unknown) has exited and its socket is gone; a socket left
// by a process that died is removed.
func waitGone(ctx context.Context, h host.Host, pid int, sock string) error {
	gone := func(ctx context.Context) (bool, error) { // without a pid, the socket tells
		_, err := h.Stat(ctx, sock)
		return errors.Is(err, fs.ErrNotExist), nil
	}
	if pid > 0 {
		gone = host.Exited(h, pid, sock)
	}
	err := poll.Until(ctx, pollInterval, gone)
	if poll.Stopped(err) {
		return fmt.Errorf("cloud-hypervisor (pid %d) is still running: %w", pid, err)
	}
	if err != nil || pid == 0 {
		return err
	}
	if err := h.Remove(ctx, sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// checkConfig refuses a Config Cloud Hypervisor cannot run, naming the value and what is allowed.
func checkConfig(cfg vmm.Config) error {
	switch {
	case !filepath.IsAbs(cfg.Dir):
		return fmt.Errorf("instance directory %q is not an absolute path", cfg.Dir)
	case len(socketPath(cfg)) > maxSocketPath:
		return fmt.Errorf("instance directory %q is too long: the API socket path must fit in %d bytes", cfg.Dir, maxSocketPath)
	case cfg.Accelerator != "" && cfg.Accelerator != "kvm":
		return fmt.Errorf("accelerator %q is not supported by cloud-hypervisor: it runs on kvm only", cfg.Accelerator)
	case !filepath.IsAbs(cfg.ConsoleLog):
		return fmt.Errorf("console log %q is not an absolute path", cfg.ConsoleLog)
	}
	return nil
}

// vmConfigFor is the vm.create body for cfg.
func vmConfigFor(cfg vmm.Config) (vmConfig, error) {
	if err := checkConfig(cfg); err != nil {
		return vmConfig{}, err
	}
	switch {
	case cfg.Kernel == "":
		return vmConfig{}, errors.New("no kernel: cloud-hypervisor boots a PVH vmlinux")
	case cfg.VCPUs < 1:
		return vmConfig{}, fmt.Errorf("vcpus %d: at least 1 is needed", cfg.VCPUs)
	case cfg.MaxVCPUs != 0 && (cfg.MaxVCPUs < cfg.VCPUs || cfg.MaxVCPUs > maxVCPUs):
		return vmConfig{}, fmt.Errorf("max vcpus %d: it must be 0 or from vcpus (%d) to %d", cfg.MaxVCPUs, cfg.VCPUs, maxVCPUs)
	case cfg.MemoryBytes <= 0:
		return vmConfig{}, fmt.Errorf("memory %d bytes: it must be positive", cfg.MemoryBytes)
	case cfg.HotplugBytes < 0 || cfg.HotplugBytes%hotplugAlign != 0:
		return vmConfig{}, fmt.Errorf("hotplug memory %d bytes: it must be a multiple of 128 MiB (virtio-mem)", cfg.HotplugBytes)
	}
	c := vmConfig{
		Payload: payloadConfig{Kernel: cfg.Kernel, Initramfs: cfg.Initrd, Cmdline: cfg.Cmdline},
		Cpus:    cpusConfig{BootVcpus: cfg.VCPUs, MaxVcpus: max(cfg.VCPUs, cfg.MaxVCPUs)}, // vm.resize: 1 to max_vcpus
		Memory:  memoryConfig{Size: cfg.MemoryBytes},
		Rng:     rngConfig{Src: "/dev/urandom"},
		// Not ConsoleLog itself: CH truncates its serial file (see console.go).
		Serial:  consoleConfig{Mode: "File", File: SerialPath(cfg)},
		Console: consoleConfig{Mode: "Off"},
		// Free page reporting keeps snapshots small; deflating on OOM keeps the guest alive.
		Balloon: &balloonConfig{Size: 0, DeflateOnOom: true, FreePageReporting: true},
		// The VMM confines itself to the config's files and the instance directory.
		LandlockEnable: true,
		LandlockRules:  landlockRules(cfg),
	}
	if cfg.HotplugBytes > 0 {
		c.Memory.HotplugMethod = "VirtioMem"
		c.Memory.HotplugSize = cfg.HotplugBytes
	}
	if n := cfg.Net; n != nil {
		if n.Tap == "" {
			return vmConfig{}, errors.New("network interface without a TAP device name")
		}
		if _, err := net.ParseMAC(n.MAC); n.MAC != "" && err != nil {
			return vmConfig{}, fmt.Errorf("network interface MAC %q: %w", n.MAC, err)
		}
		c.Net = []netConfig{{Tap: n.Tap, Mac: n.MAC}}
	}
	for _, disk := range cfg.Disks {
		if disk.Path == "" {
			return vmConfig{}, fmt.Errorf("disk %q has no path", disk.Serial)
		}
		if len(disk.Serial) > maxSerial {
			return vmConfig{}, fmt.Errorf("disk serial %q is %d bytes: at most %d fit", disk.Serial, len(disk.Serial), maxSerial)
		}
		c.Disks = append(c.Disks, diskConfig{Path: disk.Path, Readonly: disk.ReadOnly, Serial: disk.Serial, ImageType: "Raw"})
	}
	return c, nil
}
