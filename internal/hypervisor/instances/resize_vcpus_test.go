package instances

import (
	"context"
	"strings"
	"testing"
)

func TestVCPUChangesSayWhatApplyDoes(t *testing.T) {
	spec := func(vcpus, maxVCPUs int) Spec {
		return Spec{VCPUs: vcpus, MaxVCPUs: maxVCPUs, Memory: DefaultMemory, OverlaySize: DefaultOverlay, Hypervisor: "cloud-hypervisor"}
	}
	onQEMU := func(s Spec) Spec {
		s.Hypervisor = "qemu"
		return s
	}
	tests := []struct {
		name       string
		have, want Spec
		cur        State
		changes    []string
	}{
		{"no ceiling: a restart", spec(1, 0), spec(2, 0), Running, []string{"vcpus 1 → 2: restart in place"}},
		{"up within the ceiling", spec(2, 4), spec(4, 4), Running, []string{"vcpus 2 → 4: live"}},
		{"down to one within the ceiling", spec(4, 4), spec(1, 4), Running, []string{"vcpus 4 → 1: live"}},
		{"up on QEMU", onQEMU(spec(2, 4)), onQEMU(spec(4, 4)), Running, []string{"vcpus 2 → 4: live"}},
		{"down on QEMU, which only adds vCPUs live", onQEMU(spec(4, 4)), onQEMU(spec(1, 4)), Running, []string{"vcpus 4 → 1: restart in place"}},
		{"down on QEMU in Standby", onQEMU(spec(3, 4)), onQEMU(spec(2, 4)), Standby, []string{"vcpus 3 → 2: restart in place"}},
		{"in Standby", spec(2, 4), spec(3, 4), Standby, []string{"vcpus 2 → 3: live, at the restore from Standby"}},
		{"stopped", spec(2, 4), spec(3, 4), Stopped, []string{"vcpus 2 → 3: at the next start"}},
		{"paused: the guest cannot take it", spec(2, 4), spec(3, 4), Paused, []string{"vcpus 2 → 3: restart in place"}},
		{"a new ceiling", spec(2, 4), spec(2, 8), Running, []string{"max_vcpus 4 → 8: restart in place"}},
		{"a first ceiling", spec(2, 0), spec(4, 4), Running, []string{"vcpus 2 → 4: restart in place", "max_vcpus none → 4: restart in place"}},
		{"the ceiling dropped", spec(2, 4), spec(2, 0), Running, []string{"max_vcpus 4 → none: restart in place"}},
		{"the same", spec(2, 4), spec(2, 4), Running, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changes, err := ResizeChanges(tt.have, tt.cur, tt.want)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range changes {
				got = append(got, c.String())
			}
			if strings.Join(got, "; ") != strings.Join(tt.changes, "; ") {
				t.Errorf("changes %q, want %q", got, tt.changes)
			}
		})
	}
	// The guest that runs is what counts: one booted without slots restarts even when the spec
	// has had a ceiling since (a restart in place that did not finish).
	changes, err := resizeChanges(spec(2, 4), bootLayout{spec(2, 4).layout(), 0}, Running, spec(3, 4))
	if err != nil || len(changes) != 1 || changes[0].Action != ActionRestart {
		t.Errorf("a guest booted without slots: %v, %v; want a restart", changes, err)
	}
}

