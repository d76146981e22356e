package instances

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// Volumes on the host alone: no VM boots in this file.

// volumeTestManager is a manager on a fresh data directory reached through h (nil: the local host).
func volumeTestManager(t *testing.T, h host.Host) *Manager {
	t.Helper()
	for _, tool := range append(ext4Tools, "debugfs", "tar") {
		testutil.RequireTool(t, tool)
	}
	if h == nil {
		h = host.Local{}
	}
	return nameTestManager(t, testutil.ShortTempDir(t), h, network.Config{})
}

// tarFile writes a tar archive holding files (name → content, owned by uid 1234) and returns
// the Source that seeds from it.
func tarFile(t *testing.T, files map[string][]byte) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o640, Size: int64(len(data)), Uid: 1234, Gid: 1234, ModTime: time.Unix(1e9, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "seed.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return VolumeTarPrefix + p
}

// debugfs runs a read-only debugfs request on a volume's image.
func debugfs(t *testing.T, image, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, image).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q %s: %v", request, image, err)
	}
	return string(out)
}

// filesUnder lists what is under dir, relative, leaving out the names' lock files.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		nameLock := strings.HasPrefix(fi.Name(), ".") && strings.HasSuffix(fi.Name(), ".lock") && filepath.Base(filepath.Dir(p)) == "names"
		if p != dir && !nameLock {
			rel, _ := filepath.Rel(dir, p)
			if rel != "names" {
				out = append(out, rel)
			}
		}
		return nil
	})
	return out
}

// fakeHolder makes an instance that exists only on disk (no VMM) and attaches mounts to it, as a
// create does; it returns its metadata.
func fakeHolder(t *testing.T, m *Manager, name string, mounts ...VolumeMount) (*metadata, error) {
	t.Helper()
	ctx := testContext(t)
	id := ulid.Make().String()
	if err := os.MkdirAll(m.layout.logs(id), 0o700); err != nil {
		t.Fatal(err)
	}
	md := &metadata{ID: id, Name: name, Hypervisor: "qemu", Volumes: mounts, CreatedAt: time.Now().UTC()}
	if err := m.saveMetadata(ctx, md); err != nil {
		t.Fatal(err)
	}
	return md, m.lockInstance(ctx, id, func() error { return m.attach(ctx, md, mounts) })
}

func TestVolumeCreateGetListDeleteLeaveNothing(t *testing.T) {
	m := volumeTestManager(t, nil)
	ctx := testContext(t)
	a, err := m.CreateVolume(ctx, VolumeSpec{Name: "alpha", Size: 64 * units.MiB})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.CreateVolume(ctx, VolumeSpec{Name: "beta-with-a-name-longer-than-a-label", Size: MinVolume})
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != 64*units.MiB || a.AllocatedBytes <= 0 || a.AllocatedBytes >= a.Size || len(a.AttachedTo) != 0 {
		t.Errorf("volume %+v: want 64MiB, sparse, unattached", a)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(a.Path), 0o700}, {a.Path, 0o600}, {filepath.Join(filepath.Dir(a.Path), "metadata.json"), 0o600}} {
		if fi, err := os.Stat(c.path); err != nil || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: %v, mode %v, want %v", c.path, err, fi.Mode().Perm(), c.mode)
		}
	}
	if out := debugfs(t, a.Path, "stats"); !strings.Contains(out, "Filesystem volume name:   alpha") {
		t.Errorf("the image is no ext4 labelled alpha:\n%s", out)
	}
	for _, key := range []string{a.ID, "alpha"} {
		got, err := m.GetVolume(ctx, key)
		if err != nil || got.ID != a.ID || got.Name != "alpha" {
			t.Errorf("GetVolume(%s) = %+v, %v", key, got, err)
		}
	}
	list, err := m.ListVolumes(ctx)
	if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("ListVolumes = %v, %v; want alpha then beta", list, err)
	}
	for _, v := range []*Volume{a, b} {
		if err := m.DeleteVolume(ctx, v.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := m.GetVolume(ctx, v.ID); !errors.Is(err, ErrVolumeNotFound) {
			t.Errorf("GetVolume after delete: %v, want ErrVolumeNotFound", err)
		}
	}
	if err := m.DeleteVolume(ctx, "alpha"); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("second delete: %v, want ErrVolumeNotFound", err)
	}
	if left := filesUnder(t, m.layout.volumes()); len(left) > 0 {
		t.Errorf("left under volumes/: %v", left)
	}
}

