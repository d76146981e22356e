package provider

import (
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

func TestResizeWarningNamesWhoRestarts(t *testing.T) {
	tests := []struct {
		restarts []string
		want     string
	}{
		{nil, "size 1GiB → 2GiB: no instance restarts"},
		{[]string{"db"}, "size 1GiB → 2GiB: instance db restarts in place to see it"},
		{[]string{"a", "b"}, "size 1GiB → 2GiB: instances a, b restart in place to see it"},
	}
	for _, tt := range tests {
		if got := resizeWarning(units.GiB, 2*units.GiB, tt.restarts); got != tt.want {
			t.Errorf("resizeWarning(%v) = %q, want %q", tt.restarts, got, tt.want)
		}
	}
}

func TestMountErrorsLandOnTheirAttribute(t *testing.T) {
	const a = "01JD8X4ZQ6T7N5B2V3C9M0K1HA"
	tests := []struct {
		name   string
		mounts []instances.VolumeMount
		at     path.Path
	}{
		{"nested path", []instances.VolumeMount{{VolumeID: a, MountPath: "/d"}, {VolumeID: "01JD8X4ZQ6T7N5B2V3C9M0K1HB", MountPath: "/d/e"}},
			path.Root("volume").AtListIndex(1).AtName("mount_path")},
		{"same volume twice", []instances.VolumeMount{{VolumeID: a, MountPath: "/d"}, {VolumeID: a, MountPath: "/e"}},
			path.Root("volume").AtListIndex(1).AtName("volume_id")},
		{"malformed id", []instances.VolumeMount{{VolumeID: "x", MountPath: "/d"}},
			path.Root("volume").AtListIndex(0).AtName("volume_id")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := instances.ValidateMounts("volume", tt.mounts)
			if len(errs) != 1 {
				t.Fatalf("ValidateMounts = %v, want one error", errs)
			}
			var diags diag.Diagnostics
			addMountError(errs[0], &diags)
			ad, ok := diags[0].(diag.DiagnosticWithPath)
			if !ok || !ad.Path().Equal(tt.at) {
				t.Errorf("error at %v, want %v: %v", diags[0], tt.at, diags)
			}
		})
	}
}

func TestNoVolumesIsNoChangeWhetherNullOrEmpty(t *testing.T) {
	null := instanceResourceModel{Volumes: types.ListNull(mountType)}
	empty := instanceResourceModel{Volumes: types.ListValueMust(mountType, nil)}
	one := instanceResourceModel{Volumes: mountList([]instances.VolumeMount{{VolumeID: "01JD8X4ZQ6T7N5B2V3C9M0K1HA", MountPath: "/d"}}, types.ListNull(mountType))}
	if mountsChanged(&null, &empty) || mountsChanged(&empty, &null) {
		t.Error("null and empty volume lists count as a change")
	}
	if !mountsChanged(&one, &empty) || !mountsChanged(&null, &one) {
		t.Error("attaching or detaching a volume is not a change")
	}
}
