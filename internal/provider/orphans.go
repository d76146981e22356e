package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// Orphans: VMM processes whose instance directory was removed while they ran. The manager finds
// them (instances.Orphans); here they are listed by hypeman_instances and named in warnings.

// orphanModel is one orphaned VMM in the hypeman_instances data source.
type orphanModel struct {
	PID        types.Int64  `tfsdk:"pid"`
	ID         types.String `tfsdk:"id"`
	Directory  types.String `tfsdk:"directory"`
	Hypervisor types.String `tfsdk:"hypervisor"`
	Name       types.String `tfsdk:"name"`
}

func newOrphanModel(o instances.Orphan) orphanModel {
	name := types.StringNull()
	if o.Name != "" {
		name = types.StringValue(o.Name)
	}
	return orphanModel{
		PID: types.Int64Value(int64(o.PID)), ID: types.StringValue(o.ID), Directory: types.StringValue(o.Dir),
		Hypervisor: types.StringValue(o.Hypervisor), Name: name,
	}
}

// orphansAttribute is the schema of the data source's orphans list.
func orphansAttribute() schema.ListNestedAttribute {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{MarkdownDescription: desc, Computed: true}
	}
	return schema.ListNestedAttribute{
		MarkdownDescription: "VMM processes that still run for an instance whose directory is gone (removed outside Terraform " +
			"while the VM ran), sorted by id. No instance shows them, and each holds its guest's memory. The next create of " +
			"the name stops such a VMM before it makes the new instance; one whose name is gone too must be stopped on the host " +
			"(`kill <pid>`). A warning names them whenever the list is not empty.",
		Computed: true,
		NestedObject: schema.NestedAttributeObject{
			Attributes: map[string]schema.Attribute{
				"pid":        schema.Int64Attribute{MarkdownDescription: "The VMM's process id on the host.", Computed: true},
				"id":         str("The id of the instance the VMM was started for."),
				"directory":  str("That instance's directory, which no longer exists."),
				"hypervisor": str("The VMM: `cloud-hypervisor` or `qemu`."),
				"name":       str("The name that still points at the instance's id; null when none does."),
			},
		},
	}
}

// describeOrphan is one orphan on one line, for warnings.
func describeOrphan(o instances.Orphan) string {
	s := fmt.Sprintf("the %s process %d of %s", o.Hypervisor, o.PID, o.Dir)
	if o.Name != "" {
		s += fmt.Sprintf(" (name %q)", o.Name)
	}
	return s
}

// orphansWarning names every orphan of the host, and what stops each.
func orphansWarning(orphans []instances.Orphan, diags *diag.Diagnostics) {
	if len(orphans) == 0 {
		return
	}
	lines := make([]string, len(orphans))
	for i, o := range orphans {
		lines[i] = "- " + describeOrphan(o)
	}
	diags.AddWarning("VMMs Run for Instances That No Longer Exist",
		fmt.Sprintf("These VMM processes still run, but the directory of their instance was removed while the VM ran, so no "+
			"instance shows them:\n%s\n\nThe next create of an instance of the same name stops its VMM first. One without a "+
			"name is stopped only on the host: kill <pid>.", strings.Join(lines, "\n")))
}

// warnOrphaned is for a Read that found no instance: when its VMM still runs, the user is told,
// since forgetting the instance would otherwise leave that VMM running unseen.
func warnOrphaned(ctx context.Context, m *instances.Manager, id, name string, diags *diag.Diagnostics) {
	orphans, err := m.Orphans(ctx)
	if err != nil {
		tflog.Warn(ctx, "could not look for the VMM of a removed instance", map[string]any{"id": id, "error": err.Error()})
		return
	}
	for _, o := range orphans {
		if o.ID != id {
			continue
		}
		next := fmt.Sprintf("Creating an instance named %q again on this host stops that VMM first", o.Name)
		if o.Name == "" {
			next = "No name points at it any more, so no create stops it"
		}
		diags.AddWarning("Instance Removed, Its VMM Still Runs",
			fmt.Sprintf("Instance: %s\nThe instance's directory was removed outside Terraform while its VM ran, and %s still runs: "+
				"the guest goes on and holds its memory, but no instance shows it. Terraform removes the instance from the state.\n\n"+
				"%s; the hypeman_instances data source lists it under orphans. To stop it now: kill %d on the host.",
				describe(name, id), describeOrphan(o), next, o.PID))
	}
}
