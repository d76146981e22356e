package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// resizePlan is what an update does to an instance's sizes (instances.ResizeChanges): each
// change and what applying it does, and whether it needs the guest shut down first.
type resizePlan struct {
	changes []instances.Change
	// restart: a change is applied with the guest shut down (a restart in place, or a stop that
	// the same apply asks for), so the update takes the path of a new program (updateSteps).
	restart bool
	// refusedInStandby: a change needs the VMM of an instance that is in Standby and stays there.
	refusedInStandby bool
	// respelled: a size attribute differs even where the sizes do not (hotplug_memory rewritten
	// as memory and max_memory), which Update stores.
	respelled bool
}

// resizeOf is what the update from prior to plan does to the instance's sizes, as the manager
// will decide it: from the state the instance is in when Update runs (updateSteps: a stop the
// same apply asks for comes first). Unknown sizes plan nothing yet.
func resizeOf(ctx context.Context, plan, prior *instanceModel) (resizePlan, error) {
	for _, v := range []SizeValue{plan.Memory, plan.MaxMemory, plan.HotplugMemory, plan.OverlaySize} {
		if v.IsUnknown() {
			return resizePlan{}, nil
		}
	}
	if plan.VCPUs.IsUnknown() || plan.MaxVCPUs.IsUnknown() {
		return resizePlan{}, nil
	}
	want, d := plan.spec(ctx)
	have, dp := prior.spec(ctx)
	if d.HasError() || dp.HasError() {
		return resizePlan{}, nil // the attributes' validators say why
	}
	from, target := instances.State(prior.State.ValueString()), instances.State(plan.State.ValueString())
	cur := from
	if target == instances.Stopped {
		cur = instances.Stopped
	}
	respelled := have.Memory != want.Memory || have.MaxMemory != want.MaxMemory || have.Hotplug != want.Hotplug
	changes, err := instances.ResizeChanges(have, cur, want)
	if err != nil || len(changes) == 0 {
		return resizePlan{respelled: respelled}, err
	}
	r := resizePlan{changes: changes, respelled: respelled, restart: target == instances.Stopped && from != instances.Stopped}
	for _, c := range changes {
		if c.Action == instances.ActionRestart {
			r.restart = true
			r.refusedInStandby = r.refusedInStandby || (from == instances.Standby && target == instances.Standby)
		}
	}
	return r, nil
}

// planChanges names, for every changed size, what apply will do: "memory 512MiB → 1GiB: live",
// "vcpus 2 → 4: restart in place". A size that cannot change (an overlay made smaller) is an
// error naming what is allowed; a change that needs the VMM of an instance staying in Standby is
// warned of as refused by apply, as a new program is (planStandbyProgram). A replacement says
// what it loses itself (planReplace).
func (p *instancePlan) planChanges(ctx context.Context, resp *resource.ModifyPlanResponse) {
	if p.creating() || p.replacing() || resp.Diagnostics.HasError() {
		return
	}
	plan, prior := &p.plan.instanceModel, &p.prior.instanceModel
	r, err := resizeOf(ctx, plan, prior)
	if err != nil {
		at := path.Root("overlay_size")
		var fe *instances.FieldError
		if errors.As(err, &fe) {
			at = path.Root(fe.Field)
		}
		resp.Diagnostics.AddAttributeError(at, "Invalid Size", err.Error())
		return
	}
	if len(r.changes) == 0 {
		return
	}
	p.restartsInPlace = needsRestart(r.changes)
	lines := make([]string, len(r.changes))
	for i, c := range r.changes {
		lines[i] = c.String()
	}
	who := describe(prior.Name.ValueString(), prior.ID.ValueString())
	at := path.Root(r.changes[0].Attribute)
	if r.refusedInStandby {
		resp.Diagnostics.AddAttributeWarning(at, "Apply Will Refuse This Change", fmt.Sprintf(
			"Instance: %s\n%s\n\nThe instance is in Standby and stays there, and this change needs its guest restarted, which would discard "+
				"the Standby snapshot (the guest's memory). Apply will refuse it and change nothing; the instance stays in Standby.\n\n"+
				"Set state = \"Running\" in the same change (the instance is restored, then restarted in place with the new size), "+
				"or apply state = \"Running\" first and change the size afterwards.", who, strings.Join(lines, "\n")))
		return
	}
	resp.Diagnostics.AddAttributeWarning(at, "Instance Will Change In Place", fmt.Sprintf(
		"Instance: %s\n%s\n\nThe instance keeps its id, overlay, volumes and addresses. \"live\": the running guest gets it while its program "+
			"runs on; \"restart in place\": the guest is shut down and booted again, and comes back in the state it had.",
		who, strings.Join(lines, "\n")))
}

// needsRestart reports whether a change restarts the guest in place.
func needsRestart(changes []instances.Change) bool {
	for _, c := range changes {
		if c.Action == instances.ActionRestart {
			return true
		}
	}
	return false
}
