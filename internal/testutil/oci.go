package testutil

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
)

// BusyboxImage is ociimage.Busybox from ociimage.BusyboxPath for a test; it skips (fails in CI)
// without busybox.
func BusyboxImage(t testing.TB, opts ...ociimage.Options) v1.Image {
	t.Helper()
	_, err := os.Stat(ociimage.BusyboxPath)
	Require(t, err == nil, "busybox-static is not installed ("+ociimage.BusyboxPath+")")
	var o ociimage.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	img, err := ociimage.Busybox(ociimage.BusyboxPath, o)
	if err != nil {
		t.Fatalf("build busybox image: %v", err)
	}
	return img
}

// Registry starts an in-memory registry on 127.0.0.1 for the test and returns its "host:port".
func Registry(t testing.TB) string {
	addr, _ := StartRegistry(t)
	return addr
}

// StartRegistry is Registry with a stop function, for tests that need the registry gone; the
// test's cleanup stops it too.
func StartRegistry(t testing.TB) (addr string, stop func()) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), srv.Close
}

// Push uploads img as ref (e.g. Registry(t)+"/busybox:latest") and returns its manifest digest.
func Push(t testing.TB, ref string, img v1.Image) string {
	t.Helper()
	return push(t, ref, func(r name.Reference) error { return remote.Write(r, img) }, img.Digest)
}

// PushIndex uploads idx as ref and returns the index digest.
func PushIndex(t testing.TB, ref string, idx v1.ImageIndex) string {
	t.Helper()
	return push(t, ref, func(r name.Reference) error { return remote.WriteIndex(r, idx) }, idx.Digest)
}

func push(t testing.TB, ref string, write func(name.Reference) error, digest func() (v1.Hash, error)) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err == nil {
		err = write(r)
	}
	var d v1.Hash
	if err == nil {
		d, err = digest()
	}
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return d.String()
}

// WriteOCILayout is ociimage.WriteLayout for a test.
func WriteOCILayout(t testing.TB, dir string, img v1.Image, tag string) {
	t.Helper()
	if err := ociimage.WriteLayout(dir, img, tag); err != nil {
		t.Fatal(err)
	}
}

// WriteDockerArchive writes img as a "docker save" tarball at path, tagged ref.
func WriteDockerArchive(t testing.TB, path, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatalf("docker archive %s: %v", ref, err)
	}
	if err := tarball.WriteToFile(path, r, img); err != nil {
		t.Fatalf("docker archive %s: %v", path, err)
	}
}
