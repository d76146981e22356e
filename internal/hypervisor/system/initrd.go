package system

import (
	"bytes"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/gzip"
)

// ErrBadBusybox means the configured busybox cannot run in the initrd.
var ErrBadBusybox = errors.New("unusable busybox")

//go:embed guestinit.sh
var guestInitTemplate string

// defaultPath is where the init looks for a program named without a '/' when the configured
// environment has no PATH (the one container runtimes use).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Paths inside the initrd.
const (
	initrdBusybox     = "bin/busybox"
	initrdModulesList = "etc/modules.load" // absolute .ko paths, dependencies first, one a line
	initrdPowerButton = "etc/acpi/PWRF/00000080"
	initrdHotplug     = "bin/hypeman-hotplug"
)

// initrdDirs are the directories the init expects; mount points for the instance's disks and
// the merged root live under /mnt.
var initrdDirs = []string{"bin", "dev", "etc", "proc", "run", "sys", "tmp", "mnt/rootfs", "mnt/overlay", "mnt/config", "mnt/root"}

// guestInit is the init script with the boot contract's values filled in.
func guestInit() string {
	return strings.NewReplacer(
		"@SERIAL_ROOTFS@", SerialRootfs,
		"@SERIAL_OVERLAY@", SerialOverlay,
		"@SERIAL_CONFIG@", SerialConfig,
		"@CONFIG_ARGV_DIR@", ConfigArgvDir,
		"@CONFIG_ENV_DIR@", ConfigEnvDir,
		"@CONFIG_WORKDIR@", ConfigWorkdir,
		"@CONFIG_HOSTNAME@", ConfigHostname,
		"@CONFIG_NET_ADDRESS@", ConfigNetAddress,
		"@CONFIG_NET_GATEWAY@", ConfigNetGateway,
		"@CONFIG_NET_DNS@", ConfigNetDNS,
		"@CONFIG_NET_MAC@", ConfigNetMAC,
		"@CONFIG_VOLUMES_DIR@", ConfigVolumesDir,
		"@CONFIG_VOLUME_SERIAL@", ConfigVolumeSerial,
		"@CONFIG_VOLUME_PATH@", ConfigVolumePath,
		"@CONFIG_VOLUME_READONLY@", ConfigVolumeReadOnly,
		"@MARKER_STARTED@", MarkerStarted,
		"@MARKER_EXITED@", MarkerExited,
		"@MARKER_ERROR@", MarkerError,
		"@DEFAULT_PATH@", defaultPath,
		"@MODULES_LIST@", "/"+initrdModulesList,
		"@HOTPLUG_HANDLER@", "/"+initrdHotplug,
	).Replace(guestInitTemplate)
}

// powerButtonHandler is run by busybox acpid when the VMM presses the ACPI power button: it asks
// the program to stop, as a container runtime's stop does, and the init powers off once it has
// exited. Before the program has started there is nothing to stop, so it powers off at once.
const powerButtonHandler = `#!/bin/busybox sh
if read -r pid </run/program.pid; then
	kill -TERM "$pid"
else
	sync
	poweroff -f
fi
`

// hotplugHandler is run by busybox uevent for every device event the kernel sends: a vCPU the VMM
// adds (vm.SetVCPUs) is brought online, as udev's rule does on a distribution. It runs outside the
// merged root, with the initrd's /sys.
const hotplugHandler = `#!/bin/busybox sh
[ "$SUBSYSTEM" = cpu ] && [ "$ACTION" = add ] && [ -n "$DEVPATH" ] || exit 0
online=/sys$DEVPATH/online
[ -w "$online" ] && read -r state <"$online" && [ "$state" = 0 ] && echo 1 >"$online"
exit 0
`

// checkBusybox rejects a busybox that needs a dynamic loader (the initrd has no libraries) or
// that is built for another machine than the kernel.
func checkBusybox(data []byte, machine elf.Machine) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: not an ELF executable: %v", ErrBadBusybox, err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		interp := make([]byte, p.Filesz)
		if _, err := p.ReadAt(interp, 0); err != nil {
			return fmt.Errorf("%w: read its interpreter: %v", ErrBadBusybox, err)
		}
		return fmt.Errorf("%w: it is dynamically linked (interpreter %s) and the initrd has no libraries; use a static busybox (Debian: busybox-static)",
			ErrBadBusybox, bytes.TrimRight(interp, "\x00"))
	}
	if f.Machine != machine {
		return fmt.Errorf("%w: it is built for %s, the kernel for %s", ErrBadBusybox, f.Machine, machine)
	}
	return nil
}

// initrdFile is one regular file of the initrd.
type initrdFile struct {
	name string // relative, no leading '/'
	mode cpio.FileMode
	data []byte
}

// buildInitrd writes a gzip-compressed cpio (newc) archive of dirs and files. The same input
// gives the same bytes (fixed timestamps and owners), so the initrd's hash names its content.
func buildInitrd(dirs []string, files []initrdFile) ([]byte, error) {
	all := map[string]bool{}
	for _, d := range dirs {
		addParents(all, d+"/x")
	}
	for _, f := range files {
		addParents(all, f.name)
	}
	sortedDirs := make([]string, 0, len(all))
	for d := range all {
		sortedDirs = append(sortedDirs, d)
	}
	sort.Strings(sortedDirs) // a parent sorts before its children
	files = append([]initrdFile(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })

	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	w := cpio.NewWriter(zw)
	inode := int64(0)
	write := func(h *cpio.Header, data []byte) error {
		inode++
		h.Inode = inode
		if err := w.WriteHeader(h); err != nil {
			return fmt.Errorf("cpio %s: %w", h.Name, err)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("cpio %s: %w", h.Name, err)
		}
		return nil
	}
	for _, d := range sortedDirs {
		if err := write(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755, Links: 2}, nil); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		if err := write(&cpio.Header{Name: f.name, Mode: cpio.TypeReg | f.mode, Links: 1, Size: int64(len(f.data))}, f.data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// addParents records every directory above name.
func addParents(dirs map[string]bool, name string) {
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		dirs[d] = true
	}
}
