package instances

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func alive(pid int) bool { _, ok := testutil.ReadProcess(pid); return ok }

// scanHosts are the hosts the process scan is tested on: this machine, and this machine over a
// real sshd (not under -short).
func scanHosts(t *testing.T) map[string]host.Host {
	hosts := map[string]host.Host{"local": host.Local{}}
	if !testing.Short() {
		hosts["ssh"] = dialSSH(t, testutil.StartSSHD(t))
	}
	return hosts
}

// No VM: the VMM processes are stand-ins that sleep, so the test tells exactly which processes
// the scan takes for an orphan, and that nothing else is ever stopped.
func TestOrphansAreOnlyVMMsOfThisDataDirWhoseInstanceDirectoryIsGone(t *testing.T) {
	for name, h := range scanHosts(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dataDir := testutil.ShortTempDir(t)
			m, err := New(Options{Host: h, DataDir: dataDir, Drivers: []vmm.Driver{qemu.New()}})
			if err != nil {
				t.Fatal(err)
			}
			guests := filepath.Join(dataDir, "guests")
			gone, gone2, live := ulid.Make().String(), ulid.Make().String(), ulid.Make().String()
			if err := os.MkdirAll(filepath.Join(guests, live), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dataDir, "names"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(gone, filepath.Join(dataDir, "names", "web")); err != nil {
				t.Fatal(err)
			}
			vmmArgs := func(dir, id string) []string {
				return []string{"-pidfile", dir + "/" + id + "/qemu.pid", "-chardev", "socket,id=qmp0,path=" + dir + "/" + id + "/qmp.sock,server=on"}
			}
			orphan := testutil.FakeProcess(t, qemu.Binary, vmmArgs(guests, gone)...)
			orphan2 := testutil.FakeProcess(t, "/usr/bin/"+qemu.Binary, vmmArgs(guests, gone2)...)
			keep := map[string]int{
				"the VMM of a live instance": testutil.FakeProcess(t, qemu.Binary, vmmArgs(guests, live)...),
				"a program that is no VMM":   testutil.FakeProcess(t, "sh", vmmArgs(guests, gone)...),
				"another data_dir's VMM":     testutil.FakeProcess(t, qemu.Binary, vmmArgs("/srv"+guests, gone)...),
				"a neighbouring data_dir":    testutil.FakeProcess(t, qemu.Binary, vmmArgs(dataDir+"x/guests", gone)...),
				"a VMM of two directories":   testutil.FakeProcess(t, qemu.Binary, append(vmmArgs(guests, gone), vmmArgs(guests, gone2)...)...),
			}

			got, err := m.Orphans(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []Orphan{
				{PID: orphan, ID: gone, Dir: filepath.Join(guests, gone), Hypervisor: "qemu", Name: "web"},
				{PID: orphan2, ID: gone2, Dir: filepath.Join(guests, gone2), Hypervisor: "qemu"},
			}
			slices.SortFunc(want, func(a, b Orphan) int { return strings.Compare(a.ID, b.ID) })
			if !slices.Equal(got, want) {
				t.Fatalf("Orphans = %+v\nwant %+v", got, want)
			}

			// Delete by the name that still points at it, and by the id alone.
			if err := m.Delete(ctx, "web"); err != nil {
				t.Fatalf("Delete of the name of an orphan: %v", err)
			}
			if err := m.Delete(ctx, gone2); err != nil {
				t.Fatalf("Delete of the id of an orphan: %v", err)
			}
			for _, pid := range []int{orphan, orphan2} {
				if alive(pid) {
					t.Errorf("the orphan %d still runs after Delete", pid)
				}
			}
			if _, err := os.Lstat(filepath.Join(dataDir, "names", "web")); !os.IsNotExist(err) {
				t.Errorf("the orphan's name is still reserved: %v", err)
			}
			for what, pid := range keep {
				if !alive(pid) {
					t.Errorf("%s (pid %d) was stopped", what, pid)
				}
			}
			if got, err := m.Orphans(ctx); err != nil || len(got) != 0 {
				t.Fatalf("Orphans after the deletes = %+v, %v", got, err)
			}
			if err := m.Delete(ctx, gone); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a second Delete: %v, want ErrNotFound", err)
			}
		})
	}
}

