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
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
)

var (
	hypervisorNames  = builtin.Names()
	acceleratorNames = instances.Accelerators
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
	KernelModules     string // "" = instances.DefaultKernelModules when it exists on the host
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
		Accelerator:   pick(cfg.Accelerator, "HYPEMAN_ACCELERATOR", instances.DefaultAccelerator),
		Kernel:        pick(cfg.Kernel, "HYPEMAN_KERNEL", instances.DefaultKernel),
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

// codeList is names as Markdown code, "`a`, `b` or `c`".
func codeList(names []string) string {
	code := make([]string, len(names))
	for i, n := range names {
		code[i] = "`" + n + "`"
	}
	if len(code) < 2 {
		return strings.Join(code, "")
	}
	return strings.Join(code[:len(code)-1], ", ") + " or " + code[len(code)-1]
}

// firstInstalled describes instances.ChooseHypervisor's default over names, in their order.
func firstInstalled(names []string) string {
	var b strings.Builder
	for _, n := range names[:len(names)-1] {
		b.WriteString("`" + n + "` when its binary is installed on the host, else ")
	}
	return b.String() + "`" + names[len(names)-1] + "`"
}
