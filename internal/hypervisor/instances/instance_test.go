package instances

import (
	"errors"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

func TestSpecRulesNameTheFieldAndWhatIsAllowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"memory above the maximum", CheckSize("memory", 2*units.TiB), `memory "2TiB" is not allowed: from 128MiB to 1TiB, in whole MiB`},
		{"hotplug above the maximum", CheckSize("hotplug_memory", 2*units.TiB), `hotplug_memory "2TiB" is not allowed: 0 or a multiple of 128MiB up to 1TiB`},
		{"overlay above the maximum", CheckSize("overlay_size", MaxOverlay+units.MiB), `is not allowed: from 64MiB to 16TiB`},
		{"no vcpus", CheckVCPUs(0), `vcpus "0" is not allowed: a whole number from 1 to 128`},
		{"empty entrypoint", ValidateEntrypoint([]string{}), `entrypoint "[]" is not allowed: a list whose first item is the program to run`},
		{"entrypoint naming no program", ValidateEntrypoint([]string{"", "x"}), `entrypoint[0] "" is not allowed: the program to run`},
		{"NUL in an argument", ValidateArg("cmd[2]", "a\x00"), `cmd[2] "a\x00" is not allowed: any text without NUL bytes`},
		{"NUL in an env value", ValidateEnvValue("TOKEN", "se\x00cret"), `env[TOKEN] "(value)" is not allowed`},
		{"an id that is no ULID", ValidateID("web"), `id "web" is not allowed: a ULID`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, ErrInvalidConfig) || !strings.Contains(tc.err.Error(), tc.want) {
				t.Errorf("error %v, want ErrInvalidConfig saying %q", tc.err, tc.want)
			}
		})
	}
	for name, err := range map[string]error{
		"largest sizes":       errors.Join(CheckSize("memory", MaxMemory), CheckSize("hotplug_memory", MaxMemory), CheckSize("overlay_size", MaxOverlay)),
		"image's entrypoint":  ValidateEntrypoint(nil),
		"an empty argument":   ValidateEntrypoint([]string{"/bin/echo", ""}),
		"an id":               ValidateID("01JD8X4ZQ6T7N5B2V3C9M0K1HA"),
		"the most vcpus":      CheckVCPUs(MaxVCPUs),
		"text in an argument": ValidateArg("entrypoint[0]", "$(rm -rf /) \n 'x'"),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
