package instances

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// These tests boot real guests under QEMU TCG (see testenv_test.go), one at a time.

func TestTheProgramRunsWithExactlyTheConfiguredEnv(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	tricky := map[string]string{
		"QUOTES":   `single ' and double " quotes`,
		"SUBST":    "$(touch /pwned) and `id` and ${HOME}",
		"SPACES":   "  leading and trailing  ",
		"EQUALS":   "a=b=c",
		"NEWLINES": "line one\nline two\n",
		"EMPTY":    "",
	}
	spec := env.spec("envcheck")
	spec.Entrypoint = []string{"/bin/env"}
	spec.Env = tricky
	inst := env.startExiting(t, spec, 0)
	out := env.waitProgramExit(t, inst, 0)
	// The image sets PATH; the instance's values are merged over it, sorted by key.
	want := "EMPTY=\nEQUALS=a=b=c\nNEWLINES=line one\nline two\n\nPATH=" + imagePath + "\nQUOTES=" + tricky["QUOTES"] +
		"\nSPACES=" + tricky["SPACES"] + "\nSUBST=" + tricky["SUBST"] + "\n"
	if out != want {
		t.Fatalf("the program saw the environment\n%q\nwant\n%q", out, want)
	}
	if got := env.state(t, inst.ID); got != Stopped {
		t.Fatalf("after the program exited the state is %s, want Stopped", got)
	}
}

func TestProgramGetsExactArgvAndWorkdirAndKeepsItsOverlay(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	args := []string{"it's", `"double"`, "$(echo no)", "`echo no`", "with  spaces", "k=v", "two\nlines", ""}
	script := `for a; do printf 'ARG<%s>\n' "$a"; done; printf 'PWD<%s>\n' "$(pwd)"; ` +
		`if [ -f /root/marker ]; then echo "MARKER<$(cat /root/marker)>"; else echo first-boot > /root/marker; sync; echo NO-MARKER; fi`
	spec := env.spec("argv")
	spec.Entrypoint = append([]string{"/bin/sh", "-c", script, "argv0"}, args...)
	spec.Workdir = "/opt/app"
	inst := env.startExiting(t, spec, 0)
	out := env.waitProgramExit(t, inst, 0)
	var want strings.Builder
	for _, a := range args {
		fmt.Fprintf(&want, "ARG<%s>\n", a)
	}
	want.WriteString("PWD</opt/app>\nNO-MARKER\n")
	if out != want.String() {
		t.Fatalf("program output\n%q\nwant\n%q", out, want.String())
	}
	// Start again: the overlay written by the first boot is still there.
	if _, err := env.m.SetState(ctx, inst.ID, Running); !errors.Is(err, ErrProgramExited) {
		t.Fatalf("a start of a program that exits at once: %v", err)
	}
	if out := env.waitProgramExit(t, inst, 0); !strings.Contains(out, "MARKER<first-boot>") {
		t.Fatalf("second boot did not find the overlay file:\n%s", out)
	}
}

