package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// fixedForLife lists, for the docs and messages, what an instance keeps for its life.
const fixedForLife = "`name`, `image` (but for another spelling of the same image) and `network` (but for what the instance " +
	"already has); its sizes change in place (instance_plan_changes.go)"

// planReplace decides which changes replace the instance, and warns of what the replacement
// deletes: a replacement is a new instance, with nothing of the old one's but its configuration.
// A replacement whose image cannot be booted is not planned: it would delete the instance and
// then fail; the update planned instead is refused by apply, which changes nothing.
func (p *instancePlan) planReplace(ctx context.Context, resp *resource.ModifyPlanResponse) {
	if p.creating() || resp.Diagnostics.HasError() {
		return
	}
	plan, prior := &p.plan.instanceModel, &p.prior.instanceModel
	if p.imageBroken != nil {
		resp.Diagnostics.AddAttributeWarning(path.Root("image"), "Apply Will Refuse This Change", fmt.Sprintf(
			"Instance: %s\nThe new image cannot be booted: %v\nA new image replaces the instance, and no replacement can be created "+
				"from this one, so the plan does not replace it: apply will fail on the image and change nothing.\n\n"+
				"Fix the image reference, or set it back to %q.",
			describe(prior.Name.ValueString(), prior.ID.ValueString()), p.imageBroken, prior.Image.ValueString()))
		return
	}
	for _, c := range []struct {
		attr    string
		changed bool
	}{
		{"name", !plan.Name.Equal(prior.Name)},
		{"image", !plan.Image.Equal(prior.Image) && !p.sameImage},
	} {
		if c.changed {
			p.replacedBy = append(p.replacedBy, c.attr)
			resp.RequiresReplace.Append(path.Root(c.attr))
		}
	}
	// The network's own plan modifier replaces the instance; here it is only named.
	network, diags := networkReplaces(ctx, p.plan.Network, prior.IPAddress, prior.MACAddress)
	resp.Diagnostics.Append(diags...)
	if network {
		p.replacedBy = append(p.replacedBy, "network")
	}
	if p.replacing() {
		resp.Diagnostics.AddAttributeWarning(path.Root(p.replacedBy[0]), "Instance Will Be Replaced", p.replacementLoss())
	}
}

// replacementLoss says what deleting the instance for its replacement loses, by its state.
func (p *instancePlan) replacementLoss() string {
	prior := &p.prior.instanceModel
	changed := strings.Join(p.replacedBy, ", ")
	var b strings.Builder
	fmt.Fprintf(&b, "Instance: %s\n", describe(prior.Name.ValueString(), prior.ID.ValueString()))
	for _, attr := range p.replacedBy {
		fmt.Fprintf(&b, "%s: %s\n", attr, instances.ActionReplace)
	}
	fmt.Fprintf(&b, "Changing %s replaces the instance: the old one is deleted, and a new one boots from the image with an empty overlay. Deleted with the old one:\n", changed)
	b.WriteString("- its overlay disk: everything the guest wrote outside the image\n")
	switch instances.State(prior.State.ValueString()) {
	case instances.Standby:
		fmt.Fprintf(&b, "- its Standby snapshot (%.1f MiB on disk): the guest's memory, with the program's state\n", float64(prior.SnapshotBytes.ValueInt64())/float64(units.MiB))
	case instances.Stopped:
	default:
		b.WriteString("- the running guest's memory, with the program's state\n")
	}
	b.WriteString("- its console log, and its IP address unless network.ip sets it\n")
	if p.imageUnresolved != nil {
		fmt.Fprintf(&b, "\nThe new image could not be compared with the instance's %s at plan time (%v), so it is taken to be another image.\n",
			prior.ImageDigest.ValueString(), p.imageUnresolved)
	}
	fmt.Fprintf(&b, "\nCopy out what must be kept first, or leave %s as it was. An instance keeps for its life %s.", changed, strings.ReplaceAll(fixedForLife, "`", ""))
	return b.String()
}
