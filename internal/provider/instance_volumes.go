package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// mountAttrTypes are the attributes of one volume block.
var mountAttrTypes = map[string]attr.Type{"volume_id": types.StringType, "mount_path": types.StringType, "readonly": types.BoolType}

var mountType = types.ObjectType{AttrTypes: mountAttrTypes}

// instanceVolumeBlock is the instance's `volume` blocks: the volumes it mounts.
func instanceVolumeBlock() schema.Block {
	return schema.ListNestedBlock{
		MarkdownDescription: "A volume (`hypeman_volume`) the guest mounts; any number. Changing the list is an update in place: a " +
			"`Running` or `Paused` instance restarts in place (its overlay and volumes are kept), a `Stopped` one mounts them at its " +
			"next start, and one that stays in `Standby` refuses it (the plan warns; set `state = \"Running\"` in the same change). Replacing the instance keeps every volume and its data.",
		NestedObject: schema.NestedBlockObject{Attributes: map[string]schema.Attribute{
			"volume_id": schema.StringAttribute{
				MarkdownDescription: "The volume's id (`hypeman_volume.<label>.id`). A writable volume is attached to at most one instance; the plan fails when another holds it.",
				Required:            true,
				Validators:          []validator.String{validVolumeID()},
			},
			"mount_path": schema.StringAttribute{
				MarkdownDescription: "Where the guest mounts the volume: " + instances.MountPathRule + ", neither inside nor above another volume's mount. Missing directories are created.",
				Required:            true,
				Validators:          []validator.String{validMountPath()},
			},
			"readonly": schema.BoolAttribute{
				MarkdownDescription: "Mount the volume read-only; a read-only volume may be attached to many instances. Defaults to `false`.",
				Optional:            true,
				Computed:            true,
				Default:             booldefault.StaticBool(false),
			},
		}},
	}
}

type mountModel struct {
	VolumeID  types.String `tfsdk:"volume_id"`
	MountPath types.String `tfsdk:"mount_path"`
	ReadOnly  types.Bool   `tfsdk:"readonly"`
}

// mounts reads the volume blocks; known is false when any value is unknown yet.
func mounts(ctx context.Context, l types.List) (out []instances.VolumeMount, known bool, diags diag.Diagnostics) {
	if l.IsNull() || l.IsUnknown() {
		return nil, !l.IsUnknown(), nil
	}
	var ms []mountModel
	diags = l.ElementsAs(ctx, &ms, false)
	known = true
	for _, m := range ms {
		if m.VolumeID.IsUnknown() || m.MountPath.IsUnknown() || m.ReadOnly.IsUnknown() {
			known = false
		}
		out = append(out, instances.VolumeMount{VolumeID: m.VolumeID.ValueString(), MountPath: m.MountPath.ValueString(), ReadOnly: m.ReadOnly.ValueBool()})
	}
	return out, known, diags
}

// mountList is the volume blocks for what the host reports; no volumes keeps had's spelling
// (null or empty), which Terraform holds for the same.
func mountList(vs []instances.VolumeMount, had types.List) types.List {
	if len(vs) == 0 {
		if had.IsNull() || had.IsUnknown() || had.ElementType(context.Background()) == nil {
			return types.ListNull(mountType)
		}
		return types.ListValueMust(mountType, nil)
	}
	elems := make([]attr.Value, 0, len(vs))
	for _, v := range vs {
		elems = append(elems, types.ObjectValueMust(mountAttrTypes, map[string]attr.Value{
			"volume_id": types.StringValue(v.VolumeID), "mount_path": types.StringValue(v.MountPath), "readonly": types.BoolValue(v.ReadOnly),
		}))
	}
	return types.ListValueMust(mountType, elems)
}

// mountsChanged reports whether the planned volume blocks differ from the prior state's.
func mountsChanged(plan, prior *instanceResourceModel) bool {
	if len(plan.Volumes.Elements()) == 0 && len(prior.Volumes.Elements()) == 0 {
		return false // null and empty are both no volumes
	}
	return !plan.Volumes.Equal(prior.Volumes)
}

