package instances

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
)

// The manager's flows against Cloud Hypervisor, played by the spec-validating stand-in binary, in
// each behaviour mode of the real server. There is no guest: the stand-in prints the program's
// start marker on boot and powers off on the ACPI button, which is all the flows observe.

var chModes = []string{"v52", "v53", "head"}

// chManager is a Manager whose only driver is Cloud Hypervisor, run as the stand-in binary in mode
// with the given faults. Every request the driver sent is checked against the official spec when
// the test ends. configure changes the options further.
func chManager(t *testing.T, env *testEnv, mode, faults string, configure ...func(*Options)) *Manager {
	t.Helper()
	t.Setenv(chstandin.ModeEnv, mode)
	t.Setenv(chstandin.FaultsEnv, faults)
	bin := chstandin.BuildBinary(t)
	m := env.manager(t, func(o *Options) {
		o.Drivers = []vmm.Driver{&faultDriver{Driver: &cloudhypervisor.Driver{Binary: bin}, faults: env.faults}}
		o.DefaultHypervisor, o.Accelerator, o.StopTimeout = "cloud-hypervisor", "auto", 5*time.Second
		for _, c := range configure {
			c(o)
		}
	})
	t.Cleanup(func() {
		logs, _ := filepath.Glob(filepath.Join(m.DataDir(), "guests", "*", "ch-stdout.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			for _, v := range chstandin.LogViolations(b) {
				t.Errorf("a request broke the Cloud Hypervisor API spec: %s", v)
			}
		}
	})
	return m
}

func chSpec(env *testEnv, name string) Spec {
	s := env.spec(name)
	s.Hotplug = HotplugStep
	s.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	return s
}

func TestCloudHypervisorLifecycle(t *testing.T) {
	env := newTestEnv(t)
	for _, mode := range chModes {
		t.Run(mode, func(t *testing.T) {
			m := chManager(t, env, mode, "")
			ctx := testContext(t)
			inst, err := m.Create(ctx, chSpec(env, "ch-"+mode), Running)
			if err != nil {
				t.Fatal(err)
			}
			if inst.State != Running || inst.Hypervisor != "cloud-hypervisor" || !strings.HasPrefix(inst.HypervisorVersion, "v") {
				t.Fatalf("created: %+v", inst)
			}
			for _, step := range []State{Paused, Running, Standby} {
				if inst, err = m.SetState(ctx, inst.ID, step); err != nil || inst.State != step {
					t.Fatalf("→ %s: %v (%+v)", step, err, inst)
				}
			}
			snap := filepath.Join(inst.Dir, "snapshots", "snapshot-latest")
			for _, f := range []string{"config.json", "state.json", vmm.MemoryFile + ".lz4"} {
				if _, err := os.Stat(filepath.Join(snap, f)); err != nil {
					t.Errorf("snapshot file %s: %v", f, err)
				}
			}
			if n := countVMMs(t, inst.Dir); n != 0 {
				t.Fatalf("%d processes still run for a Standby instance", n)
			}
			for _, step := range []State{Running, Stopped, Running} {
				if inst, err = m.SetState(ctx, inst.ID, step); err != nil || inst.State != step {
					t.Fatalf("→ %s: %v (%+v)", step, err, inst)
				}
			}
			if _, err := os.Stat(snap); !os.IsNotExist(err) {
				t.Fatalf("the snapshot outlived the restore: %v", err)
			}
			spec := chSpec(env, "ch-"+mode)
			spec.Env = map[string]string{"CHANGED": "yes"}
			if inst, err = m.Update(ctx, inst.ID, spec); err != nil || inst.State != Running || inst.Env["CHANGED"] != "yes" {
				t.Fatalf("update: %v (%+v)", err, inst)
			}
			env.m = m
			env.deleteAndCheckGone(t, inst)
		})
	}
}

