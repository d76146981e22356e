package provider

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/oklog/ulid/v2"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// orphanedHost is a data_dir where the directory of instance id (named web) was removed while its
// VMM ran: the VMM is a process that only sleeps, under QEMU's name and with QEMU's paths.
func orphanedHost(t *testing.T) (dataDir, id string, pid int) {
	t.Helper()
	dataDir = testutil.ShortTempDir(t)
	id = ulid.Make().String()
	dir := filepath.Join(dataDir, "guests", id)
	pid = testutil.FakeProcess(t, qemu.Binary, "-pidfile", dir+"/qemu.pid", "-chardev", "socket,id=qmp0,path="+dir+"/qmp.sock,server=on")
	if err := os.MkdirAll(filepath.Join(dataDir, "names"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(id, filepath.Join(dataDir, "names", "web")); err != nil {
		t.Fatal(err)
	}
	return dataDir, id, pid
}

func alive(pid int) bool { _, ok := testutil.ReadProcess(pid); return ok }

// No VM: what Terraform sees of an orphan, through the plugin protocol.
func TestRemovedInstanceWhoseVMMRunsIsWarnedAboutListedAndStoppedByDelete(t *testing.T) {
	dataDir, id, pid := orphanedHost(t)
	s := configuredServer(t, map[string]tftypes.Value{"data_dir": str(dataDir)})
	ctx := context.Background()

	// The data source lists it, with a warning.
	dsType, ok := dataSourceType(t, s, "hypeman_instances")
	if !ok {
		t.Fatal("no hypeman_instances schema")
	}
	ds, err := s.ReadDataSource(ctx, &tfprotov6.ReadDataSourceRequest{TypeName: "hypeman_instances", Config: dynamic(t, dsType, object(dsType, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Diagnostics) != 1 || ds.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityWarning ||
		!strings.Contains(ds.Diagnostics[0].Detail, "the qemu process "+strconv.Itoa(pid)+" of "+filepath.Join(dataDir, "guests", id)+` (name "web")`) {
		t.Fatalf("data source diagnostics: %v", diagText(ds.Diagnostics))
	}
	v, err := ds.State.Unmarshal(dsType)
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]tftypes.Value
	_ = v.As(&attrs)
	var orphans []tftypes.Value
	_ = attrs["orphans"].As(&orphans)
	if len(orphans) != 1 {
		t.Fatalf("orphans = %v, want one", attrs["orphans"])
	}
	var o map[string]tftypes.Value
	_ = orphans[0].As(&o)
	want := map[string]tftypes.Value{
		"pid": tftypes.NewValue(tftypes.Number, pid), "id": str(id), "directory": str(filepath.Join(dataDir, "guests", id)),
		"hypervisor": str("qemu"), "name": str("web"),
	}
	for k, w := range want {
		if !o[k].Equal(w) {
			t.Errorf("orphans.0.%s = %v, want %v", k, o[k], w)
		}
	}

	// The resource's Read forgets the instance and says its VMM still runs.
	typ := resourceType(t, s)
	prior := object(typ, merge(existing("Running", nil), map[string]tftypes.Value{"id": str(id)}))
	read, err := s.ReadResource(ctx, &tfprotov6.ReadResourceRequest{TypeName: "hypeman_instance", CurrentState: dynamic(t, typ, prior)})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := read.NewState.Unmarshal(typ); err != nil || !st.IsNull() {
		t.Fatalf("Read kept the removed instance in the state: %v, %v", st, err)
	}
	if len(read.Diagnostics) != 1 || read.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityWarning {
		t.Fatalf("Read diagnostics: %v", diagText(read.Diagnostics))
	}
	for _, w := range []string{"web (id " + id + ")", "the qemu process " + strconv.Itoa(pid), `Creating an instance named "web" again`, "kill " + strconv.Itoa(pid)} {
		if !strings.Contains(read.Diagnostics[0].Detail, w) {
			t.Errorf("Read's warning does not say %q:\n%s", w, read.Diagnostics[0].Detail)
		}
	}
	if !alive(pid) {
		t.Fatal("Read stopped the VMM; only a create of the name or a delete may")
	}

	// Delete of the instance (a destroy that did not refresh first) stops it.
	del, err := s.ApplyResourceChange(ctx, &tfprotov6.ApplyResourceChangeRequest{
		TypeName: "hypeman_instance", PriorState: dynamic(t, typ, prior),
		PlannedState: dynamic(t, typ, tftypes.NewValue(typ, nil)), Config: dynamic(t, typ, tftypes.NewValue(typ, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(del.Diagnostics) != 0 {
		t.Fatalf("Delete diagnostics: %v", diagText(del.Diagnostics))
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the VMM %d still runs after Delete", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Lstat(filepath.Join(dataDir, "names", "web")); !os.IsNotExist(err) {
		t.Errorf("the name still points at the deleted instance: %v", err)
	}
}

// dataSourceType is the object type of a data source's schema.
func dataSourceType(t *testing.T, s tfprotov6.ProviderServer, name string) (tftypes.Object, bool) {
	t.Helper()
	resp, err := s.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sch, ok := resp.DataSourceSchemas[name]
	if !ok {
		return tftypes.Object{}, false
	}
	typ, ok := sch.ValueType().(tftypes.Object)
	return typ, ok
}

func TestTheReadTimeoutIsHowLongAVMMGetsToAnswerOnlyWhenItIsSet(t *testing.T) {
	read := 45 * time.Second
	with := func(attrs map[string]attr.Value) timeouts.Value {
		all := map[string]attr.Value{"create": types.StringNull(), "read": types.StringNull(), "update": types.StringNull(), "delete": types.StringNull()}
		for k, v := range attrs {
			all[k] = v
		}
		return timeouts.Value{Object: types.ObjectValueMust(timeoutsAttrTypes, all)}
	}
	tests := []struct {
		name string
		t    timeouts.Value
		want time.Duration
	}{
		{"no timeouts (an import, or none configured)", timeouts.Value{Object: types.ObjectNull(timeoutsAttrTypes)}, 0},
		{"timeouts without read", with(map[string]attr.Value{"create": types.StringValue("20m")}), 0},
		{"read set", with(map[string]attr.Value{"read": types.StringValue("45s")}), read},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readProbe(tt.t, read); got != tt.want {
				t.Errorf("readProbe = %v, want %v (0: the manager's default)", got, tt.want)
			}
		})
	}
}
