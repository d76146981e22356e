package instances

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/qemu"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// vmmUserIDs (after newTestEnv) is the uid and gid of DefaultVMMUser; it skips (fails in CI) where the user is
// missing or the test cannot start processes as another user. The tests' shared system cache
// lives outside their data directories, so it is opened to the user as a data directory's is.
func vmmUserIDs(t *testing.T) (uid, gid int) {
	t.Helper()
	testutil.RequireTool(t, qemu.Relay)
	u, err := user.Lookup(DefaultVMMUser)
	testutil.Require(t, err == nil, "no user "+DefaultVMMUser+" (scripts/install-deps.sh creates it)")
	testutil.Require(t, os.Geteuid() == 0, "not root: the VMM cannot be started as another user")
	if err := os.Chmod(shared.sysCache, 0o755); err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// asUser configures a manager with a plain QEMU driver (the fault wrapper would hide RunAs)
// running its VMMs as user.
func asUser(user string, mode SnapshotMode) func(*Options) {
	return func(o *Options) {
		o.Drivers, o.VMMUser, o.SnapshotMode = []vmm.Driver{qemu.New()}, user, mode
	}
}

// counterSpec is an instance whose program counts on the console until stopped.
func counterSpec(env *testEnv, name string) Spec {
	spec := env.spec(name)
	spec.Entrypoint = []string{"/bin/sh", "-c", counterScript}
	return spec
}

// modeCheck is one file of an instance, with the mode and owner it must have.
type modeCheck struct {
	rel  string
	mode fs.FileMode
	uid  int
}

func checkModes(t *testing.T, dir string, checks []modeCheck) {
	t.Helper()
	for _, c := range checks {
		fi, err := os.Lstat(filepath.Join(dir, c.rel))
		if err != nil {
			t.Errorf("%s: %v", c.rel, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != c.mode || int(st.Uid) != c.uid {
			t.Errorf("%s is %v owned by %d, want %v owned by %d", c.rel, fi.Mode().Perm(), st.Uid, c.mode, c.uid)
		}
	}
}

// vmmUID is the real and effective uid of the instance's VMM, from /proc.
func vmmUID(t *testing.T, inst *Instance) (real, effective int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", inst.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			real, _ = strconv.Atoi(f[0])
			effective, _ = strconv.Atoi(f[1])
		}
	}
	return real, effective
}

func assertVMMRunsAs(t *testing.T, inst *Instance, uid int) {
	t.Helper()
	if r, e := vmmUID(t, inst); r != uid || e != uid {
		t.Fatalf("the VMM (pid %d) runs as uid %d (effective %d), want %d", inst.PID, r, e, uid)
	}
}

// Instance files are private after create, standby and restore, on the local host and over
// SSH, in both snapshot modes; the VMM runs as the VMM user from its start, and owns what it
// opens; everything else stays the host user's. vmm_user = "root" opts out and still works.
func TestInstanceFilesArePrivateAndTheVMMRunsAsItsUser(t *testing.T) {
	t.Parallel()
	newTestEnv(t)
	uid, _ := vmmUserIDs(t)
	for _, tt := range []struct {
		name   string
		ssh    bool
		user   string
		mode   SnapshotMode
		vmmUID int
	}{
		{"local", false, DefaultVMMUser, SnapshotCompressed, uid},
		{"local lazy", false, DefaultVMMUser, SnapshotLazy, uid},
		{"over SSH", true, DefaultVMMUser, SnapshotCompressed, uid},
		{"as root", false, RootVMMUser, SnapshotCompressed, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			configure := []func(*Options){asUser(tt.user, tt.mode)}
			if tt.ssh {
				s := dialSSH(t, testutil.StartSSHD(t))
				configure = append(configure, func(o *Options) { o.Host = s })
			}
			env.m = env.manager(t, configure...)
			ctx := testContext(t)
			inst, err := env.m.Create(ctx, counterSpec(env, "private"), Running)
			if err != nil {
				t.Fatal(err)
			}
			assertVMMRunsAs(t, inst, tt.vmmUID)
			last := env.waitCount(t, inst, 2, 0)
			vmmFiles := []modeCheck{
				{".", 0o700, tt.vmmUID}, {"logs", 0o700, tt.vmmUID}, {"logs/console.log", 0o600, tt.vmmUID},
				{"overlay.raw", 0o600, tt.vmmUID}, {"config.erofs", 0o600, tt.vmmUID},
				{"metadata.json", 0o600, 0}, {".lock", 0o600, 0}, {"qemu-stdout.log", 0o600, 0},
			}
			if tt.mode == SnapshotLazy {
				vmmFiles = append(vmmFiles, modeCheck{"memory.ram", 0o600, tt.vmmUID})
			}
			checkModes(t, inst.Dir, vmmFiles)
			checkModes(t, env.m.DataDir(), []modeCheck{{"names", 0o700, 0}})

			if inst, err = env.m.SetState(ctx, inst.ID, Standby); err != nil || inst.State != Standby {
				t.Fatalf("standby: %v, %+v", err, inst)
			}
			memory := vmm.CompressedMemoryFile
			if tt.mode == SnapshotLazy {
				memory = vmm.MemoryFile // lazy: the device state, the memory stays in memory.ram
			}
			snap := "snapshots/snapshot-latest/"
			checkModes(t, inst.Dir, append(vmmFiles,
				modeCheck{"snapshots", 0o700, 0}, modeCheck{snap, 0o700, 0}, modeCheck{snap + memory, 0o600, 0},
				modeCheck{snap + "config.json", 0o600, 0}, modeCheck{snap + "state.json", 0o600, 0},
				modeCheck{snap + snapshotRecordFile, 0o600, 0}))

			offset := env.consoleLen(t, inst)
			if inst, err = env.m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
				t.Fatalf("restore: %v, %+v", err, inst)
			}
			assertVMMRunsAs(t, inst, tt.vmmUID)
			env.waitCount(t, inst, last+2, offset)
			if first := firstCountAfter(t, inst, offset); first <= last {
				t.Fatalf("the guest rebooted instead of continuing: %d before standby, %d after", last, first)
			}
			env.deleteAndCheckGone(t, inst)
		})
	}
}