// Cloud Hypervisor reports "Created" again after vm.shutdown; the manager must call that Shutdown
// (the VM has booted) and start it afresh when asked to run.
func TestCloudHypervisorShutdownIsNotCreated(t *testing.T) {
	env := newTestEnv(t)
	for _, mode := range chModes {
		t.Run(mode, func(t *testing.T) {
			m := chManager(t, env, mode, "")
			ctx := testContext(t)
			inst, err := m.Create(ctx, chSpec(env, "chshut-"+mode), Running)
			if err != nil {
				t.Fatal(err)
			}
			chPut(t, filepath.Join(inst.Dir, "ch.sock"), "vm.shutdown")
			got, err := m.Get(ctx, inst.ID)
			if err != nil || got.State != Shutdown {
				t.Fatalf("after vm.shutdown the state is %v (%v), want Shutdown", got.State, err)
			}
			if got, err = m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
				t.Fatalf("Shutdown → Running: %v (%+v)", err, got)
			}
			if err := m.Delete(ctx, inst.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCloudHypervisorFaultsKeepTheGuarantees(t *testing.T) {
	env := newTestEnv(t)
	for _, mode := range chModes {
		t.Run(mode+"/snapshot-500", func(t *testing.T) {
			m := chManager(t, env, mode, "snapshot-500")
			ctx := testContext(t)
			inst, err := m.Create(ctx, chSpec(env, "chsnap-"+mode), Running)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.SetState(ctx, inst.ID, Standby); err == nil || !strings.Contains(err.Error(), "is Running") {
				t.Fatalf("standby with a failing snapshot: %v", err)
			}
			if got, _ := m.Get(ctx, inst.ID); got.State != Running {
				t.Fatalf("after a failed standby the state is %s, want Running", got.State)
			}
		})
		t.Run(mode+"/restore-fail", func(t *testing.T) {
			m := chManager(t, env, mode, "restore-fail")
			ctx := testContext(t)
			inst, err := m.Create(ctx, chSpec(env, "chrest-"+mode), Standby)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.SetState(ctx, inst.ID, Running); err == nil || !strings.Contains(err.Error(), "stays in Standby") ||
				!strings.Contains(err.Error(), `set state = "Stopped" and discard_snapshot = true`) {
				t.Fatalf("restore with a failing server: %v; want it to stay in Standby and name discard_snapshot", err)
			}
			if got, _ := m.Get(ctx, inst.ID); got.State != Standby {
				t.Fatalf("after a failed restore the state is %s, want Standby", got.State)
			}
			if n := countVMMs(t, inst.Dir); n != 0 {
				t.Fatalf("%d processes left by a failed restore", n)
			}
			// The way out: the snapshot is discarded, the overlay kept, and the instance boots again.
			overlay, err := os.Stat(filepath.Join(inst.Dir, "overlay.raw"))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := m.SetState(ctx, inst.ID, Stopped, WithDiscardSnapshot()); err != nil || got.State != Stopped {
				t.Fatalf("discard: %v (%+v)", err, got)
			}
			if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots")); !os.IsNotExist(err) {
				t.Fatalf("the snapshot is still there: %v", err)
			}
			if now, err := os.Stat(filepath.Join(inst.Dir, "overlay.raw")); err != nil || !now.ModTime().Equal(overlay.ModTime()) {
				t.Fatalf("the overlay changed with the discard: %v", err)
			}
			if got, err := m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
				t.Fatalf("boot after the discard: %v (%+v)", err, got)
			}
		})
		t.Run(mode+"/die-right-after-boot", func(t *testing.T) {
			m := chManager(t, env, mode, "die-after-boot=300ms")
			ctx := testContext(t)
			spec := chSpec(env, "chdienow-"+mode)
			_, err := m.Create(ctx, spec, Running)
			if !errors.Is(err, ErrProgramExited) || !strings.Contains(err.Error(), "the VMM process ended without the guest reporting an exit") {
				t.Fatalf("create with a VMM that dies in the settle window: %v", err)
			}
			assertNoInstanceLeft(t, m, spec.Name)
			inst, err := m.Create(ctx, spec, Stopped)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.SetState(ctx, inst.ID, Running); !errors.Is(err, ErrProgramExited) {
				t.Fatalf("start with a VMM that dies in the settle window: %v", err)
			}
			assertEnded(t, m, inst.ID, nil, "the VMM process ended without the guest reporting an exit")
		})
		t.Run(mode+"/die-after-boot", func(t *testing.T) {
			m := chManager(t, env, mode, "die-after-boot="+(ProgramSettle+time.Second).String())
			ctx := testContext(t)
			inst, err := m.Create(ctx, chSpec(env, "chdie-"+mode), Running)
			if err != nil {
				t.Fatal(err)
			}
			waitStopped(t, m, inst.ID, 15*time.Second)
			assertEnded(t, m, inst.ID, nil, "the VMM process ended without the guest reporting an exit")
		})
		t.Run(mode+"/slow-boot", func(t *testing.T) {
			m := chManager(t, env, mode, "slow-boot=30s")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			spec := chSpec(env, "chslow-"+mode)
			if _, err := m.Create(ctx, spec, Running); err == nil {
				t.Fatal("a boot past the deadline succeeded")
			}
			assertNoInstanceLeft(t, m, spec.Name)
		})
	}
}

// chPut sends one bodiless PUT to a Cloud Hypervisor API socket, as an operator with curl would.
func chPut(t *testing.T, socket, action string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	req, _ := http.NewRequest(http.MethodPut, "http://localhost/api/v1/"+action, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s", action, resp.Status)
	}
}

// Memory within max_memory changes live through vm.resize (desired_ram, checked against the spec
// when the test ends), in the same VMM process; Standby gives it back and the restore plugs it
// again; beyond the ceiling the instance restarts in place, keeping its id.
func TestCloudHypervisorMemoryChangesLiveWithinTheCeiling(t *testing.T) {
	env := newTestEnv(t)
	for _, mode := range chModes {
		t.Run(mode, func(t *testing.T) {
			m := chManager(t, env, mode, "")
			ctx := testContext(t)
			spec := env.spec("chresize-" + mode)
			spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
			spec.Memory, spec.MaxMemory = 256*units.MiB, 768*units.MiB
			inst, err := m.Create(ctx, spec, Running)
			if err != nil {
				t.Fatal(err)
			}
			for _, size := range []int64{768 * units.MiB, 384 * units.MiB} {
				spec.Memory = size
				got, err := m.Update(ctx, inst.ID, spec)
				if err != nil || got.PID != inst.PID || got.State != Running || got.Memory != size {
					t.Fatalf("live resize to %s: %v (pid %d, was %d; %+v)", units.Format(size), err, got.PID, inst.PID, got)
				}
			}
			for _, step := range []State{Standby, Running} {
				if got, err := m.SetState(ctx, inst.ID, step); err != nil || got.State != step {
					t.Fatalf("→ %s: %v", step, err)
				}
			}
			spec.Memory, spec.MaxMemory = 1*units.GiB, 0
			got, err := m.Update(ctx, inst.ID, spec)
			if err != nil || got.ID != inst.ID || got.State != Running || got.Memory != spec.Memory {
				t.Fatalf("resize beyond the ceiling: %v (%+v)", err, got)
			}
			env.m = m
			env.deleteAndCheckGone(t, inst)
		})
	}
}

// An instance made with the deprecated hotplug_memory, written anew as memory and max_memory of the
// same sizes, changes nothing on the guest: the same VMM runs on, and the new spelling is stored.
func TestCloudHypervisorHotplugMemoryRespelledChangesNothing(t *testing.T) {
	env := newTestEnv(t)
	m := chManager(t, env, "head", "")
	ctx := testContext(t)
	spec := chSpec(env, "chrespell") // 256 MiB + 128 MiB hotplug
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	spec.Memory, spec.MaxMemory, spec.Hotplug = spec.Memory+spec.Hotplug, spec.Memory+spec.Hotplug, 0
	got, err := m.Update(ctx, inst.ID, spec)
	if err != nil || got.PID != inst.PID || got.Memory != 384*units.MiB || got.MaxMemory != 384*units.MiB || got.Hotplug != 0 {
		t.Fatalf("respelled: %v (pid %d, was %d; %+v)", err, got.PID, inst.PID, got)
	}
	env.m = m
	env.deleteAndCheckGone(t, inst)
}

// A guest that never plugs the memory asked for (stuck-plug) fails the live resize; the instance
// keeps running in the same VMM with its old memory, and its metadata says so, so that the next
// plan asks for the change again.
func TestCloudHypervisorLiveResizeThatTheGuestDoesNotTakeIsUndone(t *testing.T) {
	env := newTestEnv(t)
	m := chManager(t, env, "head", "stuck-plug")
	ctx := testContext(t)
	spec := env.spec("chstuck")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	spec.Memory, spec.MaxMemory = 256*units.MiB, 768*units.MiB
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	grown := spec
	grown.Memory = 512 * units.MiB
	if _, err := m.Update(ctx, inst.ID, grown); err == nil || !strings.Contains(err.Error(), "it keeps memory 256MiB") {
		t.Fatalf("a resize the guest does not take: %v; want an error saying it keeps 256MiB", err)
	}
	got, err := m.Get(ctx, inst.ID)
	if err != nil || got.Memory != 256*units.MiB || got.PID != inst.PID || got.State != Running {
		t.Fatalf("after the failed resize: %v (%+v)", err, got)
	}
	env.m = m
	env.deleteAndCheckGone(t, inst)
}

// vCPUs within max_vcpus (here equal to vcpus at boot) change live both ways through vm.resize
// (desired_vcpus, checked against the spec when the test ends), in the same VMM process; Get
// reports the count the VMM has, also after a change whose caller died; a Standby instance takes
// its new count at the restore.
func TestCloudHypervisorVCPUsChangeLiveWithinTheCeiling(t *testing.T) {
	env := newTestEnv(t)
	m := chManager(t, env, "head", "")
	ctx := testContext(t)
	spec := env.spec("chvcpus")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	spec.VCPUs, spec.MaxVCPUs = 4, 4
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{2, 4} {
		spec.VCPUs = n
		got, err := m.Update(ctx, inst.ID, spec)
		if err != nil || got.PID != inst.PID || got.State != Running || got.VCPUs != n {
			t.Fatalf("live change to %d vcpus: %v (pid %d, was %d; %+v)", n, err, got.PID, inst.PID, got)
		}
	}
	md, err := m.loadMetadata(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	md.VCPUs = 3 // saved by a caller that died before vm.resize
	if err := m.saveMetadata(ctx, md); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Get(ctx, inst.ID); err != nil || got.VCPUs != 4 {
		t.Fatalf("Get after an unfinished change: %v, vcpus %d; want the VMM's 4", err, got.VCPUs)
	}
	if _, err := m.SetState(ctx, inst.ID, Standby); err != nil {
		t.Fatal(err)
	}
	spec.VCPUs = 1
	if got, err := m.Update(ctx, inst.ID, spec); err != nil || got.State != Standby {
		t.Fatalf("Update of a Standby instance's vcpus: %v (%+v)", err, got)
	}
	got, err := m.SetState(ctx, inst.ID, Running)
	if err != nil || got.VCPUs != 1 {
		t.Fatalf("restored: %v, vcpus %d; want 1", err, got.VCPUs)
	}
	env.m = m
	env.deleteAndCheckGone(t, inst)
}
