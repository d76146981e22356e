package provider

import (
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// planProgramExited warns when a plan boots an instance whose last boot ended with its program
// exiting, so that a program that keeps exiting is not booted again and again without a word.
func (p *instancePlan) planProgramExited(resp *resource.ModifyPlanResponse) {
	if p.creating() || p.replacing() {
		return
	}
	prior, plan := &p.prior.instanceModel, &p.plan.instanceModel
	if prior.ExitCode.IsNull() || prior.ExitCode.IsUnknown() || !prior.State.Equal(types.StringValue(string(instances.Stopped))) {
		return
	}
	switch instances.State(plan.State.ValueString()) {
	case instances.Running, instances.Paused:
	default:
		return
	}
	console := "the instance's console log on the host"
	if !prior.ConsoleLog.IsNull() {
		console = "the console log on the host, " + prior.ConsoleLog.ValueString()
	}
	resp.Diagnostics.AddWarning("Instance Program Exited on Its Last Boot",
		fmt.Sprintf("Instance: %s\nThe last boot ended with exit code %d: %s.\n\nThis plan boots the instance again. If the program "+
			"exits again within %s of starting, apply fails with its exit code and last console lines; if it exits later, the "+
			"instance is Stopped again and the next plan shows it. Its output is in %s.",
			describe(prior.Name.ValueString(), prior.ID.ValueString()), prior.ExitCode.ValueInt64(), prior.StateReason.ValueString(),
			instances.ProgramSettle, console))
}

// planExit plans exit_code and state_reason. A change of state leaves nothing to say about the
// last boot (a stop on request is no exit), nor does a restart; otherwise they stay.
func planExit(prior, plan *instanceModel, restart bool) {
	if plan.State.IsUnknown() {
		return
	}
	if plan.State.Equal(prior.State) && (plan.State.ValueString() == string(instances.Stopped) || !restart) {
		plan.ExitCode, plan.StateReason = prior.ExitCode, prior.StateReason
		return
	}
	plan.ExitCode, plan.StateReason = types.Int64Null(), types.StringNull()
}
