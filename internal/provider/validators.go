package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

var (
	_ validator.String                    = checkString{}
	_ validator.Int64                     = checkInt64{}
	_ validator.List                      = programList{}
	_ validator.String                    = envValue{}
	_ validator.String                    = timeout{}
	_ resource.ResourceWithValidateConfig = &InstanceResource{}
)

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
	memoryRule    = ruleFor("memory")
	hotplugRule   = ruleFor("hotplug_memory")
	maxMemoryRule = ruleFor("max_memory")
	overlayRule   = ruleFor("overlay_size")
)

// check parses s and applies the manager's rule; errors quote s as the user wrote it.
func (r sizeRule) check(s string) error {
	n, err := units.Parse(s)
	if err != nil {
		return &instances.FieldError{Field: r.field, Value: s, Allowed: r.allowed + ", written as " + units.Allowed}
	}
	if instances.CheckSize(r.field, n) != nil {
		return &instances.FieldError{Field: r.field, Value: s, Allowed: r.allowed}
	}
	return nil
}

func validSize(r sizeRule) validator.String {
	return checkString{"Invalid Size", "must be " + r.allowed, r.check}
}

// vcpusType reads vcpus; a number with a fraction fails validation in the manager's words.
var vcpusType = wholeNumberType{allowed: instances.VCPUsRule}

// checkInt64 is checkString for a whole number.
type checkInt64 struct {
	summary     string
	description string
	check       func(int64) error
}

func (v checkInt64) Description(context.Context) string { return v.description }

func (v checkInt64) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v checkInt64) ValidateInt64(_ context.Context, req validator.Int64Request, resp *validator.Int64Response) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := v.check(req.ConfigValue.ValueInt64()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, v.summary, err.Error())
	}
}

func validVCPUs() validator.Int64 {
	return checkInt64{"Invalid Number", "must be " + instances.VCPUsRule, instances.CheckVCPUs}
}

// maxVCPUsType reads max_vcpus as vcpusType reads vcpus.
var maxVCPUsType = wholeNumberType{allowed: instances.MaxVCPUsRule}

// validMaxVCPUs checks max_vcpus alone; ValidateConfig checks it against vcpus.
func validMaxVCPUs() validator.Int64 {
	return checkInt64{"Invalid Number", "must be " + instances.MaxVCPUsRule, func(n int64) error { return instances.CheckMaxVCPUs(n, 0) }}
}

// programList checks entrypoint or cmd by the manager's rules: no item holds a NUL byte, and an
// entrypoint names a program. Unknown items are left to apply.
type programList struct {
	entrypoint bool
}

func (v programList) Description(context.Context) string {
	if v.entrypoint {
		return "a non-empty list whose first item names the program; no item holds a NUL byte"
	}
	return "no item holds a NUL byte"
}

func (v programList) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v programList) ValidateList(_ context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	args, known := []string{}, true
	for i, e := range req.ConfigValue.Elements() {
		s, ok := e.(types.String)
		if !ok || s.IsUnknown() {
			known = false
			continue
		}
		if s.IsNull() {
			resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Invalid Program",
				fmt.Sprintf("%s is null; allowed: text (write \"\" for an empty argument)", req.Path.AtListIndex(i)))
			known = false
			continue
		}
		args = append(args, s.ValueString())
		if err := instances.ValidateArg(req.Path.AtListIndex(i).String(), s.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Invalid Program", err.Error())
		}
	}
	if !v.entrypoint || !known {
		return
	}
	if err := instances.ValidateEntrypoint(args); err != nil {
		at := req.Path
		if len(args) > 0 {
			at = at.AtListIndex(0)
		}
		resp.Diagnostics.AddAttributeError(at, "Invalid Program", err.Error())
	}
}

// envValue checks one value of env (under mapvalidator.ValueStringsAre, which gives its key in
// the path) by the manager's rule; the value itself is never shown.
type envValue struct{}

func (envValue) Description(context.Context) string { return "must not hold a NUL byte" }

func (v envValue) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (envValue) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	key, _ := req.Path.Steps().LastStep()
	k, ok := key.(path.PathStepElementKeyString)
	if !ok {
		return
	}
	if err := instances.ValidateEnvValue(string(k), req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Environment Variable", err.Error())
	}
}

