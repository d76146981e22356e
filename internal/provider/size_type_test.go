package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
)

func size(s string) SizeValue { return SizeValue{StringValue: basetypes.NewStringValue(s)} }

func TestSizesAreEqualWhenTheyMeanTheSameBytes(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1GB", "1024MiB", true},
		{"1GiB", "1G", true},
		{"512MiB", "0.5GiB", true},
		{"10GiB", "10737418240", true},
		{"0", "0B", true},
		{"1GiB", "1000MiB", false},
		{"512MiB", "513MiB", false},
		{"lots", "lots", false}, // not a size: never equal, so the validator's error is what the user sees
		{"512MiB", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+" vs "+tt.b, func(t *testing.T) {
			got, diags := size(tt.a).StringSemanticEquals(context.Background(), size(tt.b))
			if diags.HasError() {
				t.Fatal(diags)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSizeIsNotSemanticallyEqualToAPlainString(t *testing.T) {
	got, _ := size("1GiB").StringSemanticEquals(context.Background(), basetypes.NewStringValue("1GiB"))
	if got {
		t.Error("a plain string value compared equal to a size")
	}
}

func TestNewSizeValueWritesTheLargestExactUnit(t *testing.T) {
	for bytes, want := range map[int64]string{536870912: "512MiB", 10 << 30: "10GiB", 0: "0", 1000: "1000B"} {
		if got := NewSizeValue(bytes).ValueString(); got != want {
			t.Errorf("NewSizeValue(%d) = %q, want %q", bytes, got, want)
		}
	}
}

func TestSizeTypeRoundTripsThroughTerraformValues(t *testing.T) {
	ctx := context.Background()
	tv, err := size("1GB").ToTerraformValue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := SizeType{}.ValueFromTerraform(ctx, tv)
	if err != nil {
		t.Fatal(err)
	}
	sv, ok := v.(SizeValue)
	if !ok || sv.ValueString() != "1GB" {
		t.Fatalf("got %#v", v)
	}
	if !sv.Type(ctx).Equal(SizeType{}) {
		t.Error("the value does not report SizeType")
	}
}

func TestSizePlanModifierKeepsThePriorSpellingOnlyForTheSameSize(t *testing.T) {
	tests := []struct {
		name        string
		state, plan types.String
		wantPlanned types.String
	}{
		{"same size, new spelling", types.StringValue("512MiB"), types.StringValue("0.5GiB"), types.StringValue("512MiB")},
		{"different size", types.StringValue("512MiB"), types.StringValue("1GiB"), types.StringValue("1GiB")},
		{"create: no prior state", types.StringNull(), types.StringValue("1GB"), types.StringValue("1GB")},
		{"unknown plan", types.StringValue("512MiB"), types.StringUnknown(), types.StringUnknown()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := planmodifier.StringRequest{Path: path.Root("memory"), StateValue: tt.state, PlanValue: tt.plan, ConfigValue: tt.plan}
			resp := &planmodifier.StringResponse{PlanValue: tt.plan}
			sizeKeepsStateSpelling{}.PlanModifyString(context.Background(), req, resp)
			if !resp.PlanValue.Equal(tt.wantPlanned) {
				t.Errorf("planned %v, want %v", resp.PlanValue, tt.wantPlanned)
			}
		})
	}
}
