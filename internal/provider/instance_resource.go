package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

var (
	_ resource.Resource                = &InstanceResource{}
	_ resource.ResourceWithConfigure   = &InstanceResource{}
	_ resource.ResourceWithImportState = &InstanceResource{}
	_ resource.ResourceWithModifyPlan  = &InstanceResource{}
)

// InstanceResource is hypeman_instance: thin CRUD over the instance manager.
type InstanceResource struct {
	manager *instances.Manager
}

// NewInstanceResource is the resource's factory for the provider.
func NewInstanceResource() resource.Resource { return &InstanceResource{} }

func (r *InstanceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_instance"
}

func (r *InstanceResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	pd := providerDataFrom(req.ProviderData, &resp.Diagnostics)
	r.manager = pd.manager
}

// read fills m with the instance as the host reports it. exists is false only when the manager
// positively says there is no such instance; any other error is a diagnostic.
// vols, when not nil, gets the volume blocks the instance has.
func (r *InstanceResource) read(ctx context.Context, action, idOrName string, m *instanceModel, vols *types.List) (exists bool, diags diag.Diagnostics) {
	inst, err := r.manager.Get(ctx, idOrName)
	if errors.Is(err, instances.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		name := m.Name.ValueString()
		if name == "" && m.ID.IsNull() {
			name = idOrName // an import: nothing is known but what the user typed
		}
		failure{action: action, name: name, id: m.ID.ValueString(), err: err,
			left: "unknown: the instance could not be read"}.add(ctx, r.manager, &diags)
		return false, diags
	}
	diags.Append(m.fill(ctx, inst)...)
	if vols != nil {
		*vols = mountList(inst.Volumes, *vols)
	}
	tflog.Debug(ctx, "read instance", map[string]any{"id": inst.ID, "name": inst.Name, "state": string(inst.State), "pid": inst.PID})
	return true, diags
}

