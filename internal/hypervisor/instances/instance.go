package instances

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
)

// Instance is what the manager reports about one VM: its desired config and its observed state.
type Instance struct {
	ID   string
	Name string

	Image       string
	ImageDigest string
	VCPUs       int   // the vCPUs the guest has (with a live change unfinished: what it has now)
	MaxVCPUs    int   // the ceiling vcpus changes within live; 0 = vcpus (resize.go)
	Memory      int64 // bytes the guest has while running (with Hotplug set: the bytes it boots with)
	MaxMemory   int64 // the ceiling memory grows to live; 0 = memory (resize.go)
	Hotplug     int64 // deprecated: bytes added after boot on top of Memory, taken back before standby
	OverlaySize int64
	// Entrypoint and Cmd are nil when the image's own apply.
	Entrypoint []string
	Cmd        []string
	Env        map[string]string
	Workdir    string // "" = the image's

	Hypervisor        string
	HypervisorVersion string
	Accelerator       string
	KernelRelease     string

	State State
	// StateReason says why the state is Unknown, or, for a Stopped instance whose last boot ended
	// without being asked to, how it ended: "program exited with code 1 at …", "guest powered off
	// at …", or that the VMM process ended without the guest reporting an exit.
	StateReason string
	// ExitCode is the exit code of the program's last run when that is how the instance came to
	// be Stopped; nil while it runs, when it was stopped on request, or never reported one.
	ExitCode *int
	PID      int

	CreatedAt time.Time
	StartedAt time.Time // last boot or restore; zero when not running

	// The network interface: an address and MAC kept for the instance's life, and the TAP device
	// on the host while a VMM runs. All empty when the instance has no network.
	IPAddress  string
	MACAddress string
	TapDevice  string
	// PeerGroups are the groups of guests this one reaches on the bridge (NetworkSpec.PeerGroups).
	PeerGroups []string

	// Volumes are the volumes attached to the instance, as its spec asked for them.
	Volumes []VolumeMount
	// WaitFor is what its boots and restores to Running wait for (wait.go); nil for nothing.
	WaitFor *WaitSpec

	Dir        string
	ConsoleLog string
	// SnapshotBytes is the size of the snapshot on disk (Standby only).
	SnapshotBytes int64
}

// Spec is the part of an instance's configuration that a user sets.
type Spec struct {
	Name        string
	Image       string
	VCPUs       int
	MaxVCPUs    int   // the ceiling VCPUs changes within live; 0 = VCPUs
	Memory      int64 // what the guest has while running; with Hotplug set, what it boots with (resize.go)
	MaxMemory   int64 // the ceiling Memory changes within live; 0 = Memory
	Hotplug     int64 // deprecated: memory plugged after boot on top of Memory
	OverlaySize int64
	Entrypoint  []string // nil: the image's
	Cmd         []string // nil: the image's (cleared when Entrypoint is set, as in Docker)
	Env         map[string]string
	Workdir     string
	// Hypervisor is the name of a built-in VMM (vmm/builtin); "" picks the manager's default.
	Hypervisor string
	// Network nil: an interface with the next free address when the manager has a host network.
	Network *NetworkSpec
	// Volumes are attached in this order (volume.go).
	Volumes []VolumeMount
	// WaitFor is what every boot and restore to Running waits for (wait.go); nil for nothing.
	WaitFor *WaitSpec
}

// Limits on what a Spec may ask for.
const (
	MinMemory = 128 * units.MiB
	// MaxMemory bounds memory and hotplug_memory each: QEMU under TCG gives guests 40 physical
	// address bits (1 TiB), and a plan also checks both together against the host's memory.
	MaxMemory  = 1 * units.TiB
	MaxVCPUs   = 128
	MinOverlay = 64 * units.MiB
	// MaxOverlay is the largest file ext4 holds with 4 KiB blocks; the overlay is sparse, so only
	// what the guest writes takes space.
	MaxOverlay     = 16 * units.TiB
	HotplugStep    = 128 * units.MiB // Cloud Hypervisor hot-adds memory in 128 MiB steps
	DefaultOverlay = 10 * units.GiB
	DefaultMemory  = 512 * units.MiB
	maxNameLength  = 63
)

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
)

