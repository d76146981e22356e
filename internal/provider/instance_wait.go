package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// waitForModel is hypeman_instance's wait_for attribute.
type waitForModel struct {
	Console types.String `tfsdk:"console"`
	TCPPort types.Int64  `tfsdk:"tcp_port"`
	HTTP    types.Object `tfsdk:"http"`
	Delay   types.String `tfsdk:"delay"`
}

// httpWaitModel is wait_for.http.
type httpWaitModel struct {
	Port   types.Int64  `tfsdk:"port"`
	Path   types.String `tfsdk:"path"`
	Status types.Int64  `tfsdk:"status"`
}

var (
	httpWaitAttrTypes = map[string]attr.Type{"port": types.Int64Type, "path": types.StringType, "status": types.Int64Type}
	waitForAttrTypes  = map[string]attr.Type{"console": types.StringType, "tcp_port": types.Int64Type,
		"http": types.ObjectType{AttrTypes: httpWaitAttrTypes}, "delay": types.StringType}
)

// waitForOutcome is what a failed wait leaves, said once for the attribute and the guide.
const waitForOutcome = "A wait that fails (its time runs out, or the program exits meanwhile) fails the operation with " +
	"what it was waiting for, how long it waited and the console's last lines, and leaves the instance `Stopped` (powered off " +
	"gracefully; `state_reason` says why), so the next plan shows `\"Stopped\" -> \"Running\"` and `terraform apply` tries " +
	"again. A restore whose wait runs out goes back to `Standby` instead, keeping the guest's memory, and the next apply " +
	"restores it and waits again. A failed create keeps the instance for its console log: Terraform marks it tainted, and " +
	"the next apply replaces it."

func waitForAttribute() schema.Attribute {
	return schema.SingleNestedAttribute{
		MarkdownDescription: "What the instance must show before a create, a start (`Stopped` → `Running`), a restart in place " +
			"or a restore to `Running` (not to `Paused`) succeeds, within the operation's timeout (`timeouts`). Each condition " +
			"set must hold, in the order listed; `delay` comes after them. Without it an operation succeeds once the program has " +
			"started and run for " + instances.ProgramSettle.String() + ". " + waitForOutcome + " Changing `wait_for` alone " +
			"changes nothing on the VM and restarts nothing: it applies from the next boot or restore.",
		Optional: true,
		Attributes: map[string]schema.Attribute{
			"console": schema.StringAttribute{
				MarkdownDescription: "A regular expression (Go's [RE2 syntax](https://github.com/google/re2/wiki/Syntax)) that a " +
					"line the guest prints on its serial console must match, such as `\"^listening on :8080$\"`. Only the lines of " +
					"this boot count: the console history of earlier boots does not. After a restore, the lines of the boot the " +
					"snapshot was taken from count (it is the same boot).",
				Optional:   true,
				Validators: []validator.String{checkString{"Invalid Wait Condition", "must be " + instances.WaitConsoleRule, instances.ValidateWaitConsole}},
			},
			"tcp_port": schema.Int64Attribute{
				MarkdownDescription: "A port of the instance's `ip_address` that must accept a TCP connection, " + instances.WaitPortRule +
					". It is dialled from the host (over SSH, from the remote host), so it needs a network interface: without one the plan fails.",
				Optional:   true,
				Validators: []validator.Int64{waitPort("wait_for.tcp_port")},
			},
			"http": schema.SingleNestedAttribute{
				MarkdownDescription: "An HTTP GET of `http://<ip_address>:<port><path>`, from the host, that must answer with " +
					"`status`; redirects are not followed. Needs a network interface, as `tcp_port` does.",
				Optional: true,
				Attributes: map[string]schema.Attribute{
					"port": schema.Int64Attribute{
						MarkdownDescription: "The port, " + instances.WaitPortRule + ".",
						Required:            true,
						Validators:          []validator.Int64{waitPort("wait_for.http.port")},
					},
					"path": schema.StringAttribute{
						MarkdownDescription: "The path, " + instances.WaitPathRule + ". Defaults to `/`.",
						Optional:            true,
						Validators:          []validator.String{checkString{"Invalid Wait Condition", "must be " + instances.WaitPathRule, instances.ValidateWaitPath}},
					},
					"status": schema.Int64Attribute{
						MarkdownDescription: fmt.Sprintf("The status to wait for, %s. Defaults to `%d`.", instances.WaitStatusRule, instances.DefaultWaitStatus),
						Optional:            true,
						Validators:          []validator.Int64{checkInt64{"Invalid Wait Condition", "must be " + instances.WaitStatusRule, instances.ValidateWaitStatus}},
					},
				},
			},
			"delay": schema.StringAttribute{
				MarkdownDescription: "A fixed settle time after the other conditions held, " + instances.WaitDelayRule +
					"; the program must keep running through it.",
				Optional:   true,
				Validators: []validator.String{checkString{"Invalid Wait Condition", "must be " + instances.WaitDelayRule, checkWaitDelay}},
			},
		},
	}
}

func waitPort(field string) validator.Int64 {
	return checkInt64{"Invalid Wait Condition", "must be " + instances.WaitPortRule, func(n int64) error { return instances.ValidateWaitPort(field, n) }}
}

