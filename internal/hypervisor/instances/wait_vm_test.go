package instances

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
)

// bootsScript prints first-ready in the first boot of an overlay and second-ready in every later
// one, each well after the program settled (a boot that did not wait returns before it), then runs on.
const bootsScript = `if [ -e /booted-once ]; then sleep 4; echo second-ready; else touch /booted-once; sync; sleep 4; echo first-ready; fi
exec sleep 100000`

func (env *testEnv) bootsSpec(name, console string) Spec {
	spec := env.spec(name)
	spec.Entrypoint = []string{"/bin/sh", "-c", bootsScript}
	spec.WaitFor = &WaitSpec{Console: console}
	return spec
}

// assertNotReady checks a failed wait's error: an ErrNotReady naming what it waited for, how
// long, and the console's last lines.
func assertNotReady(t *testing.T, err error, waiting string, atLeast time.Duration) *WaitError {
	t.Helper()
	t.Logf("wait error: %v", err)
	var we *WaitError
	if !errors.Is(err, ErrNotReady) || !errors.As(err, &we) {
		t.Fatalf("error = %v; want an ErrNotReady *WaitError", err)
	}
	if !strings.Contains(we.Waiting, waiting) || !strings.Contains(err.Error(), waiting) {
		t.Fatalf("waiting for %q; want it to name %q", we.Waiting, waiting)
	}
	if we.Waited < atLeast || !strings.Contains(err.Error(), we.Waited.String()) {
		t.Fatalf("waited %s (said: %v); want at least %s, said in the error", we.Waited, err, atLeast)
	}
	if len(we.Console) == 0 || len(we.Console) > waitTail || !strings.Contains(err.Error(), "console lines") {
		t.Fatalf("console tail of %d lines in %v; want 1 to %d", len(we.Console), err, waitTail)
	}
	return we
}

func TestWaitForConsoleCountsOnlyTheLinesOfThisBoot(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	m := env.m
	spec := env.bootsSpec("waitcons", "^first-ready$")
	t0 := time.Now()
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("create with a wait took %s", time.Since(t0))
	// Without the wait the create returns once the program settled, seconds before the line.
	if !strings.Contains(string(env.console(t, inst)), "first-ready\n") {
		t.Fatalf("the create returned before the line it waits for was printed:\n%s", env.console(t, inst))
	}

	t.Run("a new wait_for alone restarts nothing", func(t *testing.T) {
		spec.WaitFor = &WaitSpec{Console: "^second-ready$"}
		got, err := m.Update(ctx, inst.ID, spec)
		if err != nil {
			t.Fatal(err)
		}
		if got.PID != inst.PID || got.State != Running {
			t.Fatalf("after the update: %s pid %d, before pid %d", got.State, got.PID, inst.PID)
		}
	})

	t.Run("a start waits for its own boot's line", func(t *testing.T) {
		if _, err := m.SetState(ctx, inst.ID, Stopped); err != nil {
			t.Fatal(err)
		}
		offset := env.consoleLen(t, inst)
		if _, err := m.SetState(ctx, inst.ID, Running); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(env.console(t, inst)[offset:]), "second-ready\n") {
			t.Fatalf("the start returned before its boot printed second-ready:\n%s", env.console(t, inst)[offset:])
		}
	})

	t.Run("a line of an earlier boot does not satisfy the wait of a restart in place", func(t *testing.T) {
		spec.WaitFor = &WaitSpec{Console: "^first-ready$"} // only the first boot printed it
		spec.Env = map[string]string{"RESTART": "1"}       // a new program: a restart in place
		uctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		t0 := time.Now()
		_, err := m.Update(uctx, inst.ID, spec)
		took := time.Since(t0)
		we := assertNotReady(t, err, `console line matching "^first-ready$"`, 5*time.Second)
		if we.After != "boot" || !strings.Contains(strings.Join(we.Console, "\n"), "second-ready") {
			t.Fatalf("after %q, console %q: want the restarted boot's lines", we.After, we.Console)
		}
		if took > 20*time.Second+time.Minute {
			t.Fatalf("the update took %s with a 20s deadline", took)
		}
		got := assertEnded(t, m, inst.ID, nil, "stopped at ")
		if !strings.Contains(got.StateReason, "not ready within") {
			t.Fatalf("state_reason %q does not say the wait failed", got.StateReason)
		}
	})
}

