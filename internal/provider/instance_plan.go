package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// instancePlan is what the plan checks of ModifyPlan read: the plan as the framework and the
// schema's plan modifiers made it, and the instance as the last refresh saw it.
type instancePlan struct {
	plan  instanceResourceModel
	prior *instanceResourceModel // nil when the plan creates the instance
}

// readPlan decodes the request; ok is false for a destroy (nothing to check) or on an error.
func readPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) (p *instancePlan, ok bool) {
	if req.Plan.Raw.IsNull() {
		return nil, false
	}
	p = &instancePlan{}
	resp.Diagnostics.Append(req.Plan.Get(ctx, &p.plan)...)
	if !req.State.Raw.IsNull() {
		p.prior = &instanceResourceModel{}
		resp.Diagnostics.Append(req.State.Get(ctx, p.prior)...)
	}
	return p, !resp.Diagnostics.HasError()
}

func (p *instancePlan) creating() bool { return p.prior == nil }
