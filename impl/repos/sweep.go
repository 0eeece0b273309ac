package repos

import (
	"context"
	"strings"

	"github.com/stackd/stackd/impl/redact"
)

// Sweep removes, at start-up, the mirrors under the data directory that
// belong to no repository (one removed from the config file, one whose
// removal was interrupted) with their sync history. Only directories that
// mirror.Root accepts as stackd's own mirrors (marker included) are ever
// considered; anything else there is left alone.
//
// On a replica, the data directory is shared: the leftovers of
// interrupted clones and removals, and the mirrors that belong to no
// repository, are each swept only under their lease (taken without
// waiting: a lease held elsewhere means another replica is working on
// it, and this sweep leaves it alone) and, for a mirror, only when no
// repository is stored under its id once the lease is held (an
// onboarding stores its repository before it releases the lease).
func (s *Set) Sweep(ctx context.Context) {
	if s.replicas != nil {
		ids, err := s.mirrors.Leftovers()
		if err != nil {
			s.log.Warn("cannot list the leftovers of interrupted clones", "err", redact.Error(err))
		}
		for _, id := range ids {
			s.tryUnderLease(ctx, id, func() {
				removed, err := s.mirrors.SweepTempOf(id)
				if err != nil {
					s.log.Warn("cannot remove leftovers of interrupted clones", "id", id, "err", redact.Error(err))
				} else if len(removed) > 0 {
					s.log.Info("removed leftovers of interrupted clones", "id", id, "count", len(removed))
				}
			})
		}
	}
	ids, err := s.mirrors.Mirrors()
	if err != nil {
		s.log.Warn("cannot list the mirrors", "err", redact.Error(err))
		return
	}
	for _, id := range ids {
		if _, ok := s.reg.Get(id); ok || s.unserved[strings.ToLower(id)] {
			continue
		}
		if s.replicas == nil {
			s.removeOrphan(ctx, id)
			continue
		}
		s.tryUnderLease(ctx, id, func() {
			if stored, err := s.storedRepo(ctx, id); err != nil || stored {
				if err != nil {
					s.log.Warn("cannot sweep a mirror: the database did not answer", "id", id, "err", redact.Error(err))
				}
				return
			}
			s.removeOrphan(ctx, id)
		})
	}
}

// removeOrphan removes a mirror that belongs to no repository, with its
// sync history.
func (s *Set) removeOrphan(ctx context.Context, id string) {
	if err := s.mirrors.Remove(id); err != nil {
		s.log.Warn("cannot remove a mirror that belongs to no repository", "id", id, "err", redact.Error(err))
		return
	}
	if err := s.store.DeleteSyncs(ctx, id); err != nil {
		s.log.Warn("cannot forget the sync history of a removed mirror", "id", id, "err", err)
	}
	s.log.Info("removed a mirror that belongs to no repository", "id", id, "dir", s.mirrors.Dir(id))
}

// tryUnderLease runs fn when the mirror's lease is free, holding it.
func (s *Set) tryUnderLease(ctx context.Context, id string, fn func()) {
	l, ok, err := s.replicas.TryLease(ctx, id)
	switch {
	case err != nil:
		s.log.Warn("cannot sweep a mirror: no lease", "id", id, "err", redact.Error(err))
	case !ok:
		s.log.Info("not sweeping a mirror another replica is working on", "id", id)
	default:
		defer l.Release()
		fn()
	}
}