// planVolumes checks the volume blocks at plan time: the rules over the whole list, then on the
// host whether each volume exists and is free, and what the change does to the instance.
func (r *InstanceResource) planVolumes(ctx context.Context, p *instancePlan, resp *resource.ModifyPlanResponse) {
	if p.prior != nil && !p.plan.Volumes.IsUnknown() && !mountsChanged(&p.plan, p.prior) && len(p.plan.Volumes.Elements()) == 0 {
		p.plan.Volumes = p.prior.Volumes // no volumes either way: the prior spelling, so nothing shows as a change
		if p.plan.Volumes.ElementType(ctx) == nil {
			p.plan.Volumes = types.ListNull(mountType)
		}
	}
	ms, known, d := mounts(ctx, p.plan.Volumes)
	resp.Diagnostics.Append(d...)
	if known {
		for _, err := range instances.ValidateMounts("volume", ms) {
			addMountError(err, &resp.Diagnostics)
		}
	}
	if resp.Diagnostics.HasError() {
		return
	}
	name := p.plan.Name.ValueString()
	if p.prior != nil && mountsChanged(&p.plan, p.prior) && !p.replacing() {
		switch instances.State(p.prior.State.ValueString()) {
		case instances.Running, instances.Paused:
			resp.Diagnostics.AddAttributeWarning(path.Root("volume"), "Instance Restarts",
				fmt.Sprintf("volumes change: %s restarts in place (its overlay and volumes are kept)", name))
		case instances.Standby:
			if !p.plan.State.Equal(p.prior.State) {
				break // it leaves Standby first (restored, then restarted with the new volumes)
			}
			// A warning, not an error, as for a new program: terraform destroy plans the
			// configuration first, and an error there would block it.
			resp.Diagnostics.AddAttributeWarning(path.Root("volume"), "Apply Will Refuse This Change",
				fmt.Sprintf("Instance: %s\nThis plan changes the volumes of an instance in Standby, and its restore needs the disks it "+
					"left. Apply will refuse it and change nothing; the instance stays in Standby.\n\nSet state = \"Running\" in the "+
					"same change (the instance is restored, then restarted with the new volumes), or apply state = \"Running\" first "+
					"and change the volumes afterwards.", describe(name, p.prior.ID.ValueString())))
		}
	}
	if !known || len(ms) == 0 || r.manager == nil {
		return
	}
	id := ""
	if p.prior != nil && !p.replacing() {
		id = p.prior.ID.ValueString()
	}
	lctx, cancel := context.WithTimeout(ctx, planLookTimeout)
	defer cancel()
	problems, err := r.manager.CheckMounts(lctx, id, ms)
	if err != nil {
		tflog.Debug(ctx, "could not check the volumes at plan time", map[string]any{"error": err.Error()})
		return
	}
	for _, pr := range problems {
		at := path.Root("volume").AtListIndex(pr.Index).AtName("volume_id")
		switch {
		case pr.Holder != "" && inState.has(pr.Holder):
			continue // an instance Terraform manages: it may be replaced or destroyed first
		case errors.Is(pr.Err, instances.ErrVolumeNotFound) && p.prior != nil && !p.replacing() && !mountsChanged(&p.plan, p.prior):
			resp.Diagnostics.AddAttributeWarning(at, "Volume Missing", missingVolume(ms[pr.Index], name))
			continue
		}
		failure{action: map[bool]string{true: "Create", false: "Update"}[p.prior == nil], name: name, id: id, at: at, err: pr.Err,
			left: "nothing was changed"}.add(ctx, r.manager, &resp.Diagnostics)
	}
}

// addMountError puts one ValidateMounts error at its attribute ("volume[1].mount_path").
func addMountError(err error, diags *diag.Diagnostics) {
	var fe *instances.FieldError
	if !errors.As(err, &fe) {
		diags.AddAttributeError(path.Root("volume"), "Invalid Volume", err.Error())
		return
	}
	at := path.Root("volume")
	var i int
	var attr string
	if _, scanErr := fmt.Sscanf(strings.Replace(fe.Field, "].", "] ", 1), "volume[%d] %s", &i, &attr); scanErr == nil {
		at = at.AtListIndex(i).AtName(attr)
	}
	diags.AddAttributeError(at, "Invalid Volume", err.Error())
}

// warnMissingVolumes warns, on a plan that changes nothing, about each volume the instance mounts
// that no longer exists on the host: its next boot would fail.
func (r *InstanceResource) warnMissingVolumes(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if r.manager == nil {
		return
	}
	var vols types.List
	var name types.String
	if req.State.GetAttribute(ctx, path.Root("volume"), &vols).HasError() || req.State.GetAttribute(ctx, path.Root("name"), &name).HasError() {
		return
	}
	ms, known, _ := mounts(ctx, vols)
	if !known {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, planLookTimeout)
	defer cancel()
	for i, m := range ms {
		if _, err := r.manager.GetVolume(lctx, m.VolumeID); errors.Is(err, instances.ErrVolumeNotFound) {
			resp.Diagnostics.AddAttributeWarning(path.Root("volume").AtListIndex(i).AtName("volume_id"), "Volume Missing", missingVolume(m, name.ValueString()))
		}
	}
}

func missingVolume(m instances.VolumeMount, name string) string {
	return fmt.Sprintf("volume %s mounted at %s no longer exists on the host: the next boot of %s fails until it is removed from the configuration or replaced",
		m.VolumeID, m.MountPath, name)
}