// checkWaitDelay reads a delay as a Go duration and checks it by the manager's rule.
func checkWaitDelay(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return &instances.FieldError{Field: "wait_for.delay", Value: s, Allowed: instances.WaitDelayRule}
	}
	return instances.ValidateWaitDelay(d)
}

// waitSpec is the manager's view of wait_for; nil when it is null. Values have passed their validators.
func waitSpec(ctx context.Context, o types.Object) (*instances.WaitSpec, diag.Diagnostics) {
	if o.IsNull() || o.IsUnknown() {
		return nil, nil
	}
	var w waitForModel
	diags := o.As(ctx, &w, basetypes.ObjectAsOptions{})
	if diags.HasError() {
		return nil, diags
	}
	s := &instances.WaitSpec{Console: w.Console.ValueString(), TCPPort: int(w.TCPPort.ValueInt64())}
	if !w.Delay.IsNull() {
		d, err := time.ParseDuration(w.Delay.ValueString())
		if err != nil {
			diags.AddAttributeError(path.Root("wait_for").AtName("delay"), "Invalid Wait Condition", checkWaitDelay(w.Delay.ValueString()).Error())
			return nil, diags
		}
		s.Delay, s.DelayText = d, w.Delay.ValueString()
	}
	if !w.HTTP.IsNull() && !w.HTTP.IsUnknown() {
		var h httpWaitModel
		diags.Append(w.HTTP.As(ctx, &h, basetypes.ObjectAsOptions{})...)
		s.HTTP = &instances.HTTPWait{Port: int(h.Port.ValueInt64()), Path: h.Path.ValueString(), Status: int(h.Status.ValueInt64())}
	}
	return s, diags
}

// planWaitFor refuses, at plan time, a wait that dials the instance's address when the instance
// will have none: the provider has no network block, or the instance sets network.enabled = false.
func (r *InstanceResource) planWaitFor(ctx context.Context, p *instancePlan, resp *resource.ModifyPlanResponse) {
	plan := &p.plan
	w, diags := waitSpec(ctx, plan.WaitFor)
	resp.Diagnostics.Append(diags...)
	field := w.NeedsNetwork()
	if field == "" || r.manager == nil {
		return
	}
	n, diags := instanceNetwork(ctx, plan.Network)
	resp.Diagnostics.Append(diags...)
	if plan.Network.IsUnknown() || (n != nil && n.Enabled.IsUnknown()) {
		return
	}
	why, fix := "", ""
	switch {
	case n != nil && !n.wantsInterface():
		why, fix = "the instance has network = { enabled = false }, so it has no address to dial", "remove enabled = false from network"
	case r.manager.Addresses() == nil:
		why, fix = "the provider has no network block, so the instance has no address to dial",
			"add a network block to the provider configuration (provider \"hypeman\" { network {} })"
	default:
		return
	}
	action, left := "Update", "nothing was changed"
	if p.creating() {
		action, left = "Create", "nothing: the instance was not created"
	}
	err := fmt.Errorf("%s is set, but %s", field, why)
	addFailure(&resp.Diagnostics, "Instance", action, describe(plan.Name.ValueString(), plan.ID.ValueString()), err, left,
		fmt.Sprintf("Either %s, or wait for a line on the console instead (wait_for = { console = \"<regular expression>\" }).", fix),
		path.Root("wait_for").AtName(field[len("wait_for."):]))
}

// waitForChanged reports whether the configured wait_for differs from the state's: an update
// that only stores it.
func waitForChanged(plan, prior *instanceResourceModel) bool {
	return !plan.WaitFor.Equal(prior.WaitFor)
}

// notReadyLeft ends the "Left in" of a create whose instance did not become ready.
const notReadyLeft = ". The instance is kept for its console log and Terraform marks it tainted: the next apply replaces it " +
	"(terraform untaint keeps it instead)"

// waitForObject is the attribute for what an instance on the host waits for: an import's view.
func waitForObject(w *instances.WaitSpec) types.Object {
	if w.Empty() {
		return types.ObjectNull(waitForAttrTypes)
	}
	optInt := func(n int) types.Int64 {
		if n == 0 {
			return types.Int64Null()
		}
		return types.Int64Value(int64(n))
	}
	http := types.ObjectNull(httpWaitAttrTypes)
	if h := w.HTTP; h != nil {
		http = types.ObjectValueMust(httpWaitAttrTypes, map[string]attr.Value{"port": types.Int64Value(int64(h.Port)),
			"path": optionalString(h.Path), "status": optInt(h.Status)})
	}
	delay := types.StringNull()
	if w.Delay > 0 {
		delay = types.StringValue(shortDuration(w.Delay))
		if d, err := time.ParseDuration(w.DelayText); err == nil && d == w.Delay {
			delay = types.StringValue(w.DelayText) // the spelling the configuration has
		}
	}
	return types.ObjectValueMust(waitForAttrTypes, map[string]attr.Value{"console": optionalString(w.Console),
		"tcp_port": optInt(w.TCPPort), "http": http, "delay": delay})
}
