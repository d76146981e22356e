package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// waitForValue is a wait_for object with attrs set (http given as its own attributes) and the rest null.
func waitForValue(t *testing.T, attrs map[string]tftypes.Value, http map[string]tftypes.Value) tftypes.Value {
	t.Helper()
	wt, ok := resourceType(t, protocolServer(t)).AttributeTypes["wait_for"].(tftypes.Object)
	if !ok {
		t.Fatal("wait_for is not an object")
	}
	if http != nil {
		ht, _ := wt.AttributeTypes["http"].(tftypes.Object)
		attrs = merge(attrs, map[string]tftypes.Value{"http": object(ht, http)})
	}
	return object(wt, attrs)
}

func TestBadWaitForIsRejectedNamingAttributeValueAndAllowed(t *testing.T) {
	tests := []struct {
		name  string
		attrs map[string]tftypes.Value
		http  map[string]tftypes.Value
		at    string
		want  []string
	}{
		{"a console pattern that does not compile", map[string]tftypes.Value{"console": str("ready(")}, nil,
			"wait_for.console", []string{`wait_for.console "ready("`, "RE2", "missing closing )"}},
		{"tcp_port 0", map[string]tftypes.Value{"tcp_port": num(0)}, nil,
			"wait_for.tcp_port", []string{`wait_for.tcp_port "0"`, instances.WaitPortRule}},
		{"tcp_port 65536", map[string]tftypes.Value{"tcp_port": num(65536)}, nil,
			"wait_for.tcp_port", []string{`wait_for.tcp_port "65536"`, instances.WaitPortRule}},
		{"http port 0", nil, map[string]tftypes.Value{"port": num(0)},
			"wait_for.http.port", []string{`wait_for.http.port "0"`, instances.WaitPortRule}},
		{"status 700", nil, map[string]tftypes.Value{"port": num(80), "status": num(700)},
			"wait_for.http.status", []string{`wait_for.http.status "700"`, instances.WaitStatusRule}},
		{"a path without its slash", nil, map[string]tftypes.Value{"port": num(80), "path": str("healthz")},
			"wait_for.http.path", []string{`wait_for.http.path "healthz"`, `starting with "/"`}},
		{"a delay that is no duration", map[string]tftypes.Value{"delay": str("soon")}, nil,
			"wait_for.delay", []string{`wait_for.delay "soon"`, instances.WaitDelayRule}},
		{"a delay above the bound", map[string]tftypes.Value{"delay": str("11m")}, nil,
			"wait_for.delay", []string{`wait_for.delay "11m0s"`, instances.WaitDelayRule}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := validate(t, map[string]tftypes.Value{"wait_for": waitForValue(t, tt.attrs, tt.http)})
			if len(diags) != 1 || diags[0].Severity != tfprotov6.DiagnosticSeverityError {
				t.Fatalf("want one error, got %v", diagText(diags))
			}
			if got := pathString(diags[0].Attribute); got != tt.at {
				t.Errorf("diagnostic is on %s, want %s", got, tt.at)
			}
			for _, w := range tt.want {
				if !strings.Contains(diags[0].Detail, w) {
					t.Errorf("detail does not mention %q:\n%s", w, diags[0].Detail)
				}
			}
		})
	}
	good := waitForValue(t, map[string]tftypes.Value{"console": str("^up$"), "tcp_port": num(8080), "delay": str("5s")},
		map[string]tftypes.Value{"port": num(8080), "path": str("/healthz"), "status": num(204)})
	if diags := validate(t, map[string]tftypes.Value{"wait_for": good}); len(diags) != 0 {
		t.Fatalf("a good wait_for: %v", diagText(diags))
	}
}

func TestAWaitThatDialsFailsThePlanWithoutANetworkInterface(t *testing.T) {
	noNetwork := configuredServer(t, map[string]tftypes.Value{"data_dir": str(testutil.ShortTempDir(t))})
	withNetwork := configuredServer(t, map[string]tftypes.Value{"data_dir": str(testutil.ShortTempDir(t)),
		"network": block(t, "network", map[string]tftypes.Value{"uplink": str("none")})})
	off := networkValue(resourceType(t, noNetwork), map[string]tftypes.Value{"enabled": tftypes.NewValue(tftypes.Bool, false)})
	tcp := waitForValue(t, map[string]tftypes.Value{"tcp_port": num(80)}, nil)
	web := waitForValue(t, nil, map[string]tftypes.Value{"port": num(80)})
	console := waitForValue(t, map[string]tftypes.Value{"console": str("up")}, nil)
	base := map[string]tftypes.Value{"name": str("web"), "image": str("alpine:3.20")}
	tests := []struct {
		name   string
		server tfprotov6.ProviderServer
		config map[string]tftypes.Value
		at     string // "" wants no diagnostic
		want   []string
	}{
		{"tcp_port on a provider with no network", noNetwork, map[string]tftypes.Value{"wait_for": tcp}, "wait_for.tcp_port",
			[]string{"wait_for.tcp_port is set", "the provider has no network block", `provider "hypeman" { network {} }`, "wait_for = { console ="}},
		{"http on an instance with enabled = false", withNetwork, map[string]tftypes.Value{"wait_for": web, "network": off}, "wait_for.http",
			[]string{"wait_for.http is set", "network = { enabled = false }", "remove enabled = false"}},
		{"tcp_port on the provider's network", withNetwork, map[string]tftypes.Value{"wait_for": tcp}, "", nil},
		{"a console wait needs no network", noNetwork, map[string]tftypes.Value{"wait_for": console}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := planOn(t, tt.server, nil, merge(base, tt.config))
			if tt.at == "" {
				if len(resp.Diagnostics) != 0 {
					t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
				}
				return
			}
			if len(resp.Diagnostics) != 1 || pathString(resp.Diagnostics[0].Attribute) != tt.at {
				t.Fatalf("want one error on %s, got %v", tt.at, diagText(resp.Diagnostics))
			}
			d := resp.Diagnostics[0]
			if d.Summary != "Unable to Create Instance" {
				t.Errorf("summary %q", d.Summary)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Detail, w) {
					t.Errorf("detail does not say %q:\n%s", w, d.Detail)
				}
			}
		})
	}
}

