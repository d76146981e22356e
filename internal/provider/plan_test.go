package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

func TestNewProgramForStandbyInstanceFailsAtPlanTime(t *testing.T) {
	prior := existing("Standby", map[string]string{"GREETING": "one"})
	config := configOf(merge(prior, map[string]tftypes.Value{"env": strMap(map[string]string{"GREETING": "two"})}))
	resp := plan(t, prior, config)
	if len(resp.Diagnostics) != 1 {
		t.Fatalf("want one diagnostic, got %v", diagText(resp.Diagnostics))
	}
	d := resp.Diagnostics[0]
	if d.Severity != tfprotov6.DiagnosticSeverityError || d.Summary != "Unable to Update Instance" {
		t.Errorf("got %v %q", d.Severity, d.Summary)
	}
	if d.Attribute == nil || d.Attribute.Steps()[0] != tftypes.AttributeName("env") {
		t.Errorf("diagnostic is on %v, want env", d.Attribute)
	}
	for _, want := range []string{"web (id 01JD8X4ZQ6T7N5B2V3C9M0K1HA)", "Standby", `state = "Running"`, "env"} {
		if !strings.Contains(d.Detail, want) {
			t.Errorf("detail does not mention %q:\n%s", want, d.Detail)
		}
	}
}

func TestNewProgramPlansWhenStandbyIsLeftOrNotInvolved(t *testing.T) {
	newEnv := map[string]tftypes.Value{"env": strMap(map[string]string{"GREETING": "two"})}
	tests := []struct {
		name         string
		prior, state string
	}{
		{"standby to running in the same change", "Standby", "Running"},
		{"running to standby (restart, then standby)", "Running", "Standby"},
		{"running stays running", "Running", "Running"},
		{"stopped stays stopped", "Stopped", "Stopped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prior := existing(tt.prior, map[string]string{"GREETING": "one"})
			config := configOf(merge(prior, merge(newEnv, map[string]tftypes.Value{"state": str(tt.state)})))
			resp := plan(t, prior, config)
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			if len(resp.RequiresReplace) != 0 {
				t.Errorf("a program or state change must not replace the instance; replace on %v", resp.RequiresReplace)
			}
		})
	}
}

func TestSizeSpelledDifferentlyIsNotAChange(t *testing.T) {
	tests := []struct {
		name        string
		attr, value string
		wantPlanned string
		wantReplace bool
	}{
		{"same memory in GiB", "memory", "0.5GiB", "512MiB", false},
		{"same memory in bytes", "memory", "536870912", "512MiB", false},
		{"same overlay in GB", "overlay_size", "10GB", "10GiB", false},
		{"same hotplug as 0B", "hotplug_memory", "0B", "0", false},
		{"more memory", "memory", "1GiB", "1GiB", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := protocolServer(t)
			typ := resourceType(t, s)
			prior := existing("Running", nil)
			resp := plan(t, prior, configOf(merge(prior, map[string]tftypes.Value{tt.attr: str(tt.value)})))
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			var got string
			if err := plannedAttr(t, resp, typ, tt.attr).As(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.wantPlanned {
				t.Errorf("planned %s = %q, want %q", tt.attr, got, tt.wantPlanned)
			}
			replace := len(resp.RequiresReplace) > 0
			if replace != tt.wantReplace {
				t.Errorf("replace = %v (%v), want %v", replace, resp.RequiresReplace, tt.wantReplace)
			}
		})
	}
}

func TestBootDetailsStayKnownUnlessTheGuestBootsAgain(t *testing.T) {
	tests := []struct {
		name         string
		prior, state string
		newProgram   bool
		wantKnown    bool
	}{
		{"standby", "Running", "Standby", false, true},
		{"restore", "Standby", "Running", false, true},
		{"pause", "Running", "Paused", false, true},
		{"stop", "Running", "Stopped", false, true},
		{"start", "Stopped", "Running", false, false},
		{"unresponsive VMM is restarted", "Unknown", "Running", false, false},
		{"restart for a new program", "Running", "Running", true, false},
		{"new program for a stopped instance", "Stopped", "Stopped", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := protocolServer(t)
			typ := resourceType(t, s)
			prior := merge(existing(tt.prior, map[string]string{"GREETING": "one"}), map[string]tftypes.Value{
				"accelerator": str("tcg"), "hypervisor_version": str("7.2.15"), "kernel_release": str("6.1.0-28-amd64"),
			})
			change := map[string]tftypes.Value{"state": str(tt.state)}
			if tt.newProgram {
				change["env"] = strMap(map[string]string{"GREETING": "two"})
			}
			resp := plan(t, prior, configOf(merge(prior, change)))
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			for _, name := range []string{"accelerator", "hypervisor_version", "kernel_release"} {
				v := plannedAttr(t, resp, typ, name)
				if v.IsKnown() != tt.wantKnown {
					t.Errorf("%s known = %v, want %v", name, v.IsKnown(), tt.wantKnown)
				}
				if tt.wantKnown && !v.Equal(prior[name]) {
					t.Errorf("%s planned %v, want the prior %v", name, v, prior[name])
				}
			}
		})
	}
}

