package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// Default timeouts; a create may pull and convert a large image.
const (
	defaultCreateTimeout = 10 * time.Minute
	defaultReadTimeout   = 2 * time.Minute
	defaultUpdateTimeout = 10 * time.Minute
	defaultDeleteTimeout = 5 * time.Minute
)

const restartNote = " Changing it restarts the instance in place (graceful power-off, then a fresh boot with the new program); " +
	"the id, the overlay disk and the console history are kept. An instance in `Standby` cannot take a new program (the plan " +
	"warns, and apply refuses it and changes nothing): set `state = \"Running\"` in the same change (it is restored first, " +
	"then restarted) or beforehand."

// The network attributes, shared with the data sources: all three are fixed when the instance is
// created and kept for its life.
const (
	ipAddressDescription = "The instance's IPv4 address on the provider's host network, kept for the instance's whole life " +
		"(across Stop, Standby and restore); null when it has no network interface."
	macAddressDescription = "The MAC address of the instance's network interface, kept for its whole life; null when it has none."
	tapDeviceDescription  = "The TAP device on the host that the instance's interface is attached to, named from the id. It exists " +
		"while a VMM runs (`Running`, `Paused`) and is made again under the same name on start and restore; null when the " +
		"instance has no network interface."
)

// The exit attributes, shared with the hypeman_instance data source.
var (
	stateReasonDescription = "Why the state is `Unknown`, or how the last boot of a `Stopped` instance ended when no one " +
		"asked it to: `program exited with code 1 at <time>`, `guest powered off at <time> …`, `guest kernel panicked at " +
		"<time> …`, or `the VMM process ended without the guest reporting an exit …`. Null when there is nothing to say " +
		"(running, or stopped on request)."
	exitCodeDescription = fmt.Sprintf("The exit code of the program's last run, when the program ending is why the instance is "+
		"`Stopped`; null while it runs, when it was stopped on request, and when the guest reported none. A program that "+
		"exits within %s of starting fails the create, start or restart that booted it, with its exit code and last console "+
		"lines; one that exits later leaves the instance `Stopped` with `exit_code` set, and the next plan that boots it "+
		"again warns about it.", instances.ProgramSettle)
)