func TestStandbyRestoreContinuesTheGuest(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.spec("counter")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	last := env.waitCount(t, inst, 3, 0)

	inst, err = env.m.SetState(ctx, inst.ID, Standby)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != Standby || inst.SnapshotBytes <= 0 {
		t.Fatalf("after standby: state %s, snapshot %d bytes", inst.State, inst.SnapshotBytes)
	}
	snap := filepath.Join(inst.Dir, "snapshots", "snapshot-latest")
	for _, f := range []string{"config.json", "state.json", vmm.MemoryFile + ".lz4"} {
		if _, err := os.Stat(filepath.Join(snap, f)); err != nil {
			t.Errorf("snapshot file %s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(snap, vmm.MemoryFile)); !os.IsNotExist(err) {
		t.Errorf("the uncompressed memory image is still there: %v", err)
	}
	if n := countVMMs(t, inst.Dir); n != 0 {
		t.Fatalf("%d VMM processes still run for a Standby instance", n)
	}
	before := consoleCounts(t, inst)
	offset := env.consoleLen(t, inst)

	inst, err = env.m.SetState(ctx, inst.ID, Running)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != Running {
		t.Fatalf("after restore the state is %s", inst.State)
	}
	after := env.waitCount(t, inst, last+3, offset)
	first := firstCountAfter(t, inst, offset)
	if first <= before[len(before)-1] || after <= last {
		t.Fatalf("the guest rebooted instead of continuing: last count before standby %d, first after restore %d", before[len(before)-1], first)
	}
	if bytes.Count(env.console(t, inst), []byte(system.MarkerStarted)) != 1 {
		t.Fatalf("the program started twice:\n%s", env.console(t, inst))
	}
	if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest")); !os.IsNotExist(err) {
		t.Fatalf("the snapshot was not dropped after the guest ran: %v", err)
	}
	if _, err := env.m.SetState(ctx, inst.ID, Paused); err != nil {
		t.Fatal(err)
	}
	if got := env.state(t, inst.ID); got != Paused {
		t.Fatalf("state %s, want Paused", got)
	}
	if _, err := env.m.SetState(ctx, inst.ID, Running); err != nil {
		t.Fatal(err)
	}
	env.deleteAndCheckGone(t, inst)
}

func TestStopStartKeepsTheOverlayAndDeleteLeavesNothing(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.spec("stopstart")
	spec.Entrypoint = []string{"/bin/sh", "-c", `if [ -f /root/kept ]; then echo "KEPT<$(cat /root/kept)>"; fi; echo "written $$" > /root/kept; ` + counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	env.waitCount(t, inst, 2, 0)
	if inst, err = env.m.SetState(ctx, inst.ID, Stopped); err != nil || inst.State != Stopped {
		t.Fatalf("stop: %v, %+v", err, inst)
	}
	if n := countVMMs(t, inst.Dir); n != 0 {
		t.Fatalf("%d VMM processes after stop", n)
	}
	offset := env.consoleLen(t, inst)
	if inst, err = env.m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
		t.Fatalf("start: %v, %+v", err, inst)
	}
	env.waitCount(t, inst, 1, offset)
	if !regexp.MustCompile(`KEPT<written \d+>`).Match(env.console(t, inst)[offset:]) {
		t.Fatalf("the overlay lost the file written before the stop:\n%s", env.console(t, inst)[offset:])
	}
	env.deleteAndCheckGone(t, inst)
}

func TestDeleteFromEveryState(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	for _, st := range []State{Paused, Standby, Stopped} {
		t.Run(string(st), func(t *testing.T) {
			spec := env.spec("del-" + strings.ToLower(string(st)))
			spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
			inst, err := env.m.Create(ctx, spec, st)
			if err != nil {
				t.Fatal(err)
			}
			if inst.State != st {
				t.Fatalf("created in %s, want %s", inst.State, st)
			}
			env.deleteAndCheckGone(t, inst)
		})
	}
}

func TestStandbyFailureResumesTheVM(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.faults.snapshot = errors.New("injected: disk full after writing part of the snapshot")
	ctx := testContext(t)
	spec := env.spec("failstandby")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	last := env.waitCount(t, inst, 2, 0)
	_, err = env.m.SetState(ctx, inst.ID, Standby)
	if err == nil || !strings.Contains(err.Error(), "injected") || !strings.Contains(err.Error(), "Running") {
		t.Fatalf("standby error = %v; want the injected failure and that the VM is Running", err)
	}
	if got := env.state(t, inst.ID); got != Running {
		t.Fatalf("after a failed standby the state is %s, want Running", got)
	}
	env.waitCount(t, inst, last+2, 0) // still counting
	if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest.partial")); !os.IsNotExist(err) {
		t.Fatalf("a partial snapshot was left behind: %v", err)
	}
	env.deleteAndCheckGone(t, inst)
}

