package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/poll"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// vCPU hotplug: a VM created with a MaxVCPUs (max_vcpus) is resized with vm.resize's
// desired_vcpus. Cloud Hypervisor records the count asked for as the config's boot_vcpus at once;
// a removal is the guest's to finish (ACPI eject), and until it has, every vm.resize is refused
// with 429 (docs: vm.resize).

// maxVCPUs is the most vCPUs Cloud Hypervisor gives a guest on x86 (a u8 count of vCPUs, and
// x2APIC ids below 255 without an IOMMU).
const maxVCPUs = 254

// vcpuResizeTimeout bounds how long SetVCPUs waits for the guest to finish removing vCPUs.
const vcpuResizeTimeout = 30 * time.Second

var _ vmm.VCPURemover = (*Driver)(nil)

// RemovesVCPUs: a Cloud Hypervisor guest gives vCPUs back live (ACPI eject).
func (*Driver) RemovesVCPUs() bool { return true }

// SetVCPUs asks for n vCPUs and, after a removal, waits until vm.resize is no longer refused with
// 429, which is when the guest has ejected the vCPUs. A resize refused because an earlier removal
// is pending is retried within the same bound.
func (v *VM) SetVCPUs(ctx context.Context, n int) error {
	if err := vmm.CheckVCPURange(v.cfg, n); err != nil {
		return err
	}
	have, err := v.VCPUs(ctx)
	if err != nil {
		return err
	}
	if have == n {
		return nil // CH answers 204 to an unchanged count, but a pending removal would refuse it
	}
	var last error
	err = poll.Within(ctx, vcpuResizeTimeout, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		last = v.c.put(ctx, "vm.resize", vmResize{DesiredVcpus: n})
		if pendingRemoval(last) {
			return false, nil
		}
		return true, last
	})
	if errors.Is(err, poll.ErrTimeout) {
		return fmt.Errorf("resize to %d vCPUs: the guest has not finished removing vCPUs after %s: %w", n, vcpuResizeTimeout, last)
	}
	if err != nil || n > have {
		return err
	}
	// The removal is the guest's: it is done when a resize to the same count is taken.
	err = poll.Within(ctx, vcpuResizeTimeout, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		last = v.c.put(ctx, "vm.resize", vmResize{DesiredVcpus: n})
		return !pendingRemoval(last), nil
	})
	if errors.Is(err, poll.ErrTimeout) {
		return fmt.Errorf("the guest has not given up %d of its vCPUs after %s", have-n, vcpuResizeTimeout)
	}
	return err
}

// VCPUs is the config's boot_vcpus, which vm.resize keeps as the count last asked for.
func (v *VM) VCPUs(ctx context.Context) (int, error) {
	info, err := v.c.info(ctx)
	if isNoVM(err) {
		return 0, fmt.Errorf("read vcpus: %w", vmm.ErrNoVM)
	}
	if err != nil {
		return 0, err
	}
	return info.Config.Cpus.BootVcpus, nil
}

// pendingRemoval reports whether err is vm.resize's refusal while vCPUs are still being removed.
func pendingRemoval(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusTooManyRequests
}
