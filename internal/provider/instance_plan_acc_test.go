package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// sizes are the three sizes of an instance, in one spelling.
type sizes struct{ memory, overlay, hotplug string }

var (
	sizesInMiB   = sizes{"256MiB", "256MiB", "0"}
	sizesRespelt = sizes{"0.25GiB", "268435456", "0B"} // the same bytes
)

// planConfig is the provider and one counter instance with the given state, image and sizes.
func (e *accEnv) planConfig(state, image string, s sizes) string {
	entrypoint, _ := json.Marshal(counterProgram)
	return e.providerBlock() + fmt.Sprintf(`
resource "hypeman_instance" "plan" {
  name           = "acc-plan"
  image          = %q
  memory         = %q
  overlay_size   = %q
  hotplug_memory = %q
  entrypoint     = %s
  env            = { GREETING = "one" }
  state          = %q
}
`, image, s.memory, s.overlay, s.hotplug, entrypoint, state)
}

// emptyPlan is a plan-only step that wants no change at all.
func emptyPlan(config string) resource.TestStep {
	return resource.TestStep{Config: config, PlanOnly: true}
}

// captured records the instance's id, pid and console from the state.
func (v *vm) captured(t *testing.T) resource.TestCheckFunc {
	return v.check(t, func(*testing.T) error { return nil })
}

// samePID checks that the VMM that ran before the step still does: nothing restarted it.
func (v *vm) samePID(t *testing.T) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		before := v.pid
		if err := v.capture(s); err != nil {
			return err
		}
		if v.pid != before {
			return fmt.Errorf("the VMM is pid %d, it was %d: the instance restarted", v.pid, before)
		}
		if n := startedMarkers(console(t, v.console)[v.offset:]); n != 0 {
			return fmt.Errorf("the program started %d times again", n)
		}
		return nil
	}
}

// After every apply, in every state, and with every size spelled anew, the plan is empty; a new
// spelling of the image (another transport, a digest) is changed in place, without a restart.
func TestAccPlanStaysEmptyInEveryState(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.plan"
	v := &vm{env: env, addr: addr}
	digest := testutil.Push(t, env.image, testutil.BusyboxImage(t)) // the image newAccEnv pushed, again
	layout := filepath.Join(t.TempDir(), "layout")
	testutil.WriteOCILayout(t, layout, testutil.BusyboxImage(t), "")
	byDigest := strings.TrimSuffix(env.image, ":latest") + "@" + digest

	var steps []resource.TestStep
	for i, state := range []string{"Running", "Paused", "Standby", "Stopped", "Running"} {
		step := v.stepTo(t, env.planConfig(state, env.image, sizesInMiB), state, v.captured(t))
		if i == 0 {
			step = v.created(step)
		}
		steps = append(steps, step, emptyPlan(env.planConfig(state, env.image, sizesInMiB)), emptyPlan(env.planConfig(state, env.image, sizesRespelt)))
	}
	for _, image := range []string{"oci:" + layout, byDigest} {
		steps = append(steps, v.stepTo(t, env.planConfig("Running", image, sizesInMiB), "Running",
			resource.TestCheckResourceAttr(addr, "image", image),
			resource.TestCheckResourceAttr(addr, "image_digest", digest),
			v.samePID(t)),
			emptyPlan(env.planConfig("Running", image, sizesRespelt)))
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             v.destroyed(t),
		Steps:                    steps,
	})
}

// terraform destroy (and apply -destroy) plans the configuration before it destroys: a new
// program for an instance in Standby, which apply refuses, must not stop it.
func TestAccDestroyIsNotBlockedByAProgramChangeInStandby(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.gone"
	v := &vm{env: env, addr: addr}
	edited := env.instanceConfig("gone", "acc-gone", "Standby", "two")
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             v.destroyed(t),
		Steps: []resource.TestStep{
			v.created(v.stepTo(t, env.instanceConfig("gone", "acc-gone", "Running", "one"), "Running", v.counting(t))),
			v.stepTo(t, env.instanceConfig("gone", "acc-gone", "Standby", "one"), "Standby", v.inStandby(t)),
			// The plan shows the change and warns; apply refuses it and keeps the snapshot.
			{Config: edited, PlanOnly: true, ExpectNonEmptyPlan: true},
			{Config: edited, ExpectError: wrapped("is in Standby; changing its program needs a restart, which would discard the snapshot")},
			{
				RefreshState: true, ExpectNonEmptyPlan: true,
				Check: resource.ComposeTestCheckFunc(resource.TestCheckResourceAttr(addr, "state", "Standby"),
					resource.TestCheckResourceAttr(addr, "env.GREETING", "one"), v.inStandby(t)),
			},
			{
				Config: edited, Destroy: true,
				Check: func(*terraform.State) error { return v.destroyed(t)(nil) },
			},
		},
	})
}

