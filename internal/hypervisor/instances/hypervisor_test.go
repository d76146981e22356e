package instances

import (
	"context"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Which VMM an instance runs under; nothing here starts one.

// namedDriver is a VMM driver that is or is not installed; nothing else of it is used.
type namedDriver struct {
	vmm.Driver
	name      string
	installed bool
	socket    string
}

func (d namedDriver) Name() string                              { return d.name }
func (d namedDriver) Available(context.Context, host.Host) bool { return d.installed }
func (d namedDriver) SocketName() string                        { return d.socket }

func TestDefaultHypervisorIsTheFirstDriver(t *testing.T) {
	for _, first := range []string{"cloud-hypervisor", "qemu"} {
		other := map[string]string{"cloud-hypervisor": "qemu", "qemu": "cloud-hypervisor"}[first]
		m, err := New(Options{DataDir: "/var/lib/hypeman", Drivers: []vmm.Driver{namedDriver{name: first}, namedDriver{name: other}}})
		if err != nil {
			t.Fatal(err)
		}
		if m.opts.DefaultHypervisor != first {
			t.Errorf("drivers %s, %s: default %q, want the first", first, other, m.opts.DefaultHypervisor)
		}
	}
}

func TestNewRefusesAmbiguousOrMissingDrivers(t *testing.T) {
	tests := []struct {
		name    string
		drivers []vmm.Driver
		def     string
		want    string
	}{
		{"no driver", nil, "", "no VMM driver configured"},
		{"two drivers of one name", []vmm.Driver{namedDriver{name: "qemu"}, namedDriver{name: "qemu"}}, "", `two VMM drivers are named "qemu"`},
		{"a default without a driver", []vmm.Driver{namedDriver{name: "qemu"}}, "cloud-hypervisor", `default hypervisor "cloud-hypervisor" has no driver`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{DataDir: "/var/lib/hypeman", Drivers: tt.drivers, DefaultHypervisor: tt.def})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestDataDirLeavesRoomForTheLongestSocketName(t *testing.T) {
	drivers := []vmm.Driver{namedDriver{name: "a", socket: "a.sock"}, namedDriver{name: "b", socket: "long-name.sock"}}
	// /guests/ + a 26-character id + / + the socket + ".lock" within 107 bytes.
	room := 107 - len("/guests/") - 26 - 1 - len("long-name.sock") - len(".lock")
	for _, n := range []int{room, room + 1} {
		dir := "/" + strings.Repeat("d", n-1)
		_, err := New(Options{DataDir: dir, Drivers: drivers})
		if fits := n <= room; fits != (err == nil) {
			t.Errorf("data_dir of %d characters: %v, want fits = %v", n, err, fits)
		}
	}
}