func (r *InstanceResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	// What replaces the instance is decided by planReplace, in one place with its warning.
	sizeMods := []planmodifier.String{sizeKeepsStateSpelling{}}
	stable := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}

	resp.Schema = schema.Schema{
		MarkdownDescription: "One microVM on the host: an OCI image booted as a VM with its own kernel, a writable overlay disk " +
			"and a serial console. `state` moves it between `Running`, `Paused`, `Standby` (memory snapshot on disk, no VMM " +
			"process) and `Stopped` without replacing it; a VM that died or was paused outside Terraform shows up in the next " +
			"plan and `terraform apply` puts it back. Changing what an instance keeps for its life (" + fixedForLife + ") replaces it, " +
			"and the plan warns of what the old one takes with it: its overlay disk, and its memory snapshot in `Standby` or " +
			"the running guest's memory.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "The instance's id on the host (a ULID). Import accepts it or the name.",
				Computed:            true,
				PlanModifiers:       stable,
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "The instance name, unique on the host; also the guest's hostname. " + instances.NameRule + ". Changing it replaces the instance. " +
					"A name that another instance on the host holds fails at plan time, with the way to import that instance.",
				Required:   true,
				Validators: []validator.String{validName()},
			},
			"image": schema.StringAttribute{
				MarkdownDescription: "The OCI image to boot: " + images.Allowed + ". It is pulled once and cached on the host by " +
					"digest; `image_digest` records what the instance was created from. Changing it replaces the instance, unless " +
					"the new reference resolves to the digest the instance has (another tag, the digest itself, or an `oci:` or " +
					"`docker-archive:` image with the same manifest): then the new spelling is recorded in place, with no restart. A " +
					"create from a path that does not exist fails at plan time. The " +
					"provider fetches images where Terraform runs and streams them to the host: registries are reached, and " +
					"`oci:`/`docker-archive:` paths are read, on the machine Terraform runs on, also when `host` is an SSH host.",
				Required:   true,
				Validators: []validator.String{validImage()},
			},
			"vcpus": schema.Int64Attribute{
				CustomType: vcpusType,
				MarkdownDescription: fmt.Sprintf("Virtual CPUs the guest has, a whole number from 1 to %d. Defaults to `1`. Within `max_vcpus` "+
					"more of them come live, while the program runs on (the guest brings them online), and so do fewer on Cloud Hypervisor; "+
					"fewer on QEMU, and any change without `max_vcpus`, restart the instance in place (overlay, volumes, id and addresses "+
					"kept; a stopped one takes it at its next start). The plan names which.", instances.MaxVCPUs),
				Optional:   true,
				Computed:   true,
				Default:    int64default.StaticInt64(1),
				Validators: []validator.Int64{validVCPUs()},
			},
			"max_vcpus": schema.Int64Attribute{
				CustomType: maxVCPUsType,
				MarkdownDescription: fmt.Sprintf("The ceiling `vcpus` changes within live, from `vcpus` to %d. Left out, `vcpus` cannot change "+
					"live. Set, the guest boots with room for this many vCPUs and its `vcpus` of them; a `Standby` snapshot keeps the "+
					"vCPUs the guest has, and a change made while in `Standby` is given right after the restore. Changing it restarts "+
					"the instance in place.", instances.MaxVCPUs),
				Optional:   true,
				Validators: []validator.Int64{validMaxVCPUs()},
			},
			"memory": schema.StringAttribute{
				CustomType: SizeType{},
				MarkdownDescription: "Memory the guest has while running, " + memoryRule.allowed + ". Sizes are binary (`1GB` = `1024MiB`), and " +
					"two spellings of the same size are not a change. It must fit in the host's memory (`MemTotal` of its `/proc/meminfo`), " +
					"with `max_memory` or `hotplug_memory`, which the plan checks. Defaults to `" + units.Format(instances.DefaultMemory) + "`. " +
					"Within `max_memory` it changes live, while the program runs on; beyond it, the instance restarts in place with the new " +
					"ceiling (overlay, volumes, id and addresses kept). The plan names which. With the deprecated `hotplug_memory`, it is " +
					"the memory the guest boots with.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(units.Format(instances.DefaultMemory)),
				Validators:    []validator.String{validSize(memoryRule)},
				PlanModifiers: sizeMods,
			},
			"max_memory": schema.StringAttribute{
				CustomType: SizeType{},
				MarkdownDescription: "The ceiling `memory` changes within live, " + maxMemoryRule.allowed + ". Left out, it is `memory`, " +
					"and a change of `memory` restarts the instance in place. Above `memory`, the guest boots with " +
					units.Format(instances.BootMemory) + " and gets the rest as hot-pluggable memory (virtio-mem), plugged up to `memory` " +
					"after boot, given back before `Standby` (so the snapshot stays small) and plugged again after the restore; " +
					"`memory` must then be a multiple of " + units.Format(instances.HotplugStep) + " from " + units.Format(instances.BootMemory) +
					". Changing it restarts the instance in place.",
				Optional:      true,
				Validators:    []validator.String{validSize(maxMemoryRule)},
				PlanModifiers: sizeMods,
			},
			"hotplug_memory": schema.StringAttribute{
				CustomType: SizeType{},
				DeprecationMessage: "hotplug_memory is deprecated: write memory = memory + hotplug_memory (the size the guest has while running) " +
					"and max_memory = the same size or more, then remove hotplug_memory. The instance keeps its memory and is not replaced.",
				MarkdownDescription: "Deprecated: write `memory` as the size while running and `max_memory` as the ceiling instead. Memory " +
					"added after boot on top of `memory`, " + hotplugRule.allowed + ". It is given back before `Standby` so the " +
					"snapshot stays small, and added again after restore. Defaults to `0`. Changing it restarts the instance in place.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString("0"),
				Validators:    []validator.String{validSize(hotplugRule)},
				PlanModifiers: sizeMods,
			},
			"overlay_size": schema.StringAttribute{
				CustomType: SizeType{},
				MarkdownDescription: "Size of the writable overlay disk on top of the read-only image, " + overlayRule.allowed + ". " +
					"It is a sparse file: only what the guest writes takes space. Defaults to `" + units.Format(instances.DefaultOverlay) + "`. It only grows: " +
					"a larger size grows the overlay in place, keeping its data (at once on the host for a stopped instance, by a restart in " +
					"place for a running one); a smaller one is refused at plan.",
				Optional:      true,
				Computed:      true,
				Default:       stringdefault.StaticString(units.Format(instances.DefaultOverlay)),
				Validators:    []validator.String{validSize(overlayRule)},
				PlanModifiers: sizeMods,
			},
			"entrypoint": schema.ListAttribute{
				ElementType: types.StringType,
				MarkdownDescription: "The program to run, replacing the image's entrypoint (and, as in Docker, its cmd): a list whose " +
					"first item names the program (an absolute path in the image or a name on its `PATH`). Leave it out for the image's own; " +
					"an empty list is refused. Items reach the program byte for byte, nothing is interpreted by a shell, and none may hold a NUL byte." + restartNote,
				Optional:   true,
				Validators: []validator.List{programList{entrypoint: true}},
			},
			"cmd": schema.ListAttribute{
				ElementType:         types.StringType,
				MarkdownDescription: "Arguments after the entrypoint, replacing the image's cmd; none may hold a NUL byte. Leave it out for the image's own, or set `[]` for none." + restartNote,
				Optional:            true,
				Validators:          []validator.List{programList{}},
			},
			"env": schema.MapAttribute{
				ElementType: types.StringType,
				MarkdownDescription: "Environment variables for the program, merged over the image's. **Sensitive**: the whole map " +
					"is hidden in plan output, and no log, error or console line of the provider shows a value, so it may carry " +
					"secrets. The values are stored in the Terraform state (in clear text, as every sensitive value is) and on the " +
					"host in the instance's config disk and metadata, files only root, the provider's user and the VMM can read; " +
					"ephemeral values are not supported yet. See the \"Secrets in env\" guide." + restartNote,
				Optional:   true,
				Sensitive:  true,
				Validators: []validator.Map{mapvalidator.KeysAre(validEnvKey()), mapvalidator.ValueStringsAre(envValue{})},
			},
			"workdir": schema.StringAttribute{
				MarkdownDescription: "Absolute working directory of the program inside the image. Leave it out for the image's own." + restartNote,
				Optional:            true,
				Validators:          []validator.String{validWorkdir()},
			},
			"state": schema.StringAttribute{
				MarkdownDescription: "The state to keep the instance in: `Running` (default), `Paused` (vCPUs stopped, memory kept " +
					"in the VMM process), `Standby` (memory snapshot written to disk, LZ4-compressed unless the provider sets " +
					"`compress_snapshots = false`, and the VMM process stopped: it uses no CPU or memory) or `Stopped` (guest powered " +
					"off gracefully, overlay kept). Changing it never replaces the instance. Terraform reads the observed state, so a " +
					"VM that died outside Terraform shows `\"Stopped\" -> \"Running\"` in the next plan and `terraform apply` boots it " +
					"again. The observed state can also be `Created`, `Shutdown` or `Unknown` (see `state_reason`).",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(string(instances.Running)),
				Validators: []validator.String{validState()},
			},
			"network":  instanceNetworkAttribute(),
			"wait_for": waitForAttribute(),
			"timeouts": timeoutsAttribute(ctx),

			"image_digest": schema.StringAttribute{
				MarkdownDescription: "The manifest digest of the image the instance was created from (`sha256:…`). A tag that moves later does not change it.",
				Computed:            true,
				PlanModifiers:       stable,
			},
			"hypervisor": schema.StringAttribute{
				MarkdownDescription: "The VMM running the instance, " + codeList(hypervisorNames) + ", chosen by the provider's `hypervisor` when the instance was created.",
				Computed:            true,
				PlanModifiers:       stable,
			},
			"hypervisor_version": schema.StringAttribute{
				MarkdownDescription: "The VMM version that last booted the instance. A Standby snapshot can only be restored by the same version. " +
					"How the guest's CPU ran at that boot and its kernel release, which are the same for every instance the provider boots, " +
					"are read with the `hypeman_instance` data source (`accelerator`, `kernel_release`).",
				Computed: true,
			},
			"state_reason": schema.StringAttribute{
				MarkdownDescription: stateReasonDescription,
				Computed:            true,
			},
			"exit_code": schema.Int64Attribute{
				MarkdownDescription: exitCodeDescription,
				Computed:            true,
			},
			"discard_snapshot": schema.BoolAttribute{
				MarkdownDescription: "The way out of a Standby snapshot that cannot be restored (a corrupt memory image, a VMM " +
					"version that cannot read it). With `state = \"Stopped\"`, an instance in `Standby` goes to `Stopped` by " +
					"deleting its memory snapshot instead of restoring it: for the guest it is a power cut, and the overlay is " +
					"kept as it was when the snapshot was taken. The plan warns when it will do so. Defaults to `false` (a " +
					"`Standby` → `Stopped` change restores the guest and powers it off cleanly). It matters only for that " +
					"change: in any other state, or with another `state`, it changes nothing and is never a change by itself " +
					"(it is write-only: Terraform never stores it in the state).",
				Optional:  true,
				WriteOnly: true,
			},
			"pid": schema.Int64Attribute{
				MarkdownDescription: "The VMM process id on the host while a VMM runs (`Running`, `Paused`); null in `Standby` and `Stopped`.",
				Computed:            true,
			},
			"created_at": schema.StringAttribute{
				MarkdownDescription: "When the instance was created (RFC 3339, UTC).",
				Computed:            true,
				PlanModifiers:       stable,
			},
			"started_at": schema.StringAttribute{
				MarkdownDescription: "When the guest last booted or was restored (RFC 3339, UTC); null while no VMM runs.",
				Computed:            true,
			},
			"directory": schema.StringAttribute{
				MarkdownDescription: "The instance's directory on the host: metadata, overlay disk, config disk, VMM socket, logs and snapshot.",
				Computed:            true,
				PlanModifiers:       stable,
			},
			"console_log": schema.StringAttribute{
				MarkdownDescription: "Path of the serial console log on the host. Everything the guest prints, with its history kept across Stop, Standby and restore.",
				Computed:            true,
				PlanModifiers:       stable,
			},
			"snapshot_bytes": schema.Int64Attribute{
				MarkdownDescription: "Bytes the Standby snapshot takes on disk; `0` in any other state.",
				Computed:            true,
			},
			"ip_address": schema.StringAttribute{
				MarkdownDescription: ipAddressDescription,
				Computed:            true,
				PlanModifiers:       stable,
			},
			"mac_address": schema.StringAttribute{
				MarkdownDescription: macAddressDescription,
				Computed:            true,
				PlanModifiers:       stable,
			},
			"tap_device": schema.StringAttribute{
				MarkdownDescription: tapDeviceDescription,
				Computed:            true,
				PlanModifiers:       stable,
			},
		},
		Blocks: map[string]schema.Block{"volume": instanceVolumeBlock()},
	}
}

