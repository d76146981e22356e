package instances

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
)

// A provider killed in the middle of a standby (OOM, a CI runner stopped) leaves the guest paused
// by a snapshot that nobody finishes, and a partial snapshot directory. The tests kill a helper
// process running the standby, and then ask a fresh manager for Standby or Running.

// standbyJob is what the standby helper does.
type standbyJob struct {
	DataDir    string
	ID         string
	Hypervisor string // "qemu" or "cloud-hypervisor"
	CHBinary   string // the stand-in, for cloud-hypervisor
	// Bandwidth (bytes per second) slows QEMU's migration, so that it still runs when the helper
	// is killed; the driver itself lifts the cap.
	Bandwidth int64
	// HangAt makes the helper say "HANGING" and hang when the standby creates a file with this
	// suffix.
	HangAt string
}

const standbyHelperEnv = "HYPEMAN_STANDBY_HELPER"

// TestStandbyHelperProcess is not a test of its own: it is the standby helper of the tests in
// this file, and does nothing unless one of them started it. It puts the job's instance in
// Standby and is killed before it finishes.
func TestStandbyHelperProcess(t *testing.T) {
	v := os.Getenv(standbyHelperEnv)
	if v == "" {
		return
	}
	var job standbyJob
	if err := json.Unmarshal([]byte(v), &job); err != nil {
		t.Fatal(err)
	}
	var drv vmm.Driver = qemu.New()
	accel := "tcg"
	if job.Hypervisor == "cloud-hypervisor" {
		drv, accel = &cloudhypervisor.Driver{Binary: job.CHBinary}, "auto"
	}
	m, err := New(Options{
		Host: &interruptHost{Host: host.Local{}, job: job}, DataDir: job.DataDir,
		Drivers: []vmm.Driver{drv}, Accelerator: accel, CompressSnapshots: true,
		Log: func(_ context.Context, msg string, f map[string]any) { fmt.Fprintf(os.Stderr, "%s %v\n", msg, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.SetState(context.Background(), job.ID, Standby)
	fmt.Printf("FINISHED %v\n", err) // the test kills the helper before this
}

// interruptHost is the helper's host: it slows QEMU's migration down and hangs where told.
type interruptHost struct {
	host.Host
	job standbyJob
}

func (h *interruptHost) Create(ctx context.Context, p string) (io.WriteCloser, error) {
	if h.job.HangAt != "" && strings.HasSuffix(p, h.job.HangAt) {
		fmt.Println("HANGING")
		select {}
	}
	return h.Host.Create(ctx, p)
}

func (h *interruptHost) DialUnix(ctx context.Context, p string) (net.Conn, error) {
	conn, err := h.Host.DialUnix(ctx, p)
	if err != nil || h.job.Bandwidth == 0 {
		return conn, err
	}
	return &throttledQMP{Conn: conn, bandwidth: h.job.Bandwidth}, nil
}

// throttledQMP rewrites the driver's "no bandwidth cap" for migrations into the job's cap.
type throttledQMP struct {
	net.Conn
	bandwidth int64
}

func (c *throttledQMP) Write(p []byte) (int, error) {
	unlimited := []byte(`"max-bandwidth":1099511627776`)
	if !bytes.Contains(p, unlimited) {
		return c.Conn.Write(p)
	}
	capped := bytes.ReplaceAll(p, unlimited, fmt.Appendf(nil, `"max-bandwidth":%d`, c.bandwidth))
	if _, err := c.Conn.Write(capped); err != nil {
		return 0, err
	}
	return len(p), nil
}

// standbyHelper is one running standby helper.
type standbyHelper struct {
	cmd     *exec.Cmd
	hanging chan struct{}
	mu      sync.Mutex
	out     strings.Builder
}

func startStandbyHelper(t *testing.T, job standbyJob) *standbyHelper {
	t.Helper()
	b, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	h := &standbyHelper{hanging: make(chan struct{})}
	h.cmd = exec.Command(os.Args[0], "-test.run=^TestStandbyHelperProcess$", "-test.count=1")
	h.cmd.Env = append(os.Environ(), standbyHelperEnv+"="+string(b))
	h.cmd.Stderr = writerFunc(h.write)
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.cmd.Process.Kill(); _ = h.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = h.write([]byte(sc.Text() + "\n"))
			if sc.Text() == "HANGING" {
				close(h.hanging)
			}
		}
	}()
	return h
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (h *standbyHelper) write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.Write(p)
}

func (h *standbyHelper) output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

// kill ends the helper as the OOM killer would.
func (h *standbyHelper) kill(t *testing.T) {
	t.Helper()
	if strings.Contains(h.output(), "FINISHED") {
		t.Fatalf("the standby finished before the helper could be killed:\n%s", h.output())
	}
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
	t.Logf("standby helper killed; it said:\n%s", h.output())
}

// waitFor polls cond for up to a minute, failing with what the helper said.
func (h *standbyHelper) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s; the helper said:\n%s", what, h.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamBytes is the size of the migration stream QEMU is writing into the partial snapshot
// (still under its temporary name), -1 when there is none.
func streamBytes(inst *Instance) int64 {
	files, _ := filepath.Glob(filepath.Join(inst.Dir, "snapshots", "snapshot-latest.partial", vmm.MemoryFile+"*.partial-*"))
	if len(files) != 1 {
		return -1
	}
	fi, err := os.Stat(files[0])
	if err != nil {
		return -1
	}
	return fi.Size()
}

// assertLeftPaused checks what the killed standby left: the guest Paused in its VMM (not Unknown)
// and a partial snapshot that is not taken for one.
func assertLeftPaused(t *testing.T, m *Manager, inst *Instance) {
	t.Helper()
	got, err := m.Get(context.Background(), inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Paused || got.PID != inst.PID {
		t.Fatalf("after the killed standby the instance is %s (%s), pid %d; want Paused in pid %d", got.State, got.StateReason, got.PID, inst.PID)
	}
	if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest.partial")); err != nil {
		t.Fatalf("the killed standby left no partial snapshot, so it was not killed mid-way: %v", err)
	}
	if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest")); err == nil {
		t.Fatal("a snapshot was published by a standby that was killed")
	}
}

// recoverAndCheck asks a fresh manager for the states next, one after the other, and checks that
// each Standby left no partial snapshot and no VMM, and that after each Running the guest went on
// counting where it was, without a reboot, for longer than the killed standby's migration takes:
// a migration left running would stop it again when it completed.
func recoverAndCheck(t *testing.T, env *testEnv, m *Manager, inst *Instance, next []State, last int) {
	t.Helper()
	ctx := testContext(t)
	for _, st := range next {
		offset := env.consoleLen(t, inst)
		got, err := m.SetState(ctx, inst.ID, st)
		if err != nil || got.State != st {
			t.Fatalf("→ %s after the killed standby: %v (%+v)", st, err, got)
		}
		switch {
		case st == Standby:
			assertNoPartialSnapshot(t, inst)
			if n := countVMMs(t, filepath.Join(inst.Dir, m.opts.Drivers[0].SocketName())); n != 0 {
				t.Fatalf("%d VMM processes for a Standby instance", n)
			}
		case st == Running && m.opts.Drivers[0].Name() == "qemu": // the stand-in runs no program
			reached := env.waitCount(t, inst, last+20, offset) // 6 s
			if first := firstCountAfter(t, inst, offset); first <= last {
				t.Fatalf("the guest counted from %d after %d: it did not go on where it was", first, last)
			}
			last = reached
			if n := bytes.Count(env.console(t, inst), []byte(system.MarkerStarted)); n != 1 {
				t.Fatalf("the program started %d times: the guest was lost and booted again", n)
			}
		}
	}
}

func TestProviderKilledMidStandbyIsRecoveredByTheNextStandbyOrRunning(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cases := []struct {
		name string
		// completed: the killed standby's migration finishes before the next call.
		completed bool
		next      []State
	}{
		{"migration still running, then Standby", false, []State{Standby, Running}},
		{"migration still running, then Running", false, []State{Running, Standby, Running}},
		{"migration completed, then Standby", true, []State{Standby, Running}},
		{"migration completed, then Running", true, []State{Running}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := testContext(t)
			spec := env.spec(fmt.Sprintf("killed-%d", i))
			spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
			inst, err := env.m.Create(ctx, spec, Running)
			if err != nil {
				t.Fatal(err)
			}
			last := env.waitCount(t, inst, 2, 0)
			h := startStandbyHelper(t, standbyJob{DataDir: env.m.DataDir(), ID: inst.ID, Hypervisor: "qemu", Bandwidth: 16 << 20})
			h.waitFor(t, "the migration stream", func() bool { return streamBytes(inst) > 1<<20 })
			h.kill(t)
			if c.completed {
				// The stream goes on without the helper, and its command renames it when done.
				h.waitFor(t, "the migration to complete", func() bool {
					_, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest.partial", vmm.CompressedMemoryFile))
					return err == nil
				})
			} else if streamBytes(inst) < 0 {
				t.Fatal("the migration ended before the next call")
			}
			m := env.manager(t, func(o *Options) { o.DataDir = env.m.DataDir() })
			assertLeftPaused(t, m, inst)
			recoverAndCheck(t, env, m, inst, c.next, last)
			env.deleteAndCheckGone(t, inst)
		})
	}
}

