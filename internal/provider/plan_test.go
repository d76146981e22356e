package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// terraform destroy plans the configuration before it destroys, and stops at any error in that
// plan: a new program for a Standby instance is a warning, and apply refuses it.
func TestNewProgramForStandbyInstanceWarnsAndFailsNoPlan(t *testing.T) {
	prior := existing("Standby", map[string]string{"GREETING": "one"})
	config := configOf(merge(prior, map[string]tftypes.Value{"env": strMap(map[string]string{"GREETING": "two"})}))
	resp := plan(t, prior, config)
	if len(resp.Diagnostics) != 1 {
		t.Fatalf("want one diagnostic, got %v", diagText(resp.Diagnostics))
	}
	d := resp.Diagnostics[0]
	if d.Severity != tfprotov6.DiagnosticSeverityWarning || d.Summary != "Apply Will Refuse This Change" {
		t.Errorf("got %v %q", d.Severity, d.Summary)
	}
	if d.Attribute == nil || d.Attribute.Steps()[0] != tftypes.AttributeName("env") {
		t.Errorf("diagnostic is on %v, want env", d.Attribute)
	}
	for _, want := range []string{"web (id 01JD8X4ZQ6T7N5B2V3C9M0K1HA)", "Standby", "change nothing", `state = "Running"`, "env"} {
		if !strings.Contains(d.Detail, want) {
			t.Errorf("detail does not mention %q:\n%s", want, d.Detail)
		}
	}
	if len(resp.RequiresReplace) != 0 {
		t.Errorf("replace on %v", resp.RequiresReplace)
	}
}

func TestNewProgramPlansWhenStandbyIsLeftOrNotInvolved(t *testing.T) {
	newEnv := map[string]tftypes.Value{"env": strMap(map[string]string{"GREETING": "two"})}
	tests := []struct {
		name         string
		prior, state string
	}{
		{"standby to running in the same change", "Standby", "Running"},
		{"running to standby (restart, then standby)", "Running", "Standby"},
		{"running stays running", "Running", "Running"},
		{"stopped stays stopped", "Stopped", "Stopped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prior := existing(tt.prior, map[string]string{"GREETING": "one"})
			config := configOf(merge(prior, merge(newEnv, map[string]tftypes.Value{"state": str(tt.state)})))
			resp := plan(t, prior, config)
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			if len(resp.RequiresReplace) != 0 {
				t.Errorf("a program or state change must not replace the instance; replace on %v", resp.RequiresReplace)
			}
		})
	}
}

func TestSizeSpelledDifferentlyIsNotAChange(t *testing.T) {
	tests := []struct {
		name        string
		attr, value string
		wantPlanned string
		wantReplace bool
	}{
		{"same memory in GiB", "memory", "0.5GiB", "512MiB", false},
		{"same memory in bytes", "memory", "536870912", "512MiB", false},
		{"same overlay in GB", "overlay_size", "10GB", "10GiB", false},
		{"same hotplug as 0B", "hotplug_memory", "0B", "0", false},
		{"another image", "image", "alpine:3.21", "alpine:3.21", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := protocolServer(t)
			typ := resourceType(t, s)
			prior := existing("Running", nil)
			resp := plan(t, prior, configOf(merge(prior, map[string]tftypes.Value{tt.attr: str(tt.value)})))
			expectReplaceWarning(t, resp, tt.wantReplace)
			var got string
			if err := plannedAttr(t, resp, typ, tt.attr).As(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.wantPlanned {
				t.Errorf("planned %s = %q, want %q", tt.attr, got, tt.wantPlanned)
			}
			replace := len(resp.RequiresReplace) > 0
			if replace != tt.wantReplace {
				t.Errorf("replace = %v (%v), want %v", replace, resp.RequiresReplace, tt.wantReplace)
			}
		})
	}
}