func TestProgramThatExitsDuringTheWaitFailsItAtOnceWithItsExitCode(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.spec("waitexit")
	spec.Entrypoint = []string{"/bin/sh", "-c", "sleep 4; echo giving up; exit 7"}
	spec.WaitFor = &WaitSpec{Console: "never printed"}
	t0 := time.Now()
	inst, err := env.m.Create(ctx, spec, Running) // ctx allows minutes
	took := time.Since(t0)
	we := assertNotReady(t, err, `console line matching "never printed"`, 0)
	if !errors.Is(err, ErrProgramExited) || we.ExitCode == nil || *we.ExitCode != 7 || !strings.Contains(err.Error(), "exited with code 7") {
		t.Fatalf("error %v; want the exit code 7", err)
	}
	if took > 45*time.Second {
		t.Fatalf("the create took %s: the exit did not end the wait at once", took)
	}
	// A create that booted but did not become ready keeps the instance, Stopped, for its console.
	if inst == nil {
		t.Fatal("the create returned no instance; want the instance kept")
	}
	got := assertEnded(t, env.m, inst.ID, ptr(7), "program exited with code 7")
	if !strings.Contains(string(env.console(t, got)), "giving up") {
		t.Fatal("the console of the kept instance lost the program's output")
	}
	if n := countVMMs(t, inst.Dir); n != 0 {
		t.Fatalf("%d VMMs left", n)
	}
	env.deleteAndCheckGone(t, got)
}

// httpdScript serves /www on port 8080 of the guest, a few seconds after the program starts.
const httpdScript = `sleep 3; mkdir -p /www && echo ok > /www/index.html
/bin/busybox httpd -p 8080 -h /www
echo httpd-up
exec sleep 100000`

