package instances

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
)

// startExiting creates spec Stopped and starts it, for a program that exits at once with code:
// the start fails and says so, and the instance stays, Stopped, with its console.
func (env *testEnv) startExiting(t *testing.T, spec Spec, code int) *Instance {
	t.Helper()
	ctx := testContext(t)
	inst, err := env.m.Create(ctx, spec, Stopped)
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.m.SetState(ctx, inst.ID, Running)
	assertExitedAtOnce(t, err, spec.Name, code)
	return inst
}

// assertExitedAtOnce checks a boot's error for a program that exited within the settle window.
func assertExitedAtOnce(t *testing.T, err error, name string, code int) {
	t.Helper()
	t.Logf("boot error: %v", err)
	want := "the program of " + name + " exited with code " + strconv.Itoa(code) + " right after it started"
	if !errors.Is(err, ErrProgramExited) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "last console lines:") {
		t.Fatalf("boot error = %v; want ErrProgramExited saying %q with the console's last lines", err, want)
	}
}

// assertEnded checks how the last boot of a Stopped instance is reported.
func assertEnded(t *testing.T, m *Manager, id string, code *int, reason string) *Instance {
	t.Helper()
	inst, err := m.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != Stopped || !strings.HasPrefix(inst.StateReason, reason) {
		t.Fatalf("state %s, reason %q; want Stopped, reason starting %q", inst.State, inst.StateReason, reason)
	}
	switch {
	case code == nil && inst.ExitCode != nil:
		t.Fatalf("exit code %d, want none", *inst.ExitCode)
	case code != nil && (inst.ExitCode == nil || *inst.ExitCode != *code):
		t.Fatalf("exit code %v, want %d", inst.ExitCode, *code)
	}
	return inst
}

func ptr(n int) *int { return &n }

// waitStopped waits until the instance is Stopped.
func waitStopped(t *testing.T, m *Manager, id string, within time.Duration) {
	t.Helper()
	waitState(t, m, id, Stopped, within)
}

func TestProgramThatExitsRightAfterItStartsFailsTheCreateAndLeavesNothing(t *testing.T) {
	t.Parallel()
	if !netnstest.Enter(t) {
		return
	}
	env := newTestEnv(t)
	ctx := testContext(t)
	m := env.networkManager(t, network.Config{Bridge: "hmexit0", Subnet: "10.102.0.0/24"}, nil)
	spec := env.spec("exits")
	spec.Entrypoint = []string{"/bin/sh", "-c", "echo going away; exit 1"}
	_, err := m.Create(ctx, spec, Running)
	assertExitedAtOnce(t, err, "exits", 1)
	if !strings.Contains(err.Error(), "going away") {
		t.Errorf("the error does not show the program's output:\n%v", err)
	}
	assertNoInstanceLeft(t, m, spec.Name)
	if ips := leasedIPs(t, m); len(ips) != 0 {
		t.Errorf("the failed create kept the leases %v", ips)
	}
	out, err := exec.Command("ip", "-o", "link", "show", "master", "hmexit0").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("interfaces left on the bridge: %s (%v)", out, err)
	}
}

