package qemu

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// vCPU hotplug. A guest with a MaxVCPUs starts with -smp cpus=1,maxcpus=N in N sockets of one core
// and one thread, the first holding the boot CPU. Its other vCPUs are devices with an id in the
// slots above: on the command line at boot (-device), and added by device_add later with the CPU
// type and slot query-hotpluggable-cpus names. The guest's kernel takes a new CPU in through ACPI
// and its init brings it online. A restore starts QEMU with the devices the snapshot had.
//
// The driver never removes a vCPU live (it is no vmm.VCPURemover): QEMU 7.2 under TCG corrupts its
// own heap when a guest ejects a vCPU after device_del, and aborts ("double free or corruption")
// at the next device_add, single-threaded TCG deadlocks in the eject itself, and a guest cannot be
// told what its VMM will do later. Fewer vCPUs take a new boot, which the manager announces.

// maxVCPUs is the most vCPUs the driver gives a guest: q35's limit without an IOMMU for
// interrupt remapping is 255, and the manager asks for fewer.
const maxVCPUs = 255

// peripheralPath is where QEMU puts the devices that have an id in its QOM tree.
const peripheralPath = "/machine/peripheral/"

// smpArg is the -smp option: the vCPUs, or with a MaxVCPUs the boot CPU and the slots.
func smpArg(cfg vmm.Config) string {
	if cfg.MaxVCPUs == 0 {
		return strconv.Itoa(cfg.VCPUs)
	}
	// The topology is spelled out: QEMU's default for maxcpus alone changes between versions.
	return fmt.Sprintf("cpus=1,maxcpus=%d,sockets=%d,cores=1,threads=1", cfg.MaxVCPUs, cfg.MaxVCPUs)
}

// cpuType is the QOM type of the vCPUs QEMU makes for accel's -cpu model (acceleratorArgs).
func cpuType(accel string) string {
	if accel == "kvm" {
		return "host-x86_64-cpu"
	}
	return "max-x86_64-cpu"
}

// bootPlugged are the vCPUs above the boot CPU that a guest with a MaxVCPUs boots with: the lowest
// slots, as query-hotpluggable-cpus describes them on q35 with one core of one thread a socket.
func bootPlugged(cfg vmm.Config) []hotpluggableCPU {
	if cfg.MaxVCPUs == 0 {
		return nil
	}
	out := make([]hotpluggableCPU, 0, cfg.VCPUs-1)
	for socket := 1; socket < cfg.VCPUs; socket++ {
		out = append(out, hotpluggableCPU{Type: cpuType(cfg.Accelerator), Props: map[string]int{"socket-id": socket, "core-id": 0, "thread-id": 0}})
	}
	return out
}

// hotpluggableCPU is one entry of query-hotpluggable-cpus: a CPU slot, filled when it has a QOM path.
type hotpluggableCPU struct {
	Type    string         `json:"type"`
	Props   map[string]int `json:"props"`
	QOMPath string         `json:"qom-path,omitempty"`
}

// propNames are the slot's properties in topology order, as device_add takes them.
func (c hotpluggableCPU) propNames() []string {
	keys := make([]string, 0, len(c.Props))
	for k := range c.Props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// plugID is the device id of the CPU the driver puts into slot c: the same slot always gets the
// same one.
func plugID(c hotpluggableCPU) string {
	id := "vcpu"
	for _, k := range c.propNames() {
		if k != "node-id" {
			id += "-" + strings.TrimSuffix(k, "-id") + strconv.Itoa(c.Props[k])
		}
	}
	return id
}

// deviceID is the id of the CPU in slot c when it is a device with one (not -smp's boot CPU).
func (c hotpluggableCPU) deviceID() (string, bool) {
	id, ok := strings.CutPrefix(c.QOMPath, peripheralPath)
	return id, ok && id != ""
}

// plugArgs are the -device options that start QEMU with a CPU in each of the slots.
func plugArgs(plugged []hotpluggableCPU) []string {
	var args []string
	for _, c := range plugged {
		opt := optValue(c.Type) + ",id=" + plugID(c)
		for _, k := range c.propNames() {
			opt += fmt.Sprintf(",%s=%d", k, c.Props[k])
		}
		args = append(args, "-device", opt)
	}
	return args
}

// slots lists the VM's CPU slots, in topology order (socket, die, core, thread).
func slots(ctx context.Context, m *monitor) ([]hotpluggableCPU, error) {
	var cpus []hotpluggableCPU
	if err := m.execute(ctx, "query-hotpluggable-cpus", nil, &cpus); err != nil {
		return nil, err
	}
	order := []string{"socket-id", "die-id", "core-id", "thread-id"}
	slices.SortStableFunc(cpus, func(a, b hotpluggableCPU) int {
		for _, k := range order {
			if d := a.Props[k] - b.Props[k]; d != 0 {
				return d
			}
		}
		return 0
	})
	return cpus, nil
}

func filled(cpus []hotpluggableCPU) int {
	n := 0
	for _, c := range cpus {
		if c.QOMPath != "" {
			n++
		}
	}
	return n
}

// plugged lists the slots whose CPU a restore has to start QEMU with: every one with an id (the
// boot CPU is -smp's).
func (v *vm) plugged(ctx context.Context, m *monitor) ([]hotpluggableCPU, error) {
	if v.cfg.MaxVCPUs == 0 {
		return nil, nil
	}
	cpus, err := slots(ctx, m)
	if err != nil {
		return nil, err
	}
	var out []hotpluggableCPU
	for _, c := range cpus {
		if id, ok := c.deviceID(); ok {
			if id != plugID(c) {
				return nil, fmt.Errorf("the vCPU %s in slot %v has an id this driver does not give (%s)", c.QOMPath, c.Props, plugID(c))
			}
			out = append(out, hotpluggableCPU{Type: c.Type, Props: c.Props})
		}
	}
	return out, nil
}

func (v *vm) VCPUs(ctx context.Context) (int, error) {
	if v.cfg.MaxVCPUs == 0 {
		return v.cfg.VCPUs, nil
	}
	var n int
	err := v.session(ctx, func(m *monitor) error {
		cpus, err := slots(ctx, m)
		n = filled(cpus)
		return err
	})
	return n, err
}

// SetVCPUs fills the lowest empty slots until the VM has n vCPUs; fewer than it has are refused.
func (v *vm) SetVCPUs(ctx context.Context, n int) error {
	if err := vmm.CheckVCPURange(v.cfg, n); err != nil {
		return err
	}
	if v.cfg.MaxVCPUs == 0 {
		return nil
	}
	return v.session(ctx, func(m *monitor) error {
		cpus, err := slots(ctx, m)
		if err != nil {
			return err
		}
		have := filled(cpus)
		if n < have {
			return fmt.Errorf("vcpus %d: the VM has %d, and QEMU only adds vCPUs live (fewer take a new boot)", n, have)
		}
		for i := 0; i < len(cpus) && have < n; i++ {
			if c := cpus[i]; c.QOMPath == "" {
				args := map[string]any{"driver": c.Type, "id": plugID(c)}
				for k, val := range c.Props {
					args[k] = val
				}
				if err := m.execute(ctx, "device_add", args, nil); err != nil {
					return fmt.Errorf("add a vCPU (%d of %d): %w", have+1, n, err)
				}
				have++
			}
		}
		return nil
	})
}
