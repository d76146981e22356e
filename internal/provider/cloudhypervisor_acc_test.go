package provider

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/cloudhypervisor/chstandin"
	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// TestAccInstanceOnCloudHypervisor runs the lifecycle with Cloud Hypervisor, played by the
// spec-validating stand-in installed as `cloud-hypervisor` on PATH. The provider names no
// hypervisor: an installed Cloud Hypervisor is the default. The stand-in has no guest, so this
// checks the provider and manager flows, not a program's output.
func TestAccInstanceOnCloudHypervisor(t *testing.T) {
	env := newAccEnv(t)
	bin := chstandin.BuildBinary(t)
	pathDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(pathDir, "cloud-hypervisor")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", pathDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv(chstandin.ModeEnv, "v53")

	config := func(state string) string {
		return fmt.Sprintf(`
provider "hypeman" {
  data_dir       = %q
  kernel         = %q
  kernel_modules = %q
  busybox        = %q
}
`, env.dataDir, env.kernel, env.modules, ociimage.BusyboxPath) + env.instanceResource("ch", "acc-ch", state, "one")
	}
	const addr = "hypeman_instance.ch"
	var id string
	inPlace := plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)
	// specClean fails the step when the stand-in saw a request that the official spec rejects.
	specClean := func(*terraform.State) error {
		log, err := os.ReadFile(filepath.Join(env.instanceDir(id), "ch-stdout.log"))
		if err != nil {
			return err
		}
		if v := chstandin.LogViolations(log); len(v) > 0 {
			return fmt.Errorf("requests broke the Cloud Hypervisor API spec: %v", v)
		}
		return nil
	}
	step := func(state string) resource.TestStep {
		return resource.TestStep{
			Config:           config(state),
			ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{inPlace}},
			Check: resource.ComposeTestCheckFunc(
				resource.TestCheckResourceAttr(addr, "state", state),
				resource.TestCheckResourceAttrPtr(addr, "id", &id),
				specClean),
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy: func(*terraform.State) error {
			if _, err := os.Stat(env.instanceDir(id)); !os.IsNotExist(err) {
				return fmt.Errorf("instance directory still there: %v", err)
			}
			if pids := testutil.ProcessesMentioning(env.instanceDir(id)); len(pids) != 0 {
				return fmt.Errorf("processes still running for the instance: %v", pids)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: config("Running"),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "hypervisor", "cloud-hypervisor"),
					resource.TestCheckResourceAttr(addr, "hypervisor_version", "v53.0"),
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					resource.TestCheckResourceAttrSet(addr, "pid"),
					func(s *terraform.State) error { id = s.RootModule().Resources[addr].Primary.ID; return nil },
				),
			},
			step("Standby"),
			step("Running"),
			step("Paused"),
			step("Stopped"),
			step("Running"),
			{ResourceName: addr, ImportState: true, ImportStateId: "acc-ch", ImportStateVerify: true},
		},
	})
}
