package testutil

import (
	"archive/tar"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// flatten lists the image's files after its layers are applied, with their headers.
func flatten(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files["/"+h.Name] = h
	}
}

func TestBusyboxImageDefaults(t *testing.T) {
	img := BusyboxImage(t)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 3 {
		t.Errorf("%d layers, want 3 (busybox, files, whiteout)", len(layers))
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !slices.Equal(cf.Config.Cmd, []string{"/bin/sh"}) ||
		cf.Config.Entrypoint != nil || !slices.Equal(cf.Config.Env, []string{DefaultPath}) || cf.Config.WorkingDir != "/" {
		t.Errorf("config = %s/%s %+v", cf.OS, cf.Architecture, cf.Config)
	}

	files := flatten(t, img)
	if _, ok := files[RemovedPath]; ok {
		t.Errorf("%s is still there after its whiteout", RemovedPath)
	}
	if h := files[HelloPath]; h == nil || h.Uid != HelloUID || h.Mode != 0o640 {
		t.Errorf("%s = %+v, want uid %d mode 0640", HelloPath, h, HelloUID)
	}
	if h := files["/bin/busybox"]; h == nil || h.Mode != 0o755 || h.Typeflag != tar.TypeReg {
		t.Errorf("/bin/busybox = %+v, want an executable file", h)
	}
	for _, a := range BusyboxApplets {
		if h := files["/bin/"+a]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("/bin/%s = %+v, want a link to busybox", a, h)
		}
	}
}

func TestBusyboxImageOptions(t *testing.T) {
	opts := ImageOptions{
		Entrypoint: []string{"/bin/app"}, Env: []string{"A=1"}, WorkingDir: "/opt/app", Architecture: "riscv64",
		Files: []File{{Path: "/bin/app", Data: []byte("#!/bin/sh\necho app\n"), Mode: 0o755}},
	}
	img := BusyboxImage(t, opts)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "riscv64" || !slices.Equal(cf.Config.Entrypoint, opts.Entrypoint) || cf.Config.Cmd != nil ||
		!slices.Equal(cf.Config.Env, opts.Env) || cf.Config.WorkingDir != "/opt/app" {
		t.Errorf("config = %s %+v, want the options", cf.Architecture, cf.Config)
	}
	if h := flatten(t, img)["/bin/app"]; h == nil || h.Mode != 0o755 || h.Size != int64(len(opts.Files[0].Data)) {
		t.Errorf("/bin/app = %+v, want the extra file", h)
	}
}

func TestBuildBusyboxImageIsReproducible(t *testing.T) {
	digest := func(img v1.Image) string {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	a, b := digest(BusyboxImage(t)), digest(BusyboxImage(t))
	if a != b {
		t.Errorf("two builds differ: %s and %s", a, b)
	}
	if c := digest(BusyboxImage(t, ImageOptions{Cmd: []string{"/bin/true"}})); c == a {
		t.Errorf("different options gave the same digest %s", c)
	}
	if _, err := BuildBusyboxImage(filepath.Join(t.TempDir(), "missing"), ImageOptions{}); err == nil {
		t.Error("BuildBusyboxImage without a busybox binary succeeded")
	}
}

func TestImagesRoundTripThroughEachSource(t *testing.T) {
	img := BusyboxImage(t)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	wantConfig, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}

	ref := Registry(t) + "/busybox:latest"
	if got := Push(t, ref, img); got != want.String() {
		t.Errorf("Push = %s, want %s", got, want)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := pulled.Digest(); got != want {
		t.Errorf("registry serves %s, want %s", got, want)
	}

	dir := t.TempDir()
	WriteOCILayout(t, dir, img, "v1")
	WriteOCILayout(t, dir, BusyboxImage(t, ImageOptions{Cmd: []string{"/bin/true"}}), "v2")
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, d := range im.Manifests {
		tags = append(tags, d.Annotations["org.opencontainers.image.ref.name"])
		if d.Annotations["org.opencontainers.image.ref.name"] == "v1" && d.Digest != want {
			t.Errorf("layout v1 = %s, want %s", d.Digest, want)
		}
	}
	if !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Errorf("layout tags = %v, want [v1 v2]", tags)
	}

	archive := filepath.Join(t.TempDir(), "busybox.tar")
	WriteDockerArchive(t, archive, "example.com/busybox:1", img)
	fromArchive, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := fromArchive.ConfigName(); got != wantConfig {
		t.Errorf("archive config = %s, want %s", got, wantConfig)
	}
}
