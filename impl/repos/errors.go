package repos

import "errors"

// Failures of the served set's changes, which the API answers with a
// problem (package api matches them with errors.Is and errors.As).
var (
	// ErrNotFound: no such repository (404).
	ErrNotFound = errors.New("no such repository")
	// ErrNotRemovable: the working repository or one declared in the
	// config file (409).
	ErrNotRemovable = errors.New("repository cannot be removed through the API")
	// ErrRemovedWhileOnboarding: a removal ended the onboarding (409).
	ErrRemovedWhileOnboarding = errors.New("the repository was removed while it was being onboarded")
	// ErrBadID: an onboarding's id breaks the id rule (400).
	ErrBadID = errors.New("bad repository id")
)

// FieldError is a request field that breaks its rule: a 400 whose detail
// names the field and the rule (Err's text, which never repeats the
// value).
type FieldError struct {
	Field string
	Err   error
}

func (e FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e FieldError) Unwrap() error { return e.Err }
