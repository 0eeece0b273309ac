package impl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/cluster"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/repos"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/store"
)

// The repository lifecycle: mirrors onboarded through the API are stored
// and restored at start-up; only they can be removed through the API.
//
// Every change of the set of repositories (an onboarding's registration
// and commit, a removal) holds App.lifeMu, so that a removal and an
// onboarding of the same id never interleave. The order of a removal is
// chosen so that a crash at any point leaves nothing a restart would
// resurrect: the refresher is stopped (no run left that could write the
// directory), then the stored row goes (from here on a restart treats the
// directory as an orphan and removes it), then the directory, then the
// in-memory registration.

// unfinishedReason is the error of the syncs a previous process left queued
// or running.
const unfinishedReason = "stackd stopped before this sync finished"

// failUnfinished marks the syncs that a previous process of this replica
// left queued or running as failed: no refresher of this process will
// finish them. Other replicas' syncs (a shared database) are theirs.
func (a *App) failUnfinished(ctx context.Context) error {
	n, err := a.store.FailUnfinished(ctx, a.replica, time.Now().UTC(), unfinishedReason)
	if err != nil {
		return err
	}
	if n > 0 {
		a.log.Info("syncs left unfinished by the previous run marked failed", "count", n)
	}
	return nil
}

// restore serves the repositories onboarded through the API in earlier
// runs, through the same path as those of the config file (Start: served
// from disk first, then fetched). The config file wins: a stored
// repository whose id, URL or full name a configured one has is
// forgotten (its directory is then the configured one's, or an orphan).
// A stored repository whose id the working repository has, or whose
// remote the current settings refuse, is kept in the store (and on disk)
// but not served; it is served again once it no longer clashes.
func (a *App) restore(ctx context.Context) error {
	stored, err := a.store.Repos(ctx)
	if err != nil {
		return fmt.Errorf("read the stored repositories: %w", err)
	}
	for _, sr := range stored {
		log := a.log.With("id", sr.ID, "url", redact.URL(sr.URL))
		if err := a.reg.Check(sr.ID, sr.URL, sr.FullName); err != nil {
			if other, ok := a.reg.Get(sr.ID); ok && other.Origin == registry.OriginLocal {
				log.Warn("stored repository not served: the working repository (--repo-id) has its id", "err", err)
				a.unserved[strings.ToLower(sr.ID)] = true
				continue
			}
			log.Warn("stored repository forgotten: the config file declares a repository with its id, URL or full name (the file wins)", "err", err)
			if err := a.store.DeleteRepo(ctx, sr.ID); err != nil {
				return fmt.Errorf("forget repository %s: %w", sr.ID, err)
			}
			continue
		}
		r, err := a.newMirror(remoteSpec{id: sr.ID, url: sr.URL, trunk: sr.Trunk, fullName: sr.FullName, onboarded: true})
		if err != nil {
			log.Warn("stored repository not served: the current settings refuse its remote", "err", redact.Error(err))
			a.unserved[strings.ToLower(sr.ID)] = true
			continue
		}
		if err := a.reg.Add(r); err != nil {
			return fmt.Errorf("restore repository %s: %w", sr.ID, err)
		}
		a.refresh.Add(r)
		log.Info("restored repository onboarded through the API")
	}
	return nil
}

// sweepOrphans removes, at start-up, the mirrors under mirrors/ that belong
// to no repository (one removed from the config file, one whose removal
// was interrupted) with their sync history. Only directories that
// mirror.Root accepts as stackd's own mirrors (marker included) are ever
// considered; anything else there is left alone.
func (a *App) sweepOrphans(ctx context.Context) {
	ids, err := a.mirrors.Mirrors()
	if err != nil {
		a.log.Warn("cannot list the mirrors", "err", redact.Error(err))
		return
	}
	for _, id := range ids {
		if _, ok := a.reg.Get(id); ok || a.unserved[strings.ToLower(id)] {
			continue
		}
		a.removeOrphan(ctx, id)
	}
}

// removeOrphan removes a mirror that belongs to no repository, with its
// sync history.
func (a *App) removeOrphan(ctx context.Context, id string) {
	if err := a.mirrors.Remove(id); err != nil {
		a.log.Warn("cannot remove a mirror that belongs to no repository", "id", id, "err", redact.Error(err))
		return
	}
	if err := a.store.DeleteSyncs(ctx, id); err != nil {
		a.log.Warn("cannot forget the sync history of a removed mirror", "id", id, "err", err)
	}
	a.log.Info("removed a mirror that belongs to no repository", "id", id, "dir", a.mirrors.Dir(id))
}

