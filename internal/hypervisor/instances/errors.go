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
