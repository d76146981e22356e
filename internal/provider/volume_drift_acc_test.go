package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
)

// A volume held by an instance outside Terraform is not deleted (the error names the holder), and
// a volume removed outside Terraform shows in the next plan as a create.
func TestAccVolumeHeldOutsideTerraformAndRemovedBehindItsBack(t *testing.T) {
	env := newAccEnv(t)
	m, err := instances.New(instances.Options{DataDir: env.dataDir, Drivers: builtin.Drivers(), DefaultHypervisor: "qemu"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const vol = "hypeman_volume.d"
	config := env.providerBlock() + `
resource "hypeman_volume" "d" {
  name = "acc-held"
  size = "32MiB"
}
`
	var volumeID, holderID string
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             env.noVolumeFiles(t),
		Steps: []resource.TestStep{
			{
				Config: config,
				Check: func(s *terraform.State) (err error) {
					volumeID, err = stateAttr(s, vol, "id")
					return err
				},
			},
			{
				PreConfig: func() {
					h, err := m.Create(ctx, instances.Spec{Name: "acc-holder", Image: env.image, VCPUs: 1, Memory: instances.MinMemory,
						OverlaySize: instances.MinOverlay, Volumes: []instances.VolumeMount{{VolumeID: volumeID, MountPath: "/data"}}}, instances.Stopped)
					if err != nil {
						t.Fatal(err)
					}
					holderID = h.ID
				},
				Config:      env.providerBlock(),
				ExpectError: wrapped(`is attached to instance "acc-holder"`),
			},
			{
				PreConfig: func() {
					if err := m.Delete(ctx, holderID); err != nil {
						t.Fatal(err)
					}
					if err := m.DeleteVolume(ctx, volumeID); err != nil {
						t.Fatal(err)
					}
				},
				Config:             config,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(vol, plancheck.ResourceActionCreate),
				}},
			},
		},
	})
}
