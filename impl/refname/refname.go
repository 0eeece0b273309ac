// Package refname checks branch names as they arrive in request paths,
// before anything looks them up or prints them.
//
// The rules are git's (git check-ref-format applied to refs/heads/<name>,
// plus the two extra rules of git branch: no leading '-' and not "HEAD"),
// with three additions of stackd's: a name is valid UTF-8, at most MaxLen
// bytes long, and none of its '/'-separated components is longer than
// MaxComponentLen bytes (git stores a branch as a file named by each
// component: a longer one cannot be a loose ref). A name git could not have created is refused, so a name that
// passes is safe to quote back to a client (see Quote).
//
// Errors say which rule failed and never contain the name itself.
package refname

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLen bounds a branch name in bytes. Git itself has no limit, but each
// path component of a loose ref is a file name (at most 255 bytes on common
// file systems); 1024 leaves room for several of them.
const MaxLen = 1024

// MaxComponentLen bounds each '/'-separated component of a branch name in
// bytes: the longest file name of common file systems, which git cannot
// exceed when it writes the branch as a loose ref.
const MaxComponentLen = 255

// ErrInvalid is wrapped by every error of Check.
var ErrInvalid = errors.New("not a valid branch name")

// forbidden are the printable ASCII characters git refuses anywhere in a
// ref name (controls, DEL and space are refused separately).
const forbidden = "~^:?*[\\"

// Check reports why name cannot be a branch name (wrapping ErrInvalid), or
// nil when it can. The error text never contains name.
func Check(name string) error {
	reason := check(name)
	if reason == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, reason)
}

// Valid reports whether name is a valid branch name.
func Valid(name string) bool { return check(name) == "" }

func check(name string) string {
	switch {
	case name == "":
		return "it is empty"
	case len(name) > MaxLen:
		return fmt.Sprintf("it is longer than %d bytes", MaxLen)
	case !utf8.ValidString(name):
		return "it is not valid UTF-8"
	case name[0] == '-':
		return "it starts with '-'"
	case name == "HEAD":
		return "it is a name git reserves"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "it contains a control character"
		case c == ' ':
			return "it contains a space"
		case strings.IndexByte(forbidden, c) >= 0:
			return "it contains " + strconv.QuoteRune(rune(c))
		}
	}
	switch {
	case strings.Contains(name, ".."):
		return `it contains ".."`
	case strings.Contains(name, "@{"):
		return `it contains "@{"`
	case strings.HasSuffix(name, "."):
		return "it ends with '.'"
	}
	for comp := range strings.SplitSeq(name, "/") {
		switch {
		case comp == "":
			return "it has an empty path component (a leading, trailing or double '/')"
		case len(comp) > MaxComponentLen:
			return fmt.Sprintf("a path component is longer than %d bytes", MaxComponentLen)
		case comp[0] == '.':
			return "a path component starts with '.'"
		case strings.HasSuffix(comp, ".lock"):
			return `a path component ends with ".lock"`
		}
	}
	return ""
}

// maxQuoted bounds how much of a name Quote shows.
const maxQuoted = 128

// Quote returns a valid name in the form problem details show it: Go-quoted
// (so that format characters such as U+202E appear as escapes, never raw)
// and cut after 128 bytes. It must only be given names that passed Check.
func Quote(name string) string {
	if len(name) <= maxQuoted {
		return strconv.Quote(name)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return strconv.Quote(name[:cut]) + "…"
}
