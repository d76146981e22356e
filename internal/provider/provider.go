// Package provider is the Terraform side of hypeman: schemas, models, and the translation between
// Terraform requests and instance manager calls. It never touches files, sockets or processes
// itself; internal/hypervisor does.
package provider

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
)

var _ provider.Provider = &HypemanProvider{}

// HypemanProvider is the hypeman provider. Each configured provider owns one instance manager,
// shared by its resources and data sources.
type HypemanProvider struct {
	version string

	mu sync.Mutex
	// release lets go of the host connection of the latest Configure; nil for this machine.
	release func()
}

// New returns the provider factory for providerserver; version is stamped at release.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &HypemanProvider{version: version} }
}

func (p *HypemanProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "hypeman"
	resp.Version = p.version
}

func (p *HypemanProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Runs OCI images as microVMs with Cloud Hypervisor or QEMU, on the machine Terraform runs on or on a " +
			"host reached over SSH (`host`). Every top-level setting can also come from a `HYPEMAN_*` environment variable; the " +
			"configuration wins. The `ssh` block is read from the configuration only, with OpenSSH's own defaults (`SSH_AUTH_SOCK`, " +
			"`~/.ssh/config`, `~/.ssh/known_hosts`). Host networking is the exception that needs the configuration: it is on only " +
			"with a `network` block, because " + networkOptIn + ".",
		Attributes: map[string]schema.Attribute{
			"host": hostAttribute(),
			"data_dir": schema.StringAttribute{
				MarkdownDescription: "Where instances, the image cache and the kernel/initrd cache live: an absolute path " + onHost + " of " +
					fmt.Sprintf("at most %d bytes: the VMMs' control sockets live under it, at `guests/<id>/<socket>`, and a unix socket ", instances.MaxDataDirLen(builtin.Drivers())) +
					"path holds at most 107 bytes. It is created when missing; a path that is a file on the host fails the plan. " +
					"Defaults to `$HYPEMAN_DATA_DIR`, else `" + instances.DefaultDataDir + "`.",
				Optional:   true,
				Validators: []validator.String{validDataDir()},
			},
			"hypervisor": schema.StringAttribute{
				MarkdownDescription: "The VMM new instances run under: " + codeList(hypervisorNames) + ". Defaults to " +
					"`$HYPEMAN_HYPERVISOR`, else " + firstInstalled(hypervisorNames) + ". Existing instances keep the one they were " +
					"created with.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.OneOf(hypervisorNames...)},
			},
			"accelerator": schema.StringAttribute{
				MarkdownDescription: "How guests run: `kvm` (hardware virtualisation), `tcg` (QEMU's emulation: slow, but works " +
					"where KVM does not) or `auto`: KVM unless a one-off test boot (cached on the host) finds guests hang under it. " +
					"Defaults to `$HYPEMAN_ACCELERATOR`, else `auto`.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.OneOf(acceleratorNames...)},
			},
			"kernel": schema.StringAttribute{
				MarkdownDescription: "The guest kernel, an absolute path " + onHost + ": an uncompressed PVH `vmlinux` or a distribution `bzImage` " +
					"(its vmlinux is extracted once and cached). " + checkedNote("a kernel (an ELF, or a bzImage with its `HdrS` boot header)") +
					" Defaults to `$HYPEMAN_KERNEL`, else `" + instances.DefaultKernel + "`.",
				Optional:   true,
				Validators: []validator.String{validHostPath("kernel")},
			},
			"kernel_modules": schema.StringAttribute{
				MarkdownDescription: "The kernel's module directory (`lib/modules/<release>`), an absolute path " + onHost + "; the drivers the kernel " +
					"lacks (virtio, erofs, ext4, overlay) are copied into the initrd. " + checkedNote("a directory with a `modules.dep`") +
					" Defaults to `$HYPEMAN_KERNEL_MODULES`, else `" + instances.DefaultKernelModules + "` when it exists, else none " +
					"(everything built into the kernel).",
				Optional:   true,
				Validators: []validator.String{validHostPath("kernel_modules")},
			},
			"busybox": schema.StringAttribute{
				MarkdownDescription: "A static busybox, an absolute path " + onHost + ", which the guest init runs on. " +
					checkedNote("a statically linked ELF executable") + " Defaults to `$HYPEMAN_BUSYBOX`, else `" + system.DefaultBusybox + "`.",
				Optional:   true,
				Validators: []validator.String{validHostPath("busybox")},
			},
			"compress_snapshots": schema.BoolAttribute{
				MarkdownDescription: "Compress the memory image of `Standby` snapshots with LZ4: several times smaller on disk, " +
					"at some CPU time on standby and restore. It applies to `compressed` snapshots (see `snapshot_mode`); `lazy` ones " +
					"are never compressed. Defaults to `$HYPEMAN_COMPRESS_SNAPSHOTS`, else `true`.",
				Optional: true,
			},
			"snapshot_mode": schema.StringAttribute{
				MarkdownDescription: "How `Standby` snapshots are taken and restored. `compressed`: the memory image is LZ4-compressed " +
					"(with `compress_snapshots`), typically a few times smaller than the guest's memory, and a restore decompresses " +
					"it and reads it in whole before the guest runs, so it takes longer the more memory the guest has. `lazy`: " +
					"a restore starts the guest at once and reads each page when the guest first touches it, at a cost in disk " +
					"space. Cloud Hypervisor (v52 or later, on a host where it can use userfaultfd) keeps the memory image " +
					"uncompressed, and a lazily restored guest keeps it on disk until its VMM next stops, so its next standby needs " +
					"room for two. QEMU keeps the memory of a guest booted in this mode in a file of the guest's whole `memory`, " +
					"allocated at boot, for as long as the guest runs or is in `Standby`. A host or hypervisor that cannot restore " +
					"lazily takes `compressed` snapshots instead, and the plan warns. Each snapshot remembers how it was taken, so " +
					"changing this never breaks restoring one. Defaults to `$HYPEMAN_SNAPSHOT_MODE`, " +
					"else `compressed`. See the Standby guide.",
				Optional:   true,
				Validators: []validator.String{validSnapshotMode()},
			},
			"vmm_user": schema.StringAttribute{
				MarkdownDescription: "The unprivileged host user QEMU runs as, from its start: the provider hands it each instance's " +
					"directory, disks, console log and TAP device before QEMU starts, and QEMU runs under its seccomp sandbox " +
					"either way. `root` opts out: QEMU runs as the user the provider runs commands as on the host. The user must " +
					"exist on the host (`scripts/install-deps.sh` creates `" + instances.DefaultVMMUser + "`, in the `kvm` group for " +
					"`/dev/kvm`), and running as another user needs the provider to act as root there. Cloud Hypervisor runs as the " +
					"host's own user. Defaults to `$HYPEMAN_VMM_USER`, else `" + instances.DefaultVMMUser + "`.",
				Optional:   true,
				Validators: []validator.String{validVMMUser()},
			},
		},
		Blocks: map[string]schema.Block{"network": networkBlock(), "ssh": sshBlock()},
	}
}

