// Package source is where a repository's kind decides what a refresh may
// do with it. The registry creates one Source per repository, once, by kind:
//
//   - Local wraps the operator's working repository (a gitrepo.Worktree).
//     Its Refresh re-reads the refs on disk. All it can ever produce is a
//     *gitrepo.Repo, which has no method that fetches or writes: a fetch
//     into the working repository does not compile.
//   - Mirror wraps a managed mirror under the data directory's mirror.Root.
//     Its Refresh lists the upstream and fetches only what changed (cloning
//     on first use); Load opens what is on disk without network access.
//
// Both hand the view builder a view.Repo, the narrow read-only interface,
// and report what changed as refs.Changes from the one diff function.
package source

import (
	"context"
	"errors"
	"strings"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/view"
)

// Mode names what a refresh of a source does; it is the API's
// SyncResult.mode.
type Mode string

// The modes.
const (
	// ModeMirrorFetch: the upstream was listed and what changed fetched.
	ModeMirrorFetch Mode = "mirror-fetch"
	// ModeReread: refs were read from disk, nothing was fetched.
	ModeReread Mode = "reread"
)

// ErrNotCloned is returned by Load for a mirror that has no clone on disk
// yet.
var ErrNotCloned = errors.New("mirror not cloned yet")

// ErrClosed is returned by Load and Refresh of a mirror source that was
// closed (its repository is being removed).
var ErrClosed = errors.New("mirror source closed")

// Source is one repository as a refresh sees it.
type Source interface {
	// Kind is gen.Local or gen.Mirror.
	Kind() gen.RepoKind
	// Mode is what Refresh does.
	Mode() Mode
	// Load returns the repository as it is on disk, without network access
	// (ErrNotCloned for a mirror not cloned yet). fresh reports whether
	// that is as fresh as a Refresh would make it (true for a working
	// repository, whose disk is the truth).
	Load(ctx context.Context) (repo view.Repo, fresh bool, err error)
	// Refresh brings the source up to date and returns what changed. The
	// objects it receives that refs point at go into cache, when not nil
	// (a mirror's first clone), so the next build need not read them.
	Refresh(ctx context.Context, cache *view.Cache) (Update, error)
}

// Fallback is a source that keeps the refs of its last good view, for a
// start-up whose current refs make no view: a working repository (a
// mirror's refs on disk are always those of its last good view, since a
// fetch is only committed once its view was built).
type Fallback interface {
	// LastGood returns the repository with the refs of its last good
	// view; false when none were kept.
	LastGood(ctx context.Context) (view.Repo, bool, error)
}

// Trimmer is a source that caches objects between runs and can let them
// go: the refresher calls Trim after each run (a mirror empties go-git's
// object cache, which the view's own cache of decoded commits makes
// redundant once the view is built). idle: the repository built no view
// for a whole interval, so the source also drops what is costly only to
// load again (a mirror's pack indexes, read again on its next read).
type Trimmer interface {
	Trim(idle bool)
}

// ViewKeeper is a source that has a file for its view's saved form (a
// mirror of this process alone: the file is in its directory, which
// stackd owns). The refresher saves the view there after publishing a new
// one and loads it at start-up instead of building it when it is of the
// same refs (view.Key). A working repository has none: stackd creates no
// file in it.
type ViewKeeper interface {
	// ViewFile is the file's path ("" when the view is not kept).
	ViewFile() string
}

// Update is the outcome of one Refresh.
type Update struct {
	// Repo is the repository after the refresh.
	Repo view.Repo
	// Changes are the refs that changed in the namespaces of Namespaces,
	// sorted; modified refs are refs.Updated until classified (see
	// refs.Classify).
	Changes []refs.Change
	// Changed reports whether anything the view reads may have changed;
	// when false the previous view still holds and need not be rebuilt.
	Changed bool
	// Commit, when not nil, publishes what Refresh fetched: until it is
	// called, nothing is visible on disk (a mirror's new pack waits in a
	// quarantine, its refs have not moved) and Repo reads the pending
	// state. The caller builds the view of Repo first, and commits only
	// when that succeeded; otherwise it calls Abort. Nil when there is
	// nothing to publish (a working repository; a mirror that did not
	// change).
	Commit func(ctx context.Context) error
	// Abort throws away what Refresh fetched, leaving the source as it
	// was; nil when Commit is.
	Abort func()
}

// Finish ends a pending update: Commit when commit is set and it has
// one, else Abort. It is a no-op for an update with nothing pending.
func (u Update) Finish(ctx context.Context, commit bool) error {
	switch {
	case u.Commit == nil:
		return nil
	case commit:
		return u.Commit(ctx)
	}
	u.Abort()
	return nil
}

// Namespaces are the refs a sync result reports: branches and the
// stacking tools' metadata.
var Namespaces = []string{"refs/heads/", "refs/stackit/", "refs/branch-metadata/"}

// Reported tells whether a ref belongs in a sync result.
func Reported(name string) bool {
	for _, p := range Namespaces {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
