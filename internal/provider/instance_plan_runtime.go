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

// planRuntime plans as known every computed attribute that apply will not change. The framework
// marks them all unknown as soon as the configuration differs from the state in any way, also
// when the difference is no change (a size spelled anew, a new timeout): then every one keeps its
// prior value and the plan is empty. A state change or a restart shows what it can know.
func (p *instancePlan) planRuntime(ctx context.Context, resp *resource.ModifyPlanResponse) {
	if p.creating() || p.replacing() || resp.Diagnostics.HasError() {
		return // the plan of the replacement's create decides
	}
	plan, prior := &p.plan.instanceModel, &p.prior.instanceModel
	if plan.State.Equal(prior.State) && !programChanged(plan, prior) {
		for name, a := range resp.Plan.Schema.GetAttributes() {
			if a.IsComputed() && !a.IsOptional() {
				p.keepPrior(ctx, path.Root(name), resp)
			}
		}
		return
	}
	for name, v := range plannedRuntime(prior, plan) {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(name), v)...)
	}
}

// keepPrior plans the prior value of an attribute that the plan has as unknown.
func (p *instancePlan) keepPrior(ctx context.Context, at path.Path, resp *resource.ModifyPlanResponse) {
	var planned, prior attr.Value
	resp.Diagnostics.Append(resp.Plan.GetAttribute(ctx, at, &planned)...)
	if planned == nil || !planned.IsUnknown() {
		return
	}
	resp.Diagnostics.Append(p.priorState.GetAttribute(ctx, at, &prior)...)
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, at, prior)...)
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
	maps.Copy(out, plannedExit(prior, plan))
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
