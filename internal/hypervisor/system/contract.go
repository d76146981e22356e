package system

// The guest boot contract shared by the initrd's init (guestinit.sh) and the manager, which writes
// the config disk and reads the console. See docs/adr/0002-guest-boot-contract.md.

// Disk serials: the init finds each disk by /sys/block/vd*/serial.
const (
	SerialRootfs  = "hypeman-rootfs"
	SerialOverlay = "hypeman-overlay"
	SerialConfig  = "hypeman-config"
)

// VolumeSerialLength is how much of a serial the guest sees: virtio-blk gives it 20 bytes.
const VolumeSerialLength = 20

// VolumeSerial is the serial of a volume's disk: the first 20 characters of its id (a ULID; 10 of
// them are random, so two volumes of one instance differing there is checked, not hoped for).
func VolumeSerial(volumeID string) string {
	if len(volumeID) > VolumeSerialLength {
		return volumeID[:VolumeSerialLength]
	}
	return volumeID
}

// Config disk layout (an erofs image). Each argv item and each environment entry is a file of its
// own holding the raw bytes, so no value is ever parsed by a shell.
//
// The init runs argv[0] as found in the image: along the PATH of the env entries (the default
// PATH when they set none) when it has no '/', else as a path, relative ones from the workdir;
// symbolic links resolve inside the image. A name found on PATH reaches the program as the path
// it was found at. The environment is exactly the env entries, nothing added; standard input is
// /dev/null, standard output and error go to the console. A missing workdir
// is created; an absent or empty one means "/".
const (
	ConfigArgvDir  = "argv"     // argv/0000, argv/0001, …: entrypoint followed by cmd
	ConfigEnvDir   = "env"      // env/0000, …: one KEY=VALUE each
	ConfigWorkdir  = "workdir"  // absolute path inside the image
	ConfigHostname = "hostname" // the instance name
)

// Network settings on the config disk, present only when the instance has a network interface.
// The init finds the interface by its MAC, names it eth0, gives it the address and the default
// route, and writes the name servers into the merged root's /etc/resolv.conf (on the overlay)
// when there are any; without them the image's own file stays. Loopback is always brought up.
const (
	ConfigNetDir     = "net"
	ConfigNetAddress = "net/address" // the instance's address with the subnet's prefix length: 10.100.0.2/16
	ConfigNetGateway = "net/gateway" // the default route's gateway
	ConfigNetDNS     = "net/dns"     // name servers, one per line
	ConfigNetMAC     = "net/mac"     // the interface's MAC address, lower-case
)

// Volumes on the config disk: volumes/0000, volumes/0001, …, one directory per attached volume,
// mounted in that order once the merged root is up and before the network and the program. The
// init finds the disk by its serial, creates the mount path inside the root when missing
// (following links inside the root, as for the workdir) and mounts the ext4 filesystem there,
// read-only (ro,noload) when the readonly file exists. A volume that cannot be mounted is an
// error (MarkerError: "cannot mount volume SERIAL at PATH: why") and the guest powers off: the
// boot fails. Before powering off the init unmounts every volume, so writable ones are clean.
const (
	ConfigVolumesDir     = "volumes"
	ConfigVolumeSerial   = "serial"   // in each volumes/NNNN: the disk's serial (VolumeSerial)
	ConfigVolumePath     = "path"     // the mount path inside the root, exact bytes
	ConfigVolumeReadOnly = "readonly" // present when the volume is mounted read-only
)

// Console markers the init prints, one line each. The ACPI power button (vmm.VM.PowerButton)
// sends SIGTERM to the program; whenever the program ends, the init prints MarkerExited, syncs
// the overlay and powers the guest off.
const (
	MarkerStarted = "[hypeman-init] program started"
	MarkerExited  = "[hypeman-init] program exited " // followed by the decimal exit code
	MarkerError   = "[hypeman-init] error: "         // followed by the reason; the guest then powers off
)
