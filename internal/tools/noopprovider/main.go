// Command noopprovider is the baseline of the plan benchmarks: a plugin-framework provider whose
// one resource, noop_id, has the shape of hashicorp/random's random_id (8 attributes, the same plan
// modifiers, a Read that does nothing) and asks nothing of any host. Planned through the Terraform
// CLI next to hypeman_instance, it measures what the framework and the protocol cost per resource,
// so that the provider's own cost is what remains. It is never part of the released provider.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"log"
	"math/big"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/provider/pluginlogs"
)

func main() {
	// The same log defaults as the released provider, so that both are measured alike.
	pluginlogs.QuietUnlessAsked("noop")
	err := providerserver.Serve(context.Background(), func() provider.Provider { return noopProvider{} }, providerserver.ServeOpts{
		Address: "registry.terraform.io/hypeman/noop",
	})
	if err != nil {
		log.Fatal(err)
	}
}

type noopProvider struct{}

func (noopProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "noop"
}

func (noopProvider) Schema(context.Context, provider.SchemaRequest, *provider.SchemaResponse) {}

func (noopProvider) Configure(context.Context, provider.ConfigureRequest, *provider.ConfigureResponse) {
}

func (noopProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{func() resource.Resource { return idResource{} }}
}

func (noopProvider) DataSources(context.Context) []func() datasource.DataSource { return nil }

// idResource is random_id's shape: every input replaces it, every output is kept from the state.
type idResource struct{}

type idModel struct {
	ID         types.String `tfsdk:"id"`
	Keepers    types.Map    `tfsdk:"keepers"`
	ByteLength types.Int64  `tfsdk:"byte_length"`
	Prefix     types.String `tfsdk:"prefix"`
	B64URL     types.String `tfsdk:"b64_url"`
	B64Std     types.String `tfsdk:"b64_std"`
	Hex        types.String `tfsdk:"hex"`
	Dec        types.String `tfsdk:"dec"`
}

func (idResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_id"
}

func (idResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	kept := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	out := func() schema.StringAttribute { return schema.StringAttribute{Computed: true, PlanModifiers: kept} }
	resp.Schema = schema.Schema{
		Attributes: map[string]schema.Attribute{
			"id": out(),
			"keepers": schema.MapAttribute{ElementType: types.StringType, Optional: true,
				PlanModifiers: []planmodifier.Map{mapplanmodifier.RequiresReplace()}},
			"byte_length": schema.Int64Attribute{Required: true,
				PlanModifiers: []planmodifier.Int64{int64planmodifier.RequiresReplace()}},
			"prefix": schema.StringAttribute{Optional: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"b64_url": out(),
			"b64_std": out(),
			"hex":     out(),
			"dec":     out(),
		},
	}
}

func (idResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m idModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	b := make([]byte, m.ByteLength.ValueInt64())
	if _, err := rand.Read(b); err != nil {
		resp.Diagnostics.AddError("Unable to Create ID", err.Error())
		return
	}
	url := base64.RawURLEncoding.EncodeToString(b)
	m.ID = types.StringValue(url)
	m.B64URL = types.StringValue(m.Prefix.ValueString() + url)
	m.B64Std = types.StringValue(m.Prefix.ValueString() + base64.StdEncoding.EncodeToString(b))
	m.Hex = types.StringValue(m.Prefix.ValueString() + hex.EncodeToString(b))
	m.Dec = types.StringValue(m.Prefix.ValueString() + new(big.Int).SetBytes(b).String())
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// Read does nothing, as random_id's: the state stays as it is.
func (idResource) Read(context.Context, resource.ReadRequest, *resource.ReadResponse) {}

// Update is never planned (every input replaces), but the interface wants it.
func (idResource) Update(_ context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	resp.State.Raw = req.Plan.Raw
}

func (idResource) Delete(context.Context, resource.DeleteRequest, *resource.DeleteResponse) {}
