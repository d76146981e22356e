package provider

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// instanceModel is one instance as Terraform sees it: what the user sets and what the host
// reports. The resource and the hypeman_instance data source share it.
type instanceModel struct {
	ID            types.String `tfsdk:"id"`
	Name          types.String `tfsdk:"name"`
	Image         types.String `tfsdk:"image"`
	VCPUs         types.Int64  `tfsdk:"vcpus"`
	MaxVCPUs      types.Int64  `tfsdk:"max_vcpus"`
	Memory        SizeValue    `tfsdk:"memory"`
	MaxMemory     SizeValue    `tfsdk:"max_memory"`
	HotplugMemory SizeValue    `tfsdk:"hotplug_memory"`
	OverlaySize   SizeValue    `tfsdk:"overlay_size"`
	Entrypoint    types.List   `tfsdk:"entrypoint"`
	Cmd           types.List   `tfsdk:"cmd"`
	Env           types.Map    `tfsdk:"env"`
	Workdir       types.String `tfsdk:"workdir"`
	State         types.String `tfsdk:"state"`

	ImageDigest       types.String `tfsdk:"image_digest"`
	Hypervisor        types.String `tfsdk:"hypervisor"`
	HypervisorVersion types.String `tfsdk:"hypervisor_version"`
	StateReason       types.String `tfsdk:"state_reason"`
	ExitCode          types.Int64  `tfsdk:"exit_code"`
	PID               types.Int64  `tfsdk:"pid"`
	CreatedAt         types.String `tfsdk:"created_at"`
	StartedAt         types.String `tfsdk:"started_at"`
	Directory         types.String `tfsdk:"directory"`
	ConsoleLog        types.String `tfsdk:"console_log"`
	SnapshotBytes     types.Int64  `tfsdk:"snapshot_bytes"`
	IPAddress         types.String `tfsdk:"ip_address"`
	MACAddress        types.String `tfsdk:"mac_address"`
	TapDevice         types.String `tfsdk:"tap_device"`
}

// bootModel is what only the hypeman_instance data source adds: how the guest ran at its last
// boot. The resource leaves it out: every instance a provider boots has the same (the provider's
// accelerator, its kernel), and each attribute of a resource costs every plan of every instance.
type bootModel struct {
	Accelerator   types.String `tfsdk:"accelerator"`
	KernelRelease types.String `tfsdk:"kernel_release"`
}

func (b *bootModel) fillBoot(inst *instances.Instance) {
	b.Accelerator = optionalString(inst.Accelerator)
	b.KernelRelease = optionalString(inst.KernelRelease)
}

// instanceDataModel is the hypeman_instance data source's view of an instance.
type instanceDataModel struct {
	instanceModel
	bootModel
}

// instanceResourceModel adds what only the resource has.
type instanceResourceModel struct {
	instanceModel
	// Network is what the configuration asks for; the manager cannot tell a network left out from
	// one set to its defaults, so Read keeps it as it was.
	Network types.Object `tfsdk:"network"`
	// Volumes are the volume blocks, filled from Instance.Volumes.
	Volumes types.List `tfsdk:"volume"`
	// WaitFor is what the configuration asks for, kept as it was, as Network is (instance_wait.go).
	WaitFor  types.Object   `tfsdk:"wait_for"`
	Timeouts timeouts.Value `tfsdk:"timeouts"`
	// DiscardSnapshot is write-only: it is read from the configuration and never stored.
	DiscardSnapshot types.Bool `tfsdk:"discard_snapshot"`
}

// equal reports whether every attribute of m equals o's (sizes by spelling, as the state stores them).
func (m *instanceModel) equal(o *instanceModel) bool {
	a, b := reflect.ValueOf(m).Elem(), reflect.ValueOf(o).Elem()
	for i := range a.NumField() {
		if !a.Field(i).Interface().(attr.Value).Equal(b.Field(i).Interface().(attr.Value)) {
			return false
		}
	}
	return true
}

// spec is the manager's view of the configured instance, network included.
func (m *instanceResourceModel) spec(ctx context.Context) (instances.Spec, diag.Diagnostics) {
	s, diags := m.instanceModel.spec(ctx)
	n, d := instanceNetwork(ctx, m.Network)
	diags.Append(d...)
	s.Network = n.spec()
	ms, _, d := mounts(ctx, m.Volumes)
	diags.Append(d...)
	s.Volumes = ms
	s.WaitFor, d = waitSpec(ctx, m.WaitFor)
	diags.Append(d...)
	return s, diags
}

// spec is the manager's view of the configured instance. Sizes have passed their validators.
func (m *instanceModel) spec(ctx context.Context) (instances.Spec, diag.Diagnostics) {
	var diags diag.Diagnostics
	s := instances.Spec{
		Name:     m.Name.ValueString(),
		Image:    m.Image.ValueString(),
		VCPUs:    int(m.VCPUs.ValueInt64()),
		MaxVCPUs: int(m.MaxVCPUs.ValueInt64()),
		Workdir:  m.Workdir.ValueString(),
		// Known once the instance exists; what changes live depends on its VMM (ResizeChanges).
		Hypervisor: m.Hypervisor.ValueString(),
	}
	for _, f := range []struct {
		attr string
		v    SizeValue
		dst  *int64
	}{{"memory", m.Memory, &s.Memory}, {"max_memory", m.MaxMemory, &s.MaxMemory}, {"hotplug_memory", m.HotplugMemory, &s.Hotplug}, {"overlay_size", m.OverlaySize, &s.OverlaySize}} {
		if f.v.IsNull() {
			continue // max_memory left out: the same as memory
		}
		n, err := f.v.Bytes()
		if err != nil {
			diags.AddAttributeError(path.Root(f.attr), "Invalid Size", err.Error())
			continue
		}
		*f.dst = n
	}
	diags.Append(stringList(ctx, m.Entrypoint, &s.Entrypoint)...)
	diags.Append(stringList(ctx, m.Cmd, &s.Cmd)...)
	if !m.Env.IsNull() {
		s.Env = map[string]string{}
		diags.Append(m.Env.ElementsAs(ctx, &s.Env, false)...)
	}
	return s, diags
}