func (p *HypemanProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	unknown := func(at path.Path, name, env string) {
		or := ""
		if env != "" {
			or = ", or set " + env
		}
		resp.Diagnostics.AddAttributeError(at, "Unknown Provider Setting",
			fmt.Sprintf("%s is known only after apply, but the provider needs it to plan. Use a value known at plan time%s.", name, or))
	}
	for name, isUnknown := range map[string]bool{
		"host": cfg.Host.IsUnknown(), "data_dir": cfg.DataDir.IsUnknown(), "hypervisor": cfg.Hypervisor.IsUnknown(), "accelerator": cfg.Accelerator.IsUnknown(),
		"kernel": cfg.Kernel.IsUnknown(), "kernel_modules": cfg.KernelModules.IsUnknown(), "busybox": cfg.Busybox.IsUnknown(),
		"compress_snapshots": cfg.CompressSnapshots.IsUnknown(), "snapshot_mode": cfg.SnapshotMode.IsUnknown(),
		"vmm_user": cfg.VMMUser.IsUnknown(),
	} {
		if isUnknown {
			unknown(path.Root(name), name, "HYPEMAN_"+strings.ToUpper(name))
		}
	}
	if n := cfg.Network; n != nil {
		for setting, isUnknown := range map[string]bool{
			"bridge": n.Bridge.IsUnknown(), "subnet": n.Subnet.IsUnknown(), "gateway": n.Gateway.IsUnknown(),
			"dns": n.DNS.IsUnknown() || slices.ContainsFunc(n.DNS.Elements(), attr.Value.IsUnknown), "uplink": n.Uplink.IsUnknown(),
			"host_ports": n.HostPorts.IsUnknown() || slices.ContainsFunc(n.HostPorts.Elements(), attr.Value.IsUnknown),
		} {
			if isUnknown {
				unknown(path.Root("network").AtName(setting), "network "+setting, networkEnv[setting])
			}
		}
	}
	if cfg.SSH != nil {
		for setting, isUnknown := range cfg.SSH.unknown() {
			if isUnknown {
				unknown(path.Root("ssh").AtName(setting), "ssh "+setting, "")
			}
		}
	}
	if resp.Diagnostics.HasError() {
		return
	}
	s, diags := resolveSettings(cfg, os.Getenv)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}

	h, release, diags := connectHost(ctx, s.Host, s.SSH)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	p.hold(release)
	drivers := builtin.Drivers()
	hypervisor, warning, err := instances.ChooseHypervisor(ctx, h, drivers, s.Hypervisor)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("hypervisor"), "Invalid Provider Setting", err.Error())
		return
	}
	if warning != "" {
		resp.Diagnostics.AddWarning("No Hypervisor Installed", warning)
	}
	s.KernelModules = instances.ChooseKernelModules(ctx, h, s.KernelModules)
	resp.Diagnostics.Append(checkOnHost(ctx, h, s, func(attr string) source { return cfg.source(attr, os.Getenv) })...)
	if resp.Diagnostics.HasError() {
		return
	}
	m, err := instances.New(instances.Options{
		Host:              h,
		DataDir:           s.DataDir,
		Drivers:           drivers,
		DefaultHypervisor: hypervisor,
		Accelerator:       s.Accelerator,
		System:            system.Config{Kernel: s.Kernel, Modules: s.KernelModules, Busybox: s.Busybox},
		CompressSnapshots: s.CompressSnapshots,
		SnapshotMode:      instances.SnapshotMode(s.SnapshotMode),
		VMMUser:           s.VMMUser,
		Network:           s.Network,
		Log:               func(ctx context.Context, msg string, fields map[string]any) { tflog.Debug(ctx, msg, fields) },
	})
	if err != nil {
		resp.Diagnostics.AddError("Unable to Configure Provider", err.Error())
		return
	}
	if w := m.LazyRestoreWarning(ctx); w != "" {
		resp.Diagnostics.AddAttributeWarning(path.Root("snapshot_mode"), "Lazy Restore Not Available", w)
	}
	where := "this machine"
	if sh, ok := h.(fmt.Stringer); ok {
		where = sh.String()
	}
	tflog.Info(ctx, "configured hypeman", map[string]any{
		"host": where, "data_dir": s.DataDir, "hypervisor": hypervisor, "accelerator": s.Accelerator, "kernel": s.Kernel,
		"kernel_modules": s.KernelModules, "busybox": s.Busybox, "compress_snapshots": s.CompressSnapshots,
		"snapshot_mode": s.SnapshotMode, "vmm_user": s.VMMUser,
		"network": s.Network.Enabled, "bridge": s.Network.Bridge, "subnet": s.Network.Subnet, "uplink": s.Network.Uplink,
	})
	data := &providerData{manager: m}
	resp.ResourceData = data
	resp.DataSourceData = data
}

