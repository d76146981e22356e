package instances

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// The streamed snapshot: QEMU's migration stream is compressed by the host's lz4 as it is written
// and decompressed as it is read back, so no raw memory image is ever on disk. A compressor that
// fails in the middle undoes the standby (the guest keeps running, no partial snapshot stays);
// a decompressor that fails in the middle keeps the snapshot, and the instance stays in Standby.

// logRecorder keeps the fields of every log message with a given text.
type logRecorder struct {
	mu     sync.Mutex
	fields map[string][]map[string]any
}

func (r *logRecorder) log(t testing.TB) func(context.Context, string, map[string]any) {
	return func(_ context.Context, msg string, f map[string]any) {
		t.Logf("%s %v", msg, f)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fields == nil {
			r.fields = map[string][]map[string]any{}
		}
		r.fields[msg] = append(r.fields[msg], f)
	}
}

// last is the fields of the last message msg; nil when there was none.
func (r *logRecorder) last(msg string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.fields[msg]; len(l) > 0 {
		return l[len(l)-1]
	}
	return nil
}

func TestStreamedStandbyAndRestoreSurviveAFailingCompressor(t *testing.T) {
	testutil.RequireTool(t, "lz4")
	env := newTestEnv(t)
	var logs logRecorder
	env.m = env.manager(t, func(o *Options) { o.Log = logs.log(t) })
	failing := testutil.FailingLZ4(t, 4*units.MiB)
	path := os.Getenv("PATH")
	ctx := testContext(t)
	spec := env.spec("streamed")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	last := env.waitCount(t, inst, 2, 0)

	// The compressor dies 4 MiB into the stream: the standby is undone.
	t.Setenv("PATH", failing+":"+path)
	_, err = env.m.SetState(ctx, inst.ID, Standby)
	if err == nil || !strings.Contains(err.Error(), "standby undone: streamed is Running") {
		t.Fatalf("standby through a failing compressor: %v, want it undone with the guest Running", err)
	}
	t.Logf("standby through a failing compressor: %v", err)
	if got := waitState(t, env.m, inst.ID, Running, 0); got.PID != inst.PID {
		t.Fatalf("the VMM changed: pid %d → %d", inst.PID, got.PID)
	}
	last = env.waitCount(t, inst, last+2, 0) // still counting
	assertNoPartialSnapshot(t, inst)

	// The real lz4: the snapshot holds only the compressed image, written as it streamed.
	t.Setenv("PATH", path)
	if got, err := env.m.SetState(ctx, inst.ID, Standby); err != nil || got.State != Standby {
		t.Fatalf("standby: %v, %+v", err, got)
	}
	if f := logs.last("standby complete"); f == nil || f["streamed"] != true {
		t.Fatalf("the standby did not stream its snapshot through lz4: %v", f)
	}
	snap := filepath.Join(inst.Dir, "snapshots", "snapshot-latest")
	if _, err := os.Stat(filepath.Join(snap, vmm.MemoryFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the snapshot holds a raw memory image: %v", err)
	}
	before := snapshotFiles(t, snap)
	if !strings.Contains(before, vmm.CompressedMemoryFile) {
		t.Fatalf("the snapshot holds no %s:\n%s", vmm.CompressedMemoryFile, before)
	}

	// The decompressor dies 4 MiB into the stream: the restore fails and keeps the snapshot.
	t.Setenv("PATH", failing+":"+path)
	_, err = env.m.SetState(ctx, inst.ID, Running)
	if err == nil || !strings.Contains(err.Error(), "the snapshot is kept; streamed stays in Standby") {
		t.Fatalf("restore through a failing decompressor: %v, want the snapshot kept", err)
	}
	t.Logf("restore through a failing decompressor: %v", err)
	if got := waitState(t, env.m, inst.ID, Standby, 0); got.SnapshotBytes <= 0 {
		t.Fatalf("after the failed restore: %+v", got)
	}
	if after := snapshotFiles(t, snap); after != before {
		t.Fatalf("the failed restore changed the snapshot:\n%s\nwas\n%s", after, before)
	}
	if n := countVMMs(t, inst.Dir); n != 0 {
		t.Fatalf("%d VMM processes after the failed restore", n)
	}

	t.Setenv("PATH", path)
	if got, err := env.m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
		t.Fatalf("restore: %v, %+v", err, got)
	}
	if f := logs.last("restored"); f == nil || f["streamed"] != true {
		t.Fatalf("the restore did not stream the snapshot from lz4: %v", f)
	}
	env.waitCount(t, inst, last+2, 0)
	env.deleteAndCheckGone(t, inst)
}

