package instances

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// resizeScript keeps a file on the overlay across boots (KEPT<…> once it finds one) and prints,
// every 0.3 s, a counter, the guest's MemTotal, its online CPUs and the size of its root (the
// overlay's filesystem) in KiB.
const resizeScript = `if [ -f /root/kept ]; then echo "KEPT<$(cat /root/kept)>"; else echo "written $$" > /root/kept; sync; fi
i=0; while :; do
  echo "count $i"; i=$((i+1))
  echo "memtotal $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
  echo "cpus $(grep -c ^processor /proc/cpuinfo)"
  echo "rootkb $(df -k / | tail -n1 | tr -s ' ' | cut -d' ' -f2)"
  sleep 0.3
done`

var (
	cpusRE   = regexp.MustCompile(`(?m)^cpus (\d+)\r?$`)
	rootKBRE = regexp.MustCompile(`(?m)^rootkb (\d+)\r?$`)
)

// waitLine waits for a line of re after offset whose number satisfies ok, and returns it.
func (env *testEnv) waitLine(t *testing.T, inst *Instance, re *regexp.Regexp, offset int, what string, ok func(int) bool) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := env.console(t, inst)
		for _, m := range re.FindAllSubmatch(c[min(offset, len(c)):], -1) {
			if n, _ := strconv.Atoi(string(m[1])); ok(n) {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s line as wanted:\n%s", what, c[min(offset, len(c)):])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (env *testEnv) resizeSpec(name string) Spec {
	spec := env.spec(name)
	spec.Entrypoint = []string{"/bin/sh", "-c", resizeScript}
	return spec
}

func TestMemoryChangesLiveWithinTheCeilingAndRestartsInPlaceBeyondIt(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.resizeSpec("live-memory")
	spec.Memory, spec.MaxMemory = 256*units.MiB, 768*units.MiB
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	env.waitMemTotal(t, inst, 0, func(kb int) bool { return kb <= 256*1024 })

	// Up, then down, live: the same VMM process, and the program counts on.
	for _, size := range []int64{768 * units.MiB, 512 * units.MiB} {
		offset := env.consoleLen(t, inst)
		before := env.waitCount(t, inst, 0, 0)
		spec.Memory = size
		got, err := env.m.Update(ctx, inst.ID, spec)
		if err != nil {
			t.Fatalf("Update to memory %s: %v", units.Format(size), err)
		}
		if got.ID != inst.ID || got.PID != inst.PID || got.State != Running || got.Memory != size {
			t.Fatalf("after a live resize to %s: id %s, pid %d (was %d), state %s, memory %d", units.Format(size), got.ID, got.PID, inst.PID, got.State, got.Memory)
		}
		// MemTotal is the plugged memory less what the kernel keeps; 100 MiB of slack.
		kb := env.waitMemTotal(t, inst, offset, func(kb int) bool { return kb <= int(size/units.KiB) && kb > int((size-128*units.MiB)/units.KiB) })
		t.Logf("memory %s: the guest's MemTotal is %d kB", units.Format(size), kb)
		env.waitCount(t, inst, before+3, offset)
		if c := string(env.console(t, inst)[offset:]); strings.Contains(c, "KEPT<") {
			t.Fatalf("a live resize restarted the program:\n%s", c)
		}
	}

	// Beyond the ceiling: a restart in place with the new one, the overlay's file kept.
	offset := env.consoleLen(t, inst)
	spec.Memory, spec.MaxMemory = 1*units.GiB, 1*units.GiB
	got, err := env.m.Update(ctx, inst.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != inst.ID || got.PID == inst.PID || got.State != Running || got.IPAddress != inst.IPAddress || got.MACAddress != inst.MACAddress {
		t.Fatalf("after a resize beyond the ceiling: id %s, pid %d (was %d), state %s, address %s %s (was %s %s)",
			got.ID, got.PID, inst.PID, got.State, got.IPAddress, got.MACAddress, inst.IPAddress, inst.MACAddress)
	}
	env.waitMemTotal(t, inst, offset, func(kb int) bool { return kb > 900*1024 })
	if c := string(env.console(t, inst)[offset:]); !strings.Contains(c, "KEPT<written ") {
		t.Fatalf("the overlay's file is gone after the restart in place:\n%s", c)
	}
	env.deleteAndCheckGone(t, inst)
}

func TestVCPUsAndOverlayChangeInPlaceAndTheOverlayNeverShrinks(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.resizeSpec("cpus-overlay")
	inst, err := env.m.Create(ctx, spec, Stopped)
	if err != nil {
		t.Fatal(err)
	}
	// Stopped: the overlay grows on the host at once.
	spec.OverlaySize = 512 * units.MiB
	if got, err := env.m.Update(ctx, inst.ID, spec); err != nil || got.OverlaySize != spec.OverlaySize || got.State != Stopped {
		t.Fatalf("Update of a stopped instance's overlay: %+v, %v", got, err)
	}
	if inst, err = env.m.SetState(ctx, inst.ID, Running); err != nil {
		t.Fatal(err)
	}
	env.waitLine(t, inst, rootKBRE, 0, "rootkb", func(kb int) bool { return kb > 400*1024 && kb <= 512*1024 })
	env.waitLine(t, inst, cpusRE, 0, "cpus", func(n int) bool { return n == 1 })

	// Running: more vCPUs and a larger overlay in one restart in place.
	offset := env.consoleLen(t, inst)
	spec.VCPUs, spec.OverlaySize = 2, 1*units.GiB
	got, err := env.m.Update(ctx, inst.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != inst.ID || got.State != Running || got.VCPUs != 2 || got.OverlaySize != spec.OverlaySize {
		t.Fatalf("after Update: %+v", got)
	}
	env.waitLine(t, inst, cpusRE, offset, "cpus", func(n int) bool { return n == 2 })
	env.waitLine(t, inst, rootKBRE, offset, "rootkb", func(kb int) bool { return kb > 900*1024 && kb <= 1024*1024 })
	if c := string(env.console(t, inst)[offset:]); !strings.Contains(c, "KEPT<written ") {
		t.Fatalf("the overlay's data is gone after it grew:\n%s", c)
	}

	// Fewer vCPUs again.
	offset = env.consoleLen(t, inst)
	spec.VCPUs = 1
	if _, err := env.m.Update(ctx, inst.ID, spec); err != nil {
		t.Fatal(err)
	}
	env.waitLine(t, inst, cpusRE, offset, "cpus", func(n int) bool { return n == 1 })

	// Smaller: refused, naming the attribute, and nothing changes.
	spec.OverlaySize = 512 * units.MiB
	_, err = env.m.Update(ctx, inst.ID, spec)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "overlay_size" || !strings.Contains(err.Error(), `overlay_size "512MiB" is not allowed: at least 1GiB`) {
		t.Fatalf("Update to a smaller overlay: %v; want a FieldError on overlay_size", err)
	}
	if got, err := env.m.Get(ctx, inst.ID); err != nil || got.OverlaySize != 1*units.GiB || got.State != Running {
		t.Fatalf("after a refused shrink: %+v, %v", got, err)
	}
	env.deleteAndCheckGone(t, inst)
}

func TestAStandbyInstanceTakesNewMemoryAtItsRestoreAndRefusesWhatNeedsARestart(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := testContext(t)
	spec := env.resizeSpec("standby-resize")
	spec.Memory, spec.MaxMemory = 256*units.MiB, 768*units.MiB
	inst, err := env.m.Create(ctx, spec, Running)
	if err != nil {
		t.Fatal(err)
	}
	before := env.waitCount(t, inst, 3, 0)
	if _, err := env.m.SetState(ctx, inst.ID, Standby); err != nil {
		t.Fatal(err)
	}
	spec.Memory = 640 * units.MiB
	if got, err := env.m.Update(ctx, inst.ID, spec); err != nil || got.State != Standby || got.Memory != spec.Memory {
		t.Fatalf("Update of a Standby instance's memory within its ceiling: %+v, %v", got, err)
	}
	vcpus := spec
	vcpus.VCPUs = 2
	if _, err := env.m.Update(ctx, inst.ID, vcpus); !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), `Set state = "Running" first`) {
		t.Fatalf("Update of a Standby instance's vcpus: %v; want ErrInvalidState saying what to do", err)
	}
	offset := env.consoleLen(t, inst)
	if _, err := env.m.SetState(ctx, inst.ID, Running); err != nil {
		t.Fatal(err)
	}
	env.waitMemTotal(t, inst, offset, func(kb int) bool { return kb > 512*1024 && kb <= 640*1024 })
	env.waitCount(t, inst, before+3, offset) // restored: the same program counts on
	if c := string(env.console(t, inst)[offset:]); strings.Contains(c, "KEPT<") || strings.Contains(c, "count 0\n") {
		t.Fatalf("the restore rebooted the guest:\n%s", c)
	}
	env.deleteAndCheckGone(t, inst)
}
