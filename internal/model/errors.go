package model

import (
	"errors"
	"fmt"
)

// Error kinds. Services wrap these with %w so the daemon can map any error to
// one JSON-RPC error code in a single place.
var (
	// ErrInvalid marks bad input from the caller.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound marks a reference to something that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict marks a clash with existing state, such as a name in use.
	ErrConflict = errors.New("conflict")
	// ErrState marks an operation that the object's current state forbids.
	ErrState = errors.New("wrong state")
	// ErrUnavailable marks a missing host capability, such as no VM driver.
	ErrUnavailable = errors.New("unavailable")
	// ErrCancelled marks work stopped by the user.
	ErrCancelled = errors.New("cancelled")
)

// InvalidError is a validation failure that names the field at fault.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes InvalidError match ErrInvalid.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(field, msg string) error { return &InvalidError{Field: field, Msg: msg} }

// kindError carries a kind (one of the Err* values above) without putting
// the kind's own text into the message the user reads.
type kindError struct {
	kind error
	msg  string
	err  error
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }
func (e *kindError) Unwrap() error        { return e.err }

// Errorf formats a message, as fmt.Errorf does (including %w), and marks
// the error as being of kind, so errors.Is(err, kind) holds.
func Errorf(kind error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &kindError{kind: kind, msg: err.Error(), err: errors.Unwrap(err)}
}
