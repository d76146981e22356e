package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// instanceConfig is the provider and one counter instance with the given state and greeting.
func (e *accEnv) instanceConfig(label, name, state, greeting string) string {
	return e.providerBlock() + e.instanceResource(label, name, state, greeting)
}

// instanceResource is one counter instance with the given state and greeting.
func (e *accEnv) instanceResource(label, name, state, greeting string) string {
	entrypoint, _ := json.Marshal(counterProgram)
	return fmt.Sprintf(`
resource "hypeman_instance" %q {
  name         = %q
  image        = %q
  memory       = "256MiB"
  overlay_size = "256MiB"
  entrypoint   = %s
  env          = { GREETING = %q }
  state        = %q
}
`, label, name, e.image, entrypoint, greeting, state)
}

// vm follows one instance through a test: its id and console, and how far the console was read.
type vm struct {
	env     *accEnv
	addr    string
	id      string
	pid     int
	console string
	offset  int // console bytes seen before the current step
	count   int // highest counter value seen
	// sameID checks that every step made with stepTo sees one instance id.
	sameID interface {
		AddStateValue(string, tfjsonpath.Path) statecheck.StateCheck
	}
}

// stepTo is a step that applies config to move the instance to state in place (an update, then
// an empty plan, the id unchanged) and checks it is there.
func (v *vm) stepTo(t *testing.T, config, state string, checks ...resource.TestCheckFunc) resource.TestStep {
	if v.sameID == nil {
		v.sameID = statecheck.CompareValue(compare.ValuesSame())
	}
	return resource.TestStep{
		Config: config,
		ConfigPlanChecks: resource.ConfigPlanChecks{
			PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(v.addr, plancheck.ResourceActionUpdate)},
			PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
		},
		ConfigStateChecks: []statecheck.StateCheck{v.sameID.AddStateValue(v.addr, tfjsonpath.New("id"))},
		Check:             resource.ComposeTestCheckFunc(append(append([]resource.TestCheckFunc{resource.TestCheckResourceAttr(v.addr, "state", state)}, checks...), v.mark(t))...),
	}
}

// created turns a stepTo step into the one that creates the instance.
func (v *vm) created(step resource.TestStep) resource.TestStep {
	step.ConfigPlanChecks.PreApply = []plancheck.PlanCheck{plancheck.ExpectResourceAction(v.addr, plancheck.ResourceActionCreate)}
	return step
}

// counting checks that the guest program's counter reaches 2.
func (v *vm) counting(t *testing.T) resource.TestCheckFunc {
	return v.check(t, func(t *testing.T) error {
		waitConsole(t, v.console, 0, "the counter reaching 2", func(c string) bool {
			_, values := counts(c)
			return slices.Contains(values, 2)
		})
		return nil
	})
}

// inStandby checks a Standby instance: no process, a snapshot.
func (v *vm) inStandby(t *testing.T) resource.TestCheckFunc {
	return resource.ComposeTestCheckFunc(
		resource.TestCheckNoResourceAttr(v.addr, "pid"),
		resource.TestCheckNoResourceAttr(v.addr, "started_at"),
		v.check(t, v.noVMM),
		resource.TestCheckResourceAttrWith(v.addr, "snapshot_bytes", func(s string) error {
			if n, _ := strconv.ParseInt(s, 10, 64); n <= 0 {
				return fmt.Errorf("snapshot_bytes = %s in Standby", s)
			}
			return nil
		}))
}

// resumed checks that a restored guest went on from where it was: no new boot, no count below
// the last one seen.
func (v *vm) resumed(t *testing.T) resource.TestCheckFunc {
	return resource.ComposeTestCheckFunc(
		resource.TestCheckResourceAttrSet(v.addr, "pid"),
		resource.TestCheckResourceAttr(v.addr, "snapshot_bytes", "0"),
		v.check(t, func(t *testing.T) error {
			after := waitConsole(t, v.console, v.offset, fmt.Sprintf("the counter passing %d", v.count+1), func(c string) bool {
				_, values := counts(c)
				return len(values) > 0 && slices.Max(values) > v.count+1
			})
			if n := startedMarkers(after); n != 0 {
				return fmt.Errorf("the guest booted again after restore (%d program starts):\n%s", n, after)
			}
			_, values := counts(after)
			if values[0] < v.count {
				return fmt.Errorf("the counter went back from %d to %d after restore", v.count, values[0])
			}
			t.Logf("the counter stood at %d in Standby and went on at %d after restore", v.count, values[0])
			return nil
		}))
}

// destroyed is a CheckDestroy: the instance's directory and VMM are gone.
func (v *vm) destroyed(t *testing.T) resource.TestCheckFunc {
	return func(*terraform.State) error {
		if _, err := os.Stat(v.env.instanceDir(v.id)); !os.IsNotExist(err) {
			return fmt.Errorf("instance directory %s is still there (%v)", v.env.instanceDir(v.id), err)
		}
		return v.noVMM(t)
	}
}

