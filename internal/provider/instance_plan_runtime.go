package provider

import (
	"context"
	"maps"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// planRuntime keeps what only a fresh boot changes, so that pausing or a Standby does not show
// them as "known after apply".
func (p *instancePlan) planRuntime(ctx context.Context, resp *resource.ModifyPlanResponse) {
	if p.creating() || resp.Diagnostics.HasError() {
		return
	}
	for name, v := range plannedRuntime(&p.prior.instanceModel, &p.plan.instanceModel) {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(name), v)...)
	}
}

// willBoot reports whether applying plan may boot the guest afresh, which is when the VMM version,
// the accelerator and the kernel release are read anew. Moving between Running, Paused and Standby
// (a restore included) and stopping never boot.
func willBoot(prior, plan *instanceModel) bool {
	if !plan.State.Equal(types.StringValue(string(instances.Stopped))) && programChanged(plan, prior) {
		return true
	}
	switch instances.State(prior.State.ValueString()) {
	case instances.Running, instances.Paused, instances.Standby:
		return false
	}
	return !plan.State.Equal(types.StringValue(string(instances.Stopped)))
}

// plannedRuntime returns the computed attributes whose value after apply is known at plan time, so
// that a state change shows as itself rather than as a list of "known after apply".
func plannedRuntime(prior, plan *instanceModel) map[string]attr.Value {
	out := map[string]attr.Value{}
	if !willBoot(prior, plan) {
		out["accelerator"], out["hypervisor_version"], out["kernel_release"] = prior.Accelerator, prior.HypervisorVersion, prior.KernelRelease
	}
	if plan.State.IsUnknown() {
		return out
	}
	noVMM := map[string]attr.Value{"pid": types.Int64Null(), "started_at": types.StringNull()}
	switch target := instances.State(plan.State.ValueString()); target {
	case instances.Stopped:
		maps.Copy(out, noVMM)
		out["snapshot_bytes"] = types.Int64Value(0)
	case instances.Standby:
		maps.Copy(out, noVMM)
	case instances.Running, instances.Paused:
		out["snapshot_bytes"] = types.Int64Value(0)
		if was := instances.State(prior.State.ValueString()); (was == instances.Running || was == instances.Paused) && !programChanged(plan, prior) {
			out["pid"], out["started_at"] = prior.PID, prior.StartedAt // pausing and resuming keep the VMM
		}
	}
	return out
}
