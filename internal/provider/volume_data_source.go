package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

var (
	_ datasource.DataSource              = &VolumeDataSource{}
	_ datasource.DataSourceWithConfigure = &VolumeDataSource{}
)

// VolumeDataSource is the hypeman_volume data source: one volume, by id or name.
type VolumeDataSource struct {
	manager *instances.Manager
}

// NewVolumeDataSource is the data source's factory for the provider.
func NewVolumeDataSource() datasource.DataSource { return &VolumeDataSource{} }

func (d *VolumeDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_volume"
}

func (d *VolumeDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.manager = providerDataFrom(req.ProviderData, &resp.Diagnostics).manager
}

// volumeDataAttributes are a volume's attributes as the data sources report them.
func volumeDataAttributes() map[string]schema.Attribute {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{MarkdownDescription: desc, Computed: true}
	}
	return map[string]schema.Attribute{
		"id":     str(volumeIDDescription),
		"name":   str("The volume's name, unique among the host's volumes."),
		"size":   schema.StringAttribute{CustomType: SizeType{}, MarkdownDescription: "The volume's capacity.", Computed: true},
		"source": str("What the filesystem was seeded with at create; null for an empty filesystem."),
		"attached_to": schema.ListNestedAttribute{MarkdownDescription: attachedToDescription, Computed: true,
			NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
				"instance_id":   str("The holding instance's id."),
				"instance_name": str("The holding instance's name."),
				"mount_path":    str("Where the instance mounts the volume."),
				"readonly":      schema.BoolAttribute{MarkdownDescription: "Whether the instance mounts it read-only.", Computed: true},
			}}},
		"allocated_bytes": schema.Int64Attribute{MarkdownDescription: allocatedDescription, Computed: true},
		"created_at":      str(volumeCreatedAtDesc),
	}
}

func (d *VolumeDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := volumeDataAttributes()
	idOrName := []validator.String{stringvalidator.ExactlyOneOf(path.MatchRoot("id"), path.MatchRoot("name"))}
	attrs["id"] = schema.StringAttribute{MarkdownDescription: "The volume's id (a ULID). Set it or `name`.", Optional: true, Computed: true,
		Validators: append(idOrName, validVolumeID())}
	attrs["name"] = schema.StringAttribute{MarkdownDescription: "The volume's name. Set it or `id`.", Optional: true, Computed: true,
		Validators: append(idOrName, validName())}
	resp.Schema = schema.Schema{
		MarkdownDescription: "One volume on the host, found by `id` or `name`, with the instances that hold it.",
		Attributes:          attrs,
	}
}

func (d *VolumeDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m volumeModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	key := m.ID.ValueString()
	if key == "" {
		key = m.Name.ValueString()
	}
	ctx, cancel := context.WithTimeout(ctx, defaultReadTimeout)
	defer cancel()
	v, err := d.manager.GetVolume(ctx, key)
	if errors.Is(err, instances.ErrVolumeNotFound) {
		err = fmt.Errorf("no volume has the id or name %q on this host (data_dir %s)", key, d.manager.DataDir())
	}
	if err != nil {
		volumeFailure{action: "Read", name: key, err: err}.add(&resp.Diagnostics)
		return
	}
	resp.Diagnostics.Append(m.fill(v)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
