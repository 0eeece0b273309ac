package source

import (
	"context"
	"fmt"
	"sync"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/view"
)

// Local is the operator's working repository. It only ever reads: it holds
// a *gitrepo.Worktree, whose one way in, Read, yields a *gitrepo.Repo, and
// neither type has a method that could fetch into the repository or write
// to it.
type Local struct {
	wt *gitrepo.Worktree

	mu   sync.Mutex
	last *refs.Table // refs of the previous Refresh or Load
}

var _ Source = (*Local)(nil)

// NewLocal wraps a working repository.
func NewLocal(wt *gitrepo.Worktree) *Local { return &Local{wt: wt} }

// Kind is gen.Local.
func (l *Local) Kind() gen.RepoKind { return gen.Local }

// Mode is ModeReread.
func (l *Local) Mode() Mode { return ModeReread }

// Worktree is the working repository's location (for the watcher).
func (l *Local) Worktree() *gitrepo.Worktree { return l.wt }

// Load re-reads the repository; a working repository's disk is always
// fresh.
func (l *Local) Load(ctx context.Context) (view.Repo, bool, error) {
	u, err := l.Refresh(ctx, nil)
	return u.Repo, true, err
}

// Refresh re-reads the refs on disk and reports those that changed since
// the previous call. Nothing is fetched and nothing is written; nothing is
// received, so cache is not used.
func (l *Local) Refresh(ctx context.Context, _ *view.Cache) (Update, error) {
	if err := ctx.Err(); err != nil {
		return Update{}, err
	}
	repo, err := l.wt.Read()
	if err != nil {
		return Update{}, fmt.Errorf("read working repository: %w", err)
	}
	l.mu.Lock()
	prev := l.last
	l.last = repo.Refs()
	l.mu.Unlock()
	return Update{
		Repo:    repo,
		Changes: refs.Diff(prev, repo.Refs(), Reported),
		// The view also reads the config (tracking branches, trunk): a
		// re-read always rebuilds, which is cheap when nothing changed.
		Changed: true,
	}, nil
}
