package provider

import (
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// volumeModel is one volume as Terraform sees it; the resource and the data sources share it.
type volumeModel struct {
	ID             types.String `tfsdk:"id"`
	Name           types.String `tfsdk:"name"`
	Size           SizeValue    `tfsdk:"size"`
	Source         types.String `tfsdk:"source"`
	AttachedTo     types.List   `tfsdk:"attached_to"`
	AllocatedBytes types.Int64  `tfsdk:"allocated_bytes"`
	CreatedAt      types.String `tfsdk:"created_at"`
}

// volumeResourceModel adds what only the resource has.
type volumeResourceModel struct {
	volumeModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

// attachmentAttrTypes are the attributes of one attached_to element.
var attachmentAttrTypes = map[string]attr.Type{
	"instance_id": types.StringType, "instance_name": types.StringType, "mount_path": types.StringType, "readonly": types.BoolType,
}

var attachmentType = types.ObjectType{AttrTypes: attachmentAttrTypes}

// spec is the manager's view of the configured volume. The size has passed its validator.
func (m *volumeModel) spec() (instances.VolumeSpec, error) {
	n, err := m.Size.Bytes()
	return instances.VolumeSpec{Name: m.Name.ValueString(), Size: n, Source: m.Source.ValueString()}, err
}

// fill writes everything the manager reports about v into m.
func (m *volumeModel) fill(v *instances.Volume) diag.Diagnostics {
	m.ID = types.StringValue(v.ID)
	m.Name = types.StringValue(v.Name)
	m.Size = NewSizeValue(v.Size)
	m.Source = optionalString(v.Source)
	m.AllocatedBytes = types.Int64Value(v.AllocatedBytes)
	m.CreatedAt = timestamp(v.CreatedAt)
	elems := make([]attr.Value, 0, len(v.AttachedTo))
	for _, a := range v.AttachedTo {
		elems = append(elems, types.ObjectValueMust(attachmentAttrTypes, map[string]attr.Value{
			"instance_id": types.StringValue(a.InstanceID), "instance_name": types.StringValue(a.InstanceName),
			"mount_path": types.StringValue(a.MountPath), "readonly": types.BoolValue(a.ReadOnly),
		}))
	}
	var diags diag.Diagnostics
	m.AttachedTo, diags = types.ListValue(attachmentType, elems)
	return diags
}
