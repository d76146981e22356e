package provider

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

func TestSettingsComeFromConfigThenEnvironmentThenDefaults(t *testing.T) {
	env := map[string]string{
		"HYPEMAN_DATA_DIR": "/srv/hypeman", "HYPEMAN_ACCELERATOR": "tcg", "HYPEMAN_KERNEL": "/boot/vmlinuz-test",
		"HYPEMAN_COMPRESS_SNAPSHOTS": "false", "HYPEMAN_SNAPSHOT_MODE": "lazy", "HYPEMAN_VMM_USER": "qemu-runner",
	}
	cfg := providerModel{
		DataDir: types.StringNull(), Hypervisor: types.StringNull(), Accelerator: types.StringValue("kvm"),
		Kernel: types.StringNull(), KernelModules: types.StringNull(), Busybox: types.StringNull(),
		CompressSnapshots: types.BoolNull(), SnapshotMode: types.StringNull(),
	}
	s, diags := resolveSettings(cfg, func(k string) string { return env[k] })
	if diags.HasError() {
		t.Fatal(diags)
	}
	want := settings{
		DataDir: "/srv/hypeman", Hypervisor: "", Accelerator: "kvm", Kernel: "/boot/vmlinuz-test",
		KernelModules: "", Busybox: "/bin/busybox", CompressSnapshots: false, SnapshotMode: "lazy", VMMUser: "qemu-runner",
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("settings = %+v\nwant       %+v", s, want)
	}
}

func TestSettingsDefaultsWithNothingSet(t *testing.T) {
	s, diags := resolveSettings(nullProviderModel(), func(string) string { return "" })
	if diags.HasError() {
		t.Fatal(diags)
	}
	want := settings{DataDir: "/var/lib/hypeman", Accelerator: "auto", Kernel: instances.DefaultKernel, Busybox: "/bin/busybox", CompressSnapshots: true, SnapshotMode: "compressed", VMMUser: "hypeman-vmm"}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("settings = %+v\nwant       %+v", s, want)
	}
}

func TestBadSettingsFromTheEnvironmentAreRejected(t *testing.T) {
	tests := []struct {
		env, value string
		want       []string
	}{
		{"HYPEMAN_ACCELERATOR", "fast", []string{`accelerator "fast"`, "auto, kvm, tcg"}},
		{"HYPEMAN_HYPERVISOR", "firecracker", []string{`hypervisor "firecracker"`, "cloud-hypervisor, qemu"}},
		{"HYPEMAN_COMPRESS_SNAPSHOTS", "maybe", []string{`"maybe"`, "true or false"}},
		{"HYPEMAN_SNAPSHOT_MODE", "fast", []string{`snapshot_mode "fast"`, "HYPEMAN_SNAPSHOT_MODE", "compressed, lazy"}},
		{"HYPEMAN_VMM_USER", "Root User", []string{`vmm_user "Root User"`, "a user name of the host", "(the value comes from HYPEMAN_VMM_USER)"}},
		{"HYPEMAN_DATA_DIR", "relative/dir", []string{`data_dir "relative/dir"`, "absolute path", "(the value comes from HYPEMAN_DATA_DIR)"}},
		{"HYPEMAN_DATA_DIR", "/" + strings.Repeat("d", 80), []string{"has 81 bytes, more than the", "(the value comes from HYPEMAN_DATA_DIR)"}},
		{"HYPEMAN_KERNEL", "vmlinuz", []string{`kernel "vmlinuz" is not allowed: an absolute path on the host`, "(the value comes from HYPEMAN_KERNEL)"}},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			_, diags := resolveSettings(nullProviderModel(), func(k string) string {
				if k == tt.env {
					return tt.value
				}
				return ""
			})
			if diags.ErrorsCount() != 1 {
				t.Fatalf("want one error, got %v", diags)
			}
			detail := diags.Errors()[0].Detail()
			for _, w := range tt.want {
				if !strings.Contains(detail, w) {
					t.Errorf("detail does not mention %q: %s", w, detail)
				}
			}
		})
	}
}

func nullProviderModel() providerModel {
	return providerModel{
		Host: types.StringNull(), DataDir: types.StringNull(), Hypervisor: types.StringNull(), Accelerator: types.StringNull(),
		Kernel: types.StringNull(), KernelModules: types.StringNull(), Busybox: types.StringNull(),
		CompressSnapshots: types.BoolNull(), SnapshotMode: types.StringNull(),
	}
}

