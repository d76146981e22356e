package provider

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
)

// equals checks an attribute against a value known only when the check runs.
func equals(want func() string) resource.CheckResourceAttrWithFunc {
	return func(got string) error {
		if got != want() {
			return fmt.Errorf("got %q, want %q", got, want())
		}
		return nil
	}
}

func TestAccRemovedInstanceIsListedAsAnOrphanAndTheNextCreateStopsItsVMM(t *testing.T) {
	env := newAccEnv(t)
	const addr, list = "hypeman_instance.orphan", "data.hypeman_instances.all"
	v := &vm{env: env, addr: addr}
	instance := env.instanceResource("orphan", "acc-orphan", "Running", "one")
	var oldPID int
	var oldID string
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		Steps: []resource.TestStep{
			{
				Config: env.providerBlock() + instance,
				Check: v.check(t, func(*testing.T) error {
					oldPID, oldID = v.pid, v.id
					return nil
				}),
			},
			{
				// The directory goes while the VM runs: refresh forgets the instance, its VMM runs on.
				PreConfig: func() {
					if err := os.RemoveAll(env.instanceDir(oldID)); err != nil {
						t.Fatal(err)
					}
					if !alive(oldPID) {
						t.Fatalf("the VMM %d died with its directory; the test needs it running", oldPID)
					}
				},
				Config: env.providerBlock() + `
data "hypeman_instances" "all" {}
`,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(list, "instances.#", "0"),
					resource.TestCheckResourceAttr(list, "orphans.#", "1"),
					resource.TestCheckResourceAttrWith(list, "orphans.0.pid", equals(func() string { return strconv.Itoa(oldPID) })),
					resource.TestCheckResourceAttrWith(list, "orphans.0.id", equals(func() string { return oldID })),
					resource.TestCheckResourceAttrWith(list, "orphans.0.directory", equals(func() string { return env.instanceDir(oldID) })),
					resource.TestCheckResourceAttr(list, "orphans.0.hypervisor", "qemu"),
					resource.TestCheckResourceAttr(list, "orphans.0.name", "acc-orphan"),
				),
			},
			{
				// The same name again: the old VMM is stopped, and one VMM runs for the name.
				Config: env.providerBlock() + instance + `
data "hypeman_instances" "all" {
  depends_on = [hypeman_instance.orphan]
}
`,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(list, "orphans.#", "0"),
					resource.TestCheckResourceAttr(list, "instances.#", "1"),
					v.check(t, func(*testing.T) error {
						if alive(oldPID) {
							return fmt.Errorf("the orphaned VMM %d still runs after its name was created again", oldPID)
						}
						if pids := vmmPIDs(filepath.Join(env.dataDir, "guests") + "/"); !slices.Equal(pids, []int{v.pid}) {
							return fmt.Errorf("VMM processes %v run in the data_dir, want only the new one %d", pids, v.pid)
						}
						return nil
					}),
				),
			},
		},
	})
}

func TestAccUnresponsiveVMMIsPlannedFromUnknownAndApplyColdBootsIt(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.hung"
	v := &vm{env: env, addr: addr}
	config := env.instanceConfig("hung", "acc-hung", "Running", "one")
	var hungPID int
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             v.destroyed(t),
		Steps: []resource.TestStep{
			{Config: config, Check: resource.ComposeTestCheckFunc(v.counting(t), v.mark(t))},
			{
				// The VMM stops answering (as one stuck in the kernel does): refresh sees Unknown.
				PreConfig: func() {
					hungPID = v.pid
					if err := syscall.Kill(hungPID, syscall.SIGSTOP); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = syscall.Kill(hungPID, syscall.SIGCONT) })
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					expectRefreshed{addr, "Unknown", "Running"},
				}},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					v.check(t, func(t *testing.T) error {
						if v.pid == hungPID || alive(hungPID) {
							return fmt.Errorf("the hung VMM %d was not replaced (now pid %d)", hungPID, v.pid)
						}
						waitConsole(t, v.console, v.offset, "the program starting again (a cold boot)", func(c string) bool { return startedMarkers(c) == 1 })
						return nil
					}),
				),
			},
		},
	})
}
