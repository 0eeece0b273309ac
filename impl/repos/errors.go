package repos

import (
	"errors"

	"github.com/stackd/stackd/impl/mirror"
)

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

// RefusalDetail is the problem detail of an onboarding refused by the
// server's remote policy (mirror.Refused): what was refused and the serve
// flag that would allow it, in fixed words. It never contains the URL, its
// host or an address it resolved to (raw user input).
func RefusalDetail(err error) string {
	switch {
	case errors.Is(err, mirror.ErrLocalRemote):
		return "local remotes (file:// URLs and plain paths) are not allowed on this server; the operator can allow them with --allow-local-remotes"
	case errors.Is(err, mirror.ErrPlainHTTP):
		return "plain http remotes are not allowed on this server; the operator can allow them (and non-public addresses) with --allow-private-remotes"
	case errors.Is(err, mirror.ErrHostNotAllowed):
		return "the remote's host (or a host it redirected to) is not one this server may clone from; the operator can add it to --allowed-remote-hosts"
	case errors.Is(err, mirror.ErrForbiddenAddress):
		return "the remote's address is not public (loopback, private, link-local or reserved); the operator can allow such remotes with --allow-private-remotes"
	case errors.Is(err, mirror.ErrSSHKey):
		return "ssh remotes need a private key, which only repositories declared in the server's config file can have (sshKey); onboard an https:// or git:// URL"
	}
	return "the remote is not allowed by this server's policy"
}
