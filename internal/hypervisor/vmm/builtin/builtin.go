// Package builtin registers the VMM drivers built into hypeman. A new VMM is its own package
// under vmm/ and one line in Drivers; every list of hypervisor names derives from it.
package builtin

import (
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
)

// Drivers returns a fresh driver for each built-in VMM, in order of preference: without a
// configured hypervisor, the first one installed on the host is the default.
func Drivers() []vmm.Driver {
	return []vmm.Driver{cloudhypervisor.New(), qemu.New()}
}

// RemovesVCPUs reports whether the VMs of the built-in VMM name give vCPUs back live
// (vmm.VCPURemover); false for a name that is none.
func RemovesVCPUs(name string) bool {
	for _, d := range Drivers() {
		if r, ok := d.(vmm.VCPURemover); ok && d.Name() == name {
			return r.RemovesVCPUs()
		}
	}
	return false
}

// Names are the names of the built-in VMMs, in the order of Drivers.
func Names() []string {
	var names []string
	for _, d := range Drivers() {
		names = append(names, d.Name())
	}
	return names
}