func TestChangingOnlyWaitForIsAnInPlaceUpdateThatRestartsNothing(t *testing.T) {
	prior := existing("Running", nil)
	config := merge(configOf(prior), map[string]tftypes.Value{"wait_for": waitForValue(t, map[string]tftypes.Value{"console": str("^up$")}, nil)})
	resp := plan(t, prior, config)
	if len(resp.Diagnostics) != 0 || len(resp.RequiresReplace) != 0 {
		t.Fatalf("diagnostics %v, replace on %v", diagText(resp.Diagnostics), resp.RequiresReplace)
	}
	typ := resourceType(t, protocolServer(t))
	// The runtime attributes stay known: nothing boots.
	expectPlanned(t, resp, typ, map[string]tftypes.Value{"state": str("Running"), "hypervisor": str("qemu")})
	var pr, nw instanceResourceModel
	pr.WaitFor, nw.WaitFor = nullWaitFor(), nonNullWaitFor(t)
	if !waitForChanged(&nw, &pr) || waitForChanged(&pr, &pr) {
		t.Fatal("waitForChanged does not tell a new wait_for")
	}
	s, d := waitSpec(context.Background(), nw.WaitFor)
	if d.HasError() || s == nil || s.Console != "^up$" || s.HTTP == nil || s.HTTP.Port != 80 || s.HTTP.Path != "" || s.HTTP.Status != 0 || s.Delay.String() != "2s" {
		t.Fatalf("spec %+v %+v, %v", s, s.HTTP, d)
	}
}

func nullWaitFor() types.Object { return types.ObjectNull(waitForAttrTypes) }

func nonNullWaitFor(t *testing.T) types.Object {
	t.Helper()
	http, d := types.ObjectValue(httpWaitAttrTypes, map[string]attr.Value{"port": types.Int64Value(80), "path": types.StringNull(), "status": types.Int64Null()})
	if d.HasError() {
		t.Fatal(d)
	}
	o, d := types.ObjectValue(waitForAttrTypes, map[string]attr.Value{"console": types.StringValue("^up$"), "tcp_port": types.Int64Null(),
		"http": http, "delay": types.StringValue("2s")})
	if d.HasError() {
		t.Fatal(d)
	}
	return o
}

// An import reads wait_for from the host: what it writes reads back as the same wait.
func TestWaitForReadFromTheHostReadsBackTheSame(t *testing.T) {
	for _, w := range []*instances.WaitSpec{
		{Console: "^up$"},
		{TCPPort: 8080, Delay: 90 * time.Second},
		{TCPPort: 8080, Delay: 90 * time.Second, DelayText: "90s"},
		{HTTP: &instances.HTTPWait{Port: 80}},
		{Console: "x", TCPPort: 1, HTTP: &instances.HTTPWait{Port: 8080, Path: "/healthz", Status: 204}, Delay: time.Second},
	} {
		o := waitForObject(w)
		back, d := waitSpec(context.Background(), o)
		if d.HasError() || back == nil || back.Console != w.Console || back.TCPPort != w.TCPPort || back.Delay != w.Delay ||
			(back.HTTP == nil) != (w.HTTP == nil) || (w.HTTP != nil && *back.HTTP != *w.HTTP) {
			t.Errorf("%+v read back as %+v (%v)", w, back, d)
		}
	}
	if o := waitForObject(nil); !o.IsNull() {
		t.Errorf("no wait reads as %v, want null", o)
	}
	// The delay comes back as it was written, so the plan after an import is empty; text that
	// does not say the same delay (a file edited by hand) gives way to the delay itself.
	for text, want := range map[string]string{"90s": "90s", "1m30s": "1m30s", "": "1m30s", "2m": "1m30s"} {
		o := waitForObject(&instances.WaitSpec{Delay: 90 * time.Second, DelayText: text})
		var w waitForModel
		if d := o.As(context.Background(), &w, basetypes.ObjectAsOptions{}); d.HasError() || w.Delay.ValueString() != want {
			t.Errorf("delay written as %q reads back as %v (%v), want %q", text, w.Delay, d, want)
		}
	}
	configured := types.ObjectValueMust(waitForAttrTypes, map[string]attr.Value{"console": types.StringNull(), "tcp_port": types.Int64Null(),
		"http": types.ObjectNull(httpWaitAttrTypes), "delay": types.StringValue("90s")})
	w, _ := waitSpec(context.Background(), configured)
	if w == nil || w.Delay != 90*time.Second || w.DelayText != "90s" {
		t.Errorf("a configured delay of 90s is %+v, want 1m30s with its text kept", w)
	}
}
