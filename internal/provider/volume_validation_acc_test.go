package provider

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// TestAccBadVolumeInputIsRejectedAtPlan runs `terraform plan` on one bad volume input per row: the
// volume's name and size, and an instance's volume blocks. Each fails the plan naming the
// attribute, the value and what is allowed; nothing boots.
func TestAccBadVolumeInputIsRejectedAtPlan(t *testing.T) {
	requireAcc(t)
	t.Setenv("HYPEMAN_HOST", "")
	dataDir := testutil.ShortTempDir(t)
	provider := fmt.Sprintf("provider \"hypeman\" {\n  data_dir = %q\n  accelerator = \"tcg\"\n}\n", dataDir)
	volume := func(name, size string) string {
		return provider + fmt.Sprintf("resource \"hypeman_volume\" \"bad\" {\n  name = %s\n  size = %s\n}\n", name, size)
	}
	const a, b = "01JD8X4ZQ6T7N5B2V3C9M0K1HA", "01JD8X4ZQ6T7N5B2V3C9M0K1HB"
	instance := func(blocks ...[2]string) string {
		var s strings.Builder
		s.WriteString(provider + "resource \"hypeman_instance\" \"bad\" {\n  name = \"acc-bad\"\n  image = \"alpine:3.20\"\n")
		for _, v := range blocks {
			fmt.Fprintf(&s, "  volume {\n    volume_id = %q\n    mount_path = %q\n  }\n", v[0], v[1])
		}
		return s.String() + "}\n"
	}
	tests := []struct {
		name, config, want string
	}{
		{"name with capitals", volume(`"Data_1"`, `"1GiB"`), `name "Data_1" is not allowed`},
		{"size zero", volume(`"data"`, `"0"`), `size "0" is not allowed: from 16MiB to 16TiB, in whole MiB`},
		{"size over its bound", volume(`"data"`, `"17TiB"`), `size "17TiB" is not allowed: from 16MiB to 16TiB`},
		{"size not in MiB", volume(`"data"`, `"16777217"`), `size "16777217" is not allowed: from 16MiB to 16TiB, in whole MiB`},
		{"relative mount path", instance([2]string{a, "data"}), `mount_path "data" is not allowed: an absolute, clean path`},
		{"root mount path", instance([2]string{a, "/"}), `mount_path "/" is not allowed`},
		{"duplicate mount paths", instance([2]string{a, "/data"}, [2]string{b, "/data"}), `volume[1].mount_path "/data" is not allowed: a path no other volume`},
		{"nested mount paths", instance([2]string{a, "/data"}, [2]string{b, "/data/logs"}), `volume[1].mount_path "/data/logs" is not allowed: a path neither inside nor above`},
		{"same volume twice", instance([2]string{a, "/one"}, [2]string{a, "/two"}), `volume[1].volume_id "` + a + `" is not allowed: a volume attached once per instance`},
		{"malformed volume id", instance([2]string{"vol-1", "/data"}), `volume_id "vol-1" is not allowed: a volume's id`},
	}
	steps := make([]resource.TestStep, 0, len(tests))
	for _, tt := range tests {
		steps = append(steps, resource.TestStep{Config: tt.config, PlanOnly: true, ExpectError: wrapped(tt.want)})
	}
	resource.Test(t, resource.TestCase{ProtoV6ProviderFactories: accProviders, Steps: steps})
}
