package instances

import (
	"context"
	"fmt"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
)

// Changing an instance's size in place (docs/adr/0011-resize-in-place.md). Memory is the size the
// guest has while running and max_memory the ceiling it changes within live: a guest with a
// ceiling above its memory boots with BootMemory and gets the rest of the ceiling as a virtio-mem
// region, of which memory − BootMemory is plugged. vcpus is the vCPUs it has and max_vcpus, when
// set, the ceiling they change within live, from 1 up (the VMM boots with slots for max_vcpus,
// vmm.VCPURange); only a VMM that gives vCPUs back live (vmm.VCPURemover) takes fewer without a
// restart. A change within a ceiling is made live; one beyond it, a new ceiling or a larger overlay
// restart the instance in place (overlay, volumes, id and addresses kept). The deprecated
// hotplug_memory keeps its meaning: the guest boots with memory and has memory + hotplug_memory
// while running, which is also its ceiling.

// BootMemory is what a guest whose max_memory is above its memory boots with, and what it gives
// back down to before a Standby snapshot.
const BootMemory = 256 * units.MiB

// memoryLayout is how one boot lays out a guest's memory: what the VMM starts with and the
// virtio-mem region above it.
type memoryLayout struct{ boot, region int64 }

func (l memoryLayout) ceiling() int64 { return l.boot + l.region }

// live reports whether a guest booted with l can be given bytes while it runs.
func (l memoryLayout) live(bytes int64) bool {
	return l.region > 0 && bytes >= l.boot && bytes <= l.ceiling() && (bytes-l.boot)%HotplugStep == 0
}

// layout is how a boot of s lays out its memory.
func (s Spec) layout() memoryLayout {
	switch {
	case s.Hotplug > 0:
		return memoryLayout{s.Memory, s.Hotplug}
	case s.MaxMemory > s.Memory:
		return memoryLayout{BootMemory, s.MaxMemory - BootMemory}
	}
	return memoryLayout{s.Memory, 0}
}

// LiveMemory is the memory the guest of s has while it runs.
func (s Spec) LiveMemory() int64 {
	if s.Hotplug > 0 {
		return s.Memory + s.Hotplug
	}
	return s.Memory
}

// Ceiling is the most memory the guest of s can have without a restart.
func (s Spec) Ceiling() int64 { return s.layout().ceiling() }

// CheckMemoryRange checks memory, max_memory and the deprecated hotplug_memory together; each
// size has been checked alone (CheckSize).
func CheckMemoryRange(memory, maxMemory, hotplug int64) error {
	switch {
	case maxMemory == 0:
		return nil
	case hotplug > 0:
		return &FieldError{Field: "hotplug_memory", Value: units.Format(hotplug), Allowed: "0 when max_memory is set: hotplug_memory is " +
			"deprecated; write memory = " + units.Format(memory+hotplug) + " and max_memory instead"}
	case maxMemory < memory:
		return &FieldError{Field: "max_memory", Value: units.Format(maxMemory), Allowed: "at least memory (" + units.Format(memory) + ")"}
	case maxMemory > memory && (memory < BootMemory || memory%HotplugStep != 0):
		return &FieldError{Field: "memory", Value: units.Format(memory), Allowed: "a multiple of " + units.Format(HotplugStep) + " from " +
			units.Format(BootMemory) + " when max_memory (" + units.Format(maxMemory) + ") is above it, as memory changes live in " +
			units.Format(HotplugStep) + " steps above the " + units.Format(BootMemory) + " a guest boots with"}
	}
	return nil
}

// Action is what applying one change does to an instance.
type Action string

const (
	// ActionLive: the running guest gets the change while its program runs on.
	ActionLive Action = "live"
	// ActionRestart: the guest is shut down and booted again, keeping its overlay, volumes, id
	// and addresses, and comes back in the state it had.
	ActionRestart Action = "restart in place"
	// ActionNextStart: the instance is stopped; its next boot has it.
	ActionNextStart Action = "at the next start"
	// ActionAtRestore: the instance is in Standby; the guest gets it live right after its restore.
	ActionAtRestore Action = "live, at the restore from Standby"
	// ActionOnHost: the instance is stopped; its overlay is grown on the host right away.
	ActionOnHost Action = "grown on the host, in place"
	// ActionReplace: the instance is deleted and a new one created.
	ActionReplace Action = "replacement, the overlay is lost"
)

