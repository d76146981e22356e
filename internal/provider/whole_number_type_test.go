package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// vcpus has a type of its own only to read a fraction as a validation error: the model keeps
// types.Int64 for it, in the state and the plan as the resource writes them.
func TestVCPUsIsWrittenAndReadAsTheModelsInt64(t *testing.T) {
	ctx := context.Background()
	var sresp resource.SchemaResponse
	(&InstanceResource{}).Schema(ctx, resource.SchemaRequest{}, &sresp)
	m := instanceResourceModel{Network: types.ObjectNull(instanceNetworkAttrTypes), Volumes: types.ListNull(mountType), WaitFor: types.ObjectNull(waitForAttrTypes), Timeouts: timeouts.Value{Object: types.ObjectNull(timeoutsAttrTypes)}}
	if d := m.fill(ctx, sampleInstance()); d.HasError() {
		t.Fatal(d)
	}
	state := tfsdk.State{Schema: sresp.Schema, Raw: tftypes.NewValue(sresp.Schema.Type().TerraformType(ctx), nil)}
	if d := state.Set(ctx, &m); d.HasError() {
		t.Fatalf("set the state: %v", d)
	}
	if d := state.SetAttribute(ctx, path.Root("vcpus"), types.Int64Value(3)); d.HasError() {
		t.Fatalf("set vcpus: %v", d)
	}
	var back instanceResourceModel
	if d := state.Get(ctx, &back); d.HasError() {
		t.Fatalf("read the state: %v", d)
	}
	if back.VCPUs != types.Int64Value(3) {
		t.Errorf("vcpus read back as %v, want 3", back.VCPUs)
	}
}
