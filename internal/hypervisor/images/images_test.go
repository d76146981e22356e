package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// newStore is a store in a fresh directory that counts its conversions.
func newStore(t *testing.T, h host.Host) (*Store, *atomic.Int64) {
	t.Helper()
	testutil.RequireTool(t, "tar")
	testutil.RequireTool(t, "mkfs.erofs")
	s := NewStore(h, filepath.Join(t.TempDir(), "images"))
	var n atomic.Int64
	s.onConvert = func(string) { n.Add(1) }
	return s, &n
}

// unpackErofs extracts an erofs image with its owners and modes, to inspect what a guest would see.
func unpackErofs(t *testing.T, image string) string {
	t.Helper()
	testutil.RequireTool(t, "fsck.erofs")
	out := filepath.Join(t.TempDir(), "unpacked")
	if b, err := exec.Command("fsck.erofs", "--extract="+out, image).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs --extract: %v: %s", err, b)
	}
	return out
}

// otherArch is an architecture VMs here cannot run.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

func TestPullFromRegistryFlattensLayersIntoErofs(t *testing.T) {
	s, conversions := newStore(t, host.Local{})
	opts := ociimage.Options{
		Entrypoint: []string{"/bin/busybox", "echo"},
		Cmd:        []string{"hello", "world"},
		Env:        []string{ociimage.DefaultPath, "GREETING=it's $(not) code"},
		WorkingDir: "/work",
	}
	ref := testutil.Registry(t) + "/app/busybox:v1"
	digest := testutil.Push(t, ref, testutil.BusyboxImage(t, opts))

	img, err := s.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	want := &Image{
		Ref: ref, Digest: digest,
		Dir: filepath.Join(s.Dir(), digest), Rootfs: filepath.Join(s.Dir(), digest, "rootfs.erofs"),
		Entrypoint: opts.Entrypoint, Cmd: opts.Cmd, Env: opts.Env, WorkingDir: opts.WorkingDir,
	}
	fi, err := os.Stat(want.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	want.Size = fi.Size()
	assertImage(t, img, want)
	if n := conversions.Load(); n != 1 {
		t.Errorf("conversions = %d, want 1", n)
	}

	var m meta
	data, err := os.ReadFile(filepath.Join(want.Dir, "image.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	wantMeta := meta{Ref: ref, Digest: digest, Entrypoint: opts.Entrypoint, Cmd: opts.Cmd, Env: opts.Env, WorkingDir: "/work", Size: fi.Size()}
	if !metaEqual(m, wantMeta) {
		t.Errorf("image.json = %+v, want %+v", m, wantMeta)
	}
	entries, err := os.ReadDir(want.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"image.json", "rootfs.erofs"}) {
		t.Errorf("%s holds %v, want only image.json and rootfs.erofs", want.Dir, names)
	}

	root := unpackErofs(t, want.Rootfs)
	if _, err := os.Lstat(filepath.Join(root, ociimage.RemovedPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s survived its whiteout (lstat: %v)", ociimage.RemovedPath, err)
	}
	hello := filepath.Join(root, ociimage.HelloPath)
	if b, err := os.ReadFile(hello); err != nil || string(b) != ociimage.HelloContent {
		t.Errorf("%s = %q, %v; want %q", ociimage.HelloPath, b, err, ociimage.HelloContent)
	}
	assertOwnerMode(t, hello, ociimage.HelloUID, 0o640)
	assertOwnerMode(t, filepath.Join(root, "bin/busybox"), 0, 0o755)
	assertOwnerMode(t, filepath.Join(root, "tmp"), 0, fs.ModeDir|fs.ModeSticky|0o777)
	if target, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("/bin/sh -> %q, %v; want busybox", target, err)
	}
	bb, err := os.ReadFile(ociimage.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "bin/busybox")); err != nil || !slices.Equal(got, bb) {
		t.Errorf("/bin/busybox differs from %s (%v)", ociimage.BusyboxPath, err)
	}
}

func assertImage(t *testing.T, got, want *Image) {
	t.Helper()
	if got.Ref != want.Ref || got.Digest != want.Digest || got.Dir != want.Dir || got.Rootfs != want.Rootfs ||
		!slices.Equal(got.Entrypoint, want.Entrypoint) || !slices.Equal(got.Cmd, want.Cmd) ||
		!slices.Equal(got.Env, want.Env) || got.WorkingDir != want.WorkingDir || got.Size != want.Size {
		t.Errorf("image = %+v\nwant    %+v", got, want)
	}
}

func metaEqual(a, b meta) bool {
	return a.Ref == b.Ref && a.Digest == b.Digest && slices.Equal(a.Entrypoint, b.Entrypoint) &&
		slices.Equal(a.Cmd, b.Cmd) && slices.Equal(a.Env, b.Env) && a.WorkingDir == b.WorkingDir && a.Size == b.Size
}

func assertOwnerMode(t *testing.T, p string, uid uint32, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Error(err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != uid || fi.Mode() != mode {
		t.Errorf("%s: owner %d:%d mode %v, want %d:%d %v", filepath.Base(p), st.Uid, st.Gid, fi.Mode(), uid, uid, mode)
	}
}

func TestSecondPullReusesTheCachedImage(t *testing.T) {
	s, conversions := newStore(t, host.Local{})
	reg := testutil.Registry(t)
	img := testutil.BusyboxImage(t)
	testutil.Push(t, reg+"/busybox:latest", img)
	testutil.Push(t, reg+"/busybox:same-digest", img)
	ctx := context.Background()

	first, err := s.Pull(ctx, reg+"/busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(first.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{reg + "/busybox:latest", reg + "/busybox:same-digest", reg + "/busybox@" + first.Digest} {
		again, err := s.Pull(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if again.Digest != first.Digest || again.Ref != ref {
			t.Errorf("Pull(%s) = %s as %q, want %s as %q", ref, again.Digest, again.Ref, first.Digest, ref)
		}
	}
	after, err := os.Stat(first.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if n := conversions.Load(); n != 1 {
		t.Errorf("conversions = %d, want 1", n)
	}
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Errorf("rootfs.erofs was rewritten by a cached pull")
	}
}

func TestConcurrentPullsConvertOnce(t *testing.T) {
	s, conversions := newStore(t, host.Local{})
	ref := testutil.Registry(t) + "/busybox:latest"
	digest := testutil.Push(t, ref, testutil.BusyboxImage(t))

	const pulls = 8
	var wg sync.WaitGroup
	errs := make([]error, pulls)
	got := make([]string, pulls)
	for i := range pulls {
		wg.Go(func() {
			img, err := s.Pull(context.Background(), ref)
			errs[i] = err
			if err == nil {
				got[i] = img.Digest
			}
		})
	}
	wg.Wait()
	for i := range pulls {
		if errs[i] != nil || got[i] != digest {
			t.Errorf("pull %d = %s, %v; want %s", i, got[i], errs[i], digest)
		}
	}
	if n := conversions.Load(); n != 1 {
		t.Errorf("conversions = %d, want 1", n)
	}
	leftovers, _ := filepath.Glob(filepath.Join(s.Dir(), ".tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary directories left: %v", leftovers)
	}
}

// pullHelperEnv makes the test binary a pulling child process: "DIR\nREF".
const pullHelperEnv = "HYPEMAN_IMAGES_PULL_HELPER"

func TestPullsInSeparateProcessesConvertOnce(t *testing.T) {
	if arg := os.Getenv(pullHelperEnv); arg != "" {
		dir, ref, _ := strings.Cut(arg, "\n")
		s := NewStore(host.Local{}, dir)
		s.onConvert = func(string) { fmt.Println("converted") }
		if _, err := s.Pull(context.Background(), ref); err != nil {
			t.Fatal(err)
		}
		return
	}
	s, _ := newStore(t, host.Local{})
	layoutDir := t.TempDir()
	testutil.WriteOCILayout(t, layoutDir, testutil.BusyboxImage(t), "")

	const procs = 3
	outs := make([]bytes.Buffer, procs)
	cmds := make([]*exec.Cmd, procs)
	for i := range procs {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestPullsInSeparateProcessesConvertOnce$", "-test.count=1")
		cmds[i].Env = append(os.Environ(), pullHelperEnv+"="+s.Dir()+"\n"+"oci:"+layoutDir)
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	converted := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d: %v\n%s", i, err, outs[i].String())
		}
		converted += strings.Count(outs[i].String(), "converted\n")
	}
	if converted != 1 {
		t.Errorf("%d processes converted the image, want 1", converted)
	}
}

func TestPullFromLocalSources(t *testing.T) {
	img := testutil.BusyboxImage(t, ociimage.Options{Cmd: []string{"/bin/echo", "local"}})
	other := testutil.BusyboxImage(t, ociimage.Options{Cmd: []string{"/bin/echo", "other"}})
	dir := t.TempDir()

	single := filepath.Join(dir, "single")
	testutil.WriteOCILayout(t, single, img, "")
	tagged := filepath.Join(dir, "tagged")
	testutil.WriteOCILayout(t, tagged, other, "v1")
	testutil.WriteOCILayout(t, tagged, img, "latest")
	fullRef := filepath.Join(dir, "full-ref")
	testutil.WriteOCILayout(t, fullRef, img, "example.com/app:2.0")
	archive := filepath.Join(dir, "app.tar")
	testutil.WriteDockerArchive(t, archive, "example.com/app:1.0", img)

	tests := []struct {
		name, ref string
		wantCmd   []string
	}{
		{"the only image of a layout", "oci:" + single, []string{"/bin/echo", "local"}},
		{"a tagged image of a layout", "oci:" + tagged + ":v1", []string{"/bin/echo", "other"}},
		{"the latest image of a layout without a tag", "oci:" + tagged, []string{"/bin/echo", "local"}},
		{"a layout entry named by a full reference", "oci:" + fullRef + ":2.0", []string{"/bin/echo", "local"}},
		{"a docker archive", "docker-archive:" + archive, []string{"/bin/echo", "local"}},
	}
	s, _ := newStore(t, host.Local{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Pull(context.Background(), tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Cmd, tt.wantCmd) || got.Ref != tt.ref {
				t.Errorf("Pull(%s) = cmd %q ref %q, want cmd %q", tt.ref, got.Cmd, got.Ref, tt.wantCmd)
			}
			root := unpackErofs(t, got.Rootfs)
			if _, err := os.Stat(filepath.Join(root, ociimage.HelloPath)); err != nil {
				t.Errorf("rootfs lacks %s: %v", ociimage.HelloPath, err)
			}
		})
	}
}

func TestPinnedCachedRefNeedsNoRegistry(t *testing.T) {
	s, conversions := newStore(t, host.Local{})
	reg, stop := testutil.StartRegistry(t)
	native := testutil.BusyboxImage(t)
	foreign := testutil.BusyboxImage(t, ociimage.Options{Architecture: otherArch()})
	manifest := testutil.Push(t, reg+"/single:latest", native)
	idx, err := ociimage.Index(foreign, native)
	if err != nil {
		t.Fatal(err)
	}
	index := testutil.PushIndex(t, reg+"/multi:latest", idx)
	ctx := context.Background()

	pinned := []string{reg + "/single@" + manifest, reg + "/multi@" + index}
	for _, ref := range pinned {
		img, err := s.Pull(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if img.Digest != manifest {
			t.Errorf("Pull(%s) chose %s, want the %s image %s", ref, img.Digest, runtime.GOARCH, manifest)
		}
	}
	stop()
	for _, ref := range pinned {
		img, err := s.Pull(ctx, ref)
		if err != nil {
			t.Errorf("Pull(%s) with the registry gone: %v", ref, err)
		} else if img.Digest != manifest || img.Ref != ref {
			t.Errorf("Pull(%s) = %s as %q, want %s", ref, img.Digest, img.Ref, manifest)
		}
	}
	if n := conversions.Load(); n != 1 {
		t.Errorf("conversions = %d, want 1", n)
	}
	// A tag must be resolved, so it needs the registry.
	_, err = s.Pull(ctx, reg+"/single:latest")
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), reg) {
		t.Errorf("Pull by tag with the registry gone = %v, want ErrUnreachable naming %s", err, reg)
	}
}

