package gitrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"

	"github.com/stackd/stackd/impl/refs"
)

// Namespaces are the ref prefixes a Repo's table holds: branches, the
// remote-tracking refs (ahead/behind, trunk detection) and the stacking
// tools' metadata. Tags and other refs are left out.
var Namespaces = []string{"refs/heads/", "refs/remotes/", "refs/stackit/", "refs/branch-metadata/"}

// maxOpenPacks bounds the pack files each storer keeps open.
const maxOpenPacks = 64

// objectCacheSize is go-git's object cache of each storer (delta bases);
// the view keeps its own cache of decoded commits and metadata.
const objectCacheSize = 8 * cache.MiByte

// newStorer returns a fresh read-only storer over the repository's files.
func (w *Worktree) newStorer() *ReadOnlyStorer {
	var fs billy.Filesystem = osfs.New(w.gitDir)
	if w.commonDir != w.gitDir {
		fs = dotgit.NewRepositoryFilesystem(fs, osfs.New(w.commonDir))
	}
	return NewReadOnlyStorer(filesystem.NewStorageWithOptions(fs, cache.NewObjectLRU(objectCacheSize),
		filesystem.Options{MaxOpenDescriptors: maxOpenPacks}))
}

// objects are storers kept across re-reads while the repository's pack
// files stay the same (loading pack indexes is the expensive part of
// opening). go-git's storage is not safe for concurrent use, so there is a
// pool of them, one per CPU, each used by one goroutine at a time: the view
// builder reads objects in parallel.
type objects struct {
	pool  chan *ReadOnlyStorer
	packs []string
}

func (w *Worktree) newObjects(packs []string) *objects {
	n := runtime.GOMAXPROCS(0)
	o := &objects{pool: make(chan *ReadOnlyStorer, n), packs: packs}
	for range n {
		o.pool <- w.newStorer()
	}
	return o
}

// with runs f with a storer of the pool.
func (o *objects) with(f func(s *ReadOnlyStorer) error) error {
	s := <-o.pool
	defer func() { o.pool <- s }()
	return f(s)
}

// packSet lists the repository's pack files.
func (w *Worktree) packSet() []string {
	entries, _ := os.ReadDir(filepath.Join(w.commonDir, "objects", "pack"))
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".pack") || strings.HasSuffix(e.Name(), ".idx") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Read re-reads the repository's refs (Namespaces and HEAD) and returns
// them, with read access to its objects and config, as a Repo. Packs and
// refs written since the last call are seen. Nothing is ever written.
func (w *Worktree) Read() (*Repo, error) {
	if !isGitDir(w.gitDir) {
		return nil, fmt.Errorf("gitrepo: %q: %w", w.gitDir, ErrNotRepository)
	}
	packs := w.packSet()
	w.mu.Lock()
	objs := w.objs
	if objs == nil || !slices.Equal(objs.packs, packs) {
		st := w.newStorer()
		// git.Open checks what git checks before reading a repository
		// (format version, extensions); the handle never leaves this
		// function.
		if _, err := git.Open(st, nil); err != nil {
			w.mu.Unlock()
			if errors.Is(err, git.ErrRepositoryNotExists) {
				return nil, fmt.Errorf("gitrepo: open %q: %w: %w", w.gitDir, ErrNotRepository, err)
			}
			return nil, fmt.Errorf("gitrepo: open %q: %w", w.gitDir, err)
		}
		objs = w.newObjects(packs)
		w.objs = objs
	}
	w.mu.Unlock()

	table, err := objs.refs()
	if err != nil {
		return nil, fmt.Errorf("gitrepo: read refs of %q: %w", w.gitDir, err)
	}
	return &Repo{refs: table, objs: objs}, nil
}

func inNamespaces(name string) bool {
	for _, p := range Namespaces {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// refs reads HEAD and the refs in Namespaces (loose and packed).
func (o *objects) refs() (*refs.Table, error) {
	var out []refs.Ref
	err := o.with(func(s *ReadOnlyStorer) error {
		if head, err := s.Reference(plumbing.HEAD); err == nil {
			out = append(out, toRef(head))
		} else if !errors.Is(err, plumbing.ErrReferenceNotFound) {
			return err
		}
		iter, err := s.IterReferences()
		if err != nil {
			return err
		}
		return iter.ForEach(func(r *plumbing.Reference) error {
			if inNamespaces(r.Name().String()) {
				out = append(out, toRef(r))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return refs.NewTable(out), nil
}

func toRef(r *plumbing.Reference) refs.Ref {
	if r.Type() == plumbing.SymbolicReference {
		return refs.Ref{Name: r.Name().String(), Target: r.Target().String()}
	}
	return refs.Ref{Name: r.Name().String(), Hash: r.Hash()}
}

// Repo is the working repository as stackd may see it: the refs read by
// one Worktree.Read, and read access to objects and config. It implements
// view.Repo and has no other methods: nothing reachable from it can fetch,
// push or write. It is safe for concurrent use.
type Repo struct {
	refs *refs.Table
	objs *objects
}

// Refs is the ref table read by Worktree.Read (HEAD included).
func (r *Repo) Refs() *refs.Table { return r.refs }

// Object reads one object.
func (r *Repo) Object(t plumbing.ObjectType, h plumbing.Hash) (obj plumbing.EncodedObject, err error) {
	err = r.objs.with(func(s *ReadOnlyStorer) error {
		obj, err = s.EncodedObject(t, h)
		return err
	})
	return obj, err
}

// ObjectSize returns an object's size without reading its content (only
// its header, or its delta's), so that a reader can refuse a large blob
// before reading it (view.ObjectSizer).
func (r *Repo) ObjectSize(h plumbing.Hash) (size int64, err error) {
	err = r.objs.with(func(s *ReadOnlyStorer) error {
		size, err = s.EncodedObjectSize(h)
		return err
	})
	return size, err
}

// Config reads the repository's config (with the harmless extensions
// hidden, see ReadOnlyStorer.Config).
func (r *Repo) Config() (cfg *config.Config, err error) {
	err = r.objs.with(func(s *ReadOnlyStorer) error {
		cfg, err = s.Config()
		return err
	})
	return cfg, err
}
