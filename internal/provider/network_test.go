package provider

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
)

func emptyNetworkBlock() *networkModel {
	return &networkModel{Bridge: types.StringNull(), Subnet: types.StringNull(), Gateway: types.StringNull(), DNS: types.ListNull(types.StringType), Uplink: types.StringNull()}
}

func TestNetworkIsOnOnlyWithTheBlockAndItsSettingsComeFromConfigThenEnvironment(t *testing.T) {
	env := map[string]string{
		"HYPEMAN_BRIDGE": "hmbr1", "HYPEMAN_SUBNET": "10.123.0.0/24", "HYPEMAN_GATEWAY": "10.123.0.254",
		"HYPEMAN_DNS": "10.123.0.53, 10.123.0.54", "HYPEMAN_UPLINK": "none",
	}
	fromConfig := emptyNetworkBlock()
	fromConfig.Subnet, fromConfig.Gateway = types.StringValue("10.124.0.0/16"), types.StringValue("10.124.0.1")
	fromConfig.DNS = types.ListValueMust(types.StringType, nil)
	tests := []struct {
		name  string
		block *networkModel
		want  network.Config
	}{
		{"no block: off, whatever the environment says", nil, network.Config{}},
		{"an empty block: on, every setting from the environment", emptyNetworkBlock(), network.Config{
			Enabled: true, Bridge: "hmbr1", Subnet: "10.123.0.0/24", Gateway: "10.123.0.254", DNS: []string{"10.123.0.53", "10.123.0.54"}, Uplink: "none",
		}},
		{"settings in the block win, an empty dns list included", fromConfig, network.Config{
			Enabled: true, Bridge: "hmbr1", Subnet: "10.124.0.0/16", Gateway: "10.124.0.1", Uplink: "none",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := nullProviderModel()
			cfg.Network = tt.block
			s, diags := resolveSettings(cfg, func(k string) string { return env[k] })
			if diags.HasError() {
				t.Fatal(diags)
			}
			if !reflect.DeepEqual(s.Network, tt.want) {
				t.Errorf("network = %+v\nwant      %+v", s.Network, tt.want)
			}
		})
	}
}

func TestEmptyNetworkBlockTakesTheManagerDefaults(t *testing.T) {
	cfg := nullProviderModel()
	cfg.Network = emptyNetworkBlock()
	s, diags := resolveSettings(cfg, func(string) string { return "" })
	if diags.HasError() {
		t.Fatal(diags)
	}
	m, err := instances.New(instances.Options{Drivers: builtin.Drivers(), Network: s.Network})
	if err != nil {
		t.Fatal(err)
	}
	a := m.Addresses()
	if !s.Network.Enabled || a == nil || a.Subnet.String() != network.DefaultSubnet || a.Gateway.String() != "10.100.0.1" {
		t.Errorf("network %+v: addresses %+v", s.Network, a)
	}
}

