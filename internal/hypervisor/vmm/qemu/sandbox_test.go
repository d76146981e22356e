package qemu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// testVMMUser is the user scripts/install-deps.sh creates for QEMU.
const testVMMUser = "hypeman-vmm"

// requireVMMUser is the uid and gid of testVMMUser; it skips (fails in CI) where the user is
// missing or the test cannot start processes as another user. It lets the user reach the test's
// shared kernel, initrd and image, as a data directory's caches are reachable.
func requireVMMUser(t *testing.T) (uid, gid int) {
	t.Helper()
	testutil.RequireTool(t, Relay)
	testutil.RequireTool(t, "setpriv")
	u, err := user.Lookup(testVMMUser)
	testutil.Require(t, err == nil, "no user "+testVMMUser+" (scripts/install-deps.sh creates it)")
	testutil.Require(t, os.Geteuid() == 0, "not root: QEMU cannot be started as another user")
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	for _, d := range []string{shared.dir, filepath.Dir(shared.sys.Kernel)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return uid, gid
}

// procIDs is the real, effective, saved and filesystem uid and gid of pid, from /proc.
func procIDs(t *testing.T, pid int) (uids, gids []int, seccomp string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Uid", "Gid":
			var ids []int
			for _, f := range strings.Fields(v) {
				n, _ := strconv.Atoi(f)
				ids = append(ids, n)
			}
			if k == "Uid" {
				uids = ids
			} else {
				gids = ids
			}
		case "Seccomp":
			seccomp = strings.TrimSpace(v)
		}
	}
	return uids, gids, seccomp
}

func assertRunsAs(t *testing.T, pid, uid, gid int) {
	t.Helper()
	uids, gids, seccomp := procIDs(t, pid)
	for _, id := range uids {
		if id != uid {
			t.Errorf("QEMU %d runs with uids %v, want all %d (%s)", pid, uids, uid, testVMMUser)
		}
	}
	for _, id := range gids {
		if id != gid {
			t.Errorf("QEMU %d runs with gids %v, want all %d", pid, gids, gid)
		}
	}
	if len(uids) != 4 || len(gids) != 4 {
		t.Errorf("/proc/%d/status lists uids %v and gids %v, want four of each", pid, uids, gids)
	}
	if seccomp != "2" {
		t.Errorf("QEMU %d has Seccomp %q, want 2 (a filter: the sandbox)", pid, seccomp)
	}
}

// assertOwned checks p's mode and owner.
func assertOwned(t *testing.T, p string, mode fs.FileMode, uid int) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != mode || int(st.Uid) != uid {
		t.Errorf("%s is %v owned by %d, want %v owned by %d", p, fi.Mode().Perm(), st.Uid, mode, uid)
	}
}

// QEMU as the VMM user under its sandbox: it boots, is snapshotted through the relay and
// restored, each QEMU running as that user from its start; the files it was handed are that
// user's and private, the snapshot's are the host user's and private.
func TestSandboxedQEMURunsAsTheVMMUserAndStandsByAndRestores(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	uid, gid := requireVMMUser(t)
	lz4 := testutil.RequireTool(t, "lz4")
	ctx := testContext(t)
	h := host.Local{}
	d := New()
	d.RunAs(testVMMUser)
	// A directory the way an older provider left it: root's and group-readable.
	for p, mode := range map[string]fs.FileMode{cfg.Dir: 0o750, cfg.Disks[1].Path: 0o640, cfg.Disks[2].Path: 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	pid, err := d.Boot(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertRunsAs(t, pid, uid, gid)
	assertOwned(t, cfg.Dir, 0o700, uid)
	assertOwned(t, filepath.Dir(cfg.ConsoleLog), 0o700, uid)
	assertOwned(t, cfg.ConsoleLog, 0o600, uid)
	assertOwned(t, cfg.Disks[1].Path, 0o600, uid) // overlay
	assertOwned(t, cfg.Disks[2].Path, 0o600, uid) // config disk
	assertOwned(t, filepath.Join(cfg.Dir, logName), 0o600, 0)
	vm, err := d.Connect(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = vm.Close() }()
	waitCount(t, cfg, 3)
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap := t.TempDir()
	t0 := time.Now()
	if err := vm.(vmm.StreamCompressor).SnapshotCompressed(ctx, snap, lz4); err != nil {
		t.Fatal(err)
	}
	t.Logf("compressed snapshot through the relay in %v", time.Since(t0))
	for _, f := range []string{vmm.CompressedMemoryFile, snapshotConfig, snapshotState} {
		assertOwned(t, filepath.Join(snap, f), 0o600, 0)
	}
	if _, err := os.Stat(migrationPath(cfg)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the migration socket is left after the snapshot: %v", err)
	}
	before := lastCount(t, cfg)
	quit(t, vm, cfg, pid)

	t0 = time.Now()
	pid, err = d.RestoreCompressed(ctx, h, cfg, snap, lz4)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore through the relay in %v", time.Since(t0))
	assertRunsAs(t, pid, uid, gid)
	vm, err = d.Connect(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitCount(t, cfg, before+2)
	quit(t, vm, cfg, pid)
}

// QEMU's sandbox denies it a process of its own: a migration to an exec: command, which needs
// one, gets QEMU killed (SIGSYS) before the command runs, and the guest with it.
func TestSandboxDeniesQEMUAProcessOfItsOwn(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	uid, gid := requireVMMUser(t)
	ctx := testContext(t)
	h := host.Local{}
	d := New()
	d.RunAs(testVMMUser)
	pid, err := d.Boot(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertRunsAs(t, pid, uid, gid)
	vm, err := d.Connect(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = vm.Close() }()
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(cfg.Dir, "spawned")
	m, err := dialMonitor(ctx, h, socketPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	err = m.execute(ctx, "migrate", map[string]any{"uri": "exec:touch " + marker}, nil)
	t.Logf("migrate to an exec: command: %v", err)
	waitGone(t, cfg, pid, 10*time.Second)
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the exec: command ran under the sandbox: %v", err)
	}
}

// A VMM user the host does not have fails the boot with the way out, and starts no QEMU.
func TestMissingVMMUserIsAClearError(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	d := New()
	d.RunAs("hypeman-nobody")
	_, err := d.Boot(testContext(t), host.Local{}, cfg)
	if !errors.Is(err, ErrNoVMMUser) || !strings.Contains(err.Error(), `"hypeman-nobody"`) || !strings.Contains(err.Error(), `vmm_user = "root"`) ||
		!strings.Contains(err.Error(), "useradd") {
		t.Fatalf("boot as a missing user: %v, want ErrNoVMMUser naming the user, useradd and vmm_user = \"root\"", err)
	}
	if left := qemuPIDs(cfg.Dir); len(left) > 0 {
		t.Fatalf("QEMU %v started for a missing user", left)
	}
}

// A file handed to the VMM that is a symbolic link is refused, not followed by root's chmod or
// chown.
func TestGrantRefusesSymbolicLinks(t *testing.T) {
	cfg := guestConfig(t, 0, 0)
	requireVMMUser(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, cfg.ConsoleLog); err != nil {
		t.Fatal(err)
	}
	d := New()
	d.RunAs(testVMMUser)
	if _, err := d.Boot(testContext(t), host.Local{}, cfg); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("boot with the console log a link: %v, want a refusal naming the link", err)
	}
	assertOwned(t, victim, 0o644, 0)
}
