package provider

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

func TestSettingsComeFromConfigThenEnvironmentThenDefaults(t *testing.T) {
	env := map[string]string{
		"HYPEMAN_DATA_DIR": "/srv/hypeman", "HYPEMAN_ACCELERATOR": "tcg", "HYPEMAN_KERNEL": "/boot/vmlinuz-test",
		"HYPEMAN_COMPRESS_SNAPSHOTS": "false",
	}
	cfg := providerModel{
		DataDir: types.StringNull(), Hypervisor: types.StringNull(), Accelerator: types.StringValue("kvm"),
		Kernel: types.StringNull(), KernelModules: types.StringNull(), Busybox: types.StringNull(),
		CompressSnapshots: types.BoolNull(),
	}
	s, diags := resolveSettings(cfg, func(k string) string { return env[k] })
	if diags.HasError() {
		t.Fatal(diags)
	}
	want := settings{
		DataDir: "/srv/hypeman", Hypervisor: "", Accelerator: "kvm", Kernel: "/boot/vmlinuz-test",
		KernelModules: "", Busybox: "/bin/busybox", CompressSnapshots: false,
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
	want := settings{DataDir: "/var/lib/hypeman", Accelerator: "auto", Kernel: instances.DefaultKernel, Busybox: "/bin/busybox", CompressSnapshots: true}
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
		{"HYPEMAN_DATA_DIR", "relative/dir", []string{`data_dir "relative/dir"`, "absolute path"}},
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
		CompressSnapshots: types.BoolNull(),
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