// A snapshot that cannot be restored keeps the instance in Standby, and the error names the way
// out: discarding the snapshot, which keeps the overlay, and the instance boots again from it.
func TestCorruptSnapshotKeepsStandbyUntilItIsDiscarded(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cases := []struct {
		name     string
		compress bool
		corrupt  func(t *testing.T, mem string)
	}{
		{"truncated lz4", true, func(t *testing.T, mem string) { truncateHalf(t, mem) }},
		{"garbled memory image", false, func(t *testing.T, mem string) { garble(t, mem) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := env.manager(t, func(o *Options) { o.CompressSnapshots = tc.compress })
			ctx := testContext(t)
			spec := env.spec("corrupt")
			spec.Entrypoint = []string{"/bin/sh", "-c", `if [ -f /root/kept ]; then echo "KEPT<$(cat /root/kept)>"; else echo before-standby > /root/kept; sync; fi; ` + counterScript}
			inst, err := m.Create(ctx, spec, Standby)
			if err != nil {
				t.Fatal(err)
			}
			mem := filepath.Join(inst.Dir, "snapshots", "snapshot-latest", vmm.MemoryFile)
			if tc.compress {
				mem += ".lz4"
			}
			tc.corrupt(t, mem)
			corrupted, err := os.ReadFile(mem)
			if err != nil {
				t.Fatal(err)
			}
			for _, target := range []State{Running, Stopped} {
				_, err = m.SetState(ctx, inst.ID, target)
				t.Logf("→ %s: %v", target, err)
				if err == nil || !strings.Contains(err.Error(), "stays in Standby") || !strings.Contains(err.Error(), `set state = "Stopped" and discard_snapshot = true`) {
					t.Fatalf("→ %s from a corrupt snapshot: %v; want it to stay in Standby and name discard_snapshot", target, err)
				}
				if got, err := m.Get(ctx, inst.ID); err != nil || got.State != Standby {
					t.Fatalf("after a failed restore: %v, %v; want Standby", got, err)
				}
				if now, err := os.ReadFile(mem); err != nil || !bytes.Equal(now, corrupted) {
					t.Fatalf("the snapshot was not kept as it was: %v", err)
				}
				if n := countVMMs(t, inst.Dir); n != 0 {
					t.Fatalf("%d VMM processes left after a failed restore", n)
				}
			}
			overlay, err := os.Stat(filepath.Join(inst.Dir, "overlay.raw"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.SetState(ctx, inst.ID, Stopped, WithDiscardSnapshot())
			if err != nil || got.State != Stopped || got.StateReason != "" || got.ExitCode != nil {
				t.Fatalf("discard: %v, %+v", err, got)
			}
			if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots")); !os.IsNotExist(err) {
				t.Fatalf("the snapshot is still there: %v", err)
			}
			if now, err := os.Stat(filepath.Join(inst.Dir, "overlay.raw")); err != nil || !now.ModTime().Equal(overlay.ModTime()) || now.Size() != overlay.Size() {
				t.Fatalf("the overlay changed with the discard: %v", err)
			}
			offset := len(env.console(t, inst))
			if got, err = m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
				t.Fatalf("boot after the discard: %v, %+v", err, got)
			}
			env.m = m
			env.waitConsole(t, got, offset, "KEPT<before-standby>")
			env.deleteAndCheckGone(t, got)
		})
	}
}

func truncateHalf(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// garble overwrites the start of a file, where QEMU's stream header is.
func garble(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), 0); err != nil {
		t.Fatal(err)
	}
}

func TestDeadVMMIsSeenAsStoppedAndRepaired(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.spec("killed")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(inst.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for env.state(t, inst.ID) != Stopped {
		if time.Now().After(deadline) {
			t.Fatalf("a killed VMM is seen as %s, want Stopped", env.state(t, inst.ID))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if inst, err = env.m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
		t.Fatalf("repair: %v %+v", err, inst)
	}
	env.deleteAndCheckGone(t, inst)
}

func TestFailedCreatesLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	cases := []struct {
		name    string
		mutate  func(*Spec, *Manager)
		wantErr string
	}{
		{"missing-entrypoint", func(s *Spec, _ *Manager) { s.Entrypoint = []string{"/no/such/program"} }, "entrypoint not found: /no/such/program"},
		{"unknown-image", func(s *Spec, _ *Manager) { s.Image = env.registry + "/no/such:image" }, "no/such"},
		{"missing-kernel", func(s *Spec, m *Manager) { m.opts.System.Kernel = "/nonexistent/vmlinuz" }, "/nonexistent/vmlinuz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := env.manager(t)
			spec := env.spec(tc.name)
			tc.mutate(&spec, m)
			_, err := m.Create(ctx, spec, Running)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("create error = %v; want it to mention %q", err, tc.wantErr)
			}
			assertNoInstanceLeft(t, m, spec.Name)
		})
	}
}