// An instance made before the VMM ran as a user (root's, group-readable, as an older provider
// left it) is restored from its standby snapshot as the user, and its files are brought to
// today's owner and modes on that first touch; it stands by and restores again.
func TestOldLayoutInstanceRestoresAsTheVMMUser(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	uid, _ := vmmUserIDs(t)
	old := env.manager(t, asUser("", SnapshotCompressed))
	ctx := testContext(t)
	inst, err := old.Create(ctx, counterSpec(env, "old-layout"), Running)
	if err != nil {
		t.Fatal(err)
	}
	last := env.waitCount(t, inst, 2, 0)
	if inst, err = old.SetState(ctx, inst.ID, Standby); err != nil || inst.State != Standby {
		t.Fatalf("standby: %v, %+v", err, inst)
	}
	// The modes an older provider gave its files.
	err = filepath.WalkDir(inst.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o750)
		}
		return os.Chmod(p, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{old.DataDir(), filepath.Dir(inst.Dir)} {
		if err := os.Chmod(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}

	dataDir := old.DataDir()
	m := env.manager(t, asUser(DefaultVMMUser, SnapshotCompressed), func(o *Options) { o.DataDir = dataDir })
	offset := env.consoleLen(t, inst)
	if inst, err = m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
		t.Fatalf("restore of the old-layout instance as %s: %v, %+v", DefaultVMMUser, err, inst)
	}
	assertVMMRunsAs(t, inst, uid)
	env.waitCount(t, inst, last+2, offset)
	checkModes(t, inst.Dir, []modeCheck{
		{".", 0o700, uid}, {"logs/console.log", 0o600, uid}, {"overlay.raw", 0o600, uid}, {"config.erofs", 0o600, uid},
		{"metadata.json", 0o600, 0},
	})
	last = env.waitCount(t, inst, last+3, offset)
	if inst, err = m.SetState(ctx, inst.ID, Standby); err != nil || inst.State != Standby {
		t.Fatalf("second standby: %v, %+v", err, inst)
	}
	offset = env.consoleLen(t, inst)
	if inst, err = m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
		t.Fatalf("second restore: %v, %+v", err, inst)
	}
	env.waitCount(t, inst, last+2, offset)
	env.m = m
	env.deleteAndCheckGone(t, inst)
}

// A VMM user the host lacks fails the create with the way out, and leaves nothing behind.
func TestMissingVMMUserFailsTheCreateClearly(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.m = env.manager(t, asUser("hypeman-missing", SnapshotCompressed))
	_, err := env.m.Create(testContext(t), env.spec("no-user"), Running)
	if err == nil || !strings.Contains(err.Error(), `"hypeman-missing"`) || !strings.Contains(err.Error(), `vmm_user = "root"`) {
		t.Fatalf("create with a missing VMM user: %v, want an error naming the user and vmm_user = \"root\"", err)
	}
	if list, err := env.m.List(testContext(t)); err != nil || len(list) != 0 {
		t.Fatalf("after the failed create: %v, %+v", err, list)
	}
}

