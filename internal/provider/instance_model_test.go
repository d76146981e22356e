package provider

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

func sampleInstance() *instances.Instance {
	return &instances.Instance{
		ID: "01JD8X4ZQ6T7N5B2V3C9M0K1HA", Name: "web", Image: "alpine:3.20", ImageDigest: "sha256:abc",
		VCPUs: 2, MaxVCPUs: 4, Memory: 512 * units.MiB, Hotplug: 256 * units.MiB, OverlaySize: 10 * units.GiB,
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo $A"}, Env: map[string]string{"A": "1"}, Workdir: "/srv",
		Hypervisor: "qemu", HypervisorVersion: "7.2.15", Accelerator: "tcg", KernelRelease: "6.1.0-28-amd64",
		State: instances.Running, PID: 4242,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), StartedAt: time.Date(2026, 1, 2, 3, 4, 9, 0, time.UTC),
		IPAddress: "10.100.0.2", MACAddress: "02:00:0a:64:00:02", TapDevice: "hm4zq6t7n5b2v3",
		Dir: "/var/lib/hypeman/guests/01JD8X4ZQ6T7N5B2V3C9M0K1HA", ConsoleLog: "/var/lib/hypeman/guests/01JD8X4ZQ6T7N5B2V3C9M0K1HA/logs/console.log",
	}
}

func TestFillThenSpecGivesBackTheInstanceConfiguration(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		modify func(*instances.Instance)
	}{
		{"everything set", func(*instances.Instance) {}},
		{"image defaults (nil program)", func(i *instances.Instance) { i.Entrypoint, i.Cmd, i.Env, i.Workdir = nil, nil, nil, "" }},
		{"explicitly empty entrypoint and env", func(i *instances.Instance) { i.Entrypoint, i.Env = []string{}, map[string]string{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst := sampleInstance()
			tt.modify(inst)
			var m instanceModel
			if d := m.fill(ctx, inst); d.HasError() {
				t.Fatal(d)
			}
			spec, d := m.spec(ctx)
			if d.HasError() {
				t.Fatal(d)
			}
			want := instances.Spec{
				Name: inst.Name, Image: inst.Image, VCPUs: inst.VCPUs, MaxVCPUs: inst.MaxVCPUs, Memory: inst.Memory, Hotplug: inst.Hotplug,
				OverlaySize: inst.OverlaySize, Entrypoint: inst.Entrypoint, Cmd: inst.Cmd, Env: inst.Env, Workdir: inst.Workdir,
				Hypervisor: inst.Hypervisor,
			}
			if !reflect.DeepEqual(spec, want) {
				t.Errorf("spec = %#v\nwant   %#v", spec, want)
			}
		})
	}
}

func TestFillWritesObservedStateAndNullsWhatDoesNotApply(t *testing.T) {
	ctx := context.Background()
	t.Run("running", func(t *testing.T) {
		var m instanceModel
		m.fill(ctx, sampleInstance())
		checks := map[string][2]any{
			"state":          {m.State, types.StringValue("Running")},
			"memory":         {m.Memory, NewSizeValue(512 * units.MiB)},
			"hotplug_memory": {m.HotplugMemory, NewSizeValue(256 * units.MiB)},
			"pid":            {m.PID, types.Int64Value(4242)},
			"created_at":     {m.CreatedAt, types.StringValue("2026-01-02T03:04:05Z")},
			"started_at":     {m.StartedAt, types.StringValue("2026-01-02T03:04:09Z")},
			"snapshot_bytes": {m.SnapshotBytes, types.Int64Value(0)},
			"state_reason":   {m.StateReason, types.StringNull()},
			"ip_address":     {m.IPAddress, types.StringValue("10.100.0.2")},
			"mac_address":    {m.MACAddress, types.StringValue("02:00:0a:64:00:02")},
			"tap_device":     {m.TapDevice, types.StringValue("hm4zq6t7n5b2v3")},
		}
		for name, c := range checks {
			if !reflect.DeepEqual(c[0], c[1]) {
				t.Errorf("%s = %v, want %v", name, c[0], c[1])
			}
		}
	})
	t.Run("standby", func(t *testing.T) {
		inst := sampleInstance()
		inst.State, inst.PID, inst.StartedAt, inst.SnapshotBytes = instances.Standby, 0, time.Time{}, 27_000_000
		var m instanceModel
		m.fill(ctx, inst)
		if !m.PID.IsNull() || !m.StartedAt.IsNull() {
			t.Errorf("pid %v and started_at %v must be null without a VMM", m.PID, m.StartedAt)
		}
		if m.SnapshotBytes.ValueInt64() != 27_000_000 {
			t.Errorf("snapshot_bytes = %v", m.SnapshotBytes)
		}
	})
	t.Run("no network interface", func(t *testing.T) {
		inst := sampleInstance()
		inst.IPAddress, inst.MACAddress, inst.TapDevice = "", "", ""
		var m instanceModel
		m.fill(ctx, inst)
		if !m.IPAddress.IsNull() || !m.MACAddress.IsNull() || !m.TapDevice.IsNull() {
			t.Errorf("ip_address %v mac_address %v tap_device %v: want all null", m.IPAddress, m.MACAddress, m.TapDevice)
		}
	})
	t.Run("unknown state keeps its reason", func(t *testing.T) {
		inst := sampleInstance()
		inst.State, inst.StateReason = instances.Unknown, "the qemu process (pid 4242) did not report its state"
		var m instanceModel
		m.fill(ctx, inst)
		if m.State.ValueString() != "Unknown" || m.StateReason.ValueString() != inst.StateReason {
			t.Errorf("state %v reason %v", m.State, m.StateReason)
		}
	})
	t.Run("null program stays null", func(t *testing.T) {
		inst := sampleInstance()
		inst.Entrypoint, inst.Cmd, inst.Env, inst.Workdir = nil, nil, nil, ""
		var m instanceModel
		m.fill(ctx, inst)
		if !m.Entrypoint.IsNull() || !m.Cmd.IsNull() || !m.Env.IsNull() || !m.Workdir.IsNull() {
			t.Errorf("entrypoint %v cmd %v env %v workdir %v: want all null", m.Entrypoint, m.Cmd, m.Env, m.Workdir)
		}
	})
}

