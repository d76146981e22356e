package instances

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

// The config disk's volume entries, as the guest init reads them; nothing here boots a guest.

// tarMember is one entry of the config tar: its name, type and bytes.
type tarMember struct {
	name string
	dir  bool
	data string
}

func tarMembers(t *testing.T, b []byte) []tarMember {
	t.Helper()
	var out []tarMember
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarMember{name: h.Name, dir: h.Typeflag == tar.TypeDir, data: string(data)})
	}
}

func TestConfigTarWritesEachVolumeInOrderAsData(t *testing.T) {
	prog := guestProgram{Argv: []string{"true"}, Workdir: "/"}
	hostile := "/data/two words/'single' \"double\"/$(poweroff) `id` ${HOME}\nsecond line\n"
	vols := []guestVolume{
		{Serial: "01JAAAAAAAAAAAAAAAAA", Path: "/var/lib/data", ReadOnly: false},
		{Serial: "01JBBBBBBBBBBBBBBBBB", Path: hostile, ReadOnly: true},
		{Serial: "01JCCCCCCCCCCCCCCCCC", Path: "/srv"},
	}
	b, err := configTar(prog, "host", nil, vols)
	if err != nil {
		t.Fatal(err)
	}
	var got []tarMember
	for _, m := range tarMembers(t, b) {
		if strings.HasPrefix(m.name, system.ConfigVolumesDir+"/") {
			got = append(got, m)
		}
	}
	want := []tarMember{
		{name: "volumes/", dir: true},
		{name: "volumes/0000/", dir: true},
		{name: "volumes/0000/serial", data: "01JAAAAAAAAAAAAAAAAA"},
		{name: "volumes/0000/path", data: "/var/lib/data"},
		{name: "volumes/0001/", dir: true},
		{name: "volumes/0001/serial", data: "01JBBBBBBBBBBBBBBBBB"},
		{name: "volumes/0001/path", data: hostile},
		{name: "volumes/0001/readonly", data: ""},
		{name: "volumes/0002/", dir: true},
		{name: "volumes/0002/serial", data: "01JCCCCCCCCCCCCCCCCC"},
		{name: "volumes/0002/path", data: "/srv"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("volume members\n got %#v\nwant %#v", got, want)
	}
}

func TestConfigTarWithoutVolumesHasNoVolumesDirectory(t *testing.T) {
	for _, vols := range [][]guestVolume{nil, {}} {
		b, err := configTar(guestProgram{Argv: []string{"true"}, Workdir: "/"}, "host", nil, vols)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tarMembers(t, b) {
			if strings.HasPrefix(m.name, system.ConfigVolumesDir+"/") {
				t.Errorf("a config disk without volumes has %s", m.name)
			}
		}
	}
}
