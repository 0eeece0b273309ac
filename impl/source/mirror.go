package source

import (
	"context"
	"errors"
	"path/filepath"
	"sync"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/view"
)

// Mirror is a managed mirror. It can only exist under the data directory's
// mirror.Root, which refuses any directory stackd did not clone.
//
// A shared Mirror (NewSharedMirror) is one of several processes' views of
// one mirror directory (replicas sharing a data directory): it opens the
// mirror with mirror.Root.OpenShared, its Refresh expects the caller to
// hold the mirror's cluster-wide lease (it repairs what a dead writer
// left, re-reads what others wrote, then syncs), and Reread follows what
// others wrote without fetching.
type Mirror struct {
	root   *mirror.Root
	id     string
	cfg    mirror.Config
	shared bool

	mu     sync.Mutex
	m      *mirror.Mirror // nil until opened or cloned
	closed bool
}

var (
	_ Source     = (*Mirror)(nil)
	_ Trimmer    = (*Mirror)(nil)
	_ ViewKeeper = (*Mirror)(nil)
	_ view.Repo  = (*mirror.Reader)(nil)
	_ view.Sizer = (*mirror.Reader)(nil)
)

// NewMirror describes the mirror id of root; nothing is opened or fetched
// until Load or Refresh.
func NewMirror(root *mirror.Root, id string, cfg mirror.Config) *Mirror {
	return &Mirror{root: root, id: id, cfg: cfg}
}

// NewSharedMirror is NewMirror for a mirror that other processes share
// (see Mirror).
func NewSharedMirror(root *mirror.Root, id string, cfg mirror.Config) *Mirror {
	return &Mirror{root: root, id: id, cfg: cfg, shared: true}
}

// Shared reports whether other processes share the mirror.
func (s *Mirror) Shared() bool { return s.shared }

// Kind is gen.Mirror.
func (s *Mirror) Kind() gen.RepoKind { return gen.Mirror }

// Mode is ModeMirrorFetch.
func (s *Mirror) Mode() Mode { return ModeMirrorFetch }

// open returns the mirror on disk (nil, nil when there is none) and
// whether this call opened it.
func (s *Mirror) open() (*mirror.Mirror, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	if s.m != nil {
		return s.m, false, nil
	}
	open := s.root.Open
	if s.shared {
		open = s.root.OpenShared
	}
	m, err := open(s.id, s.cfg)
	if errors.Is(err, mirror.ErrNoMirror) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	s.m = m
	return m, true, nil
}

// Load opens the mirror on disk without network access (a shared mirror
// already open re-reads its refs if another process changed them).
func (s *Mirror) Load(ctx context.Context) (view.Repo, bool, error) {
	m, opened, err := s.open()
	if err != nil {
		return nil, false, err
	}
	if m == nil {
		return nil, false, ErrNotCloned
	}
	if s.shared && !opened {
		if _, err := m.Reload(); err != nil {
			return nil, false, err
		}
	}
	return m.Reader(), false, nil
}

// Reread follows what other processes wrote to a shared mirror, without
// network access: it re-reads the refs if they changed on disk. Changed
// reports whether they did (or the mirror was opened by this call);
// Changes is empty (nothing was fetched). ErrNotCloned when there is no
// mirror on disk.
func (s *Mirror) Reread(ctx context.Context) (Update, error) {
	m, opened, err := s.open()
	if err != nil {
		return Update{}, err
	}
	if m == nil {
		return Update{}, ErrNotCloned
	}
	changed, err := m.Reload()
	if err != nil {
		return Update{}, err
	}
	return Update{Repo: m.Reader(), Changed: changed || opened}, nil
}

// Refresh clones the mirror on first use, else lists the upstream and
// fetches only what changed; a listing equal to the mirror's refs fetches
// and writes nothing and reports no change. What it fetched is pending
// (Update.Commit, Update.Abort): the clone or the new pack is checked but
// not in place, and no ref moved, until the caller commits.
//
// A shared mirror's Refresh expects the caller to hold the mirror's
// cluster-wide lease: it first repairs what a writer that died left and
// re-reads the refs if another process changed them. Changes are only
// what this Refresh fetched; Changed also reports refs that another
// process had written since this one last looked.
func (s *Mirror) Refresh(ctx context.Context, cache *view.Cache) (Update, error) {
	m, _, err := s.open()
	if err != nil {
		return Update{}, err
	}
	if m == nil {
		cfg := s.cfg
		if cache != nil {
			cfg.Seen = cache.Add
		}
		p, err := s.root.BeginClone(ctx, s.id, cfg)
		if err != nil {
			return Update{}, err
		}
		commit := func(context.Context) error {
			m, err := p.Commit()
			if err != nil {
				return err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.closed {
				// Closed during the clone: Close's caller waits for the
				// runs to end before it removes the directory, so this
				// one goes with the rest.
				_ = m.Close()
				return ErrClosed
			}
			s.m = m
			return nil
		}
		return Update{Repo: p.Reader(), Changes: p.Changes(), Changed: true, Commit: commit, Abort: p.Abort}, nil
	}
	reloaded := false
	if s.shared {
		if err := m.Repair(); err != nil {
			return Update{}, err
		}
		if reloaded, err = m.Reload(); err != nil {
			return Update{}, err
		}
	}
	p, err := m.Fetch(ctx)
	if err != nil {
		return Update{}, err
	}
	if p == nil {
		return Update{Repo: m.Reader(), Changed: reloaded}, nil
	}
	commit := func(ctx context.Context) error {
		_, err := p.Commit(ctx)
		return err
	}
	return Update{Repo: p.Reader(), Changes: p.Changes(), Changed: true, Commit: commit, Abort: p.Abort}, nil
}

// Close releases the mirror's open files; every later Load and Refresh
// fails with ErrClosed, so the source never opens, clones or fetches into
// its directory again. Close does not wait for a Refresh in progress: the
// caller stops the repository's runs first (refresh.Refresher.Stop).
func (s *Mirror) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.m == nil {
		return nil
	}
	err := s.m.Close()
	s.m = nil
	return err
}

// Trim releases the open mirror's object cache and closes its open pack
// files, and when idle also drops its pack indexes (mirror.Mirror.Trim).
func (s *Mirror) Trim(idle bool) {
	s.mu.Lock()
	m := s.m
	s.mu.Unlock()
	if m != nil {
		m.Trim(idle)
	}
}

// ViewFile is the file in the mirror's directory that keeps its view's
// saved form; "" for a shared mirror (replicas follow the cluster's
// version, not a file).
func (s *Mirror) ViewFile() string {
	if s.shared {
		return ""
	}
	return filepath.Join(s.Dir(), ViewFileName)
}

// ViewFileName is the name of ViewFile in a mirror's directory.
const ViewFileName = "stackd-view"

// Dir is the mirror's directory.
func (s *Mirror) Dir() string { return s.root.Dir(s.id) }
