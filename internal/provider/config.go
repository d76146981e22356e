package provider

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
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
	SnapshotMode      types.String `tfsdk:"snapshot_mode"`
	VMMUser           types.String `tfsdk:"vmm_user"`
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
	SnapshotMode      string
	VMMUser           string
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
		SnapshotMode:  pick(cfg.SnapshotMode, "HYPEMAN_SNAPSHOT_MODE", string(instances.SnapshotCompressed)),
		VMMUser:       pick(cfg.VMMUser, "HYPEMAN_VMM_USER", instances.DefaultVMMUser),
	}
	oneOf("hypervisor", "HYPEMAN_HYPERVISOR", s.Hypervisor, hypervisorNames)
	oneOf("accelerator", "HYPEMAN_ACCELERATOR", s.Accelerator, acceleratorNames)
	oneOf("snapshot_mode", "HYPEMAN_SNAPSHOT_MODE", s.SnapshotMode, instances.SnapshotModes)
	if err := instances.ValidateVMMUser(s.VMMUser); err != nil {
		diags.AddAttributeError(path.Root("vmm_user"), "Invalid Provider Setting", err.Error()+cfg.source("vmm_user", getenv).note())
	}
	if err := instances.ValidateDataDir(s.DataDir, builtin.Drivers()); err != nil {
		diags.AddAttributeError(path.Root("data_dir"), "Invalid Provider Setting", err.Error()+cfg.source("data_dir", getenv).note())
	}
	for attr, p := range map[string]string{"kernel": s.Kernel, "busybox": s.Busybox, "kernel_modules": s.KernelModules} {
		if p == "" {
			continue // kernel_modules: chosen in Configure
		}
		if err := checkHostPath(attr, p); err != nil {
			diags.AddAttributeError(path.Root(attr), "Invalid Provider Setting", err.Error()+cfg.source(attr, getenv).note())
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

// hostPaths are the settings naming a file or directory on the host besides data_dir, with the
// default each takes when it is left out, in words.
var hostPaths = map[string]string{
	"kernel":         "the default: $HYPEMAN_KERNEL, else " + instances.DefaultKernel,
	"kernel_modules": "the default: $HYPEMAN_KERNEL_MODULES, else " + instances.DefaultKernelModules + " when it exists, else none",
	"busybox":        "the default: $HYPEMAN_BUSYBOX, else " + system.DefaultBusybox,
}

// checkHostPath is the rule for a host path setting as written: an absolute path.
func checkHostPath(attr, p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return &instances.FieldError{Field: attr, Value: p, Allowed: "an absolute path on the host; leave " + attr + " out (or null) for " + hostPaths[attr]}
	}
	return nil
}

func validHostPath(attr string) validator.String {
	return checkString{"Invalid Provider Setting", "must be an absolute path on the host", func(s string) error { return checkHostPath(attr, s) }}
}

func validVMMUser() validator.String {
	return checkString{"Invalid Provider Setting", "must be a user name of the host, or `root`", instances.ValidateVMMUser}
}

func validSnapshotMode() validator.String {
	return checkString{"Invalid Provider Setting", "must be " + codeList(instances.SnapshotModes), instances.ValidateSnapshotMode}
}

func validDataDir() validator.String {
	return checkString{"Invalid Provider Setting", "must be " + instances.DataDirRule(builtin.Drivers()), func(s string) error {
		return instances.ValidateDataDir(s, builtin.Drivers())
	}}
}

// source is where a setting's value came from: the configuration, an environment variable
// (its name), or the default.
type source string

const (
	fromConfig  source = ""
	fromDefault source = "default"
)

// note says where a bad value came from, when it is not the configuration.
func (s source) note() string {
	switch s {
	case fromConfig:
		return ""
	case fromDefault:
		return " (the value is the default)"
	}
	return " (the value comes from " + string(s) + ")"
}

// source tells where attr's value comes from, as resolveSettings picks it.
func (cfg providerModel) source(attr string, getenv func(string) string) source {
	v := map[string]types.String{"data_dir": cfg.DataDir, "kernel": cfg.Kernel, "kernel_modules": cfg.KernelModules, "busybox": cfg.Busybox, "vmm_user": cfg.VMMUser}[attr]
	env := "HYPEMAN_" + strings.ToUpper(attr)
	switch {
	case !v.IsNull():
		return fromConfig
	case getenv(env) != "":
		return source(env)
	}
	return fromDefault
}

// checkOnHost looks at the paths of s on the host: data_dir must be a directory or not exist
// yet, and kernel, busybox and kernel_modules must be what they are called. A default that is
// not only warns: nobody asked for it, and reading and deleting instances needs none of them.
func checkOnHost(ctx context.Context, h host.Host, s settings, from func(attr string) source) diag.Diagnostics {
	var diags diag.Diagnostics
	if err := instances.CheckDataDir(ctx, h, s.DataDir); err != nil {
		diags.AddAttributeError(path.Root("data_dir"), "Invalid Provider Setting", err.Error()+from("data_dir").note())
	}
	for _, c := range []struct {
		attr, path string
		check      func(context.Context, host.Host, string) error
	}{
		{"kernel", s.Kernel, system.CheckKernel},
		{"kernel_modules", s.KernelModules, system.CheckModules},
		{"busybox", s.Busybox, system.CheckBusybox},
	} {
		if c.path == "" {
			continue
		}
		err := c.check(ctx, h, c.path)
		switch {
		case err == nil:
		case from(c.attr) == fromDefault:
			diags.AddAttributeWarning(path.Root(c.attr), "Unusable Default "+c.attr, err.Error()+". It is the default: creating or "+
				"starting instances fails until it is fixed or "+c.attr+" names another path. Reading and deleting instances works.")
		default:
			diags.AddAttributeError(path.Root(c.attr), "Invalid Provider Setting", err.Error()+from(c.attr).note())
		}
	}
	return diags
}