func TestHypervisorVersionStaysKnownUnlessTheGuestBootsAgain(t *testing.T) {
	tests := []struct {
		name         string
		prior, state string
		newProgram   bool
		wantKnown    bool
	}{
		{"standby", "Running", "Standby", false, true},
		{"restore", "Standby", "Running", false, true},
		{"pause", "Running", "Paused", false, true},
		{"stop", "Running", "Stopped", false, true},
		{"start", "Stopped", "Running", false, false},
		{"unresponsive VMM is restarted", "Unknown", "Running", false, false},
		{"restart for a new program", "Running", "Running", true, false},
		{"new program for a stopped instance", "Stopped", "Stopped", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := protocolServer(t)
			typ := resourceType(t, s)
			prior := merge(existing(tt.prior, map[string]string{"GREETING": "one"}), map[string]tftypes.Value{
				"hypervisor_version": str("7.2.15"),
			})
			change := map[string]tftypes.Value{"state": str(tt.state)}
			if tt.newProgram {
				change["env"] = strMap(map[string]string{"GREETING": "two"})
			}
			resp := plan(t, prior, configOf(merge(prior, change)))
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			for _, name := range []string{"hypervisor_version"} {
				v := plannedAttr(t, resp, typ, name)
				if v.IsKnown() != tt.wantKnown {
					t.Errorf("%s known = %v, want %v", name, v.IsKnown(), tt.wantKnown)
				}
				if tt.wantKnown && !v.Equal(prior[name]) {
					t.Errorf("%s planned %v, want the prior %v", name, v, prior[name])
				}
			}
		})
	}
}

func TestStateChangePlansTheRuntimeAttributesItCanKnow(t *testing.T) {
	const pid, started = 4242, "2026-01-02T03:04:09Z"
	unknown := tftypes.Value{}
	tests := []struct {
		name         string
		prior, state string
		newProgram   bool
		pid          tftypes.Value // the zero Value means unknown
		startedAt    tftypes.Value
		snapshot     tftypes.Value
	}{
		{"pause keeps the VMM", "Running", "Paused", false, tftypes.NewValue(tftypes.Number, pid), str(started), tftypes.NewValue(tftypes.Number, 0)},
		{"standby stops the VMM", "Running", "Standby", false, tftypes.NewValue(tftypes.Number, nil), tftypes.NewValue(tftypes.String, nil), unknown},
		{"restore starts a VMM", "Standby", "Running", false, unknown, unknown, tftypes.NewValue(tftypes.Number, 0)},
		{"stop", "Running", "Stopped", false, tftypes.NewValue(tftypes.Number, nil), tftypes.NewValue(tftypes.String, nil), tftypes.NewValue(tftypes.Number, 0)},
		{"restart for a new program", "Running", "Running", true, unknown, unknown, tftypes.NewValue(tftypes.Number, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := protocolServer(t)
			typ := resourceType(t, s)
			runtime := map[string]tftypes.Value{}
			if tt.prior == "Running" {
				runtime = map[string]tftypes.Value{"pid": tftypes.NewValue(tftypes.Number, pid), "started_at": str(started)}
			}
			prior := merge(existing(tt.prior, map[string]string{"GREETING": "one"}), runtime)
			change := map[string]tftypes.Value{"state": str(tt.state)}
			if tt.newProgram {
				change["env"] = strMap(map[string]string{"GREETING": "two"})
			}
			resp := plan(t, prior, configOf(merge(prior, change)))
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			expectPlanned(t, resp, typ, map[string]tftypes.Value{"pid": tt.pid, "started_at": tt.startedAt, "snapshot_bytes": tt.snapshot})
		})
	}
}

