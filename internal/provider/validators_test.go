package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// validate runs ValidateResourceConfig on a configuration with name and image set plus attrs.
func validate(t *testing.T, attrs map[string]tftypes.Value) []*tfprotov6.Diagnostic {
	t.Helper()
	s := protocolServer(t)
	typ := resourceType(t, s)
	cfg := merge(map[string]tftypes.Value{"name": str("web"), "image": str("alpine:3.20")}, attrs)
	resp, err := s.ValidateResourceConfig(context.Background(), &tfprotov6.ValidateResourceConfigRequest{
		TypeName: "hypeman_instance",
		Config:   dynamic(t, typ, object(typ, cfg)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Diagnostics
}

func TestBadInstanceConfigIsRejectedNamingValueAndAllowedForms(t *testing.T) {
	num := func(n int64) tftypes.Value { return tftypes.NewValue(tftypes.Number, n) }
	tests := []struct {
		name  string
		attr  string
		value tftypes.Value
		want  []string // every one must appear in the error detail
	}{
		{"name with capitals", "name", str("Web_1"), []string{`"Web_1"`, instances.NameRule}},
		{"name too long", "name", str(strings.Repeat("a", 64)), []string{strings.Repeat("a", 64), instances.NameRule}},
		{"name ending in a dash", "name", str("web-"), []string{`"web-"`, instances.NameRule}},
		{"memory that is not a size", "memory", str("lots"), []string{`memory "lots"`, units.Allowed}},
		{"memory below the minimum", "memory", str("64MiB"), []string{`memory "64MiB"`, "at least 128MiB"}},
		{"memory in bytes that are not whole MiB", "memory", str("134217729"), []string{`"134217729"`, "in whole MiB"}},
		{"hotplug memory off the 128MiB step", "hotplug_memory", str("100MiB"), []string{`hotplug_memory "100MiB"`, "multiple of 128MiB"}},
		{"overlay below the minimum", "overlay_size", str("1MiB"), []string{`overlay_size "1MiB"`, "at least 64MiB"}},
		{"unknown state", "state", str("Sleeping"), []string{`state "Sleeping"`, "Running, Paused, Standby, Stopped"}},
		{"state in the wrong case", "state", str("running"), []string{`state "running"`, `write it as "Running"`}},
		{"observed-only state", "state", str("Shutdown"), []string{`state "Shutdown"`, "Running, Paused, Standby, Stopped"}},
		{"unsupported image transport", "image", str("docker://alpine"), []string{`"docker://alpine"`, "oci:PATH"}},
		{"image with spaces", "image", str(" alpine"), []string{`" alpine"`, "white space"}},
		{"env key starting with a digit", "env", strMap(map[string]string{"1BAD": "x"}), []string{`env key "1BAD"`, "a letter or '_'"}},
		{"env key with a space", "env", strMap(map[string]string{"MY VAR": "x"}), []string{`"MY VAR"`, "a letter or '_'"}},
		{"relative workdir", "workdir", str("tmp"), []string{`workdir "tmp"`, "absolute path"}},
		{"no vcpus", "vcpus", num(0), []string{"between 1 and 128", "got: 0"}},
		{"too many vcpus", "vcpus", num(129), []string{"between 1 and 128", "got: 129"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := validate(t, map[string]tftypes.Value{tt.attr: tt.value})
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %d: %v", len(diags), diagText(diags))
			}
			d := diags[0]
			if d.Severity != tfprotov6.DiagnosticSeverityError {
				t.Errorf("severity %v, want error", d.Severity)
			}
			if d.Attribute == nil || len(d.Attribute.Steps()) == 0 || d.Attribute.Steps()[0] != tftypes.AttributeName(tt.attr) {
				t.Errorf("diagnostic is on %v, want %s", d.Attribute, tt.attr)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Detail, w) {
					t.Errorf("detail does not mention %q:\n%s", w, d.Detail)
				}
			}
		})
	}
}

func TestGoodInstanceConfigPassesValidation(t *testing.T) {
	tests := []struct {
		name  string
		attrs map[string]tftypes.Value
	}{
		{"defaults only", nil},
		{"sizes in every unit", map[string]tftypes.Value{"memory": str("1GB"), "hotplug_memory": str("256MiB"), "overlay_size": str("0.5GiB")}},
		{"every settable state", map[string]tftypes.Value{"state": str("Standby")}},
		{"oci layout image", map[string]tftypes.Value{"image": str("oci:/var/lib/images/app:v1")}},
		{"registry image pinned by digest", map[string]tftypes.Value{"image": str("registry.example.com:5000/app@sha256:" + strings.Repeat("a", 64))}},
		{"program", map[string]tftypes.Value{
			"entrypoint": strList("/bin/sh", "-c"), "cmd": strList("echo $A"),
			"env": strMap(map[string]string{"A": "1", "_B.c-d": "x"}), "workdir": str("/srv"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diags := validate(t, tt.attrs); len(diags) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(diags))
			}
		})
	}
}

func diagText(diags []*tfprotov6.Diagnostic) []string {
	var out []string
	for _, d := range diags {
		out = append(out, d.Summary+": "+d.Detail)
	}
	return out
}
