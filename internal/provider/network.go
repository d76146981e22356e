package provider

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
)

// networkModel is the provider's network block. Its presence alone turns host networking on.
type networkModel struct {
	Bridge    types.String `tfsdk:"bridge"`
	Subnet    types.String `tfsdk:"subnet"`
	Gateway   types.String `tfsdk:"gateway"`
	DNS       types.List   `tfsdk:"dns"`
	Uplink    types.String `tfsdk:"uplink"`
	HostPorts types.List   `tfsdk:"host_ports"`
}

// networkEnv names the variable that fills in each setting of a network block that is present.
var networkEnv = map[string]string{
	"bridge": "HYPEMAN_BRIDGE", "subnet": "HYPEMAN_SUBNET", "gateway": "HYPEMAN_GATEWAY", "dns": "HYPEMAN_DNS", "uplink": "HYPEMAN_UPLINK",
}

// networkOptIn is why host networking needs the block, for the documentation.
const networkOptIn = "creating a bridge and NAT rules changes the host's network, which an operator opts into explicitly"

func networkBlock() schema.Block {
	return schema.SingleNestedBlock{
		MarkdownDescription: "The host network instances join. Its presence turns networking on (`network {}` takes every default): " +
			"the provider creates a Linux bridge with the gateway address, gives each instance an IPv4 address from `subnet` " +
			"and a MAC address for its whole life, attaches a TAP device per running instance to the bridge and, unless " +
			"`uplink = \"none\"`, masquerades guest traffic out of the uplink with an nftables rule. Guests are isolated from " +
			"each other (unless they share a `peer_groups` name) and from the host's services and other networks (but for " +
			"`host_ports`), by nftables chains of the provider's own. Without the block the " +
			"provider creates no bridge, TAP device or NAT rule, and instances have no network interface: " + networkOptIn + ". " +
			"For the same reason the `HYPEMAN_BRIDGE`, `HYPEMAN_SUBNET`, `HYPEMAN_GATEWAY`, `HYPEMAN_DNS` and `HYPEMAN_UPLINK` " +
			"variables only fill in settings of a block that is present; they never turn networking on. Networking needs the " +
			"`ip` command (iproute2) and `CAP_NET_ADMIN` (root) on the host, and `nft` (nftables) with IPv4 forwarding on for NAT. " +
			"Instances keep their addresses for life: an instance whose address is outside a changed `subnet` cannot boot " +
			"or restore until it is replaced.",
		Attributes: map[string]schema.Attribute{
			"bridge": schema.StringAttribute{
				MarkdownDescription: "The Linux bridge every instance's TAP device joins, created when missing: an interface name of " +
					"1 to 15 bytes without `/`, `:` or white space. Defaults to `$HYPEMAN_BRIDGE`, else `" + network.DefaultBridge + "`.",
				Optional: true,
				Validators: []validator.String{leaveOutForDefault("bridge", network.DefaultBridge),
					validNetworkSetting("bridge", func(s string) network.Config { return network.Config{Bridge: s} })},
			},
			"subnet": schema.StringAttribute{
				MarkdownDescription: "The IPv4 network instance addresses come from, in CIDR notation with no host bits set and a " +
					"prefix of at most /30. It must not overlap a route the host already has. Defaults to `$HYPEMAN_SUBNET`, else `" +
					network.DefaultSubnet + "`.",
				Optional: true,
				Validators: []validator.String{leaveOutForDefault("subnet", network.DefaultSubnet),
					validNetworkSetting("subnet", func(s string) network.Config { return network.Config{Subnet: s} })},
			},
			"gateway": schema.StringAttribute{
				MarkdownDescription: "The bridge's own address and the guests' default route: an address inside `subnet` other than " +
					"its network and broadcast addresses. Defaults to `$HYPEMAN_GATEWAY`, else the subnet's first address.",
				Optional:   true,
				Validators: []validator.String{leaveOutForDefault("gateway", "the subnet's first address")},
			},
			"dns": schema.ListAttribute{
				ElementType: types.StringType,
				MarkdownDescription: "Name servers (IPv4 or IPv6 addresses) written to the guests' `/etc/resolv.conf`. Defaults to " +
					"`$HYPEMAN_DNS` (comma-separated), else none: the image's own file is left alone.",
				Optional: true,
				Validators: []validator.List{listvalidator.ValueStringsAre(
					validNetworkSetting("dns", func(s string) network.Config { return network.Config{DNS: []string{s}} }))},
			},
			"host_ports": schema.ListAttribute{
				ElementType: types.Int64Type,
				MarkdownDescription: "TCP ports of the gateway address that guests may reach on the host, for a host service they " +
					"need (a registry, a metrics sink). Guests are isolated: without this they reach, of the host, only ping " +
					"of the gateway and its name server when the gateway is one of the `dns` servers. No variable fills it in.",
				Optional:   true,
				Validators: []validator.List{listvalidator.ValueInt64sAre(int64validator.Between(1, 65535))},
			},
			"uplink": schema.StringAttribute{
				MarkdownDescription: "The host interface guest traffic leaves through, masqueraded. Defaults to `$HYPEMAN_UPLINK`, else " +
					"the interface of the host's default route (no NAT when the host has none). `\"" + network.UplinkNone + "\"` adds no " +
					"NAT rule: guests reach the host and each other only.",
				Optional: true,
				Validators: []validator.String{leaveOutForDefault("uplink", "the interface of the host's default route"),
					validNetworkSetting("uplink", func(s string) network.Config { return network.Config{Uplink: s} })},
			},
		},
	}
}

