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
