package network

import (
	"errors"
	"fmt"
)

// Sentinel errors; callers decide with errors.Is.
var (
	// ErrInvalidConfig: a host network setting is not allowed (see SettingError).
	ErrInvalidConfig = errors.New("invalid host network setting")
	// ErrNotPermitted: the commands run on the host lack CAP_NET_ADMIN.
	ErrNotPermitted = errors.New("not permitted to manage the host network")
	// ErrForwardingOff: NAT to the uplink is wanted but the host does not forward IPv4.
	ErrForwardingOff = errors.New("IPv4 forwarding is off on the host")
	// ErrSubnetOverlap: the subnet overlaps a route the host already has.
	ErrSubnetOverlap = errors.New("the subnet overlaps a route of the host")
	// ErrMissingTool: a command the host network needs is not installed on the host.
	ErrMissingTool = errors.New("a network tool is missing on the host")
	// ErrInvalidAddress: a requested IP or MAC address cannot be given to an instance.
	ErrInvalidAddress = errors.New("address not allowed")
	// ErrAddressInUse: a requested IP or MAC address belongs to another instance.
	ErrAddressInUse = errors.New("address already in use")
	// ErrSubnetFull: every address of the subnet is leased.
	ErrSubnetFull = errors.New("no free address left in the subnet")
)

// SettingError is one bad host network setting: which, its value, and what is allowed.
type SettingError struct {
	Setting string
	Value   string
	Allowed string
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("network %s %q is not allowed: %s", e.Setting, e.Value, e.Allowed)
}

func (e *SettingError) Unwrap() error { return ErrInvalidConfig }
