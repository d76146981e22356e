package chstandin

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

const (
	acpiHotplugAlign   = 128 << 20
	acpiHotplugSlots   = 8
	virtioMemBlockSize = 2 << 20
	// cpuEjectTime is how long the simulated guest takes to eject removed vCPUs.
	cpuEjectTime = time.Second
)

type resizeRequest struct {
	DesiredVcpus   *uint32 `json:"desired_vcpus"`
	DesiredRAM     *uint64 `json:"desired_ram"`
	DesiredBalloon *uint64 `json:"desired_balloon"`
}

func parseResize(body []byte) (any, error) {
	var r resizeRequest
	return r, decodeJSON(body, &r)
}

const actResize = "The VM could not be resized"

// resize is vm.resize: vCPUs, then RAM, then balloon, with no rollback.
func (s *Server) resize(req any) response {
	r := req.(resizeRequest)
	if s.state() == stateNone {
		return s.notCreated(actResize, msgNotCreated)
	}
	cfg := s.m.config
	cpus, mem, balloon := objectAt(cfg, "cpus"), objectAt(cfg, "memory"), objectAt(cfg, "balloon")
	if s.m.vm == nil {
		// Before boot only the config is rewritten.
		if r.DesiredVcpus != nil {
			cpus["boot_vcpus"] = uint64(*r.DesiredVcpus)
		}
		if r.DesiredRAM != nil {
			mem["size"] = *r.DesiredRAM
		}
		if r.DesiredBalloon != nil && balloon != nil {
			balloon["size"] = *r.DesiredBalloon
		}
		return noContent()
	}
	vm := s.m.vm
	if time.Now().Before(vm.cpuRemovalPendingUntil) {
		return s.apiError(http.StatusTooManyRequests, "Too Many Requests")
	}
	fail := func(causes ...string) response {
		return s.fromAPI(http.StatusInternalServerError, actResize, causes...)
	}
	if r.DesiredVcpus != nil {
		want := uint64(*r.DesiredVcpus)
		have, _ := uintAt(cpus, "boot_vcpus")
		maxv, _ := uintAt(cpus, "max_vcpus")
		switch {
		case want == 0:
			return fail("Error resizing the vCPUs", "Cannot have zero vCPUs")
		case want > maxv:
			return fail("Error resizing the vCPUs", fmt.Sprintf("Desired vCPUs %d exceed the maximum %d", want, maxv))
		case want < have:
			vm.cpuRemovalPendingUntil = time.Now().Add(cpuEjectTime)
		}
		cpus["boot_vcpus"] = want
	}
	if r.DesiredRAM != nil {
		if chain := s.resizeRAM(*r.DesiredRAM); chain != nil {
			return fail(chain...)
		}
	}
	if r.DesiredBalloon != nil {
		if balloon == nil {
			return fail("Error resizing the balloon", "No balloon device was configured")
		}
		if ram := ramBytes(cfg); *r.DesiredBalloon >= ram {
			return fail("Error resizing the balloon", fmt.Sprintf("Balloon size %d is not smaller than the guest RAM %d", *r.DesiredBalloon, ram))
		}
		balloon["size"] = *r.DesiredBalloon
	}
	return noContent()
}

// resizeRAM hot-adds (ACPI) or plugs (virtio-mem) memory in a booted VM; a failure is CH's chain.
func (s *Server) resizeRAM(want uint64) []string {
	mem := objectAt(s.m.config, "memory")
	if len(objectsAt(mem, "zones")) > 0 {
		return []string{"Error resizing the memory", "Invalid resize: user-defined memory zones must be resized with vm.resize-zone"}
	}
	size, _ := uintAt(mem, "size")
	hotplug, hasHotplug := uintAt(mem, "hotplug_size")
	if method, _ := stringAt(mem, "hotplug_method"); method == "VirtioMem" {
		plugged, _ := uintAt(mem, "hotplugged_size")
		switch {
		case !hasHotplug:
			return []string{"Error resizing the memory", "Memory hotplug is not enabled: hotplug_size is not set"}
		case want < size:
			return []string{"Error resizing the memory", fmt.Sprintf("Invalid resize below the boot size: %d < %d", want, size)}
		case (want-size)%virtioMemBlockSize != 0:
			return []string{"Error resizing the memory", "Error resizing virtio-mem device", fmt.Sprintf("Invalid size %d: not a multiple of the %d-byte block size", want-size, virtioMemBlockSize)}
		case want-size > hotplug:
			return []string{"Error resizing the memory", "Error resizing virtio-mem device", fmt.Sprintf("Invalid size %d: larger than the region size %d", want-size, hotplug)}
		case want-size == plugged:
			return []string{"Error resizing the memory", "Error resizing virtio-mem device", fmt.Sprintf("Invalid new size %#x: new size and requested_size are identical", want-size)}
		}
		mem["hotplugged_size"] = want - size
		s.guestPlug()
		s.m.vm.plugTarget = want - size
		s.m.vm.plugAt = time.Now().Add(s.plugDelay())
		return nil
	}
	vm := s.m.vm
	if current := vm.bootRAM + vm.acpiAdded; want > current {
		inc := want - current
		switch {
		case inc%acpiHotplugAlign != 0:
			return []string{"Error resizing the memory", fmt.Sprintf("Invalid size %d: memory can only be hot-added in multiples of %d bytes", inc, acpiHotplugAlign)}
		case !hasHotplug || vm.acpiAdded+inc > hotplug:
			return []string{"Error resizing the memory", fmt.Sprintf("Insufficient space in the hotplug RAM region for %d more bytes", inc)}
		case vm.acpiHotplugged >= acpiHotplugSlots:
			return []string{"Error resizing the memory", "No more memory hotplug slots available"}
		}
		vm.acpiHotplugged++
		vm.acpiAdded += inc
	}
	// For ACPI the new size is recorded for the next boot even when nothing is hot-added.
	mem["size"] = want
	return nil
}