func TestPlanWarnsWhenApplyWouldKillAnUnresponsiveVMM(t *testing.T) {
	const reason = "the qemu process (pid 4242) is alive but its control socket does not answer: context deadline exceeded"
	hung := map[string]tftypes.Value{"pid": tftypes.NewValue(tftypes.Number, 4242), "state_reason": str(reason)}
	tests := []struct {
		name, prior, state string
		runtime, change    map[string]tftypes.Value
		warn               bool
	}{
		{"to Running", "Unknown", "Running", hung, nil, true},
		{"to Paused", "Unknown", "Paused", hung, nil, true},
		{"to Standby", "Unknown", "Standby", hung, nil, true},
		{"to Stopped", "Unknown", "Stopped", hung, nil, true},
		{"with a new program", "Unknown", "Running", hung, map[string]tftypes.Value{"env": strMap(map[string]string{"GREETING": "two"})}, true},
		{"no VMM runs (an interrupted create)", "Unknown", "Running", map[string]tftypes.Value{"state_reason": str("the instance was never completely created")}, nil, false},
		{"a VMM that answers", "Running", "Stopped", map[string]tftypes.Value{"pid": tftypes.NewValue(tftypes.Number, 4242)}, nil, false},
		{"a replacement (its own warning)", "Unknown", "Running", hung, map[string]tftypes.Value{"image": str("alpine:3.21")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prior := merge(existing(tt.prior, map[string]string{"GREETING": "one"}), tt.runtime)
			resp := plan(t, prior, configOf(merge(prior, merge(tt.change, map[string]tftypes.Value{"state": str(tt.state)}))))
			var warnings []*tfprotov6.Diagnostic
			for _, d := range resp.Diagnostics {
				if d.Severity != tfprotov6.DiagnosticSeverityWarning {
					t.Fatalf("unexpected diagnostic: %v", diagText(resp.Diagnostics))
				}
				warnings = append(warnings, d)
			}
			kill := slices.DeleteFunc(slices.Clone(warnings), func(d *tfprotov6.Diagnostic) bool { return d.Summary != "Apply Will Kill an Unresponsive VMM" })
			if !tt.warn {
				if len(kill) != 0 {
					t.Fatalf("unexpected warnings: %v", diagText(resp.Diagnostics))
				}
				return
			}
			if len(warnings) != 1 || len(kill) != 1 {
				t.Fatalf("want one warning, got %v", diagText(resp.Diagnostics))
			}
			d := warnings[0]
			if d.Attribute == nil || d.Attribute.Steps()[0] != tftypes.AttributeName("state") {
				t.Errorf("warning is on %v, want state", d.Attribute)
			}
			for _, want := range []string{"web (id 01JD8X4ZQ6T7N5B2V3C9M0K1HA)",
				"the VMM of web does not answer; apply will kill it: the guest's memory is lost, its overlay is kept",
				reason, "timeouts = { read"} {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("warning does not say %q:\n%s", want, d.Detail)
				}
			}
		})
	}
}

func TestRespellingASizePlansNoChangeInAnyState(t *testing.T) {
	for _, state := range []string{"Running", "Paused", "Standby", "Stopped"} {
		t.Run(state, func(t *testing.T) {
			s := protocolServer(t)
			typ := resourceType(t, s)
			prior := existing(state, map[string]string{"GREETING": "one"})
			if state == "Running" || state == "Paused" {
				prior = merge(prior, map[string]tftypes.Value{"pid": tftypes.NewValue(tftypes.Number, 4242), "started_at": str("2026-01-02T03:04:09Z")})
			}
			prior = merge(prior, map[string]tftypes.Value{"hypervisor_version": str("7.2.15")})
			config := configOf(merge(prior, map[string]tftypes.Value{"memory": str("0.5GiB"), "overlay_size": str("10240MiB"), "hotplug_memory": str("0B")}))
			resp := planOn(t, s, prior, config)
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			planned, err := resp.PlannedState.Unmarshal(typ)
			if err != nil {
				t.Fatal(err)
			}
			if want := object(typ, prior); !planned.Equal(want) {
				diffs, _ := want.Diff(planned)
				for _, d := range diffs {
					t.Errorf("%s: prior %v, planned %v", d.Path, d.Value1, d.Value2)
				}
			}
		})
	}
}

// expectReplaceWarning checks that a plan has no error, and the replacement warning only when it
// replaces the instance.
func expectReplaceWarning(t *testing.T, resp *tfprotov6.PlanResourceChangeResponse, replace bool) {
	t.Helper()
	warned := false
	for _, d := range resp.Diagnostics {
		switch {
		case d.Severity == tfprotov6.DiagnosticSeverityWarning && d.Summary == "Instance Will Be Replaced":
			warned = true
		default:
			t.Errorf("unexpected diagnostic: %s: %s", d.Summary, d.Detail)
		}
	}
	if warned != replace {
		t.Errorf("replacement warning = %v, want %v (replace on %v)", warned, replace, resp.RequiresReplace)
	}
}

