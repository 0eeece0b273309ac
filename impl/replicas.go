package impl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stackd/stackd/gen"
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

// Replicas. With --database-url, any number of `stackd serve` processes
// share one PostgreSQL database and one data directory, and act as one
// server (package cluster: leases and notifications; package refresh:
// what a run of a shared mirror does under its lease):
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

// errStoredElsewhere: the onboarding found the id (or URL, or full name)
// stored by another replica, under the lease: 409, and nothing of the
// other's is touched.
var errStoredElsewhere = errors.New("another replica onboarded it meanwhile")

// replicaCluster is the refresh.Cluster of a server on PostgreSQL.
type replicaCluster struct {
	c  *cluster.Cluster
	st store.ViewStore
	a  *App
}

func (rc replicaCluster) Lease(ctx context.Context, repoID string) (refresh.Lease, error) {
	l, err := rc.c.Lease(ctx, cluster.LeaseName(repoID))
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (rc replicaCluster) Commit(ctx context.Context, repoID, hash string, local int64, builtAt time.Time) (store.View, bool, error) {
	return rc.st.CommitView(ctx, repoID, hash, local, builtAt)
}

func (rc replicaCluster) Current(ctx context.Context, repoID string) (store.View, error) {
	return rc.st.CurrentView(ctx, repoID)
}

func (rc replicaCluster) Published(repoID string, version int64) {
	rc.c.Notify(cluster.Message{Kind: cluster.KindView, Repo: repoID, Version: version})
}

func (rc replicaCluster) Guard(ctx context.Context, repoID string, t refresh.Trigger) error {
	return rc.a.leaseGuard(ctx, repoID, t)
}

func (rc replicaCluster) Onboarded(ctx context.Context, repoID string) error {
	return rc.a.leaseOnboarded(ctx, repoID)
}

// joinCluster makes this server a replica when its store is PostgreSQL.
func (a *App) joinCluster() error {
	pg, ok := a.store.(*store.Postgres)
	if !ok {
		return nil
	}
	c, err := cluster.New(pg, cluster.Options{Replica: a.replica, Leases: a.cfg.SyncWorkers + 4, Logger: a.log})
	if err != nil {
		return err
	}
	a.cluster = c
	a.inbox = make(chan cluster.Message, 1024)
	a.cleanups = append(a.cleanups, c.Close)
	return nil
}

// clustered returns the refresh options that tie the refresh manager to
// the other replicas (none without a cluster).
func (a *App) clustered(opts refresh.Options) refresh.Options {
	if a.cluster == nil {
		return opts
	}
	opts.Cluster = replicaCluster{c: a.cluster, st: a.store, a: a}
	return opts
}

// leaseGuard runs under a mirror's lease before its refresh. An
// onboarding stops when another replica stored the id, URL or full name
// meanwhile; any other run of an onboarded mirror stops when it is no
// longer stored (another replica removed it: this one forgets it too).
func (a *App) leaseGuard(ctx context.Context, repoID string, t refresh.Trigger) error {
	r, ok := a.reg.Get(repoID)
	if !ok || r.Origin != registry.OriginAPI {
		return nil
	}
	stored, err := a.store.Repos(ctx)
	if err != nil {
		return fmt.Errorf("read the stored repositories: %w", err)
	}
	if a.isOnboarding(r.ID) {
		// The registry's rules (ids, URLs and full names unique), against
		// what the replicas stored.
		probe := registry.New()
		for _, sr := range stored {
			_ = probe.Add(registry.NewMirror(nil, registry.MirrorSpec{ID: sr.ID, Config: mirror.Config{URL: sr.URL}, FullName: sr.FullName}))
		}
		if err := probe.Check(r.ID, r.URL, r.FullName); err != nil {
			return fmt.Errorf("%w: %w", errStoredElsewhere, err)
		}
		return nil
	}
	for _, sr := range stored {
		if strings.EqualFold(sr.ID, r.ID) {
			return nil
		}
	}
	a.enqueue(cluster.Message{Kind: cluster.KindRemoved, Repo: r.ID})
	return fmt.Errorf("%w: another replica removed it", refresh.ErrRemoved)
}

// leaseOnboarded stores a mirror whose first clone succeeded, under its
// lease: no replica ever finds the directory without its stored
// repository while the lease is free.
func (a *App) leaseOnboarded(ctx context.Context, repoID string) error {
	r, ok := a.reg.Get(repoID)
	if !ok {
		return repos.ErrRemovedWhileOnboarding
	}
	err := a.store.AddRepo(ctx, store.Repo{
		ID: r.ID, URL: r.URL, Trunk: r.Trunk, FullName: r.FullName,
		CreatedAt: time.Now().UTC(), CreatedBy: a.onboarder(r.ID),
	})
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %w: %q", errStoredElsewhere, registry.ErrDuplicateID, r.ID)
	}
	return err
}

