package instances

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// The disk full, made real: the manager's guests directory is a small tmpfs, which the tests fill
// from the host with a file of their own.

// smallGuestsDir puts m's instance directories on a tmpfs of size bytes.
func smallGuestsDir(t *testing.T, m *Manager, size int64) string {
	t.Helper()
	dir := filepath.Join(m.DataDir(), "guests")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	testutil.MountTmpfs(t, dir, size)
	return dir
}

// freeBytes is what statfs says is free in dir.
func freeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill takes the free space of dir's filesystem down to leave bytes with the file name in dir,
// and returns the file; removing it gives the space back.
func fill(t testing.TB, dir, name string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	_ = os.Remove(p)
	take := freeBytes(t, dir) - leave
	if take <= 0 {
		t.Fatalf("fill %s: only %d bytes are free, less than the %d to leave", dir, freeBytes(t, dir), leave)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, take); err != nil {
		t.Fatalf("fill %s with %d bytes: %v", dir, take, err)
	}
	return p
}

// waitState polls Get until the instance is in want, and returns what Get said.
func waitState(t *testing.T, m *Manager, id string, want State, within time.Duration) *Instance {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		inst, err := m.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if inst.State == want {
			return inst
		}
		if time.Now().After(deadline) {
			t.Fatalf("the instance is %s (%s) after %s, want %s", inst.State, inst.StateReason, within, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writerScript writes 32 MiB to the overlay, flushed, and says how much the file holds; a write
// that finds the host's disk full stops the guest until there is room. It starts writing well
// after the boot's settle window, so that the create's last metadata write finds its room.
const writerScript = `sleep 6; dd if=/dev/zero of=/big bs=1M count=32 conv=fsync 2>/dev/null; echo "WROTE $(wc -c </big)"; ` + counterScript

const wroteAll = "WROTE 33554432"

func TestDiskFullPausesTheGuestAndApplyResumesItOnceThereIsRoom(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	guests := smallGuestsDir(t, env.m, 128*units.MiB)
	// Room to create the instance (overlay metadata, config disk, logs), not for what it writes.
	filler := fill(t, guests, "filler", 12*units.MiB)
	ctx := testContext(t)
	spec := env.spec("diskfull")
	spec.Entrypoint = []string{"/bin/sh", "-c", writerScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	pid := inst.PID
	reason := "guest stopped by an I/O error: no space left on device on " + inst.Dir
	got := waitState(t, env.m, inst.ID, Paused, 60*time.Second)
	if got.StateReason != reason {
		t.Fatalf("state reason %q, want %q", got.StateReason, reason)
	}

	// Still full: apply fails, saying so with the numbers, and the guest stays Paused.
	_, err = env.m.SetState(ctx, inst.ID, Running)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "still no space left on device on "+inst.Dir+": ") ||
		!strings.Contains(err.Error(), " bytes free") {
		t.Fatalf("resume on a full disk: %v, want \"still no space left on device on %s: N bytes free\"", err, inst.Dir)
	}
	t.Logf("resume on a full disk: %v", err)
	assertPausedByTheFullDisk(t, env, inst, pid, reason)

	// Room for a moment of writing only: the guest is resumed, is stopped again by its next
	// write, and the apply says so.
	fill(t, guests, "filler", 2*units.MiB)
	_, err = env.m.SetState(ctx, inst.ID, Running)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "stopped again") {
		t.Fatalf("resume with 2 MiB of room: %v, want that the guest stopped again for lack of space", err)
	}
	t.Logf("resume with 2 MiB of room: %v", err)
	assertPausedByTheFullDisk(t, env, inst, pid, reason)

	// Room: the guest runs on and its write completes, nothing lost and nothing rebooted.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if got, err = env.m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running || got.StateReason != "" {
		t.Fatalf("resume with room: %v, %+v", err, got)
	}
	env.waitCount(t, inst, 2, 0)
	console := env.console(t, inst)
	if !bytes.Contains(console, []byte(wroteAll+"\n")) {
		t.Fatalf("the guest's file is not complete after the resume:\n%s", console)
	}
	if n := bytes.Count(console, []byte(system.MarkerStarted)); n != 1 || got.PID != pid {
		t.Fatalf("the guest was restarted (program started %d times, pid %d → %d)", n, pid, got.PID)
	}
	env.deleteAndCheckGone(t, inst)
}

// assertPausedByTheFullDisk checks that the guest is still Paused for the full disk, in the VMM it
// had: nothing killed it.
func assertPausedByTheFullDisk(t *testing.T, env *testEnv, inst *Instance, pid int, reason string) {
	t.Helper()
	got, err := env.m.Get(context.Background(), inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Paused || got.StateReason != reason || got.PID != pid {
		t.Fatalf("after the failed resume: %s (%q), pid %d; want Paused (%q), pid %d", got.State, got.StateReason, got.PID, reason, pid)
	}
	if n := countVMMs(t, filepath.Join(inst.Dir, "qmp.sock")); n != 1 {
		t.Fatalf("%d VMM processes, want the one that holds the guest", n)
	}
	if bytes.Contains(env.console(t, inst), []byte("WROTE")) {
		t.Fatalf("the guest finished its write on a full disk:\n%s", env.console(t, inst))
	}
}

// Standby and restore check the room for the memory image first; on either VMM a disk without it
// is refused before anything is done, and the instance stays where it was. A restore that streams
// the compressed image into the VMM (QEMU) needs no room, and is not refused.
func TestStandbyAndRestoreWithoutRoomAreRefusedWithTheNumbers(t *testing.T) {
	env := newTestEnv(t)
	for _, hv := range []string{"qemu", "cloud-hypervisor"} {
		t.Run(hv, func(t *testing.T) {
			m, spec := env.m, env.spec("room-"+hv)
			spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
			if hv == "cloud-hypervisor" {
				m, spec = chManager(t, env, "v53", ""), chSpec(env, "room-"+hv)
			}
			guests := smallGuestsDir(t, m, units.GiB)
			ctx := testContext(t)
			inst, err := m.Create(ctx, spec, Running)
			if err != nil {
				t.Fatal(err)
			}
			need := spec.Memory + spec.Hotplug

			filler := fill(t, guests, "filler", need-units.MiB)
			_, err = m.SetState(ctx, inst.ID, Standby)
			assertRefusedForRoom(t, err, inst, need, "is still Running")
			if got := waitState(t, m, inst.ID, Running, 0); got.PID != inst.PID {
				t.Fatalf("the refused standby changed the VMM: pid %d → %d", inst.PID, got.PID)
			}
			assertNoPartialSnapshot(t, inst)

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			if got, err := m.SetState(ctx, inst.ID, Standby); err != nil || got.State != Standby {
				t.Fatalf("standby with room: %v, %+v", err, got)
			}
			snap := filepath.Join(inst.Dir, "snapshots", "snapshot-latest")
			before := snapshotFiles(t, snap)

			fill(t, guests, "filler", need-units.MiB)
			if hv == "qemu" {
				// QEMU's restore streams the compressed snapshot into the VMM: it needs no room.
				if got, err := m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
					t.Fatalf("streamed restore on a disk without room for the memory image: %v, %+v", err, got)
				}
				env.m = m
				env.deleteAndCheckGone(t, inst)
				return
			}
			_, err = m.SetState(ctx, inst.ID, Running)
			assertRefusedForRoom(t, err, inst, need, "stays in Standby")
			if got := waitState(t, m, inst.ID, Standby, 0); got.SnapshotBytes <= 0 {
				t.Fatalf("after the refused restore: %+v", got)
			}
			if after := snapshotFiles(t, snap); after != before {
				t.Fatalf("the refused restore changed the snapshot:\n%s\nwas\n%s", after, before)
			}
			if n := countVMMs(t, inst.Dir); n != 0 {
				t.Fatalf("%d VMM processes after the refused restore", n)
			}

			if err := os.Remove(filepath.Join(guests, "filler")); err != nil {
				t.Fatal(err)
			}
			if got, err := m.SetState(ctx, inst.ID, Running); err != nil || got.State != Running {
				t.Fatalf("restore with room: %v, %+v", err, got)
			}
			env.m = m
			env.deleteAndCheckGone(t, inst)
		})
	}
}

func assertRefusedForRoom(t *testing.T, err error, inst *Instance, need int64, leftIn string) {
	t.Helper()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("refused for room: %v, want an error wrapping ENOSPC", err)
	}
	for _, want := range []string{"no space left on device on " + inst.Dir, "needs " + size(need), "are free", leftIn} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refused for room: %v\nwant it to say %q", err, want)
		}
	}
	t.Logf("refused as it should: %v", err)
}

