package provider

import (
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// planUnresponsiveVMM warns when apply would kill a VMM: the refresh found it alive but not
// answering (Unknown, with a pid), and every state that can be set is reached from there only by
// stopping it by force. A replacement is left to its own warning: it loses the overlay too.
func (p *instancePlan) planUnresponsiveVMM(resp *resource.ModifyPlanResponse) {
	if p.creating() || p.replacing() {
		return
	}
	prior, plan, diags := &p.prior.instanceModel, &p.plan.instanceModel, &resp.Diagnostics
	if !prior.State.Equal(types.StringValue(string(instances.Unknown))) || prior.PID.IsNull() || prior.PID.IsUnknown() {
		return // no VMM runs, or it answers
	}
	if plan.State.IsUnknown() || plan.State.IsNull() {
		return
	}
	name, target := prior.Name.ValueString(), plan.State.ValueString()
	reason := prior.StateReason.ValueString()
	if reason == "" {
		reason = "no reason was given"
	}
	next := fmt.Sprintf("The guest then boots afresh from its overlay and is brought to %s.", target)
	if target == string(instances.Stopped) {
		next = "The instance is then Stopped."
	}
	diags.AddAttributeWarning(path.Root("state"), "Apply Will Kill an Unresponsive VMM",
		fmt.Sprintf("Instance: %s\nWarning: the VMM of %s does not answer; apply will kill it: the guest's memory is lost, its overlay is kept. %s\n"+
			"Why it is Unknown: %s\n\n"+
			"Apply gives the VMM %v more to answer before it kills it. If the VMM is only slow (a loaded host), "+
			"give it longer with timeouts = { read = \"30s\" } and plan again.",
			describe(name, prior.ID.ValueString()), name, next, reason, instances.KillProbeTimeout))
}
