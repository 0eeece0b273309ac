package refresh

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
)

// Replicas. Several stackd processes (replicas) that share a database and
// a data directory serve the same mirrors. Options.Cluster ties them
// together; for each shared mirror:
//
//   - A run takes the repository's cluster-wide lease (Cluster.Lease)
//     before the source refresh and keeps it until its view is published:
//     at most one replica fetches and writes a mirror at a time. The
//     source then repairs what a dead holder left, re-reads the refs
//     another replica wrote, and syncs (a listing equal to the refs
//     fetches and writes nothing). A lease that is lost (its database
//     connection broke) cancels the run: ErrLeaseLost.
//   - The view's version is the cluster's (Cluster.Commit, decided by the
//     view's content hash under the lease): the same content has the
//     same version and build time on every replica, a new content a
//     version above every replica's. A run that published a new version
//     tells the others (Cluster.Published).
//   - A replica told that another published calls Follow: it re-reads
//     the mirror's refs from disk (never a fetch), rebuilds incrementally
//     and publishes the cluster's version (registry.Repo.PublishAt, which
//     never goes back).
//   - Results of other replicas' runs update this replica's status
//     (Observe).

// Cluster is what a Manager needs from the replicas it belongs to.
type Cluster interface {
	// Lease blocks until this process holds the repository's refresh
	// lease, cluster-wide, or ctx ends. A lease whose holder dies is
	// free at once for the others.
	Lease(ctx context.Context, repoID string) (Lease, error)
	// Commit records content hash as the repository's current view and
	// returns the version and build time every replica serves it with
	// (store.ViewStore.CommitView); created reports a new version.
	Commit(ctx context.Context, repoID, hash string, local int64, builtAt time.Time) (v store.View, created bool, err error)
	// Current returns the repository's current view record
	// (store.ErrNotFound when none).
	Current(ctx context.Context, repoID string) (store.View, error)
	// Published tells the other replicas that this one published a new
	// version of the repository's view (they Follow).
	Published(repoID string, version int64)
	// Guard runs while the run's lease is held, before the source
	// refresh; an error fails the run and nothing is fetched (the
	// server refuses the onboarding of an id another replica stored,
	// and the refresh of a repository another replica removed).
	Guard(ctx context.Context, repoID string, t Trigger) error
	// Onboarded runs while the lease is held, after the source refresh
	// of a run with trigger Onboard succeeded (the first clone is in
	// place); an error fails the run. The server stores the onboarded
	// repository there, so that no other replica sees a mirror
	// directory without its stored repository while the lease is free.
	Onboarded(ctx context.Context, repoID string) error
}

// Lease is a held cluster-wide lease.
type Lease interface {
	// Lost is closed when the lease was lost without Release (its
	// database connection broke): another replica may hold it now.
	Lost() <-chan struct{}
	// Release gives the lease up. It is idempotent.
	Release()
}

// ErrLeaseLost: the run's lease was lost while it ran (the database
// connection that held it broke), so it stopped. It wraps
// store.ErrUnavailable: worth another try once the database answers.
var ErrLeaseLost = fmt.Errorf("the refresh lease was lost (its database connection broke): %w", store.ErrUnavailable)

// shared reports whether this repository is a mirror shared with other
// replicas.
func (r *Refresher) shared() bool {
	s, ok := r.repo.Source().(interface{ Shared() bool })
	return r.m.opts.Cluster != nil && ok && s.Shared()
}

// heldLease is a lease a run holds, with the run's context derived for
// it: cancelled when the lease is lost.
type heldLease struct {
	r      *Refresher
	l      Lease
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	taken  time.Time
}

// takeLease waits for the repository's lease and logs who holds it.
func (r *Refresher) takeLease(ctx context.Context) (*heldLease, error) {
	start := time.Now()
	l, err := r.m.opts.Cluster.Lease(ctx, r.repo.ID)
	if err != nil {
		return nil, fmt.Errorf("refresh lease of %s: %w", r.repo.ID, err)
	}
	h := &heldLease{r: r, l: l, stop: make(chan struct{}), taken: time.Now()}
	h.ctx, h.cancel = context.WithCancelCause(ctx)
	go func() {
		select {
		case <-l.Lost():
			r.log.Warn("refresh lease lost: the run stops")
			h.cancel(ErrLeaseLost)
		case <-h.stop:
		}
	}()
	r.log.Info("refresh lease taken", "waitedMs", time.Since(start).Milliseconds())
	return h, nil
}

// lost reports whether the lease was lost while held (nil: false).
func (h *heldLease) lost() bool {
	return h != nil && errors.Is(context.Cause(h.ctx), ErrLeaseLost)
}

// release gives the lease up (nil: nothing). It is idempotent.
func (h *heldLease) release() {
	if h == nil {
		return
	}
	select {
	case <-h.stop:
		return
	default:
	}
	close(h.stop)
	h.l.Release()
	h.cancel(nil)
	h.r.log.Debug("refresh lease released", "heldMs", time.Since(h.taken).Milliseconds())
}

// publishShared publishes the view of a shared mirror (snap, or prev when
// the run built nothing) with the version the cluster agrees on for its
// content, and tells the other replicas when that is a new version. When
// the database does not answer, the view is published with the next
// local version (the replica's view stays right; the cluster numbers it
// once the database is back).
func (r *Refresher) publishShared(ctx context.Context, prev, snap *view.Snapshot) (*view.Snapshot, bool) {
	opts := r.m.opts
	if snap == nil {
		snap = prev
	}
	v, created, err := opts.Cluster.Commit(ctx, r.repo.ID, snap.ContentHash(), prev.Version(), opts.Now().UTC())
	if err != nil {
		r.log.Warn("view version not agreed with the other replicas; published locally", "err", err)
		if snap == prev {
			return prev, false
		}
		return r.repo.Publish(snap, opts.Now().UTC())
	}
	cur, changed := r.repo.PublishAt(snap, v.Version, v.BuiltAt)
	if created {
		opts.Cluster.Published(r.repo.ID, v.Version)
	}
	return cur, changed
}