func TestReplacementWarnsWhatItDeletes(t *testing.T) {
	const snapshot = 48 * 1024 * 1024
	tests := []struct {
		state      string
		change     map[string]tftypes.Value
		attr       string
		lost, kept []string
	}{
		{"Standby", map[string]tftypes.Value{"image": str("alpine:3.21")}, "image",
			[]string{"overlay disk", "Standby snapshot (48.0 MiB on disk)", "guest's memory"}, []string{"running guest"}},
		{"Running", map[string]tftypes.Value{"image": str("alpine:3.21")}, "image", []string{"image: replacement, the overlay is lost", "overlay disk", "running guest's memory"}, []string{"snapshot"}},
		{"Paused", map[string]tftypes.Value{"image": str("alpine:3.21")}, "image", []string{"overlay disk", "running guest's memory"}, nil},
		{"Stopped", map[string]tftypes.Value{"image": str("alpine:3.21")}, "image", []string{"overlay disk"}, []string{"guest's memory", "snapshot"}},
		{"Running", map[string]tftypes.Value{"name": str("web2")}, "name", []string{"name: replacement, the overlay is lost", "overlay disk"}, nil},
		// A new program or size needs no restart in Standby when the instance is replaced anyway.
		{"Standby", map[string]tftypes.Value{"name": str("web2"), "memory": str("1GiB"), "env": strMap(map[string]string{"GREETING": "two"})}, "name",
			[]string{"Standby snapshot"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.state+" "+tt.attr, func(t *testing.T) {
			prior := existing(tt.state, map[string]string{"GREETING": "one"})
			if tt.state == "Standby" {
				prior["snapshot_bytes"] = tftypes.NewValue(tftypes.Number, snapshot)
			}
			resp := plan(t, prior, configOf(merge(prior, tt.change)))
			expectReplaceWarning(t, resp, true)
			if !slices.ContainsFunc(resp.RequiresReplace, func(p *tftypes.AttributePath) bool {
				return p.Equal(tftypes.NewAttributePath().WithAttributeName(tt.attr))
			}) {
				t.Errorf("replace on %v, want %s", resp.RequiresReplace, tt.attr)
			}
			if len(resp.Diagnostics) == 0 {
				return
			}
			d := resp.Diagnostics[0]
			if d.Attribute == nil || !d.Attribute.Equal(tftypes.NewAttributePath().WithAttributeName(tt.attr)) {
				t.Errorf("the warning is on %v, want %s", d.Attribute, tt.attr)
			}
			for _, want := range append([]string{"web (id 01JD8X4ZQ6T7N5B2V3C9M0K1HA)", "Changing " + tt.attr + " replaces the instance"}, tt.lost...) {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("the warning does not say %q:\n%s", want, d.Detail)
				}
			}
			for _, not := range tt.kept {
				if strings.Contains(d.Detail, not) {
					t.Errorf("the warning of a %s instance mentions %q:\n%s", tt.state, not, d.Detail)
				}
			}
		})
	}
}

func TestANewTimeoutOrSizeSpellingKeepsEveryComputedValue(t *testing.T) {
	s := protocolServer(t)
	typ := resourceType(t, s)
	prior := merge(existing("Standby", nil), map[string]tftypes.Value{
		"snapshot_bytes": tftypes.NewValue(tftypes.Number, 1<<20), "state_reason": str("what the guest last said"),
		"hypervisor_version": str("7.2.15"),
	})
	tt, _ := typ.AttributeTypes["timeouts"].(tftypes.Object)
	config := configOf(merge(prior, map[string]tftypes.Value{"memory": str("0.5GiB"), "timeouts": object(tt, map[string]tftypes.Value{"update": str("20m")})}))
	resp := planOn(t, s, prior, config)
	if len(resp.Diagnostics) != 0 {
		t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
	}
	for name, want := range prior {
		if got := plannedAttr(t, resp, typ, name); !got.Equal(want) {
			t.Errorf("%s planned %v, want the prior %v", name, got, want)
		}
	}
}

