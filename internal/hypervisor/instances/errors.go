package instances

import (
	"errors"
	"fmt"
)

// Sentinel errors; callers decide with errors.Is.
var (
	// ErrNotFound: no instance with that id or name on the host.
	ErrNotFound = errors.New("instance not found")
	// ErrNameTaken: another instance on the host has the name.
	ErrNameTaken = errors.New("instance name already in use")
	// ErrNameBeingCreated: a create still running in another operation holds the name; it is
	// an ErrNameTaken too.
	ErrNameBeingCreated = fmt.Errorf("%w by a create in progress", ErrNameTaken)
	// ErrInvalidState: the instance's current state does not allow the operation.
	ErrInvalidState = errors.New("invalid state for this operation")
	// ErrInvalidConfig: a requested value is not allowed.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrProgramExited: the guest's program ended (or its guest powered off) right after it
	// started, so the boot did not leave the instance Running.
	ErrProgramExited = errors.New("the program exited right after it started")
)

// FieldError is one bad input value: which field, which value, and what is allowed.
type FieldError struct {
	Field   string
	Value   string
	Allowed string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q is not allowed: %s", e.Field, e.Value, e.Allowed)
}

func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// configError is an ErrInvalidConfig that reads as its message alone.
type configError string

func (e configError) Error() string { return string(e) }

func (e configError) Unwrap() error { return ErrInvalidConfig }

// exitError is an ErrProgramExited that reads as its message alone.
type exitError string

func (e exitError) Error() string { return string(e) }

func (e exitError) Unwrap() error { return ErrProgramExited }