// NameRule describes valid names, for error messages and documentation.
const NameRule = "1 to 63 characters: lower-case letters, digits and '-', starting and ending with a letter or digit"

// SizeRule is what one size field accepts.
type SizeRule struct {
	Min, Max, Multiple int64
	Allowed            string // in words, for messages and documentation
}

// SizeRules are the manager's rules for the size fields of a Spec, by field name.
var SizeRules = map[string]SizeRule{
	"memory": {MinMemory, MaxMemory, units.MiB, "from " + units.Format(MinMemory) + " to " + units.Format(MaxMemory) + ", in whole MiB"},
	"max_memory": {0, MaxMemory, HotplugStep, "0 (the same as memory) or a multiple of " + units.Format(HotplugStep) + " up to " +
		units.Format(MaxMemory) + ", at least memory"},
	"hotplug_memory": {0, MaxMemory, HotplugStep, "0 or a multiple of " + units.Format(HotplugStep) + " up to " +
		units.Format(MaxMemory)},
	"overlay_size": {MinOverlay, MaxOverlay, units.MiB, "from " + units.Format(MinOverlay) + " to " + units.Format(MaxOverlay) + ", in whole MiB"},
}

// CheckSize checks n against the rule of a size field ("memory", "hotplug_memory", "overlay_size").
func CheckSize(field string, n int64) error {
	r := SizeRules[field]
	if n < r.Min || n > r.Max || n%r.Multiple != 0 {
		return &FieldError{Field: field, Value: units.Format(n), Allowed: r.Allowed}
	}
	return nil
}

// VCPUsRule describes valid vcpus, for error messages and documentation.
var VCPUsRule = fmt.Sprintf("a whole number from 1 to %d", MaxVCPUs)

// CheckVCPUs checks a number of virtual CPUs.
func CheckVCPUs(n int64) error {
	if n < 1 || n > MaxVCPUs {
		return &FieldError{Field: "vcpus", Value: fmt.Sprint(n), Allowed: VCPUsRule}
	}
	return nil
}

// MaxVCPUsRule describes valid max_vcpus, for error messages and documentation.
var MaxVCPUsRule = fmt.Sprintf("0 (the same as vcpus) or a whole number from vcpus to %d", MaxVCPUs)

// CheckMaxVCPUs checks the ceiling that vcpus changes within live (resize.go); vcpus has been
// checked alone (CheckVCPUs), and a vcpus of 0 is not known yet.
func CheckMaxVCPUs(n, vcpus int64) error {
	switch {
	case n == 0:
		return nil
	case n < 0 || n > MaxVCPUs:
		return &FieldError{Field: "max_vcpus", Value: fmt.Sprint(n), Allowed: MaxVCPUsRule}
	case vcpus > 0 && n < vcpus:
		return &FieldError{Field: "max_vcpus", Value: fmt.Sprint(n), Allowed: fmt.Sprintf("0 (the same as vcpus) or at least vcpus (%d), up to %d", vcpus, MaxVCPUs)}
	}
	return nil
}

// IDRule describes instance ids, for error messages and documentation.
const IDRule = "a ULID: 26 characters of Crockford base32 (digits and upper-case letters but I, L, O and U), as in an instance's id attribute"

// ValidateID checks that id can be an instance id.
func ValidateID(id string) error {
	if !ulidRE.MatchString(id) {
		return &FieldError{Field: "id", Value: id, Allowed: IDRule}
	}
	return nil
}

// ValidateName checks an instance name.
func ValidateName(name string) error {
	if len(name) > maxNameLength || !nameRE.MatchString(name) {
		return &FieldError{Field: "name", Value: name, Allowed: NameRule}
	}
	return nil
}

// ValidateEnvKey checks an environment variable name.
func ValidateEnvKey(key string) error {
	if !envKeyRE.MatchString(key) {
		return &FieldError{Field: "env key", Value: key, Allowed: "a letter or '_' followed by letters, digits, '_', '.' or '-'"}
	}
	return nil
}

