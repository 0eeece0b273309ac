// Package replica makes a server one of several replicas: with
// --database-url, any number of `stackd serve` processes share one
// PostgreSQL database and one data directory, and act as one server
// (package cluster: leases and notifications; package refresh: what a run
// of a shared mirror does under its lease). Replica is the refresh.Cluster
// of the refresh manager, the repos.Replicas of the served set, and the
// events.Publisher that relays the events of syncs:
//
//   - One refresh of a mirror at a time, cluster-wide: a run holds the
//     repository's lease from before its fetch until its view is
//     published. Everything else that writes a mirror's directory holds
//     it too: an onboarding's clone and the storing of the repository, a
//     removal's deletion of the directory, the start-up sweeps.
//   - A replica that publishes a new view version tells the others
//     (cluster.KindView); they re-read the refs from the shared directory
//     and publish the same version with the same bytes (Follow). The
//     events of every sync are relayed (cluster.KindEvent) to the other
//     replicas' event streams; a relayed sync_finished waits until the
//     replica serves the view it names.
//   - An onboarding is stored under the mirror's lease, once cloned, and
//     announced (cluster.KindAdded): the others open the mirror from the
//     shared directory, never clone it again. A removal is announced
//     (cluster.KindRemoved) before the directory goes: the others stop
//     their refresher and forget the repository; the directory is
//     deleted under the lease, after their runs. A run of a repository
//     that is no longer stored fails (and forgets it): a replica that
//     missed the notice never fetches a removed repository again.
//   - A replica whose listening connection dropped catches up when it is
//     back: it serves what is stored, forgets what is not, and follows
//     every mirror's current version.
package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/cluster"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/store"
)

// errStoredElsewhere: the onboarding found the id (or URL, or full name)
// stored by another replica, under the lease: 409, and nothing of the
// other's is touched.
var errStoredElsewhere = errors.New("another replica onboarded it meanwhile")

// Served is what the replicas' coordination needs from this server's set
// of repositories (repos.Set).
type Served interface {
	Get(id string) (*registry.Repo, bool)
	List() []*registry.Repo
	Refresher(id string) (*refresh.Refresher, bool)
	// Onboarding reports whether this replica is onboarding the id.
	Onboarding(id string) (actor string, ok bool)
	// Store stores a repository this replica onboarded, once cloned.
	Store(ctx context.Context, id string) error
	// Adopt serves a repository another replica onboarded (an error: the
	// database did not answer); Drop forgets here one another removed.
	Adopt(ctx context.Context, id string) error
	Drop(ctx context.Context, id string)
}

// Store is what replicas share in the database besides the leases: the
// stored repositories, and the agreed version of each view.
type Store interface {
	Repos(ctx context.Context) ([]store.Repo, error)
	store.ViewStore
}

// Options configure a Replica.
type Options struct {
	// Replica is this process's id (--replica-id).
	Replica string
	// Leases bounds the leases held at once (connections).
	Leases int
	// Streams are this server's event streams (*events.Broker).
	Streams events.Publisher
	Logger  *slog.Logger
	// Metrics times the waits for leases and counts those held (nil:
	// none).
	Metrics *metrics.Metrics
}

// Replica is this server's membership of the replicas that share its
// PostgreSQL database.
type Replica struct {
	c       *cluster.Cluster
	st      Store
	streams events.Publisher
	log     *slog.Logger
	served  Served
	metrics *metrics.Metrics

	// inbox queues what the other replicas say (runInbox).
	inbox        chan cluster.Message
	catchUpLater atomic.Bool
}

var (
	_ refresh.Cluster  = (*Replica)(nil)
	_ events.Publisher = (*Replica)(nil)
)

