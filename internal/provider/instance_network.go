package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
)

var _ validator.Object = networkConsistent{}

// instanceNetworkModel is hypeman_instance's network attribute.
type instanceNetworkModel struct {
	Enabled    types.Bool   `tfsdk:"enabled"`
	IP         types.String `tfsdk:"ip"`
	MAC        types.String `tfsdk:"mac"`
	PeerGroups types.Set    `tfsdk:"peer_groups"`
}

var instanceNetworkAttrTypes = map[string]attr.Type{"enabled": types.BoolType, "ip": types.StringType, "mac": types.StringType,
	"peer_groups": types.SetType{ElemType: types.StringType}}

func instanceNetworkAttribute() schema.Attribute {
	return schema.SingleNestedAttribute{
		MarkdownDescription: "The instance's network interface on the provider's host network. Leave it out for the default: an " +
			"interface with the next free address when the provider has a `network` block, and none when it has not. Setting " +
			"it while the provider has no `network` block fails at plan time. An instance keeps its addresses for its whole " +
			"life, so changing this replaces the instance, unless the instance already has what it asks for (for example " +
			"`ip` set to the address it already has).",
		Optional: true,
		Attributes: map[string]schema.Attribute{
			"enabled": schema.BoolAttribute{
				MarkdownDescription: "`false` gives the instance no network interface. Defaults to `true`.",
				Optional:            true,
				Computed:            true,
				Default:             booldefault.StaticBool(true),
			},
			"ip": schema.StringAttribute{
				MarkdownDescription: "A fixed IPv4 address inside the provider's `subnet`, other than its gateway. Leave it out for " +
					"the lowest free address. An address another instance holds is refused when the instance is created.",
				Optional:   true,
				Validators: []validator.String{validInstanceIP()},
			},
			"mac": schema.StringAttribute{
				MarkdownDescription: "A fixed unicast MAC address such as `02:00:00:00:00:01`. Leave it out for one derived from the address.",
				Optional:            true,
				Validators:          []validator.String{validMAC()},
			},
			"peer_groups": schema.SetAttribute{
				MarkdownDescription: "The groups of guests this instance reaches on the bridge, and is reached by. Guests are " +
					"isolated by default: a guest reaches the gateway's name server (when the gateway is one of the provider's " +
					"`dns` servers), ping of the gateway and the outside through NAT, and no other guest and no other service of " +
					"the host. Two instances that share a group reach each other. Each name: " + network.PeerGroupRule + ". " +
					"Changing it takes effect at once, without a restart.",
				ElementType: types.StringType,
				Optional:    true,
				Validators:  []validator.Set{setvalidator.ValueStringsAre(validPeerGroup())},
			},
		},
		Validators: []validator.Object{networkConsistent{}},
		PlanModifiers: []planmodifier.Object{objectplanmodifier.RequiresReplaceIf(replaceForNetwork,
			"Replaces the instance unless it already has the network interface this asks for.",
			"Replaces the instance unless it already has the network interface this asks for.")},
	}
}

func validInstanceIP() validator.String {
	return checkString{"Invalid Instance Network", "must be an IPv4 address", instances.ValidateIP}
}

func validPeerGroup() validator.String {
	return checkString{"Invalid Instance Network", "must be a peer group name", instances.ValidatePeerGroup}
}

func validMAC() validator.String {
	return checkString{"Invalid Instance Network", "must be a unicast MAC address", instances.ValidateMAC}
}

// networkConsistent refuses addresses for an instance that is to have no network interface.
type networkConsistent struct{}

func (networkConsistent) Description(context.Context) string {
	return "ip and mac need enabled = true"
}

func (v networkConsistent) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (networkConsistent) ValidateObject(ctx context.Context, req validator.ObjectRequest, resp *validator.ObjectResponse) {
	n, diags := instanceNetwork(ctx, req.ConfigValue)
	resp.Diagnostics.Append(diags...)
	if n == nil || n.Enabled.IsNull() || n.Enabled.IsUnknown() || n.Enabled.ValueBool() {
		return
	}
	if !n.PeerGroups.IsNull() {
		resp.Diagnostics.AddAttributeError(req.Path.AtName("peer_groups"), "Invalid Instance Network",
			"network.peer_groups is not allowed with enabled = false: an instance without a network interface has no peers; remove peer_groups or set enabled = true")
	}
	for name, v := range map[string]types.String{"ip": n.IP, "mac": n.MAC} {
		if !v.IsNull() {
			resp.Diagnostics.AddAttributeError(req.Path.AtName(name), "Invalid Instance Network",
				fmt.Sprintf("network.%s is not allowed with enabled = false: an instance without a network interface has no address; remove %s or set enabled = true", name, name))
		}
	}
}

// instanceNetwork reads the network attribute; nil when it is null or unknown.
func instanceNetwork(ctx context.Context, o types.Object) (*instanceNetworkModel, diag.Diagnostics) {
	if o.IsNull() || o.IsUnknown() {
		return nil, nil
	}
	var n instanceNetworkModel
	diags := o.As(ctx, &n, basetypes.ObjectAsOptions{})
	return &n, diags
}

// spec is the manager's view of the attribute; nil asks for the manager's default.
func (n *instanceNetworkModel) spec() *instances.NetworkSpec {
	if n == nil {
		return nil
	}
	return &instances.NetworkSpec{Disabled: !n.wantsInterface(), IP: n.IP.ValueString(), MAC: n.MAC.ValueString(), PeerGroups: n.peerGroups()}
}

