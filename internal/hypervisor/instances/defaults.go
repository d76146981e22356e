package instances

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// The defaults that depend on what the host has installed. The provider asks for them once it
// can reach the host, before it makes the Manager.

// Where scripts/install-deps.sh puts the guest kernel and its modules.
const (
	DefaultKernel        = "/var/cache/hypeman/kernel/vmlinuz"
	DefaultKernelModules = "/var/cache/hypeman/kernel/modules"
)

// ChooseKernelModules is modules when it is set, else DefaultKernelModules when it exists on h,
// else "": everything the guest needs is built into the kernel.
func ChooseKernelModules(ctx context.Context, h host.Host, modules string) string {
	if modules != "" {
		return modules
	}
	if _, err := h.Stat(ctx, DefaultKernelModules); err == nil {
		return DefaultKernelModules
	}
	return ""
}

// ChooseHypervisor picks the hypervisor new instances run under from drivers, which are in order
// of preference: want, which must be one of them and installed on h, or, when want is "", the
// first one installed. When none is installed it falls back to the last one and says so in
// warning: reading and deleting instances still works.
func ChooseHypervisor(ctx context.Context, h host.Host, drivers []vmm.Driver, want string) (name, warning string, err error) {
	if len(drivers) == 0 {
		return "", "", fmt.Errorf("%w: no VMM driver to choose from", ErrInvalidConfig)
	}
	var names, installed []string
	for _, d := range drivers {
		names = append(names, d.Name())
		if d.Available(ctx, h) {
			installed = append(installed, d.Name())
		}
	}
	if want != "" {
		switch {
		case !slices.Contains(names, want):
			return "", "", configError(fmt.Sprintf("hypervisor %q is not built into this provider: use one of %s", want, strings.Join(names, ", ")))
		case !slices.Contains(installed, want):
			return "", "", configError(fmt.Sprintf("hypervisor %q is not installed on the host (installed: %s). Install it, or choose an installed one.", want, listOrNone(installed)))
		}
		return want, "", nil
	}
	if len(installed) > 0 {
		return installed[0], "", nil
	}
	return names[len(names)-1], fmt.Sprintf("None of %s is installed on the host, so creating or starting instances will fail until one is installed. Reading and deleting instances works.", strings.Join(names, ", ")), nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
