// Package repos is the set of repositories stackd serves (Set): it
// configures them (the working repository and the config file's mirrors,
// with their credentials), restores those onboarded through the API in
// earlier runs, onboards and removes mirrors, adopts and drops those
// other replicas onboarded and removed, and sweeps the mirrors that
// belong to none. It builds every mirror (newMirror) and ends every
// repository through one teardown (end).
//
// Every change of the set (an onboarding's registration and commit, a
// removal, an adoption) holds one lock, so that a removal and an
// onboarding of the same id never interleave. The order of a removal is
// chosen so that a crash at any point leaves nothing a restart would
// resurrect: the refresher is stopped (no run left that could write the
// directory), then the stored row goes (from here on a restart treats the
// directory as an orphan and removes it), then the directory, then the
// in-memory registration.
//
// Its failures are exported sentinels (errors.go), which package api
// matches.
package repos

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/egress"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/watch"
)

// Store is what the set keeps in the database: the repositories onboarded
// through the API, and the sync history it forgets with a mirror.
type Store interface {
	Ping(ctx context.Context) error
	Repos(ctx context.Context) ([]store.Repo, error)
	AddRepo(ctx context.Context, r store.Repo) error
	DeleteRepo(ctx context.Context, id string) error
	DeleteSyncs(ctx context.Context, repoID string) error
}

// Streams ends the event streams of a repository that is no longer served
// (*events.Broker).
type Streams interface {
	End(repoID string, last events.Event) error
}

// Replicas is what the set needs from the other replicas that share its
// database and data directory (package replica; nil for a single
// server): the mirrors' leases, and notices of what it added and
// removed.
type Replicas interface {
	// Lease blocks until this process holds the repository's lease,
	// cluster-wide (the lease its refresh runs hold), or ctx ends.
	Lease(ctx context.Context, repoID string) (refresh.Lease, error)
	// TryLease takes the lease only when it is free.
	TryLease(ctx context.Context, repoID string) (l refresh.Lease, ok bool, err error)
	// Added tells the others this replica stored an onboarded repository
	// (they adopt it); Removed that it removed one (they drop it).
	Added(repoID string)
	Removed(repoID string)
}

// Remotes says where mirrors may connect, and what an upstream may send.
type Remotes struct {
	// AllowLocal permits file:// and plain-path remotes
	// (--allow-local-remotes); AllowPrivate non-public addresses and
	// plain http (--allow-private-remotes).
	AllowLocal, AllowPrivate bool
	// AllowedHosts are the only hosts an onboarded mirror may reach
	// (--allowed-remote-hosts; empty: any).
	AllowedHosts egress.Hosts
	// RootCAs, when set, are the only roots mirrors trust for https;
	// Resolver resolves upstream host names (nil: the system's).
	RootCAs  *x509.CertPool
	Resolver *net.Resolver
	// Limits bound what one fetch may receive (--fetch-max-*).
	Limits config.FetchLimits
}

// Options are what a Set needs.
type Options struct {
	Refresh *refresh.Manager
	Store   Store
	Mirrors *mirror.Root
	Streams Streams
	// Replicas, when set, makes this set one replica's (nil: a single
	// server's, which owns its data directory alone).
	Replicas Replicas
	Remotes  Remotes
	Logger   *slog.Logger
	// SyncTimeout bounds the wait for a removed repository's run.
	SyncTimeout time.Duration
	// SyncInterval is the mirrors' refresh interval (0: none); After
	// overrides the interval scheduler's timer (tests).
	SyncInterval time.Duration
	After        func(time.Duration) <-chan time.Time
	// Schedule, when set, keeps the schedule of shared mirrors in the
	// database (replicas: refresh.Scheduler); nil keeps it in memory.
	Schedule store.ScheduleStore
	// ShortOfMemory refuses onboardings (nil: never).
	ShortOfMemory func() bool
	// Metrics counts the onboardings' clones and every mirror's
	// transfers (nil: none).
	Metrics *metrics.Metrics
}

// Set is the set of served repositories. It is safe for concurrent use.
type Set struct {
	reg      *registry.Registry
	refresh  *refresh.Manager
	store    Store
	mirrors  *mirror.Root
	streams  Streams
	replicas Replicas
	remotes  Remotes
	log      *slog.Logger
	metrics  *metrics.Metrics

	syncTimeout   time.Duration
	shortOfMemory func() bool
	// sched runs the interval runs of every mirror (one goroutine, one
	// timer); Start runs it.
	sched *refresh.Scheduler

	watcher *watch.Watcher // of the working repository; Start runs it

	runMu  sync.Mutex
	runCtx context.Context // set by Start; mirrors added later join the schedule with it

	// lifeMu serialises changes of the set.
	lifeMu sync.Mutex
	// unserved are the lower-case ids of stored repositories that are not
	// served (see Restore); their mirrors are not orphans.
	unserved map[string]bool
	// onboarding are the lower-case ids this replica is onboarding, with
	// the actor (onboardMu).
	onboardMu  sync.Mutex
	onboarding map[string]string
}

