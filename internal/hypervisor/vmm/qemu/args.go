package qemu

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Binary is the QEMU system emulator the driver runs, found on the host's PATH.
const Binary = "qemu-system-x86_64"

// Files the driver keeps in the instance directory (cfg.Dir).
const (
	socketName = "qmp.sock"
	logName    = "qemu-stdout.log"
	// QEMU locks its pid file, so a second QEMU for the same directory refuses to start.
	pidName = "qemu.pid"
)

const mib = 1 << 20

// hotplugBlock is virtio-mem's block size on x86: hot-pluggable memory and every size asked of it
// are multiples of it.
const hotplugBlock = 2 * mib

// maxSerial is the longest serial virtio-blk passes to the guest; QEMU silently cuts longer ones.
const maxSerial = 20

// maxIfName is the longest Linux interface name, which a TAP device's is.
const maxIfName = 15

// maxSocketPath is the longest path a unix socket address holds on Linux.
const maxSocketPath = 107

// Device ids that QMP commands name.
const (
	hotplugDevice  = "vmem0"
	hotplugBackend = "mem-hp"
)

// ErrInvalidConfig means a vmm.Config that QEMU cannot run as given.
var ErrInvalidConfig = errors.New("invalid VM config for QEMU")

// commandLine is QEMU's argv for cfg. incoming leaves the VM waiting for a migration stream
// (a snapshot) instead of booting, paused once it has arrived.
func commandLine(cfg vmm.Config, incoming bool) ([]string, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	accel, err := acceleratorArgs(cfg.Accelerator)
	if err != nil {
		return nil, err
	}
	args := []string{Binary,
		"-nodefaults", "-no-user-config", "-display", "none",
		"-no-reboot", // a guest power-off, reboot or panic ends QEMU
	}
	args = append(args, sandboxArgs...)
	args = append(args, machineArgs(cfg)...)
	args = append(args, accel...)
	args = append(args, "-smp", smpArg(cfg))
	if !incoming {
		args = append(args, plugArgs(bootPlugged(cfg))...) // a restore has the snapshot's instead
	}
	args = append(args, memoryArgs(cfg)...)
	args = append(args, "-kernel", cfg.Kernel)
	if cfg.Initrd != "" {
		args = append(args, "-initrd", cfg.Initrd)
	}
	if cfg.Cmdline != "" {
		args = append(args, "-append", cfg.Cmdline)
	}
	for i, d := range cfg.Disks {
		// werror=enospc: a write that finds the host's filesystem full pauses the guest (run state
		// io-error) and is retried on cont, instead of failing in the guest; other errors reach it.
		drive := fmt.Sprintf("file=%s,if=none,id=%s,format=raw,readonly=%s,cache=writeback,werror=enospc,rerror=report",
			optValue(d.Path), driveID(i), onOff(d.ReadOnly))
		device := "virtio-blk-pci,drive=" + driveID(i)
		if d.Serial != "" {
			device += ",serial=" + optValue(d.Serial)
		}
		args = append(args, "-drive", drive, "-device", device)
	}
	if cfg.Net != nil {
		// script=no: the manager has made the TAP and attached it to the bridge already.
		args = append(args,
			"-netdev", "tap,id=net0,ifname="+optValue(cfg.Net.Tap)+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=net0,mac="+cfg.Net.MAC)
	}
	args = append(args,
		"-chardev", "file,id=con0,path="+optValue(cfg.ConsoleLog)+",append=on",
		"-serial", "chardev:con0",
		"-chardev", "socket,id=qmp0,path="+optValue(socketPath(cfg))+",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
		"-pidfile", path.Join(cfg.Dir, pidName),
		"-device", "virtio-rng-pci",
		// Without deflate-on-oom a guest under memory pressure can panic instead of taking pages back.
		"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting="+onOff(cfg.RAMFile == "")+",deflate-on-oom=on",
	)
	if incoming {
		args = append(args, "-incoming", "defer", "-S")
	}
	return args, nil
}

func acceleratorArgs(accel string) ([]string, error) {
	switch accel {
	case "kvm":
		return []string{"-accel", "kvm", "-cpu", "host"}, nil
	case "tcg":
		return []string{"-accel", "tcg", "-cpu", "max"}, nil
	}
	return nil, fmt.Errorf("%w: accelerator %q is not one of kvm, tcg", ErrInvalidConfig, accel)
}

func memoryArgs(cfg vmm.Config) []string {
	var ram []string
	if cfg.RAMFile != "" {
		ram = ramFileArgs(cfg)
	}
	if cfg.HotplugBytes == 0 {
		return append(ram, "-m", fmt.Sprintf("size=%dM", cfg.MemoryBytes/mib))
	}
	return append(ram,
		"-m", fmt.Sprintf("size=%dM,slots=1,maxmem=%dM", cfg.MemoryBytes/mib, (cfg.MemoryBytes+cfg.HotplugBytes)/mib),
		"-object", fmt.Sprintf("memory-backend-ram,id=%s,size=%dM", hotplugBackend, cfg.HotplugBytes/mib),
		"-device", fmt.Sprintf("virtio-mem-pci,id=%s,memdev=%s,requested-size=0", hotplugDevice, hotplugBackend),
	)
}

func validate(cfg vmm.Config) error {
	paths := []struct{ name, value string }{
		{"dir", cfg.Dir}, {"kernel", cfg.Kernel}, {"console log", cfg.ConsoleLog},
	}
	if cfg.Initrd != "" {
		paths = append(paths, struct{ name, value string }{"initrd", cfg.Initrd})
	}
	for i, d := range cfg.Disks {
		paths = append(paths, struct{ name, value string }{fmt.Sprintf("disk %d", i), d.Path})
	}
	// QEMU resolves relative paths against its own working directory, which is not the caller's.
	for _, p := range paths {
		if !path.IsAbs(p.value) {
			return fmt.Errorf("%w: %s path %q must be absolute", ErrInvalidConfig, p.name, p.value)
		}
	}
	if err := validateRAMFile(cfg); err != nil {
		return err
	}
	if sock := socketPath(cfg); len(sock) > maxSocketPath {
		return fmt.Errorf("%w: QMP socket path %q is %d bytes, longer than the %d a unix socket takes; use a shorter directory", ErrInvalidConfig, sock, len(sock), maxSocketPath)
	}
	if cfg.VCPUs < 1 {
		return fmt.Errorf("%w: vcpus %d must be at least 1", ErrInvalidConfig, cfg.VCPUs)
	}
	if cfg.MaxVCPUs != 0 && (cfg.MaxVCPUs < cfg.VCPUs || cfg.MaxVCPUs > maxVCPUs) {
		return fmt.Errorf("%w: max vcpus %d must be 0 or from vcpus (%d) to %d", ErrInvalidConfig, cfg.MaxVCPUs, cfg.VCPUs, maxVCPUs)
	}
	if cfg.MemoryBytes < mib || cfg.MemoryBytes%mib != 0 {
		return fmt.Errorf("%w: memory %d bytes must be a positive whole number of MiB", ErrInvalidConfig, cfg.MemoryBytes)
	}
	if cfg.HotplugBytes < 0 || cfg.HotplugBytes%hotplugBlock != 0 {
		return fmt.Errorf("%w: hotplug memory %d bytes must be 0 or a positive multiple of 2 MiB", ErrInvalidConfig, cfg.HotplugBytes)
	}
	if n := cfg.Net; n != nil {
		if n.Tap == "" || len(n.Tap) > maxIfName || strings.ContainsAny(n.Tap, "/: \t\n") {
			return fmt.Errorf("%w: TAP device name %q must be 1 to %d bytes without '/', ':' or white space", ErrInvalidConfig, n.Tap, maxIfName)
		}
		if hw, err := net.ParseMAC(n.MAC); err != nil || len(hw) != 6 || hw.String() != n.MAC {
			return fmt.Errorf("%w: MAC address %q must be six lower-case hex bytes separated by ':'", ErrInvalidConfig, n.MAC)
		}
	}
	for i, d := range cfg.Disks {
		if len(d.Serial) > maxSerial {
			return fmt.Errorf("%w: disk %d serial %q is longer than %d bytes, which the guest would see cut", ErrInvalidConfig, i, d.Serial, maxSerial)
		}
	}
	return nil
}

// optValue escapes a value inside a QEMU option list, where a comma separates options.
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func socketPath(cfg vmm.Config) string { return path.Join(cfg.Dir, socketName) }

// driveID names the block backend of cfg.Disks[i] in QMP.
func driveID(i int) string { return "disk" + strconv.Itoa(i) }
