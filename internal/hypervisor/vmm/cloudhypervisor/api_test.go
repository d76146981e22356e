package cloudhypervisor

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
)

func loadSpec(t *testing.T) *chstandin.Spec {
	t.Helper()
	spec, err := chstandin.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// Every request body the driver can send, checked against the official OpenAPI document
// (chstandin/openapi/cloud-hypervisor.yaml): types, required fields, enums, and no field the
// spec lacks.
func TestRequestBodiesConformToTheSpec(t *testing.T) {
	spec := loadSpec(t)
	base := vmm.Config{
		Dir: "/var/lib/hypeman/guests/01J", Kernel: "/k/vmlinux", VCPUs: 1, MemoryBytes: 512 * mib,
		ConsoleLog: "/var/lib/hypeman/guests/01J/logs/console.log",
	}
	full := base
	full.Initrd, full.Cmdline, full.VCPUs, full.HotplugBytes = "/k/initrd", "console=ttyS0", 4, 1024*mib
	full.Net = &vmm.NetConfig{Tap: "hm01j", MAC: "02:00:0a:64:00:02"}
	full.Disks = []vmm.Disk{
		{Path: "/i/rootfs.erofs", Serial: "hypeman-rootfs", ReadOnly: true},
		{Path: "/g/overlay.raw", Serial: "hypeman-overlay"},
		{Path: "/g/config.erofs", Serial: "hypeman-config", ReadOnly: true},
	}
	var bodies []struct {
		action string
		body   any
	}
	for _, cfg := range []vmm.Config{base, full} {
		c, err := vmConfigFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, struct {
			action string
			body   any
		}{"vm.create", c})
	}
	bodies = append(bodies, []struct {
		action string
		body   any
	}{
		{"vm.resize", vmResize{DesiredRAM: 768 * mib}},
		{"vm.snapshot", vmSnapshotConfig{DestinationURL: "file:///var/lib/hypeman/guests/01J/snapshots/snapshot-latest"}},
		{"vm.restore", restoreConfig{SourceURL: "file:///var/lib/hypeman/guests/01J/snapshots/snapshot-latest"}},
		{"vm.restore", lazyRestoreConfig{SourceURL: "file:///var/lib/hypeman/guests/01J/snapshots/snapshot-latest", MemoryRestoreMode: onDemand, Resume: true}},
	}...)
	for _, b := range bodies {
		data, err := json.Marshal(b.body)
		if err != nil {
			t.Fatal(err)
		}
		if err := spec.CheckBody(b.action, data); err != nil {
			t.Errorf("%s body %s: %v", b.action, data, err)
		}
	}
}

// The check above can fail: a body the server would misread is refused.
func TestSpecCheckRefusesNonConformingBodies(t *testing.T) {
	spec := loadSpec(t)
	c, err := vmConfigFor(vmm.Config{Dir: "/d", Kernel: "/k", VCPUs: 1, MemoryBytes: mib, ConsoleLog: "/d/c.log"})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]func(m map[string]any){
		"vcpus as a string":        func(m map[string]any) { m["cpus"].(map[string]any)["boot_vcpus"] = "1" },
		"no payload":               func(m map[string]any) { delete(m, "payload") },
		"lower-case console mode":  func(m map[string]any) { m["serial"].(map[string]any)["mode"] = "file" },
		"misspelt memory field":    func(m map[string]any) { m["memory"].(map[string]any)["hotplug_sise"] = 1 },
		"serial without mode":      func(m map[string]any) { delete(m["serial"].(map[string]any), "mode") },
		"rng without its src file": func(m map[string]any) { delete(m["rng"].(map[string]any), "src") },
		"landlock rule without access": func(m map[string]any) {
			delete(m["landlock_rules"].([]any)[0].(map[string]any), "access")
		},
		"landlock_enable as a string": func(m map[string]any) { m["landlock_enable"] = "true" },
	}
	for name, spoil := range tests {
		t.Run(name, func(t *testing.T) {
			data, _ := json.Marshal(c)
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			spoil(m)
			data, _ = json.Marshal(m)
			if err := spec.CheckBody("vm.create", data); err == nil {
				t.Errorf("accepted %s", data)
			}
		})
	}
	if err := spec.CheckBody("vm.restore", []byte(`{"source_url":"file:///s","resume":"yes"}`)); err == nil {
		t.Error("a restore body with a string for a boolean was accepted")
	}
	if err := spec.CheckBody("vm.restore", []byte(`{"source_url":"file:///s","memory_restore_mode":"ondemand"}`)); err == nil {
		t.Error("a restore body with the CLI's spelling of OnDemand was accepted")
	}
	if err := spec.CheckBody("vm.restore", []byte(`{"source_url":"file:///s","net_fds":[]}`)); !errors.Is(err, chstandin.ErrUndeclaredField) {
		t.Errorf("a field the spec lacks: %v", err)
	}
}
