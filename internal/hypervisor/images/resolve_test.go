package images

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func TestResolveGivesThePullDigestWithoutConverting(t *testing.T) {
	s, conversions := newStore(t, host.Local{})
	reg := testutil.Registry(t)
	img := testutil.BusyboxImage(t)
	manifest := testutil.Push(t, reg+"/app:1", img)
	foreign := testutil.BusyboxImage(t, ociimage.Options{Architecture: otherArch()})
	idx, err := ociimage.Index(foreign, img)
	if err != nil {
		t.Fatal(err)
	}
	index := testutil.PushIndex(t, reg+"/multi:1", idx)
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	testutil.WriteOCILayout(t, layout, img, "v1")
	archive := filepath.Join(dir, "app.tar")
	testutil.WriteDockerArchive(t, archive, "example.com/app:1", img)

	refs := []string{
		reg + "/app:1", reg + "/app@" + manifest, reg + "/multi:1", reg + "/multi@" + index,
		"oci:" + layout + ":v1", "docker-archive:" + archive,
	}
	ctx := context.Background()
	resolved := map[string]string{}
	for _, ref := range refs {
		d, err := s.Resolve(ctx, ref)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", ref, err)
		}
		resolved[ref] = d
	}
	if n := conversions.Load(); n != 0 {
		t.Fatalf("Resolve converted %d images; it must pull nothing", n)
	}
	for _, ref := range refs {
		pulled, err := s.Pull(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if resolved[ref] != pulled.Digest {
			t.Errorf("Resolve(%s) = %s, Pull gives %s", ref, resolved[ref], pulled.Digest)
		}
	}
	// The registry and the layout hold the same manifest: two spellings of one image.
	if resolved[reg+"/app:1"] != manifest || resolved["oci:"+layout+":v1"] != manifest {
		t.Errorf("the registry tag resolved to %s and the layout to %s, want both %s", resolved[reg+"/app:1"], resolved["oci:"+layout+":v1"], manifest)
	}
}

func TestCheckFindsWhatALocalPullWouldFailAt(t *testing.T) {
	s := NewStore(host.Local{}, filepath.Join(t.TempDir(), "images"))
	img := testutil.BusyboxImage(t)
	foreign := testutil.BusyboxImage(t, ociimage.Options{Architecture: otherArch()})
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	testutil.WriteOCILayout(t, layout, img, "v1")
	foreignLayout := filepath.Join(dir, "foreign")
	testutil.WriteOCILayout(t, foreignLayout, foreign, "")
	archive := filepath.Join(dir, "app.tar")
	testutil.WriteDockerArchive(t, archive, "example.com/app:1", img)
	reg, stop := testutil.StartRegistry(t)
	stop()

	tests := []struct {
		ref      string
		wantErr  error // nil: no error
		wantText string
	}{
		{"oci:" + layout + ":v1", nil, ""},
		{"docker-archive:" + archive, nil, ""},
		{reg + "/gone:1", nil, ""}, // only the network can tell
		{"oci:" + filepath.Join(dir, "missing"), ErrNotFound, "does not exist"},
		{"docker-archive:" + filepath.Join(dir, "missing.tar"), ErrNotFound, "does not exist"},
		{"oci:" + layout + ":v2", ErrNotFound, `no image tagged "v2"`},
		{"oci:" + foreignLayout, ErrPlatform, otherArch()},
		{"docker-archive:" + layout, nil, "is a directory"},
	}
	for _, tt := range tests {
		err := s.Check(context.Background(), tt.ref)
		switch {
		case tt.wantText == "" && err != nil:
			t.Errorf("Check(%s) = %v, want nil", tt.ref, err)
		case tt.wantText != "" && (err == nil || !strings.Contains(err.Error(), tt.wantText)):
			t.Errorf("Check(%s) = %v, want an error saying %q", tt.ref, err, tt.wantText)
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("Check(%s) = %v, want %v", tt.ref, err, tt.wantErr)
		}
	}
}
