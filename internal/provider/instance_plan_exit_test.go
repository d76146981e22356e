package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// exitedState is an instance whose program exited with code 3 on its own.
func exitedState() map[string]tftypes.Value {
	return merge(existing("Stopped", nil), map[string]tftypes.Value{
		"exit_code":    tftypes.NewValue(tftypes.Number, 3),
		"state_reason": str("program exited with code 3 at 2026-01-02T03:04:05Z"),
	})
}

func warnings(resp *tfprotov6.PlanResourceChangeResponse) []*tfprotov6.Diagnostic {
	var out []*tfprotov6.Diagnostic
	for _, d := range resp.Diagnostics {
		if d.Severity == tfprotov6.DiagnosticSeverityWarning {
			out = append(out, d)
		}
	}
	return out
}

func errorsOf(resp *tfprotov6.PlanResourceChangeResponse) []*tfprotov6.Diagnostic {
	var out []*tfprotov6.Diagnostic
	for _, d := range resp.Diagnostics {
		if d.Severity == tfprotov6.DiagnosticSeverityError {
			out = append(out, d)
		}
	}
	return out
}

func TestPlanThatBootsAProgramThatExitedWarnsWithItsExitCode(t *testing.T) {
	for _, state := range []string{"Running", "Paused"} {
		t.Run(state, func(t *testing.T) {
			prior := exitedState()
			resp := plan(t, prior, configOf(merge(prior, map[string]tftypes.Value{"state": str(state)})))
			if errs := errorsOf(resp); len(errs) != 0 {
				t.Fatalf("unexpected errors: %v", diagText(errs))
			}
			w := warnings(resp)
			if len(w) != 1 {
				t.Fatalf("want one warning, got %v", diagText(resp.Diagnostics))
			}
			for _, want := range []string{"web (id 01JD8X4ZQ6T7N5B2V3C9M0K1HA)", "ended with exit code 3",
				"program exited with code 3 at 2026-01-02T03:04:05Z", "/var/lib/hypeman/guests/01JD8X4ZQ6T7N5B2V3C9M0K1HA/logs/console.log"} {
				if !strings.Contains(w[0].Detail, want) {
					t.Errorf("the warning does not say %q:\n%s", want, w[0].Detail)
				}
			}
		})
	}
}

func TestNoExitWarningWhenNothingBootsOrNothingExited(t *testing.T) {
	tests := []struct {
		name  string
		prior map[string]tftypes.Value
		state string
	}{
		{"stays stopped", exitedState(), "Stopped"},
		{"stopped on request, then started", existing("Stopped", nil), "Running"},
		{"running", existing("Running", nil), "Running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := plan(t, tt.prior, configOf(merge(tt.prior, map[string]tftypes.Value{"state": str(tt.state)})))
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
		})
	}
}

func TestExitAttributesArePlannedKnown(t *testing.T) {
	null := map[string]tftypes.Value{"exit_code": tftypes.NewValue(tftypes.Number, nil), "state_reason": tftypes.NewValue(tftypes.String, nil)}
	kept := map[string]tftypes.Value{"exit_code": exitedState()["exit_code"], "state_reason": exitedState()["state_reason"]}
	tests := []struct {
		name       string
		prior      map[string]tftypes.Value
		state      string
		newProgram bool
		want       map[string]tftypes.Value
	}{
		{"a start clears the exit", exitedState(), "Running", false, null},
		{"a new program for a stopped instance keeps the exit", exitedState(), "Stopped", true, kept},
		{"a stop on request says nothing", existing("Running", nil), "Stopped", false, null},
		{"a restart for a new program", existing("Running", nil), "Running", true, null},
		{"standby", existing("Running", nil), "Standby", false, null},
		{"a reason of an unchanged state stays", merge(existing("Paused", nil), map[string]tftypes.Value{"state_reason": str("something the VMM said")}),
			"Paused", false, map[string]tftypes.Value{"exit_code": tftypes.NewValue(tftypes.Number, nil), "state_reason": str("something the VMM said")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := protocolServer(t)
			typ := resourceType(t, s)
			change := map[string]tftypes.Value{"state": str(tt.state)}
			if tt.newProgram {
				change["env"] = strMap(map[string]string{"GREETING": "two"})
			}
			resp := planOn(t, s, tt.prior, configOf(merge(tt.prior, change)))
			if errs := errorsOf(resp); len(errs) != 0 {
				t.Fatalf("unexpected errors: %v", diagText(errs))
			}
			expectPlanned(t, resp, typ, tt.want)
		})
	}
}

// planWithConfig plans with a configuration that sets what a proposed state never holds (a
// write-only attribute), as Terraform sends it.
func planWithConfig(t *testing.T, prior, config, writeOnly map[string]tftypes.Value) *tfprotov6.PlanResourceChangeResponse {
	t.Helper()
	s := protocolServer(t)
	typ := resourceType(t, s)
	resp, err := s.PlanResourceChange(t.Context(), &tfprotov6.PlanResourceChangeRequest{
		TypeName:         "hypeman_instance",
		PriorState:       dynamic(t, typ, object(typ, prior)),
		ProposedNewState: dynamic(t, typ, object(typ, merge(prior, config))),
		Config:           dynamic(t, typ, object(typ, merge(config, writeOnly))),
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDiscardSnapshotShowsInThePlanOnlyForStandbyToStopped(t *testing.T) {
	discard := map[string]tftypes.Value{"discard_snapshot": tftypes.NewValue(tftypes.Bool, true)}
	tests := []struct {
		name         string
		prior, state string
		writeOnly    map[string]tftypes.Value
		wantWarning  bool
	}{
		{"standby to stopped with discard_snapshot", "Standby", "Stopped", discard, true},
		{"standby to stopped restores without it", "Standby", "Stopped", nil, false},
		{"standby to running restores even with it", "Standby", "Running", discard, false},
		{"running stays running with it", "Running", "Running", discard, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prior := existing(tt.prior, nil)
			resp := planWithConfig(t, prior, configOf(merge(prior, map[string]tftypes.Value{"state": str(tt.state)})), tt.writeOnly)
			if errs := errorsOf(resp); len(errs) != 0 {
				t.Fatalf("unexpected errors: %v", diagText(errs))
			}
			w := warnings(resp)
			if !tt.wantWarning {
				if len(w) != 0 {
					t.Fatalf("unexpected warnings: %v", diagText(w))
				}
				return
			}
			if len(w) != 1 || !strings.Contains(w[0].Detail, "The memory snapshot of web will be deleted; the overlay is kept.") {
				t.Fatalf("want the discard warning, got %v", diagText(resp.Diagnostics))
			}
			if w[0].Attribute == nil || w[0].Attribute.Steps()[0] != tftypes.AttributeName("discard_snapshot") {
				t.Errorf("the warning is on %v, want discard_snapshot", w[0].Attribute)
			}
		})
	}
}

func TestDiscardSnapshotIsNeverAChangeByItself(t *testing.T) {
	s := protocolServer(t)
	typ := resourceType(t, s)
	prior := existing("Running", nil)
	resp := planWithConfig(t, prior, configOf(prior), map[string]tftypes.Value{"discard_snapshot": tftypes.NewValue(tftypes.Bool, true)})
	if len(resp.Diagnostics) != 0 {
		t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
	}
	planned, err := resp.PlannedState.Unmarshal(typ)
	if err != nil {
		t.Fatal(err)
	}
	if want := object(typ, prior); !planned.Equal(want) {
		diffs, _ := planned.Diff(want)
		t.Fatalf("setting discard_snapshot alone plans a change: %v", diffs)
	}
}
