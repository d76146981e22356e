package instances

import (
	"context"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// A live resize whose caller died after it saved the new size, before the guest took it, leaves
// metadata that asks for more memory than the guest has. Get reports the guest's memory, so the
// next plan shows the difference, and the next Update with the same spec gives the memory live.
// The tests make that state directly: the metadata as the killed caller saved it.

// saveUnfinishedResize saves memory in inst's metadata without telling the guest.
func saveUnfinishedResize(t *testing.T, m *Manager, inst *Instance, memory int64) {
	t.Helper()
	ctx := context.Background()
	md, err := m.loadMetadata(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	md.Memory = memory
	if err := m.saveMetadata(ctx, md); err != nil {
		t.Fatal(err)
	}
}

func TestUnfinishedLiveResizeShowsTheGuestsMemoryAndTheNextUpdateFinishesIt(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.resizeSpec("unfinished-resize")
	spec.Memory, spec.MaxMemory = 256*units.MiB, 768*units.MiB
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	saveUnfinishedResize(t, env.m, inst, 512*units.MiB)

	got, err := env.m.Get(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Memory != 256*units.MiB || got.MaxMemory != 768*units.MiB || got.State != Running {
		t.Fatalf("Get after an unfinished resize: memory %s, max_memory %s, %s; want the guest's 256MiB of 768MiB, Running",
			units.Format(got.Memory), units.Format(got.MaxMemory), got.State)
	}
	changes, err := ResizeChanges(withMemory(spec, got.Memory), got.State, withMemory(spec, 512*units.MiB)) // as the plan sees it
	if err != nil || len(changes) != 1 || changes[0].String() != "memory 256MiB → 512MiB: live" {
		t.Fatalf("the plan's changes: %v, %v; want memory 256MiB → 512MiB: live", changes, err)
	}

	offset := env.consoleLen(t, inst)
	got, err = env.m.Update(ctx, inst.ID, withMemory(spec, 512*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	if got.Memory != 512*units.MiB || got.PID != inst.PID {
		t.Fatalf("after the next Update: memory %s, pid %d (was %d); want 512MiB in the same VMM", units.Format(got.Memory), got.PID, inst.PID)
	}
	env.waitMemTotal(t, inst, offset, func(kb int) bool { return kb > 384*1024 && kb <= 512*1024 })
	env.deleteAndCheckGone(t, inst)
}

func TestCloudHypervisorUnfinishedLiveResizeShowsTheGuestsMemory(t *testing.T) {
	env := newTestEnv(t)
	m := chManager(t, env, "head", "")
	ctx := testContext(t)
	spec := env.spec("chunfinished")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	spec.Memory, spec.MaxMemory = 256*units.MiB, 768*units.MiB
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	saveUnfinishedResize(t, m, inst, 512*units.MiB)
	if got, err := m.Get(ctx, inst.ID); err != nil || got.Memory != 256*units.MiB {
		t.Fatalf("Get after an unfinished resize: %v, memory %s; want the guest's 256MiB", err, units.Format(got.Memory))
	}
	if got, err := m.Update(ctx, inst.ID, withMemory(spec, 512*units.MiB)); err != nil || got.Memory != 512*units.MiB || got.PID != inst.PID {
		t.Fatalf("the next Update: %v (%+v); want 512MiB in pid %d", err, got, inst.PID)
	}
	env.m = m
	env.deleteAndCheckGone(t, inst)
}

func withMemory(s Spec, memory int64) Spec {
	s.Memory = memory
	return s
}
