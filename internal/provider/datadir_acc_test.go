package provider

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// TestAccWorldWritableDataDirFailsThePlan: `terraform plan` with a data_dir that every user can
// write fails at Configure, naming data_dir, the value, the mode seen and the fix; the same plan
// with the directory made private passes.
func TestAccWorldWritableDataDirFailsThePlan(t *testing.T) {
	requireAcc(t)
	t.Setenv("HYPEMAN_HOST", "")
	dataDir := filepath.Join(testutil.ShortTempDir(t), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dataDir, 0o777); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`provider "hypeman" {
  data_dir    = %q
  accelerator = "tcg"
}

resource "hypeman_instance" "private" {
  name  = "acc-datadir"
  image = "alpine:3.20"
}
`, dataDir)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		Steps: []resource.TestStep{
			{
				Config:      config,
				PlanOnly:    true,
				ExpectError: wrapped(fmt.Sprintf("data_dir %q is writable by every user on the host (mode 0777, owner %d:", dataDir, os.Getuid())),
			},
			{
				Config:      config,
				PlanOnly:    true,
				ExpectError: wrapped("chmod 0700 " + dataDir),
			},
			{
				PreConfig:          func() { _ = os.Chmod(dataDir, 0o700) },
				Config:             config,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
		},
	})
}