// isOnboarding reports whether this replica is onboarding the id.
func (a *App) isOnboarding(id string) bool {
	a.onboardMu.Lock()
	defer a.onboardMu.Unlock()
	_, ok := a.onboarding[strings.ToLower(id)]
	return ok
}

// onboarder is the actor onboarding the id here.
func (a *App) onboarder(id string) string {
	a.onboardMu.Lock()
	defer a.onboardMu.Unlock()
	return a.onboarding[strings.ToLower(id)]
}

func (a *App) setOnboarding(id, actor string, on bool) {
	a.onboardMu.Lock()
	defer a.onboardMu.Unlock()
	if on {
		a.onboarding[strings.ToLower(id)] = actor
	} else {
		delete(a.onboarding, strings.ToLower(id))
	}
}

// abandonOnboarding cleans up an onboarding that failed on a replica: its
// refresher stops and it leaves this replica; under the mirror's lease,
// its directory goes only when no replica stored the repository (a clone
// that was not stored; another replica's onboarding of the same id keeps
// its directory).
func (a *App) abandonOnboarding(ctx context.Context, r *registry.Repo) {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if cur, ok := a.reg.Get(r.ID); !ok || cur != r {
		return
	}
	if rf, ok := a.refresh.Get(r.ID); ok {
		if err := rf.Stop(ctx); err != nil {
			a.log.Warn("cannot clean up a failed onboarding", "id", r.ID, "err", err)
			return
		}
	}
	if src, ok := r.Source().(*source.Mirror); ok {
		_ = src.Close()
	}
	a.reg.Remove(r)
	a.refresh.Remove(r.ID)
	a.endStreams(r.ID)
	if err := a.underLease(ctx, r.ID, func() error {
		if stored, err := a.storedRepo(ctx, r.ID); err != nil || stored {
			return err
		}
		if err := a.mirrors.Remove(r.ID); err != nil && !errors.Is(err, mirror.ErrNoMirror) {
			return err
		}
		return nil
	}); err != nil {
		a.log.Warn("cannot remove the directory of a failed onboarding; the next start-up removes it", "id", r.ID, "err", redact.Error(err))
	}
}

// underLease runs fn holding the mirror's lease.
func (a *App) underLease(ctx context.Context, id string, fn func() error) error {
	l, err := a.cluster.Lease(ctx, cluster.LeaseName(id))
	if err != nil {
		return err
	}
	defer l.Release()
	return fn()
}

