package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// ModifyPlan makes a volume's plan tell the truth: a name taken on the host, a shrink, and what a
// grow restarts, each found before apply.
func (r *VolumeResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return // a destroy
	}
	var plan volumeResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if req.State.Raw.IsNull() {
		r.planVolumeName(ctx, &plan, resp)
		return
	}
	var prior volumeResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() || plan.Size.IsUnknown() {
		return
	}
	if !plan.Name.Equal(prior.Name) || !plan.Source.Equal(prior.Source) {
		return // replaced: a new volume is made at the planned size
	}
	have, errHave := prior.Size.Bytes()
	want, errWant := plan.Size.Bytes()
	if errHave != nil || errWant != nil || have == want {
		return
	}
	if err := instances.CheckVolumeResize(have, want); err != nil {
		volumeFailure{action: "Update", name: prior.Name.ValueString(), id: prior.ID.ValueString(), err: err,
			left: "nothing was changed", at: path.Root("size")}.add(&resp.Diagnostics)
		return
	}
	// The computed attributes change with a resize.
	plan.AttachedTo = types.ListUnknown(attachmentType)
	plan.AllocatedBytes = types.Int64Unknown()
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
	if r.manager == nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, planLookTimeout)
	defer cancel()
	restarts, err := r.manager.ResizeEffect(lctx, prior.ID.ValueString(), want)
	if err != nil && !errors.Is(err, instances.ErrVolumeInUse) {
		tflog.Debug(ctx, "could not check the resize at plan time", map[string]any{"error": err.Error()})
		return
	}
	if err != nil {
		volumeFailure{action: "Update", name: prior.Name.ValueString(), id: prior.ID.ValueString(), err: err,
			left: "nothing was changed", at: path.Root("size")}.add(&resp.Diagnostics)
		return
	}
	resp.Diagnostics.AddAttributeWarning(path.Root("size"), "Volume Resize", resizeWarning(have, want, restarts))
}

// resizeWarning says what a grow does: "size 1GiB → 2GiB: instance db restarts in place to see it".
func resizeWarning(have, want int64, restarts []string) string {
	s := fmt.Sprintf("size %s → %s: ", units.Format(have), units.Format(want))
	switch len(restarts) {
	case 0:
		return s + "no instance restarts"
	case 1:
		return s + "instance " + restarts[0] + " restarts in place to see it"
	}
	return s + "instances " + strings.Join(restarts, ", ") + " restart in place to see it"
}

// planVolumeName finds at plan time a name another volume on the host holds.
func (r *VolumeResource) planVolumeName(ctx context.Context, plan *volumeResourceModel, resp *resource.ModifyPlanResponse) {
	if r.manager == nil || plan.Name.IsUnknown() {
		return
	}
	name := plan.Name.ValueString()
	lctx, cancel := context.WithTimeout(ctx, planLookTimeout)
	defer cancel()
	holder, err := r.manager.VolumeNameHolder(lctx, name)
	switch {
	case err == nil:
		return
	case !errors.Is(err, instances.ErrNameTaken):
		tflog.Debug(ctx, "could not check the volume name at plan time", map[string]any{"name": name, "error": err.Error()})
		return
	case volumesInState.has(holder):
		return // the replacement of a volume Terraform manages: it is deleted before the create
	}
	volumeFailure{action: "Create", name: name, at: path.Root("name"),
		err:  fmt.Errorf("%w, on this host (data_dir %s)", err, r.manager.DataDir()),
		left: "nothing was changed"}.add(&resp.Diagnostics)
}