// ValidateWorkdir checks a working directory set for the program (unset is the image's own).
func ValidateWorkdir(dir string) error {
	if !strings.HasPrefix(dir, "/") || strings.ContainsRune(dir, 0) {
		return &FieldError{Field: "workdir", Value: dir, Allowed: "an absolute path inside the image; leave workdir out for the image's own"}
	}
	return nil
}

// noNUL refuses a NUL byte in an argument or env value: the guest passes them on as C strings.
// shown is how the value appears in the error.
func noNUL(field, value, shown string) error {
	if strings.ContainsRune(value, 0) {
		return &FieldError{Field: field, Value: shown, Allowed: "any text without NUL bytes"}
	}
	return nil
}

// ValidateArg checks one item of entrypoint or cmd; field names it ("cmd[2]").
func ValidateArg(field, arg string) error { return noNUL(field, arg, arg) }

// ValidateEnvValue checks the value of env[key]; the error does not show it, as it may be a secret.
func ValidateEnvValue(key, value string) error { return noNUL("env["+key+"]", value, "(value)") }

// ValidateEntrypoint checks an entrypoint as a whole: nil is the image's own, anything else must
// name a program in its first item.
func ValidateEntrypoint(ep []string) error {
	const own = "; leave entrypoint out for the image's own"
	switch {
	case ep == nil:
		return nil
	case len(ep) == 0:
		return &FieldError{Field: "entrypoint", Value: "[]", Allowed: `a list whose first item is the program to run, such as ["/bin/sh", "-c", "echo hi"]` + own}
	case ep[0] == "":
		return &FieldError{Field: "entrypoint[0]", Value: "", Allowed: "the program to run: an absolute path in the image or a name found on its PATH" + own}
	}
	return nil
}

// validHypervisor checks a Spec's hypervisor against the built-in VMMs; "" is the manager's default.
func validHypervisor(name string) error {
	names := builtin.Names()
	if name == "" || slices.Contains(names, name) {
		return nil
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	allowed := quoted[len(quoted)-1]
	if len(quoted) > 1 {
		allowed = strings.Join(quoted[:len(quoted)-1], ", ") + " or " + allowed
	}
	return &FieldError{Field: "hypervisor", Value: name, Allowed: allowed}
}

// Validate checks every field and reports all that are wrong at once.
func (s *Spec) Validate() error {
	var errs []error
	if err := ValidateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if err := images.ValidateRef(s.Image); err != nil {
		errs = append(errs, &FieldError{Field: "image", Value: s.Image, Allowed: err.Error()})
	}
	if err := CheckVCPUs(int64(s.VCPUs)); err != nil {
		errs = append(errs, err)
	}
	if err := CheckMaxVCPUs(int64(s.MaxVCPUs), int64(s.VCPUs)); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []struct {
		field string
		n     int64
	}{{"memory", s.Memory}, {"max_memory", s.MaxMemory}, {"hotplug_memory", s.Hotplug}, {"overlay_size", s.OverlaySize}} {
		if err := CheckSize(f.field, f.n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := CheckMemoryRange(s.Memory, s.MaxMemory, s.Hotplug); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateEntrypoint(s.Entrypoint); err != nil {
		errs = append(errs, err)
	}
	for i, a := range s.Entrypoint {
		if err := ValidateArg(fmt.Sprintf("entrypoint[%d]", i), a); err != nil {
			errs = append(errs, err)
		}
	}
	for i, a := range s.Cmd {
		if err := ValidateArg(fmt.Sprintf("cmd[%d]", i), a); err != nil {
			errs = append(errs, err)
		}
	}
	for k, v := range s.Env {
		if err := ValidateEnvKey(k); err != nil {
			errs = append(errs, err)
		}
		if err := ValidateEnvValue(k, v); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Workdir != "" {
		if err := ValidateWorkdir(s.Workdir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := validHypervisor(s.Hypervisor); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, s.Network.validate()...)
	errs = append(errs, ValidateMounts("volume", s.Volumes)...)
	return errors.Join(errs...)
}