func assertNoPartialSnapshot(t *testing.T, inst *Instance) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(inst.Dir, "snapshots", "snapshot-latest.partial")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a partial snapshot was left behind: %v", err)
	}
}

// snapshotFiles lists the files of a snapshot with their sizes and times.
func snapshotFiles(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.Name() + " " + fi.ModTime().String() + " " + size(fi.Size()) + "\n")
	}
	return b.String()
}

// fillHost fills the disk as soon as the standby, past its room check, makes the partial
// snapshot's directory: the snapshot runs out of room half-way.
type fillHost struct {
	host.Host
	fill func()
	once sync.Once
}

func (f *fillHost) MkdirAll(ctx context.Context, p string, perm fs.FileMode) error {
	if strings.HasSuffix(p, ".partial") {
		f.once.Do(f.fill)
	}
	return f.Host.MkdirAll(ctx, p, perm)
}

func TestStandbyThatRunsOutOfRoomSaysSoAndKeepsTheGuestRunning(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	var guests string
	fh := &fillHost{Host: host.Local{}}
	env.m = env.manager(t, func(o *Options) { o.Host = fh })
	guests = smallGuestsDir(t, env.m, 512*units.MiB)
	fh.fill = func() { fill(t, guests, "filler", 8*units.MiB) }
	ctx := testContext(t)
	spec := env.spec("outofroom")
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	last := env.waitCount(t, inst, 2, 0)

	_, err = env.m.SetState(ctx, inst.ID, Standby)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") ||
		!strings.Contains(err.Error(), "is Running") {
		t.Fatalf("standby that fills the disk: %v, want \"no space left on device\" and that the guest is Running", err)
	}
	t.Logf("standby that fills the disk: %v", err)
	if got := waitState(t, env.m, inst.ID, Running, 0); got.PID != inst.PID {
		t.Fatalf("the VMM changed: pid %d → %d", inst.PID, got.PID)
	}
	env.waitCount(t, inst, last+2, 0) // still counting
	assertNoPartialSnapshot(t, inst)

	if err := os.Remove(filepath.Join(guests, "filler")); err != nil {
		t.Fatal(err)
	}
	if got, err := env.m.SetState(ctx, inst.ID, Standby); err != nil || got.State != Standby {
		t.Fatalf("standby once there is room again: %v, %+v", err, got)
	}
	env.deleteAndCheckGone(t, inst)
}
