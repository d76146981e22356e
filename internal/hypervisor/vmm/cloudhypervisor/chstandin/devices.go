package chstandin

import (
	"fmt"
	"net/http"
	"os"
	"slices"
)

// deviceManager is the booted VM's device manager: the global id counter (_disk0, _net1, …) and
// the PCI slots.
type deviceManager struct {
	nextID   int
	nextSlot int
	bdf      map[string]string // device id → PCI address
	order    []string
}

func newDeviceManager(cfg object) *deviceManager {
	dm := &deviceManager{nextSlot: 1, bdf: map[string]string{}}
	for _, l := range deviceLists {
		if single := objectAt(cfg, l.key); single != nil {
			dm.attach(cfg, single, l.prefix)
			continue
		}
		for _, d := range objectsAt(cfg, l.key) {
			dm.attach(cfg, d, l.prefix)
		}
	}
	return dm
}

// attach gives dev an id (unless it has one) and a PCI slot.
func (dm *deviceManager) attach(cfg, dev object, prefix string) (id, bdf string) {
	id, ok := stringAt(dev, "id")
	if !ok {
		for {
			id = fmt.Sprintf("%s%d", prefix, dm.nextID)
			dm.nextID++
			if findDevice(cfg, id) == nil {
				break
			}
		}
		dev["id"] = id
	}
	bdf = fmt.Sprintf("0000:00:%02x.0", dm.nextSlot)
	dm.nextSlot++
	dm.bdf[id] = bdf
	dm.order = append(dm.order, id)
	return id, bdf
}

func (dm *deviceManager) detach(id string) {
	delete(dm.bdf, id)
	dm.order = slices.DeleteFunc(dm.order, func(o string) bool { return o == id })
}

func (dm *deviceManager) tree() map[string]any {
	t := map[string]any{}
	for _, id := range dm.order {
		t[id] = map[string]any{"id": id, "resources": []any{}, "children": []string{}, "pci_bdf": dm.bdf[id]}
	}
	return t
}

func (dm *deviceManager) counters(cfg object) map[string]map[string]uint64 {
	c := map[string]map[string]uint64{}
	for _, d := range objectsAt(cfg, "disks") {
		id, _ := stringAt(d, "id")
		c[id] = map[string]uint64{"read_bytes": 0, "write_bytes": 0, "read_ops": 0, "write_ops": 0}
	}
	for _, n := range objectsAt(cfg, "net") {
		id, _ := stringAt(n, "id")
		c[id] = map[string]uint64{"rx_bytes": 0, "rx_frames": 0, "tx_bytes": 0, "tx_frames": 0}
	}
	return c
}

// findDevice returns the device of cfg with the given id.
func findDevice(cfg object, id string) object {
	for _, d := range devicesOf(cfg) {
		if got, _ := stringAt(d, "id"); got == id {
			return d
		}
	}
	return nil
}

// deviceKind is one vm.add-* endpoint.
type deviceKind struct {
	route  string // vm.add-<route>
	key    string // the VmConfig field that holds such devices
	prefix string // auto id prefix
	single bool   // vsock: one object rather than a list
	act    string // the ApiError message
	parse  func([]byte) (any, error)
	fill   func(object)
	check  func(dev object, bootVcpus uint64) *configError
}

func parseDevice[T any](check func(*serdeChecks, *T)) func([]byte) (any, error) {
	return func(body []byte) (any, error) {
		var shape T
		obj, err := parseObject(body, &shape)
		if err != nil {
			return nil, err
		}
		var c serdeChecks
		check(&c, &shape)
		return obj, c.err
	}
}