func TestHypervisorDescriptionsListEveryBuiltInVMMInOrder(t *testing.T) {
	names := []string{"a", "b", "c"}
	if got, want := codeList(names), "`a`, `b` or `c`"; got != want {
		t.Errorf("codeList = %q, want %q", got, want)
	}
	want := "`a` when its binary is installed on the host, else `b` when its binary is installed on the host, else `c`"
	if got := firstInstalled(names); got != want {
		t.Errorf("firstInstalled = %q, want %q", got, want)
	}
	if got := codeList(hypervisorNames); got != "`cloud-hypervisor` or `qemu`" {
		t.Errorf("the built-in VMMs read %q", got)
	}
}

func TestHostPathsAreCheckedOnTheHostNamingTheSetting(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes")
	if err := os.WriteFile(text, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	header := make([]byte, 4096)
	copy(header[0x202:], "HdrS")
	if err := os.WriteFile(kernel, header, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	from := func(src source) func(string) source { return func(string) source { return src } }

	diags := checkOnHost(context.Background(), host.Local{}, settings{DataDir: text, Kernel: text, Busybox: dir, KernelModules: missing}, from(fromConfig))
	want := map[string]string{
		"data_dir":       `data_dir "` + text + `" is a file on the host, not a directory`,
		"kernel":         `kernel "` + text + `" is not a Linux kernel`,
		"busybox":        `busybox "` + dir + `" is a directory; allowed: a statically linked busybox`,
		"kernel_modules": `kernel_modules "` + missing + `" does not exist on the host; allowed: the kernel's module directory`,
	}
	if diags.ErrorsCount() != len(want) || diags.WarningsCount() != 0 {
		t.Fatalf("want %d errors, got %v", len(want), diags)
	}
	for _, d := range diags.Errors() {
		ad, ok := d.(diag.DiagnosticWithPath)
		if !ok {
			t.Fatalf("%s has no attribute path", d.Detail())
		}
		attr := ad.Path().String()
		if !strings.Contains(d.Detail(), want[attr]) {
			t.Errorf("%s: %q does not say %q", attr, d.Detail(), want[attr])
		}
	}

	diags = checkOnHost(context.Background(), host.Local{}, settings{DataDir: missing, Kernel: text}, from("HYPEMAN_KERNEL"))
	if diags.ErrorsCount() != 1 || !strings.HasSuffix(diags.Errors()[0].Detail(), "(the value comes from HYPEMAN_KERNEL)") {
		t.Errorf("a kernel from the environment: %v", diags)
	}

	for _, k := range []string{missing, text} {
		diags = checkOnHost(context.Background(), host.Local{}, settings{DataDir: dir, Kernel: k}, from(fromDefault))
		if diags.HasError() || diags.WarningsCount() != 1 || !strings.Contains(diags.Warnings()[0].Detail(), "Reading and deleting instances works") {
			t.Errorf("a default kernel that is no kernel must only warn: %v", diags)
		}
	}

	ok := settings{DataDir: missing, Kernel: kernel}
	if _, err := os.Stat(system.DefaultBusybox); err == nil {
		ok.Busybox = system.DefaultBusybox
	}
	if diags := checkOnHost(context.Background(), host.Local{}, ok, from(fromConfig)); len(diags) != 0 {
		t.Errorf("good paths: %v", diags)
	}
}

// A snapshot_mode in the configuration is checked at validation, naming the attribute, the value
// and what is allowed.
func TestSnapshotModeIsValidatedInTheConfiguration(t *testing.T) {
	for value, ok := range map[string]bool{"compressed": true, "lazy": true, "Lazy": false, "fast": false} {
		var resp validator.StringResponse
		validSnapshotMode().ValidateString(context.Background(), validator.StringRequest{
			Path: path.Root("snapshot_mode"), ConfigValue: types.StringValue(value),
		}, &resp)
		if ok != !resp.Diagnostics.HasError() {
			t.Errorf("%q: %v", value, resp.Diagnostics)
			continue
		}
		if !ok {
			detail := resp.Diagnostics.Errors()[0].Detail()
			if want := `snapshot_mode "` + value + `" is not allowed: use compressed or lazy`; !strings.Contains(detail, want) {
				t.Errorf("detail %q, want %q", detail, want)
			}
		}
	}
}
