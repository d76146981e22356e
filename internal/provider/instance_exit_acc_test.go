package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// programConfig is the provider and one instance running script, in state, with extra lines in
// the resource block.
func (e *accEnv) programConfig(name, script, state string, extra ...string) string {
	entrypoint, _ := json.Marshal([]string{"/bin/sh", "-c", script})
	return e.providerBlock() + fmt.Sprintf(`
resource "hypeman_instance" "p" {
  name         = %q
  image        = %q
  memory       = "256MiB"
  overlay_size = "256MiB"
  entrypoint   = %s
  state        = %q
%s
}
`, name, e.image, entrypoint, state, strings.Join(extra, "\n"))
}

// nothingLeft checks that the state holds no resource and the host nothing of an instance.
func (e *accEnv) nothingLeft(t *testing.T) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		if n := len(s.RootModule().Resources); n != 0 {
			return fmt.Errorf("%d resources in the state", n)
		}
		return e.hostIsEmpty(t)(s)
	}
}

// hostIsEmpty checks that no instance directory, name or VMM is left in the data_dir.
func (e *accEnv) hostIsEmpty(*testing.T) resource.TestCheckFunc {
	return func(*terraform.State) error {
		for _, d := range []string{"guests", "names"} {
			entries, err := os.ReadDir(filepath.Join(e.dataDir, d))
			if err != nil && !os.IsNotExist(err) {
				return err
			}
			for _, en := range entries {
				if !strings.HasPrefix(en.Name(), ".") { // a name's lock file stays, by design
					return fmt.Errorf("%s left in %s", en.Name(), d)
				}
			}
		}
		if pids := vmmPIDs(e.dataDir); len(pids) != 0 {
			return fmt.Errorf("VMM processes %v left", pids)
		}
		return nil
	}
}

// expectExitCode checks the exit_code the plan starts from and the one it plans (nil: null).
type expectExitCode struct {
	addr          string
	before, after any
}

func (e expectExitCode) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, rc := range req.Plan.ResourceChanges {
		if rc.Address != e.addr {
			continue
		}
		before, _ := rc.Change.Before.(map[string]any)
		after, _ := rc.Change.After.(map[string]any)
		unknown, _ := rc.Change.AfterUnknown.(map[string]any)
		if fmt.Sprint(before["exit_code"]) != fmt.Sprint(e.before) || fmt.Sprint(after["exit_code"]) != fmt.Sprint(e.after) || unknown["exit_code"] == true || unknown["state_reason"] == true {
			resp.Error = fmt.Errorf("%s: exit_code %v -> %v (unknown: %v, state_reason unknown: %v), want %v -> %v",
				e.addr, before["exit_code"], after["exit_code"], unknown["exit_code"], unknown["state_reason"], e.before, e.after)
		}
		return
	}
	resp.Error = fmt.Errorf("%s is not in the plan", e.addr)
}