func TestMaxVCPUsIsCheckedAgainstVCPUs(t *testing.T) {
	for _, tt := range []struct {
		n, vcpus int64
		ok       bool
	}{{0, 4, true}, {4, 4, true}, {8, 4, true}, {3, 4, false}, {MaxVCPUs, 0, true}, {MaxVCPUs + 1, 1, false}, {-1, 1, false}} {
		err := CheckMaxVCPUs(tt.n, tt.vcpus)
		if (err == nil) != tt.ok {
			t.Errorf("CheckMaxVCPUs(%d, %d) = %v, want ok=%v", tt.n, tt.vcpus, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "max_vcpus") {
			t.Errorf("the error does not name max_vcpus: %v", err)
		}
	}
}

// On QEMU, more vCPUs within max_vcpus come live: the same VMM process, the guest brings them
// online and its program counts on. A Standby instance takes its new count at the restore, which
// keeps the ones the snapshot had; fewer restart the instance in place, as QEMU only adds vCPUs
// live; and a change the caller died in shows in Get, and the next Update finishes it.
func TestVCPUsChangeLiveWithinTheCeiling(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.resizeSpec("live-vcpus")
	spec.VCPUs, spec.MaxVCPUs = 1, 3
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	env.waitLine(t, inst, cpusRE, 0, "cpus", func(n int) bool { return n == 1 })

	offset := env.consoleLen(t, inst)
	before := env.waitCount(t, inst, 0, 0)
	spec.VCPUs = 2
	got, err := env.m.Update(ctx, inst.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != inst.PID || got.State != Running || got.VCPUs != 2 {
		t.Fatalf("after a live change to 2 vcpus: pid %d (was %d), state %s, vcpus %d", got.PID, inst.PID, got.State, got.VCPUs)
	}
	env.waitLine(t, inst, cpusRE, offset, "cpus", func(n int) bool { return n == 2 })
	env.waitCount(t, inst, before+3, offset)
	if c := string(env.console(t, inst)[offset:]); strings.Contains(c, "KEPT<") {
		t.Fatalf("a live vCPU change restarted the program:\n%s", c)
	}

	// Standby keeps the 2 in its snapshot, and the 3 asked for meanwhile come at the restore.
	before = env.waitCount(t, inst, 0, 0)
	if _, err := env.m.SetState(ctx, inst.ID, Standby); err != nil {
		t.Fatal(err)
	}
	spec.VCPUs = 3
	if got, err := env.m.Update(ctx, inst.ID, spec); err != nil || got.State != Standby || got.VCPUs != 3 {
		t.Fatalf("Update of a Standby instance's vcpus within its ceiling: %+v, %v", got, err)
	}
	offset = env.consoleLen(t, inst)
	restored, err := env.m.SetState(ctx, inst.ID, Running)
	if err != nil {
		t.Fatal(err)
	}
	if restored.VCPUs != 3 || restored.PID == inst.PID {
		t.Errorf("restored with %d vcpus in pid %d; want 3 in a new VMM", restored.VCPUs, restored.PID)
	}
	env.waitLine(t, inst, cpusRE, offset, "cpus", func(n int) bool { return n == 3 })
	env.waitCount(t, inst, before+3, offset)
	if c := string(env.console(t, inst)[offset:]); strings.Contains(c, "KEPT<") || strings.Contains(c, "count 0\n") {
		t.Fatalf("the restore rebooted the guest:\n%s", c)
	}

	// Fewer: a restart in place, the overlay kept.
	offset = env.consoleLen(t, inst)
	spec.VCPUs = 1
	got, err = env.m.Update(ctx, inst.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != inst.ID || got.PID == restored.PID || got.State != Running || got.VCPUs != 1 {
		t.Fatalf("after fewer vcpus: id %s, pid %d (was %d), state %s, vcpus %d", got.ID, got.PID, restored.PID, got.State, got.VCPUs)
	}
	env.waitLine(t, inst, cpusRE, offset, "cpus", func(n int) bool { return n == 1 })
	if c := string(env.console(t, inst)[offset:]); !strings.Contains(c, "KEPT<written ") {
		t.Fatalf("the overlay's file is gone after the restart in place:\n%s", c)
	}

	// The caller died after saving 2: Get reports the guest's 1, the plan sees a live change, and
	// the next Update makes it.
	md, err := env.m.loadMetadata(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	md.VCPUs = 2
	if err := env.m.saveMetadata(context.Background(), md); err != nil {
		t.Fatal(err)
	}
	seen, err := env.m.Get(ctx, inst.ID)
	if err != nil || seen.VCPUs != 1 {
		t.Fatalf("Get after an unfinished change: %v, vcpus %d; want the guest's 1", err, seen.VCPUs)
	}
	have := spec
	spec.VCPUs = 2
	if changes, err := ResizeChanges(have, seen.State, spec); err != nil || len(changes) != 1 || changes[0].String() != "vcpus 1 → 2: live" {
		t.Fatalf("the plan's changes: %v, %v; want vcpus 1 → 2: live", changes, err)
	}
	offset = env.consoleLen(t, inst)
	if got, err := env.m.Update(ctx, inst.ID, spec); err != nil || got.VCPUs != 2 || got.PID != seen.PID {
		t.Fatalf("the next Update: %v (%+v); want 2 vcpus in pid %d", err, got, seen.PID)
	}
	env.waitLine(t, inst, cpusRE, offset, "cpus", func(n int) bool { return n == 2 })
	env.deleteAndCheckGone(t, inst)
}
