package cloudhypervisor

// Request and response bodies of the Cloud Hypervisor REST API, written by hand after the
// OpenAPI document in chstandin/openapi/cloud-hypervisor.yaml; api_test.go checks every request
// body the driver builds against it. Responses are decoded leniently: fields this package does
// not know are ignored, and the nulls that servers up to v52 send for unset fields decode as
// zero values.

// vmConfig is VmConfig, the body of vm.create.
type vmConfig struct {
	Payload payloadConfig  `json:"payload"`
	Cpus    cpusConfig     `json:"cpus"`
	Memory  memoryConfig   `json:"memory"`
	Disks   []diskConfig   `json:"disks,omitempty"`
	Net     []netConfig    `json:"net,omitempty"`
	Rng     rngConfig      `json:"rng"`
	Serial  consoleConfig  `json:"serial"`
	Console consoleConfig  `json:"console"`
	Balloon *balloonConfig `json:"balloon,omitempty"`
	// LandlockEnable makes CH sandbox itself at vm.create (and at vm.restore, from the snapshot's
	// copy of this config) to the files of the config and LandlockRules (landlock.go).
	LandlockEnable bool             `json:"landlock_enable"`
	LandlockRules  []landlockConfig `json:"landlock_rules,omitempty"`
}

// landlockConfig is LandlockConfig: a file or directory (and everything beneath it) and the
// access granted there, "r", "w" or "rw".
type landlockConfig struct {
	Path   string `json:"path"`
	Access string `json:"access"`
}

type payloadConfig struct {
	Kernel    string `json:"kernel"`
	Initramfs string `json:"initramfs,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
}

type cpusConfig struct {
	BootVcpus int `json:"boot_vcpus"`
	MaxVcpus  int `json:"max_vcpus"`
}

type memoryConfig struct {
	Size        int64 `json:"size"`
	HotplugSize int64 `json:"hotplug_size,omitempty"`
	// HotpluggedSize is how much virtio-mem memory is plugged; only read from vm.info.
	HotpluggedSize int64  `json:"hotplugged_size,omitempty"`
	HotplugMethod  string `json:"hotplug_method,omitempty"`
}

type diskConfig struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
	Serial   string `json:"serial,omitempty"`
	// ImageType is always sent: autodetection is deprecated since v52 and would let a guest
	// that writes an image header into its raw disk change how the host opens it.
	ImageType string `json:"image_type"`
}

// netConfig is NetConfig: an existing TAP device. No ip/mask: the guest configures itself, and
// from v49 on CH sets no address on the host side unless asked to.
type netConfig struct {
	Tap string `json:"tap"`
	Mac string `json:"mac,omitempty"`
}

type rngConfig struct {
	Src string `json:"src"`
}

// consoleConfig is SerialConfig / ConsoleConfig.
type consoleConfig struct {
	Mode string `json:"mode"`
	File string `json:"file,omitempty"`
}

type balloonConfig struct {
	Size              int64 `json:"size"`
	DeflateOnOom      bool  `json:"deflate_on_oom"`
	FreePageReporting bool  `json:"free_page_reporting"`
}

// vmResize is VmResize, the body of vm.resize.
type vmResize struct {
	DesiredVcpus int   `json:"desired_vcpus,omitempty"`
	DesiredRAM   int64 `json:"desired_ram,omitempty"`
}

// vmSnapshotConfig is VmSnapshotConfig, the body of vm.snapshot.
type vmSnapshotConfig struct {
	DestinationURL string `json:"destination_url"`
}

// restoreConfig is RestoreConfig, the body of vm.restore. It carries no field newer than v51:
// `resume` and `memory_restore_mode` (v52) would be dropped silently by an older server, and the
// driver's contract is to leave a restored guest Paused anyway.
type restoreConfig struct {
	SourceURL string `json:"source_url"`
	Prefault  bool   `json:"prefault"`
}

// lazyRestoreConfig is RestoreConfig for an on-demand restore (v52 on, which is checked first:
// an older server would drop both fields silently and copy the memory in). It never carries
// prefault, which CH refuses together with OnDemand.
type lazyRestoreConfig struct {
	SourceURL         string `json:"source_url"`
	MemoryRestoreMode string `json:"memory_restore_mode"`
	Resume            bool   `json:"resume"`
}

// vmInfo is the part of VmInfo the driver reads.
type vmInfo struct {
	State  string `json:"state"`
	Config struct {
		Cpus    cpusConfig     `json:"cpus"`
		Memory  memoryConfig   `json:"memory"`
		Balloon *balloonConfig `json:"balloon"`
	} `json:"config"`
	// MemoryActualSize is what the guest has: boot size + plugged virtio-mem − balloon.
	MemoryActualSize int64 `json:"memory_actual_size"`
}

// vmmPing is VmmPingResponse. Before v32 only Version is present.
type vmmPing struct {
	BuildVersion string `json:"build_version"`
	Version      string `json:"version"`
	Pid          int    `json:"pid"`
}
