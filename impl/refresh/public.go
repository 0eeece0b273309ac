package refresh

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/store"
)

// ErrStorage marks a failure to store what the upstream sent: a file
// error under the data dir (a full disk, a permission), which the mirror
// reports like a transfer failure. It is not the upstream's fault, so it
// is not an ErrFetch (no 502): it is an unexpected error, a generic 500
// whose detail is only in the log.
var ErrStorage = errors.New("storing fetched data failed")

// InternalText is what clients see of a run that failed for a reason of
// the server's own (a disk error, a corrupt repository, a bug): the real
// error, with its paths, goes to the log only.
const InternalText = "refresh failed: unexpected error (the server log has the details)"

// BuildText is what clients see of a run whose view could not be built.
const BuildText = "refresh failed: the view could not be built from the repository's refs (the server log has the details); the last good view is still served"

// DatabaseText is what clients see of a run that could not start because
// the database that replicas share does not answer: the lease that lets
// one replica at a time refresh a mirror lives there.
const DatabaseText = "refresh failed: the database is unreachable, and replicas need it to take turns refreshing"

// Public returns the text of err that clients may see: in SyncResult.error,
// syncStatus.lastError, the event stream and the 502/504 problems.
//
// Failures of the upstream (ErrFetch, a refused remote URL), timeouts,
// shutdowns and fetches refused for memory (memlimit.ErrPressure, which
// the server's BeforeRefresh hook returns) are described, with
// credentials removed and every filesystem path (absolute paths, file://
// URLs) replaced by "…". Anything else is InternalText.
func Public(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrStorage):
		return InternalText
	case errors.Is(err, ErrBuild):
		// The builder's words name branches and objects, which come from
		// the repository: only the log has them.
		return BuildText
	case errors.Is(err, ErrLeaseLost):
		return ErrLeaseLost.Error()
	case errors.Is(err, store.ErrUnavailable):
		return DatabaseText
	case errors.Is(err, ErrFetch), errors.Is(err, ErrTimeout), errors.Is(err, ErrClosed), errors.Is(err, ErrRemoved), errors.Is(err, ErrPanic),
		errors.Is(err, mirror.ErrBadURL), errors.Is(err, mirror.ErrLocalRemote), errors.Is(err, context.Canceled),
		errors.Is(err, memlimit.ErrPressure):
		return ScrubPaths(redact.Error(err))
	default:
		return InternalText
	}
}

// pathRE finds file: URLs, and absolute paths that start a word (after
// the start of the text, white space, a quote, a bracket or '='). A path
// inside a network URL ("https://host/a/b") is preceded by the host, so it
// is not a match.
var pathRE = regexp.MustCompile(`(?i:\bfile:)[^\s"'<>]*|(?:^|[\s"'(\[=])(/[^\s"'()<>\[\]]*)`)

// ScrubPaths replaces file: URLs and absolute filesystem paths in s with
// "file:…" and "…". Punctuation that ends a match (the ':' of "open /x:
// denied") is kept.
func ScrubPaths(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range pathRE.FindAllStringSubmatchIndex(s, -1) {
		start, end, repl := m[0], m[1], "file:…"
		if m[2] >= 0 { // an absolute path: keep what precedes it
			start, repl = m[2], "…"
		}
		for end > start+1 && strings.IndexByte(":,;.", s[end-1]) >= 0 {
			end--
		}
		b.WriteString(s[last:start])
		b.WriteString(repl)
		last = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}