// Change is one changed size of an instance and what applying it does.
type Change struct {
	Attribute string
	From, To  string
	Action    Action
}

// String is the change as a plan shows it: "memory 512MiB → 1GiB: live".
func (c Change) String() string {
	return fmt.Sprintf("%s %s → %s: %s", c.Attribute, c.From, c.To, c.Action)
}

// ResizeChanges says what changing the sizes (memory, max_memory, hotplug_memory, vcpus,
// max_vcpus, overlay_size) of an instance in state cur from have to want does. Memory is compared
// as the size while running and the ceiling, so that another way of writing the same ones
// (hotplug_memory written as memory and max_memory) is no change. Whether fewer vCPUs are live
// depends on have.Hypervisor's VMM. An overlay can only grow: a smaller overlay_size is a
// FieldError.
func ResizeChanges(have Spec, cur State, want Spec) ([]Change, error) {
	return resizeChanges(have, have.boot(), cur, want)
}

// bootLayout is how one boot lays out a guest's sizes that change live.
type bootLayout struct {
	memory memoryLayout
	// maxVCPUs is the VMM's MaxVCPUs: the guest has 1 to maxVCPUs vCPUs live; 0: only those it
	// booted with.
	maxVCPUs int
}

// boot is how a boot of s lays out its sizes.
func (s Spec) boot() bootLayout { return bootLayout{s.layout(), s.MaxVCPUs} }

// liveVCPUs reports whether a guest booted with l can be given n vCPUs while it runs.
func (l bootLayout) liveVCPUs(n int) bool {
	lowest, highest := vmm.VCPURange(vmm.Config{MaxVCPUs: l.maxVCPUs})
	return l.maxVCPUs > 0 && n >= lowest && n <= highest
}

// resizeChanges is ResizeChanges for a guest booted with b.
func resizeChanges(have Spec, b bootLayout, cur State, want Spec) ([]Change, error) {
	l := b.memory
	if want.OverlaySize < have.OverlaySize {
		return nil, &FieldError{Field: "overlay_size", Value: units.Format(want.OverlaySize), Allowed: "at least " + units.Format(have.OverlaySize) +
			", the instance's overlay: an overlay grows in place but never shrinks (a smaller one needs a new instance: terraform apply -replace)"}
	}
	restart := ActionRestart
	switch cur {
	case Stopped:
		restart = ActionNextStart
	case Standby:
		restart = ActionRestart // refused by Update: it would discard the snapshot
	}
	var out []Change
	size := func(attr string, from, to int64, a Action) {
		if from != to {
			out = append(out, Change{attr, units.Format(from), units.Format(to), a})
		}
	}
	// live is what a change the running guest can take does in state cur.
	live := restart
	switch cur {
	case Running:
		live = ActionLive
	case Standby:
		live = ActionAtRestore
	}
	memory := restart
	if l.ceiling() == want.Ceiling() && l.live(want.LiveMemory()) {
		memory = live
	}
	vcpus := restart
	if b.maxVCPUs == want.MaxVCPUs && b.liveVCPUs(want.VCPUs) && (want.VCPUs >= have.VCPUs || builtin.RemovesVCPUs(have.Hypervisor)) {
		vcpus = live
	}
	switch {
	case have.LiveMemory() != want.LiveMemory() && have.Memory == want.Memory && have.Hotplug > 0 && want.Hotplug > 0:
		size("hotplug_memory", have.Hotplug, want.Hotplug, memory)
	default:
		size("memory", have.LiveMemory(), want.LiveMemory(), memory)
	}
	size("max_memory", have.Ceiling(), want.Ceiling(), memory)
	if have.VCPUs != want.VCPUs {
		out = append(out, Change{"vcpus", fmt.Sprint(have.VCPUs), fmt.Sprint(want.VCPUs), vcpus})
	}
	if have.MaxVCPUs != want.MaxVCPUs {
		out = append(out, Change{"max_vcpus", vcpuCeiling(have.MaxVCPUs), vcpuCeiling(want.MaxVCPUs), vcpus})
	}
	overlay := restart
	if cur == Stopped {
		overlay = ActionOnHost
	}
	size("overlay_size", have.OverlaySize, want.OverlaySize, overlay)
	return out, nil
}

