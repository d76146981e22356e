package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

var (
	_ datasource.DataSource              = &InstanceDataSource{}
	_ datasource.DataSourceWithConfigure = &InstanceDataSource{}
)

// dataSourceTimeout bounds a data source read; listing inspects every instance's VMM.
const dataSourceTimeout = 2 * time.Minute

// InstanceDataSource is the hypeman_instance data source: one instance, by id or by name.
type InstanceDataSource struct {
	manager *instances.Manager
}

// NewInstanceDataSource is the data source's factory for the provider.
func NewInstanceDataSource() datasource.DataSource { return &InstanceDataSource{} }

func (d *InstanceDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_instance"
}

func (d *InstanceDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.manager = providerDataFrom(req.ProviderData, &resp.Diagnostics).manager
}

func (d *InstanceDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	oneOf := []validator.String{stringvalidator.ExactlyOneOf(path.MatchRoot("id"), path.MatchRoot("name"))}
	computed := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{MarkdownDescription: desc, Computed: true}
	}
	size := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{CustomType: SizeType{}, MarkdownDescription: desc, Computed: true}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "One instance on the host, found by `id` or by `name` (exactly one), with its configuration and its live state. " +
			"Reading it changes nothing.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The instance's id, " + instances.IDRule + ". Set this or `name`.",
				Optional:            true, Computed: true, Validators: append([]validator.String{validID()}, oneOf...),
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The instance's name (" + instances.NameRule + "). Set this or `id`.",
				Optional:            true, Computed: true, Validators: append([]validator.String{validName()}, oneOf...),
			},
			"image":          computed("The OCI image reference the instance was created from."),
			"vcpus":          schema.Int64Attribute{MarkdownDescription: "Virtual CPUs the guest has.", Computed: true},
			"max_vcpus":      schema.Int64Attribute{MarkdownDescription: "The ceiling `vcpus` changes within live; null when there is none.", Computed: true},
			"memory":         size("Memory the guest has while running (e.g. `512MiB`); with `hotplug_memory`, what it boots with."),
			"max_memory":     size("The ceiling `memory` changes within live; null when it is `memory` itself."),
			"hotplug_memory": size("Deprecated: memory added after boot on top of `memory` (`0` when none)."),
			"overlay_size":   size("Size of the writable overlay disk."),
			"entrypoint": schema.ListAttribute{
				ElementType: types.StringType, Computed: true,
				MarkdownDescription: "The configured entrypoint; null when the image's own is used.",
			},
			"cmd": schema.ListAttribute{
				ElementType: types.StringType, Computed: true,
				MarkdownDescription: "The configured cmd; null when the image's own is used.",
			},
			"env": schema.MapAttribute{
				ElementType: types.StringType, Computed: true, Sensitive: true,
				MarkdownDescription: "The configured environment variables (merged over the image's at boot). Sensitive.",
			},
			"workdir":            computed("The configured working directory; null when the image's own is used."),
			"state":              computed("The observed state: `Running`, `Paused`, `Standby`, `Stopped`, or `Created`, `Shutdown`, `Unknown` (see `state_reason`)."),
			"image_digest":       computed("The manifest digest of the image the instance was created from."),
			"hypervisor":         computed("The VMM running the instance: " + codeList(hypervisorNames) + "."),
			"hypervisor_version": computed("The VMM version that last booted the instance."),
			"accelerator":        computed("`kvm` or `tcg` at the last boot."),
			"kernel_release":     computed("The guest kernel release at the last boot."),
			"state_reason":       computed(stateReasonDescription),
			"exit_code":          schema.Int64Attribute{MarkdownDescription: exitCodeDescription, Computed: true},
			"pid":                schema.Int64Attribute{MarkdownDescription: "The VMM process id while a VMM runs; null otherwise.", Computed: true},
			"created_at":         computed("When the instance was created (RFC 3339, UTC)."),
			"started_at":         computed("When the guest last booted or was restored (RFC 3339, UTC); null while no VMM runs."),
			"directory":          computed("The instance's directory on the host."),
			"console_log":        computed("Path of the serial console log on the host."),
			"snapshot_bytes":     schema.Int64Attribute{MarkdownDescription: "Bytes of the Standby snapshot on disk; `0` in any other state.", Computed: true},
			"ip_address":         computed(ipAddressDescription),
			"mac_address":        computed(macAddressDescription),
			"tap_device":         computed(tapDeviceDescription),
		},
	}
}

func (d *InstanceDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m instanceDataModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, dataSourceTimeout)
	defer cancel()
	key := m.ID.ValueString()
	if key == "" {
		key = m.Name.ValueString()
	}
	inst, err := d.manager.Get(ctx, key)
	if err != nil {
		if errors.Is(err, instances.ErrNotFound) {
			err = fmt.Errorf("%w on this host (data_dir %s)", err, d.manager.DataDir())
		}
		failure{action: "Read", name: m.Name.ValueString(), id: m.ID.ValueString(), err: err, left: "nothing was changed"}.add(ctx, d.manager, &resp.Diagnostics)
		return
	}
	resp.Diagnostics.Append(m.fill(ctx, inst)...)
	m.fillBoot(inst)
	tflog.Debug(ctx, "read instance data source", map[string]any{"id": inst.ID, "name": inst.Name, "state": string(inst.State)})
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
