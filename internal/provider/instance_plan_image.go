package provider

import (
	"context"
	"errors"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
)

// planImage finds at plan time an image that cannot be booted (a path that does not exist, a
// layout without that tag, an image for another platform): a create of it fails the plan. For an
// existing instance it tells a new spelling of its image (another tag, transport or digest of the
// same manifest) from another image, so that only another image replaces it; an image that
// cannot be booted replaces nothing (planReplace). A registry that cannot be asked leaves the
// spelling counted as another image: apply tells.
func (r *InstanceResource) planImage(ctx context.Context, p *instancePlan, resp *resource.ModifyPlanResponse) {
	ref := p.plan.Image
	if r.manager == nil || ref.IsUnknown() || ref.IsNull() || !p.creating() && ref.Equal(p.prior.Image) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, planLookTimeout)
	defer cancel()
	// An image on this machine is checked by reading it; what fails now fails at apply.
	err := r.manager.CheckImage(ctx, ref.ValueString())
	switch {
	case err != nil && ctx.Err() != nil:
		return
	case p.creating() && err != nil:
		failure{action: "Create", name: p.plan.Name.ValueString(), err: err, left: "nothing was changed", at: path.Root("image")}.add(ctx, r.manager, &resp.Diagnostics)
		return
	case p.creating():
		return
	case err != nil:
		p.imageBroken = err
		return
	}
	digest, err := r.manager.ImageDigest(ctx, ref.ValueString())
	switch {
	case errors.Is(err, images.ErrNotFound) || errors.Is(err, images.ErrPlatform):
		p.imageBroken = err
	case err != nil:
		tflog.Debug(ctx, "could not resolve the new image at plan time", map[string]any{"image": ref.ValueString(), "error": err.Error()})
		p.imageUnresolved = err
	default:
		p.sameImage = digest == p.prior.ImageDigest.ValueString()
	}
}