// imagePlanEnv is a provider configured on a fresh data_dir, with the busybox image as an OCI
// layout and in a loopback registry, and another image in the registry.
type imagePlanEnv struct {
	server              tfprotov6.ProviderServer
	typ                 tftypes.Object
	dataDir             string
	layout, same, other string
	digest              string
}

func newImagePlanEnv(t *testing.T) *imagePlanEnv {
	t.Helper()
	img := testutil.BusyboxImage(t)
	e := &imagePlanEnv{dataDir: testutil.ShortTempDir(t)}
	dir := t.TempDir()
	testutil.WriteOCILayout(t, dir, img, "")
	e.layout = "oci:" + dir
	reg := testutil.Registry(t)
	e.same = reg + "/same/busybox:1"
	e.digest = testutil.Push(t, e.same, img)
	e.other = reg + "/other/busybox:1"
	testutil.Push(t, e.other, testutil.BusyboxImage(t, ociimage.Options{Cmd: []string{"/bin/echo", "other"}}))
	e.server = configuredServer(t, map[string]tftypes.Value{"data_dir": str(e.dataDir)})
	e.typ = resourceType(t, e.server)
	return e
}

func TestAnotherSpellingOfTheImageIsChangedInPlace(t *testing.T) {
	e := newImagePlanEnv(t)
	prior := merge(existing("Standby", nil), map[string]tftypes.Value{"image": str(e.layout), "image_digest": str(e.digest), "snapshot_bytes": tftypes.NewValue(tftypes.Number, 1<<20)})
	tests := []struct {
		name, image  string
		replace      bool
		warningSays  string
		unresolvable bool
	}{
		{"the same image by tag in a registry", e.same, false, "", false},
		{"the same image by digest", strings.TrimSuffix(e.same, ":1") + "@" + e.digest, false, "", false},
		{"another image", e.other, true, "Standby snapshot", false},
		{"a registry that does not answer", "127.0.0.1:1/busybox:1", true, "could not be compared with the instance's " + e.digest, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := planOn(t, e.server, prior, configOf(merge(prior, map[string]tftypes.Value{"image": str(tt.image)})))
			expectReplaceWarning(t, resp, tt.replace)
			if replace := len(resp.RequiresReplace) > 0; replace != tt.replace {
				t.Errorf("replace = %v (%v), want %v", replace, resp.RequiresReplace, tt.replace)
			}
			if tt.warningSays != "" && len(resp.Diagnostics) > 0 && !strings.Contains(resp.Diagnostics[0].Detail, tt.warningSays) {
				t.Errorf("the warning does not say %q:\n%s", tt.warningSays, resp.Diagnostics[0].Detail)
			}
			if tt.replace {
				return
			}
			expectPlanned(t, resp, e.typ, map[string]tftypes.Value{"image": str(tt.image), "image_digest": str(e.digest),
				"snapshot_bytes": prior["snapshot_bytes"], "state_reason": tftypes.NewValue(tftypes.String, nil)})
		})
	}
}

// A create from an image path that does not exist fails the plan. For an existing instance the
// plan warns and replaces nothing: a replacement would delete the instance, then fail.
func TestAnImagePathThatDoesNotExistIsFoundAtPlanTime(t *testing.T) {
	e := newImagePlanEnv(t)
	missing := "oci:" + filepath.Join(t.TempDir(), "gone")
	prior := merge(existing("Running", nil), map[string]tftypes.Value{"image": str(e.layout), "image_digest": str(e.digest)})
	for _, tt := range []struct {
		name     string
		prior    map[string]tftypes.Value
		severity tfprotov6.DiagnosticSeverity
		summary  string
	}{
		{"create", nil, tfprotov6.DiagnosticSeverityError, "Unable to Create Instance"},
		{"change of image", prior, tfprotov6.DiagnosticSeverityWarning, "Apply Will Refuse This Change"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			config := map[string]tftypes.Value{"name": str("web"), "image": str(missing)}
			if tt.prior != nil {
				config = configOf(merge(tt.prior, config))
			}
			resp := planOn(t, e.server, tt.prior, config)
			if len(resp.Diagnostics) != 1 {
				t.Fatalf("want one diagnostic, got %v", diagText(resp.Diagnostics))
			}
			d := resp.Diagnostics[0]
			if d.Severity != tt.severity || d.Summary != tt.summary || d.Attribute == nil || !d.Attribute.Equal(tftypes.NewAttributePath().WithAttributeName("image")) {
				t.Errorf("got %v %q on %v", d.Severity, d.Summary, d.Attribute)
			}
			if !strings.Contains(d.Detail, "does not exist") || !strings.Contains(d.Detail, "gone") {
				t.Errorf("the diagnostic does not say which path is missing:\n%s", d.Detail)
			}
			if len(resp.RequiresReplace) != 0 {
				t.Errorf("replace on %v for an image no replacement can boot", resp.RequiresReplace)
			}
		})
	}
}