// New joins the replicas that share pg. Serve must be called before any
// repository is served.
func New(pg *store.Postgres, o Options) (*Replica, error) {
	c, err := cluster.New(pg, cluster.Options{Replica: o.Replica, Leases: o.Leases, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	return &Replica{c: c, st: pg, streams: o.Streams, log: o.Logger, metrics: o.Metrics, inbox: make(chan cluster.Message, 1024)}, nil
}

// Serve names the set of repositories this replica serves.
func (r *Replica) Serve(s Served) { r.served = s }

// Start listens to the other replicas until ctx ends.
func (r *Replica) Start(ctx context.Context) {
	go r.runInbox(ctx)
	go r.c.Listen(ctx, handler{r})
}

// Close leaves the cluster (its leases and connections).
func (r *Replica) Close() { r.c.Close() }

// Lease blocks until this process holds the repository's lease.
func (r *Replica) Lease(ctx context.Context, repoID string) (refresh.Lease, error) {
	start := time.Now()
	l, err := r.c.Lease(ctx, cluster.LeaseName(repoID))
	if err != nil {
		return nil, err
	}
	return r.held(l, start), nil
}

// TryLease takes the repository's lease when it is free.
func (r *Replica) TryLease(ctx context.Context, repoID string) (refresh.Lease, bool, error) {
	start := time.Now()
	l, ok, err := r.c.TryLease(ctx, cluster.LeaseName(repoID))
	if err != nil || !ok {
		return nil, ok, err
	}
	return r.held(l, start), true, nil
}

// held counts a lease taken in the metrics (its wait since start; one
// more held until its Release).
func (r *Replica) held(l *cluster.Lease, start time.Time) refresh.Lease {
	if r.metrics == nil {
		return l
	}
	return &countedLease{Lease: l, released: r.metrics.LeaseTaken(time.Since(start))}
}

// countedLease is a lease whose Release the metrics count (once).
type countedLease struct {
	*cluster.Lease
	once     sync.Once
	released func()
}

func (c *countedLease) Release() {
	c.Lease.Release()
	c.once.Do(c.released)
}

// Commit records a view's content hash (refresh.Cluster).
func (r *Replica) Commit(ctx context.Context, repoID, hash string, local int64, builtAt time.Time) (store.View, bool, error) {
	return r.st.CommitView(ctx, repoID, hash, local, builtAt)
}

// Current reads the agreed view (refresh.Cluster).
func (r *Replica) Current(ctx context.Context, repoID string) (store.View, error) {
	return r.st.CurrentView(ctx, repoID)
}

// Published tells the others a new view version (they follow it).
func (r *Replica) Published(repoID string, version int64) {
	r.c.Notify(cluster.Message{Kind: cluster.KindView, Repo: repoID, Version: version})
}

// Added tells the others an onboarded repository was stored (they adopt
// it).
func (r *Replica) Added(repoID string) {
	r.c.Notify(cluster.Message{Kind: cluster.KindAdded, Repo: repoID})
}

// Removed tells the others a repository was removed (they drop it).
func (r *Replica) Removed(repoID string) {
	r.c.Notify(cluster.Message{Kind: cluster.KindRemoved, Repo: repoID})
}

// Guard runs under a mirror's lease before its refresh (refresh.Cluster).
// An onboarding stops when another replica stored the id, URL or full
// name meanwhile; any other run of an onboarded mirror stops when it is
// no longer stored (another replica removed it: this one forgets it
// too).
func (r *Replica) Guard(ctx context.Context, repoID string, _ refresh.Trigger) error {
	repo, ok := r.served.Get(repoID)
	if !ok || repo.Origin != registry.OriginAPI {
		return nil
	}
	stored, err := r.st.Repos(ctx)
	if err != nil {
		return fmt.Errorf("read the stored repositories: %w", err)
	}
	if _, onboarding := r.served.Onboarding(repo.ID); onboarding {
		// The registry's rules (ids, URLs and full names unique), against
		// what the replicas stored.
		probe := registry.New()
		for _, sr := range stored {
			_ = probe.Add(registry.NewMirror(nil, registry.MirrorSpec{ID: sr.ID, Config: mirror.Config{URL: sr.URL}, FullName: sr.FullName}))
		}
		if err := probe.Check(repo.ID, repo.URL, repo.FullName); err != nil {
			return fmt.Errorf("%w: %w", errStoredElsewhere, err)
		}
		return nil
	}
	for _, sr := range stored {
		if strings.EqualFold(sr.ID, repo.ID) {
			return nil
		}
	}
	r.enqueue(cluster.Message{Kind: cluster.KindRemoved, Repo: repo.ID})
	return fmt.Errorf("%w: another replica removed it", refresh.ErrRemoved)
}

// Onboarded stores a mirror whose first clone succeeded, under its lease
// (refresh.Cluster): no replica ever finds the directory without its
// stored repository while the lease is free.
func (r *Replica) Onboarded(ctx context.Context, repoID string) error {
	err := r.served.Store(ctx, repoID)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %w: %q", errStoredElsewhere, registry.ErrDuplicateID, repoID)
	}
	return err
}

// Publish publishes an event to this server's event streams and, for the
// events of a mirror's syncs, relays it to the other replicas
// (events.Publisher).
func (r *Replica) Publish(repoID string, ev events.Event) error {
	err := r.streams.Publish(repoID, ev)
	switch ev.Type {
	case events.SyncStarted, events.SyncFinished, events.SyncFailed:
	default:
		return err // views are followed, not relayed
	}
	repo, ok := r.served.Get(repoID)
	if !ok || repo.Kind != gen.Mirror {
		return err // the working repository is this replica's own
	}
	res, ok := ev.Data.(gen.SyncResult)
	if !ok {
		return err
	}
	data, merr := json.Marshal(res)
	if merr != nil {
		return err
	}
	r.c.Notify(cluster.Message{Kind: cluster.KindEvent, Repo: repoID, Event: ev.Type, Sync: res.Id, Data: data})
	return err
}