func TestPullRejectsImagesForAnotherPlatform(t *testing.T) {
	s, conversions := newStore(t, host.Local{})
	reg := testutil.Registry(t)
	foreign := testutil.BusyboxImage(t, ociimage.Options{Architecture: otherArch()})
	testutil.Push(t, reg+"/foreign:latest", foreign)
	idx, err := ociimage.Index(foreign)
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushIndex(t, reg+"/foreign-index:latest", idx)
	native := "linux/" + runtime.GOARCH

	for _, ref := range []string{reg + "/foreign:latest", reg + "/foreign-index:latest"} {
		_, err := s.Pull(context.Background(), ref)
		if !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "linux/"+otherArch()) || !strings.Contains(err.Error(), native) {
			t.Errorf("Pull(%s) = %v, want ErrPlatform naming linux/%s and %s", ref, err, otherArch(), native)
		}
	}
	if n := conversions.Load(); n != 0 {
		t.Errorf("conversions = %d, want 0", n)
	}
}

func TestLookup(t *testing.T) {
	s, _ := newStore(t, host.Local{})
	dir := t.TempDir()
	testutil.WriteOCILayout(t, dir, testutil.BusyboxImage(t), "")
	ctx := context.Background()
	pulled, err := s.Pull(ctx, "oci:"+dir)
	if err != nil {
		t.Fatal(err)
	}

	got, err := s.Lookup(ctx, pulled.Digest)
	if err != nil {
		t.Fatal(err)
	}
	assertImage(t, got, pulled)

	missing := "sha256:" + strings.Repeat("0", 64)
	for _, digest := range []string{missing, "../" + pulled.Digest, "latest"} {
		if _, err := s.Lookup(ctx, digest); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), digest) {
			t.Errorf("Lookup(%q) = %v, want ErrNotFound naming it", digest, err)
		}
	}
}