func TestANameTakenOnTheHostFailsAtPlanTimeUnlessItsHolderIsBeingReplaced(t *testing.T) {
	e := newImagePlanEnv(t)
	testutil.RequireTool(t, "mkfs.erofs")
	testutil.RequireTool(t, "mkfs.ext4")
	m, err := instances.New(instances.Options{DataDir: e.dataDir, Drivers: builtin.Drivers(), DefaultHypervisor: "qemu"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	holder, err := m.Create(ctx, instances.Spec{Name: "taken", Image: e.layout, VCPUs: 1, Memory: instances.MinMemory, OverlaySize: instances.MinOverlay}, instances.Stopped)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Delete(context.Background(), holder.ID) })
	create := func(name string) *tfprotov6.PlanResourceChangeResponse {
		return planOn(t, e.server, nil, map[string]tftypes.Value{"name": str(name), "image": str(e.layout)})
	}

	if resp := create("free"); len(resp.Diagnostics) != 0 {
		t.Errorf("a free name: %v", diagText(resp.Diagnostics))
	}
	resp := create("taken")
	if len(resp.Diagnostics) != 1 {
		t.Fatalf("want one diagnostic, got %v", diagText(resp.Diagnostics))
	}
	d := resp.Diagnostics[0]
	if d.Summary != "Unable to Create Instance" || d.Attribute == nil || !d.Attribute.Equal(tftypes.NewAttributePath().WithAttributeName("name")) {
		t.Errorf("got %q on %v", d.Summary, d.Attribute)
	}
	for _, want := range []string{
		fmt.Sprintf(`name "taken" is taken by instance %s, on this host (data_dir %s)`, holder.ID, e.dataDir),
		"terraform import hypeman_instance.<label> taken", "choose another name",
	} {
		if !strings.Contains(d.Detail, want) {
			t.Errorf("the error does not say %q:\n%s", want, d.Detail)
		}
	}

	// Replacing the holder: the plan for its update comes first, then the plan of the new one's create.
	prior := merge(existing("Stopped", nil), map[string]tftypes.Value{"id": str(holder.ID), "name": str("taken"), "image": str(e.layout), "image_digest": str(e.digest)})
	expectReplaceWarning(t, planOn(t, e.server, prior, configOf(merge(prior, map[string]tftypes.Value{"image": str("alpine:3.21")}))), true)
	if resp := create("taken"); len(resp.Diagnostics) != 0 {
		t.Errorf("the create that replaces the holder: %v", diagText(resp.Diagnostics))
	}
}

func TestAHostThatCannotBeAskedLeavesTheCreatePlanAlone(t *testing.T) {
	dataDir := testutil.ShortTempDir(t)
	// names/ is a file: every look at a name fails, as on a host that does not answer.
	if err := os.WriteFile(filepath.Join(dataDir, "names"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := configuredServer(t, map[string]tftypes.Value{"data_dir": str(dataDir)})
	resp := planOn(t, s, nil, map[string]tftypes.Value{"name": str("web"), "image": str("127.0.0.1:1/busybox:1")})
	if len(resp.Diagnostics) != 0 {
		t.Errorf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
	}
}
