package chstandin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// The VM configuration is kept as the JSON object the client sent, with CH's defaults filled in,
// so that vm.info and config.json echo every field (unknown ones included) as the real server's
// serde structs would. The typed shapes below exist only to refuse what serde refuses: wrong
// types, negative sizes, missing required fields and unknown enum variants.

type object = map[string]any

type vmConfigShape struct {
	Cpus             *cpusShape          `json:"cpus"`
	Memory           *memoryShape        `json:"memory"`
	Payload          *payloadShape       `json:"payload"`
	Disks            []diskShape         `json:"disks"`
	Net              []netShape          `json:"net"`
	Rng              *rngShape           `json:"rng"`
	Balloon          *balloonShape       `json:"balloon"`
	Fs               []fsShape           `json:"fs"`
	Pmem             []pmemShape         `json:"pmem"`
	Serial           *consoleShape       `json:"serial"`
	Console          *consoleShape       `json:"console"`
	DebugConsole     *consoleShape       `json:"debug_console"`
	Devices          []deviceShape       `json:"devices"`
	UserDevices      []userDeviceShape   `json:"user_devices"`
	Vdpa             []vdpaShape         `json:"vdpa"`
	Vsock            *vsockShape         `json:"vsock"`
	GenericVhostUser []genericVhostShape `json:"generic_vhost_user"`
	Iommu            *bool               `json:"iommu"`
	Watchdog         *bool               `json:"watchdog"`
	Pvpanic          *bool               `json:"pvpanic"`
	LandlockEnable   *bool               `json:"landlock_enable"`
	LandlockRules    []landlockShape     `json:"landlock_rules"`
}

type landlockShape struct {
	Path   *string `json:"path"`
	Access *string `json:"access"`
}

type cpusShape struct {
	BootVcpus      *uint32 `json:"boot_vcpus"`
	MaxVcpus       *uint32 `json:"max_vcpus"`
	KvmHyperv      *bool   `json:"kvm_hyperv"`
	MaxPhysBits    *uint8  `json:"max_phys_bits"`
	Nested         *bool   `json:"nested"`
	CoreScheduling *string `json:"core_scheduling"`
}

type memoryShape struct {
	Size           *uint64     `json:"size"`
	HotplugSize    *uint64     `json:"hotplug_size"`
	HotpluggedSize *uint64     `json:"hotplugged_size"`
	HotplugMethod  *string     `json:"hotplug_method"`
	Mergeable      *bool       `json:"mergeable"`
	Shared         *bool       `json:"shared"`
	Hugepages      *bool       `json:"hugepages"`
	HugepageSize   *uint64     `json:"hugepage_size"`
	Prefault       *bool       `json:"prefault"`
	Reserve        *bool       `json:"reserve"`
	Thp            *bool       `json:"thp"`
	Zones          []zoneShape `json:"zones"`
}

type zoneShape struct {
	ID          *string `json:"id"`
	Size        *uint64 `json:"size"`
	HotplugSize *uint64 `json:"hotplug_size"`
}

type payloadShape struct {
	Kernel    *string `json:"kernel"`
	Firmware  *string `json:"firmware"`
	Cmdline   *string `json:"cmdline"`
	Initramfs *string `json:"initramfs"`
}

type diskShape struct {
	Path            *string `json:"path"`
	Readonly        *bool   `json:"readonly"`
	Direct          *bool   `json:"direct"`
	NumQueues       *uint16 `json:"num_queues"`
	QueueSize       *uint16 `json:"queue_size"`
	VhostUser       *bool   `json:"vhost_user"`
	ID              *string `json:"id"`
	Serial          *string `json:"serial"`
	ImageType       *string `json:"image_type"`
	LockGranularity *string `json:"lock_granularity"`
	PciSegment      *uint16 `json:"pci_segment"`
}

type netShape struct {
	Tap       *string `json:"tap"`
	IP        *string `json:"ip"`
	Mask      *string `json:"mask"`
	Mac       *string `json:"mac"`
	Mtu       *uint16 `json:"mtu"`
	NumQueues *uint16 `json:"num_queues"`
	QueueSize *uint16 `json:"queue_size"`
	VhostMode *string `json:"vhost_mode"`
	ID        *string `json:"id"`
}

type rngShape struct {
	Src *string `json:"src"`
	ID  *string `json:"id"`
}

