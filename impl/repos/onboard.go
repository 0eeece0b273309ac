package repos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refname"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/webhook"
)

// Onboard registers and clones a mirror (POST /api/v1/repos). It is
// stored only once cloned: a failed onboarding leaves nothing (on a
// replica, its run stores it under the mirror's lease: refresh.Cluster's
// Onboarded).
func (s *Set) Onboard(ctx context.Context, req gen.RepoCreate) (*registry.Repo, error) {
	id := ""
	if req.Id != nil {
		id = *req.Id
	} else {
		id = defaultRepoID(req.Url)
	}
	if !config.ValidID(id) {
		return nil, fmt.Errorf("%w: %q (give an id of 1-64 letters, digits, '.', '_' or '-')", ErrBadID, id)
	}
	auth.NoteAuditRepo(ctx, id) // the audit entry names the repository
	trunk, fullName := "", ""
	if req.Trunk != nil {
		trunk = *req.Trunk
		if err := refname.Check(trunk); err != nil {
			return nil, FieldError{Field: "trunk", Err: err}
		}
	}
	if req.FullName != nil {
		fullName = *req.FullName
		if err := webhook.CheckFullName(fullName); err != nil {
			return nil, FieldError{Field: "fullName", Err: err}
		}
	}
	// A clone that the database then cannot store would be cleaned up
	// with the database's help: with it unreachable, refuse (503) before
	// anything is cloned.
	if err := s.store.Ping(ctx); err != nil {
		return nil, fmt.Errorf("onboard %s: %w", id, err)
	}
	// newMirror checks the URL; Add refuses a duplicate id or URL. Both
	// happen before any clone. An onboarded mirror never gets operator
	// credentials.
	r, err := s.newMirror(remote{id: id, url: req.Url, trunk: trunk, fullName: fullName, onboarded: true, addedBy: ownerFrom(ctx)})
	if errors.Is(err, mirror.ErrSSHKey) {
		return nil, fmt.Errorf("%w: ssh remotes can only be declared in the config file, with an sshKey", mirror.ErrSSHKey)
	}
	if err != nil {
		return nil, err
	}
	// No clone starts while the server is short of memory.
	if s.shortOfMemory() {
		return nil, fmt.Errorf("onboard %s: %w", id, memlimit.ErrPressure)
	}
	s.setOnboarding(id, actorOf(ctx), true)
	defer s.setOnboarding(id, "", false)
	rf, err := s.register(r)
	if err != nil {
		return nil, err
	}
	res, err := rf.Sync(context.WithoutCancel(ctx), refresh.Onboard)
	if err == nil {
		err = res.Err
	}
	if err == nil {
		err = s.commit(context.WithoutCancel(ctx), r)
	}
	s.metrics.Onboarded(err == nil)
	if err != nil {
		// The refresher is stopped before the directory goes, so no run
		// of it can clone it again.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.syncTimeout)
		defer cancel()
		if s.replicas != nil && !errors.Is(err, ErrRemovedWhileOnboarding) {
			s.abandon(fctx, r)
		} else if ferr := s.forget(fctx, r); ferr != nil && !errors.Is(ferr, ErrNotFound) {
			s.log.Warn("cannot clean up a failed onboarding", "id", r.ID, "err", redact.Error(ferr))
		}
		if errors.Is(err, refresh.ErrRemoved) {
			err = ErrRemovedWhileOnboarding
		}
		return nil, err
	}
	if s.replicas != nil {
		s.replicas.Added(r.ID)
	}
	s.log.Info("mirror onboarded", "id", r.ID, "url", r.Remote)
	s.startLater(rf)
	return r, nil
}

// defaultRepoID is the URL's last path segment without .git.
func defaultRepoID(url string) string {
	u := strings.TrimSuffix(strings.TrimRight(url, "/"), ".git")
	if i := strings.LastIndexAny(u, "/:"); i >= 0 {
		u = u[i+1:]
	}
	return u
}

// register adds a new repository and its refresher.
func (s *Set) register(r *registry.Repo) (*refresh.Refresher, error) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if err := s.reg.Add(r); err != nil {
		return nil, err
	}
	return s.refresh.Add(r), nil
}

// commit stores a mirror whose first clone succeeded, unless it was
// removed meanwhile. A replica's onboarding run stored it already, under
// the lease (Stored).
func (s *Set) commit(ctx context.Context, r *registry.Repo) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if cur, ok := s.reg.Get(r.ID); !ok || cur != r {
		return ErrRemovedWhileOnboarding
	}
	if s.replicas != nil {
		return nil
	}
	return s.store.AddRepo(ctx, stored(r))
}

// stored is the row of an onboarded repository, with its owner.
func stored(r *registry.Repo) store.Repo {
	actor := r.AddedBy.Email
	if actor == "" {
		actor = r.AddedBy.Subject
	}
	return store.Repo{ID: r.ID, URL: r.URL, Trunk: r.Trunk, FullName: r.FullName, CreatedAt: time.Now().UTC(), CreatedBy: actor,
		AddedBySubject: r.AddedBy.Subject, AddedByEmail: r.AddedBy.Email}
}

// Store stores a repository this replica is onboarding, once its first
// clone is in place (refresh.Cluster's Onboarded, under the mirror's
// lease): no replica ever finds the directory without its stored
// repository while the lease is free. A removal that came first is
// ErrRemovedWhileOnboarding.
func (s *Set) Store(ctx context.Context, id string) error {
	r, ok := s.reg.Get(id)
	if !ok {
		return ErrRemovedWhileOnboarding
	}
	return s.store.AddRepo(ctx, stored(r))
}

// abandon cleans up an onboarding that failed on a replica: its refresher
// stops and it leaves this replica; under the mirror's lease, its
// directory and its sync history go only when no replica stored the
// repository (a clone that was not stored; another replica's onboarding
// of the same id keeps its directory).
func (s *Set) abandon(ctx context.Context, r *registry.Repo) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if cur, ok := s.reg.Get(r.ID); !ok || cur != r {
		return
	}
	if err := s.end(ctx, r, ending{}); err != nil {
		s.log.Warn("cannot clean up a failed onboarding", "id", r.ID, "err", err)
		return
	}
	if err := s.underLease(ctx, r.ID, func() error {
		if stored, err := s.storedRepo(ctx, r.ID); err != nil || stored {
			return err
		}
		if err := s.mirrors.Remove(r.ID); err != nil && !errors.Is(err, mirror.ErrNoMirror) {
			return err
		}
		// The failed attempt's syncs go too: the history of a repository
		// id starts with the onboarding that stores it. (A run of another
		// replica's onboarding of the id records its result again.)
		if err := s.store.DeleteSyncs(ctx, r.ID); err != nil {
			return fmt.Errorf("forget the syncs of a failed onboarding: %w", err)
		}
		return nil
	}); err != nil {
		s.log.Warn("cannot remove the directory of a failed onboarding; the next start-up removes it", "id", r.ID, "err", redact.Error(err))
	}
}

// ownerFrom is the owner of a repository the caller onboards: the
// signed-in principal (none when anonymous).
func ownerFrom(ctx context.Context) registry.Owner {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return registry.Owner{}
	}
	return registry.Owner{Subject: p.Subject, Email: p.Email}
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
