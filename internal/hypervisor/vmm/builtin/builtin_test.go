package builtin

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// What the manager relies on of every built-in driver, without starting a VMM.
func TestEveryDriverNamesItselfAndItsFiles(t *testing.T) {
	var names, files, programs []string
	for _, d := range Drivers() {
		t.Run(d.Name(), func(t *testing.T) {
			if d.Name() == "" || slices.Contains(names, d.Name()) {
				t.Errorf("name %q is empty or taken by another driver", d.Name())
			}
			for _, f := range []string{d.SocketName(), d.LogName()} {
				if f == "" || strings.Contains(f, "/") || slices.Contains(files, f) {
					t.Errorf("file %q is not a plain file name of its own", f)
				}
				files = append(files, f)
			}
			// The manager tells a VMM process by its program (orphans.go), so no two drivers share one.
			if p := path.Base(d.Program()); d.Program() == "" || slices.Contains(programs, p) {
				t.Errorf("program %q is empty or another driver's", d.Program())
			}
			programs = append(programs, path.Base(d.Program()))
			cfg := vmm.Config{Dir: "/var/lib/hypeman/guests/01J"}
			if got := vmm.SocketPath(d, cfg); got != cfg.Dir+"/"+d.SocketName() {
				t.Errorf("socket path %q is not in the instance directory", got)
			}
		})
		names = append(names, d.Name())
	}
	if !slices.Equal(Names(), names) {
		t.Errorf("Names() = %v, want %v", Names(), names)
	}
}
