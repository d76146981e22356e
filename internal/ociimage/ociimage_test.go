package ociimage_test

import (
	"archive/tar"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// flatten lists the image's files after its layers are applied, with their headers.
func flatten(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
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
	img := testutil.BusyboxImage(t)
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
		cf.Config.Entrypoint != nil || !slices.Equal(cf.Config.Env, []string{ociimage.DefaultPath}) || cf.Config.WorkingDir != "/" {
		t.Errorf("config = %s/%s %+v", cf.OS, cf.Architecture, cf.Config)
	}

	files := flatten(t, img)
	if _, ok := files[ociimage.RemovedPath]; ok {
		t.Errorf("%s is still there after its whiteout", ociimage.RemovedPath)
	}
	if h := files[ociimage.HelloPath]; h == nil || h.Uid != ociimage.HelloUID || h.Mode != 0o640 {
		t.Errorf("%s = %+v, want uid %d mode 0640", ociimage.HelloPath, h, ociimage.HelloUID)
	}
	if h := files["/bin/busybox"]; h == nil || h.Mode != 0o755 || h.Typeflag != tar.TypeReg {
		t.Errorf("/bin/busybox = %+v, want an executable file", h)
	}
	for _, a := range ociimage.BusyboxApplets {
		if h := files["/bin/"+a]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("/bin/%s = %+v, want a link to busybox", a, h)
		}
	}
}

func TestBusyboxImageOptions(t *testing.T) {
	opts := ociimage.Options{
		Entrypoint: []string{"/bin/app"}, Env: []string{"A=1"}, WorkingDir: "/opt/app", Architecture: "riscv64",
		Files: []ociimage.File{{Path: "/bin/app", Data: []byte("#!/bin/sh\necho app\n"), Mode: 0o755}},
	}
	img := testutil.BusyboxImage(t, opts)
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

func TestBusyboxIsReproducible(t *testing.T) {
	digest := func(img v1.Image) string {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	a, b := digest(testutil.BusyboxImage(t)), digest(testutil.BusyboxImage(t))
	if a != b {
		t.Errorf("two builds differ: %s and %s", a, b)
	}
	if c := digest(testutil.BusyboxImage(t, ociimage.Options{Cmd: []string{"/bin/true"}})); c == a {
		t.Errorf("different options gave the same digest %s", c)
	}
	if _, err := ociimage.Busybox(filepath.Join(t.TempDir(), "missing"), ociimage.Options{}); err == nil {
		t.Error("Busybox without a busybox binary succeeded")
	}
}
