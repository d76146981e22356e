package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// Descriptions the resource and the data sources share.
var (
	volumeIDDescription   = "The volume's id on the host (a ULID). Import accepts it or the name; an instance's `volume` block takes it as `volume_id`."
	volumeSizeDescription = "The volume's capacity, " + instances.VolumeSizeRule.Allowed + ". Sizes are binary, and two spellings of the same size are not a change. " +
		"The disk image is sparse: only what the guest writes takes space on the host (`allocated_bytes`)."
	attachedToDescription = "The instances that hold the volume now, in any state (a `Standby` instance holds its volumes too), ordered by instance name."
	allocatedDescription  = "Bytes the volume's sparse disk image takes on the host's disk."
	volumeCreatedAtDesc   = "When the volume was created (RFC 3339, UTC)."
)

func (r *VolumeResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	stable := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A persistent volume: an ext4 disk image on the host that outlives every instance it is attached to. " +
			"Attach it with a `volume` block of `hypeman_instance`; replacing the instance (a new image, more memory) keeps the volume and its data. " +
			"A writable volume is attached to at most one instance at a time, a read-only one to any number.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: volumeIDDescription,
				Computed:            true,
				PlanModifiers:       stable,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The volume name, unique among the host's volumes: " + instances.NameRule + ". Changing it replaces the volume, which loses its data. " +
					"A name another volume on the host holds fails at plan time.",
				Required:      true,
				Validators:    []validator.String{validName()},
				PlanModifiers: replace,
			},
			"size": schema.StringAttribute{
				CustomType: SizeType{},
				MarkdownDescription: volumeSizeDescription + " Growing it is an update in place: the instances that hold the volume `Running` or `Paused` " +
					"restart in place to see the new size (the plan names them), and one in `Standby` refuses it. Shrinking fails the plan with the current size.",
				Required:      true,
				Validators:    []validator.String{validVolumeSize()},
				PlanModifiers: []planmodifier.String{sizeKeepsStateSpelling{}},
			},
			"source": schema.StringAttribute{
				MarkdownDescription: "What the filesystem is seeded with at create: " + instances.VolumeSourceRule + ". Changing it replaces the volume, which loses its data.",
				Optional:            true,
				Validators:          []validator.String{validVolumeSource()},
				PlanModifiers:       replace,
			},
			"attached_to": schema.ListNestedAttribute{
				MarkdownDescription: attachedToDescription,
				Computed:            true,
				NestedObject:        schema.NestedAttributeObject{Attributes: attachmentAttributes()},
			},
			"allocated_bytes": schema.Int64Attribute{
				MarkdownDescription: allocatedDescription,
				Computed:            true,
			},
			"created_at": schema.StringAttribute{
				MarkdownDescription: volumeCreatedAtDesc,
				Computed:            true,
				PlanModifiers:       stable,
			},
			"timeouts": timeoutsAttribute(ctx),
		},
	}
}

func attachmentAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"instance_id":   schema.StringAttribute{MarkdownDescription: "The holding instance's id.", Computed: true},
		"instance_name": schema.StringAttribute{MarkdownDescription: "The holding instance's name.", Computed: true},
		"mount_path":    schema.StringAttribute{MarkdownDescription: "Where the instance mounts the volume.", Computed: true},
		"readonly":      schema.BoolAttribute{MarkdownDescription: "Whether the instance mounts it read-only.", Computed: true},
	}
}

// checkVolumeSize parses s and applies the manager's volume size rule, quoting s as written.
func checkVolumeSize(s string) error {
	n, err := units.Parse(s)
	if err != nil {
		return &instances.FieldError{Field: "size", Value: s, Allowed: instances.VolumeSizeRule.Allowed + ", written as " + units.Allowed}
	}
	if instances.CheckVolumeSize(n) != nil {
		return &instances.FieldError{Field: "size", Value: s, Allowed: instances.VolumeSizeRule.Allowed}
	}
	return nil
}

func validVolumeSize() validator.String {
	return checkString{"Invalid Size", "must be " + instances.VolumeSizeRule.Allowed, checkVolumeSize}
}

func validVolumeSource() validator.String {
	return checkString{"Invalid Volume Source", "must be " + instances.VolumeSourceRule, instances.ValidateVolumeSource}
}

func validVolumeID() validator.String {
	return checkString{"Invalid Volume ID", "must be a volume's id (a ULID)", instances.ValidateVolumeID}
}

func validMountPath() validator.String {
	return checkString{"Invalid Mount Path", "must be " + instances.MountPathRule, instances.ValidateMountPath}
}
