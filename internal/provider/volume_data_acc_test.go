package provider

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

var sizeRE = regexp.MustCompile(`SIZE<(\d+)>`)

// volumeConfig is a volume of size and one instance that mounts it at /data running script.
func (e *accEnv) volumeConfig(size, memory, script string) string {
	entrypoint, _ := json.Marshal([]string{"/bin/sh", "-c", script})
	return e.providerBlock() + fmt.Sprintf(`
resource "hypeman_volume" "d" {
  name = "acc-data"
  size = %q
}

resource "hypeman_instance" "p" {
  name         = "acc-vol"
  image        = %q
  memory       = %q
  overlay_size = "256MiB"
  entrypoint   = %s
  volume {
    volume_id  = hypeman_volume.d.id
    mount_path = "/data"
  }
}
`, size, e.image, memory, entrypoint)
}

// noVolumeFiles checks that nothing of a volume is left under data_dir/volumes.
func (e *accEnv) noVolumeFiles(*testing.T) resource.TestCheckFunc {
	return func(*terraform.State) error {
		var left []string
		err := filepath.WalkDir(filepath.Join(e.dataDir, "volumes"), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
				left = append(left, p)
			}
			return nil
		})
		if err != nil && !strings.Contains(err.Error(), "no such file") {
			return err
		}
		if len(left) != 0 {
			return fmt.Errorf("left under volumes: %v", left)
		}
		return e.hostIsEmpty(nil)(nil)
	}
}

// TestAccVolumeDataOutlivesTheInstance: a guest writes to a volume, the instance restarts in place
// (more memory), and the new boot reads what the old one wrote; a shrink fails the plan, a grow is
// applied in place, import by name and id plans nothing, and destroy leaves no file behind.
func TestAccVolumeDataOutlivesTheInstance(t *testing.T) {
	env := newAccEnv(t)
	const addr, vol = "hypeman_instance.p", "hypeman_volume.d"
	script := `if [ -f /data/kept ]; then echo "KEPT<$(cat /data/kept)>"; else echo first-guest > /data/kept; sync; echo WROTE; fi; ` +
		`echo "SIZE<$(df -m /data | tail -1 | awk '{print $2}')>"; while true; do sleep 1; done`
	var consoleLog string
	readConsole := func(s *terraform.State) (err error) {
		consoleLog, err = stateAttr(s, addr, "console_log")
		return err
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             env.noVolumeFiles(t),
		Steps: []resource.TestStep{
			{
				Config: env.volumeConfig("64MiB", "256MiB", script),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(vol, "attached_to.#", "0"), // read before the instance attached it
					resource.TestCheckResourceAttr(addr, "volume.0.mount_path", "/data"),
					resource.TestCheckResourceAttr(addr, "volume.0.readonly", "false"),
					readConsole,
					func(*terraform.State) error {
						waitConsole(t, consoleLog, 0, "the first guest's write", func(c string) bool { return strings.Contains(c, "WROTE") })
						return nil
					}),
			},
			{
				// More memory restarts the instance in place; the volume and its data stay.
				Config: env.volumeConfig("64MiB", "384MiB", script),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeTestCheckFunc(readConsole, func(*terraform.State) error {
					waitConsole(t, consoleLog, 0, "the new guest reading the volume", func(c string) bool { return strings.Contains(c, "KEPT<first-guest>") })
					return nil
				}),
			},
			{
				Config:      env.volumeConfig("32MiB", "384MiB", script),
				PlanOnly:    true,
				ExpectError: wrapped(`size "32MiB" is not allowed: a volume only grows: at least its current size 64MiB`),
			},
			{
				// A grow restarts the running holder in place; the guest sees the new size, the data intact.
				Config: env.volumeConfig("128MiB", "384MiB", script),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(vol, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(vol, "size", "128MiB"),
					readConsole, func(*terraform.State) error {
						waitConsole(t, consoleLog, 0, "the guest seeing the grown volume", func(c string) bool {
							m := sizeRE.FindAllStringSubmatch(c, -1)
							n := 0
							if len(m) > 0 {
								n, _ = strconv.Atoi(m[len(m)-1][1])
							}
							return strings.Count(c, "KEPT<first-guest>") >= 2 && n > 100 // df's MiB of a 128MiB ext4, not of 64MiB
						})
						return nil
					}),
			},
			{ResourceName: vol, ImportState: true, ImportStateId: "acc-data", ImportStateVerify: true, ImportStateVerifyIgnore: []string{"timeouts", "attached_to", "allocated_bytes"}},
			{ResourceName: vol, ImportState: true, ImportStateVerify: true, ImportStateVerifyIgnore: []string{"timeouts", "attached_to", "allocated_bytes"}},
			// The grow restarted the instance after its last refresh: its pid and started_at are newer.
			{ResourceName: addr, ImportState: true, ImportStateVerify: true, ImportStateVerifyIgnore: []string{"timeouts", "network", "discard_snapshot", "pid", "started_at"}},
		},
	})
}
