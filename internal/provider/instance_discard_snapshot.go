package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// discardSnapshot reads the write-only discard_snapshot from the configuration; the plan and the
// state never hold it.
func discardSnapshot(ctx context.Context, config tfsdk.Config) (bool, diag.Diagnostics) {
	var v types.Bool
	diags := config.GetAttribute(ctx, path.Root("discard_snapshot"), &v)
	return v.ValueBool(), diags
}

// stateOptions are the manager's options for the state change an update makes.
func stateOptions(ctx context.Context, config tfsdk.Config) ([]instances.StateOption, diag.Diagnostics) {
	discard, diags := discardSnapshot(ctx, config)
	if !discard {
		return nil, diags
	}
	return []instances.StateOption{instances.WithDiscardSnapshot()}, diags
}

// planDiscardSnapshot shows in the plan that a Standby → Stopped change with discard_snapshot
// deletes the memory snapshot instead of restoring it.
func (p *instancePlan) planDiscardSnapshot(ctx context.Context, config tfsdk.Config, resp *resource.ModifyPlanResponse) {
	if p.creating() || p.replacing() {
		return
	}
	prior, plan := &p.prior.instanceModel, &p.plan.instanceModel
	if !prior.State.Equal(types.StringValue(string(instances.Standby))) || !plan.State.Equal(types.StringValue(string(instances.Stopped))) {
		return
	}
	discard, d := discardSnapshot(ctx, config)
	resp.Diagnostics.Append(d...)
	if !discard {
		return
	}
	name := prior.Name.ValueString()
	resp.Diagnostics.AddAttributeWarning(path.Root("discard_snapshot"), "Instance Snapshot Will Be Deleted",
		fmt.Sprintf("Instance: %s\nThe memory snapshot of %s will be deleted; the overlay is kept.\n\nFor the guest this is a power cut: "+
			"it does not resume, and what its program had not written to the overlay when the snapshot was taken is lost. "+
			"The next start boots it afresh on the kept overlay.",
			describe(name, prior.ID.ValueString()), name))
}
