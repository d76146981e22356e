package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
)

func TestProviderSchemaDescribesEveryAttribute(t *testing.T) {
	s := protocolServer(t)
	resp, err := s.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(kind, name string, attrs []*tfprotov6.SchemaAttribute) {
		if len(attrs) == 0 {
			t.Errorf("%s %s has no attributes", kind, name)
		}
		for _, a := range attrs {
			if strings.TrimSpace(a.Description) == "" {
				t.Errorf("%s %s: attribute %s has no description", kind, name, a.Name)
			}
		}
	}
	if len(resp.ResourceSchemas) != 2 || len(resp.DataSourceSchemas) != 4 {
		t.Errorf("got %d resources and %d data sources, want 2 and 4", len(resp.ResourceSchemas), len(resp.DataSourceSchemas))
	}
	check("provider", "hypeman", attributesOf(resp.Provider))
	for name, sch := range resp.ResourceSchemas {
		check("resource", name, attributesOf(sch))
	}
	for name, sch := range resp.DataSourceSchemas {
		check("data source", name, attributesOf(sch))
	}
}

// attributesOf lists a schema's attributes, those of nested attributes and blocks included.
func attributesOf(s *tfprotov6.Schema) []*tfprotov6.SchemaAttribute {
	var out []*tfprotov6.SchemaAttribute
	var walk func([]*tfprotov6.SchemaAttribute)
	walk = func(attrs []*tfprotov6.SchemaAttribute) {
		for _, a := range attrs {
			out = append(out, a)
			if a.NestedType != nil {
				walk(a.NestedType.Attributes)
			}
		}
	}
	var walkBlock func(*tfprotov6.SchemaBlock)
	walkBlock = func(b *tfprotov6.SchemaBlock) {
		walk(b.Attributes)
		for _, nb := range b.BlockTypes {
			walkBlock(nb.Block)
		}
	}
	walkBlock(s.Block)
	return out
}

func TestTheGuideStatesTheDataDirLimitTheManagerEnforces(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "templates", "index.md.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("`data_dir` is at most %d bytes long", instances.MaxDataDirLen(builtin.Drivers()))
	if !strings.Contains(string(b), want) {
		t.Errorf("templates/index.md.tmpl does not say %q", want)
	}
}
