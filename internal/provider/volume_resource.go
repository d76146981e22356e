package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

var (
	_ resource.Resource                = &VolumeResource{}
	_ resource.ResourceWithConfigure   = &VolumeResource{}
	_ resource.ResourceWithImportState = &VolumeResource{}
	_ resource.ResourceWithModifyPlan  = &VolumeResource{}
)

// VolumeResource is hypeman_volume: thin CRUD over the manager's volumes.
type VolumeResource struct {
	manager *instances.Manager
}

// NewVolumeResource is the resource's factory for the provider.
func NewVolumeResource() resource.Resource { return &VolumeResource{} }

func (r *VolumeResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_volume"
}

func (r *VolumeResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.manager = providerDataFrom(req.ProviderData, &resp.Diagnostics).manager
}

// volumeFailure is one failed volume operation, in the provider's one voice:
// "Unable to <Action> Volume", then the volume, the error, and what is left.
type volumeFailure struct {
	action, name, id string
	err              error
	left             string
	at               path.Path
}

func (f volumeFailure) add(diags *diag.Diagnostics) {
	addFailure(diags, "Volume", f.action, describe(f.name, f.id), f.err, f.left, volumeHint(f.err, f.name), f.at)
}

// volumeHint says what to do about the volume errors a user can act on.
func volumeHint(err error, name string) string {
	if name == "" {
		name = "<volume name>"
	}
	switch {
	case errors.Is(err, instances.ErrNameTaken):
		return "Another volume on this host has that name. Import it (terraform import hypeman_volume.<label> " + name + ") or choose another name."
	case errors.Is(err, instances.ErrVolumeInUse):
		return "Detach the volume first: remove the instance's volume block (or destroy the instance), or for an instance in Standby set its state to \"Running\" or \"Stopped\"; then run the change again."
	}
	return hint(err, name)
}

func (r *VolumeResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan volumeResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	timeout, d := plan.Timeouts.Create(ctx, defaultCreateTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	spec, err := plan.spec()
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("size"), "Invalid Size", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tflog.Info(ctx, "creating volume", map[string]any{"name": spec.Name, "size": spec.Size, "source": spec.Source})
	v, err := r.manager.CreateVolume(ctx, spec)
	if err != nil {
		volumeFailure{action: "Create", name: spec.Name, err: err, left: "nothing: a failed create removes everything it made on the host"}.add(&resp.Diagnostics)
		return
	}
	resp.Diagnostics.Append(plan.fill(v)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *VolumeResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state volumeResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	timeout, d := state.Timeouts.Read(ctx, defaultReadTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := state.ID.ValueString()
	volumesInState.remember(id)
	v, err := r.manager.GetVolume(ctx, id)
	if errors.Is(err, instances.ErrVolumeNotFound) {
		tflog.Warn(ctx, "volume is gone from the host; removing it from the state", map[string]any{"id": id, "name": state.Name.ValueString()})
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		volumeFailure{action: "Read", name: state.Name.ValueString(), id: id, err: err, left: "unknown: the volume could not be read"}.add(&resp.Diagnostics)
		return
	}
	resp.Diagnostics.Append(state.fill(v)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *VolumeResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, prior volumeResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	timeout, d := plan.Timeouts.Update(ctx, defaultUpdateTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id, name := prior.ID.ValueString(), prior.Name.ValueString()
	size, err := plan.Size.Bytes()
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("size"), "Invalid Size", err.Error())
		return
	}
	tflog.Info(ctx, "resizing volume", map[string]any{"id": id, "name": name, "size": size})
	v, err := r.manager.ResizeVolume(ctx, id, size)
	if err == nil {
		resp.Diagnostics.Append(plan.fill(v)...)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	left := "unknown: the volume could not be read back"
	if now, gerr := r.manager.GetVolume(context.WithoutCancel(ctx), id); gerr == nil {
		left = "the volume is " + units.Format(now.Size)
		resp.Diagnostics.Append(prior.fill(now)...)
	}
	volumeFailure{action: "Update", name: name, id: id, err: err, left: left}.add(&resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &prior)...)
}

func (r *VolumeResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state volumeResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	timeout, d := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id, name := state.ID.ValueString(), state.Name.ValueString()
	tflog.Info(ctx, "deleting volume", map[string]any{"id": id, "name": name})
	err := r.manager.DeleteVolume(ctx, id)
	if errors.Is(err, instances.ErrVolumeNotFound) {
		return // already gone
	}
	if err != nil {
		volumeFailure{action: "Delete", name: name, id: id, err: err, left: "the volume and its data are kept"}.add(&resp.Diagnostics)
	}
}

// ImportState accepts an id or a name and fills every attribute so the next plan is empty.
func (r *VolumeResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	ctx, cancel := context.WithTimeout(ctx, defaultReadTimeout)
	defer cancel()
	v, err := r.manager.GetVolume(ctx, req.ID)
	if errors.Is(err, instances.ErrVolumeNotFound) {
		err = fmt.Errorf("no volume has the id or name %q on this host (data_dir %s)", req.ID, r.manager.DataDir())
	}
	if err != nil {
		volumeFailure{action: "Import", name: req.ID, err: err, left: "nothing was changed"}.add(&resp.Diagnostics)
		return
	}
	m := volumeResourceModel{Timeouts: timeouts.Value{Object: types.ObjectNull(timeoutsAttrTypes)}}
	resp.Diagnostics.Append(m.fill(v)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// volumesInState holds the ids of the volumes Terraform has handed this provider process in a
// prior state: the create half of a volume's replacement meets the name its predecessor holds.
var volumesInState idSet
