package provider

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

// expectTainted checks that the plan starts from a state in which addr is tainted.
type expectTainted struct{ addr string }

func (e expectTainted) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	if req.Plan.PriorState != nil && req.Plan.PriorState.Values != nil {
		for _, r := range req.Plan.PriorState.Values.RootModule.Resources {
			if r.Address == e.addr {
				if !r.Tainted {
					resp.Error = fmt.Errorf("%s is in the state, not tainted", e.addr)
				}
				return
			}
		}
	}
	resp.Error = fmt.Errorf("%s is not in the prior state", e.addr)
}

func TestAccWaitForConsole(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.p"
	// The line comes seconds after the program started: a create that did not wait returns before it.
	const script = `echo starting; sleep 4; echo app-ready; while true; do sleep 1; done`
	var consoleLog, pid string
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             env.hostIsEmpty(t),
		Steps: []resource.TestStep{
			{
				Config: env.programConfig("acc-wait", script, "Running", `  wait_for = { console = "^app-ready$" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					resource.TestCheckResourceAttr(addr, "wait_for.console", "^app-ready$"),
					func(s *terraform.State) (err error) {
						if consoleLog, err = stateAttr(s, addr, "console_log"); err != nil {
							return err
						}
						if pid, err = stateAttr(s, addr, "pid"); err != nil {
							return err
						}
						if c := console(t, consoleLog); !strings.Contains(c, "app-ready\n") {
							return fmt.Errorf("the create returned before the line it waits for:\n%s", c)
						}
						return nil
					}),
			},
			{
				// A new wait_for alone is an update in place that touches nothing on the VM.
				Config: env.programConfig("acc-wait", script, "Running", `  wait_for = { console = "^app-ready$", delay = "60s" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "wait_for.delay", "60s"),
					func(s *terraform.State) error {
						got, err := stateAttr(s, addr, "pid")
						if err == nil && got != pid {
							err = fmt.Errorf("pid %s after changing wait_for, was %s: the VM restarted", got, pid)
						}
						return err
					}),
			},
			// An import reads wait_for back as written ("60s", not "1m").
			{ResourceName: addr, ImportState: true, ImportStateId: "acc-wait", ImportStateVerify: true, ImportStateVerifyIgnore: []string{"timeouts"}},
		},
	})
}

func TestAccFailedWaitTaintsTheCreatedInstance(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.p"
	const script = `echo booting; while true; do sleep 1; done`
	var firstDir string
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             env.hostIsEmpty(t),
		Steps: []resource.TestStep{
			{
				// The line never comes: the create fails when its timeout passes, says what it waited
				// for, how long and what the console showed, and keeps the instance, Stopped.
				Config: env.programConfig("acc-wait-fail", script, "Running",
					`  wait_for = { console = "^never printed$" }`, `  timeouts = { create = "25s" }`),
				ExpectError: wrapped(`still waiting for console line matching "^never printed$"`),
			},
			{
				// The next plan replaces the tainted instance; meanwhile its console was kept.
				PreConfig: func() {
					dirs, err := os.ReadDir(env.dataDir + "/guests")
					if err != nil || len(dirs) != 1 {
						t.Fatalf("want the failed create's instance kept, found %v, %v", dirs, err)
					}
					firstDir = env.dataDir + "/guests/" + dirs[0].Name()
					if c := console(t, firstDir+"/logs/console.log"); !strings.Contains(c, "booting") {
						t.Fatalf("the kept instance's console lost the program's output:\n%s", c)
					}
					if pids := vmmPIDs(firstDir); len(pids) != 0 {
						t.Fatalf("the instance that did not become ready still runs: VMMs %v", pids)
					}
				},
				Config: env.programConfig("acc-wait-fail", script, "Running", `  wait_for = { console = "^booting$" }`),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						expectTainted{addr},
						plancheck.ExpectResourceAction(addr, plancheck.ResourceActionDestroyBeforeCreate),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					func(*terraform.State) error {
						if _, err := os.Stat(firstDir); !os.IsNotExist(err) {
							return fmt.Errorf("the tainted instance's directory is still there: %v", err)
						}
						return nil
					}),
			},
		},
	})
}
