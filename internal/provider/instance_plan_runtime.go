package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// planRuntime plans as known every computed attribute that apply will not change. The framework
// marks them all unknown as soon as the configuration differs from the state in any way, also
// when the difference is no change (a size spelled anew, a new timeout): then every one keeps its
// prior value and the plan is empty. A state change or a restart shows what it can know.
func (p *instancePlan) planRuntime(resp *resource.ModifyPlanResponse) {
	if p.creating() || p.replacing() || resp.Diagnostics.HasError() {
		return // the plan of the replacement's create decides
	}
	plan, prior := &p.plan.instanceModel, &p.prior.instanceModel
	restart := programChanged(plan, prior) || p.restartsInPlace
	if plan.State.Equal(prior.State) && !restart {
		plan.keepUnknownOutputs(prior)
		return
	}
	planRuntimeChange(prior, plan, restart)
}

// keepUnknownOutputs gives every computed-only attribute that plan has as unknown its prior value.
func (m *instanceModel) keepUnknownOutputs(prior *instanceModel) {
	keep(&m.ID, prior.ID)
	keep(&m.ImageDigest, prior.ImageDigest)
	keep(&m.Hypervisor, prior.Hypervisor)
	keep(&m.HypervisorVersion, prior.HypervisorVersion)
	keep(&m.StateReason, prior.StateReason)
	keep(&m.ExitCode, prior.ExitCode)
	keep(&m.PID, prior.PID)
	keep(&m.CreatedAt, prior.CreatedAt)
	keep(&m.StartedAt, prior.StartedAt)
	keep(&m.Directory, prior.Directory)
	keep(&m.ConsoleLog, prior.ConsoleLog)
	keep(&m.SnapshotBytes, prior.SnapshotBytes)
	keep(&m.IPAddress, prior.IPAddress)
	keep(&m.MACAddress, prior.MACAddress)
	keep(&m.TapDevice, prior.TapDevice)
}

func keep[T attr.Value](planned *T, prior T) {
	if (*planned).IsUnknown() {
		*planned = prior
	}
}

// willBoot reports whether applying plan may boot the guest afresh, which is when the VMM version
// is read anew; restart: the update restarts the guest in place (a new program or size). Moving between Running, Paused and Standby
// (a restore included) and stopping never boot.
func willBoot(prior, plan *instanceModel, restart bool) bool {
	if !plan.State.Equal(types.StringValue(string(instances.Stopped))) && restart {
		return true
	}
	switch instances.State(prior.State.ValueString()) {
	case instances.Running, instances.Paused, instances.Standby:
		return false
	}
	return !plan.State.Equal(types.StringValue(string(instances.Stopped)))
}

// planRuntimeChange plans the computed attributes whose value after apply is known at plan time,
// so that a state change shows as itself rather than as a list of "known after apply".
func planRuntimeChange(prior, plan *instanceModel, restart bool) {
	if !willBoot(prior, plan, restart) {
		plan.HypervisorVersion = prior.HypervisorVersion
	}
	if plan.State.IsUnknown() {
		return
	}
	planExit(prior, plan, restart)
	switch target := instances.State(plan.State.ValueString()); target {
	case instances.Stopped:
		plan.PID, plan.StartedAt = types.Int64Null(), types.StringNull()
		plan.SnapshotBytes = types.Int64Value(0)
	case instances.Standby:
		plan.PID, plan.StartedAt = types.Int64Null(), types.StringNull()
	case instances.Running, instances.Paused:
		plan.SnapshotBytes = types.Int64Value(0)
		if was := instances.State(prior.State.ValueString()); (was == instances.Running || was == instances.Paused) && !restart {
			plan.PID, plan.StartedAt = prior.PID, prior.StartedAt // pausing and resuming keep the VMM
		}
	}
}