// timeout checks one attribute of timeouts. Terraform cannot point at an attribute inside an
// object value, so the message names it.
type timeout struct {
	def time.Duration
}

func (v timeout) Description(context.Context) string {
	return fmt.Sprintf("a positive duration such as \"30s\" or \"20m\" (default %s)", shortDuration(v.def))
}

func (v timeout) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v timeout) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		err := &instances.FieldError{Field: req.Path.String(), Value: s, Allowed: fmt.Sprintf(
			`a positive duration: a number and a unit (h, m, s, ms), such as "30s", "20m" or "1h30m"; leave it out for the default %s`, shortDuration(v.def))}
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Timeout", err.Error())
	}
}

// shortDuration writes 10m0s as 10m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func validID() validator.String {
	return checkString{"Invalid Instance ID", "must be " + instances.IDRule, instances.ValidateID}
}

// notEmpty refuses "" for a setting whose absence means its default: Terraform would otherwise
// take the default silently. leaveOut says how to get that default instead.
func notEmpty(setting, leaveOut string) validator.String {
	return checkString{"Invalid Provider Setting", "must not be empty", func(s string) error {
		if s == "" {
			return &instances.FieldError{Field: setting, Value: s, Allowed: "a value that is not empty; " + leaveOut}
		}
		return nil
	}}
}

// ValidateConfig checks max_vcpus against vcpus, memory, max_memory and hotplug_memory together,
// and what only the host can tell: that the guest's memory fits in the host's. Terraform validates
// once before the provider is configured (no manager: no host to ask) and again while planning,
// with it.
func (r *InstanceResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	validateVCPURange(ctx, req, resp)
	sizes := map[string]int64{"memory": instances.DefaultMemory, "hotplug_memory": 0, "max_memory": 0}
	for name := range sizes {
		var v SizeValue
		if diags := req.Config.GetAttribute(ctx, path.Root(name), &v); diags.HasError() || v.IsUnknown() {
			return
		}
		if v.IsNull() {
			continue
		}
		n, err := v.Bytes()
		if err != nil {
			return // the attribute's validator says why
		}
		sizes[name] = n
	}
	ctx, cancel := context.WithTimeout(ctx, hostLookTimeout)
	defer cancel()
	err := instances.CheckMemoryRange(sizes["memory"], sizes["max_memory"], sizes["hotplug_memory"])
	if err == nil && r.manager == nil {
		return
	}
	if err == nil {
		err = r.manager.CheckMemoryFits(ctx, sizes["memory"], sizes["hotplug_memory"])
	}
	if err == nil && sizes["max_memory"] > sizes["memory"] {
		if err = r.manager.CheckMemoryFits(ctx, sizes["max_memory"], 0); err != nil {
			var fe *instances.FieldError
			if errors.As(err, &fe) {
				err = &instances.FieldError{Field: "max_memory", Value: fe.Value, Allowed: fe.Allowed}
			}
		}
	}
	if err != nil {
		at := path.Root("memory")
		var fe *instances.FieldError
		if errors.As(err, &fe) {
			at = path.Root(fe.Field)
		}
		resp.Diagnostics.AddAttributeError(at, "Invalid Size", err.Error())
	}
}

// validateVCPURange checks max_vcpus against vcpus (1 when left out) once both are known.
func validateVCPURange(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var vcpus, maxVCPUs types.Int64
	if req.Config.GetAttribute(ctx, path.Root("vcpus"), &vcpus).HasError() || req.Config.GetAttribute(ctx, path.Root("max_vcpus"), &maxVCPUs).HasError() ||
		vcpus.IsUnknown() || maxVCPUs.IsUnknown() || maxVCPUs.IsNull() {
		return
	}
	n := int64(1)
	if !vcpus.IsNull() {
		n = vcpus.ValueInt64()
	}
	if instances.CheckVCPUs(n) != nil || instances.CheckMaxVCPUs(maxVCPUs.ValueInt64(), 0) != nil {
		return // the attributes' validators say why
	}
	if err := instances.CheckMaxVCPUs(maxVCPUs.ValueInt64(), n); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("max_vcpus"), "Invalid Number", err.Error())
	}
}

// hostLookTimeout bounds what validation asks of the host, so that a host that does not answer
// does not hold up a plan.
const hostLookTimeout = 5 * time.Second
