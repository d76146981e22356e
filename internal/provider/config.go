package provider

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

// Defaults where scripts/install-deps.sh and Debian's busybox-static put things.
const (
	defaultKernel        = "/var/cache/hypeman/kernel/vmlinuz"
	defaultKernelModules = "/var/cache/hypeman/kernel/modules"
	defaultAccelerator   = "auto"
)

var (
	hypervisorNames  = []string{"cloud-hypervisor", "qemu"}
	acceleratorNames = []string{"auto", "kvm", "tcg"}
)

// providerModel is the provider block.
type providerModel struct {
	Host              types.String `tfsdk:"host"`
	DataDir           types.String `tfsdk:"data_dir"`
	Hypervisor        types.String `tfsdk:"hypervisor"`
	Accelerator       types.String `tfsdk:"accelerator"`
	Kernel            types.String `tfsdk:"kernel"`
	KernelModules     types.String `tfsdk:"kernel_modules"`
	Busybox           types.String `tfsdk:"busybox"`
	CompressSnapshots types.Bool   `tfsdk:"compress_snapshots"`
	// Network is nil when the configuration has no network block: no host networking.
	Network *networkModel `tfsdk:"network"`
	// SSH is nil when the configuration has no ssh block.
	SSH *sshModel `tfsdk:"ssh"`
}

// settings is the provider configuration after environment fallbacks and defaults. The two
// defaults that depend on the host (hypervisor, kernel_modules) are left empty here and chosen
// in Configure, which can ask the host.
type settings struct {
	Host              string          // as configured; "" = this machine
	SSH               *host.SSHConfig // how to reach Host; nil for this machine
	DataDir           string
	Hypervisor        string // "" = the first installed
	Accelerator       string
	Kernel            string
	KernelModules     string // "" = defaultKernelModules when it exists on the host
	Busybox           string
	CompressSnapshots bool
	Network           network.Config
}

// resolveSettings applies, per attribute: the configuration, else its HYPEMAN_* variable, else the
// default. Values from the environment are checked as strictly as configured ones.
func resolveSettings(cfg providerModel, getenv func(string) string) (settings, diag.Diagnostics) {
	var diags, d diag.Diagnostics
	pick := func(v types.String, env, def string) string {
		if !v.IsNull() {
			return v.ValueString()
		}
		if e := getenv(env); e != "" {
			return e
		}
		return def
	}
	oneOf := func(attr, env, value string, allowed []string) {
		if value != "" && !slices.Contains(allowed, value) {
			diags.AddAttributeError(path.Root(attr), "Invalid Provider Setting",
				fmt.Sprintf("%s %q (from the configuration or %s) is not allowed: use one of %s", attr, value, env, strings.Join(allowed, ", ")))
		}
	}
	s := settings{
		DataDir:       pick(cfg.DataDir, "HYPEMAN_DATA_DIR", instances.DefaultDataDir),
		Hypervisor:    pick(cfg.Hypervisor, "HYPEMAN_HYPERVISOR", ""),
		Accelerator:   pick(cfg.Accelerator, "HYPEMAN_ACCELERATOR", defaultAccelerator),
		Kernel:        pick(cfg.Kernel, "HYPEMAN_KERNEL", defaultKernel),
		KernelModules: pick(cfg.KernelModules, "HYPEMAN_KERNEL_MODULES", ""),
		Busybox:       pick(cfg.Busybox, "HYPEMAN_BUSYBOX", system.DefaultBusybox),
	}
	oneOf("hypervisor", "HYPEMAN_HYPERVISOR", s.Hypervisor, hypervisorNames)
	oneOf("accelerator", "HYPEMAN_ACCELERATOR", s.Accelerator, acceleratorNames)
	for attr, p := range map[string]string{"data_dir": s.DataDir, "kernel": s.Kernel, "busybox": s.Busybox, "kernel_modules": s.KernelModules} {
		if p != "" && !strings.HasPrefix(p, "/") {
			diags.AddAttributeError(path.Root(attr), "Invalid Provider Setting",
				fmt.Sprintf("%s %q is not allowed: use an absolute path on the host", attr, p))
		}
	}

	s.CompressSnapshots = true
	switch env := getenv("HYPEMAN_COMPRESS_SNAPSHOTS"); {
	case !cfg.CompressSnapshots.IsNull():
		s.CompressSnapshots = cfg.CompressSnapshots.ValueBool()
	case env != "":
		b, err := strconv.ParseBool(env)
		if err != nil {
			diags.AddAttributeError(path.Root("compress_snapshots"), "Invalid Provider Setting",
				fmt.Sprintf("HYPEMAN_COMPRESS_SNAPSHOTS %q is not allowed: use true or false", env))
		}
		s.CompressSnapshots = b
	}
	s.Network, d = resolveNetwork(cfg.Network, getenv)
	diags.Append(d...)
	s.Host, s.SSH, d = resolveHost(cfg, getenv)
	diags.Append(d...)
	return s, diags
}