// capture records the instance's id, pid and console path from the state.
func (v *vm) capture(s *terraform.State) error {
	var err error
	if v.id, err = stateAttr(s, v.addr, "id"); err != nil {
		return err
	}
	if v.console, err = stateAttr(s, v.addr, "console_log"); err != nil {
		return err
	}
	v.pid = 0
	if p, err := stateAttr(s, v.addr, "pid"); err == nil {
		v.pid, _ = strconv.Atoi(p)
	}
	return nil
}

// mark remembers where the console ends and the highest count so far, before the next step.
func (v *vm) mark(t *testing.T) resource.TestCheckFunc {
	return func(*terraform.State) error {
		c := console(t, v.console)
		v.offset = len(c)
		if _, values := counts(c); len(values) > 0 {
			v.count = slices.Max(values)
		}
		return nil
	}
}

func (v *vm) check(t *testing.T, fn func(t *testing.T) error) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		if err := v.capture(s); err != nil {
			return err
		}
		return fn(t)
	}
}

// noVMM checks that no VMM process runs for the instance.
func (v *vm) noVMM(*testing.T) error {
	if pids := vmmPIDs(v.env.instanceDir(v.id)); len(pids) > 0 {
		return fmt.Errorf("VMM processes %v still run for %s", pids, v.id)
	}
	return nil
}

func TestAccInstanceLifecycle(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.life"
	v := &vm{env: env, addr: addr}
	stepTo := func(state, greeting string, checks ...resource.TestCheckFunc) resource.TestStep {
		return v.stepTo(t, env.instanceConfig("life", "acc-life", state, greeting), state, checks...)
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             v.destroyed(t),
		Steps: []resource.TestStep{
			v.created(stepTo("Running", "one",
				resource.TestCheckResourceAttrSet(addr, "pid"),
				resource.TestCheckResourceAttr(addr, "snapshot_bytes", "0"),
				resource.TestCheckResourceAttr(addr, "hypervisor", "qemu"),
				resource.TestMatchResourceAttr(addr, "image_digest", regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)),
				resource.TestCheckResourceAttr(addr, "memory", "256MiB"),
				v.counting(t))),
			stepTo("Standby", "one", v.inStandby(t)),
			{
				// A new program would need a restart, which would discard the snapshot: the plan warns, apply refuses.
				Config:      env.instanceConfig("life", "acc-life", "Standby", "changed"),
				ExpectError: wrapped(`is in Standby; changing its program needs a restart, which would discard the snapshot`),
			},
			stepTo("Running", "one", v.resumed(t)),
			stepTo("Paused", "one",
				resource.TestCheckResourceAttrSet(addr, "pid"),
				v.check(t, func(t *testing.T) error {
					before := len(console(t, v.console))
					time.Sleep(1500 * time.Millisecond)
					if grown := console(t, v.console)[before:]; grown != "" {
						return fmt.Errorf("a paused guest kept printing: %q", grown)
					}
					t.Logf("paused: the console stayed at %d bytes", before)
					return nil
				})),
			stepTo("Running", "one", resource.TestCheckResourceAttrSet(addr, "pid")),
			stepTo("Stopped", "one",
				resource.TestCheckNoResourceAttr(addr, "pid"),
				v.check(t, v.noVMM)),
			stepTo("Running", "one",
				resource.TestCheckResourceAttrSet(addr, "pid"),
				v.check(t, func(t *testing.T) error {
					// A start is a fresh boot: the program starts again and counts from 0.
					waitConsole(t, v.console, v.offset, "a fresh boot counting from 0", func(c string) bool {
						_, values := counts(c)
						return startedMarkers(c) == 1 && slices.Contains(values, 0)
					})
					return nil
				})),
			stepTo("Running", "two",
				v.check(t, func(t *testing.T) error {
					// The new env reaches the restarted program; the id (checked by sameID) and the console history stay.
					after := waitConsole(t, v.console, v.offset, "the new greeting", func(c string) bool {
						greetings, _ := counts(c)
						return slices.Contains(greetings, "two")
					})
					if startedMarkers(after) != 1 {
						return fmt.Errorf("want exactly one restart for the env change:\n%s", after)
					}
					if !strings.Contains(console(t, v.console)[:v.offset], "one count=") {
						return fmt.Errorf("the console history before the restart is gone")
					}
					return nil
				})),
			stepTo("Standby", "two"),
			stepTo("Running", "three",
				v.check(t, func(t *testing.T) error {
					// Leaving Standby and a new program in one apply: restored first, then restarted once.
					after := waitConsole(t, v.console, v.offset, "the greeting of the combined change", func(c string) bool {
						greetings, _ := counts(c)
						return slices.Contains(greetings, "three")
					})
					if startedMarkers(after) != 1 {
						return fmt.Errorf("want exactly one restart for the combined change:\n%s", after)
					}
					return nil
				})),
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateVerify: true,
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateId:     "acc-life",
				ImportStateVerify: true,
			},
			{
				Config:          env.instanceConfig("life", "acc-life", "Running", "three"),
				ResourceName:    addr,
				ImportState:     true,
				ImportStateKind: resource.ImportBlockWithID,
				ImportStateId:   "acc-life",
			},
		},
	})
}