type balloonShape struct {
	Size              *uint64 `json:"size"`
	DeflateOnOom      *bool   `json:"deflate_on_oom"`
	FreePageReporting *bool   `json:"free_page_reporting"`
	ID                *string `json:"id"`
}

type fsShape struct {
	Tag       *string `json:"tag"`
	Socket    *string `json:"socket"`
	NumQueues *uint16 `json:"num_queues"`
	QueueSize *uint16 `json:"queue_size"`
	ID        *string `json:"id"`
}

type pmemShape struct {
	File *string `json:"file"`
	Size *uint64 `json:"size"`
	ID   *string `json:"id"`
}

type consoleShape struct {
	Mode   *string `json:"mode"`
	File   *string `json:"file"`
	Socket *string `json:"socket"`
}

type deviceShape struct {
	Path *string `json:"path"`
	ID   *string `json:"id"`
}

type userDeviceShape struct {
	Socket *string `json:"socket"`
	ID     *string `json:"id"`
}

type vdpaShape struct {
	Path      *string `json:"path"`
	NumQueues *uint16 `json:"num_queues"`
	ID        *string `json:"id"`
}

type vsockShape struct {
	Cid    *uint32 `json:"cid"`
	Socket *string `json:"socket"`
	ID     *string `json:"id"`
}

type genericVhostShape struct {
	Socket     *string  `json:"socket"`
	QueueSizes []uint16 `json:"queue_sizes"`
	DeviceType *uint32  `json:"device_type"`
	ID         *string  `json:"id"`
}

var consoleModes = []string{"Off", "Pty", "Tty", "File", "Socket", "Null"}

// serdeChecks collects what serde would refuse, in the order it would meet it.
type serdeChecks struct{ err error }

func (c *serdeChecks) required(present bool, field string) {
	if c.err == nil && !present {
		c.err = fmt.Errorf("missing field `%s`", field)
	}
}

func (c *serdeChecks) variant(v *string, allowed ...string) {
	if c.err == nil && v != nil && !slices.Contains(allowed, *v) {
		c.err = fmt.Errorf("unknown variant `%s`, expected one of `%s`", *v, strings.Join(allowed, "`, `"))
	}
}

func (c *serdeChecks) console(con *consoleShape) {
	if con != nil {
		c.required(con.Mode != nil, "mode")
		c.variant(con.Mode, consoleModes...)
	}
}

func (c *serdeChecks) vmConfig(v *vmConfigShape) {
	if v.Cpus != nil {
		c.required(v.Cpus.BootVcpus != nil, "boot_vcpus")
		c.required(v.Cpus.MaxVcpus != nil, "max_vcpus")
		c.variant(v.Cpus.CoreScheduling, "Vm", "Vcpu", "Off")
	}
	if v.Memory != nil {
		c.required(v.Memory.Size != nil, "size")
		c.variant(v.Memory.HotplugMethod, "Acpi", "VirtioMem")
		for _, z := range v.Memory.Zones {
			c.required(z.ID != nil, "id")
			c.required(z.Size != nil, "size")
		}
	}
	for _, d := range v.Disks {
		c.disk(&d)
	}
	for _, n := range v.Net {
		c.net(&n)
	}
	if v.Rng != nil {
		c.required(v.Rng.Src != nil, "src")
	}
	if v.Balloon != nil {
		c.required(v.Balloon.Size != nil, "size")
	}
	for _, f := range v.Fs {
		c.fs(&f)
	}
	for _, p := range v.Pmem {
		c.required(p.File != nil, "file")
	}
	c.console(v.Serial)
	c.console(v.Console)
	c.console(v.DebugConsole)
	for _, d := range v.Devices {
		c.required(d.Path != nil, "path")
	}
	for _, u := range v.UserDevices {
		c.required(u.Socket != nil, "socket")
	}
	for _, d := range v.Vdpa {
		c.required(d.Path != nil, "path")
	}
	if v.Vsock != nil {
		c.vsock(v.Vsock)
	}
	for _, g := range v.GenericVhostUser {
		c.genericVhost(&g)
	}
	for _, r := range v.LandlockRules {
		c.required(r.Path != nil, "path")
		c.required(r.Access != nil, "access")
	}
}

func (c *serdeChecks) disk(d *diskShape) {
	c.variant(d.ImageType, "FixedVhd", "Qcow2", "Raw", "Vhdx", "FlatVmdk", "Unknown")
	c.variant(d.LockGranularity, "ByteRange", "Full")
}

func (c *serdeChecks) net(n *netShape) { c.variant(n.VhostMode, "Client", "Server") }

