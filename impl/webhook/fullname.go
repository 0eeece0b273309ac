package webhook

import (
	"errors"
	"fmt"
	"strings"
)

// Bounds of an "owner/name" repository name, as GitHub has them.
const (
	MaxOwnerLen    = 39
	MaxRepoNameLen = 100
	// MaxFullNameLen is the longest owner/name.
	MaxFullNameLen = MaxOwnerLen + 1 + MaxRepoNameLen
)

// ErrBadFullName is wrapped by every error of CheckFullName.
var ErrBadFullName = errors.New("not a valid owner/name")

// CheckFullName reports why s cannot be an "owner/name" repository name
// as GitHub spells them (wrapping ErrBadFullName), or nil when it can: an
// owner of 1-39 ASCII letters, digits, '-' or '_' (an enterprise managed
// user's name has one) starting with a letter or digit, one '/', and a
// name of 1-100 ASCII letters, digits, '.', '-' or '_' that is not "."
// or "..". Case does not matter (see NormalizeFullName). The error text
// never contains s.
func CheckFullName(s string) error {
	reason := checkFullName(s)
	if reason == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrBadFullName, reason)
}

func checkFullName(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > MaxFullNameLen:
		return fmt.Sprintf("it is longer than %d bytes", MaxFullNameLen)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }):
		return "it contains a control character"
	case strings.Count(s, "/") != 1:
		return "it must be an owner and a name separated by one '/'"
	}
	owner, name, _ := strings.Cut(s, "/")
	switch {
	case owner == "" || len(owner) > MaxOwnerLen:
		return fmt.Sprintf("the owner must be 1 to %d characters", MaxOwnerLen)
	case !strings.ContainsFunc(owner[:1], alnum):
		return "the owner must start with a letter or digit"
	case strings.ContainsFunc(owner, func(r rune) bool { return !alnum(r) && r != '-' && r != '_' }):
		return "the owner may only contain ASCII letters, digits, '-' and '_'"
	case name == "" || len(name) > MaxRepoNameLen:
		return fmt.Sprintf("the name must be 1 to %d characters", MaxRepoNameLen)
	case strings.ContainsFunc(name, func(r rune) bool { return !alnum(r) && r != '-' && r != '_' && r != '.' }):
		return "the name may only contain ASCII letters, digits, '.', '-' and '_'"
	case name == "." || name == "..":
		return `the name cannot be "." or ".."`
	}
	return ""
}

func alnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}