// ValidateVMMUser takes user names and root, and refuses what no user is called.
func TestValidateVMMUser(t *testing.T) {
	for _, ok := range []string{"hypeman-vmm", "root", "_qemu", "vmm2"} {
		if err := ValidateVMMUser(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Root", "a b", "-x", "x:y", strings.Repeat("a", 33)} {
		if err := ValidateVMMUser(bad); err == nil || !strings.Contains(err.Error(), "vmm_user") {
			t.Errorf("%q: %v, want a vmm_user error", bad, err)
		}
	}
	if _, err := New(Options{Host: host.Local{}, DataDir: t.TempDir(), Drivers: []vmm.Driver{qemu.New()}, VMMUser: "Bad User"}); err == nil || !strings.Contains(err.Error(), "vmm_user") {
		t.Errorf("New with a vmm user that is no user name: %v, want a vmm_user error", err)
	}
}

// Volumes reach a VMM that runs as the user: a writable one and a read-only one (each in its
// private directory) are handed to it, and the guest reads and writes them.
func TestVolumesReachTheVMMUser(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	uid, _ := vmmUserIDs(t)
	env.m = env.manager(t, asUser(DefaultVMMUser, SnapshotCompressed))
	ctx := testContext(t)
	rw, err := env.m.CreateVolume(ctx, VolumeSpec{Name: "rw", Size: MinVolume})
	if err != nil {
		t.Fatal(err)
	}
	ro, err := env.m.CreateVolume(ctx, VolumeSpec{Name: "ro", Size: MinVolume, Source: tarFile(t, map[string][]byte{"f": []byte("seeded")})})
	if err != nil {
		t.Fatal(err)
	}
	spec := env.spec("with-volumes")
	spec.Volumes = []VolumeMount{{VolumeID: rw.ID, MountPath: "/data"}, {VolumeID: ro.ID, MountPath: "/ro", ReadOnly: true}}
	spec.Entrypoint = []string{"/bin/sh", "-c", `echo "READ<$(cat /ro/f)>"; echo x > /data/x && echo WROTE; ` + counterScript}
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	assertVMMRunsAs(t, inst, uid)
	env.waitCount(t, inst, 1, 0)
	if c := env.console(t, inst); !strings.Contains(string(c), "READ<seeded>") || !strings.Contains(string(c), "WROTE") {
		t.Fatalf("the guest did not read and write its volumes:\n%s", c)
	}
	for _, v := range []string{rw.ID, ro.ID} {
		checkModes(t, env.m.layout.volumeDir(v), []modeCheck{{".", 0o700, uid}, {"data.raw", 0o600, uid}, {"metadata.json", 0o600, 0}})
	}
	env.deleteAndCheckGone(t, inst)
}

// A guest on the host network whose VMM runs as the user opens its TAP (made that user's) and
// serves on its address, before and after a standby.
func TestNetworkedGuestOfTheVMMUserServes(t *testing.T) {
	t.Parallel()
	if !netnstest.Enter(t) {
		return
	}
	env := newTestEnv(t)
	uid, _ := vmmUserIDs(t)
	env.m = env.manager(t, asUser(DefaultVMMUser, SnapshotCompressed), func(o *Options) { o.Network = network.Config{Enabled: true} })
	ctx := testContext(t)
	inst, err := env.m.Create(ctx, env.serverSpec("net-user", ""), Running)
	if err != nil {
		t.Fatal(err)
	}
	assertVMMRunsAs(t, inst, uid)
	if got := fetch(t, inst.IPAddress); got != "hello from net-user\n" {
		t.Fatalf("the guest at %s answered %q", inst.IPAddress, got)
	}
	if inst, err = env.m.SetState(ctx, inst.ID, Standby); err != nil || inst.State != Standby {
		t.Fatalf("standby: %v, %+v", err, inst)
	}
	if inst, err = env.m.SetState(ctx, inst.ID, Running); err != nil || inst.State != Running {
		t.Fatalf("restore: %v, %+v", err, inst)
	}
	assertVMMRunsAs(t, inst, uid)
	if got := fetch(t, inst.IPAddress); got != "hello from net-user\n" {
		t.Fatalf("after the restore the guest at %s answered %q", inst.IPAddress, got)
	}
	env.deleteAndCheckGone(t, inst)
}
