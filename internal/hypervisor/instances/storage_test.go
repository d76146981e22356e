package instances

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

func TestMetadataCarriesItsFormatVersion(t *testing.T) {
	ctx := context.Background()
	m := &Manager{host: host.Local{}, layout: layout{t.TempDir()}, opts: Options{Log: func(context.Context, string, map[string]any) {}}}
	const id = "01JZ0000000000000000000000"
	if err := os.MkdirAll(m.layout.dir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(fields map[string]any) {
		t.Helper()
		b, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.layout.metadata(id), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Written before the field existed: read as the current layout, written back with the version.
	write(map[string]any{"id": id, "name": "old"})
	md, err := m.loadMetadata(ctx, id)
	if err != nil {
		t.Fatalf("metadata without format_version: %v", err)
	}
	if md.Name != "old" || md.FormatVersion != metadataVersion {
		t.Fatalf("read %+v, want name old and format version %d", md, metadataVersion)
	}
	if err := m.saveMetadata(ctx, md); err != nil {
		t.Fatal(err)
	}
	var saved map[string]any
	b, err := os.ReadFile(m.layout.metadata(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	if saved["format_version"] != float64(metadataVersion) {
		t.Errorf("saved format_version = %v, want %d", saved["format_version"], metadataVersion)
	}

	// Written by a newer provider: refused with what to do, never misread.
	write(map[string]any{"id": id, "name": "new", "format_version": metadataVersion + 1})
	_, err = m.loadMetadata(ctx, id)
	if !errors.Is(err, errNewerMetadata) || !strings.Contains(err.Error(), "upgrade the provider") {
		t.Fatalf("metadata of a newer format: err = %v, want errNewerMetadata saying to upgrade", err)
	}
	if _, err := m.Get(ctx, id); !errors.Is(err, errNewerMetadata) {
		t.Errorf("Get of an instance with newer metadata: err = %v, want errNewerMetadata", err)
	}
	after, err := os.ReadFile(filepath.Join(m.layout.dir(id), "metadata.json"))
	if err != nil || !strings.Contains(string(after), `"name":"new"`) {
		t.Errorf("the newer metadata must be left as it was, got %q (%v)", after, err)
	}
}

// Metadata of format 1 (before max_memory) of an instance made with memory and hotplug_memory
// loads with the same guest memory: it boots with memory and has memory + hotplug_memory while
// running, which is also its ceiling.
func TestVersion1MetadataWithHotplugMemoryKeepsItsGuestMemory(t *testing.T) {
	ctx := context.Background()
	m := &Manager{host: host.Local{}, layout: layout{t.TempDir()}, opts: Options{Log: func(context.Context, string, map[string]any) {}}}
	const id = "01JZ0000000000000000000001"
	if err := os.MkdirAll(m.layout.dir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"format_version": 1, "id": id, "name": "old", "memory_bytes": 512 << 20, "hotplug_bytes": 256 << 20})
	if err := os.WriteFile(m.layout.metadata(id), b, 0o600); err != nil {
		t.Fatal(err)
	}
	md, err := m.loadMetadata(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	s := md.spec()
	if l := s.layout(); s.Memory != 512<<20 || s.Hotplug != 256<<20 || s.MaxMemory != 0 || l.boot != 512<<20 || l.region != 256<<20 ||
		s.LiveMemory() != 768<<20 || s.Ceiling() != 768<<20 {
		t.Fatalf("version 1 metadata read as %+v, layout %+v", s, l)
	}
	// Written as memory and max_memory, the same sizes are no change.
	want := s
	want.Memory, want.MaxMemory, want.Hotplug = 768<<20, 768<<20, 0
	if changes, err := ResizeChanges(s, Running, want); err != nil || len(changes) != 0 {
		t.Fatalf("hotplug_memory respelled as memory and max_memory: %v, %v; want no change", changes, err)
	}
}
