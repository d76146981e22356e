package testutil

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
)

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
	WriteOCILayout(t, dir, BusyboxImage(t, ociimage.Options{Cmd: []string{"/bin/true"}}), "v2")
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