func (c *serdeChecks) fs(f *fsShape) {
	c.required(f.Tag != nil, "tag")
	c.required(f.Socket != nil, "socket")
}

func (c *serdeChecks) vsock(v *vsockShape) {
	c.required(v.Cid != nil, "cid")
	c.required(v.Socket != nil, "socket")
}

func (c *serdeChecks) genericVhost(g *genericVhostShape) {
	c.required(g.Socket != nil, "socket")
	c.required(g.QueueSizes != nil, "queue_sizes")
	c.required(g.DeviceType != nil, "device_type")
}

// parseObject decodes body into both the typed shape (for serde's checks) and a JSON object.
func parseObject(body []byte, shape any) (object, error) {
	if err := decodeJSON(body, shape); err != nil {
		return nil, err
	}
	var obj object
	if err := decodeJSON(body, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("invalid type: null, expected struct")
	}
	return obj, nil
}

func parseVMConfig(body []byte) (any, error) {
	var shape vmConfigShape
	obj, err := parseObject(body, &shape)
	if err != nil {
		return nil, err
	}
	var c serdeChecks
	c.vmConfig(&shape)
	return obj, c.err
}

// Accessors for the JSON object. Numbers are json.Number when decoded and uint64 when set here.

func objectAt(o object, key string) object {
	v, _ := o[key].(object)
	return v
}

func listAt(o object, key string) []any {
	v, _ := o[key].([]any)
	return v
}

func objectsAt(o object, key string) []object {
	var out []object
	for _, v := range listAt(o, key) {
		if m, ok := v.(object); ok {
			out = append(out, m)
		}
	}
	return out
}

func uintAt(o object, key string) (uint64, bool) {
	switch v := o[key].(type) {
	case json.Number:
		n, err := strconv.ParseUint(string(v), 10, 64)
		return n, err == nil
	case uint64:
		return v, true
	}
	return 0, false
}

func stringAt(o object, key string) (string, bool) {
	v, ok := o[key].(string)
	return v, ok
}

func boolAt(o object, key string) bool {
	v, _ := o[key].(bool)
	return v
}

func setDefault(o object, key string, v any) {
	if _, ok := o[key]; !ok {
		o[key] = v
	}
}

// fillDefaults gives the config the defaults serde fills in on the real server.
func (s *Server) fillDefaults(cfg object) {
	v53 := s.opts.Mode.atLeast53()
	cpus := objectAt(cfg, "cpus")
	if cpus == nil {
		cpus = object{"boot_vcpus": uint64(1), "max_vcpus": uint64(1)}
		cfg["cpus"] = cpus
	}
	setDefault(cpus, "kvm_hyperv", false)
	setDefault(cpus, "max_phys_bits", uint64(46))
	setDefault(cpus, "nested", true)
	setDefault(cpus, "features", object{"amx": false})
	setDefault(cpus, "core_scheduling", "Vm")
	if v53 {
		setDefault(cpus, "profile", "Host")
	}
	mem := objectAt(cfg, "memory")
	if mem == nil {
		mem = object{"size": uint64(512 << 20)}
		cfg["memory"] = mem
	}
	for k, v := range map[string]any{"mergeable": false, "hotplug_method": "Acpi", "shared": false, "hugepages": false, "prefault": false, "thp": true} {
		setDefault(mem, k, v)
	}
	if v53 {
		setDefault(mem, "reserve", false)
	}
	if objectAt(cfg, "rng") == nil {
		cfg["rng"] = object{"src": "/dev/urandom"}
	}
	setDefault(objectAt(cfg, "rng"), "pci_segment", uint64(0))
	setDefault(cfg, "serial", object{"mode": "Null"})
	setDefault(cfg, "console", object{"mode": "Tty"})
	setDefault(objectAt(cfg, "console"), "pci_segment", uint64(0))
	setDefault(cfg, "debug_console", object{"mode": "Off", "iobase": uint64(0xe9)})
	for _, k := range []string{"iommu", "watchdog", "pvpanic", "landlock_enable"} {
		setDefault(cfg, k, false)
	}
	for _, d := range objectsAt(cfg, "disks") {
		fillDiskDefaults(d)
	}
	for _, n := range objectsAt(cfg, "net") {
		fillNetDefaults(n)
	}
	for _, f := range objectsAt(cfg, "fs") {
		setDefault(f, "num_queues", uint64(1))
		setDefault(f, "queue_size", uint64(1024))
	}
	if b := objectAt(cfg, "balloon"); b != nil {
		setDefault(b, "deflate_on_oom", false)
		setDefault(b, "free_page_reporting", false)
	}
	if !v53 {
		// Up to v52 unset optional fields were serialised as null.
		for _, k := range []string{"balloon", "fs", "pmem", "net", "devices", "user_devices", "vdpa", "vsock", "numa", "platform", "tpm", "rate_limit_groups", "pci_segments", "landlock_rules"} {
			setDefault(cfg, k, nil)
		}
		for _, k := range []string{"hotplug_size", "hotplugged_size", "hugepage_size", "zones"} {
			setDefault(mem, k, nil)
		}
		if p := objectAt(cfg, "payload"); p != nil {
			for _, k := range []string{"kernel", "firmware", "cmdline", "initramfs"} {
				setDefault(p, k, nil)
			}
		}
	}
}