func (r *InstanceResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan instanceResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	timeout, d := plan.Timeouts.Create(ctx, defaultCreateTimeout)
	resp.Diagnostics.Append(d...)
	spec, d := plan.spec(ctx)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	target := instances.State(plan.State.ValueString())
	tflog.Info(ctx, "creating instance", map[string]any{"name": spec.Name, "image": spec.Image, "state": string(target), "timeout": timeout.String()})
	inst, err := r.manager.Create(ctx, spec, target)
	if inst != nil && errors.Is(err, instances.ErrNotReady) {
		// Kept, Stopped, for its console: stored with the error, Terraform taints it (instance_wait.go).
		failure{action: "Create", name: spec.Name, id: inst.ID, err: err, left: observed(inst) + notReadyLeft}.add(ctx, r.manager, &resp.Diagnostics)
		r.readBack(ctx, "Create", inst.ID, "", &plan, &resp.State, &resp.Diagnostics)
		return
	}
	if err != nil {
		failure{action: "Create", name: spec.Name, err: err,
			left: "nothing: a failed create removes everything it made on the host"}.add(ctx, r.manager, &resp.Diagnostics)
		return
	}
	if !r.readBack(ctx, "Create", inst.ID, target, &plan, &resp.State, &resp.Diagnostics) {
		// The instance exists; keep it in the state with what Create reported, so it is not orphaned.
		resp.Diagnostics.Append(plan.fill(ctx, inst)...)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
}

func (r *InstanceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state instanceResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	timeout, d := state.Timeouts.Read(ctx, defaultReadTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = instances.WithProbeTimeout(ctx, readProbe(state.Timeouts, timeout))

	inState.remember(state.ID.ValueString())
	prior, priorVolumes := state.instanceModel, state.Volumes
	exists, d := r.read(ctx, "Read", state.ID.ValueString(), &state.instanceModel, &state.Volumes)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !exists {
		tflog.Warn(ctx, "instance is gone from the host; removing it from the state", map[string]any{"id": state.ID.ValueString(), "name": state.Name.ValueString()})
		warnOrphaned(ctx, r.manager, state.ID.ValueString(), state.Name.ValueString(), &resp.Diagnostics)
		resp.State.RemoveResource(ctx)
		return
	}
	if state.instanceModel.equal(&prior) && state.Volumes.Equal(priorVolumes) {
		return // resp.State is the prior state already
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// readProbe is how long a live VMM gets to answer a Read: the whole read when timeouts.read is
// set, else 0, which leaves instances.DefaultProbeTimeout. An import, and a state written before
// the attribute was set, have no timeouts: they get the default.
func readProbe(t timeouts.Value, read time.Duration) time.Duration {
	if t.IsNull() || t.IsUnknown() {
		return 0
	}
	if v, ok := t.Attributes()["read"]; !ok || v.IsNull() || v.IsUnknown() {
		return 0
	}
	return read
}

// step is one manager call of an update, named for messages.
type step struct {
	what string
	run  func(context.Context) error
}

func (r *InstanceResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, prior instanceResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	timeout, d := plan.Timeouts.Update(ctx, defaultUpdateTimeout)
	resp.Diagnostics.Append(d...)
	spec, d := plan.spec(ctx)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := prior.ID.ValueString()
	target := instances.State(plan.State.ValueString())
	// New volumes, and sizes that need the guest shut down, are applied like a new program: Update
	// restarts a Running or Paused guest in place. A size changed live is applied in place.
	resize, err := resizeOf(ctx, &plan.instanceModel, &prior.instanceModel)
	if err != nil {
		failure{action: "Update", name: spec.Name, id: prior.ID.ValueString(), err: err}.add(ctx, r.manager, &resp.Diagnostics)
		return
	}
	newProgram := programChanged(&plan.instanceModel, &prior.instanceModel) || mountsChanged(&plan, &prior) || resize.restart
	inPlace := !plan.Image.Equal(prior.Image) || peerGroupsChanged(ctx, plan.Network, prior.Network) || waitForChanged(&plan, &prior) ||
		len(resize.changes) > 0 || resize.respelled
	opts, d := stateOptions(ctx, req.Config)
	resp.Diagnostics.Append(d...)
	for _, s := range updateSteps(r.manager, id, target, spec, newProgram, inPlace, opts...) {
		tflog.Info(ctx, s.what, map[string]any{"id": id, "name": spec.Name, "from": prior.State.ValueString(), "to": string(target)})
		if err := s.run(ctx); err != nil {
			failure{action: "Update", name: spec.Name, id: id, err: fmt.Errorf("%s: %w", s.what, err)}.add(ctx, r.manager, &resp.Diagnostics)
			// Record what the host has now, so the next plan starts from the truth.
			if !r.readBack(ctx, "Update", id, "", &plan, &resp.State, &resp.Diagnostics) {
				resp.Diagnostics.Append(resp.State.Set(ctx, &prior)...)
			}
			return
		}
	}
	if !r.readBack(ctx, "Update", id, target, &plan, &resp.State, &resp.Diagnostics) {
		resp.Diagnostics.Append(resp.State.Set(ctx, &prior)...)
	}
}

// updateSteps orders the manager calls of an update. A new program is applied by a restart, which
// a Standby instance cannot take: leaving Standby comes first, and entering it comes last. What
// changes without a restart (inPlace: a new spelling of the image, as the plan replaces the
// instance for another image; new peer groups) is applied by Update alone.
func updateSteps(m *instances.Manager, id string, target instances.State, spec instances.Spec, newProgram, inPlace bool, opts ...instances.StateOption) []step {
	setState := step{"move to " + string(target), func(ctx context.Context) error {
		_, err := m.SetState(ctx, id, target, opts...)
		return err
	}}
	update := func(what string) step {
		return step{what, func(ctx context.Context) error {
			_, err := m.Update(ctx, id, spec)
			return err
		}}
	}
	switch {
	case newProgram && target == instances.Standby:
		return []step{update("restart with the new program"), setState}
	case newProgram && target == instances.Stopped:
		return []step{setState, update("restart with the new program"), setState} // Update then only stores the program
	case newProgram:
		// Only Standby must be left first, as Update cannot restart it. Update brings a Running or
		// Paused guest back as it was, and a Stopped one boots with the new program in the last
		// move, never with the old one, which may be why the program is changed.
		leaveStandby := step{"leave Standby", func(ctx context.Context) error {
			inst, err := m.Get(ctx, id)
			if err != nil || inst.State != instances.Standby {
				return err
			}
			_, err = m.SetState(ctx, id, target, opts...)
			return err
		}}
		return []step{leaveStandby, update("restart with the new program or size"), setState}
	case inPlace:
		return []step{update("update in place (image spelling, peer groups, live memory)"), setState}
	}
	return []step{setState}
}

// readBack stores the instance as the host reports it after Create or Update, starting from the
// plan so that timeouts and the user's size spellings stay. When want is set and the instance is
// in another state, that is an error rather than an inconsistent result for Terraform. It reports
// whether it stored anything; it runs even when the operation's deadline has passed.
func (r *InstanceResource) readBack(ctx context.Context, action, id string, want instances.State, plan *instanceResourceModel, state stateSetter, diags *diag.Diagnostics) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leftStateTimeout)
	defer cancel()
	exists, d := r.read(ctx, action, id, &plan.instanceModel, &plan.Volumes)
	diags.Append(d...)
	if d.HasError() {
		return false
	}
	if !exists {
		failure{action: action, name: plan.Name.ValueString(), id: id, err: errors.New("the instance disappeared from the host right after the operation"),
			left: "the instance does not exist on the host"}.add(ctx, r.manager, diags)
		return false
	}
	diags.Append(state.Set(ctx, plan)...)
	if got := instances.State(plan.State.ValueString()); want != "" && got != want {
		failure{action: action, name: plan.Name.ValueString(), id: id, err: notReached(got, want)}.add(ctx, r.manager, diags)
	}
	return true
}

// stateSetter is what CreateResponse.State and UpdateResponse.State have in common.
type stateSetter interface {
	Set(ctx context.Context, val any) diag.Diagnostics
}

// notReached explains an instance that is not in the planned state once the operation is done.
func notReached(got, want instances.State) error {
	err := fmt.Errorf("the instance is %s after the operation, but the plan asked for %s", got, want)
	if got == instances.Stopped && (want == instances.Running || want == instances.Paused) {
		err = fmt.Errorf("%w: the guest powered off right after its program started, so the program most likely exited "+
			"(the console log's last lines show its output and exit code). An instance runs as long as its program does: "+
			"run a long-lived program, or set state = \"Stopped\"", err)
	}
	return err
}

func (r *InstanceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state instanceResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	timeout, d := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id, name := state.ID.ValueString(), state.Name.ValueString()
	tflog.Info(ctx, "deleting instance", map[string]any{"id": id, "name": name})
	err := r.manager.Delete(ctx, id)
	if errors.Is(err, instances.ErrNotFound) {
		return // already gone: nothing left to delete
	}
	if err != nil {
		failure{action: "Delete", name: name, id: id, err: err}.add(ctx, r.manager, &resp.Diagnostics)
	}
}

// ImportState accepts an id or a name, and fills every attribute so the next plan is empty. An
// import knows no timeouts: it reads within the default, the VMM given DefaultProbeTimeout.
func (r *InstanceResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	ctx, cancel := context.WithTimeout(ctx, defaultReadTimeout)
	defer cancel()
	m := instanceResourceModel{Network: types.ObjectNull(instanceNetworkAttrTypes), Volumes: types.ListNull(mountType), WaitFor: types.ObjectNull(waitForAttrTypes), Timeouts: timeouts.Value{Object: types.ObjectNull(timeoutsAttrTypes)}}
	exists, d := r.read(ctx, "Import", req.ID, &m.instanceModel, &m.Volumes)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !exists {
		failure{action: "Import", name: req.ID,
			err:  fmt.Errorf("no instance has the id or name %q on this host (data_dir %s)", req.ID, r.manager.DataDir()),
			left: "nothing was changed"}.add(ctx, r.manager, &resp.Diagnostics)
		return
	}
	if inst, err := r.manager.Get(ctx, m.ID.ValueString()); err == nil {
		m.WaitFor = waitForObject(inst.WaitFor) // kept on the host, so the next plan is empty
	}
	tflog.Info(ctx, "imported instance", map[string]any{"id": m.ID.ValueString(), "name": m.Name.ValueString()})
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

var timeoutsAttrTypes = map[string]attr.Type{
	"create": types.StringType, "read": types.StringType, "update": types.StringType, "delete": types.StringType,
}

// ModifyPlan makes the plan tell the truth: each check is one call, kept in its own
// instance_plan_*.go file; a later check reads what an earlier one found or planned in p, and the
// plan is written once, at the end.
func (r *InstanceResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if planIsPriorState(req) {
		r.warnMissingVolumes(ctx, req, resp) // the one check that looks at the host, not at a change
		return                               // nothing changes: every other check looks at a change, and the framework's plan stands
	}
	p, ok := readPlan(ctx, req, resp)
	if !ok {
		return // a destroy, or a plan that cannot be read
	}
	defer p.write(ctx, resp)
	r.planNetwork(ctx, p, resp)
	r.planWaitFor(ctx, p, resp)
	r.planName(ctx, p, resp)
	r.planImage(ctx, p, resp)
	p.planReplace(ctx, resp)
	p.planChanges(ctx, resp)
	r.planVolumes(ctx, p, resp)
	p.planRuntime(resp)
	p.planUnresponsiveVMM(resp)
	p.planStandbyProgram(resp)
	p.planProgramExited(resp)
	p.planDiscardSnapshot(ctx, req.Config, resp)
}
