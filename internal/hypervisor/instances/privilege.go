package instances

import (
	"fmt"
	"regexp"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// DefaultVMMUser is the unprivileged host user VMMs run as unless told otherwise; the install
// script creates it (docs/adr/0010-vmm-least-privilege.md).
const DefaultVMMUser = "hypeman-vmm"

// RootVMMUser opts out: VMMs run as the user the host runs commands as.
const RootVMMUser = "root"

// vmmUserRE is what useradd takes for a user name (Debian's default NAME_REGEX, without the
// trailing $ of machine accounts).
var vmmUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ValidateVMMUser checks a vmm_user value.
func ValidateVMMUser(user string) error {
	if !vmmUserRE.MatchString(user) {
		return &FieldError{Field: "vmm_user", Value: user, Allowed: "a user name of the host (lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32), or \"root\" to run the VMM as root"}
	}
	return nil
}

// runAs gives every driver that can run its VMM as another user the configured one.
func runAs(drivers []vmm.Driver, user string) error {
	if user == "" {
		return nil
	}
	if err := ValidateVMMUser(user); err != nil {
		return fmt.Errorf("instance manager: %w", err)
	}
	if user == RootVMMUser {
		user = ""
	}
	for _, d := range drivers {
		if r, ok := d.(vmm.UserRunner); ok {
			r.RunAs(user)
		}
	}
	return nil
}

// vmmUser is the host user the VMM of hypervisor runs as, "" when it runs as the host's own: the
// owner of its TAP device.
func (m *Manager) vmmUser(hypervisor string) string {
	d := driverNamed(m.opts.Drivers, hypervisor)
	if _, ok := d.(vmm.UserRunner); !ok || m.opts.VMMUser == RootVMMUser {
		return ""
	}
	return m.opts.VMMUser
}
