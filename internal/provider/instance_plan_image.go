package provider

import (
	"context"
	"errors"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
)

// planImage finds at plan time an image that a create cannot boot (a path that does not exist,
// a layout without that tag, an image for another platform), and tells a new spelling of an
// instance's image (another tag, transport or digest of the same manifest) from another image,
// so that only another image replaces the instance. A registry that cannot be asked leaves the
// spelling counted as another image, and the plan with no error: apply tells.
func (r *InstanceResource) planImage(ctx context.Context, p *instancePlan, resp *resource.ModifyPlanResponse) {
	ref := p.plan.Image
	if r.manager == nil || ref.IsUnknown() || ref.IsNull() || !p.creating() && ref.Equal(p.prior.Image) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, planLookTimeout)
	defer cancel()
	// A reference to an image on this machine is checked by reading it; a failure is the same at apply.
	if err := r.manager.CheckImage(ctx, ref.ValueString()); err != nil && ctx.Err() == nil {
		p.badImage(ctx, r, err, resp)
		return
	}
	if p.creating() {
		return
	}
	digest, err := r.manager.ImageDigest(ctx, ref.ValueString())
	switch {
	case errors.Is(err, images.ErrNotFound) || errors.Is(err, images.ErrPlatform):
		p.badImage(ctx, r, err, resp)
	case err != nil:
		tflog.Debug(ctx, "could not resolve the new image at plan time", map[string]any{"image": ref.ValueString(), "error": err.Error()})
		p.imageUnresolved = err
	default:
		p.sameImage = digest == p.prior.ImageDigest.ValueString()
	}
}

// badImage reports an image that apply would fail on; for an existing instance, after deleting
// it for the replacement.
func (p *instancePlan) badImage(ctx context.Context, r *InstanceResource, err error, resp *resource.ModifyPlanResponse) {
	f := failure{action: "Create", name: p.plan.Name.ValueString(), err: err, left: "nothing was changed", at: path.Root("image")}
	if !p.creating() {
		f.action, f.id = "Update", p.prior.ID.ValueString()
		f.left = "nothing was changed; a new image replaces the instance, and its replacement could not be created from this one"
	}
	f.add(ctx, r.manager, &resp.Diagnostics)
}
