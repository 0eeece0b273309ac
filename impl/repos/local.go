package repos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/watch"
)

// Local describes the operator's working repository (--cwd).
type Local struct {
	ID    string // --repo-id
	Trunk string // --trunk ("": detect)
	// Good is the file, in the data directory, that keeps the refs of
	// its last good view.
	Good string
	// WatchDebounce is the watcher's quiet period (watch.Options).
	WatchDebounce time.Duration
}

// AddLocal serves the working repository: it is registered, watched (the
// watcher runs once Start is called) and read for its first view before
// AddLocal returns. Refs that make no view do not fail it: the repository
// is then served as failed.
func (s *Set) AddLocal(wt *gitrepo.Worktree, l Local) error {
	repo := registry.NewLocal(l.ID, wt, l.Trunk, redact.URL(wt.RemoteURL()), l.Good)
	if err := s.reg.Add(repo); err != nil {
		return err
	}
	rf := s.refresh.Add(repo)
	// The watches exist before the first read, so a change made between
	// that read and Start is not lost: its events wait for Start.
	dirs := wt.RefDirs()
	w, err := watch.New(dirs.Head, dirs.Common, watch.Options{
		Debounce: l.WatchDebounce,
		Trigger:  func() { rf.Trigger(refresh.Watcher) },
		Log:      s.log.With("repo", repo.ID),
	})
	if err != nil {
		return err
	}
	s.watcher = w
	res, err := rf.Sync(context.Background(), refresh.Onboard)
	if err != nil {
		return err
	}
	if errors.Is(res.Err, refresh.ErrBuild) {
		// Refs that make no view must not keep the server from starting
		// (a supervisor would restart it forever): the repository is
		// served as failed (its syncStatus says so), with the view of its
		// last good refs when they were kept, and the next sync tries
		// again.
		s.log.Error("the working repository's refs make no view; it is served as failed", "id", repo.ID, "err", res.Err,
			"version", repo.Snapshot().Version())
		return nil
	}
	if res.Err != nil {
		return fmt.Errorf("read repository %s: %w", wt.WorkDir(), res.Err)
	}
	s.log.Info("serving local repository", "id", repo.ID, "dir", wt.WorkDir(), "trunk", repo.Snapshot().Repo().Trunk, "branches", len(repo.Snapshot().Branches()))
	return nil
}