func TestBadNetworkSettingsAreRejectedNamingSettingValueAndSource(t *testing.T) {
	tests := []struct {
		name   string
		block  func(*networkModel)
		env    map[string]string
		path   string
		detail []string
	}{
		{"gateway outside the subnet", func(n *networkModel) {
			n.Subnet, n.Gateway = types.StringValue("10.123.0.0/24"), types.StringValue("10.124.0.1")
		}, nil, "network.gateway", []string{`gateway "10.124.0.1"`, "inside 10.123.0.0/24"}},
		{"gateway outside the default subnet", func(n *networkModel) { n.Gateway = types.StringValue("192.168.1.1") }, nil,
			"network.gateway", []string{`"192.168.1.1"`, "inside " + network.DefaultSubnet}},
		{"subnet with host bits, from the environment", nil, map[string]string{"HYPEMAN_SUBNET": "10.123.0.7/24"},
			"network.subnet", []string{`subnet "10.123.0.7/24"`, "10.123.0.0/24", "HYPEMAN_SUBNET"}},
		{"the second dns entry", func(n *networkModel) {
			n.DNS = types.ListValueMust(types.StringType, []attr.Value{types.StringValue("10.0.0.53"), types.StringValue("dns.example")})
		}, nil, "network.dns[1]", []string{`dns "dns.example"`, "IPv4 or IPv6 address"}},
		{"bridge name too long, from the environment", nil, map[string]string{"HYPEMAN_BRIDGE": "bridge-name-of-16"},
			"network.bridge", []string{`"bridge-name-of-16"`, "1 to 15 bytes", "HYPEMAN_BRIDGE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := nullProviderModel()
			cfg.Network = emptyNetworkBlock()
			if tt.block != nil {
				tt.block(cfg.Network)
			}
			_, diags := resolveSettings(cfg, func(k string) string { return tt.env[k] })
			if diags.ErrorsCount() != 1 {
				t.Fatalf("want one error, got %v", diags)
			}
			d, ok := diags.Errors()[0].(interface{ Path() path.Path })
			if !ok || d.Path().String() != tt.path {
				t.Errorf("error on %v, want %s", d, tt.path)
			}
			for _, w := range tt.detail {
				if !strings.Contains(diags.Errors()[0].Detail(), w) {
					t.Errorf("detail does not mention %q: %s", w, diags.Errors()[0].Detail())
				}
			}
		})
	}
}