func TestVolumeBadInputIsRefusedNamingTheField(t *testing.T) {
	m := volumeTestManager(t, nil)
	for _, c := range []struct {
		name  string
		spec  VolumeSpec
		field string
	}{
		{"bad name", VolumeSpec{Name: "Bad_Name", Size: MinVolume}, "name"},
		{"zero size", VolumeSpec{Name: "v", Size: 0}, "size"},
		{"too large", VolumeSpec{Name: "v", Size: MaxVolume + units.MiB}, "size"},
		{"not whole MiB", VolumeSpec{Name: "v", Size: MinVolume + 1}, "size"},
		{"relative tar", VolumeSpec{Name: "v", Size: MinVolume, Source: "tar:seed.tar"}, "source"},
		{"bad image ref", VolumeSpec{Name: "v", Size: MinVolume, Source: "no such:ref"}, "source"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.CreateVolume(testContext(t), c.spec)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("err = %v, want a FieldError on %s", err, c.field)
			}
		})
	}
	if left := filesUnder(t, m.layout.volumes()); len(left) > 0 {
		t.Errorf("left under volumes/: %v", left)
	}
}

func TestVolumeSeedsFromATarAndAnOCIImage(t *testing.T) {
	m := volumeTestManager(t, nil)
	ctx := testContext(t)
	v, err := m.CreateVolume(ctx, VolumeSpec{Name: "fromtar", Size: MinVolume, Source: tarFile(t, map[string][]byte{"hello.txt": []byte("hi there\n")})})
	if err != nil {
		t.Fatal(err)
	}
	if got := debugfs(t, v.Path, "cat /hello.txt"); got != "hi there\n" {
		t.Errorf("cat /hello.txt = %q", got)
	}
	if st := debugfs(t, v.Path, "stat /hello.txt"); !strings.Contains(st, "User:  1234") {
		t.Errorf("ownership not kept:\n%s", st)
	}
	layout := t.TempDir()
	testutil.WriteOCILayout(t, layout, testutil.BusyboxImage(t), "")
	img, err := m.CreateVolume(ctx, VolumeSpec{Name: "fromimage", Size: 64 * units.MiB, Source: "oci:" + layout})
	if err != nil {
		t.Fatal(err)
	}
	if ls := debugfs(t, img.Path, "ls -l /bin"); !strings.Contains(ls, "busybox") {
		t.Errorf("the image's /bin is not on the volume:\n%s", ls)
	}
	if img.Source != "oci:"+layout {
		t.Errorf("Source = %q", img.Source)
	}
	if seeds, _ := filepath.Glob(filepath.Join(m.layout.volumes(), "*", ".seed")); len(seeds) > 0 {
		t.Errorf("scratch trees left: %v", seeds)
	}
}

func TestVolumeSeedLargerThanTheVolumeFailsAndLeavesNothing(t *testing.T) {
	m := volumeTestManager(t, nil)
	big := make([]byte, 24*units.MiB)
	_, _ = rand.Read(big)
	src := tarFile(t, map[string][]byte{"big": big})
	_, err := m.CreateVolume(testContext(t), VolumeSpec{Name: "small", Size: MinVolume, Source: src})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "source "+src+" needs more than size 16MiB") {
		t.Fatalf("err = %v, want ErrInvalidConfig saying the source needs more than 16MiB", err)
	}
	if left := filesUnder(t, m.layout.volumes()); len(left) > 0 {
		t.Errorf("left under volumes/: %v", left)
	}
	if _, err := m.CreateVolume(testContext(t), VolumeSpec{Name: "small", Size: MinVolume, Source: tarFile(t, map[string][]byte{"a": []byte("a")})}); err != nil {
		t.Errorf("the name is not free again: %v", err)
	}
}

