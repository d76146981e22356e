package instances

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// The defaults a manager is made with; nothing here starts a VMM.

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

func TestHypervisorChoice(t *testing.T) {
	ch := func(installed bool) vmm.Driver { return namedDriver{name: "cloud-hypervisor", installed: installed} }
	qemu := func(installed bool) vmm.Driver { return namedDriver{name: "qemu", installed: installed} }
	tests := []struct {
		name      string
		drivers   []vmm.Driver
		want      string
		pick      string
		errorText string // "" = no error
		warning   bool
	}{
		{"cloud-hypervisor preferred when installed", []vmm.Driver{ch(true), qemu(true)}, "", "cloud-hypervisor", "", false},
		{"qemu when cloud-hypervisor is missing", []vmm.Driver{ch(false), qemu(true)}, "", "qemu", "", false},
		{"nothing installed falls back with a warning", []vmm.Driver{ch(false), qemu(false)}, "", "qemu", "", true},
		{"configured and installed", []vmm.Driver{ch(true), qemu(true)}, "qemu", "qemu", "", false},
		{"configured but not installed", []vmm.Driver{ch(false), qemu(true)}, "cloud-hypervisor", "",
			`hypervisor "cloud-hypervisor" is not installed on the host (installed: qemu). Install it, or choose an installed one.`, false},
		{"configured but not built in", []vmm.Driver{qemu(true)}, "cloud-hypervisor", "",
			`hypervisor "cloud-hypervisor" is not built into this provider: use one of qemu`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warning, err := ChooseHypervisor(context.Background(), host.Local{}, tt.drivers, tt.want)
			if got != tt.pick {
				t.Errorf("chose %q, want %q", got, tt.pick)
			}
			switch {
			case tt.errorText == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.errorText != "" && (!errors.Is(err, ErrInvalidConfig) || err.Error() != tt.errorText):
				t.Errorf("error %v, want ErrInvalidConfig reading %q", err, tt.errorText)
			}
			if (warning != "") != tt.warning {
				t.Errorf("warning %q, want one = %v", warning, tt.warning)
			}
			if tt.warning && warning != "None of cloud-hypervisor, qemu is installed on the host, so creating or starting instances will fail until one is installed. Reading and deleting instances works." {
				t.Errorf("warning %q", warning)
			}
		})
	}
}

// modulesHost is a host that has DefaultKernelModules or not.
type modulesHost struct {
	host.Local
	has bool
}

func (h modulesHost) Stat(_ context.Context, p string) (fs.FileInfo, error) {
	if h.has && p == DefaultKernelModules {
		return os.Stat("/")
	}
	return nil, fs.ErrNotExist
}

func TestKernelModulesDefaultOnlyWhenTheHostHasThem(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		h          modulesHost
		configured string
		want       string
	}{
		{modulesHost{has: true}, "/srv/modules", "/srv/modules"},
		{modulesHost{has: false}, "/srv/modules", "/srv/modules"},
		{modulesHost{has: true}, "", DefaultKernelModules},
		{modulesHost{has: false}, "", ""},
	} {
		if got := ChooseKernelModules(ctx, tt.h, tt.configured); got != tt.want {
			t.Errorf("configured %q, host has the default = %v: %q, want %q", tt.configured, tt.h.has, got, tt.want)
		}
	}
}