func TestProgramChangeIsDetectedPerAttribute(t *testing.T) {
	ctx := context.Background()
	base := func() instanceModel {
		var m instanceModel
		m.fill(ctx, sampleInstance())
		return m
	}
	tests := []struct {
		name   string
		modify func(*instanceModel)
		want   []string
	}{
		{"nothing", func(*instanceModel) {}, nil},
		{"state only", func(m *instanceModel) { m.State = types.StringValue("Standby") }, nil},
		{"env", func(m *instanceModel) {
			m.Env = types.MapValueMust(types.StringType, map[string]attr.Value{"A": types.StringValue("2")})
		}, []string{"env"}},
		{"workdir and cmd", func(m *instanceModel) {
			m.Workdir = types.StringValue("/tmp")
			m.Cmd = types.ListNull(types.StringType)
		}, []string{"cmd", "workdir"}},
		{"unknown entrypoint counts as a change", func(m *instanceModel) { m.Entrypoint = types.ListUnknown(types.StringType) }, []string{"entrypoint"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base(), base()
			tt.modify(&b)
			if got := changedProgramAttrs(&b, &a); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("changed = %v, want %v", got, tt.want)
			}
			if programChanged(&b, &a) != (len(tt.want) > 0) {
				t.Errorf("programChanged disagrees with changedProgramAttrs")
			}
		})
	}
}

func TestUpdateLeavesStandbyBeforeRestartingAndEntersItLast(t *testing.T) {
	tests := []struct {
		name       string
		target     instances.State
		newProgram bool
		newImage   bool
		want       []string
	}{
		{"state only", instances.Paused, false, false, []string{"move to Paused"}},
		{"program while running", instances.Running, true, false, []string{"leave Standby", "restart with the new program or size", "move to Running"}},
		{"program and standby", instances.Standby, true, true, []string{"restart with the new program", "move to Standby"}},
		{"program while stopped", instances.Stopped, true, false, []string{"move to Stopped", "restart with the new program", "move to Stopped"}},
		{"image spelling and standby", instances.Standby, false, true, []string{"update in place (image spelling, peer groups, live memory)", "move to Standby"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range updateSteps(nil, "id", tt.target, instances.Spec{}, tt.newProgram, tt.newImage) {
				got = append(got, s.what)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("steps = %v, want %v", got, tt.want)
			}
		})
	}
}

// Read stores the instance only when the host reports something new: equal must see any field.
func TestModelEqualSeesEveryAttribute(t *testing.T) {
	ctx := context.Background()
	var base instanceModel
	if d := base.fill(ctx, sampleInstance()); d.HasError() {
		t.Fatal(d)
	}
	same := base
	if !base.equal(&same) {
		t.Fatal("a copy is not equal")
	}
	v := reflect.ValueOf(&base).Elem()
	for i := range v.NumField() {
		other := base
		f := reflect.ValueOf(&other).Elem().Field(i)
		var unknown attr.Value
		switch f.Interface().(type) {
		case types.String:
			unknown = types.StringUnknown()
		case types.Int64:
			unknown = types.Int64Unknown()
		case types.List:
			unknown = types.ListUnknown(types.StringType)
		case types.Map:
			unknown = types.MapUnknown(types.StringType)
		case SizeValue:
			unknown = SizeValue{StringValue: types.StringUnknown()}
		default:
			t.Fatalf("field %s: type %T not covered", v.Type().Field(i).Name, f.Interface())
		}
		f.Set(reflect.ValueOf(unknown))
		if base.equal(&other) {
			t.Errorf("a change of %s is not seen", v.Type().Field(i).Name)
		}
	}
}