func TestVolumeNameHeldByADeadCreateIsReclaimedAndALiveOneIsNot(t *testing.T) {
	m := volumeTestManager(t, nil)
	ctx := testContext(t)
	// What a create killed after its link, before its metadata, leaves.
	dead := ulid.Make().String()
	for _, d := range []string{m.layout.volumeDir(dead), m.layout.volumeNames()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(m.layout.volumeData(dead), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dead, m.layout.volumeName("data")); err != nil {
		t.Fatal(err)
	}
	if holder, err := m.VolumeNameHolder(ctx, "data"); holder != "" || err != nil {
		t.Errorf("VolumeNameHolder of a dead create = %q, %v; want free", holder, err)
	}
	unlock, err := m.host.Lock(ctx, m.layout.volumeNameLock("data")) // a create that runs
	if err != nil {
		t.Fatal(err)
	}
	if holder, err := m.VolumeNameHolder(ctx, "data"); holder != dead || !errors.Is(err, ErrNameBeingCreated) {
		t.Errorf("VolumeNameHolder of a live create = %q, %v; want %s, ErrNameBeingCreated", holder, err, dead)
	}
	unlock()
	v, err := m.CreateVolume(ctx, VolumeSpec{Name: "data", Size: MinVolume})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.layout.volumeDir(dead)); !os.IsNotExist(err) {
		t.Errorf("the dead create's directory is still there: %v", err)
	}
	if holder, err := m.VolumeNameHolder(ctx, "data"); holder != v.ID || !errors.Is(err, ErrNameTaken) {
		t.Errorf("VolumeNameHolder of a volume = %q, %v; want %s, ErrNameTaken", holder, err, v.ID)
	}
	if _, err := m.CreateVolume(ctx, VolumeSpec{Name: "data", Size: MinVolume}); !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), v.ID) {
		t.Errorf("second create: %v, want ErrNameTaken naming %s", err, v.ID)
	}
}

const volumeHelperEnv = "HYPEMAN_VOLUME_HELPER"

