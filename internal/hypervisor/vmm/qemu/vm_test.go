package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

func TestStateOfMapsQEMURunStates(t *testing.T) {
	tests := []struct {
		status string
		want   vmm.State
	}{
		{"running", vmm.Running},
		{"paused", vmm.Paused},
		{"suspended", vmm.Paused},
		{"postmigrate", vmm.Paused},
		{"finish-migrate", vmm.Paused},
		{"io-error", vmm.Paused},
		{"prelaunch", vmm.Created},
		{"inmigrate", vmm.Created},
		{"shutdown", vmm.Shutdown},
	}
	for _, tt := range tests {
		got, err := stateOf(tt.status)
		if err != nil || got != tt.want {
			t.Errorf("stateOf(%q) = %q, %v; want %q", tt.status, got, err, tt.want)
		}
	}
	for _, status := range []string{"guest-panicked", "internal-error", ""} {
		if got, err := stateOf(status); err == nil || !strings.Contains(err.Error(), `"`+status+`"`) {
			t.Errorf("stateOf(%q) = %q, %v; want an error naming the status", status, got, err)
		}
	}
}

func TestHotplugRequest(t *testing.T) {
	withHotplug := vmm.Config{MemoryBytes: 256 * mib, HotplugBytes: 256 * mib}
	noHotplug := vmm.Config{MemoryBytes: 256 * mib}
	tests := []struct {
		name    string
		cfg     vmm.Config
		total   int64
		want    int64
		wantErr string
	}{
		{"boot size plugs nothing", withHotplug, 256 * mib, 0, ""},
		{"grow to the limit", withHotplug, 512 * mib, 256 * mib, ""},
		{"grow in 2 MiB blocks", withHotplug, 258 * mib, 2 * mib, ""},
		{"below the boot size", withHotplug, 254 * mib, 0, "between the boot size"},
		{"above the limit", withHotplug, 514 * mib, 0, "between the boot size"},
		{"not a whole block", withHotplug, 257 * mib, 0, "multiple of 2 MiB"},
		{"no hotplug keeps the boot size", noHotplug, 256 * mib, 0, ""},
		{"no hotplug cannot grow", noHotplug, 258 * mib, 0, "no hotplug memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hotplugRequest(tt.cfg, tt.total)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("hotplugRequest = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestSameDevices(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(*vmm.Config)
		wantErr string
	}{
		{"identical", func(*vmm.Config) {}, ""},
		{"another kernel command line", func(c *vmm.Config) { c.Cmdline = "quiet" }, ""},
		{"more vcpus", func(c *vmm.Config) { c.VCPUs = 4 }, "vcpus was 2"},
		{"more memory", func(c *vmm.Config) { c.MemoryBytes *= 2 }, "memory bytes"},
		{"more hotplug", func(c *vmm.Config) { c.HotplugBytes = 2 * mib }, "hotplug bytes"},
		{"another accelerator", func(c *vmm.Config) { c.Accelerator = "kvm" }, "accelerator was tcg"},
		{"one disk fewer", func(c *vmm.Config) { c.Disks = c.Disks[:1] }, "disk count was 2"},
		{"a disk turned writable", func(c *vmm.Config) { c.Disks[0].ReadOnly = false }, "disk 0"},
		{"a disk with another serial", func(c *vmm.Config) { c.Disks[1].Serial = "other" }, "disk 1"},
		{"vCPU slots as many as its vCPUs", func(c *vmm.Config) { c.MaxVCPUs = c.VCPUs }, "max vcpus was 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Disks = append([]vmm.Disk(nil), cfg.Disks...)
			tt.modify(&cfg)
			err := sameDevices(baseConfig(), cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckStreamRefusesWhatIsNotAMigrationStream(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"stream":     append([]byte("QEVM\x00\x00\x00\x03"), make([]byte, 100)...),
		"empty":      nil,
		"lz4":        {0x04, 0x22, 0x4d, 0x18, 0, 0, 0, 0, 0},
		"short":      []byte("QEV"),
		"oldversion": []byte("QEVM\x00\x00\x00\x02"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := checkStream(ctx, host.Local{}, filepath.Join(dir, "stream"), streamHeader, "a QEMU migration stream"); err != nil {
		t.Errorf("a migration stream was refused: %v", err)
	}
	for _, name := range []string{"empty", "lz4", "short", "oldversion", "missing"} {
		if err := checkStream(ctx, host.Local{}, filepath.Join(dir, name), streamHeader, "a QEMU migration stream"); err == nil {
			t.Errorf("%s was accepted as a migration stream", name)
		}
	}
	if err := checkStream(ctx, host.Local{}, filepath.Join(dir, "lz4"), lz4Magic, "an LZ4 frame"); err != nil {
		t.Errorf("an LZ4 frame was refused: %v", err)
	}
	for _, name := range []string{"stream", "empty", "short", "missing"} {
		if err := checkStream(ctx, host.Local{}, filepath.Join(dir, name), lz4Magic, "an LZ4 frame"); err == nil {
			t.Errorf("%s was accepted as an LZ4 frame", name)
		}
	}
}

func TestAbandonMigrationCancelsOnlyAMigrationUnderWay(t *testing.T) {
	for status, cancels := range map[string]bool{
		"active": true, "setup": true, "device": true, "cancelling": false,
		"completed": false, "failed": false, "cancelled": false, "": false,
	} {
		t.Run(status, func(t *testing.T) {
			now := status
			var sent []string
			queries := 0
			m := connectFake(t, func(req request, id string) []string {
				sent = append(sent, req.Execute)
				switch req.Execute {
				case "migrate_cancel":
					now = "cancelling"
				case "query-migrate":
					if now == "cancelling" {
						if queries++; queries > 2 {
							now = "cancelled"
						}
					}
					return []string{fmt.Sprintf(`{"return": {"status": %q}, "id": %s}`, now, id)}
				}
				return []string{fmt.Sprintf(`{"return": {}, "id": %s}`, id)}
			})
			if err := abandonMigration(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(sent, "migrate_cancel"); got != cancels {
				t.Fatalf("sent %v: migrate_cancel %v, want %v", sent, got, cancels)
			}
			if underWay(now) {
				t.Fatalf("abandonMigration returned with the migration %s", now)
			}
		})
	}
}

func TestDiskErrorNamesTheFullDisk(t *testing.T) {
	v := &vm{cfg: vmm.Config{Disks: []vmm.Disk{{Path: "/i/rootfs.erofs"}, {Path: "/g/01J/overlay.raw"}}}}
	block := func(device, status, file string) blockInfo {
		b := blockInfo{Device: device, IOStatus: status}
		if file != "" {
			b.Inserted = &struct {
				File string `json:"file"`
			}{file}
		}
		return b
	}
	tests := []struct {
		name   string
		blocks []blockInfo
		want   vmm.DiskError
	}{
		{"full overlay", []blockInfo{block("disk0", "ok", ""), block("disk1", "nospace", "")}, vmm.DiskError{Path: "/g/01J/overlay.raw", NoSpace: true}},
		{"full beats failed", []blockInfo{block("disk0", "failed", ""), block("disk1", "nospace", "")}, vmm.DiskError{Path: "/g/01J/overlay.raw", NoSpace: true}},
		{"failed", []blockInfo{block("disk0", "failed", ""), block("disk1", "ok", "")}, vmm.DiskError{Path: "/i/rootfs.erofs"}},
		{"a drive not in the config", []blockInfo{block("other", "nospace", "/x/y.raw")}, vmm.DiskError{Path: "/x/y.raw", NoSpace: true}},
		{"no drive says", []blockInfo{block("disk0", "ok", ""), block("disk1", "", "")}, vmm.DiskError{}},
	}
	for _, tt := range tests {
		if got := v.diskError(tt.blocks); *got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, *got, tt.want)
		}
	}
}
