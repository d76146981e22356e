package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// The helpers here drive the provider through the plugin protocol, in process and without
// Terraform or a VM, so schema wiring (validators, plan modifiers, ModifyPlan) is tested as
// Terraform would exercise it.

func protocolServer(t *testing.T) tfprotov6.ProviderServer {
	t.Helper()
	s, err := providerserver.NewProtocol6WithError(New("test")())()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// resourceType is the object type of the hypeman_instance schema.
func resourceType(t *testing.T, s tfprotov6.ProviderServer) tftypes.Object {
	t.Helper()
	resp, err := s.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.Diagnostics {
		t.Fatalf("schema: %s: %s", d.Summary, d.Detail)
	}
	typ, ok := resp.ResourceSchemas["hypeman_instance"].ValueType().(tftypes.Object)
	if !ok {
		t.Fatal("hypeman_instance schema is not an object")
	}
	return typ
}

// object builds a value of typ from attrs; every attribute not given is null.
func object(typ tftypes.Object, attrs map[string]tftypes.Value) tftypes.Value {
	vals := make(map[string]tftypes.Value, len(typ.AttributeTypes))
	for name, at := range typ.AttributeTypes {
		if v, ok := attrs[name]; ok {
			vals[name] = v
		} else {
			vals[name] = tftypes.NewValue(at, nil)
		}
	}
	return tftypes.NewValue(typ, vals)
}

// merge returns base with attrs replaced, as Terraform proposes a new state from the prior one.
func merge(base, attrs map[string]tftypes.Value) map[string]tftypes.Value {
	out := make(map[string]tftypes.Value, len(base)+len(attrs))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range attrs {
		out[k] = v
	}
	return out
}

func dynamic(t *testing.T, typ tftypes.Object, v tftypes.Value) *tfprotov6.DynamicValue {
	t.Helper()
	dv, err := tfprotov6.NewDynamicValue(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return &dv
}

func str(s string) tftypes.Value { return tftypes.NewValue(tftypes.String, s) }

func strMap(m map[string]string) tftypes.Value {
	vals := make(map[string]tftypes.Value, len(m))
	for k, v := range m {
		vals[k] = str(v)
	}
	return tftypes.NewValue(tftypes.Map{ElementType: tftypes.String}, vals)
}

func strList(items ...string) tftypes.Value {
	vals := make([]tftypes.Value, len(items))
	for i, s := range items {
		vals[i] = str(s)
	}
	return tftypes.NewValue(tftypes.List{ElementType: tftypes.String}, vals)
}

// existing is the state of an instance as Read stores it.
func existing(state string, env map[string]string) map[string]tftypes.Value {
	return map[string]tftypes.Value{
		"id": str("01JD8X4ZQ6T7N5B2V3C9M0K1HA"), "name": str("web"), "image": str("alpine:3.20"),
		"vcpus": tftypes.NewValue(tftypes.Number, 1), "memory": str("512MiB"), "hotplug_memory": str("0"),
		"overlay_size": str("10GiB"), "env": strMap(env), "state": str(state),
		"image_digest": str("sha256:" + "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"),
		"hypervisor":   str("qemu"), "console_log": str("/var/lib/hypeman/guests/01JD8X4ZQ6T7N5B2V3C9M0K1HA/logs/console.log"),
		"snapshot_bytes": tftypes.NewValue(tftypes.Number, 0),
		// Terraform sends a list block it was given none of as an empty list.
		"volume": tftypes.NewValue(tftypes.List{ElementType: mountType.TerraformType(context.Background())}, []tftypes.Value{}),
	}
}

// configOf keeps only what a configuration sets (the arguments), dropping what Read computed.
func configOf(state map[string]tftypes.Value) map[string]tftypes.Value {
	out := map[string]tftypes.Value{}
	for _, k := range []string{"name", "image", "vcpus", "max_vcpus", "memory", "max_memory", "hotplug_memory", "overlay_size", "entrypoint", "cmd", "env", "workdir", "state", "network", "volume"} {
		if v, ok := state[k]; ok {
			out[k] = v
		}
	}
	return out
}

// plan runs PlanResourceChange for an existing instance whose configuration becomes config, on a
// provider that is not configured.
func plan(t *testing.T, prior, config map[string]tftypes.Value) *tfprotov6.PlanResourceChangeResponse {
	t.Helper()
	return planOn(t, protocolServer(t), prior, config)
}

// planOn runs PlanResourceChange on s; a nil prior plans a create.
func planOn(t *testing.T, s tfprotov6.ProviderServer, prior, config map[string]tftypes.Value) *tfprotov6.PlanResourceChangeResponse {
	t.Helper()
	typ := resourceType(t, s)
	priorState := tftypes.NewValue(typ, nil)
	if prior != nil {
		priorState = object(typ, prior)
	}
	resp, err := s.PlanResourceChange(context.Background(), &tfprotov6.PlanResourceChangeRequest{
		TypeName:         "hypeman_instance",
		PriorState:       dynamic(t, typ, priorState),
		ProposedNewState: dynamic(t, typ, object(typ, merge(prior, config))),
		Config:           dynamic(t, typ, object(typ, config)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// providerType is the object type of the provider's configuration.
func providerType(t *testing.T, s tfprotov6.ProviderServer) tftypes.Object {
	t.Helper()
	resp, err := s.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	typ, ok := resp.Provider.ValueType().(tftypes.Object)
	if !ok {
		t.Fatal("the provider schema is not an object")
	}
	return typ
}

// configuredServer is a provider configured with attrs, as Terraform configures it before a plan.
// Configuring only looks at the settings' paths on the host (a missing default kernel warns).
func configuredServer(t *testing.T, attrs map[string]tftypes.Value) tfprotov6.ProviderServer {
	t.Helper()
	s := protocolServer(t)
	typ := providerType(t, s)
	resp, err := s.ConfigureProvider(context.Background(), &tfprotov6.ConfigureProviderRequest{
		Config: dynamic(t, typ, object(typ, merge(map[string]tftypes.Value{"accelerator": str("tcg")}, attrs))),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.Diagnostics {
		if d.Severity == tfprotov6.DiagnosticSeverityError {
			t.Fatalf("configure: %s: %s", d.Summary, d.Detail)
		}
	}
	return s
}

// networkValue is a value of the named network object of typ (the provider's block or the
// instance's attribute) with attrs set and the rest null.
func networkValue(typ tftypes.Object, attrs map[string]tftypes.Value) tftypes.Value {
	nt, _ := typ.AttributeTypes["network"].(tftypes.Object)
	if attrs == nil {
		return tftypes.NewValue(nt, nil)
	}
	return object(nt, attrs)
}

// plannedAttr decodes one attribute of the planned state.
func plannedAttr(t *testing.T, resp *tfprotov6.PlanResourceChangeResponse, typ tftypes.Object, name string) tftypes.Value {
	t.Helper()
	v, err := resp.PlannedState.Unmarshal(typ)
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]tftypes.Value
	if err := v.As(&attrs); err != nil {
		t.Fatal(err)
	}
	return attrs[name]
}

// expectPlanned checks attributes of the planned state; a zero Value wants unknown.
func expectPlanned(t *testing.T, resp *tfprotov6.PlanResourceChangeResponse, typ tftypes.Object, want map[string]tftypes.Value) {
	t.Helper()
	for name, w := range want {
		got := plannedAttr(t, resp, typ, name)
		switch {
		case w.Type() == nil && got.IsKnown():
			t.Errorf("%s planned %v, want unknown", name, got)
		case w.Type() != nil && !got.Equal(w):
			t.Errorf("%s planned %v, want %v", name, got, w)
		}
	}
}
