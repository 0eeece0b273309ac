package view

import (
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/refs"
)

// Repo is read-only access to one repository: everything the view builder
// and the diff handler need (refs, HEAD, objects, config) and nothing that
// can fetch or write. The operator's working repository is only ever handed
// out as a Repo (see package gitrepo), so code holding it has no method
// that could fetch into it or change it.
//
// Implementations are safe for concurrent use. A Repo is a snapshot of the
// refs (Refs never changes) over an object store that holds what they
// reach while they are current; a managed mirror's garbage collection may
// remove it from the second Sync after on (see package mirror), after
// which a read of it fails with plumbing.ErrObjectNotFound.
//
// A Repo that can tell an object's size without reading it implements
// Sizer too: the build then leaves commits and metadata beyond its limits
// unread, and the diff blobs beyond its own (see DiffLimits).
type Repo interface {
	// Refs is the ref table this Repo was made with, HEAD included.
	Refs() *refs.Table
	// Object reads one object. A missing object wraps
	// plumbing.ErrObjectNotFound.
	Object(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error)
	// Config is the repository's git config (a copy: changing it changes
	// nothing on disk).
	Config() (*config.Config, error)
}
