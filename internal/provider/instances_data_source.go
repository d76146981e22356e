package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

var (
	_ datasource.DataSource              = &InstancesDataSource{}
	_ datasource.DataSourceWithConfigure = &InstancesDataSource{}
)

// InstancesDataSource is the hypeman_instances data source: every instance on the host.
type InstancesDataSource struct {
	manager *instances.Manager
}

// NewInstancesDataSource is the data source's factory for the provider.
func NewInstancesDataSource() datasource.DataSource { return &InstancesDataSource{} }

type instancesModel struct {
	Instances []instanceSummaryModel `tfsdk:"instances"`
	Orphans   []orphanModel          `tfsdk:"orphans"`
}

// instanceSummaryModel is one instance of the list: identity, configuration at a glance, live state.
type instanceSummaryModel struct {
	ID            types.String `tfsdk:"id"`
	Name          types.String `tfsdk:"name"`
	State         types.String `tfsdk:"state"`
	StateReason   types.String `tfsdk:"state_reason"`
	Image         types.String `tfsdk:"image"`
	ImageDigest   types.String `tfsdk:"image_digest"`
	VCPUs         types.Int64  `tfsdk:"vcpus"`
	Memory        SizeValue    `tfsdk:"memory"`
	HotplugMemory SizeValue    `tfsdk:"hotplug_memory"`
	OverlaySize   SizeValue    `tfsdk:"overlay_size"`
	Hypervisor    types.String `tfsdk:"hypervisor"`
	PID           types.Int64  `tfsdk:"pid"`
	CreatedAt     types.String `tfsdk:"created_at"`
	StartedAt     types.String `tfsdk:"started_at"`
	ConsoleLog    types.String `tfsdk:"console_log"`
	SnapshotBytes types.Int64  `tfsdk:"snapshot_bytes"`
	IPAddress     types.String `tfsdk:"ip_address"`
	MACAddress    types.String `tfsdk:"mac_address"`
	TapDevice     types.String `tfsdk:"tap_device"`
}

// summarize takes its fields from fill, the one conversion from the manager's view.
func summarize(ctx context.Context, inst *instances.Instance) (instanceSummaryModel, diag.Diagnostics) {
	var full instanceModel
	diags := full.fill(ctx, inst)
	return instanceSummaryModel{
		ID: full.ID, Name: full.Name, State: full.State, StateReason: full.StateReason,
		Image: full.Image, ImageDigest: full.ImageDigest, VCPUs: full.VCPUs,
		Memory: full.Memory, HotplugMemory: full.HotplugMemory, OverlaySize: full.OverlaySize,
		Hypervisor: full.Hypervisor, PID: full.PID, CreatedAt: full.CreatedAt, StartedAt: full.StartedAt,
		ConsoleLog: full.ConsoleLog, SnapshotBytes: full.SnapshotBytes,
		IPAddress: full.IPAddress, MACAddress: full.MACAddress, TapDevice: full.TapDevice,
	}, diags
}

func (d *InstancesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_instances"
}

func (d *InstancesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.manager = providerDataFrom(req.ProviderData, &resp.Diagnostics).manager
}

func (d *InstancesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{MarkdownDescription: desc, Computed: true}
	}
	size := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{CustomType: SizeType{}, MarkdownDescription: desc, Computed: true}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Every instance on the host, sorted by name, each with its live state, and the VMMs that still run for " +
			"instances whose directory was removed (`orphans`). Environment variables are left out; " +
			"read one instance with the `hypeman_instance` data source for them. An instance whose VMM does not answer within " +
			instances.DefaultProbeTimeout.String() + " is listed as `Unknown`.",
		Attributes: map[string]schema.Attribute{
			"instances": schema.ListNestedAttribute{
				MarkdownDescription: "The instances, sorted by name.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"id":             str("The instance's id (a ULID)."),
						"name":           str("The instance's name."),
						"state":          str("The observed state: `Running`, `Paused`, `Standby`, `Stopped`, or `Created`, `Shutdown`, `Unknown`."),
						"state_reason":   str("Why the state is `Unknown`, or what the guest last reported."),
						"image":          str("The OCI image reference the instance was created from."),
						"image_digest":   str("The manifest digest of that image."),
						"vcpus":          schema.Int64Attribute{MarkdownDescription: "Virtual CPUs.", Computed: true},
						"memory":         size("Memory the guest boots with."),
						"hotplug_memory": size("Memory added after boot."),
						"overlay_size":   size("Size of the writable overlay disk."),
						"hypervisor":     str("The VMM running the instance."),
						"pid":            schema.Int64Attribute{MarkdownDescription: "The VMM process id while a VMM runs; null otherwise.", Computed: true},
						"created_at":     str("When the instance was created (RFC 3339, UTC)."),
						"started_at":     str("When the guest last booted or was restored; null while no VMM runs."),
						"console_log":    str("Path of the serial console log on the host."),
						"snapshot_bytes": schema.Int64Attribute{MarkdownDescription: "Bytes of the Standby snapshot on disk; `0` in any other state.", Computed: true},
						"ip_address":     str(ipAddressDescription),
						"mac_address":    str(macAddressDescription),
						"tap_device":     str(tapDeviceDescription),
					},
				},
			},
			"orphans": orphansAttribute(),
		},
	}
}

func (d *InstancesDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	ctx, cancel := context.WithTimeout(ctx, dataSourceTimeout)
	defer cancel()
	list, err := d.manager.List(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Unable to List Instances",
			"Error: "+err.Error()+"\nLeft in: nothing was changed (data_dir "+d.manager.DataDir()+")")
		return
	}
	orphans, err := d.manager.Orphans(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Unable to List Instances",
			"Error: "+err.Error()+"\nLeft in: nothing was changed (data_dir "+d.manager.DataDir()+")")
		return
	}
	out := instancesModel{Instances: make([]instanceSummaryModel, 0, len(list)), Orphans: make([]orphanModel, 0, len(orphans))}
	for _, inst := range list {
		item, diags := summarize(ctx, inst)
		resp.Diagnostics.Append(diags...)
		out.Instances = append(out.Instances, item)
	}
	for _, o := range orphans {
		out.Orphans = append(out.Orphans, newOrphanModel(o))
	}
	orphansWarning(orphans, &resp.Diagnostics)
	tflog.Debug(ctx, "listed instances", map[string]any{"count": len(out.Instances), "orphans": len(out.Orphans)})
	resp.Diagnostics.Append(resp.State.Set(ctx, &out)...)
}
