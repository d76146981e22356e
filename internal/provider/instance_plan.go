package provider

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
)

// planLookTimeout bounds what a plan check asks the host or a registry; a check that runs out
// says nothing, and apply tells.
const planLookTimeout = 20 * time.Second

// instancePlan is what the plan checks of ModifyPlan read: the plan as the framework and the
// schema's plan modifiers made it, the instance as the last refresh saw it, and what the checks
// before found.
type instancePlan struct {
	plan       instanceResourceModel
	prior      *instanceResourceModel // nil when the plan creates the instance
	priorState tfsdk.State

	// sameImage: the planned image is another spelling of the image the instance has (planImage).
	sameImage bool
	// imageUnresolved is why the planned image could not be compared with the instance's.
	imageUnresolved error
	// imageBroken is why the planned image cannot be booted (planImage).
	imageBroken error
	// replacedBy names the attributes whose change replaces the instance (planReplace).
	replacedBy []string
	// restartsInPlace: a size change restarts the guest in place (planChanges).
	restartsInPlace bool
}

// planIsPriorState reports whether the framework planned the instance exactly as it is: a refresh
// that found nothing new and a configuration that changes nothing. Nothing is applied then.
func planIsPriorState(req resource.ModifyPlanRequest) bool {
	return !req.Plan.Raw.IsNull() && !req.State.Raw.IsNull() && req.Plan.Raw.Equal(req.State.Raw)
}

// readPlan decodes the request; ok is false for a destroy (nothing to check) or on an error.
func readPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) (p *instancePlan, ok bool) {
	if req.Plan.Raw.IsNull() {
		return nil, false
	}
	p = &instancePlan{priorState: req.State}
	resp.Diagnostics.Append(req.Plan.Get(ctx, &p.plan)...)
	if !req.State.Raw.IsNull() {
		p.prior = &instanceResourceModel{}
		resp.Diagnostics.Append(req.State.Get(ctx, p.prior)...)
		inState.remember(p.prior.ID.ValueString())
	}
	return p, !resp.Diagnostics.HasError()
}

// write stores p.plan as the plan, once, after every check has changed it as it had to.
func (p *instancePlan) write(ctx context.Context, resp *resource.ModifyPlanResponse) {
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &p.plan)...)
	}
}

func (p *instancePlan) creating() bool { return p.prior == nil }

func (p *instancePlan) replacing() bool { return len(p.replacedBy) > 0 }