// announce publishes the events of a new view.
func (r *Refresher) announce(prev, cur *view.Snapshot) {
	r.m.opts.Metrics.ViewServed(r.repo.ID, cur.ViewSize(), cur.Counts().Branches)
	publish := r.m.opts.Publish
	publish(r.repo.ID, events.Event{Type: events.ViewUpdated, Data: gen.ViewUpdatedEvent{Version: cur.Version()}})
	if from, to := currentBranch(prev), currentBranch(cur); from != to && prev.Version() > 0 {
		publish(r.repo.ID, events.Event{Type: events.BranchSwitched, Data: gen.BranchSwitchedEvent{From: from, To: to}})
	}
}

// rereader is a source that can follow what another process wrote
// (source.Mirror).
type rereader interface {
	Reread(ctx context.Context) (source.Update, error)
}

// Follow makes this replica catch up with the view the cluster agreed on
// for a shared mirror (another replica published it, or this one may have
// missed notices): in the background, it reads the cluster's current
// version; when that is ahead of this replica's view, it re-reads the
// mirror's refs from disk (no fetch), rebuilds incrementally and
// publishes that version, with its build time. Follows coalesce: calls
// during one make it read once more. It does nothing for other
// repositories, or once the Refresher is stopped.
func (r *Refresher) Follow() {
	if !r.shared() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.m.base.Err() != nil {
		return
	}
	r.followAgain = true
	if r.following {
		return
	}
	r.following = true
	r.m.wg.Add(1)
	r.runs.Add(1) // Stop waits for it: it reads the mirror's directory
	go r.followLoop()
}

// CatchUp is Follow, done now: it returns once this replica serves the
// cluster's current view of the repository (or could not read it).
func (r *Refresher) CatchUp() {
	if !r.shared() {
		return
	}
	r.mu.Lock()
	if r.stopped || r.m.base.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.m.wg.Add(1)
	r.runs.Add(1)
	r.mu.Unlock()
	defer r.m.wg.Done()
	defer r.runs.Done()
	r.follow()
}

func (r *Refresher) followLoop() {
	defer r.m.wg.Done()
	defer r.runs.Done()
	for {
		r.mu.Lock()
		if !r.followAgain || r.stopped || r.m.base.Err() != nil {
			r.following = false
			r.mu.Unlock()
			return
		}
		r.followAgain = false
		r.mu.Unlock()
		r.follow()
	}
}

// follow is one catch-up (see Follow).
func (r *Refresher) follow() {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("following the cluster's view panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	rr, ok := r.repo.Source().(rereader)
	if !ok {
		return
	}
	opts := r.m.opts
	ctx, cancel := context.WithTimeout(r.ctx, opts.Timeout)
	defer cancel()
	r.busy <- struct{}{}
	defer func() { <-r.busy }()
	// The version first, then the disk: the refs on disk are at least
	// as new as the version read (a holder writes refs before it
	// commits the version), never older.
	v, err := opts.Cluster.Current(ctx, r.repo.ID)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil {
		r.log.Warn("cannot read the cluster's view version", "err", err)
		return
	}
	prev := r.repo.Snapshot()
	if v.Version < prev.Version() || v.Version == prev.Version() && v.ContentHash == prev.ContentHash() {
		return
	}
	upd, err := rr.Reread(ctx)
	if errors.Is(err, source.ErrNotCloned) || errors.Is(err, source.ErrClosed) {
		return
	}
	if err != nil {
		r.log.Warn("cannot re-read the mirror another replica wrote", "err", r.wrap(err))
		return
	}
	snap := prev
	if upd.Changed {
		r.unbuilt = true // until a view of these refs is published
	}
	if r.unbuilt || prev.Version() == 0 {
		if snap, _, err = r.buildView(ctx, upd.Repo, prev); err != nil {
			r.log.Warn("cannot build the view another replica published", "err", err)
			return
		}
	}
	if snap.ContentHash() != v.ContentHash {
		// The refs moved on since that version was committed: this
		// replica serves the newer refs under it until the next notice.
		r.log.Debug("the mirror moved on since the cluster's version", "version", v.Version)
	}
	cur, changed := r.repo.PublishAt(snap, v.Version, v.BuiltAt)
	r.unbuilt = false
	r.repo.MarkReady()
	if changed {
		r.announce(prev, cur)
		r.log.Info("view follows another replica", "version", cur.Version())
	}
}

// Observe records in this replica's status the result of a run another
// replica finished (relayed to it), so that every replica shows the same
// last attempt, success and error. Results older than the last attempt
// this replica knows are ignored.
func (r *Refresher) Observe(res Result) {
	if res.StartedAt == nil || (res.State != Succeeded && res.State != Failed) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if last := r.status.LastAttemptAt; last != nil && res.StartedAt.Before(*last) {
		return
	}
	r.status.LastAttemptAt = res.StartedAt
	if res.State == Succeeded {
		r.status.LastSuccessAt = res.FinishedAt
		r.status.LastError = ""
		r.status.ConsecutiveFailures = 0
	} else {
		r.status.LastError = res.Error
		r.status.ConsecutiveFailures++
	}
}