// The program's last run is told by exit_code and state_reason once the instance is Stopped: a
// start or restart it fails at once fails too, and one it survives leaves the later end to see.
func TestHowTheLastBootEndedIsReported(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	// MODE picks how the program ends, a few seconds after the settle window.
	script := `echo "mode $MODE"; case "$MODE" in ` +
		`now) exit 7;; ` +
		`later) sleep 5; exit 3;; ` +
		`poweroff) sleep 5; /bin/busybox poweroff -f;; ` +
		`esac; ` + counterScript
	spec := env.spec("ends")
	spec.Entrypoint = []string{"/bin/sh", "-c", script}
	withMode := func(mode string) Spec {
		s := spec
		s.Env = map[string]string{"MODE": mode}
		return s
	}
	inst, err := env.m.Create(ctx, withMode("run"), Running)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ExitCode != nil || inst.StateReason != "" {
		t.Fatalf("a running instance reports exit %v, reason %q", inst.ExitCode, inst.StateReason)
	}

	t.Run("stopped on request: nothing to say", func(t *testing.T) {
		if _, err := env.m.SetState(ctx, inst.ID, Stopped); err != nil {
			t.Fatal(err)
		}
		assertEnded(t, env.m, inst.ID, nil, "")
	})
	t.Run("a restart in place into a program that exits at once fails", func(t *testing.T) {
		if _, err := env.m.SetState(ctx, inst.ID, Running); err != nil {
			t.Fatal(err)
		}
		_, err := env.m.Update(ctx, inst.ID, withMode("now"))
		assertExitedAtOnce(t, err, "ends", 7)
		assertEnded(t, env.m, inst.ID, ptr(7), "program exited with code 7 at ")
	})
	t.Run("so does a start", func(t *testing.T) {
		_, err := env.m.SetState(ctx, inst.ID, Running)
		assertExitedAtOnce(t, err, "ends", 7)
		got := assertEnded(t, env.m, inst.ID, ptr(7), "program exited with code 7 at ")
		at := strings.TrimPrefix(got.StateReason, "program exited with code 7 at ")
		if ts, err := time.Parse(time.RFC3339, at); err != nil || time.Since(ts) > time.Minute {
			t.Fatalf("the exit time %q is not a recent RFC 3339 time: %v", at, err)
		}
	})
	t.Run("a program that exits after the settle window", func(t *testing.T) {
		if _, err := env.m.Update(ctx, inst.ID, withMode("later")); err != nil { // Stopped: taken at the next start
			t.Fatal(err)
		}
		started, err := env.m.SetState(ctx, inst.ID, Running)
		if err != nil {
			t.Fatal(err)
		}
		if started.ExitCode != nil || started.StateReason != "" {
			t.Fatalf("a new boot still reports the last one: exit %v, reason %q", started.ExitCode, started.StateReason)
		}
		waitStopped(t, env.m, inst.ID, time.Minute)
		assertEnded(t, env.m, inst.ID, ptr(3), "program exited with code 3 at ")
	})
	t.Run("a killed VMM", func(t *testing.T) {
		started, err := env.m.SetState(ctx, inst.ID, Running)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(started.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitStopped(t, env.m, inst.ID, 10*time.Second)
		assertEnded(t, env.m, inst.ID, nil, "the VMM process ended without the guest reporting an exit")
	})
	t.Run("a guest that powers off", func(t *testing.T) {
		if _, err := env.m.Update(ctx, inst.ID, withMode("poweroff")); err != nil {
			t.Fatal(err)
		}
		if _, err := env.m.SetState(ctx, inst.ID, Running); err != nil {
			t.Fatal(err)
		}
		waitStopped(t, env.m, inst.ID, time.Minute)
		assertEnded(t, env.m, inst.ID, nil, "guest powered off at ")
	})
	env.deleteAndCheckGone(t, inst)
}

// Over SSH the settle window and the end of a boot are read through the same host calls.
func TestProgramExitIsToldOverSSH(t *testing.T) {
	t.Parallel()
	env, _, _ := newSSHTestEnv(t, nil)
	ctx := testContext(t)
	spec := env.spec("exit-ssh")
	spec.Entrypoint = []string{"/bin/sh", "-c", "exit 1"}
	_, err := env.m.Create(ctx, spec, Running)
	assertExitedAtOnce(t, err, spec.Name, 1)
	assertNoInstanceLeft(t, env.m, spec.Name)

	spec.Entrypoint = []string{"/bin/sh", "-c", "sleep 4; exit 3"}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	waitStopped(t, env.m, inst.ID, time.Minute)
	assertEnded(t, env.m, inst.ID, ptr(3), "program exited with code 3 at ")
	env.deleteAndCheckGone(t, inst)
}