// storedRepo reports whether the id is stored.
func (a *App) storedRepo(ctx context.Context, id string) (bool, error) {
	stored, err := a.store.Repos(ctx)
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

// sweepShared is the start-up sweep of a shared data directory: the
// leftovers of interrupted clones and removals, and the mirrors that
// belong to no repository, each only under its lease (taken without
// waiting: a lease held elsewhere means another replica is working on
// it, and this sweep leaves it alone) and, for a mirror, only when no
// repository is stored under its id once the lease is held (an
// onboarding stores its repository before it releases the lease).
func (a *App) sweepShared(ctx context.Context) {
	ids, err := a.mirrors.Leftovers()
	if err != nil {
		a.log.Warn("cannot list the leftovers of interrupted clones", "err", redact.Error(err))
	}
	for _, id := range ids {
		a.tryUnderLease(ctx, id, func() {
			removed, err := a.mirrors.SweepTempOf(id)
			if err != nil {
				a.log.Warn("cannot remove leftovers of interrupted clones", "id", id, "err", redact.Error(err))
			} else if len(removed) > 0 {
				a.log.Info("removed leftovers of interrupted clones", "id", id, "count", len(removed))
			}
		})
	}
	ids, err = a.mirrors.Mirrors()
	if err != nil {
		a.log.Warn("cannot list the mirrors", "err", redact.Error(err))
		return
	}
	for _, id := range ids {
		if _, ok := a.reg.Get(id); ok || a.unserved[strings.ToLower(id)] {
			continue
		}
		a.tryUnderLease(ctx, id, func() {
			if stored, err := a.storedRepo(ctx, id); err != nil || stored {
				if err != nil {
					a.log.Warn("cannot sweep a mirror: the database did not answer", "id", id, "err", redact.Error(err))
				}
				return
			}
			a.removeOrphan(ctx, id)
		})
	}
}

// tryUnderLease runs fn when the mirror's lease is free, holding it.
func (a *App) tryUnderLease(ctx context.Context, id string, fn func()) {
	l, ok, err := a.cluster.TryLease(ctx, cluster.LeaseName(id))
	switch {
	case err != nil:
		a.log.Warn("cannot sweep a mirror: no lease", "id", id, "err", redact.Error(err))
	case !ok:
		a.log.Info("not sweeping a mirror another replica is working on", "id", id)
	default:
		defer l.Release()
		fn()
	}
}

// relay publishes an event to this server's event streams and, for the
// events of a mirror's syncs, relays it to the other replicas.
type relay struct{ a *App }

func (rl relay) Publish(repoID string, ev events.Event) error {
	a := rl.a
	err := a.broker.Publish(repoID, ev)
	if a.cluster == nil {
		return err
	}
	switch ev.Type {
	case events.SyncStarted, events.SyncFinished, events.SyncFailed:
	default:
		return err // views are followed, not relayed
	}
	r, ok := a.reg.Get(repoID)
	if !ok || r.Kind != gen.Mirror {
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
	a.cluster.Notify(cluster.Message{Kind: cluster.KindEvent, Repo: repoID, Event: ev.Type, Sync: res.Id, Data: data})
	return err
}

// clusterHandler hands the listener's messages to the inbox.
type clusterHandler struct{ a *App }

// connected is the inbox's own message kind: the listening connection is
// (again) ready; Version is 1 the first time.
const connected = "connected"

func (h clusterHandler) Connected(first bool) {
	m := cluster.Message{Kind: connected}
	if first {
		m.Version = 1
	}
	h.a.enqueue(m)
}

func (h clusterHandler) Message(m cluster.Message) { h.a.enqueue(m) }

// enqueue queues m for the inbox. When the inbox is full, m is dropped
// and a catch-up is queued once there is room (as after a lost
// connection).
func (a *App) enqueue(m cluster.Message) {
	select {
	case a.inbox <- m:
	default:
		a.log.Warn("cluster notice dropped: the inbox is full; catching up later", "kind", m.Kind, "repo", m.Repo)
		a.catchUpLater.Store(true)
	}
}

// runInbox handles what the other replicas say, in order, off the
// listener's goroutine, until ctx ends.
func (a *App) runInbox(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-a.inbox:
			a.handle(ctx, m)
			if len(a.inbox) == 0 && a.catchUpLater.CompareAndSwap(true, false) {
				a.catchUp(ctx, false)
			}
		}
	}
}

func (a *App) handle(ctx context.Context, m cluster.Message) {
	switch m.Kind {
	case connected:
		a.catchUp(ctx, m.Version == 1)
	case cluster.KindView:
		if rf, ok := a.refresherOf(m.Repo); ok {
			rf.Follow()
		}
	case cluster.KindEvent:
		a.relayed(ctx, m)
	case cluster.KindAdded:
		a.adopt(ctx, m.Repo)
	case cluster.KindRemoved:
		a.dropLocal(ctx, m.Repo)
	}
}

func (a *App) refresherOf(id string) (*refresh.Refresher, bool) {
	r, ok := a.reg.Get(id)
	if !ok {
		return nil, false
	}
	return a.refresh.Get(r.ID)
}

// relayed publishes another replica's sync event to this server's event
// streams. A finished sync updates the repository's status here; when it
// names a view version this replica does not serve yet, the replica
// catches up first, so that a client that reads the view when told the
// sync finished gets that version.
func (a *App) relayed(ctx context.Context, m cluster.Message) {
	rf, ok := a.refresherOf(m.Repo)
	if !ok {
		return
	}
	data := m.Data
	if data == nil { // too large for the notice: the store has it
		res, err := rf.Lookup(ctx, m.Sync)
		if err != nil {
			a.log.Warn("relayed sync event lost: the sync is not readable", "repo", m.Repo, "sync", m.Sync, "err", redact.Error(err))
			return
		}
		if data, err = json.Marshal(res.API()); err != nil {
			return
		}
	}
	var sr gen.SyncResult
	if err := json.Unmarshal(data, &sr); err != nil {
		a.log.Warn("unreadable relayed sync event", "repo", m.Repo, "err", err)
		return
	}
	if m.Event == events.SyncFinished || m.Event == events.SyncFailed {
		res := refresh.Result{State: refresh.State(sr.State), StartedAt: sr.StartedAt, FinishedAt: sr.FinishedAt}
		if sr.Error != nil {
			res.Error = *sr.Error
		}
		rf.Observe(res)
		if sr.ViewVersion != nil && *sr.ViewVersion > rf.Repo().Snapshot().Version() {
			rf.CatchUp()
		}
	}
	if err := a.broker.Publish(rf.Repo().ID, events.Event{Type: m.Event, Data: json.RawMessage(data)}); err != nil {
		a.log.Error("event not published", "repo", m.Repo, "err", err)
	}
}

