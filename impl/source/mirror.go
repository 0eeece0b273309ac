package source

import (
	"context"
	"errors"
	"sync"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/view"
)

// Mirror is a managed mirror. It can only exist under the data directory's
// mirror.Root, which refuses any directory stackd did not clone.
type Mirror struct {
	root *mirror.Root
	id   string
	cfg  mirror.Config

	mu     sync.Mutex
	m      *mirror.Mirror // nil until opened or cloned
	closed bool
}

var (
	_ Source    = (*Mirror)(nil)
	_ view.Repo = (*mirror.Reader)(nil)
)

// NewMirror describes the mirror id of root; nothing is opened or fetched
// until Load or Refresh.
func NewMirror(root *mirror.Root, id string, cfg mirror.Config) *Mirror {
	return &Mirror{root: root, id: id, cfg: cfg}
}

// Kind is gen.Mirror.
func (s *Mirror) Kind() gen.RepoKind { return gen.Mirror }

// Mode is ModeMirrorFetch.
func (s *Mirror) Mode() Mode { return ModeMirrorFetch }

// open returns the mirror on disk (nil, nil when there is none).
func (s *Mirror) open() (*mirror.Mirror, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.m != nil {
		return s.m, nil
	}
	m, err := s.root.Open(s.id, s.cfg)
	if errors.Is(err, mirror.ErrNoMirror) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.m = m
	return m, nil
}

// Load opens the mirror on disk without network access.
func (s *Mirror) Load(ctx context.Context) (view.Repo, bool, error) {
	m, err := s.open()
	if err != nil {
		return nil, false, err
	}
	if m == nil {
		return nil, false, ErrNotCloned
	}
	return m.Reader(), false, nil
}

// Refresh clones the mirror on first use, else lists the upstream and
// fetches only what changed; a listing equal to the mirror's refs fetches
// and writes nothing and reports no change.
func (s *Mirror) Refresh(ctx context.Context, cache *view.Cache) (Update, error) {
	m, err := s.open()
	if err != nil {
		return Update{}, err
	}
	if m == nil {
		cfg := s.cfg
		if cache != nil {
			cfg.Seen = cache.Add
		}
		m, changes, err := s.root.Clone(ctx, s.id, cfg)
		if err != nil {
			return Update{}, err
		}
		s.mu.Lock()
		if s.closed {
			// Closed during the clone: Close's caller waits for the runs
			// to end before it removes the directory, so this one goes
			// with the rest.
			s.mu.Unlock()
			_ = m.Close()
			return Update{}, ErrClosed
		}
		s.m = m
		s.mu.Unlock()
		return Update{Repo: m.Reader(), Changes: changes, Changed: true}, nil
	}
	res, err := m.Sync(ctx)
	if err != nil {
		return Update{}, err
	}
	return Update{Repo: m.Reader(), Changes: res.Changes, Changed: len(res.Changes) > 0 || res.HeadChanged}, nil
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

// Dir is the mirror's directory.
func (s *Mirror) Dir() string { return s.root.Dir(s.id) }