// providerData is what a configured provider shares with its resources and data sources.
type providerData struct {
	manager *instances.Manager
}

// providerDataFrom takes the configured provider's data out of ProviderData. Nil ProviderData
// means the provider is not configured yet (validation runs before Configure): everything is nil.
func providerDataFrom(data any, diags *diag.Diagnostics) providerData {
	if data == nil {
		return providerData{}
	}
	pd, ok := data.(*providerData)
	if !ok {
		diags.AddError("Unexpected Provider Data", fmt.Sprintf("expected *providerData, got %T; please report this issue to the provider developers", data))
		return providerData{}
	}
	return *pd
}

// hold keeps the host connection of the latest Configure and releases the one before. Terraform
// configures a provider once per process, but a process that serves several runs (as the tests'
// does) must not pile up connections. The new connection is made first, so an unchanged host
// keeps its connection instead of logging in again.
func (p *HypemanProvider) hold(release func()) {
	p.mu.Lock()
	prev := p.release
	p.release = release
	p.mu.Unlock()
	if prev != nil {
		prev()
	}
}

func (p *HypemanProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{NewInstanceResource, NewVolumeResource}
}

func (p *HypemanProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{NewInstanceDataSource, NewInstancesDataSource, NewVolumeDataSource, NewVolumesDataSource}
}

// checkedNote says how the plan checks a host path setting that must be what.
func checkedNote(what string) string {
	return "Every plan checks on the host that it is " + what + ": a path that is not fails the plan, `terraform destroy` " +
		"included, until it is fixed or left out; a default path that is not only warns."
}
