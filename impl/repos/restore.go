package repos

import (
	"context"
	"fmt"
	"strings"

	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/store"
)

// Restore serves the repositories onboarded through the API in earlier
// runs, through the same path as those of the config file (Start: served
// from disk first, then fetched). The config file wins: a stored
// repository whose id, URL or full name a configured one has is
// forgotten (its directory is then the configured one's, or an orphan).
// A stored repository whose id the working repository has, or whose
// remote the current settings refuse, is kept in the store (and on disk)
// but not served; it is served again once it no longer clashes.
func (s *Set) Restore(ctx context.Context) error {
	stored, err := s.store.Repos(ctx)
	if err != nil {
		return fmt.Errorf("read the stored repositories: %w", err)
	}
	for _, sr := range stored {
		log := s.log.With("id", sr.ID, "url", redact.URL(sr.URL))
		if err := s.reg.Check(sr.ID, sr.URL, sr.FullName); err != nil {
			if other, ok := s.reg.Get(sr.ID); ok && other.Origin == registry.OriginLocal {
				log.Warn("stored repository not served: the working repository (--repo-id) has its id", "err", err)
				s.unserved[strings.ToLower(sr.ID)] = true
				continue
			}
			log.Warn("stored repository forgotten: the config file declares a repository with its id, URL or full name (the file wins)", "err", err)
			if err := s.store.DeleteRepo(ctx, sr.ID); err != nil {
				return fmt.Errorf("forget repository %s: %w", sr.ID, err)
			}
			continue
		}
		r, err := s.newMirror(remote{id: sr.ID, url: sr.URL, trunk: sr.Trunk, fullName: sr.FullName, onboarded: true, addedBy: ownerOf(sr)})
		if err != nil {
			log.Warn("stored repository not served: the current settings refuse its remote", "err", redact.Error(err))
			s.unserved[strings.ToLower(sr.ID)] = true
			continue
		}
		if err := s.reg.Add(r); err != nil {
			return fmt.Errorf("restore repository %s: %w", sr.ID, err)
		}
		s.refresh.Add(r)
		log.Info("restored repository onboarded through the API")
	}
	return nil
}

// Adopt serves a repository another replica onboarded: stored, and cloned
// into the shared directory, which this replica opens (it never clones
// it again), following the cluster's view. It does nothing for a
// repository served here already, or not served on purpose; an error
// says the database did not answer (try again later).
func (s *Set) Adopt(ctx context.Context, id string) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if _, ok := s.reg.Get(id); ok || s.unserved[strings.ToLower(id)] {
		return nil
	}
	stored, err := s.store.Repos(ctx)
	if err != nil {
		s.log.Warn("cannot serve a repository another replica onboarded: the database did not answer", "id", id, "err", redact.Error(err))
		return err
	}
	for _, sr := range stored {
		if !strings.EqualFold(sr.ID, id) {
			continue
		}
		log := s.log.With("id", sr.ID, "url", redact.URL(sr.URL))
		r, err := s.newMirror(remote{id: sr.ID, url: sr.URL, trunk: sr.Trunk, fullName: sr.FullName, onboarded: true, addedBy: ownerOf(sr)})
		if err != nil {
			log.Warn("repository onboarded by another replica not served: the current settings refuse its remote", "err", redact.Error(err))
			s.unserved[strings.ToLower(sr.ID)] = true
			return nil
		}
		if err := s.reg.Add(r); err != nil {
			log.Warn("repository onboarded by another replica not served", "err", err)
			return nil
		}
		rf := s.refresh.Add(r)
		rf.Follow()
		s.startLater(rf)
		log.Info("serving a repository another replica onboarded")
		return nil
	}
	return nil
}

// ownerOf is the owner of a stored repository.
func ownerOf(sr store.Repo) registry.Owner {
	return registry.Owner{Subject: sr.AddedBySubject, Email: sr.AddedByEmail}
}