// leaveOutForDefault refuses "" for a network setting, which would silently be its default.
func leaveOutForDefault(setting, def string) validator.String {
	return notEmpty("network "+setting, fmt.Sprintf("leave %s out (or null) for the default: $%s, else %s", setting, networkEnv[setting], def))
}

// validNetworkSetting is the manager's own check of one setting, given alone in cfg, as a
// validator. The gateway depends on the subnet and is checked in Configure.
func validNetworkSetting(setting string, cfg func(string) network.Config) validator.String {
	return checkString{"Invalid Provider Setting", "must be a valid network " + setting, func(s string) error {
		for _, err := range cfg(s).Check() {
			var se *network.SettingError
			if errors.As(err, &se) && se.Setting == setting {
				return err
			}
		}
		return nil
	}}
}

// resolveNetwork turns the network block into the manager's configuration: each setting from the
// block, else its HYPEMAN_* variable, else the manager's default. Without a block networking is
// off and the variables are not read.
func resolveNetwork(m *networkModel, getenv func(string) string) (network.Config, diag.Diagnostics) {
	var diags diag.Diagnostics
	if m == nil {
		return network.Config{}, diags
	}
	fromEnv := map[string]bool{}
	pick := func(setting string, v types.String) string {
		if !v.IsNull() {
			return v.ValueString()
		}
		e := getenv(networkEnv[setting])
		fromEnv[setting] = e != ""
		return e
	}
	cfg := network.Config{
		Enabled: true,
		Bridge:  pick("bridge", m.Bridge),
		Subnet:  pick("subnet", m.Subnet),
		Gateway: pick("gateway", m.Gateway),
		Uplink:  pick("uplink", m.Uplink),
	}
	for _, e := range m.HostPorts.Elements() {
		if p, ok := e.(types.Int64); ok {
			cfg.HostPorts = append(cfg.HostPorts, int(p.ValueInt64()))
		}
	}
	if !m.DNS.IsNull() {
		for _, e := range m.DNS.Elements() {
			if s, ok := e.(types.String); ok {
				cfg.DNS = append(cfg.DNS, s.ValueString())
			}
		}
	} else if e := getenv(networkEnv["dns"]); e != "" {
		cfg.DNS, fromEnv["dns"] = strings.FieldsFunc(e, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }), true
	}
	for _, err := range cfg.Check() {
		var se *network.SettingError
		if !errors.As(err, &se) {
			diags.AddAttributeError(path.Root("network"), "Invalid Provider Setting", err.Error())
			continue
		}
		at := path.Root("network").AtName(se.Setting)
		detail := se.Error()
		switch {
		case fromEnv[se.Setting]:
			detail += fmt.Sprintf(" (the value comes from %s)", networkEnv[se.Setting])
		case se.Setting == "dns":
			for i, d := range cfg.DNS {
				if d == se.Value {
					at = at.AtListIndex(i)
					break
				}
			}
		}
		diags.AddAttributeError(at, "Invalid Provider Setting", detail)
	}
	return cfg, diags
}

// checkIP accepts what the manager can lease to an instance on the provider's network a.
func checkIP(a *network.Addresses, ip netip.Addr) error {
	if a.Leasable(ip) {
		return nil
	}
	return &instances.FieldError{Field: "network.ip", Value: ip.String(), Allowed: fmt.Sprintf(
		"an address of the provider's subnet %s that an instance can have: from %s to %s, except the gateway %s", a.Subnet, a.First(), a.Last(), a.Gateway)}
}