// stringList keeps the difference between null (the image's default: nil) and an empty list.
func stringList(ctx context.Context, l types.List, dst *[]string) diag.Diagnostics {
	if l.IsNull() {
		*dst = nil
		return nil
	}
	*dst = []string{}
	return l.ElementsAs(ctx, dst, false)
}

// program is the part of the configuration that a restart in place can change.
func (m *instanceModel) program() []attr.Value {
	return []attr.Value{m.Entrypoint, m.Cmd, m.Env, m.Workdir}
}

// programChanged reports whether entrypoint, cmd, env or workdir differ between two models.
func programChanged(a, b *instanceModel) bool {
	x, y := a.program(), b.program()
	for i := range x {
		if !x[i].Equal(y[i]) {
			return true
		}
	}
	return false
}

// changedProgramAttrs names the program attributes that differ, for messages.
func changedProgramAttrs(a, b *instanceModel) []string {
	names := []string{"entrypoint", "cmd", "env", "workdir"}
	x, y := a.program(), b.program()
	var out []string
	for i := range x {
		if !x[i].Equal(y[i]) {
			out = append(out, names[i])
		}
	}
	return out
}

// fill writes everything the manager reports about inst into m. Sizes are written in the
// provider's spelling; SizeValue's semantic equality keeps the user's when they mean the same.
func (m *instanceModel) fill(ctx context.Context, inst *instances.Instance) diag.Diagnostics {
	var diags diag.Diagnostics
	m.ID = types.StringValue(inst.ID)
	m.Name = types.StringValue(inst.Name)
	m.Image = types.StringValue(inst.Image)
	m.VCPUs = types.Int64Value(int64(inst.VCPUs))
	m.MaxVCPUs = types.Int64Null()
	if inst.MaxVCPUs > 0 {
		m.MaxVCPUs = types.Int64Value(int64(inst.MaxVCPUs))
	}
	m.Memory = NewSizeValue(inst.Memory)
	m.MaxMemory = SizeValue{StringValue: basetypes.NewStringNull()}
	if inst.MaxMemory > 0 {
		m.MaxMemory = NewSizeValue(inst.MaxMemory)
	}
	m.HotplugMemory = NewSizeValue(inst.Hotplug)
	m.OverlaySize = NewSizeValue(inst.OverlaySize)

	var d diag.Diagnostics
	m.Entrypoint, d = listValue(ctx, inst.Entrypoint)
	diags.Append(d...)
	m.Cmd, d = listValue(ctx, inst.Cmd)
	diags.Append(d...)
	if inst.Env == nil {
		m.Env = types.MapNull(types.StringType)
	} else {
		m.Env, d = types.MapValueFrom(ctx, types.StringType, inst.Env)
		diags.Append(d...)
	}
	m.Workdir = optionalString(inst.Workdir)
	m.State = types.StringValue(string(inst.State))

	m.ImageDigest = optionalString(inst.ImageDigest)
	m.Hypervisor = optionalString(inst.Hypervisor)
	m.HypervisorVersion = optionalString(inst.HypervisorVersion)
	m.StateReason = optionalString(inst.StateReason)
	m.ExitCode = types.Int64Null()
	if inst.ExitCode != nil {
		m.ExitCode = types.Int64Value(int64(*inst.ExitCode))
	}
	m.PID = types.Int64Null()
	if inst.PID > 0 {
		m.PID = types.Int64Value(int64(inst.PID))
	}
	m.CreatedAt = timestamp(inst.CreatedAt)
	m.StartedAt = timestamp(inst.StartedAt)
	m.Directory = optionalString(inst.Dir)
	m.ConsoleLog = optionalString(inst.ConsoleLog)
	m.SnapshotBytes = types.Int64Value(max(inst.SnapshotBytes, 0))
	m.IPAddress = optionalString(inst.IPAddress)
	m.MACAddress = optionalString(inst.MACAddress)
	m.TapDevice = optionalString(inst.TapDevice)
	return diags
}

func listValue(ctx context.Context, items []string) (types.List, diag.Diagnostics) {
	if items == nil {
		return types.ListNull(types.StringType), nil
	}
	return types.ListValueFrom(ctx, types.StringType, items)
}

func optionalString(s string) types.String {
	if s == "" {
		return types.StringNull()
	}
	return types.StringValue(s)
}

func timestamp(t time.Time) types.String {
	if t.IsZero() {
		return types.StringNull()
	}
	return types.StringValue(t.UTC().Format(time.RFC3339))
}

// describe names an instance in messages: "web (id 01J…)".
func describe(name, id string) string {
	switch {
	case name != "" && id != "":
		return fmt.Sprintf("%s (id %s)", name, id)
	case id != "":
		return "id " + id
	}
	return name
}
