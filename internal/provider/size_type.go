package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

var (
	_ basetypes.StringTypable                    = SizeType{}
	_ basetypes.StringValuableWithSemanticEquals = SizeValue{}
	_ planmodifier.String                        = sizeKeepsStateSpelling{}
)

// SizeType is a byte size written as a string ("512MiB", "1GB"). Two spellings of the same number
// of bytes are equal, so rewriting "1GB" as "1024MiB" never shows a diff.
type SizeType struct {
	basetypes.StringType
}

func (t SizeType) String() string { return "provider.SizeType" }

func (t SizeType) Equal(o attr.Type) bool {
	other, ok := o.(SizeType)
	return ok && t.StringType.Equal(other.StringType)
}

func (t SizeType) ValueType(context.Context) attr.Value { return SizeValue{} }

func (t SizeType) ValueFromString(_ context.Context, in basetypes.StringValue) (basetypes.StringValuable, diag.Diagnostics) {
	return SizeValue{StringValue: in}, nil
}

func (t SizeType) ValueFromTerraform(ctx context.Context, in tftypes.Value) (attr.Value, error) {
	v, err := t.StringType.ValueFromTerraform(ctx, in)
	if err != nil {
		return nil, err
	}
	s, ok := v.(basetypes.StringValue)
	if !ok {
		return nil, fmt.Errorf("unexpected value type %T", v)
	}
	return SizeValue{StringValue: s}, nil
}

// SizeValue is a value of SizeType.
type SizeValue struct {
	basetypes.StringValue
}

// NewSizeValue formats a number of bytes the way the provider writes sizes back ("512MiB"; "0"
// for none, as hotplug_memory's default is written).
func NewSizeValue(bytes int64) SizeValue {
	s := units.Format(bytes)
	if bytes == 0 {
		s = "0"
	}
	return SizeValue{StringValue: basetypes.NewStringValue(s)}
}

func (v SizeValue) Type(context.Context) attr.Type { return SizeType{} }

func (v SizeValue) Equal(o attr.Value) bool {
	other, ok := o.(SizeValue)
	return ok && v.StringValue.Equal(other.StringValue)
}

// Bytes parses the size; validators have already rejected what does not parse.
func (v SizeValue) Bytes() (int64, error) { return units.Parse(v.ValueString()) }

// StringSemanticEquals reports whether both spell the same number of bytes.
func (v SizeValue) StringSemanticEquals(_ context.Context, other basetypes.StringValuable) (bool, diag.Diagnostics) {
	o, ok := other.(SizeValue)
	if !ok {
		return false, nil
	}
	return sameSize(v.ValueString(), o.ValueString()), nil
}

func sameSize(a, b string) bool {
	x, errA := units.Parse(a)
	y, errB := units.Parse(b)
	return errA == nil && errB == nil && x == y
}

// sizeKeepsStateSpelling plans the prior value when the configuration spells the same size
// differently. Semantic equality only runs on apply and refresh; without this the plan would show
// "512MiB" -> "0.5GiB", and RequiresReplace would replace the instance for it.
type sizeKeepsStateSpelling struct{}

func (sizeKeepsStateSpelling) Description(context.Context) string {
	return "A size written differently but meaning the same number of bytes is not a change."
}

func (m sizeKeepsStateSpelling) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (sizeKeepsStateSpelling) PlanModifyString(_ context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if req.StateValue.IsNull() || req.StateValue.IsUnknown() || req.PlanValue.IsNull() || req.PlanValue.IsUnknown() {
		return
	}
	if sameSize(req.StateValue.ValueString(), req.PlanValue.ValueString()) {
		resp.PlanValue = req.StateValue
	}
}