func fillDiskDefaults(d object) {
	for k, v := range map[string]any{"readonly": false, "direct": false, "iommu": false, "num_queues": uint64(1), "queue_size": uint64(128), "vhost_user": false, "backing_files": false, "sparse": true, "image_type": "Unknown", "pci_segment": uint64(0)} {
		setDefault(d, k, v)
	}
}

func fillNetDefaults(n object) {
	for k, v := range map[string]any{"iommu": false, "num_queues": uint64(2), "queue_size": uint64(256), "vhost_user": false, "vhost_mode": "Client", "offload_tso": true, "offload_ufo": true, "offload_csum": true, "pci_segment": uint64(0)} {
		setDefault(n, k, v)
	}
}

// configError is a config that fails CH's validation at vm.boot (or add-*).
type configError struct {
	msg       string
	duplicate bool // a duplicate id or path: 409 at head
}

func (e *configError) Error() string { return e.msg }

func invalid(format string, args ...any) *configError {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// ramBytes is the boot RAM: memory.size plus the zones.
func ramBytes(cfg object) uint64 {
	mem := objectAt(cfg, "memory")
	size, _ := uintAt(mem, "size")
	for _, z := range objectsAt(mem, "zones") {
		zs, _ := uintAt(z, "size")
		size += zs
	}
	return size
}

const virtioMemAlign = 128 << 20

// validateConfig is the part of CH's VmConfig::validate that the stand-in models.
func validateConfig(cfg object) *configError {
	payload := objectAt(cfg, "payload")
	kernel, hasKernel := stringAt(payload, "kernel")
	firmware, hasFirmware := stringAt(payload, "firmware")
	switch {
	case payload == nil || !hasKernel && !hasFirmware:
		return invalid("Payload configuration is not bootable: no kernel or firmware")
	case hasKernel && hasFirmware:
		return invalid("Payload configuration is not bootable: both kernel %q and firmware %q", kernel, firmware)
	}
	cpus := objectAt(cfg, "cpus")
	boot, _ := uintAt(cpus, "boot_vcpus")
	maxv, _ := uintAt(cpus, "max_vcpus")
	if boot == 0 || maxv < boot {
		return invalid("Max vCPUs %d lower than boot vCPUs %d", maxv, boot)
	}
	mem := objectAt(cfg, "memory")
	if boolAt(mem, "shared") && boolAt(mem, "mergeable") {
		return invalid("Memory cannot be both shared and mergeable")
	}
	if _, ok := uintAt(mem, "hugepage_size"); ok && !boolAt(mem, "hugepages") {
		return invalid("Hugepage size specified but hugepages not enabled")
	}
	if method, _ := stringAt(mem, "hotplug_method"); method == "VirtioMem" {
		if hs, ok := uintAt(mem, "hotplug_size"); ok && (hs == 0 || hs%virtioMemAlign != 0) {
			return invalid("Invalid virtio-mem hotplug size %d: it must be a non-zero multiple of %d", hs, virtioMemAlign)
		}
	}
	hs, hasHS := uintAt(mem, "hotplug_size")
	if hasHS && hs == 0 {
		return invalid("Memory hotplug size must not be 0")
	}
	if hd, ok := uintAt(mem, "hotplugged_size"); ok && hd > hs {
		return invalid("Hotplugged memory size %d is larger than the hotplug size %d", hd, hs)
	}
	if b := objectAt(cfg, "balloon"); b != nil {
		size, _ := uintAt(b, "size")
		if size >= ramBytes(cfg) {
			return invalid("Balloon size %d is not smaller than the guest RAM %d", size, ramBytes(cfg))
		}
	}
	for _, name := range []string{"serial", "console", "debug_console"} {
		con := objectAt(cfg, name)
		if mode, _ := stringAt(con, "mode"); mode == "File" {
			if _, ok := stringAt(con, "file"); !ok {
				return invalid("Path missing when using file mode for %s", name)
			}
		}
	}
	for _, d := range objectsAt(cfg, "disks") {
		if err := validateDisk(d, boot); err != nil {
			return err
		}
	}
	for _, n := range objectsAt(cfg, "net") {
		if err := validateNet(n, boot); err != nil {
			return err
		}
	}
	if v := objectAt(cfg, "vsock"); v != nil {
		if err := validateVsock(v); err != nil {
			return err
		}
	}
	if err := validateLandlockRules(cfg); err != nil {
		return err
	}
	return validateIDs(cfg)
}

func validateDisk(d object, bootVcpus uint64) *configError {
	if s, _ := stringAt(d, "serial"); len(s) > 20 {
		return invalid("Disk serial %q is %d bytes, more than 20", s, len(s))
	}
	if _, ok := stringAt(d, "path"); !ok && !boolAt(d, "vhost_user") {
		return invalid("Disk path missing")
	}
	if q, ok := uintAt(d, "num_queues"); ok && bootVcpus > 0 && q > bootVcpus {
		return invalid("Number of disk queues %d exceeds the boot vCPUs %d", q, bootVcpus)
	}
	return nil
}

func validateNet(n object, bootVcpus uint64) *configError {
	ip, hasIP := stringAt(n, "ip")
	mask, hasMask := stringAt(n, "mask")
	if hasIP != hasMask {
		return invalid("Net ip and mask must be given together (ip %q, mask %q)", ip, mask)
	}
	if hasIP && (net.ParseIP(ip) == nil || net.ParseIP(mask) == nil) {
		return invalid("Invalid net ip %q or mask %q", ip, mask)
	}
	q, _ := uintAt(n, "num_queues")
	if q < 2 {
		return invalid("Net num_queues %d is less than 2", q)
	}
	if bootVcpus > 0 && q/2 > bootVcpus {
		return invalid("Net num_queues %d needs more than the %d boot vCPUs", q, bootVcpus)
	}
	if mtu, ok := uintAt(n, "mtu"); ok && mtu < 1280 {
		return invalid("Net MTU %d is below the minimum 1280", mtu)
	}
	return nil
}

func validateVsock(v object) *configError {
	if cid, _ := uintAt(v, "cid"); cid < 3 || cid == 1<<32-1 {
		return invalid("Vsock CID %d is reserved (0, 1, 2 and %d are)", cid, uint64(1<<32-1))
	}
	return nil
}

// deviceLists are the config entries that hold devices with ids, in the order CH creates them.
var deviceLists = []struct{ key, prefix string }{
	{"disks", "_disk"}, {"net", "_net"}, {"rng", "_rng"}, {"balloon", "_balloon"}, {"fs", "_fs"},
	{"pmem", "_pmem"}, {"vsock", "_vsock"}, {"devices", "_vfio"}, {"vdpa", "_vdpa"},
	{"user_devices", "_vfio_user"}, {"generic_vhost_user", "_generic_vhost_user"},
}

// devicesOf lists every device object of the config, in creation order.
func devicesOf(cfg object) []object {
	var out []object
	for _, l := range deviceLists {
		if single := objectAt(cfg, l.key); single != nil {
			out = append(out, single)
			continue
		}
		out = append(out, objectsAt(cfg, l.key)...)
	}
	return out
}

func validateIDs(cfg object) *configError {
	seen := map[string]bool{}
	paths := map[string]bool{}
	for _, d := range devicesOf(cfg) {
		if id, ok := stringAt(d, "id"); ok {
			if strings.HasPrefix(id, "__") {
				return invalid("Invalid identifier %q: it must not start with __", id)
			}
			if seen[id] {
				return &configError{msg: fmt.Sprintf("Identifier %s is not unique", id), duplicate: true}
			}
			seen[id] = true
		}
	}
	for _, d := range objectsAt(cfg, "devices") {
		p, _ := stringAt(d, "path")
		if paths[p] {
			return &configError{msg: fmt.Sprintf("Duplicated device path: %s", p), duplicate: true}
		}
		paths[p] = true
	}
	return nil
}