// Remove removes a repository onboarded through the API (DELETE
// /api/v1/repos/{repoID}).
func (a *App) Remove(ctx context.Context, id string) error {
	r, ok := a.reg.Get(id)
	if !ok {
		return fmt.Errorf("%w: %q", repos.ErrNotFound, id)
	}
	switch r.Origin {
	case registry.OriginLocal:
		return fmt.Errorf("%w: %q is the working repository stackd serves (--cwd); it is only ever read, and goes when the server runs without it", repos.ErrNotRemovable, r.ID)
	case registry.OriginConfig:
		return fmt.Errorf("%w: %q is declared in the config file; remove it there and restart", repos.ErrNotRemovable, r.ID)
	}
	// A client that goes away does not stop a removal halfway; the wait
	// for the running refresh is bounded by the sync timeout.
	// An unreachable database would fail the removal halfway (the
	// refresher stopped, the repository still stored): ask first, and
	// answer 503 with nothing changed.
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("remove %s: %w", r.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.SyncTimeout)
	defer cancel()
	if err := a.forget(ctx, r); err != nil {
		return err
	}
	a.log.Info("repository removed", "id", r.ID, "by", actorOf(ctx))
	return nil
}

// forget ends a repository onboarded through the API: its refresher is
// stopped (queued runs cancelled, the running one cancelled and awaited),
// then it is forgotten in the store with its sync history, its mirror
// directory is removed, and it leaves the registry. It is the removal
// (Remove) and the clean-up of a failed onboarding. A repository
// that is no longer registered (removed meanwhile) is repos.ErrNotFound.
func (a *App) forget(ctx context.Context, r *registry.Repo) error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if cur, ok := a.reg.Get(r.ID); !ok || cur != r {
		return fmt.Errorf("%w: %q", repos.ErrNotFound, r.ID)
	}
	if rf, ok := a.refresh.Get(r.ID); ok {
		if err := rf.Stop(ctx); err != nil {
			return fmt.Errorf("remove %s: waiting for its refresh: %w", r.ID, err)
		}
	}
	if err := a.store.DeleteRepo(ctx, r.ID); err != nil {
		return fmt.Errorf("remove %s: %w", r.ID, err)
	}
	if a.cluster != nil {
		// The others stop their refreshers and forget it; their runs
		// end before the lease below is free.
		a.cluster.Notify(cluster.Message{Kind: cluster.KindRemoved, Repo: r.ID})
	}
	if src, ok := r.Source().(*source.Mirror); ok {
		if err := src.Close(); err != nil {
			a.log.Warn("cannot close a removed mirror", "id", r.ID, "err", redact.Error(err))
		}
	}
	remove := func() error {
		switch err := a.mirrors.Remove(r.ID); {
		case err == nil, errors.Is(err, mirror.ErrNoMirror):
		case errors.Is(err, mirror.ErrNotMirror):
			// Not a directory stackd cloned (replaced by hand): never removed.
			a.log.Warn("the directory of a removed repository is not a stackd mirror; left alone", "id", r.ID, "err", redact.Error(err))
		default:
			return fmt.Errorf("remove %s: %w", r.ID, err)
		}
		return nil
	}
	var err error
	if a.cluster != nil {
		err = a.underLease(ctx, r.ID, remove) // no replica writes the directory while it goes
	} else {
		err = remove()
	}
	if err != nil {
		return err
	}
	a.reg.Remove(r)
	a.refresh.Remove(r.ID)
	a.endStreams(r.ID)
	return nil
}

// endStreams ends the event streams of a repository that this server no
// longer serves: each gets a last repo_removed event, then its end. Call
// it after the repository left the registry (StreamEvents checks again
// after subscribing, so no stream outlives it).
func (a *App) endStreams(id string) {
	if err := a.broker.End(id, events.Event{Type: events.RepoRemoved, Data: gen.RepoRemovedEvent{Id: id}}); err != nil {
		a.log.Error("the event streams of a removed repository were not ended", "id", id, "err", err)
	}
}

// commitOnboarding stores a mirror whose first clone succeeded, unless it
// was removed meanwhile.
func (a *App) commitOnboarding(ctx context.Context, r *registry.Repo) error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if cur, ok := a.reg.Get(r.ID); !ok || cur != r {
		return repos.ErrRemovedWhileOnboarding
	}
	if a.cluster != nil {
		return nil // stored by its run, under the lease (leaseOnboarded)
	}
	return a.store.AddRepo(ctx, store.Repo{
		ID: r.ID, URL: r.URL, Trunk: r.Trunk, FullName: r.FullName,
		CreatedAt: time.Now().UTC(), CreatedBy: actorOf(ctx),
	})
}

// register adds a new repository and its refresher.
func (a *App) register(r *registry.Repo) (*refresh.Refresher, error) {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if err := a.reg.Add(r); err != nil {
		return nil, err
	}
	return a.refresh.Add(r), nil
}

// actorOf names the signed-in caller ("" when anonymous).
func actorOf(ctx context.Context) string {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return ""
	}
	if p.Email != "" {
		return p.Email
	}
	return p.Subject
}