// A name another instance holds on the host, and an image path that does not exist, fail the plan
// of a create.
func TestAccTakenNameAndMissingImagePathFailAtPlan(t *testing.T) {
	env := newAccEnv(t)
	m, err := instances.New(instances.Options{DataDir: env.dataDir, Drivers: builtin.Drivers(), DefaultHypervisor: "qemu"})
	if err != nil {
		t.Fatal(err)
	}
	holder, err := m.Create(context.Background(), instances.Spec{
		Name: "acc-taken", Image: env.image, VCPUs: 1, Memory: instances.MinMemory, OverlaySize: instances.MinOverlay,
	}, instances.Stopped)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Delete(context.Background(), holder.ID) })
	missing := filepath.Join(t.TempDir(), "no-such-layout")
	config := func(name, image string) string {
		return env.providerBlock() + fmt.Sprintf(`
resource "hypeman_instance" "new" {
  name  = %q
  image = %q
}
`, name, image)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		Steps: []resource.TestStep{
			{Config: config("acc-taken", env.image), PlanOnly: true, ExpectError: wrapped(fmt.Sprintf(
				`name "acc-taken" is taken by instance %s, on this host (data_dir %s)`, holder.ID, env.dataDir))},
			{Config: config("acc-taken", env.image), PlanOnly: true, ExpectError: wrapped("terraform import hypeman_instance.<label> acc-taken")},
			{Config: config("acc-free", "oci:"+missing), PlanOnly: true, ExpectError: wrapped(missing + " does not exist")},
			{
				Config: config("acc-free", env.image), PlanOnly: true, ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("hypeman_instance.new", plancheck.ResourceActionCreate),
				}},
			},
		},
	})
}

// resizeConfig is the provider and one counter instance with the given sizes.
func (e *accEnv) resizeConfig(memory, maxMemory, overlay string, vcpus int) string {
	entrypoint, _ := json.Marshal(counterProgram)
	return e.providerBlock() + fmt.Sprintf(`
resource "hypeman_instance" "plan" {
  name         = "acc-resize"
  image        = %q
  vcpus        = %d
  max_vcpus    = 3
  memory       = %q
  max_memory   = %q
  overlay_size = %q
  entrypoint   = %s
  env          = { GREETING = "one" }
}
`, e.image, vcpus, memory, maxMemory, overlay, entrypoint)
}

// Sizes change in place: memory within max_memory and more vcpus within max_vcpus live (the same
// VMM), a larger overlay by a restart in place (the same id); a smaller overlay fails the plan, and
// after each apply the plan is empty.
func TestAccSizesChangeInPlace(t *testing.T) {
	env := newAccEnv(t)
	const addr = "hypeman_instance.plan"
	v := &vm{env: env, addr: addr}
	var firstID string
	sameID := resource.TestCheckResourceAttrWith(addr, "id", func(id string) error {
		if id != firstID {
			return fmt.Errorf("the instance is %s, it was %s: it was replaced", id, firstID)
		}
		return nil
	})
	update := resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)}}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		Steps: []resource.TestStep{
			{
				Config: env.resizeConfig("256MiB", "768MiB", "256MiB", 1),
				Check: resource.ComposeTestCheckFunc(v.counting(t), v.mark(t),
					func(s *terraform.State) (err error) { firstID, err = stateAttr(s, addr, "id"); return err }),
			},
			{
				Config:           env.resizeConfig("512MiB", "768MiB", "256MiB", 1),
				ConfigPlanChecks: update,
				Check:            resource.ComposeTestCheckFunc(sameID, v.samePID(t), resource.TestCheckResourceAttr(addr, "memory", "512MiB")),
			},
			emptyPlan(env.resizeConfig("512MiB", "768MiB", "256MiB", 1)),
			{
				Config:           env.resizeConfig("512MiB", "768MiB", "256MiB", 2),
				ConfigPlanChecks: update,
				Check:            resource.ComposeTestCheckFunc(sameID, v.samePID(t), resource.TestCheckResourceAttr(addr, "vcpus", "2")),
			},
			emptyPlan(env.resizeConfig("512MiB", "768MiB", "256MiB", 2)),
			{
				Config:           env.resizeConfig("512MiB", "768MiB", "512MiB", 3),
				ConfigPlanChecks: update,
				Check: resource.ComposeTestCheckFunc(sameID, resource.TestCheckResourceAttr(addr, "vcpus", "3"),
					resource.TestCheckResourceAttr(addr, "overlay_size", "512MiB"), resource.TestCheckResourceAttr(addr, "state", "Running")),
			},
			emptyPlan(env.resizeConfig("512MiB", "768MiB", "512MiB", 3)),
			{
				Config:      env.resizeConfig("512MiB", "768MiB", "256MiB", 3),
				PlanOnly:    true,
				ExpectError: wrapped(`overlay_size "256MiB" is not allowed: at least 512MiB, the instance's overlay: an overlay grows in place but never shrinks`),
			},
		},
	})
}
