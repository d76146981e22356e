package provider

import (
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// planStandbyProgram warns of a new program for an instance that is in Standby and stays there:
// the restart would throw away its snapshot, so apply refuses it and changes nothing. A warning,
// not an error: terraform destroy plans the configuration first, and an error there would block
// it. A replacement needs no restart.
func (p *instancePlan) planStandbyProgram(resp *resource.ModifyPlanResponse) {
	if p.creating() || p.replacing() || resp.Diagnostics.HasError() {
		return
	}
	plan, prior := &p.plan.instanceModel, &p.prior.instanceModel
	standby := types.StringValue(string(instances.Standby))
	if !prior.State.Equal(standby) || !plan.State.Equal(standby) || !programChanged(plan, prior) {
		return
	}
	changed := changedProgramAttrs(plan, prior)
	names := strings.Join(changed, ", ")
	resp.Diagnostics.AddAttributeWarning(path.Root(changed[0]), "Apply Will Refuse This Change",
		fmt.Sprintf("Instance: %s\nThis plan changes %s of an instance in Standby, and a new program needs a restart, which would discard "+
			"the Standby snapshot (the guest's memory). Apply will refuse it and change nothing; the instance stays in Standby.\n\n"+
			"Set state = \"Running\" in the same change (the instance is restored, then restarted with the new program), "+
			"or apply state = \"Running\" first and change %s afterwards.",
			describe(prior.Name.ValueString(), prior.ID.ValueString()), names, names))
}