func TestProviderNetworkBlockIsValidatedBeforeConfigure(t *testing.T) {
	tests := []struct {
		name    string
		setting string
		value   tftypes.Value
		want    []string
	}{
		{"bridge name too long", "bridge", str("bridge-name-of-16"), []string{`bridge "bridge-name-of-16"`, "1 to 15 bytes"}},
		{"bridge name with a slash", "bridge", str("br/0"), []string{`"br/0"`, "without '/'"}},
		{"IPv6 subnet", "subnet", str("fd00::/64"), []string{`subnet "fd00::/64"`, "IPv4 network in CIDR notation"}},
		{"subnet too small for an instance", "subnet", str("10.0.0.0/31"), []string{`"10.0.0.0/31"`, "at most /30"}},
		{"subnet without a prefix", "subnet", str("10.0.0.0"), []string{`"10.0.0.0"`, "CIDR notation"}},
		{"dns entry that is a name", "dns", strList("10.0.0.53", "dns.example"), []string{`dns "dns.example"`, "IPv4 or IPv6 address"}},
		{"uplink with a space", "uplink", str("eth 0"), []string{`uplink "eth 0"`, `or "none"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := protocolServer(t)
			typ := providerType(t, s)
			cfg := object(typ, map[string]tftypes.Value{"network": networkValue(typ, map[string]tftypes.Value{tt.setting: tt.value})})
			resp, err := s.ValidateProviderConfig(context.Background(), &tfprotov6.ValidateProviderConfigRequest{Config: dynamic(t, typ, cfg)})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Diagnostics) != 1 {
				t.Fatalf("want one diagnostic, got %v", diagText(resp.Diagnostics))
			}
			d := resp.Diagnostics[0]
			if d.Attribute == nil || len(d.Attribute.Steps()) < 2 || d.Attribute.Steps()[1] != tftypes.AttributeName(tt.setting) {
				t.Errorf("diagnostic is on %v, want network.%s", d.Attribute, tt.setting)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Detail, w) {
					t.Errorf("detail does not mention %q:\n%s", w, d.Detail)
				}
			}
		})
	}
}

func TestBadInstanceNetworkIsRejectedNamingValueAndAllowedForms(t *testing.T) {
	s := protocolServer(t)
	typ := resourceType(t, s)
	tests := []struct {
		name    string
		network map[string]tftypes.Value
		attr    string
		want    []string
	}{
		{"ip that is not an address", map[string]tftypes.Value{"ip": str("10.0.0.300")}, "ip", []string{`network.ip "10.0.0.300"`, "an IPv4 address"}},
		{"IPv6 ip", map[string]tftypes.Value{"ip": str("fd00::2")}, "ip", []string{`"fd00::2"`, "an IPv4 address"}},
		{"multicast mac", map[string]tftypes.Value{"mac": str("01:00:5e:00:00:01")}, "mac", []string{`network.mac "01:00:5e:00:00:01"`, "unicast"}},
		{"mac that is not one", map[string]tftypes.Value{"mac": str("02:00:00")}, "mac", []string{`"02:00:00"`, "six bytes"}},
		{"ip without an interface", map[string]tftypes.Value{"enabled": tftypes.NewValue(tftypes.Bool, false), "ip": str("10.100.0.5")}, "ip",
			[]string{"network.ip is not allowed with enabled = false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := validate(t, map[string]tftypes.Value{"network": networkValue(typ, tt.network)})
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %v", diagText(diags))
			}
			d := diags[0]
			if d.Attribute == nil || len(d.Attribute.Steps()) != 2 || d.Attribute.Steps()[1] != tftypes.AttributeName(tt.attr) {
				t.Errorf("diagnostic is on %v, want network.%s", d.Attribute, tt.attr)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Detail, w) {
					t.Errorf("detail does not mention %q:\n%s", w, d.Detail)
				}
			}
		})
	}
}

// withNIC is an existing instance that has a network interface.
func withNIC(state string) map[string]tftypes.Value {
	return merge(existing(state, nil), map[string]tftypes.Value{
		"ip_address": str("10.100.0.2"), "mac_address": str("02:00:0a:64:00:02"), "tap_device": str("hm4zq6t7n5b2v3"),
	})
}

func TestNetworkChangeReplacesOnlyAnInstanceThatLacksWhatItAsks(t *testing.T) {
	s := protocolServer(t)
	typ := resourceType(t, s)
	net := func(attrs map[string]tftypes.Value) tftypes.Value { return networkValue(typ, attrs) }
	on := tftypes.NewValue(tftypes.Bool, true)
	tests := []struct {
		name        string
		prior       map[string]tftypes.Value
		network     tftypes.Value
		wantReplace bool
	}{
		{"defaults spelled out", withNIC("Running"), net(map[string]tftypes.Value{"enabled": on}), false},
		{"the address it has", withNIC("Running"), net(map[string]tftypes.Value{"ip": str("10.100.0.2")}), false},
		{"the MAC it has, in capitals", withNIC("Running"), net(map[string]tftypes.Value{"mac": str("02:00:0A:64:00:02")}), false},
		{"another address", withNIC("Running"), net(map[string]tftypes.Value{"ip": str("10.100.0.9")}), true},
		{"another MAC", withNIC("Standby"), net(map[string]tftypes.Value{"mac": str("02:00:00:00:00:09")}), true},
		{"no interface", withNIC("Stopped"), net(map[string]tftypes.Value{"enabled": tftypes.NewValue(tftypes.Bool, false)}), true},
		{"an interface for an instance without one", existing("Running", nil), net(map[string]tftypes.Value{}), true},
		{"new peer groups", withNIC("Running"), net(map[string]tftypes.Value{"peer_groups": tftypes.NewValue(tftypes.Set{ElementType: tftypes.String},
			[]tftypes.Value{str("web")})}), false},
		{"the block removed", merge(withNIC("Running"), map[string]tftypes.Value{"network": net(map[string]tftypes.Value{"enabled": on, "ip": str("10.100.0.2")})}),
			net(nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := plan(t, tt.prior, configOf(merge(tt.prior, map[string]tftypes.Value{"network": tt.network})))
			expectReplaceWarning(t, resp, tt.wantReplace)
			replace := len(resp.RequiresReplace) > 0
			if replace != tt.wantReplace {
				t.Errorf("replace = %v (%v), want %v", replace, resp.RequiresReplace, tt.wantReplace)
			}
			if !tt.wantReplace {
				for _, name := range []string{"ip_address", "mac_address", "tap_device"} {
					if got := plannedAttr(t, resp, typ, name); !got.Equal(tt.prior[name]) {
						t.Errorf("%s planned %v, want the prior %v", name, got, tt.prior[name])
					}
				}
			}
		})
	}
}

func TestStateChangesKeepTheNetworkAttributes(t *testing.T) {
	s := protocolServer(t)
	typ := resourceType(t, s)
	for _, tt := range []struct{ prior, state string }{{"Running", "Standby"}, {"Standby", "Running"}, {"Running", "Stopped"}, {"Stopped", "Running"}} {
		t.Run(tt.prior+" to "+tt.state, func(t *testing.T) {
			for _, prior := range []map[string]tftypes.Value{withNIC(tt.prior), existing(tt.prior, nil)} {
				resp := plan(t, prior, configOf(merge(prior, map[string]tftypes.Value{"state": str(tt.state)})))
				if len(resp.Diagnostics) != 0 {
					t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
				}
				for _, name := range []string{"ip_address", "mac_address", "tap_device"} {
					want := prior[name]
					if want.Type() == nil {
						want = tftypes.NewValue(tftypes.String, nil)
					}
					if got := plannedAttr(t, resp, typ, name); !got.Equal(want) {
						t.Errorf("%s planned %v, want %v", name, got, want)
					}
				}
			}
		})
	}
}

// newInstance is the configuration of an instance to create, with network set when not nil.
func newInstance(typ tftypes.Object, network map[string]tftypes.Value) map[string]tftypes.Value {
	cfg := map[string]tftypes.Value{"name": str("web"), "image": str("alpine:3.20")}
	if network != nil {
		cfg["network"] = networkValue(typ, network)
	}
	return cfg
}

func TestInstanceNetworkWithoutTheProviderBlockFailsAtPlanTime(t *testing.T) {
	s := configuredServer(t, nil)
	typ := resourceType(t, s)
	for name, network := range map[string]map[string]tftypes.Value{
		"defaults":    {},
		"a fixed ip":  {"ip": str("10.100.0.5")},
		"enabled set": {"enabled": tftypes.NewValue(tftypes.Bool, true)},
	} {
		t.Run(name, func(t *testing.T) {
			resp := planOn(t, s, nil, newInstance(typ, network))
			if len(resp.Diagnostics) != 1 {
				t.Fatalf("want one diagnostic, got %v", diagText(resp.Diagnostics))
			}
			d := resp.Diagnostics[0]
			if d.Summary != "Unable to Create Instance" || d.Attribute == nil || d.Attribute.Steps()[0] != tftypes.AttributeName("network") {
				t.Errorf("got %q on %v", d.Summary, d.Attribute)
			}
			for _, want := range []string{"the provider has no network block", `provider "hypeman" { network {} }`, "enabled = false"} {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("detail does not mention %q:\n%s", want, d.Detail)
				}
			}
		})
	}
	t.Run("an existing instance that asks for one", func(t *testing.T) {
		prior := merge(withNIC("Running"), map[string]tftypes.Value{"network": networkValue(typ, map[string]tftypes.Value{"enabled": tftypes.NewValue(tftypes.Bool, true)})})
		resp := planOn(t, s, prior, configOf(merge(prior, map[string]tftypes.Value{"state": str("Stopped")})))
		if len(resp.Diagnostics) != 1 || resp.Diagnostics[0].Summary != "Unable to Update Instance" || !strings.Contains(resp.Diagnostics[0].Detail, "network {}") {
			t.Fatalf("want the error for an update, got %v", diagText(resp.Diagnostics))
		}
	})
	t.Run("no interface asked for: none planned", func(t *testing.T) {
		for _, network := range []map[string]tftypes.Value{nil, {"enabled": tftypes.NewValue(tftypes.Bool, false)}} {
			resp := planOn(t, s, nil, newInstance(typ, network))
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			for _, name := range []string{"ip_address", "mac_address", "tap_device"} {
				if got := plannedAttr(t, resp, typ, name); !got.IsKnown() || !got.IsNull() {
					t.Errorf("network %v: %s planned %v, want null", network, name, got)
				}
			}
		}
	})
}

func TestCreatePlansTheFixedAddressesAndRefusesOnesOutsideTheSubnet(t *testing.T) {
	ptyp := providerType(t, protocolServer(t))
	s := configuredServer(t, map[string]tftypes.Value{"network": networkValue(ptyp, map[string]tftypes.Value{"subnet": str("10.123.0.0/24")})})
	typ := resourceType(t, s)
	unknown := tftypes.Value{}
	tests := []struct {
		name    string
		network map[string]tftypes.Value
		ip, mac tftypes.Value // the zero Value means unknown
		refused string
	}{
		{"no network attribute", nil, unknown, unknown, ""},
		{"fixed ip and mac", map[string]tftypes.Value{"ip": str("10.123.0.50"), "mac": str("02:AA:BB:CC:DD:EE")}, str("10.123.0.50"), str("02:aa:bb:cc:dd:ee"), ""},
		{"no interface", map[string]tftypes.Value{"enabled": tftypes.NewValue(tftypes.Bool, false)}, tftypes.NewValue(tftypes.String, nil), tftypes.NewValue(tftypes.String, nil), ""},
		{"the gateway", map[string]tftypes.Value{"ip": str("10.123.0.1")}, unknown, unknown, "except the gateway 10.123.0.1"},
		{"the broadcast address", map[string]tftypes.Value{"ip": str("10.123.0.255")}, unknown, unknown, "from 10.123.0.1 to 10.123.0.254"},
		{"outside the subnet", map[string]tftypes.Value{"ip": str("10.124.0.5")}, unknown, unknown, `network.ip "10.124.0.5" is not allowed: an address of the provider's subnet 10.123.0.0/24`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := planOn(t, s, nil, newInstance(typ, tt.network))
			if tt.refused != "" {
				if len(resp.Diagnostics) != 1 || !strings.Contains(resp.Diagnostics[0].Detail, tt.refused) {
					t.Fatalf("want one error mentioning %q, got %v", tt.refused, diagText(resp.Diagnostics))
				}
				return
			}
			if len(resp.Diagnostics) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			}
			expectPlanned(t, resp, typ, map[string]tftypes.Value{"ip_address": tt.ip, "mac_address": tt.mac})
		})
	}
}