// A VMM whose instance directory was removed under it keeps running; the next create of the
// name stops it, and a Delete of an instance whose directory is gone stops its VMM.
func TestRemovedInstanceDirectoryLeavesAnOrphanThatTheNextCreateStops(t *testing.T) {
	t.Parallel()
	for _, over := range []string{"local", "ssh"} {
		t.Run(over, func(t *testing.T) {
			var env *testEnv
			if over == "ssh" {
				env, _, _ = newSSHTestEnv(t, nil)
			} else {
				env = newTestEnv(t)
			}
			ctx := testContext(t)
			spec := env.spec("orphan-" + over)
			spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
			old, err := env.m.Create(ctx, spec, Running)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(old.Dir); err != nil {
				t.Fatal(err)
			}
			if _, err := env.m.Get(ctx, old.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get of the removed instance: %v, want ErrNotFound", err)
			}
			if !alive(old.PID) {
				t.Fatal("the VMM died with its directory; the test needs it running")
			}
			orphans, err := env.m.Orphans(ctx)
			want := Orphan{PID: old.PID, ID: old.ID, Dir: old.Dir, Hypervisor: "qemu", Name: spec.Name}
			if err != nil || len(orphans) != 1 || orphans[0] != want {
				t.Fatalf("Orphans = %+v, %v; want %+v", orphans, err, want)
			}

			inst, err := env.m.Create(ctx, spec, Running)
			if err != nil {
				t.Fatalf("create of the name again: %v", err)
			}
			if alive(old.PID) {
				t.Fatalf("the orphaned VMM %d still runs after its name was created again", old.PID)
			}
			vmms := vmmPIDs(filepath.Join(env.m.DataDir(), "guests") + "/")
			if len(vmms) != 1 || vmms[0] != inst.PID {
				t.Fatalf("VMM processes %v of the data_dir, want only the new one %d", vmms, inst.PID)
			}
			if orphans, err := env.m.Orphans(ctx); err != nil || len(orphans) != 0 {
				t.Fatalf("Orphans after the create = %+v, %v", orphans, err)
			}

			// The directory goes again, and Delete (by name locally, by id over SSH) stops the VMM.
			if err := os.RemoveAll(inst.Dir); err != nil {
				t.Fatal(err)
			}
			key := map[string]string{"local": inst.Name, "ssh": inst.ID}[over]
			if err := env.m.Delete(ctx, key); err != nil {
				t.Fatalf("Delete(%s) of an instance whose directory is gone: %v", key, err)
			}
			if alive(inst.PID) {
				t.Fatalf("the VMM %d still runs after Delete", inst.PID)
			}
			assertNoInstanceLeft(t, env.m, spec.Name)
		})
	}
}

// A VMM that stops answering (here: SIGSTOP) is Unknown within the probe's bound, not after
// ten seconds; apply kills it and the guest boots cold, its overlay kept.
func TestHungVMMIsUnknownWithinTheProbeBoundAndRunningAgainColdBootsIt(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.spec("hung")
	spec.Entrypoint = []string{"/bin/sh", "-c", `if [ -f /root/kept ]; then echo "KEPT<$(cat /root/kept)>"; fi; echo "written" > /root/kept; sync; ` + counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	env.waitCount(t, inst, 2, 0)
	hang(t, inst.PID)

	start := time.Now()
	got, err := env.m.Get(ctx, inst.ID)
	took := time.Since(start)
	if err != nil || got.State != Unknown {
		t.Fatalf("Get of a hung VMM: %v, %+v; want Unknown", err, got)
	}
	if took > 8*time.Second {
		t.Fatalf("Get of a hung VMM took %v; the probe is bounded by %v", took, DefaultProbeTimeout)
	}
	if !regexp.MustCompile(`pid \d+`).MatchString(got.StateReason) {
		t.Errorf("state_reason %q does not name the VMM's pid", got.StateReason)
	}
	t.Logf("Unknown after %v: %s", took, got.StateReason)
	// A caller that gives the VMM longer waits that long.
	start = time.Now()
	if got, err := env.m.Get(WithProbeTimeout(ctx, 4*time.Second), inst.ID); err != nil || got.State != Unknown || time.Since(start) < 4*time.Second {
		t.Fatalf("Get with a 4s probe: %v, %v after %v", err, got.State, time.Since(start))
	}

	offset := env.consoleLen(t, inst)
	if got, err = env.m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
		t.Fatalf("Running from a hung VMM: %v, %+v", err, got)
	}
	if alive(inst.PID) || got.PID == inst.PID {
		t.Fatalf("the hung VMM %d was not replaced (now pid %d)", inst.PID, got.PID)
	}
	env.waitCount(t, got, 1, offset)
	if c := env.console(t, got)[offset:]; !regexp.MustCompile(`KEPT<written>`).Match(c) {
		t.Fatalf("the cold-booted guest did not find its overlay file:\n%s", c)
	}
	env.deleteAndCheckGone(t, got)
}

func hang(t *testing.T, pid int) { t.Helper(); testutil.Hang(t, pid) }

func TestCloudHypervisorHungVMMIsUnknownWithinTheProbeBound(t *testing.T) {
	env := newTestEnv(t)
	m := chManager(t, env, chModes[len(chModes)-1], "")
	ctx := testContext(t)
	inst, err := m.Create(ctx, chSpec(env, "ch-hung"), Running)
	if err != nil {
		t.Fatal(err)
	}
	hang(t, inst.PID)
	start := time.Now()
	got, err := m.Get(ctx, inst.ID)
	if err != nil || got.State != Unknown {
		t.Fatalf("Get of a hung VMM: %v, %+v; want Unknown", err, got)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("Get of a hung VMM took %v; the probe is bounded by %v", took, DefaultProbeTimeout)
	}
	if got, err = m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running || got.PID == inst.PID || alive(inst.PID) {
		t.Fatalf("Running from a hung VMM: %v, %+v (the hung one was %d)", err, got, inst.PID)
	}
	env.m = m
	env.deleteAndCheckGone(t, got)
}

// No VM: metadata that cannot be read says nothing of the VMM, and a VMM that does not answer on
// its socket is found by its command line instead of being left to run without a directory.
func TestDeleteOfCorruptMetadataStopsAVMMThatDoesNotAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dataDir := testutil.ShortTempDir(t)
	m, err := New(Options{DataDir: dataDir, Drivers: []vmm.Driver{qemu.New()}})
	if err != nil {
		t.Fatal(err)
	}
	id := ulid.Make().String()
	dir := filepath.Join(dataDir, "guests", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := testutil.FakeProcess(t, qemu.Binary, "-pidfile", dir+"/qemu.pid")
	if err := m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("the VMM %d of the deleted instance still runs", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the directory is still there: %v", err)
	}
}