func TestWaitForTCPAndHTTPOnTheGuestsAddress(t *testing.T) {
	t.Parallel()
	if !netnstest.Enter(t) {
		return
	}
	env := newTestEnv(t)
	ctx := testContext(t)
	env.m = env.networkManager(t, network.Config{}, nil)
	m := env.m
	spec := env.spec("waithttp")
	spec.Entrypoint = []string{"/bin/sh", "-c", httpdScript}
	spec.WaitFor = &WaitSpec{TCPPort: 8080, HTTP: &HTTPWait{Port: 8080, Path: "/index.html"}, Delay: time.Second}
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	// One GET, no retry: the create returned once the server answered.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + inst.IPAddress + ":8080/index.html")
	if err != nil {
		t.Fatalf("the server of %s did not answer right after the create: %v", inst.IPAddress, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the server of %s answered %s right after the create", inst.IPAddress, resp.Status)
	}

	t.Run("an HTTP status that never comes times out and says what it got", func(t *testing.T) {
		spec.WaitFor = &WaitSpec{HTTP: &HTTPWait{Port: 8080, Path: "/index.html", Status: 204}}
		if _, err := m.Update(ctx, inst.ID, spec); err != nil {
			t.Fatal(err)
		}
		if _, err := m.SetState(ctx, inst.ID, Stopped); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a boot under TCG on a loaded machine takes up to ~20 s
		defer cancel()
		_, err := m.SetState(sctx, inst.ID, Running)
		we := assertNotReady(t, err, "answering 204", 5*time.Second)
		if !strings.Contains(we.Waiting, "answered 200 OK") {
			t.Fatalf("waiting %q does not say what the server answered", we.Waiting)
		}
		assertEnded(t, m, inst.ID, nil, "stopped at ")
	})

	t.Run("a restore to Running honours the wait", func(t *testing.T) {
		spec.WaitFor = &WaitSpec{TCPPort: 8080, Console: "^httpd-up$"}
		if _, err := m.Update(ctx, inst.ID, spec); err != nil {
			t.Fatal(err)
		}
		if _, err := m.SetState(ctx, inst.ID, Running); err != nil {
			t.Fatal(err)
		}
		if _, err := m.SetState(ctx, inst.ID, Standby); err != nil {
			t.Fatal(err)
		}
		// The line of the boot the snapshot was taken from counts; the port does too.
		got, err := m.SetState(ctx, inst.ID, Running)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != Running {
			t.Fatalf("restored to %s", got.State)
		}
		if _, err := m.SetState(ctx, inst.ID, Standby); err != nil {
			t.Fatal(err)
		}
		spec.WaitFor = &WaitSpec{TCPPort: 8081} // nothing listens there
		if _, err := m.Update(ctx, inst.ID, spec); err != nil {
			t.Fatal(err)
		}
		// Restoring only to Paused waits for nothing: the guest does not run.
		if _, err := m.SetState(ctx, inst.ID, Paused); err != nil {
			t.Fatalf("a restore to Paused: %v", err)
		}
		if _, err := m.SetState(ctx, inst.ID, Standby); err != nil {
			t.Fatal(err)
		}
		boots := bytes.Count(env.console(t, inst), []byte("httpd-up"))
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = m.SetState(rctx, inst.ID, Running)
		we := assertNotReady(t, err, "TCP connect to "+inst.IPAddress+":8081", 5*time.Second)
		if we.After != "restore" {
			t.Fatalf("the wait ran after %q, want the restore", we.After)
		}
		// The restored memory is what the user had: the instance sleeps again instead of powering off.
		if we.Left != Standby || !strings.Contains(we.Error(), "put back in Standby") {
			t.Fatalf("a restore that was not ready left the instance %s: %v", we.Left, we)
		}
		if got, err := m.Get(ctx, inst.ID); err != nil || got.State != Standby {
			t.Fatalf("after a restore that was not ready: %v, %v; want Standby", got, err)
		}
		// And the next restore, with a wait that can hold, brings back the same boot.
		spec.WaitFor = &WaitSpec{TCPPort: 8080}
		if _, err := m.Update(ctx, inst.ID, spec); err != nil {
			t.Fatal(err)
		}
		if got, err := m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running || got.PID == 0 {
			t.Fatalf("restoring again: %v, %v", got, err)
		}
		if n := bytes.Count(env.console(t, inst), []byte("httpd-up")); n != boots {
			t.Fatalf("the console shows %d boots, want the %d before the restores: the snapshots kept the boot", n, boots)
		}
	})
}

// dialCounter is a host whose TCP dials are counted: the wait's dials go through the host seam.
type dialCounter struct {
	host.Host
	dials atomic.Int64
}

func (d *dialCounter) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	d.dials.Add(1)
	return d.Host.DialTCP(ctx, addr)
}

func TestWaitForOverSSHDialsThroughTheHost(t *testing.T) {
	t.Parallel()
	if !netnstest.Enter(t) {
		return
	}
	counter := &dialCounter{}
	env, _, _ := newSSHTestEnv(t, func(h host.Host) host.Host { counter.Host = h; return counter })
	env.m = env.manager(t, func(o *Options) { o.Host = counter; o.Network = network.Config{Enabled: true} })
	ctx := testContext(t)
	spec := env.spec("waitssh")
	spec.Entrypoint = []string{"/bin/sh", "-c", httpdScript}
	spec.WaitFor = &WaitSpec{Console: "^httpd-up$", HTTP: &HTTPWait{Port: 8080, Path: "/index.html"}}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env.console(t, inst)), "httpd-up\n") {
		t.Fatalf("the create returned before the console line it waits for:\n%s", env.console(t, inst))
	}
	if counter.dials.Load() == 0 {
		t.Fatal("the HTTP wait dialled around the host seam: no DialTCP through the SSH host")
	}
	env.deleteAndCheckGone(t, inst)
}
