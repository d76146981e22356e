package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

var (
	_ datasource.DataSource              = &VolumesDataSource{}
	_ datasource.DataSourceWithConfigure = &VolumesDataSource{}
)

// VolumesDataSource is the hypeman_volumes data source: every volume on the host.
type VolumesDataSource struct {
	manager *instances.Manager
}

// NewVolumesDataSource is the data source's factory for the provider.
func NewVolumesDataSource() datasource.DataSource { return &VolumesDataSource{} }

type volumesModel struct {
	Volumes []volumeModel `tfsdk:"volumes"`
}

func (d *VolumesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_volumes"
}

func (d *VolumesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.manager = providerDataFrom(req.ProviderData, &resp.Diagnostics).manager
}

func (d *VolumesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Every volume on the host, sorted by name, each with the instances that hold it.",
		Attributes: map[string]schema.Attribute{
			"volumes": schema.ListNestedAttribute{
				MarkdownDescription: "The volumes, sorted by name.",
				Computed:            true,
				NestedObject:        schema.NestedAttributeObject{Attributes: volumeDataAttributes()},
			},
		},
	}
}

func (d *VolumesDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	ctx, cancel := context.WithTimeout(ctx, defaultReadTimeout)
	defer cancel()
	vs, err := d.manager.ListVolumes(ctx)
	if err != nil {
		volumeFailure{action: "List", name: "every volume on the host", err: err}.add(&resp.Diagnostics)
		return
	}
	out := volumesModel{Volumes: make([]volumeModel, 0, len(vs))}
	for _, v := range vs {
		var m volumeModel
		resp.Diagnostics.Append(m.fill(v)...)
		out.Volumes = append(out.Volumes, m)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &out)...)
}