// A streamed standby that fills the disk in the middle of the stream says "no space left on
// device" and leaves the guest running; a restore needs no room beside the snapshot.
func TestStreamedStandbyThatFillsTheDiskKeepsTheGuestRunning(t *testing.T) {
	testutil.RequireTool(t, "lz4")
	env := newTestEnv(t)
	fh := &fillHost{Host: host.Local{}}
	env.m = env.manager(t, func(o *Options) { o.Host = fh })
	guests := smallGuestsDir(t, env.m, 768*units.MiB)
	fh.fill = func() { fill(t, guests, "filler", 4*units.MiB) }
	ctx := testContext(t)
	spec := env.spec("streamfull")
	// 32 MiB of noise in the guest's memory: the stream cannot compress into the 4 MiB left.
	spec.Entrypoint = []string{"/bin/sh", "-c", "head -c 33554432 /dev/urandom > /dev/shm/noise; " + counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	last := env.waitCount(t, inst, 2, 0)
	_, err = env.m.SetState(ctx, inst.ID, Standby)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "is Running") {
		t.Fatalf("standby that fills the disk: %v, want \"no space left on device\" and that the guest is Running", err)
	}
	t.Logf("standby that fills the disk: %v", err)
	if got := waitState(t, env.m, inst.ID, Running, 0); got.PID != inst.PID {
		t.Fatalf("the VMM changed: pid %d → %d", inst.PID, got.PID)
	}
	env.waitCount(t, inst, last+2, 0)
	assertNoPartialSnapshot(t, inst)

	if err := os.Remove(filepath.Join(guests, "filler")); err != nil {
		t.Fatal(err)
	}
	if got, err := env.m.SetState(ctx, inst.ID, Standby); err != nil || got.State != Standby {
		t.Fatalf("standby once there is room again: %v, %+v", err, got)
	}
	// The restore streams from the compressed image: a disk with no room left does not stop it.
	fill(t, guests, "filler", units.MiB)
	if got, err := env.m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
		t.Fatalf("restore on a full disk: %v, %+v", err, got)
	}
	_ = os.Remove(filepath.Join(guests, "filler"))
	env.deleteAndCheckGone(t, inst)
}

// createFillHost fills the disk, leaving leave bytes, when a file whose name ends in suffix is
// created: the write that follows runs out of room in the middle.
type createFillHost struct {
	host.Host
	suffix string
	fill   func()
	armed  bool
	mu     sync.Mutex
}

func (f *createFillHost) arm(suffix string, fill func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.suffix, f.fill, f.armed = suffix, fill, true
}

func (f *createFillHost) Create(ctx context.Context, p string) (io.WriteCloser, error) {
	f.mu.Lock()
	if f.armed && strings.HasSuffix(p, f.suffix) {
		f.armed = false
		f.fill()
	}
	f.mu.Unlock()
	return f.Host.Create(ctx, p)
}

// Cloud Hypervisor writes its memory file itself, and the manager compresses it right after: a
// disk that fills in the middle of the compression undoes the standby, and one that fills in the
// middle of the decompression before a restore keeps the snapshot.
func TestCloudHypervisorCompressionThatFillsTheDiskKeepsTheGuarantees(t *testing.T) {
	env := newTestEnv(t)
	fh := &createFillHost{Host: host.Local{}}
	m := chManager(t, env, "v53", "", func(o *Options) { o.Host = fh })
	guests := smallGuestsDir(t, m, units.GiB)
	ctx := testContext(t)
	inst, err := m.Create(ctx, chSpec(env, "chfull"), Running)
	if err != nil {
		t.Fatal(err)
	}
	// The stand-in's memory image is sparse zeros: 256 KiB holds little of its compressed copy.
	fh.arm(vmm.CompressedMemoryFile, func() { fill(t, guests, "filler", 256*units.KiB) })
	_, err = m.SetState(ctx, inst.ID, Standby)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "is Running") {
		t.Fatalf("standby whose compression fills the disk: %v, want \"no space left on device\" and that the guest is Running", err)
	}
	t.Logf("standby whose compression fills the disk: %v", err)
	if got := waitState(t, m, inst.ID, Running, 0); got.PID != inst.PID {
		t.Fatalf("the VMM changed: pid %d → %d", inst.PID, got.PID)
	}
	assertNoPartialSnapshot(t, inst)

	if err := os.Remove(filepath.Join(guests, "filler")); err != nil {
		t.Fatal(err)
	}
	if got, err := m.SetState(ctx, inst.ID, Standby); err != nil || got.State != Standby {
		t.Fatalf("standby once there is room again: %v, %+v", err, got)
	}
	snap := filepath.Join(inst.Dir, "snapshots", "snapshot-latest")
	before := snapshotFiles(t, snap)
	fh.arm(string(filepath.Separator)+vmm.MemoryFile, func() { fill(t, guests, "filler", units.MiB) })
	_, err = m.SetState(ctx, inst.ID, Running)
	if err == nil || !strings.Contains(err.Error(), "the snapshot is kept; chfull stays in Standby") {
		t.Fatalf("restore whose decompression fills the disk: %v, want the snapshot kept", err)
	}
	t.Logf("restore whose decompression fills the disk: %v", err)
	if got := waitState(t, m, inst.ID, Standby, 0); got.SnapshotBytes <= 0 {
		t.Fatalf("after the failed restore: %+v", got)
	}
	if after := snapshotFiles(t, snap); after != before {
		t.Fatalf("the failed restore changed the snapshot:\n%s\nwas\n%s", after, before)
	}
	if n := countVMMs(t, inst.Dir); n != 0 {
		t.Fatalf("%d VMM processes after the failed restore", n)
	}
	if err := os.Remove(filepath.Join(guests, "filler")); err != nil {
		t.Fatal(err)
	}
	if got, err := m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
		t.Fatalf("restore once there is room again: %v, %+v", err, got)
	}
	env.m = m
	env.deleteAndCheckGone(t, inst)
}
