package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

var _ validator.String = checkString{}

// checkString turns one of the manager's own checks into a plan-time validator, so a plan rejects
// exactly what the manager would reject at apply, with the manager's wording.
type checkString struct {
	summary     string
	description string
	check       func(string) error
}

func (v checkString) Description(context.Context) string { return v.description }

func (v checkString) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v checkString) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := v.check(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, v.summary, err.Error())
	}
}

func validName() validator.String {
	return checkString{"Invalid Instance Name", "must be " + instances.NameRule, instances.ValidateName}
}

func validImage() validator.String {
	return checkString{"Invalid Image Reference", "must be " + images.Allowed, images.ValidateRef}
}

func validEnvKey() validator.String {
	return checkString{"Invalid Environment Variable Name", "must be a letter or '_' followed by letters, digits, '_', '.' or '-'", instances.ValidateEnvKey}
}

func validState() validator.String {
	return checkString{"Invalid Instance State", "must be one of " + settableStates(), checkState}
}

func validWorkdir() validator.String {
	return checkString{"Invalid Working Directory", "must be an absolute path", instances.ValidateWorkdir}
}

// checkState accepts the settable states in their canonical spelling only: Read reports "Running",
// so a configured "running" would never match what the provider reads back.
func checkState(s string) error {
	st, err := instances.ParseState(s)
	if err != nil {
		return &instances.FieldError{Field: "state", Value: s, Allowed: "one of " + settableStates()}
	}
	if string(st) != s {
		return &instances.FieldError{Field: "state", Value: s, Allowed: fmt.Sprintf("write it as %q (one of %s)", st, settableStates())}
	}
	return nil
}

func settableStates() string {
	names := make([]string, len(instances.Settable))
	for i, s := range instances.Settable {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// sizeRule is one size attribute, checked by the manager's own rule for it (instances.SizeRules).
type sizeRule struct {
	field   string
	allowed string
}

func ruleFor(field string) sizeRule { return sizeRule{field, instances.SizeRules[field].Allowed} }

var (
	memoryRule  = ruleFor("memory")
	hotplugRule = ruleFor("hotplug_memory")
	overlayRule = ruleFor("overlay_size")
)

// check parses s and applies the manager's rule; errors quote s as the user wrote it.
func (r sizeRule) check(s string) error {
	n, err := units.Parse(s)
	if err != nil {
		return &instances.FieldError{Field: r.field, Value: s, Allowed: units.Allowed}
	}
	if instances.CheckSize(r.field, n) != nil {
		return &instances.FieldError{Field: r.field, Value: s, Allowed: r.allowed}
	}
	return nil
}

func validSize(r sizeRule) validator.String {
	return checkString{"Invalid Size", "must be " + r.allowed, r.check}
}
