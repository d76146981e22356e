package instances

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
)

// Network settings as the manager checks and records them; nothing here touches a network.

func TestNetworkSettingsAreCheckedNamingTheField(t *testing.T) {
	tests := []struct {
		name string
		ns   *NetworkSpec
		want string
	}{
		{"address that is not one", &NetworkSpec{IP: "10.100.0.300"}, `network.ip "10.100.0.300" is not allowed: an IPv4 address`},
		{"IPv6 address", &NetworkSpec{IP: "fd00::5"}, `network.ip "fd00::5" is not allowed`},
		{"multicast MAC", &NetworkSpec{MAC: "01:00:5e:00:00:01"}, `network.mac "01:00:5e:00:00:01" is not allowed: a unicast MAC address`},
		{"addresses for a disabled network", &NetworkSpec{Disabled: true, IP: "10.100.0.9"}, `network "disabled" is not allowed: no ip or mac`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := Spec{Name: "ok", Image: "busybox", VCPUs: 1, Memory: MinMemory, OverlaySize: MinOverlay, Network: tt.ns}
			err := spec.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v; want ErrInvalidConfig saying %q", err, tt.want)
			}
		})
	}
	for _, ok := range []*NetworkSpec{nil, {}, {Disabled: true}, {IP: "10.100.0.9", MAC: "02:00:00:00:00:09"}} {
		spec := Spec{Name: "ok", Image: "busybox", VCPUs: 1, Memory: MinMemory, OverlaySize: MinOverlay, Network: ok}
		if err := spec.Validate(); err != nil {
			t.Errorf("network %+v: %v", ok, err)
		}
	}
}

func TestChangedNetworkSettingsNeedANewInstance(t *testing.T) {
	have := (&metadata{IPAddress: "10.100.0.2", MACAddress: "02:68:0a:64:00:02"}).networkSpec()
	none := (&metadata{}).networkSpec()
	tests := []struct {
		name       string
		have, want *NetworkSpec
		diff       []string
	}{
		{"unset asks for nothing", have, nil, nil},
		{"the default asks for nothing", have, &NetworkSpec{}, nil},
		{"the same addresses, MAC in another spelling", have, &NetworkSpec{IP: "10.100.0.2", MAC: "02-68-0A-64-00-02"}, nil},
		{"another address", have, &NetworkSpec{IP: "10.100.0.7"}, []string{"network.ip"}},
		{"another MAC", have, &NetworkSpec{MAC: "02:00:00:00:00:07"}, []string{"network.mac"}},
		{"turning the network off", have, &NetworkSpec{Disabled: true}, []string{"network"}},
		{"turning the network on", none, &NetworkSpec{}, []string{"network"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NetworkDiff(tt.have, tt.want); !slices.Equal(got, tt.diff) {
				t.Fatalf("NetworkDiff = %q, want %q", got, tt.diff)
			}
		})
	}
}

func TestConfigDiskCarriesTheNetworkOnlyWhenThereIsOne(t *testing.T) {
	prog := guestProgram{Argv: []string{"/bin/sh"}, Workdir: "/"}
	gnet := &guestNetwork{Address: "10.100.0.2/16", Gateway: "10.100.0.1", DNS: []string{"10.100.0.53", "10.100.0.54"}, MAC: "02:68:0a:64:00:02"}
	files := tarFiles(t, prog, gnet)
	want := map[string]string{
		system.ConfigNetAddress: "10.100.0.2/16",
		system.ConfigNetGateway: "10.100.0.1",
		system.ConfigNetDNS:     "10.100.0.53\n10.100.0.54\n",
		system.ConfigNetMAC:     "02:68:0a:64:00:02",
	}
	for name, content := range want {
		if files[name] != content {
			t.Errorf("%s = %q, want %q", name, files[name], content)
		}
	}
	for name := range tarFiles(t, prog, nil) {
		if strings.HasPrefix(name, system.ConfigNetDir+"/") {
			t.Errorf("a config disk without a network has %s", name)
		}
	}
}

func tarFiles(t *testing.T, prog guestProgram, gnet *guestNetwork) map[string]string {
	t.Helper()
	b, err := configTar(prog, "host", gnet, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[strings.TrimSuffix(h.Name, "/")] = string(data)
	}
}

func TestNewRejectsABadHostNetworkNamingTheSetting(t *testing.T) {
	_, err := New(Options{
		DataDir: "/var/lib/hypeman", Drivers: []vmm.Driver{qemu.New()},
		Network: network.Config{Enabled: true, Subnet: "10.100.0.0/33"},
	})
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, network.ErrInvalidConfig) || !strings.Contains(err.Error(), `network subnet "10.100.0.0/33" is not allowed`) {
		t.Fatalf("New with a bad subnet: %v", err)
	}
}