func TestNetworkAttributeBecomesTheManagersNetworkSpec(t *testing.T) {
	ctx := context.Background()
	obj := func(enabled bool, ip, mac string, groups ...string) types.Object {
		opt := func(s string) types.String {
			if s == "" {
				return types.StringNull()
			}
			return types.StringValue(s)
		}
		peers := types.SetNull(types.StringType)
		if groups != nil {
			var elems []attr.Value
			for _, g := range groups {
				elems = append(elems, types.StringValue(g))
			}
			peers = types.SetValueMust(types.StringType, elems)
		}
		return types.ObjectValueMust(instanceNetworkAttrTypes, map[string]attr.Value{"enabled": types.BoolValue(enabled), "ip": opt(ip), "mac": opt(mac),
			"peer_groups": peers})
	}
	tests := []struct {
		name    string
		network types.Object
		want    *instances.NetworkSpec
	}{
		{"left out: the manager's default", types.ObjectNull(instanceNetworkAttrTypes), nil},
		{"defaults", obj(true, "", ""), &instances.NetworkSpec{}},
		{"no interface", obj(false, "", ""), &instances.NetworkSpec{Disabled: true}},
		{"fixed addresses", obj(true, "10.100.0.7", "02:00:00:00:00:07"), &instances.NetworkSpec{IP: "10.100.0.7", MAC: "02:00:00:00:00:07"}},
		{"peer groups, sorted", obj(true, "", "", "web", "db"), &instances.NetworkSpec{PeerGroups: []string{"db", "web"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m instanceResourceModel
			m.fill(ctx, sampleInstance())
			m.Network = tt.network
			spec, diags := m.spec(ctx)
			if diags.HasError() {
				t.Fatal(diags)
			}
			if !reflect.DeepEqual(spec.Network, tt.want) {
				t.Errorf("network spec = %+v, want %+v", spec.Network, tt.want)
			}
		})
	}
}