type resizeZoneRequest struct {
	ID         *string `json:"id"`
	DesiredRAM *uint64 `json:"desired_ram"`
}

func parseResizeZone(body []byte) (any, error) {
	var r resizeZoneRequest
	if err := decodeJSON(body, &r); err != nil {
		return nil, err
	}
	var c serdeChecks
	c.required(r.ID != nil, "id")
	c.required(r.DesiredRAM != nil, "desired_ram")
	return r, c.err
}

func (s *Server) resizeZone(req any) response {
	const act = "The memory zone could not be resized"
	r := req.(resizeZoneRequest)
	if s.state() == stateNone {
		return s.notCreated(act, msgNotCreated)
	}
	var zone object
	for _, z := range objectsAt(objectAt(s.m.config, "memory"), "zones") {
		if id, _ := stringAt(z, "id"); id == *r.ID {
			zone = z
		}
	}
	if zone == nil {
		return s.fromAPI(http.StatusInternalServerError, act, "Unknown memory zone: "+*r.ID)
	}
	if s.m.vm == nil {
		zone["size"] = *r.DesiredRAM
		return noContent()
	}
	size, _ := uintAt(zone, "size")
	hotplug, ok := uintAt(zone, "hotplug_size")
	if !ok || *r.DesiredRAM < size || *r.DesiredRAM-size > hotplug || (*r.DesiredRAM-size)%virtioMemBlockSize != 0 {
		return s.fromAPI(http.StatusInternalServerError, act, fmt.Sprintf("Invalid size %d for memory zone %s", *r.DesiredRAM, *r.ID))
	}
	zone["hotplugged_size"] = *r.DesiredRAM - size
	return noContent()
}

type resizeDiskRequest struct {
	ID          *string `json:"id"`
	DesiredSize *uint64 `json:"desired_size"`
}

func parseResizeDisk(body []byte) (any, error) {
	var r resizeDiskRequest
	if err := decodeJSON(body, &r); err != nil {
		return nil, err
	}
	var c serdeChecks
	c.required(r.ID != nil, "id")
	c.required(r.DesiredSize != nil, "desired_size")
	return r, c.err
}

func (s *Server) resizeDisk(req any) response {
	const act = "The disk could not be resized"
	r := req.(resizeDiskRequest)
	switch s.state() {
	case stateNone:
		return s.notCreated(act, msgNotCreated)
	case stateCreated:
		return s.fromAPI(http.StatusInternalServerError, act, "Failed resizing a disk image", msgNotRunning)
	}
	var disk object
	for _, d := range objectsAt(s.m.config, "disks") {
		if id, _ := stringAt(d, "id"); id == *r.ID {
			disk = d
		}
	}
	if disk == nil {
		return s.fromAPI(s.opts.Mode.unknownDeviceStatus(), act, "Unknown device id: "+*r.ID)
	}
	path, _ := stringAt(disk, "path")
	fi, err := os.Stat(path)
	if err != nil {
		return s.fromAPI(http.StatusInternalServerError, act, "Failed resizing a disk image", err.Error())
	}
	if int64(*r.DesiredSize) < fi.Size() {
		return s.fromAPI(http.StatusInternalServerError, act, "Failed resizing a disk image", "Shrinking a disk image is not supported")
	}
	if err := os.Truncate(path, int64(*r.DesiredSize)); err != nil {
		return s.fromAPI(http.StatusInternalServerError, act, "Failed resizing a disk image", err.Error())
	}
	return noContent()
}