// TestVolumeCreateHelperProcess is not a test of its own: the race test starts it to create one
// volume in another process. It waits for the file named by the job, then prints RESULT.
func TestVolumeCreateHelperProcess(t *testing.T) {
	v := os.Getenv(volumeHelperEnv)
	if v == "" {
		return
	}
	var job struct{ DataDir, Name, Go string }
	if err := json.Unmarshal([]byte(v), &job); err != nil {
		t.Fatal(err)
	}
	m := nameTestManager(t, job.DataDir, host.Local{}, network.Config{})
	for {
		if _, err := os.Stat(job.Go); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var res helperResult
	vol, err := m.CreateVolume(context.Background(), VolumeSpec{Name: job.Name, Size: MinVolume})
	if err != nil {
		res.Error, res.NameTaken = err.Error(), errors.Is(err, ErrNameTaken)
	} else {
		res.ID = vol.ID
	}
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
}

func TestConcurrentVolumeCreatesOfOneNameInTwoProcessesMakeOneVolume(t *testing.T) {
	m := volumeTestManager(t, nil)
	for round := range 3 {
		name := fmt.Sprintf("race%d", round)
		goFile := filepath.Join(t.TempDir(), "go")
		job, _ := json.Marshal(map[string]string{"DataDir": m.DataDir(), "Name": name, "Go": goFile})
		outs := make([]chan string, 2)
		for i := range outs {
			outs[i] = make(chan string, 1)
			cmd := exec.Command(os.Args[0], "-test.run=^TestVolumeCreateHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), volumeHelperEnv+"="+string(job))
			go func() { out, _ := cmd.CombinedOutput(); outs[i] <- string(out) }()
		}
		time.Sleep(300 * time.Millisecond) // both processes up and polling
		if err := os.WriteFile(goFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		var made, taken int
		for _, o := range outs {
			out := <-o
			_, line, ok := strings.Cut(out, "RESULT ")
			var res helperResult
			if !ok || json.Unmarshal([]byte(strings.SplitN(line, "\n", 2)[0]), &res) != nil {
				t.Fatalf("a helper did not report:\n%s", out)
			}
			switch {
			case res.ID != "":
				made++
			case res.NameTaken:
				taken++
			default:
				t.Errorf("a helper failed otherwise: %s", res.Error)
			}
		}
		list, err := m.ListVolumes(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		if made != 1 || taken != 1 || len(list) != round+1 {
			t.Fatalf("round %d: %d made, %d refused as taken, %d volumes; want 1, 1, %d", round, made, taken, len(list), round+1)
		}
	}
}

func TestVolumeAttachmentsDecideWhoMayAttachAndDelete(t *testing.T) {
	m := volumeTestManager(t, nil)
	ctx := testContext(t)
	v, err := m.CreateVolume(ctx, VolumeSpec{Name: "shared", Size: MinVolume})
	if err != nil {
		t.Fatal(err)
	}
	rw := VolumeMount{VolumeID: v.ID, MountPath: "/data"}
	ro := VolumeMount{VolumeID: v.ID, MountPath: "/data", ReadOnly: true}
	r1, err := fakeHolder(t, m, "reader-one", ro)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fakeHolder(t, m, "reader-two", ro); err != nil {
		t.Fatalf("a second read-only attachment: %v", err)
	}
	if _, err := fakeHolder(t, m, "writer", rw); !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), "reader-") {
		t.Fatalf("writable over readers: %v, want ErrVolumeInUse naming a reader", err)
	}
	got, _ := m.GetVolume(ctx, v.ID)
	if len(got.AttachedTo) != 2 || got.AttachedTo[0].InstanceName != "reader-one" || !got.AttachedTo[0].ReadOnly {
		t.Fatalf("AttachedTo = %+v, want the two readers", got.AttachedTo)
	}
	problems, err := m.CheckMounts(ctx, "", []VolumeMount{ro, rw, {VolumeID: ulid.Make().String(), MountPath: "/x"}})
	if err != nil || len(problems) != 2 || problems[0].Index != 1 || !errors.Is(problems[0].Err, ErrVolumeInUse) ||
		problems[1].Index != 2 || !errors.Is(problems[1].Err, ErrVolumeNotFound) {
		t.Errorf("CheckMounts = %+v, %v; want mount 1 in use, mount 2 not found", problems, err)
	}
	err = m.DeleteVolume(ctx, v.ID)
	if !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), `"reader-one" (`+r1.ID+`)`) {
		t.Fatalf("delete while attached: %v, want ErrVolumeInUse naming reader-one and its id", err)
	}
	// Instances that are gone, and a create that died, hold nothing: their records are stale.
	for _, inst := range []string{"reader-one", "reader-two"} {
		for _, a := range got.AttachedTo {
			if a.InstanceName == inst {
				if err := os.RemoveAll(m.layout.dir(a.InstanceID)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	dead, err := fakeHolder(t, m, "dead-create", rw)
	if err != nil {
		t.Fatal(err)
	}
	dead.Creating = &creator{PID: 1 << 22, Since: time.Now()}
	if err := m.saveMetadata(ctx, dead); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.GetVolume(ctx, v.ID); len(got.AttachedTo) != 0 {
		t.Fatalf("AttachedTo = %+v, want no live holder", got.AttachedTo)
	}
	w, err := fakeHolder(t, m, "writer", rw)
	if err != nil {
		t.Fatalf("writable once the holders are gone: %v", err)
	}
	if b, _ := os.ReadFile(m.layout.volumeMetadata(v.ID)); strings.Count(string(b), "instance_id") != 1 {
		t.Errorf("stale records not pruned:\n%s", b)
	}
	if _, err := fakeHolder(t, m, "second-writer", rw); !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), w.ID) {
		t.Errorf("a second writer: %v, want ErrVolumeInUse naming %s", err, w.ID)
	}
}

func TestVolumeShrinkIsRefusedAndAGrowKeepsTheData(t *testing.T) {
	m := volumeTestManager(t, nil)
	ctx := testContext(t)
	v, err := m.CreateVolume(ctx, VolumeSpec{Name: "grow", Size: 32 * units.MiB, Source: tarFile(t, map[string][]byte{"f": []byte("kept\n")})})
	if err != nil {
		t.Fatal(err)
	}
	var fe *FieldError
	if _, err := m.ResizeVolume(ctx, v.ID, MinVolume); !errors.As(err, &fe) || !strings.Contains(fe.Allowed, "32MiB") {
		t.Errorf("shrink: %v, want a FieldError naming the current 32MiB", err)
	}
	if restarts, err := m.ResizeEffect(ctx, v.Name, 64*units.MiB); err != nil || len(restarts) != 0 {
		t.Errorf("ResizeEffect = %v, %v; want nothing restarted", restarts, err)
	}
	got, err := m.ResizeVolume(ctx, v.Name, 64*units.MiB)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 64*units.MiB {
		t.Errorf("Size = %d after the grow", got.Size)
	}
	if n, err := ext4Bytes(ctx, m.host, v.Path); err != nil || n != 64*units.MiB {
		t.Errorf("the filesystem holds %d bytes (%v), want 64MiB", n, err)
	}
	if c := debugfs(t, v.Path, "cat /f"); c != "kept\n" {
		t.Errorf("cat /f = %q after the grow", c)
	}
	if same, err := m.ResizeVolume(ctx, v.Name, 64*units.MiB); err != nil || same.Size != 64*units.MiB {
		t.Errorf("same size: %v, %v", same, err)
	}
}

// failingResize is a host on which resize2fs fails after it started, as on a full disk.
type failingResize struct{ host.Host }

func (h failingResize) Run(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error) {
	if argv[0] == "resize2fs" {
		return nil, errors.New("resize2fs: No space left on device while trying to resize")
	}
	return h.Host.Run(ctx, stdin, argv...)
}

func TestAFailedGrowKeepsTheSizeAndAFilesystemThatChecksClean(t *testing.T) {
	m := volumeTestManager(t, nil)
	ctx := testContext(t)
	v, err := m.CreateVolume(ctx, VolumeSpec{Name: "full", Size: MinVolume, Source: tarFile(t, map[string][]byte{"f": []byte("kept\n")})})
	if err != nil {
		t.Fatal(err)
	}
	m.host = failingResize{m.host}
	if _, err := m.ResizeVolume(ctx, v.ID, 32*units.MiB); err == nil || !strings.Contains(err.Error(), "keeps its data") {
		t.Fatalf("err = %v, want the grow to fail saying the data is kept", err)
	}
	got, err := m.GetVolume(ctx, v.ID)
	if err != nil || got.Size != MinVolume {
		t.Fatalf("after a failed grow: %+v, %v; want the old size", got, err)
	}
	if fi, _ := os.Stat(v.Path); fi.Size() != MinVolume {
		t.Errorf("the image has %d bytes, want it back at 16MiB", fi.Size())
	}
	if out, err := exec.Command("e2fsck", "-f", "-n", v.Path).CombinedOutput(); err != nil {
		t.Errorf("e2fsck after a failed grow: %v\n%s", err, out)
	}
	if c := debugfs(t, v.Path, "cat /f"); c != "kept\n" {
		t.Errorf("cat /f = %q", c)
	}
}

func TestVolumeCreateResizeDeleteOverSSH(t *testing.T) {
	d := testutil.StartSSHD(t)
	m := volumeTestManager(t, dialSSH(t, d))
	ctx := testContext(t)
	v, err := m.CreateVolume(ctx, VolumeSpec{Name: "remote", Size: MinVolume, Source: tarFile(t, map[string][]byte{"f": []byte("over ssh\n")})})
	if err != nil {
		t.Fatal(err)
	}
	if v.AllocatedBytes <= 0 {
		t.Errorf("AllocatedBytes = %d", v.AllocatedBytes)
	}
	if v, err = m.ResizeVolume(ctx, "remote", 32*units.MiB); err != nil || v.Size != 32*units.MiB {
		t.Fatalf("resize: %+v, %v", v, err)
	}
	if c := debugfs(t, v.Path, "cat /f"); c != "over ssh\n" {
		t.Errorf("cat /f = %q", c)
	}
	if err := m.DeleteVolume(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if left := filesUnder(t, m.layout.volumes()); len(left) > 0 {
		t.Errorf("left under volumes/: %v", left)
	}
}

func TestARefusedReattachKeepsTheHoldsTheInstanceHad(t *testing.T) {
	m := volumeTestManager(t, nil)
	ctx := testContext(t)
	var vols []*Volume
	for _, name := range []string{"one", "two"} {
		v, err := m.CreateVolume(ctx, VolumeSpec{Name: name, Size: MinVolume})
		if err != nil {
			t.Fatal(err)
		}
		vols = append(vols, v)
	}
	one := VolumeMount{VolumeID: vols[0].ID, MountPath: "/one"}
	two := VolumeMount{VolumeID: vols[1].ID, MountPath: "/two"}
	a, err := fakeHolder(t, m, "a", one)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fakeHolder(t, m, "b", two); err != nil {
		t.Fatal(err)
	}
	// a lists both, as a crash between its metadata and its records leaves it; its next boot
	// records the holds again and meets b's.
	a.Volumes = []VolumeMount{one, two}
	if err := m.saveMetadata(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := m.attach(ctx, a, a.Volumes); !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("reattach: %v, want ErrVolumeInUse naming b", err)
	}
	if got, _ := m.GetVolume(ctx, "one"); len(got.AttachedTo) != 1 || got.AttachedTo[0].InstanceID != a.ID {
		t.Fatalf("volume one is held by %+v, want a still", got.AttachedTo)
	}
}
