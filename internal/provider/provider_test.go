package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// fakeDriver is a VMM driver that is or is not installed; nothing else of it is used.
type fakeDriver struct {
	vmm.Driver
	name      string
	installed bool
}

func (d fakeDriver) Name() string                              { return d.name }
func (d fakeDriver) Available(context.Context, host.Host) bool { return d.installed }

func TestHypervisorChoice(t *testing.T) {
	ch := func(installed bool) vmm.Driver { return fakeDriver{name: "cloud-hypervisor", installed: installed} }
	qemu := func(installed bool) vmm.Driver { return fakeDriver{name: "qemu", installed: installed} }
	tests := []struct {
		name      string
		drivers   []vmm.Driver
		want      string
		pick      string
		errorText string // "" = no error
		warning   bool
	}{
		{"cloud-hypervisor preferred when installed", []vmm.Driver{ch(true), qemu(true)}, "", "cloud-hypervisor", "", false},
		{"qemu when cloud-hypervisor is missing", []vmm.Driver{ch(false), qemu(true)}, "", "qemu", "", false},
		{"nothing installed falls back with a warning", []vmm.Driver{ch(false), qemu(false)}, "", "qemu", "", true},
		{"configured and installed", []vmm.Driver{ch(true), qemu(true)}, "qemu", "qemu", "", false},
		{"configured but not installed", []vmm.Driver{ch(false), qemu(true)}, "cloud-hypervisor", "cloud-hypervisor", `hypervisor "cloud-hypervisor" is not installed on the host (installed: qemu)`, false},
		{"configured but not built in", []vmm.Driver{qemu(true)}, "cloud-hypervisor", "cloud-hypervisor", `hypervisor "cloud-hypervisor" is not built into this provider: use one of qemu`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, diags := chooseHypervisor(context.Background(), host.Local{}, tt.drivers, tt.want)
			if got != tt.pick {
				t.Errorf("chose %q, want %q", got, tt.pick)
			}
			switch {
			case tt.errorText == "" && diags.HasError():
				t.Errorf("unexpected error: %v", diags)
			case tt.errorText != "" && (!diags.HasError() || !strings.Contains(diags.Errors()[0].Detail(), tt.errorText)):
				t.Errorf("want an error containing %q, got %v", tt.errorText, diags)
			}
			if (diags.WarningsCount() > 0) != tt.warning {
				t.Errorf("warnings: %v, want warning = %v", diags.Warnings(), tt.warning)
			}
		})
	}
}

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
	if len(resp.ResourceSchemas) != 1 || len(resp.DataSourceSchemas) != 2 {
		t.Errorf("got %d resources and %d data sources, want 1 and 2", len(resp.ResourceSchemas), len(resp.DataSourceSchemas))
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