// vcpuCeiling is max_vcpus as a plan shows it.
func vcpuCeiling(n int) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(n)
}

// needs reports whether any change is made by action a.
func needs(changes []Change, a Action) bool {
	for _, c := range changes {
		if c.Action == a {
			return true
		}
	}
	return false
}

// attributes names the changed attributes.
func attributes(changes []Change) string {
	names := make([]string, len(changes))
	for i, c := range changes {
		names[i] = c.Attribute
	}
	return strings.Join(names, ", ")
}

// bootedLayout is the layout of the guest the instance's VMM (or its Standby snapshot) was booted
// with; for a stopped instance, that of its next boot.
func (m *Manager) bootedLayout(md *metadata, cur State) bootLayout {
	if cur == Stopped || md.VMM.MemoryBytes == 0 {
		return md.spec().boot()
	}
	return bootLayout{memoryLayout{md.VMM.MemoryBytes, md.VMM.HotplugBytes}, md.VMM.MaxVCPUs}
}

// resizeLive gives the running guest of md the memory and vCPUs its metadata now asks for, where
// they differ from the spec before. A guest that does not take them is put back to what it had,
// with the metadata.
func (m *Manager) resizeLive(ctx context.Context, md *metadata, before Spec) error {
	want := md.spec()
	err := m.setLive(ctx, md, before, want)
	if err == nil {
		return nil
	}
	undo := context.WithoutCancel(ctx)
	md.VCPUs, md.Memory, md.MaxMemory, md.Hotplug = before.VCPUs, before.Memory, before.MaxMemory, before.Hotplug
	if serr := m.saveMetadata(undo, md); serr != nil {
		return fmt.Errorf("resize %s live to %s: %w; and its metadata could not be put back: %w", md.Name, liveSizes(want, before), err, serr)
	}
	if rerr := m.setLive(undo, md, want, before); rerr != nil {
		return fmt.Errorf("resize %s live to %s: %w; and giving it back its %s failed too: %v", md.Name, liveSizes(want, before), err, liveSizes(before, want), rerr)
	}
	return fmt.Errorf("resize %s live to %s: %w; it keeps %s", md.Name, liveSizes(want, before), err, liveSizes(before, want))
}

// setLive changes the running guest of md from the live sizes of from to those of to.
func (m *Manager) setLive(ctx context.Context, md *metadata, from, to Spec) error {
	vm, err := m.connect(ctx, md)
	if err != nil {
		return err
	}
	defer func() { _ = vm.Close() }()
	if from.LiveMemory() != to.LiveMemory() {
		if err := vm.SetMemory(ctx, to.LiveMemory()); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	if from.VCPUs != to.VCPUs {
		if err := vm.SetVCPUs(ctx, to.VCPUs); err != nil {
			return fmt.Errorf("vcpus: %w", err)
		}
	}
	return nil
}

// liveSizes names the live sizes of s that differ from other's: "memory 512MiB and 2 vcpus".
func liveSizes(s, other Spec) string {
	var parts []string
	if s.LiveMemory() != other.LiveMemory() {
		parts = append(parts, "memory "+units.Format(s.LiveMemory()))
	}
	if s.VCPUs != other.VCPUs {
		parts = append(parts, fmt.Sprintf("%d vcpus", s.VCPUs))
	}
	return strings.Join(parts, " and ")
}

// growOverlay grows the overlay of the instance id, which no VMM has open, to want bytes: the
// file and its ext4 filesystem, as a volume grows (growExt4). The caller holds its lock.
func (m *Manager) growOverlay(ctx context.Context, id string, want int64) error {
	md, err := m.loadMetadata(ctx, id)
	if err != nil {
		return err
	}
	if want <= md.OverlaySize {
		return nil
	}
	if err := growExt4(ctx, m.host, m.layout.overlay(id), md.OverlaySize, want); err != nil {
		return fmt.Errorf("grow the overlay of %s from %s to %s: %w", md.Name, units.Format(md.OverlaySize), units.Format(want), err)
	}
	md.OverlaySize = want
	return m.saveMetadata(ctx, md)
}