// expectRefreshed checks that refresh saw the instance in state before, and that the plan moves it
// to after in place.
type expectRefreshed struct {
	addr, before, after string
}

func (e expectRefreshed) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, rc := range req.Plan.ResourceChanges {
		if rc.Address != e.addr {
			continue
		}
		before, _ := rc.Change.Before.(map[string]any)
		after, _ := rc.Change.After.(map[string]any)
		if before["state"] != e.before || after["state"] != e.after {
			resp.Error = fmt.Errorf("%s: planned state %v -> %v, want %s -> %s", e.addr, before["state"], after["state"], e.before, e.after)
		}
		return
	}
	resp.Error = fmt.Errorf("%s is not in the plan", e.addr)
}

func TestAccInstanceDrift(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.drift"
	v := &vm{env: env, addr: addr}
	config := env.instanceConfig("drift", "acc-drift", "Running", "one")
	var killedPID int
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		Steps: []resource.TestStep{
			{
				Config: config,
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					v.check(t, func(*testing.T) error { return nil })),
			},
			{
				// The VMM dies outside Terraform: refresh sees Stopped, the plan updates in place, apply boots it.
				PreConfig: func() {
					killedPID = v.pid
					if err := syscall.Kill(v.pid, syscall.SIGKILL); err != nil {
						t.Fatalf("kill the VMM %d: %v", v.pid, err)
					}
					waitGone(t, env.instanceDir(v.id))
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					expectRefreshed{addr, "Stopped", "Running"},
				}},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					v.check(t, func(*testing.T) error {
						if v.pid == 0 || v.pid == killedPID {
							return fmt.Errorf("pid %d after the repair; the killed VMM was %d", v.pid, killedPID)
						}
						return nil
					})),
			},
			{
				// The instance is wiped outside Terraform: refresh drops it and the plan creates it again.
				PreConfig: func() {
					_ = syscall.Kill(v.pid, syscall.SIGKILL)
					waitGone(t, env.instanceDir(v.id))
					if err := os.RemoveAll(env.instanceDir(v.id)); err != nil {
						t.Fatal(err)
					}
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate),
				}},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "state", "Running"),
					resource.TestCheckResourceAttrWith(addr, "id", func(id string) error {
						if id == v.id {
							return fmt.Errorf("the re-created instance has the old id %s", id)
						}
						return nil
					})),
			},
		},
	})
}

// waitGone waits until no VMM process runs for dir.
func waitGone(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(vmmPIDs(dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("VMM processes %v for %s did not exit", vmmPIDs(dir), dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAccInstanceDataSourcesReturnWhatTheResourceHolds(t *testing.T) {
	env := newAccEnv(t)
	// The three data sources read one instance at the same moment (QEMU serves one monitor client
	// at a time; the driver must queue, not report Unknown).
	config := env.instanceConfig("ds", "acc-ds", "Running", "one") + `
data "hypeman_instance" "by_id" {
  id = hypeman_instance.ds.id
}

data "hypeman_instance" "by_name" {
  name = hypeman_instance.ds.name
}

data "hypeman_instances" "all" {
  depends_on = [hypeman_instance.ds]
}
`
	const res = "hypeman_instance.ds"
	var checks []resource.TestCheckFunc
	for _, a := range []string{"id", "name", "image", "image_digest", "vcpus", "memory", "hotplug_memory", "overlay_size", "state",
		"pid", "hypervisor", "hypervisor_version", "created_at", "started_at", "directory", "console_log",
		"entrypoint.#", "entrypoint.0", "entrypoint.2", "env.%", "env.GREETING", "snapshot_bytes"} {
		checks = append(checks,
			resource.TestCheckResourceAttrPair("data.hypeman_instance.by_id", a, res, a),
			resource.TestCheckResourceAttrPair("data.hypeman_instance.by_name", a, res, a))
	}
	for _, a := range []string{"id", "name", "state", "image", "image_digest", "memory", "pid", "console_log"} {
		checks = append(checks, resource.TestCheckResourceAttrPair("data.hypeman_instances.all", "instances.0."+a, res, a))
	}
	// How the guest last booted is the data source's alone: the resource leaves it out.
	for _, ds := range []string{"data.hypeman_instance.by_id", "data.hypeman_instance.by_name"} {
		checks = append(checks, resource.TestCheckResourceAttr(ds, "accelerator", "tcg"), resource.TestCheckResourceAttrSet(ds, "kernel_release"))
	}
	checks = append(checks, resource.TestCheckNoResourceAttr(res, "accelerator"), resource.TestCheckNoResourceAttr(res, "kernel_release"))
	checks = append(checks, resource.TestCheckResourceAttr("data.hypeman_instances.all", "instances.#", "1"))
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		Steps: []resource.TestStep{{
			Config: config,
			Check:  resource.ComposeAggregateTestCheckFunc(checks...),
		}},
	})
}

// wrapped matches text that Terraform may have wrapped across lines.
func wrapped(text string) *regexp.Regexp {
	words := strings.Fields(regexp.QuoteMeta(text))
	return regexp.MustCompile(`(?s)` + strings.Join(words, `\s+`))
}
