package provider

import (
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// planUnresponsiveVMM warns when apply would kill a VMM: the refresh found it alive but not
// answering (Unknown, with a pid), and every state that can be set is reached from there only by
// stopping it by force. A replacement is left to its own warning: it loses the overlay too.
func planUnresponsiveVMM(prior, plan *instanceModel, diags *diag.Diagnostics) {
	if prior == nil || !prior.State.Equal(types.StringValue(string(instances.Unknown))) || prior.PID.IsNull() || prior.PID.IsUnknown() {
		return // no VMM runs, or it answers
	}
	if plan.State.IsUnknown() || plan.State.IsNull() || replaced(prior, plan) {
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

// replaced reports whether plan changes an attribute that replaces the instance.
func replaced(prior, plan *instanceModel) bool {
	for _, pair := range [][2]attr.Value{
		{prior.Name, plan.Name}, {prior.Image, plan.Image}, {prior.VCPUs, plan.VCPUs},
		{prior.Memory, plan.Memory}, {prior.HotplugMemory, plan.HotplugMemory}, {prior.OverlaySize, plan.OverlaySize},
	} {
		if !pair[0].Equal(pair[1]) {
			return true
		}
	}
	return false
}