// peerGroups are the peer groups asked for, sorted; nil for none (or while unknown).
func (n *instanceNetworkModel) peerGroups() []string {
	if n == nil || n.PeerGroups.IsNull() || n.PeerGroups.IsUnknown() {
		return nil
	}
	var groups []string
	for _, e := range n.PeerGroups.Elements() {
		if s, ok := e.(types.String); ok && !s.IsUnknown() {
			groups = append(groups, s.ValueString())
		}
	}
	slices.Sort(groups)
	return groups
}

// peerGroupsChanged reports whether an update gives the instance other peer groups.
func peerGroupsChanged(ctx context.Context, plan, prior types.Object) bool {
	p, _ := instanceNetwork(ctx, plan)
	q, _ := instanceNetwork(ctx, prior)
	return !slices.Equal(p.peerGroups(), q.peerGroups())
}

// wantsInterface is enabled, which defaults to true.
func (n *instanceNetworkModel) wantsInterface() bool {
	return n.Enabled.IsNull() || n.Enabled.ValueBool()
}

// unknown reports whether any setting is known only after apply.
func (n *instanceNetworkModel) unknown() bool {
	return n.Enabled.IsUnknown() || n.IP.IsUnknown() || n.MAC.IsUnknown() // peer groups change in place
}

// differsFrom reports whether an instance with the addresses ip and mac (null: no interface)
// lacks what n asks for, by the manager's own rule for a network change (instances.NetworkDiff):
// what n leaves unset asks for nothing.
func (n *instanceNetworkModel) differsFrom(ip, mac types.String) bool {
	have := &instances.NetworkSpec{Disabled: ip.IsNull(), IP: ip.ValueString(), MAC: mac.ValueString()}
	return n.unknown() || len(instances.NetworkDiff(have, n.spec())) > 0
}

// replaceForNetwork replaces the instance when the network it is planned with differs from the
// interface it has; a network left out asks for nothing, as it does of the manager.
func replaceForNetwork(ctx context.Context, req planmodifier.ObjectRequest, resp *objectplanmodifier.RequiresReplaceIfFuncResponse) {
	var ip, mac types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("ip_address"), &ip)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("mac_address"), &mac)...)
	replace, diags := networkReplaces(ctx, req.PlanValue, ip, mac)
	resp.Diagnostics.Append(diags...)
	resp.RequiresReplace = replace
}

// networkReplaces reports whether planned, a network attribute, asks for an interface other than
// the instance's (ip, mac: null for none).
func networkReplaces(ctx context.Context, planned types.Object, ip, mac types.String) (bool, diag.Diagnostics) {
	if planned.IsUnknown() {
		return true, nil
	}
	want, diags := instanceNetwork(ctx, planned)
	if want == nil || diags.HasError() {
		return false, diags
	}
	return want.differsFrom(ip, mac), diags
}

// planNetwork rejects at plan time an instance network the provider cannot give (the manager
// would create the instance without an interface, or fail at apply), and plans the addresses of
// a new instance that can be known before it exists.
func (r *InstanceResource) planNetwork(ctx context.Context, p *instancePlan, resp *resource.ModifyPlanResponse) {
	plan, creating := &p.plan, p.creating()
	if r.manager == nil {
		return // not configured: there is no provider network to check against
	}
	n, diags := instanceNetwork(ctx, plan.Network)
	resp.Diagnostics.Append(diags...)
	if diags.HasError() || plan.Network.IsUnknown() {
		return
	}
	addrs := r.manager.Addresses() // nil when the provider has no network block
	if n != nil && !n.Enabled.IsUnknown() && n.wantsInterface() && addrs == nil {
		action, left := "Update", "nothing was changed"
		if creating {
			action, left = "Create", "nothing: the instance was not created"
		}
		resp.Diagnostics.AddAttributeError(path.Root("network"), "Unable to "+action+" Instance", fmt.Sprintf(
			"Instance: %s\nError: network asks for a network interface, but the provider has no network block, so there is no host "+
				"network to attach it to.\nLeft in: %s\n\nAdd a network block to the provider configuration (provider \"hypeman\" { network {} }) "+
				"to turn host networking on, or leave network out of this instance, or set network = { enabled = false }.",
			describe(plan.Name.ValueString(), plan.ID.ValueString()), left))
		return
	}
	if !creating {
		return
	}
	noInterface := (n == nil && addrs == nil) || (n != nil && !n.Enabled.IsUnknown() && !n.wantsInterface())
	switch {
	case noInterface:
		plan.IPAddress, plan.MACAddress, plan.TapDevice = types.StringNull(), types.StringNull(), types.StringNull()
	case n != nil && addrs != nil:
		if ip, err := netip.ParseAddr(n.IP.ValueString()); err == nil && !n.IP.IsUnknown() {
			if err := checkIP(addrs, ip); err != nil {
				resp.Diagnostics.AddAttributeError(path.Root("network").AtName("ip"), "Invalid Instance Network", err.Error())
				return
			}
			plan.IPAddress = types.StringValue(ip.String())
		}
		if mac, err := network.ParseMAC(n.MAC.ValueString()); err == nil && !n.MAC.IsUnknown() {
			plan.MACAddress = types.StringValue(mac)
		}
	}
}