// failingHost fails one command, as a full disk or a missing tool would.
type failingHost struct {
	host.Local
	tool string
}

func (f failingHost) Run(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error) {
	if argv[0] == f.tool {
		return nil, errors.New(f.tool + ": No space left on device")
	}
	return f.Local.Run(ctx, stdin, argv...)
}

func TestFailedConversionLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteOCILayout(t, dir, testutil.BusyboxImage(t), "")
	for _, tool := range []string{"tar", "mkfs.erofs"} {
		t.Run(tool, func(t *testing.T) {
			s, _ := newStore(t, failingHost{tool: tool})
			_, err := s.Pull(context.Background(), "oci:"+dir)
			if err == nil || !strings.Contains(err.Error(), "No space left on device") {
				t.Fatalf("Pull = %v, want the %s failure", err, tool)
			}
			entries, _ := os.ReadDir(s.Dir())
			for _, e := range entries {
				if !strings.HasPrefix(e.Name(), ".lock-") {
					t.Errorf("left behind: %s", e.Name())
				}
			}
			// The failure is not cached: a working host converts it.
			s.host = host.Local{}
			if _, err := s.Pull(context.Background(), "oci:"+dir); err != nil {
				t.Errorf("Pull after the failure: %v", err)
			}
		})
	}
}

func TestPullHonoursCancellation(t *testing.T) {
	s, conversions := newStore(t, host.Local{})
	ref := testutil.Registry(t) + "/busybox:latest"
	testutil.Push(t, ref, testutil.BusyboxImage(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Pull(ctx, ref); !errors.Is(err, context.Canceled) {
		t.Errorf("Pull with a cancelled context = %v, want context.Canceled", err)
	}
	if n := conversions.Load(); n != 0 {
		t.Errorf("conversions = %d, want 0", n)
	}
}
