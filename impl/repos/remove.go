package repos

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/source"
)

// Remove removes a repository onboarded through the API (DELETE
// /api/v1/repos/{repoID}): ErrNotFound, or ErrNotRemovable for the
// working repository and the config file's mirrors.
func (s *Set) Remove(ctx context.Context, id string) error {
	r, ok := s.reg.Get(id)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	switch r.Origin {
	case registry.OriginLocal:
		return fmt.Errorf("%w: %q is the working repository stackd serves (--cwd); it is only ever read, and goes when the server runs without it", ErrNotRemovable, r.ID)
	case registry.OriginConfig:
		return fmt.Errorf("%w: %q is declared in the config file; remove it there and restart", ErrNotRemovable, r.ID)
	}
	// An unreachable database would fail the removal halfway (the
	// refresher stopped, the repository still stored): ask first, and
	// answer 503 with nothing changed.
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("remove %s: %w", r.ID, err)
	}
	// A client that goes away does not stop a removal halfway; the wait
	// for the running refresh is bounded by the sync timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.syncTimeout)
	defer cancel()
	if err := s.forget(ctx, r); err != nil {
		return err
	}
	s.log.Info("repository removed", "id", r.ID, "by", actorOf(ctx))
	return nil
}

// forget ends a repository onboarded through the API, everywhere: its
// refresher is stopped, then it is forgotten in the store with its sync
// history (and the other replicas are told), its mirror directory is
// removed (under its lease on a replica: no replica writes it while it
// goes), and it leaves the set. It is the removal (Remove) and the
// clean-up of a failed onboarding. A repository that is no longer
// registered (removed meanwhile) is ErrNotFound.
func (s *Set) forget(ctx context.Context, r *registry.Repo) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if cur, ok := s.reg.Get(r.ID); !ok || cur != r {
		return fmt.Errorf("%w: %q", ErrNotFound, r.ID)
	}
	return s.end(ctx, r, ending{
		forget: func() error {
			if err := s.store.DeleteRepo(ctx, r.ID); err != nil {
				return fmt.Errorf("remove %s: %w", r.ID, err)
			}
			if s.replicas != nil {
				// The others stop their refreshers and forget it;
				// their runs end before the lease below is free.
				s.replicas.Removed(r.ID)
			}
			return nil
		},
		removeDir: func() error {
			return s.underLease(ctx, r.ID, func() error {
				switch err := s.mirrors.Remove(r.ID); {
				case err == nil, errors.Is(err, mirror.ErrNoMirror):
				case errors.Is(err, mirror.ErrNotMirror):
					// Not a directory stackd cloned (replaced by hand): never removed.
					s.log.Warn("the directory of a removed repository is not a stackd mirror; left alone", "id", r.ID, "err", redact.Error(err))
				default:
					return fmt.Errorf("remove %s: %w", r.ID, err)
				}
				return nil
			})
		},
	})
}

// Drop forgets, on this replica only, an onboarded repository that
// another replica removed: its refresher stops (its run cancelled and
// awaited), its mirror is closed, it leaves the set. The stored row and
// the directory are the removing replica's business.
func (s *Set) Drop(ctx context.Context, id string) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	r, ok := s.reg.Get(id)
	if !ok || r.Origin != registry.OriginAPI {
		return
	}
	if _, onboarding := s.Onboarding(r.ID); onboarding {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.syncTimeout)
	defer cancel()
	_ = s.end(ctx, r, ending{force: true})
	s.log.Info("repository removed by another replica", "id", r.ID)
}

// ending is what end does besides what it always does.
type ending struct {
	// forget runs once the refresher stopped, before anything else goes
	// (a removal deletes the stored row); an error ends the teardown,
	// with the repository still registered.
	forget func() error
	// removeDir runs once the mirror is closed; an error ends the
	// teardown likewise.
	removeDir func() error
	// force: a refresher that does not stop in time is logged, and the
	// teardown goes on (a repository another replica removed).
	force bool
}

// end is the one teardown of a served repository, in the order that
// leaves nothing a restart would resurrect and no run that could write
// its directory:
//
//  1. its refresher stops: queued runs fail, the running one is
//     cancelled and awaited, and no new run starts (ErrRemoved);
//  2. e.forget;
//  3. its mirror is closed (every later Load or Refresh fails);
//  4. e.removeDir;
//  5. it leaves the registry and the refresh manager, and its event
//     streams end with a repo_removed event.
//
// The caller holds lifeMu.
func (s *Set) end(ctx context.Context, r *registry.Repo, e ending) error {
	if rf, ok := s.refresh.Get(r.ID); ok {
		if err := rf.Stop(ctx); err != nil {
			if !e.force {
				return fmt.Errorf("remove %s: waiting for its refresh: %w", r.ID, err)
			}
			s.log.Warn("a repository another replica removed: its refresh did not stop", "id", r.ID, "err", err)
		}
	}
	if e.forget != nil {
		if err := e.forget(); err != nil {
			return err
		}
	}
	if src, ok := r.Source().(*source.Mirror); ok {
		if err := src.Close(); err != nil {
			s.log.Warn("cannot close a removed mirror", "id", r.ID, "err", redact.Error(err))
		}
	}
	if e.removeDir != nil {
		if err := e.removeDir(); err != nil {
			return err
		}
	}
	s.reg.Remove(r)
	s.sched.Remove(r.ID)
	s.refresh.Remove(r.ID)
	s.endStreams(r.ID)
	return nil
}

// underLease runs fn holding the mirror's lease on a replica; a single
// server runs it at once (it owns its data directory alone).
func (s *Set) underLease(ctx context.Context, id string, fn func() error) error {
	if s.replicas == nil {
		return fn()
	}
	l, err := s.replicas.Lease(ctx, id)
	if err != nil {
		return err
	}
	defer l.Release()
	return fn()
}

// storedRepo reports whether the id is stored.
func (s *Set) storedRepo(ctx context.Context, id string) (bool, error) {
	stored, err := s.store.Repos(ctx)
	if err != nil {
		return false, err
	}
	for _, sr := range stored {
		if strings.EqualFold(sr.ID, id) {
			return true, nil
		}
	}
	return false, nil
}
