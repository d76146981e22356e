package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// A change of size is an update in place whose warning names what apply does with each change;
// an overlay made smaller fails the plan.
func TestASizeChangeIsPlannedInPlaceAndSaysWhatApplyDoes(t *testing.T) {
	n := func(v int) tftypes.Value { return tftypes.NewValue(tftypes.Number, v) }
	ceiling := map[string]tftypes.Value{"max_memory": str("2GiB")}
	vcpuCeiling := map[string]tftypes.Value{"max_vcpus": n(4)}
	tests := []struct {
		name      string
		state     string
		prior     map[string]tftypes.Value // on top of existing()
		change    map[string]tftypes.Value
		summary   string // "" wants no diagnostic
		want      []string
		wantError bool
	}{
		{"memory up within the ceiling", "Running", ceiling, map[string]tftypes.Value{"memory": str("1GiB")},
			"Instance Will Change In Place", []string{"memory 512MiB → 1GiB: live"}, false},
		{"memory down within the ceiling", "Running", merge(ceiling, map[string]tftypes.Value{"memory": str("1GiB")}), map[string]tftypes.Value{"memory": str("512MiB")},
			"Instance Will Change In Place", []string{"memory 1GiB → 512MiB: live"}, false},
		{"memory beyond the ceiling", "Running", nil, map[string]tftypes.Value{"memory": str("1GiB")},
			"Instance Will Change In Place", []string{"memory 512MiB → 1GiB: restart in place"}, false},
		{"a new ceiling", "Running", ceiling, map[string]tftypes.Value{"max_memory": str("4GiB")},
			"Instance Will Change In Place", []string{"max_memory 2GiB → 4GiB: restart in place"}, false},
		{"memory of a paused instance", "Paused", ceiling, map[string]tftypes.Value{"memory": str("1GiB")},
			"Instance Will Change In Place", []string{"memory 512MiB → 1GiB: restart in place"}, false},
		{"vcpus", "Running", nil, map[string]tftypes.Value{"vcpus": n(2)},
			"Instance Will Change In Place", []string{"vcpus 1 → 2: restart in place"}, false},
		{"vcpus up within max_vcpus", "Running", vcpuCeiling, map[string]tftypes.Value{"vcpus": n(3)},
			"Instance Will Change In Place", []string{"vcpus 1 → 3: live"}, false},
		{"vcpus down on QEMU", "Running", merge(vcpuCeiling, map[string]tftypes.Value{"vcpus": n(3)}), map[string]tftypes.Value{"vcpus": n(2)},
			"Instance Will Change In Place", []string{"vcpus 3 → 2: restart in place"}, false},
		{"vcpus down on Cloud Hypervisor", "Running", merge(vcpuCeiling, map[string]tftypes.Value{"vcpus": n(3), "hypervisor": str("cloud-hypervisor")}),
			map[string]tftypes.Value{"vcpus": n(2)}, "Instance Will Change In Place", []string{"vcpus 3 → 2: live"}, false},
		{"a new vcpu ceiling", "Running", vcpuCeiling, map[string]tftypes.Value{"max_vcpus": n(8)},
			"Instance Will Change In Place", []string{"max_vcpus 4 → 8: restart in place"}, false},
		{"vcpus of a Standby instance within max_vcpus", "Standby", vcpuCeiling, map[string]tftypes.Value{"vcpus": n(2)},
			"Instance Will Change In Place", []string{"vcpus 1 → 2: live, at the restore from Standby"}, false},
		{"vcpus of a stopped instance", "Stopped", nil, map[string]tftypes.Value{"vcpus": n(4)},
			"Instance Will Change In Place", []string{"vcpus 1 → 4: at the next start"}, false},
		{"overlay of a running instance", "Running", nil, map[string]tftypes.Value{"overlay_size": str("20GiB")},
			"Instance Will Change In Place", []string{"overlay_size 10GiB → 20GiB: restart in place"}, false},
		{"overlay of a stopped instance", "Stopped", nil, map[string]tftypes.Value{"overlay_size": str("20GiB")},
			"Instance Will Change In Place", []string{"overlay_size 10GiB → 20GiB: grown on the host, in place"}, false},
		{"memory of a Standby instance within the ceiling", "Standby", ceiling, map[string]tftypes.Value{"memory": str("1GiB")},
			"Instance Will Change In Place", []string{"memory 512MiB → 1GiB: live, at the restore from Standby"}, false},
		{"vcpus of an instance staying in Standby", "Standby", nil, map[string]tftypes.Value{"vcpus": n(2)},
			"Apply Will Refuse This Change", []string{"vcpus 1 → 2: restart in place", `Set state = "Running" in the same change`}, false},
		{"vcpus of an instance leaving Standby", "Standby", nil, map[string]tftypes.Value{"vcpus": n(2), "state": str("Running")},
			"Instance Will Change In Place", []string{"vcpus 1 → 2: restart in place"}, false},
		{"hotplug_memory written as memory and max_memory", "Running", map[string]tftypes.Value{"hotplug_memory": str("512MiB")},
			map[string]tftypes.Value{"memory": str("1GiB"), "max_memory": str("1GiB"), "hotplug_memory": str("0")}, "", nil, false},
		{"a smaller overlay", "Stopped", nil, map[string]tftypes.Value{"overlay_size": str("5GiB")},
			"Invalid Size", []string{`overlay_size "5GiB" is not allowed: at least 10GiB`, "never shrinks"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prior := merge(existing(tt.state, nil), tt.prior)
			resp := plan(t, prior, configOf(merge(prior, tt.change)))
			if len(resp.RequiresReplace) != 0 {
				t.Errorf("a size change replaces the instance: replace on %v", resp.RequiresReplace)
			}
			if tt.summary == "" {
				if len(resp.Diagnostics) != 0 {
					t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
				}
				return
			}
			if len(resp.Diagnostics) != 1 {
				t.Fatalf("want one diagnostic %q, got %v", tt.summary, diagText(resp.Diagnostics))
			}
			d := resp.Diagnostics[0]
			severity := tfprotov6.DiagnosticSeverityWarning
			if tt.wantError {
				severity = tfprotov6.DiagnosticSeverityError
			}
			if d.Summary != tt.summary || d.Severity != severity {
				t.Errorf("got %v %q, want %v %q", d.Severity, d.Summary, severity, tt.summary)
			}
			for _, want := range tt.want {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("the diagnostic does not say %q:\n%s", want, d.Detail)
				}
			}
		})
	}
}
