package provider

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// planCostSizes are the numbers of resources each plan of BenchmarkPlanCostPerResource refreshes.
var planCostSizes = []int{1, 10, 30, 100}

// planCostReps is how many plans each point takes; the point is their median.
const planCostReps = 3

// BenchmarkPlanCostPerResource isolates what hypeman_instance costs a plan per refreshed resource:
// `terraform plan` of N Standby instances and of N noop_id resources (internal/tools/noopprovider:
// random_id's 8 attributes and nothing else), for N in planCostSizes, both providers served the
// same way (dev_overrides, a binary of their own). Measured: the CPU time of the provider process
// alone (its rusage, see pluginCPU), whose slope over N is the cost per resource. Reported: both
// slopes and their ratio (goal ≤ 1.5), the ratio at N = 1 (goal ≤ 1.05), and Terraform's own
// CPU (terraform and providers) per resource, for both.
//
// Then one instance's VMM is made to hang (SIGSTOP, every thread stopped), and a plan of all the
// instances is timed against the same plan with that VMM answering (goal: the stall ≤ 2 s).
//
// HYPEMAN_BENCH_CPUPROFILE=<dir> builds the provider with -tags cpuprofile and writes a CPU
// profile of each of its processes into <dir>/N=<n>.
func BenchmarkPlanCostPerResource(b *testing.B) {
	largest := planCostSizes[len(planCostSizes)-1]
	profileDir := os.Getenv("HYPEMAN_BENCH_CPUPROFILE")
	var tags []string
	if profileDir != "" {
		tags = []string{"-tags", "cpuprofile"}
	}
	s := newStandbyBench(b, largest, true, tags...)
	s.installPlugin(filepath.Join(s.work, "overrides"), "noop", []string{"build", "../tools/noopprovider"})

	hypemanDirs, noopDirs := map[int]string{}, map[int]string{}
	for _, n := range planCostSizes {
		hypemanDirs[n] = s.subset(fmt.Sprintf("hypeman-%d", n), n, "")
		noopDirs[n] = filepath.Join(s.work, fmt.Sprintf("noop-%d", n))
		writeFile(b, filepath.Join(noopDirs[n], "main.tf"), fmt.Sprintf(`
terraform {
  required_providers {
    noop = { source = "hypeman/noop" }
  }
}
resource "noop_id" "x" {
  count       = %d
  byte_length = 8
}
`, n))
		s.run(noopDirs[n], "apply", "-auto-approve", "-input=false")
		s.planCost(hypemanDirs[n]) // warm, and no changes
	}

	hypeman, noop := map[int][]cost{}, map[int][]cost{}
	for b.Loop() {
		for range planCostReps {
			for _, n := range planCostSizes {
				var env []string
				if profileDir != "" {
					dir := filepath.Join(profileDir, fmt.Sprintf("N=%d", n))
					if err := os.MkdirAll(dir, 0o755); err != nil {
						b.Fatal(err)
					}
					env = []string{"HYPEMAN_CPUPROFILE_DIR=" + dir}
				}
				hypeman[n] = append(hypeman[n], s.planCost(hypemanDirs[n], env...))
				noop[n] = append(noop[n], s.runEnv(noopDirs[n], nil, "plan", "-input=false", "-detailed-exitcode"))
			}
		}
	}

	hypemanPlugin, noopPlugin := median(hypeman, pluginOf), median(noop, pluginOf)
	hypemanTotal, noopTotal := median(hypeman, totalOf), median(noop, totalOf)
	for _, n := range planCostSizes {
		b.Logf("N=%3d  plugin CPU: hypeman %7.1f ms, noop %7.1f ms  |  terraform+plugin CPU: hypeman %7.1f ms, noop %7.1f ms  |  wall: hypeman %6.0f ms, noop %6.0f ms",
			n, ms(hypemanPlugin[n]), ms(noopPlugin[n]), ms(hypemanTotal[n]), ms(noopTotal[n]),
			ms(median(hypeman, wallOf)[n]), ms(median(noop, wallOf)[n]))
	}
	hs, ns := slope(hypemanPlugin), slope(noopPlugin)
	ht, nt := slope(hypemanTotal), slope(noopTotal)
	b.Logf("plugin CPU per resource: hypeman %.2f ms, noop %.2f ms, ratio %.2f (goal <= 1.5)", hs, ns, hs/ns)
	b.Logf("plugin CPU at N=1: hypeman %.1f ms, noop %.1f ms, ratio %.2f (goal <= 1.05)",
		ms(hypemanPlugin[1]), ms(noopPlugin[1]), ms(hypemanPlugin[1])/ms(noopPlugin[1]))
	b.Logf("terraform+plugin CPU per resource: hypeman %.2f ms, noop %.2f ms, ratio %.2f", ht, nt, ht/nt)
	b.ReportMetric(hs, "hypeman-plugin-ms/resource")
	b.ReportMetric(ns, "noop-plugin-ms/resource")
	b.ReportMetric(hs/ns, "hypeman/noop-per-resource")
	b.ReportMetric(ms(hypemanPlugin[1])/ms(noopPlugin[1]), "hypeman/noop-at-N=1")
	b.ReportMetric(ht/nt, "hypeman/noop-terraform+plugin-per-resource")
	if profileDir != "" {
		b.Logf("CPU profiles of the provider: %s/N=<n>", profileDir)
	}

	answering, hung := s.planWithHungVMM()
	b.Logf("plan of %d instances: %.2f s with every VMM answering, %.2f s with one VMM hung: stall %.2f s (goal <= 2 s)",
		largest, answering.Seconds(), hung.Seconds(), (hung - answering).Seconds())
	b.ReportMetric((hung - answering).Seconds(), "hung-VMM-stall-s")
	s.destroy()
}