func TestProviderKilledMidStandbyIsRecoveredOnCloudHypervisor(t *testing.T) {
	env := newTestEnv(t)
	for i, next := range [][]State{{Standby, Running}, {Running}} {
		t.Run("then "+string(next[0]), func(t *testing.T) {
			m := chManager(t, env, "v53", "")
			ctx := testContext(t)
			inst, err := m.Create(ctx, chSpec(env, fmt.Sprintf("chkilled-%d", i)), Running)
			if err != nil {
				t.Fatal(err)
			}
			// Killed while compressing: Cloud Hypervisor has written the snapshot and holds the
			// VM Paused.
			h := startStandbyHelper(t, standbyJob{DataDir: m.DataDir(), ID: inst.ID, Hypervisor: "cloud-hypervisor",
				CHBinary: chstandin.BuildBinary(t), HangAt: ".lz4"})
			h.waitFor(t, "the compression", func() bool {
				select {
				case <-h.hanging:
					return true
				default:
					return false
				}
			})
			h.kill(t)
			fresh := env.manager(t, func(o *Options) {
				o.DataDir, o.Drivers, o.DefaultHypervisor, o.Accelerator = m.DataDir(), m.opts.Drivers, "cloud-hypervisor", "auto"
			})
			assertLeftPaused(t, fresh, inst)
			recoverAndCheck(t, env, fresh, inst, next, 0)
			env.m = fresh
			env.deleteAndCheckGone(t, inst)
		})
	}
}
