package instances

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Volumes in real guests under QEMU.

// volumeSpec is env.spec(name) running script with mounts.
func (env *testEnv) volumeSpec(name, script string, mounts ...VolumeMount) Spec {
	s := env.spec(name)
	s.Entrypoint = []string{"/bin/sh", "-c", script}
	s.Volumes = mounts
	return s
}

// waitConsoleMatch waits until the instance's console after offset matches re, and returns the match.
func (env *testEnv) waitConsoleMatch(t *testing.T, inst *Instance, offset int, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := env.console(t, inst)
		if offset <= len(c) {
			if m := re.FindSubmatch(c[offset:]); m != nil {
				out := make([]string, len(m))
				for i, s := range m {
					out[i] = string(s)
				}
				return out
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the console:\n%s", re, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAVolumeOutlivesItsInstanceAndIsSharedReadOnly(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	v, err := env.m.CreateVolume(ctx, VolumeSpec{Name: "keep", Size: 64 * units.MiB})
	if err != nil {
		t.Fatal(err)
	}
	rw := VolumeMount{VolumeID: v.ID, MountPath: "/srv/data"}
	ro := VolumeMount{VolumeID: v.ID, MountPath: "/mnt/ro", ReadOnly: true}
	writer, err := env.m.Create(ctx, env.volumeSpec("writer", `echo "secret $((6*7))" > /srv/data/f && sync && echo WROTE; sleep 1000`, rw), Running)
	if err != nil {
		t.Fatal(err)
	}
	env.waitConsoleMatch(t, writer, 0, regexp.MustCompile(`(?m)^WROTE`))
	if _, err := env.m.Create(ctx, env.volumeSpec("second", "sleep 1000", rw), Running); !errors.Is(err, ErrVolumeInUse) ||
		!strings.Contains(err.Error(), `"writer" (`+writer.ID+`)`) {
		t.Fatalf("a second writable attachment: %v, want ErrVolumeInUse naming writer and its id", err)
	}
	if _, err := env.m.Get(ctx, "second"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the refused create left an instance: %v", err)
	}
	if err := env.m.Delete(ctx, writer.ID); err != nil {
		t.Fatal(err)
	}
	// Another program, mounted elsewhere and read-only, on two instances at once.
	readScript := `cat /mnt/ro/f; echo x > /mnt/ro/g 2>/dev/null && echo WRITE-OK || echo WRITE-FAILED; sleep 1000`
	var readers []*Instance
	for _, name := range []string{"reader-a", "reader-b"} {
		r, err := env.m.Create(ctx, env.volumeSpec(name, readScript, ro), Running)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
	}
	for _, r := range readers {
		got := env.waitConsoleMatch(t, r, 0, regexp.MustCompile(`(?s)(secret \d+).*?(WRITE-\w+)`))
		if got[1] != "secret 42" || got[2] != "WRITE-FAILED" {
			t.Errorf("%s read %q and its write said %s; want secret 42 and a failed write", r.Name, got[1], got[2])
		}
	}
	got, err := env.m.GetVolume(ctx, v.ID)
	if err != nil || len(got.AttachedTo) != 2 || got.AttachedTo[0].InstanceName != "reader-a" || !got.AttachedTo[0].ReadOnly {
		t.Fatalf("AttachedTo = %+v, %v; want the two readers", got.AttachedTo, err)
	}
	if err := env.m.DeleteVolume(ctx, v.ID); !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), "reader-a") {
		t.Fatalf("delete while attached: %v, want ErrVolumeInUse naming reader-a", err)
	}
	for _, r := range readers {
		env.deleteAndCheckGone(t, r)
	}
	if err := env.m.DeleteVolume(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if left := filesUnder(t, env.m.layout.volumes()); len(left) > 0 {
		t.Errorf("left under volumes/: %v", left)
	}
}

var dfRE = regexp.MustCompile(`(?m)^DF (\d+) (\S+)\r?$`)

func TestVolumeGrowsWhileStoppedAndWhileRunningAndAttachmentsChangeInPlace(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	v, err := env.m.CreateVolume(ctx, VolumeSpec{Name: "grow", Size: 32 * units.MiB, Source: tarFile(t, map[string][]byte{"f": []byte("intact")})})
	if err != nil {
		t.Fatal(err)
	}
	// df's total 1K blocks and the file, once per boot.
	script := `echo "DF $(df -k /data | awk 'NR==2{print $2}') $(cat /data/f)"; sleep 1000`
	inst, err := env.m.Create(ctx, env.volumeSpec("grower", script, VolumeMount{VolumeID: v.ID, MountPath: "/data"}), Running)
	if err != nil {
		t.Fatal(err)
	}
	blocks := func(offset int) (int, string) {
		m := env.waitConsoleMatch(t, inst, offset, dfRE)
		n, _ := strconv.Atoi(m[1])
		return n, m[2]
	}
	before, data := blocks(0)
	if data != "intact" {
		t.Fatalf("the guest read %q", data)
	}
	if restarts, err := env.m.ResizeEffect(ctx, v.ID, 64*units.MiB); err != nil || len(restarts) != 1 || restarts[0] != "grower" {
		t.Fatalf("ResizeEffect = %v, %v; want grower restarted", restarts, err)
	}
	offset := env.consoleLen(t, inst)
	if _, err := env.m.ResizeVolume(ctx, v.ID, 64*units.MiB); err != nil {
		t.Fatal(err)
	}
	if st := env.state(t, inst.ID); st != Running {
		t.Fatalf("after a grow under it the instance is %s", st)
	}
	running, data := blocks(offset)
	if running <= before || data != "intact" {
		t.Fatalf("after the grow while running df says %d KiB (before %d) and the file %q", running, before, data)
	}
	// Stopped: the grow takes effect at the next start; the attachment stays.
	if _, err := env.m.SetState(ctx, inst.ID, Stopped); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.m.GetVolume(ctx, v.ID); len(got.AttachedTo) != 1 {
		t.Fatalf("a stopped instance lost its hold: %+v", got.AttachedTo)
	}
	if restarts, err := env.m.ResizeEffect(ctx, v.ID, 96*units.MiB); err != nil || len(restarts) != 0 {
		t.Fatalf("ResizeEffect on a stopped holder = %v, %v", restarts, err)
	}
	if _, err := env.m.ResizeVolume(ctx, v.ID, 96*units.MiB); err != nil {
		t.Fatal(err)
	}
	offset = env.consoleLen(t, inst)
	if _, err := env.m.SetState(ctx, inst.ID, Running); err != nil {
		t.Fatal(err)
	}
	stopped, data := blocks(offset)
	if stopped <= running || data != "intact" {
		t.Fatalf("after the grow while stopped df says %d KiB (before %d) and the file %q", stopped, running, data)
	}
	// A second volume attached to the running instance restarts it in place.
	w, err := env.m.CreateVolume(ctx, VolumeSpec{Name: "extra", Size: MinVolume, Source: tarFile(t, map[string][]byte{"f": []byte("second")})})
	if err != nil {
		t.Fatal(err)
	}
	spec := env.volumeSpec("grower", `echo "DF $(cat /data/f) $(cat /extra/f)"; sleep 1000`,
		VolumeMount{VolumeID: v.ID, MountPath: "/data"}, VolumeMount{VolumeID: w.ID, MountPath: "/extra", ReadOnly: true})
	offset = env.consoleLen(t, inst)
	upd, err := env.m.Update(ctx, inst.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	if upd.State != Running || len(upd.Volumes) != 2 {
		t.Fatalf("after the update: %s with %d volumes", upd.State, len(upd.Volumes))
	}
	if m := env.waitConsoleMatch(t, inst, offset, regexp.MustCompile(`(?m)^DF (\S+) (\S+)\r?$`)); m[1] != "intact" || m[2] != "second" {
		t.Fatalf("after the update the guest read %q and %q", m[1], m[2])
	}
	env.deleteAndCheckGone(t, inst)
	for _, id := range []string{v.ID, w.ID} {
		if err := env.m.DeleteVolume(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStandbyWithAVolumeContinuesItsOpenFileAndRefusesAResize(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	v, err := env.m.CreateVolume(ctx, VolumeSpec{Name: "log", Size: 32 * units.MiB})
	if err != nil {
		t.Fatal(err)
	}
	// The file stays open across the standby; each count goes to it and the console.
	script := `exec 3>>/data/log; i=0; while :; do echo "count $i" >&3; echo "count $i"; i=$((i+1)); sleep 0.3; done`
	inst, err := env.m.Create(ctx, env.volumeSpec("logger", script, VolumeMount{VolumeID: v.ID, MountPath: "/data"}), Running)
	if err != nil {
		t.Fatal(err)
	}
	last := env.waitCount(t, inst, 3, 0)
	if _, err := env.m.SetState(ctx, inst.ID, Standby); err != nil {
		t.Fatal(err)
	}
	snap, err := os.ReadFile(inst.Dir + "/snapshots/snapshot-latest/config.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.m.ResizeVolume(ctx, v.ID, 64*units.MiB)
	if !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), "is in Standby; its restore needs the disk as it was") {
		t.Fatalf("resize under a Standby holder: %v, want ErrVolumeInUse saying why", err)
	}
	if _, err := env.m.ResizeEffect(ctx, v.ID, 64*units.MiB); !errors.Is(err, ErrVolumeInUse) {
		t.Errorf("ResizeEffect under a Standby holder: %v", err)
	}
	after, _ := os.ReadFile(inst.Dir + "/snapshots/snapshot-latest/config.json")
	if got, _ := env.m.GetVolume(ctx, v.ID); got.Size != 32*units.MiB || !bytes.Equal(snap, after) || env.state(t, inst.ID) != Standby {
		t.Fatalf("the refused resize changed something: size %d, snapshot kept %v, state %s", got.Size, bytes.Equal(snap, after), env.state(t, inst.ID))
	}
	upd := env.volumeSpec("logger", script)
	if _, err := env.m.Update(ctx, inst.ID, upd); !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), `Set state = "Running" first`) {
		t.Errorf("detaching from a Standby instance: %v, want ErrInvalidState with the fix", err)
	}
	offset := env.consoleLen(t, inst)
	if _, err := env.m.SetState(ctx, inst.ID, Running); err != nil {
		t.Fatal(err)
	}
	env.waitCount(t, inst, last+5, offset)
	if first := firstCountAfter(t, inst, offset); first <= last {
		t.Fatalf("the guest rebooted: first count after restore %d, before standby %d", first, last)
	}
	if _, err := env.m.SetState(ctx, inst.ID, Stopped); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("debugfs", "-R", "cat /log", v.Path).Output()
	if err != nil {
		t.Fatal(err)
	}
	counts := countRE.FindAllSubmatch(out, -1)
	for i, m := range counts {
		if n, _ := strconv.Atoi(string(m[1])); n != i {
			t.Fatalf("the file on the volume skips at line %d (count %d): the open file did not continue\n%s", i, n, out)
		}
	}
	if len(counts) <= last+5 {
		t.Fatalf("the file holds %d counts, want more than %d", len(counts), last+5)
	}
	env.deleteAndCheckGone(t, inst)
	if err := env.m.DeleteVolume(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
}

func TestCloudHypervisorStandbyKeepsTheVolumeDisks(t *testing.T) {
	env := newTestEnv(t)
	m := chManager(t, env, "head", "")
	ctx := testContext(t)
	v, err := m.CreateVolume(ctx, VolumeSpec{Name: "chvol", Size: MinVolume})
	if err != nil {
		t.Fatal(err)
	}
	spec := chSpec(env, "ch-volume")
	spec.Volumes = []VolumeMount{{VolumeID: v.ID, MountPath: "/data"}}
	inst, err := m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	disks := func() []vmm.Disk {
		md, err := m.loadMetadata(ctx, inst.ID)
		if err != nil {
			t.Fatal(err)
		}
		return md.VMM.Disks
	}
	booted := disks()
	want := vmm.Disk{Path: v.Path, Serial: system.VolumeSerial(v.ID)}
	if len(booted) != 4 || booted[3] != want {
		t.Fatalf("the VMM's disks are %+v, want the volume as the fourth, %+v", booted, want)
	}
	for _, step := range []State{Standby, Running} {
		if inst, err = m.SetState(ctx, inst.ID, step); err != nil || inst.State != step {
			t.Fatalf("→ %s: %v", step, err)
		}
		if got := disks(); !slices.Equal(got, booted) {
			t.Fatalf("after %s the disks are %+v, want %+v", step, got, booted)
		}
	}
	env.m = m
	env.deleteAndCheckGone(t, inst)
	if err := m.DeleteVolume(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
}
