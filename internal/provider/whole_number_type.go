package provider

import (
	"context"
	"math/big"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/attr/xattr"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

var (
	_ basetypes.Int64Typable      = wholeNumberType{}
	_ xattr.ValidateableAttribute = notWholeNumber{}
)

// wholeNumberType is an Int64 attribute that reads a number with a fraction or out of int64's
// range (vcpus = 1.5) as a value whose validation names the attribute, the value and what is
// allowed; the framework's own Int64 fails the read with an error "to report to the provider
// developers" instead. Whole numbers read as types.Int64, so models keep types.Int64.
type wholeNumberType struct {
	basetypes.Int64Type
	allowed string
}

func (t wholeNumberType) String() string { return "provider.wholeNumberType" }

// Equal holds for types.Int64 too: every value this type holds in a model, a plan or a state is
// a types.Int64, and the framework checks those against the schema's type.
func (t wholeNumberType) Equal(o attr.Type) bool {
	switch o := o.(type) {
	case wholeNumberType:
		return o.allowed == t.allowed
	case basetypes.Int64Type:
		return true
	}
	return false
}

func (t wholeNumberType) ValueFromTerraform(ctx context.Context, in tftypes.Value) (attr.Value, error) {
	v, err := t.Int64Type.ValueFromTerraform(ctx, in)
	if err == nil {
		return v, nil
	}
	var f *big.Float
	if in.As(&f) != nil || f == nil {
		return nil, err
	}
	return notWholeNumber{Int64Value: basetypes.NewInt64Unknown(), number: f.Text('g', -1), typ: t}, nil
}

// notWholeNumber is a configured number that is no int64. It stands in for an unknown value so
// that no other validator reads it, and fails its own validation.
type notWholeNumber struct {
	basetypes.Int64Value
	number string
	typ    wholeNumberType
}

func (v notWholeNumber) Type(context.Context) attr.Type { return v.typ }

func (v notWholeNumber) ValidateAttribute(_ context.Context, req xattr.ValidateAttributeRequest, resp *xattr.ValidateAttributeResponse) {
	err := &instances.FieldError{Field: req.Path.String(), Value: v.number, Allowed: v.typ.allowed}
	resp.Diagnostics.AddAttributeError(req.Path, "Invalid Number", err.Error())
}