func TestStateChangePlansTheRuntimeAttributesItCanKnow(t *testing.T) {
	const pid, started = 4242, "2026-01-02T03:04:09Z"
	unknown := tftypes.Value{}
	tests := []struct {
		name         string
		prior, state string
		newProgram   bool
		pid          tftypes.Value // the zero Value means unknown
		startedAt    tftypes.Value
		snapshot     tftypes.Value
	}{
		{"pause keeps the VMM", "Running", "Paused", false, tftypes.NewValue(tftypes.Number, pid), str(started), tftypes.NewValue(tftypes.Number, 0)},
		{"standby stops the VMM", "Running", "Standby", false, tftypes.NewValue(tftypes.Number, nil), tftypes.NewValue(tftypes.String, nil), unknown},
		{"restore starts a VMM", "Standby", "Running", false, unknown, unknown, tftypes.NewValue(tftypes.Number, 0)},
		{"stop", "Running", "Stopped", false, tftypes.NewValue(tftypes.Number, nil), tftypes.NewValue(tftypes.String, nil), tftypes.NewValue(tftypes.Number, 0)},
		{"restart for a new program", "Running", "Running", true, unknown, unknown, tftypes.NewValue(tftypes.Number, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := protocolServer(t)
			typ := resourceType(t, s)
			runtime := map[string]tftypes.Value{}
			if tt.prior == "Running" {
				runtime = map[string]tftypes.Value{"pid": tftypes.NewValue(tftypes.Number, pid), "started_at": str(started)}
			}
			prior := merge(existing(tt.prior, map[string]string{"GREETING": "one"}), runtime)
			change := map[string]tftypes.Value{"state": str(tt.state)}
			if tt.newProgram {
				change["env"] = strMap(map[string]string{"GREETING": "two"})
			}
			resp := plan(t, prior, configOf(merge(prior, change)))
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			expectPlanned(t, resp, typ, map[string]tftypes.Value{"pid": tt.pid, "started_at": tt.startedAt, "snapshot_bytes": tt.snapshot})
		})
	}
}

func TestPlanWarnsWhenApplyWouldKillAnUnresponsiveVMM(t *testing.T) {
	const reason = "the qemu process (pid 4242) is alive but its control socket does not answer: context deadline exceeded"
	hung := map[string]tftypes.Value{"pid": tftypes.NewValue(tftypes.Number, 4242), "state_reason": str(reason)}
	tests := []struct {
		name, prior, state string
		runtime, change    map[string]tftypes.Value
		warn               bool
	}{
		{"to Running", "Unknown", "Running", hung, nil, true},
		{"to Paused", "Unknown", "Paused", hung, nil, true},
		{"to Standby", "Unknown", "Standby", hung, nil, true},
		{"to Stopped", "Unknown", "Stopped", hung, nil, true},
		{"with a new program", "Unknown", "Running", hung, map[string]tftypes.Value{"env": strMap(map[string]string{"GREETING": "two"})}, true},
		{"no VMM runs (an interrupted create)", "Unknown", "Running", map[string]tftypes.Value{"state_reason": str("the instance was never completely created")}, nil, false},
		{"a VMM that answers", "Running", "Stopped", map[string]tftypes.Value{"pid": tftypes.NewValue(tftypes.Number, 4242)}, nil, false},
		{"a replacement (its own warning)", "Unknown", "Running", hung, map[string]tftypes.Value{"image": str("alpine:3.21")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prior := merge(existing(tt.prior, map[string]string{"GREETING": "one"}), tt.runtime)
			resp := plan(t, prior, configOf(merge(prior, merge(tt.change, map[string]tftypes.Value{"state": str(tt.state)}))))
			var warnings []*tfprotov6.Diagnostic
			for _, d := range resp.Diagnostics {
				if d.Severity != tfprotov6.DiagnosticSeverityWarning {
					t.Fatalf("unexpected diagnostic: %v", diagText(resp.Diagnostics))
				}
				warnings = append(warnings, d)
			}
			if !tt.warn {
				if len(warnings) != 0 {
					t.Fatalf("unexpected warnings: %v", diagText(resp.Diagnostics))
				}
				return
			}
			if len(warnings) != 1 {
				t.Fatalf("want one warning, got %v", diagText(resp.Diagnostics))
			}
			d := warnings[0]
			if d.Attribute == nil || d.Attribute.Steps()[0] != tftypes.AttributeName("state") {
				t.Errorf("warning is on %v, want state", d.Attribute)
			}
			for _, want := range []string{"web (id 01JD8X4ZQ6T7N5B2V3C9M0K1HA)",
				"the VMM of web does not answer; apply will kill it: the guest's memory is lost, its overlay is kept",
				reason, "timeouts = { read"} {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("warning does not say %q:\n%s", want, d.Detail)
				}
			}
		})
	}
}
