package gitrepo

import (
	"errors"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	format "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"
)

// ErrReadOnly is returned by every write method of [ReadOnlyStorer].
var ErrReadOnly = errors.New("gitrepo: repository is opened read-only")

// harmlessExtensions are repository extensions that only matter to code
// that writes (worktreeconfig: where per-worktree config is written;
// preciousobjects: never delete objects) or that fetches missing objects
// (partialclone: a promisor remote), or that do nothing at all (noop).
// Reading refs and present objects is unaffected by them, so the read-only
// storer hides them from go-git's extension check. Every other extension is
// still reported and refused by git.Open.
var harmlessExtensions = map[string]bool{
	"worktreeconfig":  true,
	"partialclone":    true,
	"preciousobjects": true,
	"noop":            true,
}

// ReadOnlyStorer is a go-git storage.Storer that delegates reads to an
// underlying storer and refuses every write with [ErrReadOnly].
//
// It deliberately does not embed the underlying storer: only the methods
// written here exist, so no write method of the filesystem storage (loose
// object deletion, pack deletion, lazy writers, transactions) can be
// reached through a promoted method or an interface type assertion.
// PackfileWriter is defined, and fails, so go-git's storer.PackfileWriter
// assertion cannot write a pack either.
type ReadOnlyStorer struct {
	s storage.Storer
}

var (
	_ storage.Storer        = (*ReadOnlyStorer)(nil)
	_ storer.PackfileWriter = (*ReadOnlyStorer)(nil)
)

// NewReadOnlyStorer wraps s.
func NewReadOnlyStorer(s storage.Storer) *ReadOnlyStorer { return &ReadOnlyStorer{s: s} }

// Config returns the repository config with the harmless read-only
// extensions (see harmlessExtensions) removed from the raw extensions
// section. The returned value is a copy: the raw config is cloned.
func (r *ReadOnlyStorer) Config() (*config.Config, error) {
	cfg, err := r.s.Config()
	if err != nil {
		return nil, err
	}
	out := *cfg
	out.Raw = filterExtensions(cfg.Raw)
	// go-git's config parser only recognises format version 1 and reads
	// any other value as 0; pass an unknown version through so that
	// git.Open refuses it, as git itself does.
	if cfg.Raw != nil {
		v := strings.TrimSpace(cfg.Raw.Section("core").Options.Get("repositoryformatversion"))
		switch v {
		case "", "0", "1":
		default:
			out.Core.RepositoryFormatVersion = format.RepositoryFormatVersion(v)
		}
	}
	return &out, nil
}

// filterExtensions clones raw, dropping harmless extension options.
func filterExtensions(raw *format.Config) *format.Config {
	if raw == nil {
		return nil
	}
	c := format.New()
	c.Comment = raw.Comment
	for _, s := range raw.Sections {
		ns := &format.Section{Name: s.Name}
		isExt := strings.EqualFold(s.Name, "extensions")
		for _, o := range s.Options {
			if isExt && harmlessExtensions[strings.ToLower(o.Key)] {
				continue
			}
			ns.Options = append(ns.Options, &format.Option{Key: o.Key, Value: o.Value})
		}
		for _, sub := range s.Subsections {
			nsub := &format.Subsection{Name: sub.Name}
			for _, o := range sub.Options {
				nsub.Options = append(nsub.Options, &format.Option{Key: o.Key, Value: o.Value})
			}
			ns.Subsections = append(ns.Subsections, nsub)
		}
		if isExt && len(ns.Options) == 0 && len(ns.Subsections) == 0 {
			continue
		}
		c.Sections = append(c.Sections, ns)
	}
	c.Includes = raw.Includes
	return c
}

// Reads: delegated.

// NewEncodedObject returns an in-memory object; it writes nothing.
func (r *ReadOnlyStorer) NewEncodedObject() plumbing.EncodedObject { return r.s.NewEncodedObject() }

// EncodedObject reads an object.
func (r *ReadOnlyStorer) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return r.s.EncodedObject(t, h)
}

// IterEncodedObjects iterates objects of type t.
func (r *ReadOnlyStorer) IterEncodedObjects(t plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	return r.s.IterEncodedObjects(t)
}

// HasEncodedObject reports (as a nil error) whether h exists.
func (r *ReadOnlyStorer) HasEncodedObject(h plumbing.Hash) error { return r.s.HasEncodedObject(h) }

// EncodedObjectSize returns the size of object h.
func (r *ReadOnlyStorer) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	return r.s.EncodedObjectSize(h)
}

// Reference reads one reference (not resolved).
func (r *ReadOnlyStorer) Reference(n plumbing.ReferenceName) (*plumbing.Reference, error) {
	return r.s.Reference(n)
}

// IterReferences iterates every reference (loose and packed).
func (r *ReadOnlyStorer) IterReferences() (storer.ReferenceIter, error) { return r.s.IterReferences() }

// CountLooseRefs counts loose references.
func (r *ReadOnlyStorer) CountLooseRefs() (int, error) { return r.s.CountLooseRefs() }

// Shallow lists the shallow boundary commits.
func (r *ReadOnlyStorer) Shallow() ([]plumbing.Hash, error) { return r.s.Shallow() }

// Index reads the index of this worktree.
func (r *ReadOnlyStorer) Index() (*index.Index, error) { return r.s.Index() }

// Close releases open pack files, when the underlying storer holds any.
func (r *ReadOnlyStorer) Close() error {
	if c, ok := r.s.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Writes: all refused.

// SetConfig fails with ErrReadOnly.
func (r *ReadOnlyStorer) SetConfig(*config.Config) error { return ErrReadOnly }

// SetEncodedObject fails with ErrReadOnly.
func (r *ReadOnlyStorer) SetEncodedObject(plumbing.EncodedObject) (plumbing.Hash, error) {
	return plumbing.ZeroHash, ErrReadOnly
}

// AddAlternate fails with ErrReadOnly.
func (r *ReadOnlyStorer) AddAlternate(string) error { return ErrReadOnly }

// PackfileWriter fails with ErrReadOnly.
func (r *ReadOnlyStorer) PackfileWriter() (io.WriteCloser, error) { return nil, ErrReadOnly }

// SetReference fails with ErrReadOnly.
func (r *ReadOnlyStorer) SetReference(*plumbing.Reference) error { return ErrReadOnly }

// CheckAndSetReference fails with ErrReadOnly.
func (r *ReadOnlyStorer) CheckAndSetReference(_, _ *plumbing.Reference) error { return ErrReadOnly }

// RemoveReference fails with ErrReadOnly.
func (r *ReadOnlyStorer) RemoveReference(plumbing.ReferenceName) error { return ErrReadOnly }

// PackRefs fails with ErrReadOnly.
func (r *ReadOnlyStorer) PackRefs() error { return ErrReadOnly }

// SetShallow fails with ErrReadOnly.
func (r *ReadOnlyStorer) SetShallow([]plumbing.Hash) error { return ErrReadOnly }

// SetIndex fails with ErrReadOnly.
func (r *ReadOnlyStorer) SetIndex(*index.Index) error { return ErrReadOnly }

// Module fails with ErrReadOnly: the filesystem storage would create the
// submodule's git directory on demand.
func (r *ReadOnlyStorer) Module(string) (storage.Storer, error) { return nil, ErrReadOnly }
