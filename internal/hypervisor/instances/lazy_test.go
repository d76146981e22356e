package instances

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
)

// Lazy snapshots (lazy.go) against the Cloud Hypervisor stand-in, whose guest counts on its
// console (count=…) with the counter kept in its memory: a guest that counts on after a lazy
// restore was served its memory from the snapshot's image.

// chLazyManager is chManager with the Cloud Hypervisor driver itself (a LazyRestorer), in
// lazy mode; userfaultfd, when not nil, replaces the driver's look at the host's.
func chLazyManager(t *testing.T, env *testEnv, mode, faults string, configure func(*Options, *cloudhypervisor.Driver)) *Manager {
	t.Helper()
	t.Setenv(chstandin.ModeEnv, mode)
	t.Setenv(chstandin.FaultsEnv, faults)
	drv := &cloudhypervisor.Driver{Binary: chstandin.BuildBinary(t)}
	m := env.manager(t, func(o *Options) {
		o.Drivers = []vmm.Driver{drv}
		o.DefaultHypervisor, o.Accelerator, o.StopTimeout = "cloud-hypervisor", "auto", 5*time.Second
		o.SnapshotMode = SnapshotLazy
		if configure != nil {
			configure(o, drv)
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

// chSnapshotAnswer is what a Cloud Hypervisor API socket answers a vm.snapshot into dir.
func chSnapshotAnswer(t *testing.T, socket, dir string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	body := strings.NewReader(`{"destination_url":"file://` + dir + `"}`)
	req, _ := http.NewRequest(http.MethodPut, "http://localhost/api/v1/vm.snapshot", body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, data)
}

func noUserfaultfd(o *Options, d *cloudhypervisor.Driver) {
	d.Userfaultfd = func(context.Context, host.Host) error {
		return errors.New("userfaultfd is switched off on this test host")
	}
}

// waitCounts waits until the console shows more than n counts, and returns them all.
func waitCounts(t *testing.T, inst *Instance, n int) []int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c := consoleCounts(t, inst); len(c) > n {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the counter printed %v, want more than %d counts", consoleCounts(t, inst), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantCountingOn fails unless counts is 0, 1, 2, … with nothing lost or repeated.
func wantCountingOn(t *testing.T, counts []int) {
	t.Helper()
	for i, c := range counts {
		if c != i {
			t.Fatalf("the counter went %v: it did not go on from where it was", counts)
		}
	}
}

func wantSnapshotMode(t *testing.T, m *Manager, inst *Instance, want SnapshotMode, files ...string) {
	t.Helper()
	got, err := m.snapshotMode(context.Background(), inst.ID)
	if err != nil || got != want {
		t.Fatalf("the snapshot says it was taken %q (%v), want %q", got, err, want)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest", f)); err != nil {
			t.Errorf("snapshot file %s: %v", f, err)
		}
	}
}

func wantHeldMemory(t *testing.T, inst *Instance, held bool) {
	t.Helper()
	_, err := os.Stat(filepath.Join(inst.Dir, vmm.MemoryFile+".in-use"))
	if held != (err == nil) {
		t.Fatalf("memory image kept for the VMM: %v, want kept = %v", err, held)
	}
}

// Standby → lazy restore → Running: the guest counts on; the snapshot is gone, its memory image
// kept while the VMM runs, and removed when the VMM next stops. A standby straight after the
// restore happens while the stand-in (v53 on) still refuses snapshots: it is retried.
func TestCloudHypervisorLazyRestoreContinuesTheGuest(t *testing.T) {
	env := newTestEnv(t)
	for _, mode := range chModes {
		t.Run(mode, func(t *testing.T) {
			m := chLazyManager(t, env, mode, "count=100ms,slow-prefault=4s", nil)
			ctx := testContext(t)
			inst, err := m.Create(ctx, chSpec(env, "chlazy-"+mode), Running)
			if err != nil {
				t.Fatal(err)
			}
			waitCounts(t, inst, 2)
			if inst, err = m.SetState(ctx, inst.ID, Standby); err != nil || inst.State != Standby {
				t.Fatalf("→ Standby: %v (%+v)", err, inst)
			}
			wantSnapshotMode(t, m, inst, SnapshotLazy, vmm.MemoryFile, "config.json", "state.json")
			if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest", vmm.MemoryFile+".lz4")); err == nil {
				t.Error("a lazy snapshot was compressed")
			}
			before := len(consoleCounts(t, inst))
			if inst, err = m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
				t.Fatalf("lazy restore: %v (%+v)", err, inst)
			}
			if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots")); !os.IsNotExist(err) {
				t.Errorf("the snapshot outlived the restore: %v", err)
			}
			wantHeldMemory(t, inst, true)
			wantCountingOn(t, waitCounts(t, inst, before+2))

			// At once again: the stand-in's background prefault takes 4s, and from v53 on it
			// refuses snapshots until it is done (checked before the state), so standby retries.
			answer := chSnapshotAnswer(t, filepath.Join(inst.Dir, "ch.sock"), t.TempDir())
			if restoring := strings.Contains(answer, "still in progress"); restoring != (mode != "v52") {
				t.Fatalf("a snapshot of the running guest right after the lazy restore was answered %s", answer)
			}
			if inst, err = m.SetState(ctx, inst.ID, Standby); err != nil || inst.State != Standby {
				t.Fatalf("Standby during the on-demand restore: %v (%+v)", err, inst)
			}
			wantHeldMemory(t, inst, false)
			before = len(consoleCounts(t, inst))
			if inst, err = m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
				t.Fatalf("second lazy restore: %v (%+v)", err, inst)
			}
			wantCountingOn(t, waitCounts(t, inst, before+2))
			if inst, err = m.SetState(ctx, inst.ID, Stopped); err != nil || inst.State != Stopped {
				t.Fatalf("→ Stopped: %v (%+v)", err, inst)
			}
			wantHeldMemory(t, inst, false)
			env.m = m
			env.deleteAndCheckGone(t, inst)
		})
	}
}