// timeoutsAttribute is the framework's timeouts attribute with descriptions of its own; every wait
// of an operation honours its deadline.
func timeoutsAttribute(ctx context.Context) schema.Attribute {
	a := timeouts.Attributes(ctx, timeouts.Opts{
		Create: true, Read: true, Update: true, Delete: true,
		CreateDescription: "How long a create may take, image pull and boot included, as a duration such as `\"20m\"` (default `10m`).",
		ReadDescription: fmt.Sprintf("How long reading the instance may take (default `2m`). When set, it is also how long a VMM "+
			"is given to answer before the instance reads as `Unknown`; unset, a VMM that does not answer within %v is `Unknown`.", instances.DefaultProbeTimeout),
		UpdateDescription: "How long a state change or a restart in place may take (default `10m`).",
		DeleteDescription: "How long a delete may take (default `5m`).",
	})
	if n, ok := a.(schema.SingleNestedAttribute); ok {
		n.MarkdownDescription = "Deadlines for each operation, as positive Go durations (`\"30s\"`, `\"10m\"`). A deadline that passes stops the operation and reports the state the instance was left in."
		for name, def := range map[string]time.Duration{"create": defaultCreateTimeout, "read": defaultReadTimeout, "update": defaultUpdateTimeout, "delete": defaultDeleteTimeout} {
			if d, ok := n.Attributes[name].(schema.StringAttribute); ok {
				d.Validators = []validator.String{timeout{def}}
				n.Attributes[name] = d
			}
		}
		return n
	}
	return a
}
