package qemu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// vCPU hotplug. A guest with a ceiling above its boot count starts with -smp cpus=K,maxcpus=N:
// QEMU lays out N sockets of one core and one thread on q35, and the N − K above the boot CPUs are
// empty slots that device_add fills with a CPU of the type query-hotpluggable-cpus names. The
// guest's kernel takes each new CPU in through ACPI and its init brings it online. device_del asks
// the guest to give a CPU up (ACPI eject): its kernel takes it offline and ejects it, and only then
// does QEMU remove it, so a removal is finished when the CPU has gone from the list.

// maxVCPUs is the most vCPUs the driver gives a guest: q35's limit without an IOMMU for
// interrupt remapping is 255, and the manager asks for fewer.
const maxVCPUs = 255

// vcpuResizeTimeout bounds how long SetVCPUs waits for the guest to give up the vCPUs it removes.
const vcpuResizeTimeout = 30 * time.Second

// smpArg is the -smp option: the boot count and, with a ceiling above it, the slots.
func smpArg(cfg vmm.Config) string {
	if cfg.MaxVCPUs <= cfg.VCPUs {
		return strconv.Itoa(cfg.VCPUs)
	}
	return fmt.Sprintf("cpus=%d,maxcpus=%d", cfg.VCPUs, cfg.MaxVCPUs)
}

// hotpluggableCPU is one entry of query-hotpluggable-cpus: a CPU slot, filled when it has a QOM path.
type hotpluggableCPU struct {
	Type    string         `json:"type"`
	Props   map[string]int `json:"props"`
	QOMPath string         `json:"qom-path,omitempty"`
}

// plugID is the device id device_add gives the CPU it puts into slot c, from the slot's place in
// the topology: the same slot always gets the same id.
func plugID(c hotpluggableCPU) string {
	keys := make([]string, 0, len(c.Props))
	for k := range c.Props {
		if k != "node-id" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	id := "vcpu"
	for _, k := range keys {
		id += "-" + strings.TrimSuffix(k, "-id") + strconv.Itoa(c.Props[k])
	}
	return id
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

// plugged lists the slots that device_add filled, which a restore has to fill again.
func (v *vm) plugged(ctx context.Context, m *monitor) ([]hotpluggableCPU, error) {
	if v.cfg.MaxVCPUs <= v.cfg.VCPUs {
		return nil, nil
	}
	cpus, err := slots(ctx, m)
	if err != nil {
		return nil, err
	}
	var out []hotpluggableCPU
	for _, c := range cpus {
		if c.QOMPath == peripheral(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// peripheral is the QOM path of the CPU device_add puts into slot c.
func peripheral(c hotpluggableCPU) string { return "/machine/peripheral/" + plugID(c) }

// plugArgs are the -device options that start QEMU with the CPUs device_add put into slots, as
// a migration stream from a VM that had them needs.
func plugArgs(plugged []hotpluggableCPU) []string {
	var args []string
	for _, c := range plugged {
		keys := make([]string, 0, len(c.Props))
		for k := range c.Props {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		opt := optValue(c.Type) + ",id=" + plugID(c)
		for _, k := range keys {
			opt += fmt.Sprintf(",%s=%d", k, c.Props[k])
		}
		args = append(args, "-device", opt)
	}
	return args
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

func (v *vm) VCPUs(ctx context.Context) (int, error) {
	if v.cfg.MaxVCPUs <= v.cfg.VCPUs {
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

// SetVCPUs fills the lowest empty slots, or empties the highest filled ones that device_add
// filled (the boot CPUs stay), until the VM has n vCPUs.
func (v *vm) SetVCPUs(ctx context.Context, n int) error {
	lowest, highest := vmm.VCPURange(v.cfg)
	if n < lowest || n > highest {
		if lowest == highest {
			return fmt.Errorf("vcpus %d: this VM has no vCPU slots, so it keeps its %d vCPUs", n, lowest)
		}
		return fmt.Errorf("vcpus %d: must be from the boot count %d to the ceiling %d", n, lowest, highest)
	}
	if lowest == highest {
		return nil
	}
	return v.session(ctx, func(m *monitor) error {
		cpus, err := slots(ctx, m)
		if err != nil {
			return err
		}
		have := filled(cpus)
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
		for i := len(cpus) - 1; i >= 0 && have > n; i-- {
			c := cpus[i]
			if c.QOMPath != peripheral(c) {
				continue // a boot CPU
			}
			if err := m.execute(ctx, "device_del", map[string]any{"id": plugID(c)}, nil); err != nil {
				return fmt.Errorf("remove a vCPU (%d of %d left): %w", have, n, err)
			}
			have--
		}
		// device_del only asks: the CPU goes when the guest has ejected it.
		var now int
		err = poll.Within(ctx, vcpuResizeTimeout, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
			cpus, err := slots(ctx, m)
			now = filled(cpus)
			return err == nil && now == n, err
		})
		if errors.Is(err, poll.ErrTimeout) {
			return fmt.Errorf("the VM has %d vCPUs after %s; %d were asked for (the guest has not given the others up)", now, vcpuResizeTimeout, n)
		}
		return err
	})
}