// New makes an empty set. Without replicas, the leftovers of clones an
// earlier process left interrupted are removed at once (replicas sweep
// each under its lease instead: Sweep).
func New(o Options) *Set {
	short := o.ShortOfMemory
	if short == nil {
		short = func() bool { return false }
	}
	s := &Set{
		reg: registry.New(), refresh: o.Refresh, store: o.Store, mirrors: o.Mirrors, streams: o.Streams, replicas: o.Replicas,
		remotes: o.Remotes, log: o.Logger, syncTimeout: o.SyncTimeout,
		sched:         o.Refresh.NewScheduler(refresh.SchedulerOptions{Schedule: refresh.Schedule{Interval: o.SyncInterval, After: o.After}, Store: o.Schedule}),
		shortOfMemory: short, metrics: o.Metrics, unserved: map[string]bool{}, onboarding: map[string]string{},
	}
	if s.replicas == nil {
		if removed, err := s.mirrors.SweepTemp(); err != nil {
			s.log.Warn("cannot remove leftovers of interrupted clones", "err", redact.Error(err))
		} else if len(removed) > 0 {
			s.log.Info("removed leftovers of interrupted clones", "count", len(removed))
		}
	}
	return s
}

// Get finds a repository by id (ids match case-insensitively).
func (s *Set) Get(id string) (*registry.Repo, bool) { return s.reg.Get(id) }

// List returns every repository, in id order.
func (s *Set) List() []*registry.Repo { return s.reg.List() }

// ByFullName finds a repository by its forge full name (owner/name).
func (s *Set) ByFullName(fullName string) (*registry.Repo, bool) { return s.reg.ByFullName(fullName) }

// Refresher is the refresher of a served repository.
func (s *Set) Refresher(id string) (*refresh.Refresher, bool) {
	r, ok := s.reg.Get(id)
	if !ok {
		return nil, false
	}
	return s.refresh.Get(r.ID)
}

// Start launches the background work and returns at once: the first
// fetch of every mirror, the interval scheduler with every mirror in it,
// and the watcher of the working repository. It all stops when ctx ends.
// Mirrors added later (onboarded, adopted) join the schedule.
func (s *Set) Start(ctx context.Context) {
	s.runMu.Lock()
	s.runCtx = ctx
	s.runMu.Unlock()
	for _, r := range s.reg.List() {
		rf, ok := s.refresh.Get(r.ID)
		if !ok {
			continue
		}
		if _, ok := r.Source().(*source.Mirror); ok {
			// A mirror on disk is served before any network access; a
			// second start-up run then fetches it (see refresh.Startup).
			rf.Trigger(refresh.Startup)
			s.sched.Add(ctx, rf)
		}
	}
	go s.sched.Run(ctx)
	if s.watcher != nil {
		go s.watcher.Run(ctx)
	}
}

// startLater puts a mirror added after Start in the schedule (none
// before: Start does).
func (s *Set) startLater(rf *refresh.Refresher) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.runCtx != nil {
		s.sched.Add(s.runCtx, rf)
	}
}

// Close stops the watcher of the working repository (nothing else: the
// refresh manager stops the runs).
func (s *Set) Close() {
	if s.watcher != nil {
		_ = s.watcher.Close()
	}
}

// Onboarding reports whether this replica is onboarding the id, and for
// whom (the actor, "" when anonymous).
func (s *Set) Onboarding(id string) (actor string, ok bool) {
	s.onboardMu.Lock()
	defer s.onboardMu.Unlock()
	actor, ok = s.onboarding[strings.ToLower(id)]
	return actor, ok
}

func (s *Set) setOnboarding(id, actor string, on bool) {
	s.onboardMu.Lock()
	defer s.onboardMu.Unlock()
	if on {
		s.onboarding[strings.ToLower(id)] = actor
	} else {
		delete(s.onboarding, strings.ToLower(id))
	}
}

// endStreams ends the event streams of a repository that this server no
// longer serves: each gets a last repo_removed event, then its end. Call
// it after the repository left the registry (the event stream handler
// checks again after subscribing, so no stream outlives it).
func (s *Set) endStreams(id string) {
	if err := s.streams.End(id, events.Event{Type: events.RepoRemoved, Data: gen.RepoRemovedEvent{Id: id}}); err != nil {
		s.log.Error("the event streams of a removed repository were not ended", "id", id, "err", err)
	}
}