// catchUp brings this replica in line with the database after its
// listening connection was (re)established: the onboarded repositories
// another replica stored are served, those no longer stored are
// forgotten, and (after a reconnection, when notices may have been lost)
// every mirror follows the cluster's current view.
func (a *App) catchUp(ctx context.Context, first bool) {
	stored, err := a.store.Repos(ctx)
	if err != nil {
		a.log.Warn("cannot catch up with the other replicas: the database did not answer", "err", redact.Error(err))
		a.catchUpLater.Store(true)
		return
	}
	storedIDs := map[string]bool{}
	for _, sr := range stored {
		storedIDs[strings.ToLower(sr.ID)] = true
		if _, ok := a.reg.Get(sr.ID); !ok {
			a.adopt(ctx, sr.ID)
		}
	}
	for _, r := range a.reg.List() {
		if r.Origin == registry.OriginAPI && !storedIDs[strings.ToLower(r.ID)] && !a.isOnboarding(r.ID) {
			a.dropLocal(ctx, r.ID)
		}
	}
	if first {
		return // the start-up runs read every mirror
	}
	for _, r := range a.reg.List() {
		if rf, ok := a.refresh.Get(r.ID); ok {
			rf.Follow()
		}
	}
}

// adopt serves a repository another replica onboarded: stored, and cloned
// into the shared directory, which this replica opens (it never clones
// it again), following the cluster's view.
func (a *App) adopt(ctx context.Context, id string) {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if _, ok := a.reg.Get(id); ok || a.unserved[strings.ToLower(id)] {
		return
	}
	stored, err := a.store.Repos(ctx)
	if err != nil {
		a.log.Warn("cannot serve a repository another replica onboarded: the database did not answer", "id", id, "err", redact.Error(err))
		a.catchUpLater.Store(true)
		return
	}
	for _, sr := range stored {
		if !strings.EqualFold(sr.ID, id) {
			continue
		}
		log := a.log.With("id", sr.ID, "url", redact.URL(sr.URL))
		r, err := a.newMirror(remoteSpec{id: sr.ID, url: sr.URL, trunk: sr.Trunk, fullName: sr.FullName, onboarded: true})
		if err != nil {
			log.Warn("repository onboarded by another replica not served: the current settings refuse its remote", "err", redact.Error(err))
			a.unserved[strings.ToLower(sr.ID)] = true
			return
		}
		if err := a.reg.Add(r); err != nil {
			log.Warn("repository onboarded by another replica not served", "err", err)
			return
		}
		rf := a.refresh.Add(r)
		rf.Follow()
		a.runMu.Lock()
		if a.runCtx != nil {
			a.startInterval(a.runCtx, rf)
		}
		a.runMu.Unlock()
		log.Info("serving a repository another replica onboarded")
		return
	}
}

// dropLocal forgets, on this replica only, an onboarded repository that
// another replica removed: its refresher stops (its run cancelled and
// awaited), its mirror is closed, it leaves the registry. The stored row
// and the directory are the removing replica's business.
func (a *App) dropLocal(ctx context.Context, id string) {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	r, ok := a.reg.Get(id)
	if !ok || r.Origin != registry.OriginAPI || a.isOnboarding(r.ID) {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, a.cfg.SyncTimeout)
	defer cancel()
	if rf, ok := a.refresh.Get(r.ID); ok {
		if err := rf.Stop(sctx); err != nil {
			a.log.Warn("a repository another replica removed: its refresh did not stop", "id", r.ID, "err", err)
		}
	}
	if src, ok := r.Source().(*source.Mirror); ok {
		_ = src.Close()
	}
	a.reg.Remove(r)
	a.refresh.Remove(r.ID)
	a.endStreams(r.ID)
	a.log.Info("repository removed by another replica", "id", r.ID)
}
