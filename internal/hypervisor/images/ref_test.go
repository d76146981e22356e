package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func TestValidateRefAcceptsTheDocumentedForms(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, ref := range []string{
		"alpine",
		"alpine:3.20",
		"docker.io/library/alpine:latest",
		"127.0.0.1:5000/app/api@" + digest,
		"localhost:5000/app:v1@" + digest,
		"oci:/srv/images/app",
		"oci:relative/dir:v1.2",
		"oci:/srv/with:colon/dir",
		"docker-archive:/srv/app.tar",
	} {
		if err := ValidateRef(ref); err != nil {
			t.Errorf("ValidateRef(%q) = %v, want nil", ref, err)
		}
	}
}

func TestParseRefSplitsLayoutTags(t *testing.T) {
	tests := []struct{ ref, path, tag string }{
		{"oci:/srv/app", "/srv/app", ""},
		{"oci:/srv/app:v1", "/srv/app", "v1"},
		{"oci:/srv/with:colon/dir", "/srv/with:colon/dir", ""},
		{"oci:/srv/with:colon/dir:latest", "/srv/with:colon/dir", "latest"},
	}
	for _, tt := range tests {
		src, err := parseRef(tt.ref)
		if err != nil || src.kind != fromOCILayout || src.path != tt.path || src.tag != tt.tag {
			t.Errorf("parseRef(%q) = %+v, %v; want path %q tag %q", tt.ref, src, err, tt.path, tt.tag)
		}
	}
}

func TestValidateRefNamesTheValueAndTheAllowedForms(t *testing.T) {
	tests := []struct{ ref, why string }{
		{"", "it is empty"},
		{" alpine", "white space"},
		{"Alpine", "repository can only contain"},
		{"alpine:", "tag"},
		{"alpine@sha256:123", "digest"},
		{"docker://alpine", `the "docker" transport is not supported`},
		{"oci-archive:app.tar", `the "oci-archive" transport is not supported`},
		{"oci:", "the OCI layout path is empty"},
		{"oci::v1", "the OCI layout path is empty"},
		{"docker-archive:", "the docker archive path is empty"},
	}
	for _, tt := range tests {
		err := ValidateRef(tt.ref)
		if !errors.Is(err, ErrInvalidRef) {
			t.Errorf("ValidateRef(%q) = %v, want ErrInvalidRef", tt.ref, err)
			continue
		}
		msg := err.Error()
		for _, want := range []string{`"` + tt.ref + `"`, tt.why, "oci:PATH[:TAG]", "docker-archive:PATH", "alpine"} {
			if !strings.Contains(msg, want) {
				t.Errorf("ValidateRef(%q) = %q, want it to contain %q", tt.ref, msg, want)
			}
		}
	}
}

func TestPullErrorsSayWhatIsWrong(t *testing.T) {
	s, conversions := newStore(t, host.Local{})
	reg := testutil.Registry(t)
	img := testutil.BusyboxImage(t)
	testutil.Push(t, reg+"/busybox:latest", img)
	dir := t.TempDir()
	twoUntagged := filepath.Join(dir, "two")
	testutil.WriteOCILayout(t, twoUntagged, img, "v1")
	testutil.WriteOCILayout(t, twoUntagged, testutil.BusyboxImage(t, ociimage.Options{Cmd: []string{"/bin/true"}}), "v2")
	notALayout := filepath.Join(dir, "empty")
	if err := os.Mkdir(notALayout, 0o755); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(dir, "file")
	if err := os.WriteFile(aFile, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on port 1 of the loopback address.
	unreachable := "127.0.0.1:1/busybox:latest"

	tests := []struct {
		name, ref string
		sentinel  error
		want      []string
	}{
		{"bad syntax", "Busybox", ErrInvalidRef, []string{`"Busybox"`, "oci:PATH[:TAG]"}},
		{"unknown tag in the registry", reg + "/busybox:nope", ErrNotFound, []string{reg + "/busybox", `"nope"`}},
		{"unknown repository", reg + "/nothing:latest", ErrNotFound, []string{reg + "/nothing"}},
		{"registry unreachable", unreachable, ErrUnreachable, []string{"127.0.0.1:1", `"` + unreachable + `"`}},
		{"missing layout", "oci:" + filepath.Join(dir, "missing"), ErrNotFound, []string{filepath.Join(dir, "missing"), "does not exist"}},
		{"directory without index.json", "oci:" + notALayout, ErrNotFound, []string{notALayout, "no index.json"}},
		{"layout path is a file", "oci:" + aFile, nil, []string{aFile, "is a file"}},
		{"unknown layout tag", "oci:" + twoUntagged + ":v3", ErrNotFound, []string{`no image tagged "v3"`, "tags: v1, v2"}},
		{"ambiguous layout", "oci:" + twoUntagged, nil, []string{`none is tagged "latest"`, "oci:PATH:TAG", "tags: v1, v2"}},
		{"missing docker archive", "docker-archive:" + filepath.Join(dir, "missing.tar"), ErrNotFound, []string{"missing.tar", "does not exist"}},
		{"docker archive that is no tarball", "docker-archive:" + aFile, nil, []string{aFile, `not a "docker save" tarball`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Pull(context.Background(), tt.ref)
			if err == nil {
				t.Fatalf("Pull(%q) succeeded", tt.ref)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("Pull(%q) = %v, want %v", tt.ref, err, tt.sentinel)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Pull(%q) = %q, want it to contain %q", tt.ref, err, want)
				}
			}
		})
	}
	if n := conversions.Load(); n != 0 {
		t.Errorf("conversions = %d, want 0", n)
	}
}