// planWithHungVMM starts the first instance, times a plan (no changes), stops its VMM as a hung
// one is (SIGSTOP, and every thread stopped), and times the same plan again; then lets it go.
func (s *standbyBench) planWithHungVMM() (answering, hung time.Duration) {
	s.b.Helper()
	vars := []string{"-var", "first=Running", "-var", "others=Standby"}
	s.run(s.vms, append([]string{"apply", "-auto-approve", "-input=false"}, vars...)...)
	pid := s.firstPID()
	answering = s.run(s.vms, append([]string{"plan", "-input=false", "-detailed-exitcode"}, vars...)...)
	testutil.Hang(s.b, pid)
	defer func() { _ = syscall.Kill(pid, syscall.SIGCONT) }()
	// The refresh finds the VMM silent and the instance Unknown: the plan has a change.
	hung = s.run(s.vms, append([]string{"plan", "-input=false"}, vars...)...)
	return answering, hung
}

// firstPID is the VMM process id of instance 0 in the state of vms.
func (s *standbyBench) firstPID() int {
	s.b.Helper()
	raw, err := os.ReadFile(filepath.Join(s.vms, "terraform.tfstate"))
	if err != nil {
		s.b.Fatal(err)
	}
	var state struct {
		Resources []struct {
			Instances []struct {
				IndexKey   int `json:"index_key"`
				Attributes struct {
					PID int `json:"pid"`
				} `json:"attributes"`
			} `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		s.b.Fatal(err)
	}
	for _, r := range state.Resources {
		for _, inst := range r.Instances {
			if inst.IndexKey == 0 && inst.Attributes.PID > 0 {
				return inst.Attributes.PID
			}
		}
	}
	s.b.Fatal("instance 0 has no VMM pid in the state")
	return 0
}

func pluginOf(c cost) time.Duration { return c.plugin }
func totalOf(c cost) time.Duration  { return c.total }
func wallOf(c cost) time.Duration   { return c.wall }

// median is, for each N, the median of what of picks from its samples.
func median(samples map[int][]cost, of func(cost) time.Duration) map[int]time.Duration {
	out := map[int]time.Duration{}
	for n, cs := range samples {
		v := make([]time.Duration, len(cs))
		for i, c := range cs {
			v[i] = of(c)
		}
		slices.Sort(v)
		out[n] = v[len(v)/2]
	}
	return out
}

// slope is the least-squares slope of the points (N, milliseconds), in milliseconds per resource.
func slope(points map[int]time.Duration) float64 {
	var sx, sy, sxx, sxy float64
	for n, d := range points {
		x, y := float64(n), ms(d)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	k := float64(len(points))
	return (k*sxy - sx*sy) / (k*sxx - sx*sx)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