func TestAccProgramThatExits(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.p"
	// later exits with code 3 well after the settle window and after the post-apply plan.
	const later = `echo "started"; sleep 20; echo "leaving"; exit 3`
	const fixed = `echo "fixed"; while true; do sleep 1; done`
	var consoleLog, exitAt string
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             env.hostIsEmpty(t),
		Steps: []resource.TestStep{
			{
				// Exits at once: the create fails with the code and the output, and leaves nothing.
				Config:      env.programConfig("acc-exit", `echo "bad config, giving up"; exit 3`, "Running"),
				ExpectError: wrapped(`the program of acc-exit exited with code 3 right after it started`),
			},
			{
				Config: env.providerBlock(),
				Check:  env.nothingLeft(t),
			},
			{
				Config: env.programConfig("acc-exit", later, "Running"),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					resource.TestCheckNoResourceAttr(addr, "exit_code"),
					resource.TestCheckNoResourceAttr(addr, "state_reason"),
					func(s *terraform.State) (err error) {
						consoleLog, err = stateAttr(s, addr, "console_log")
						return err
					}),
			},
			{
				// It exits later: refresh reads Stopped with the exit code. The fix is a new program:
				// the plan boots it with exit_code known to become null, and apply boots the new
				// program only, never the old one that exits.
				PreConfig: func() {
					exitAt = waitConsole(t, consoleLog, 0, "the program's exit", func(c string) bool {
						return strings.Contains(c, system.MarkerExited+"3")
					})
					waitGone(t, env.dataDir)
				},
				Config: env.programConfig("acc-exit", fixed, "Running"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
						expectRefreshed{addr, "Stopped", "Running"},
						expectExitCode{addr, 3, nil},
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					resource.TestCheckNoResourceAttr(addr, "exit_code"),
					func(*terraform.State) error {
						after := waitConsole(t, consoleLog, len(exitAt), "the new program", func(c string) bool { return strings.Contains(c, "fixed") })
						if n := startedMarkers(after); n != 1 || strings.Contains(after, "leaving") {
							return fmt.Errorf("want one boot, of the new program only, after the exit:\n%s", after)
						}
						return nil
					}),
			},
		},
	})
}

func TestAccUnrestorableSnapshotIsDiscardedOnRequest(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.p"
	v := &vm{env: env, addr: addr}
	script := `if [ -f /root/kept ]; then echo "KEPT<$(cat /root/kept)>"; else echo before-standby > /root/kept; sync; fi; ` +
		`i=0; while true; do echo "x count=$i"; i=$((i+1)); sleep 1; done`
	config := func(state string, extra ...string) string {
		return env.programConfig("acc-discard", script, state, extra...)
	}
	var overlay os.FileInfo
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             v.destroyed(t),
		Steps: []resource.TestStep{
			v.created(v.stepTo(t, config("Standby"), "Standby", v.inStandby(t))),
			{
				// The snapshot is damaged on disk: restoring fails, the instance stays in Standby, and
				// the error names the way out.
				PreConfig: func() {
					mem := filepath.Join(env.instanceDir(v.id), "snapshots", "snapshot-latest", vmm.MemoryFile+".lz4")
					fi, err := os.Stat(mem)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.Truncate(mem, fi.Size()/2); err != nil {
						t.Fatal(err)
					}
					if overlay, err = os.Stat(filepath.Join(env.instanceDir(v.id), "overlay.raw")); err != nil {
						t.Fatal(err)
					}
				},
				Config:      config("Running"),
				ExpectError: wrapped(`stays in Standby. If the snapshot cannot be restored, set state = "Stopped" and discard_snapshot = true`),
			},
			{
				// discard_snapshot alone is no change.
				Config:             config("Standby", `  discard_snapshot = true`),
				PlanOnly:           true,
				ExpectNonEmptyPlan: false,
			},
			v.stepTo(t, config("Stopped", `  discard_snapshot = true`), "Stopped",
				resource.TestCheckResourceAttr(addr, "snapshot_bytes", "0"),
				resource.TestCheckNoResourceAttr(addr, "discard_snapshot"),
				resource.TestCheckNoResourceAttr(addr, "state_reason"),
				v.check(t, func(*testing.T) error {
					dir := env.instanceDir(v.id)
					if _, err := os.Stat(filepath.Join(dir, "snapshots")); !os.IsNotExist(err) {
						return fmt.Errorf("the snapshot is still there: %v", err)
					}
					now, err := os.Stat(filepath.Join(dir, "overlay.raw"))
					if err != nil || !now.ModTime().Equal(overlay.ModTime()) {
						return fmt.Errorf("the overlay changed with the discard: %v", err)
					}
					return v.noVMM(t)
				})),
			v.stepTo(t, config("Running"), "Running",
				v.check(t, func(t *testing.T) error {
					waitConsole(t, v.console, v.offset, "the overlay written before standby", func(c string) bool {
						return strings.Contains(c, "KEPT<before-standby>")
					})
					return nil
				})),
		},
	})
}