// A lazy restore that fails in the middle keeps the snapshot, and the instance stays in Standby,
// with no VMM left; the way out is the usual one.
func TestCloudHypervisorFailedLazyRestoreKeepsTheSnapshot(t *testing.T) {
	env := newTestEnv(t)
	for _, mode := range chModes {
		t.Run(mode, func(t *testing.T) {
			m := chLazyManager(t, env, mode, "restore-fail", nil)
			ctx := testContext(t)
			inst, err := m.Create(ctx, chSpec(env, "chlazyfail-"+mode), Standby)
			if err != nil {
				t.Fatal(err)
			}
			wantSnapshotMode(t, m, inst, SnapshotLazy, vmm.MemoryFile)
			_, err = m.SetState(ctx, inst.ID, Running)
			if err == nil || !strings.Contains(err.Error(), "on demand") || !strings.Contains(err.Error(), "stays in Standby") {
				t.Fatalf("lazy restore with a failing server: %v; want it to say so and keep Standby", err)
			}
			if got, _ := m.Get(ctx, inst.ID); got.State != Standby {
				t.Fatalf("after a failed lazy restore the state is %s, want Standby", got.State)
			}
			wantSnapshotMode(t, m, inst, SnapshotLazy, vmm.MemoryFile, "config.json", "state.json")
			wantHeldMemory(t, inst, false)
			if n := countVMMs(t, inst.Dir); n != 0 {
				t.Fatalf("%d processes left by a failed lazy restore", n)
			}
		})
	}
}

// Without a usable userfaultfd a lazy-mode manager compresses its snapshots and restores
// eagerly, and says why; a lazy snapshot it finds (the host changed after it was taken) is
// restored eagerly from its uncompressed image. A manager in compressed mode restores a lazy
// snapshot lazily: how a snapshot is restored follows how it was taken.
func TestCloudHypervisorLazyFallsBack(t *testing.T) {
	env := newTestEnv(t)
	mode := "v53"
	t.Run("no userfaultfd", func(t *testing.T) {
		m := chLazyManager(t, env, mode, "count=100ms", noUserfaultfd)
		ctx := testContext(t)
		if w := m.LazyRestoreWarning(ctx); !strings.Contains(w, "cloud-hypervisor") || !strings.Contains(w, "switched off") {
			t.Errorf("warning %q: want the hypervisor and the reason", w)
		}
		inst, err := m.Create(ctx, chSpec(env, "chnouffd"), Standby)
		if err != nil {
			t.Fatal(err)
		}
		wantSnapshotMode(t, m, inst, SnapshotCompressed, vmm.MemoryFile+".lz4")
		if inst, err = m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
			t.Fatalf("eager restore: %v (%+v)", err, inst)
		}
		wantHeldMemory(t, inst, false)
	})
	t.Run("lazy snapshot, host without userfaultfd now", func(t *testing.T) {
		lazy := chLazyManager(t, env, mode, "count=100ms", nil)
		ctx := testContext(t)
		inst, err := lazy.Create(ctx, chSpec(env, "chlazythen"), Running)
		if err != nil {
			t.Fatal(err)
		}
		waitCounts(t, inst, 1)
		if inst, err = lazy.SetState(ctx, inst.ID, Standby); err != nil {
			t.Fatal(err)
		}
		wantSnapshotMode(t, lazy, inst, SnapshotLazy, vmm.MemoryFile)
		before := len(consoleCounts(t, inst))
		m := chLazyManager(t, env, mode, "count=100ms", func(o *Options, d *cloudhypervisor.Driver) {
			o.DataDir = lazy.DataDir()
			noUserfaultfd(o, d)
		})
		if inst, err = m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
			t.Fatalf("eager restore of a lazy snapshot: %v (%+v)", err, inst)
		}
		wantHeldMemory(t, inst, false)
		wantCountingOn(t, waitCounts(t, inst, before+1))
		if err := m.Delete(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("lazy snapshot, compressed mode now", func(t *testing.T) {
		lazy := chLazyManager(t, env, mode, "count=100ms", nil)
		ctx := testContext(t)
		inst, err := lazy.Create(ctx, chSpec(env, "chlazymode"), Standby)
		if err != nil {
			t.Fatal(err)
		}
		m := chLazyManager(t, env, mode, "count=100ms", func(o *Options, _ *cloudhypervisor.Driver) {
			o.DataDir, o.SnapshotMode = lazy.DataDir(), SnapshotCompressed
		})
		if inst, err = m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
			t.Fatalf("restore of a lazy snapshot in compressed mode: %v (%+v)", err, inst)
		}
		wantHeldMemory(t, inst, true)
		if inst, err = m.SetState(ctx, inst.ID, Standby); err != nil {
			t.Fatal(err)
		}
		wantSnapshotMode(t, m, inst, SnapshotCompressed, vmm.MemoryFile+".lz4")
		wantHeldMemory(t, inst, false)
	})
}

func TestSnapshotModeIsValidated(t *testing.T) {
	for _, ok := range SnapshotModes {
		if err := ValidateSnapshotMode(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	err := ValidateSnapshotMode("fast")
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `snapshot_mode "fast" is not allowed: use compressed or lazy`) {
		t.Errorf("ValidateSnapshotMode(fast): %v", err)
	}
	if _, err := New(Options{DataDir: t.TempDir(), Drivers: []vmm.Driver{qemu.New()}, SnapshotMode: "Lazy"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with snapshot mode Lazy: %v", err)
	}
}
