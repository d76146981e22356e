package instances

import (
	"errors"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func TestUpdateTakesAnotherSpellingOfTheImageAndNoOtherImage(t *testing.T) {
	m := nameTestManager(t, testutil.ShortTempDir(t), host.Local{}, network.Config{})
	layout := ociTestImage(t, m)
	ctx := testContext(t)
	reg := testutil.Registry(t)
	same := reg + "/same/busybox:1"
	digest := testutil.Push(t, same, testutil.BusyboxImage(t))
	other := reg + "/other/busybox:1"
	testutil.Push(t, other, testutil.BusyboxImage(t, ociimage.Options{Cmd: []string{"/bin/echo", "other"}}))

	inst, err := m.Create(ctx, nameTestSpec("respelled", layout), Stopped)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ImageDigest != digest {
		t.Fatalf("the layout's image is %s, the registry's %s: the test needs one image", inst.ImageDigest, digest)
	}
	for _, ref := range []string{same, reg + "/same/busybox@" + digest} {
		got, err := m.Update(ctx, inst.ID, nameTestSpec("respelled", ref))
		if err != nil {
			t.Fatalf("Update to %s, the same image: %v", ref, err)
		}
		if got.Image != ref || got.ImageDigest != digest || got.State != Stopped || got.ID != inst.ID {
			t.Errorf("after Update to %s: image %s (%s), state %s, id %s", ref, got.Image, got.ImageDigest, got.State, got.ID)
		}
	}

	for _, ref := range []string{other, "oci:" + t.TempDir() + "/missing"} {
		_, err := m.Update(ctx, inst.ID, nameTestSpec("respelled", ref))
		if err == nil || !strings.Contains(err.Error(), ref) {
			t.Errorf("Update to %s: %v; want an error naming it", ref, err)
		}
		if ref == other && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "the instance must be replaced")) {
			t.Errorf("Update to another image: %v; want ErrInvalidConfig saying it must be replaced", err)
		}
		if got, err := m.Get(ctx, inst.ID); err != nil || got.Image != reg+"/same/busybox@"+digest {
			t.Errorf("a refused Update changed the image to %v (%v)", got, err)
		}
	}
	if err := m.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
}
