package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
)

// leftStateTimeout bounds the read that tells the user what a failed operation left behind; it
// runs even when the operation's own deadline has passed.
const leftStateTimeout = 15 * time.Second

// failure is one failed instance operation, reported in the provider's one voice:
// "Unable to <Action> Instance", then the instance, the error, and the state it was left in.
type failure struct {
	action string // "Create", "Read", "Update", "Delete", "Import"
	name   string
	id     string
	err    error
	// left describes what the failure left on the host; empty asks the manager.
	left string
	// at is the attribute a plan-time check found at fault; empty for none.
	at path.Path
}

func (f failure) add(ctx context.Context, m *instances.Manager, diags *diag.Diagnostics) {
	left := f.left
	if left == "" {
		left = leftState(ctx, m, f.id, f.name)
	}
	addFailure(diags, "Instance", f.action, describe(f.name, f.id), f.err, left, hint(f.err, f.name), f.at)
}

// addFailure adds one failed operation on a kind of object ("Instance", "Volume") in the
// provider's one voice: "Unable to <Action> <Kind>", then the object, the error, what it was
// left in (when known) and the way out (when there is one), at the attribute at when it is set.
func addFailure(diags *diag.Diagnostics, kind, action, object string, err error, left, wayOut string, at path.Path) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\nError: %v", kind, object, err)
	if left != "" {
		fmt.Fprintf(&b, "\nLeft in: %s", left)
	}
	if wayOut != "" {
		fmt.Fprintf(&b, "\n\n%s", wayOut)
	}
	if len(at.Steps()) > 0 {
		diags.AddAttributeError(at, "Unable to "+action+" "+kind, b.String())
		return
	}
	diags.AddError("Unable to "+action+" "+kind, b.String())
}

// leftState asks the manager what the instance looks like now.
func leftState(ctx context.Context, m *instances.Manager, id, name string) string {
	key := id
	if key == "" {
		key = name
	}
	if key == "" || m == nil {
		return "unknown"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leftStateTimeout)
	defer cancel()
	inst, err := m.Get(ctx, key)
	switch {
	case errors.Is(err, instances.ErrNotFound):
		return "the instance does not exist on the host"
	case err != nil:
		return fmt.Sprintf("unknown: reading the instance back failed too: %v", err)
	}
	return observed(inst)
}

// observed is one line on an instance's live state, with what helps to debug it.
func observed(inst *instances.Instance) string {
	s := fmt.Sprintf("the instance is %s", inst.State)
	if inst.StateReason != "" {
		s += fmt.Sprintf(" (%s)", inst.StateReason)
	}
	if inst.ConsoleLog != "" {
		s += fmt.Sprintf("; its console log on the host is %s", inst.ConsoleLog)
	}
	return s
}

// hint says what to do about the errors a user can act on; name is the instance's.
func hint(err error, name string) string {
	if name == "" {
		name = "<instance name>"
	}
	switch {
	case errors.Is(err, instances.ErrNameBeingCreated):
		return "Another operation (another terraform run against this host?) is creating an instance of that name right now. Let it finish, then import the instance (terraform import hypeman_instance.<label> " + name + ") or choose another name."
	case errors.Is(err, instances.ErrNameTaken):
		return "Another instance on this host has that name. Import it (terraform import hypeman_instance.<label> " + name + ") or choose another name."
	case errors.Is(err, host.ErrConnectionLost):
		return "The SSH connection to the host ended during the operation, so it may or may not have taken effect there. The next run reconnects; run terraform plan to see where the instance is."
	case errors.Is(err, instances.ErrNotReady):
		return "The instance booted but did not show what wait_for asks for (the error says which condition, and the console's last lines). " +
			"Read its console log, then fix the program or wait_for, or raise the operation's timeout (timeouts = { create = \"20m\" }); the next apply boots it again."
	case errors.Is(err, context.DeadlineExceeded):
		return "The operation did not finish within its timeout. Raise it in the resource's timeouts attribute, e.g. timeouts = { create = \"20m\" }."
	}
	return ""
}
