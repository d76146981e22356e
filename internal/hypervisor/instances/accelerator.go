package instances

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Accelerators are the values Options.Accelerator takes.
var Accelerators = []string{DefaultAccelerator, "kvm", "tcg"}

// DefaultAccelerator runs guests under KVM unless a probe finds they hang under it.
const DefaultAccelerator = "auto"

// accelerator resolves the configured accelerator for drv. "auto" is kvm unless the driver can
// probe KVM and finds guests do not run under it; the probe's verdict is cached on the host per
// driver, VMM version and kernel, since it costs a guest boot.
func (m *Manager) accelerator(ctx context.Context, drv vmm.Driver, sys *system.Artifacts) (string, error) {
	switch m.opts.Accelerator {
	case "kvm", "tcg":
		return m.opts.Accelerator, nil
	case "auto":
	default:
		return "", fmt.Errorf("%w: accelerator %q is not one of %s", ErrInvalidConfig, m.opts.Accelerator, strings.Join(Accelerators, ", "))
	}
	prober, ok := drv.(vmm.KVMProber)
	if !ok {
		return "kvm", nil
	}
	version, err := m.vmmVersion(ctx, drv)
	if err != nil {
		return "", err
	}
	key := strings.NewReplacer("/", "_", " ", "_").Replace(drv.Name() + "-" + version + "-" + sys.KernelHash)
	cache := path.Join(m.layout.system(), "kvm-probe-"+key)
	m.accelMu.Lock()
	defer m.accelMu.Unlock()
	if b, err := m.host.ReadFile(ctx, cache); err == nil {
		if v := strings.TrimSpace(string(b)); v == "kvm" || v == "tcg" {
			return v, nil
		}
	}
	usable, err := prober.ProbeKVM(ctx, m.host, sys.Kernel)
	if err != nil {
		return "", fmt.Errorf("probe KVM: %w", err)
	}
	accel := map[bool]string{true: "kvm", false: "tcg"}[usable]
	m.log(ctx, "probed KVM", map[string]any{"hypervisor": drv.Name(), "accelerator": accel})
	if err := m.host.WriteFile(ctx, cache, []byte(accel+"\n"), 0o644); err != nil {
		return "", err
	}
	return accel, nil
}