var deviceKinds = []deviceKind{
	{route: "disk", key: "disks", prefix: "_disk", act: "The disk could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, d *diskShape) { c.disk(d) }), fill: fillDiskDefaults, check: validateDisk},
	{route: "net", key: "net", prefix: "_net", act: "The network device could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, n *netShape) { c.net(n) }), fill: fillNetDefaults, check: validateNet},
	{route: "fs", key: "fs", prefix: "_fs", act: "The fs could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, f *fsShape) { c.fs(f) })},
	{route: "pmem", key: "pmem", prefix: "_pmem", act: "The pmem device could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, p *pmemShape) { c.required(p.File != nil, "file") })},
	{route: "vsock", key: "vsock", prefix: "_vsock", single: true, act: "The vsock device could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, v *vsockShape) { c.vsock(v) }),
		check: func(v object, _ uint64) *configError { return validateVsock(v) }},
	{route: "vdpa", key: "vdpa", prefix: "_vdpa", act: "The vDPA device could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, d *vdpaShape) { c.required(d.Path != nil, "path") })},
	{route: "device", key: "devices", prefix: "_vfio", act: "The device could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, d *deviceShape) { c.required(d.Path != nil, "path") })},
	{route: "user-device", key: "user_devices", prefix: "_vfio_user", act: "The user device could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, u *userDeviceShape) { c.required(u.Socket != nil, "socket") })},
	{route: "generic-vhost-user", key: "generic_vhost_user", prefix: "_generic_vhost_user", act: "The generic vhost-user device could not be added to the VM",
		parse: parseDevice(func(c *serdeChecks, g *genericVhostShape) { c.genericVhost(g) })},
}

// add cold-adds the device to a created VM (204) or hot-plugs it into a booted one (200 with its
// id and PCI address).
func (k deviceKind) add(s *Server, req any) response {
	if s.state() == stateNone {
		return s.notCreated(k.act, msgNotCreated)
	}
	dev := req.(object)
	if k.fill != nil {
		k.fill(dev)
	}
	cfg := s.m.config
	bootVcpus, _ := uintAt(objectAt(cfg, "cpus"), "boot_vcpus")
	if k.check != nil {
		if err := k.check(dev, bootVcpus); err != nil {
			return s.fromAPI(s.opts.Mode.validationStatus(false), k.act, err.msg)
		}
	}
	if k.single && objectAt(cfg, k.key) != nil {
		return s.fromAPI(s.opts.Mode.validationStatus(false), k.act, "Too many "+k.route+" devices: only one is supported")
	}
	// Validate the config as it would be with the device added, then add it for real.
	trial := shallowCopy(cfg)
	appendDevice(trial, k, dev)
	if err := validateIDs(trial); err != nil {
		return s.fromAPI(s.opts.Mode.validationStatus(err.duplicate), k.act, err.msg)
	}
	if s.m.vm == nil {
		appendDevice(cfg, k, dev)
		return noContent()
	}
	if k.key == "disks" || k.key == "pmem" {
		key := "path"
		if k.key == "pmem" {
			key = "file"
		}
		if p, ok := stringAt(dev, key); ok {
			if _, err := os.Stat(p); err != nil {
				return s.fromAPI(http.StatusInternalServerError, k.act, "Failed to hotplug device", err.Error())
			}
			if err := s.allow(p, true, true); err != nil {
				return s.fromAPI(http.StatusInternalServerError, k.act, "Failed to hotplug device", osError(err))
			}
		}
	}
	appendDevice(cfg, k, dev)
	id, bdf := s.m.vm.devices.attach(cfg, dev, k.prefix)
	return jsonResponse(http.StatusOK, map[string]string{"id": id, "bdf": bdf})
}

func shallowCopy(o object) object {
	c := make(object, len(o))
	for k, v := range o {
		c[k] = v
	}
	return c
}

func appendDevice(cfg object, k deviceKind, dev object) {
	if k.single {
		cfg[k.key] = dev
		return
	}
	list := append([]any(nil), listAt(cfg, k.key)...)
	cfg[k.key] = append(list, dev)
}

type removeDeviceRequest struct {
	ID *string `json:"id"`
}

func parseRemoveDevice(body []byte) (any, error) {
	var r removeDeviceRequest
	if err := decodeJSON(body, &r); err != nil {
		return nil, err
	}
	var c serdeChecks
	c.required(r.ID != nil, "id")
	return r, c.err
}

func (s *Server) removeDevice(req any) response {
	const act = "The device could not be removed from the VM"
	if s.state() == stateNone {
		return s.notCreated(act, msgNotCreated)
	}
	id := *req.(removeDeviceRequest).ID
	if !removeFromConfig(s.m.config, id) {
		return s.fromAPI(s.opts.Mode.unknownDeviceStatus(), act, "No device to remove", "Unknown device id: "+id)
	}
	if s.m.vm != nil {
		s.m.vm.devices.detach(id)
	}
	return noContent()
}

func removeFromConfig(cfg object, id string) bool {
	for _, l := range deviceLists {
		if single := objectAt(cfg, l.key); single != nil {
			if got, _ := stringAt(single, "id"); got == id {
				delete(cfg, l.key)
				return true
			}
			continue
		}
		list := listAt(cfg, l.key)
		for i, v := range list {
			if d, ok := v.(object); ok {
				if got, _ := stringAt(d, "id"); got == id {
					cfg[l.key] = slices.Delete(append([]any(nil), list...), i, i+1)
					return true
				}
			}
		}
	}
	return false
}