func TestBadInputIsRejectedNamingTheField(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := context.Background()
	cases := []struct {
		name    string
		mutate  func(*Spec)
		wantErr string
	}{
		{"upper-case-name", func(s *Spec) { s.Name = "Web" }, `name "Web" is not allowed: 1 to 63 characters`},
		{"long-name", func(s *Spec) { s.Name = strings.Repeat("a", 64) }, "name \"" + strings.Repeat("a", 64) + "\" is not allowed"},
		{"path-traversal", func(s *Spec) { s.Name = "../../etc" }, `name "../../etc" is not allowed`},
		{"zero-vcpus", func(s *Spec) { s.VCPUs = 0 }, `vcpus "0" is not allowed: a whole number from 1 to 128`},
		{"negative-memory", func(s *Spec) { s.Memory = -units.MiB }, `memory "-1MiB" is not allowed: from 128MiB to 1TiB`},
		{"tiny-memory", func(s *Spec) { s.Memory = 64 * units.MiB }, `memory "64MiB" is not allowed: from 128MiB to 1TiB`},
		{"huge-memory", func(s *Spec) { s.Memory = 1000 * units.TiB }, `memory "1000TiB" is not allowed: from 128MiB to 1TiB`},
		{"huge-overlay", func(s *Spec) { s.OverlaySize = 17 * units.TiB }, `overlay_size "17TiB" is not allowed: from 64MiB to 16TiB`},
		{"empty-entrypoint", func(s *Spec) { s.Entrypoint = []string{} }, `entrypoint "[]" is not allowed`},
		{"nul-in-cmd", func(s *Spec) { s.Cmd = []string{"a\x00"} }, `cmd[0] "a\x00" is not allowed: any text without NUL bytes`},
		{"odd-hotplug", func(s *Spec) { s.Hotplug = 100 * units.MiB }, `hotplug_memory "100MiB" is not allowed: 0 or a multiple of 128MiB`},
		{"tiny-overlay", func(s *Spec) { s.OverlaySize = units.MiB }, `overlay_size "1MiB" is not allowed`},
		{"bad-image", func(s *Spec) { s.Image = "UPPER/Case::tag" }, `image "UPPER/Case::tag" is not allowed`},
		{"bad-env-key", func(s *Spec) { s.Env = map[string]string{"1ABC": "x"} }, `env key "1ABC" is not allowed`},
		{"relative-workdir", func(s *Spec) { s.Workdir = "app" }, `workdir "app" is not allowed: an absolute path`},
		{"unknown-hypervisor", func(s *Spec) { s.Hypervisor = "xen" }, `hypervisor "xen" is not allowed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := env.spec("bad")
			tc.mutate(&spec)
			_, err := env.m.Create(ctx, spec, Running)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v; want ErrInvalidConfig saying %q", err, tc.wantErr)
			}
		})
	}
	if _, err := env.m.Create(ctx, env.spec("ok"), "Sleeping"); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Running, Paused, Standby, Stopped") {
		t.Fatalf("unknown state: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(env.m.DataDir(), "guests")); len(entries) != 0 {
		t.Fatalf("rejected input left %d instance directories", len(entries))
	}
}

func TestDuplicateNameIsRefused(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.spec("twin")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Stopped)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.m.Create(ctx, spec, Stopped); !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), inst.ID) {
		t.Fatalf("second create with the same name: %v", err)
	}
	got, err := env.m.Get(ctx, "twin")
	if err != nil || got.ID != inst.ID {
		t.Fatalf("Get by name: %v %+v", err, got)
	}
	if _, err := env.m.Get(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing name: %v", err)
	}
	env.deleteAndCheckGone(t, inst)

	// An instance whose directory was removed behind the manager's back does not keep its name.
	inst, err = env.m.Create(ctx, spec, Stopped)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(inst.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := env.m.Get(ctx, "twin"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an instance whose files are gone: %v", err)
	}
	again, err := env.m.Create(ctx, spec, Stopped)
	if err != nil || again.ID == inst.ID {
		t.Fatalf("re-create after the files were removed: %v", err)
	}
	env.deleteAndCheckGone(t, again)
}

const counterScript = `i=0; while :; do echo "count $i"; i=$((i+1)); sleep 0.3; done`

var countRE = regexp.MustCompile(`(?m)^count (\d+)\r?$`)

func consoleCounts(t *testing.T, inst *Instance) []int {
	t.Helper()
	b, _ := os.ReadFile(inst.ConsoleLog)
	var out []int
	for _, m := range countRE.FindAllSubmatch(b, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		out = append(out, n)
	}
	return out
}

func firstCountAfter(t *testing.T, inst *Instance, offset int) int {
	t.Helper()
	b, _ := os.ReadFile(inst.ConsoleLog)
	// The offsets come from testEnv.console, which reads line ends as "\n".
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	m := countRE.FindSubmatch(b[offset:])
	if m == nil {
		t.Fatalf("no count after offset %d", offset)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func assertNoInstanceLeft(t *testing.T, m *Manager, name string) {
	t.Helper()
	if entries, _ := os.ReadDir(filepath.Join(m.DataDir(), "guests")); len(entries) != 0 {
		t.Errorf("instance directories left: %v", entries)
	}
	if _, err := os.Lstat(filepath.Join(m.DataDir(), "names", name)); !os.IsNotExist(err) {
		t.Errorf("name %s still reserved: %v", name, err)
	}
	if n := countVMMs(t, filepath.Join(m.DataDir(), "guests")); n != 0 {
		t.Errorf("%d VMM processes left", n)
	}
}

func TestUpdateRestartsInPlaceKeepingTheOverlay(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	script := `if [ -f /root/kept ]; then echo "KEPT<$(cat /root/kept)>"; fi; echo "$GREETING" > /root/kept; sync; echo "GREETING<$GREETING>"; ` + counterScript
	spec := env.spec("update")
	spec.Entrypoint = []string{"/bin/sh", "-c", script}
	spec.Env = map[string]string{"GREETING": "hello"}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	env.waitCount(t, inst, 1, 0)
	offset := env.consoleLen(t, inst)

	spec.Env = map[string]string{"GREETING": "bonjour"}
	updated, err := env.m.Update(ctx, inst.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	if updated.ID != inst.ID || updated.State != Running || updated.Env["GREETING"] != "bonjour" {
		t.Fatalf("after update: %+v", updated)
	}
	env.waitCount(t, inst, 1, offset)
	after := string(env.console(t, inst)[offset:])
	if !strings.Contains(after, "KEPT<hello>") || !strings.Contains(after, "GREETING<bonjour>") {
		t.Fatalf("the restarted guest did not see its overlay and new env:\n%s", after)
	}

	renamed := spec
	renamed.Name = spec.Name + "-renamed"
	if _, err := env.m.Update(ctx, inst.ID, renamed); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "name cannot change") {
		t.Fatalf("update of the name: %v", err)
	}
	if _, err := env.m.SetState(ctx, inst.ID, Standby); err != nil {
		t.Fatal(err)
	}
	spec.Env = map[string]string{"GREETING": "hallo"}
	if _, err := env.m.Update(ctx, inst.ID, spec); !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), `Set state = "Running" first`) {
		t.Fatalf("update in Standby: %v", err)
	}
	if got := env.state(t, inst.ID); got != Standby {
		t.Fatalf("a refused update changed the state to %s", got)
	}
	list, err := env.m.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != inst.ID || list[0].State != Standby {
		t.Fatalf("List = %+v, %v", list, err)
	}
	env.deleteAndCheckGone(t, inst)
}

func TestHotplugMemoryGrowsAfterBootAndShrinksForStandby(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.spec("hotplug")
	spec.Hotplug = 256 * units.MiB
	spec.Entrypoint = []string{"/bin/sh", "-c", `while :; do echo "memtotal $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"; sleep 0.3; done`}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	// The guest boots with 256 MiB and grows towards 512 MiB once the program runs: a MemTotal above
	// 256 MiB can only come from hotplugged memory.
	grown := env.waitMemTotal(t, inst, 0, func(kb int) bool { return kb > 256*1024 })
	inst, err = env.m.SetState(ctx, inst.ID, Standby)
	if err != nil {
		t.Fatal(err)
	}
	offset := env.consoleLen(t, inst)
	if _, err := env.m.SetState(ctx, inst.ID, Running); err != nil {
		t.Fatal(err)
	}
	env.waitMemTotal(t, inst, offset, func(kb int) bool { return kb >= grown })
	env.deleteAndCheckGone(t, inst)
}

var memTotalRE = regexp.MustCompile(`(?m)^memtotal (\d+)\r?$`)

// waitMemTotal waits for a "memtotal KB" line after offset that satisfies ok, and returns it.
func (env *testEnv) waitMemTotal(t *testing.T, inst *Instance, offset int, ok func(int) bool) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := env.console(t, inst)
		for _, m := range memTotalRE.FindAllSubmatch(c[min(offset, len(c)):], -1) {
			if kb, _ := strconv.Atoi(string(m[1])); ok(kb) {
				return kb
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching memtotal line:\n%s", c[min(offset, len(c)):])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestDeleteRemovesAnInstanceWhoseMetadataIsCorrupt(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.spec("damaged")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inst.Dir, "metadata.json"), []byte("{not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := env.m.Get(ctx, "damaged"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Get of a corrupt instance: %v", err)
	}
	env.deleteAndCheckGone(t, inst)
	if _, err := env.m.Get(ctx, "damaged"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}
