package provider

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// planName finds at plan time a name that another instance on the host holds, which a create
// would only find at apply. The host is asked only when the name is known; when it cannot be
// asked, the plan says nothing and apply tells.
func (r *InstanceResource) planName(ctx context.Context, p *instancePlan, resp *resource.ModifyPlanResponse) {
	if !p.creating() || r.manager == nil || p.plan.Name.IsUnknown() {
		return
	}
	name := p.plan.Name.ValueString()
	ctx, cancel := context.WithTimeout(ctx, planLookTimeout)
	defer cancel()
	holder, err := r.manager.NameHolder(ctx, name)
	switch {
	case err == nil:
		return
	case !errors.Is(err, instances.ErrNameTaken):
		tflog.Debug(ctx, "could not check the name at plan time", map[string]any{"name": name, "error": err.Error()})
		return
	case inState.has(holder):
		return // the replacement of an instance Terraform manages: it is deleted before the create
	}
	failure{action: "Create", name: name, at: path.Root("name"),
		err:  fmt.Errorf("%w, on this host (data_dir %s)", err, r.manager.DataDir()),
		left: "nothing was changed"}.add(ctx, r.manager, &resp.Diagnostics)
}

// inState holds the ids of the instances that Terraform has handed this provider process in a
// prior state (a refresh, a plan). The create half of a replacement, or of a tainted instance,
// meets the name its predecessor still holds; that is not a name taken by another.
var inState idSet

type idSet struct{ ids sync.Map }

func (s *idSet) remember(id string) {
	if id != "" {
		s.ids.Store(id, struct{}{})
	}
}

func (s *idSet) has(id string) bool {
	_, ok := s.ids.Load(id)
	return ok
}
