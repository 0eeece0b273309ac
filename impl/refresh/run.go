package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/view"
)

func (r *Refresher) execute(ru *run) {
	defer r.m.wg.Done()
	defer r.runs.Done()
	opts := r.m.opts

	var res Result
	select {
	case r.m.sem <- struct{}{}:
		if r.ctx.Err() == nil {
			res = r.perform(ru)
		} else {
			res = r.cancelled(ru)
		}
		<-r.m.sem
	case <-r.ctx.Done():
		res = r.cancelled(ru)
	}
	// The end is stored before anyone can see it, so that a caller who
	// got the result finds the same in the history (a deferred end is
	// shown from memory until it is: see deferEnd).
	if !r.deferEnd(ru, res) {
		r.record(res)
		r.mu.Lock()
		ru.unstored = false
		r.mu.Unlock()
	}
	r.count(res)

	r.mu.Lock()
	ru.result = res
	// The success time is the run's end, as in the history and on the
	// replicas that observe this run.
	now := opts.Now().UTC()
	end := now
	if res.FinishedAt != nil {
		end = *res.FinishedAt
	}
	r.status.LastAttemptAt = res.StartedAt
	if res.Err == nil {
		r.status.LastSuccessAt = &end
		r.status.LastError = ""
		r.status.ConsecutiveFailures = 0
	} else {
		r.status.LastError = res.Error
		r.status.ConsecutiveFailures++
	}
	r.mu.Unlock()

	// The run's end is published after its status is updated (a
	// subscriber that reads the status sees this run), and before its
	// waiters are released and the next run starts: a client that waited
	// for the run gets its answer after its sync_finished (or
	// sync_failed), and the next run's sync_started comes after it.
	// r.current is still this run meanwhile, so triggers that arrive now
	// join next, which starts only below.
	if res.Err == nil {
		opts.Publish(r.repo.ID, events.Event{Type: events.SyncFinished, Data: res.API()})
	} else {
		opts.Publish(r.repo.ID, events.Event{Type: events.SyncFailed, Data: res.API()})
	}

	r.mu.Lock()
	r.current = nil
	// Not r.ctx.Err(): stop sets stopped under this lock and cancels
	// after it, and no run may follow a stopped one.
	live := !r.stopped && r.m.base.Err() == nil
	var follow *run
	if ru.followUp && live {
		if r.next == nil {
			follow = r.newRunLocked(Startup)
			r.next = follow
		}
		r.unholdLocked() // the mirror on disk must be fetched now
	}
	var abandoned *run
	if r.next != nil {
		switch {
		case !live:
			abandoned, r.next = r.next, nil
			r.unholdLocked()
			stop := r.stopErr()
			abandoned.result.State, abandoned.result.Err, abandoned.result.Error = Failed, stop, Public(stop)
			abandoned.result.FinishedAt = &now
		case !r.held: // a held run starts when its window ends
			r.current, r.next = r.next, nil
			r.startLocked(r.current)
		}
	}
	var abandonedRes, followRes Result
	if abandoned != nil {
		abandonedRes = abandoned.result
	}
	if follow != nil {
		followRes = follow.result
	}
	r.mu.Unlock()
	if follow != nil {
		r.record(followRes)
		close(follow.stored)
	}
	r.remember(ru)
	close(ru.done)
	if abandoned != nil {
		r.record(abandonedRes)
		r.count(abandonedRes)
		r.remember(abandoned)
		close(abandoned.done)
	}
}

// deferEnd hands the end of an unstored no-op interval run of an unshared
// repository to the manager's endBatch, and reports whether it did: the
// run stays unstored until the batch stores it. Others are stored at once
// (replicas read each other's history from the database).
func (r *Refresher) deferEnd(ru *run, res Result) bool {
	if r.m.ends == nil || res.Err != nil || res.Trigger != Interval || res.ChangesTotal != 0 || r.shared() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ru.unstored || r.stopped {
		return false
	}
	r.m.ends.add(r, ru, res.record())
	return true
}

// cancelled is the result of a run that never started: its Refresher was
// stopped or the manager closed first.
func (r *Refresher) cancelled(ru *run) Result {
	r.mu.Lock()
	res := ru.result
	r.mu.Unlock()
	stop := r.stopErr()
	end := r.m.opts.Now().UTC()
	res.State, res.Err, res.Error, res.FinishedAt = Failed, stop, Public(stop), &end
	return res
}

// perform runs one refresh with the timeout and records its result.
func (r *Refresher) perform(ru *run) Result {
	opts := r.m.opts
	r.mu.Lock()
	start := opts.Now().UTC()
	ru.result.State = Running
	ru.result.StartedAt = &start
	r.status.Running = true
	res := ru.result
	unstored := ru.unstored
	r.mu.Unlock()
	opts.Metrics.SyncQueued(string(res.Trigger), start.Sub(res.QueuedAt))
	if !unstored {
		r.record(res)
	}
	opts.Publish(r.repo.ID, events.Event{Type: events.SyncStarted, Data: res.API()})

	ctx, cancel := context.WithTimeout(r.ctx, opts.Timeout)
	defer cancel()
	r.busy <- struct{}{}
	defer func() { <-r.busy }()
	prev := r.repo.Snapshot()
	out, err := r.work(ctx, res.Trigger)
	defer out.lease.release() // after the publication
	res.Mode = out.mode
	res.ViewVersion = prev.Version()
	if err != nil {
		switch {
		case out.lease.lost():
			err = ErrLeaseLost // not the cancellation it caused: that would read as a shutdown
		case r.ctx.Err() != nil:
			err = fmt.Errorf("%w (%w)", r.stopErr(), err)
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, opts.Timeout, err)
		}
		r.log.Warn("refresh failed", "trigger", string(res.Trigger), "mode", string(res.Mode), "err", redact.Error(err))
		if out.snap != nil && !out.shared {
			// The view of the last good refs (fallback).
			cur, changed := r.repo.Publish(out.snap, opts.Now().UTC())
			res.ViewVersion = cur.Version()
			if changed {
				r.announce(prev, cur)
			}
		}
	} else {
		var saved *view.Snapshot // a new view to save (source.ViewKeeper)
		r.unbuilt = false        // published below (or nothing to build)
		res.ChangesTotal = len(out.changes)
		// A copy: the full list of a first clone is not kept in history.
		res.Changes = slices.Clone(out.changes[:min(len(out.changes), MaxReportedChanges)])
		if out.shared {
			cur, changed := r.publishShared(out.ctx, prev, out.snap)
			res.ViewVersion = cur.Version()
			if changed {
				r.announce(prev, cur)
			}
		} else if out.snap != nil {
			cur, changed := r.repo.Publish(out.snap, opts.Now().UTC())
			res.ViewVersion = cur.Version()
			if changed {
				r.announce(prev, cur)
				if !out.restored {
					saved = cur
				}
			}
		}
		if out.restored {
			r.log.Info("view loaded from its saved form", "trigger", res.Trigger, "ms", float64(time.Since(out.buildStart).Microseconds())/1000)
		} else if out.snap != nil {
			st := out.stats
			built := time.Since(out.buildStart) - out.commit
			opts.Metrics.ViewBuilt(buildKind(st), built)
			r.log.Info("view built", "trigger", string(res.Trigger), "full", st.Full, "patched", st.Patched,
				"branches", st.Branches, "recomputed", st.Recomputed,
				"ms", float64(built.Microseconds())/1000,
				"commitMs", float64(out.commit.Microseconds())/1000)
		}
		if saved != nil {
			r.save(saved, out.repo) // after the build's time: not part of it
		}
	}
	if err == nil && (res.Trigger == Onboard || res.Trigger == Startup) {
		// Nobody has asked for this view's records yet: a thousand
		// onboarded or restarted mirrors keep only their views' bytes
		// until a request or a change needs more.
		r.hollow()
	}
	r.repo.MarkReady()
	ru.followUp = err == nil && out.loaded
	end := opts.Now().UTC()
	dur := end.Sub(start).Milliseconds()
	res.FinishedAt, res.DurationMs = &end, &dur
	if err != nil {
		res.State, res.Err, res.Error = Failed, err, Public(err)
	} else {
		res.State = Succeeded
		// Plain strings: slog would encode the named string types as
		// JSON by reflection, at every run of every repository.
		// A no-op interval run is most runs of a server with many
		// mirrors, and says nothing happened: debug level.
		level := slog.LevelInfo
		if res.Trigger == Interval && res.ChangesTotal == 0 && out.snap == nil {
			level = slog.LevelDebug
		}
		r.log.Log(context.Background(), level, "refresh done", "trigger", string(res.Trigger), "mode", string(res.Mode), "updated", res.ChangesTotal, "version", res.ViewVersion, "ms", dur)
	}
	r.mu.Lock()
	r.status.Running = false
	r.mu.Unlock()
	return res
}

// count counts a run that ended on this process in the metrics.
func (r *Refresher) count(res Result) {
	ran := time.Duration(-1) // never started
	if res.StartedAt != nil && res.FinishedAt != nil {
		ran = res.FinishedAt.Sub(*res.StartedAt)
	}
	changed := 0
	if res.Err == nil {
		changed = res.ChangesTotal
	}
	r.m.opts.Metrics.SyncEnded(r.repo.ID, string(res.Trigger), string(res.Mode), Outcome(res.Err), ran, changed)
}

// Outcome is the outcome label of a run's metrics: succeeded, or why it
// failed (one word of a bounded set).
func Outcome(err error) string {
	switch {
	case err == nil:
		return "succeeded"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrFetch):
		return "fetch_failed"
	case errors.Is(err, ErrBuild):
		return "build_failed"
	case errors.Is(err, ErrLeaseLost):
		return "lease_lost"
	case errors.Is(err, ErrStorage):
		return "storage_failed"
	case errors.Is(err, ErrClosed), errors.Is(err, ErrRemoved):
		return "cancelled"
	case errors.Is(err, ErrPanic):
		return "panic"
	}
	return "failed"
}

// buildKind is the kind label of a view build's metrics.
func buildKind(st view.Stats) string {
	switch {
	case st.Full:
		return "full"
	case st.Patched:
		return "patched"
	}
	return "incremental"
}

// outcome is what a run's work produced.
type outcome struct {
	mode       Mode
	changes    []refs.Change
	snap       *view.Snapshot // nil: nothing to publish
	stats      view.Stats
	buildStart time.Time
	// commit is how long publishing what the source fetched took (a
	// mirror's pack moved into place, its refs written, fsynced), between
	// the build and the view's publication: not part of the build.
	commit time.Duration
	loaded bool // read from disk without refreshing; a refresh must follow
	// repo is the repository the view was built from (nil when none was);
	// restored: snap is the view saved for its refs (not built).
	repo     view.Repo
	restored bool
	// shared: a shared mirror of a cluster; its view is published with
	// the version the cluster agrees on (publishShared).
	shared bool
	// lease is the repository's cluster-wide lease, held from before the
	// source refresh until the publication (nil when none was taken);
	// ctx is the run's context, cancelled when the lease is lost.
	lease *heldLease
	ctx   context.Context
}

// idleRuns is how many runs in a row must build nothing before a
// repository counts as idle (see Refresher.quiet).
const idleRuns = 2

// work asks the source for what changed and rebuilds the view when
// anything did. A panic fails the run with ErrPanic.
func (r *Refresher) work(ctx context.Context, t Trigger) (out outcome, err error) {
	src := r.repo.Source()
	out.mode = src.Mode()
	out.shared = r.shared()
	out.ctx = ctx
	// The view is built: its source's object cache is not needed. A
	// repository idle for a whole interval also lets its pack indexes and
	// its view's serialized forms go (README, Memory).
	defer func() {
		if out.buildStart.IsZero() {
			r.quiet++
		} else {
			r.quiet = 0
		}
		idle := r.quiet >= idleRuns
		if tr, ok := src.(source.Trimmer); ok {
			tr.Trim(idle)
		}
		if idle {
			r.hollow()
			r.repo.Snapshot().Release()
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("refresh panicked", "panic", p, "stack", string(debug.Stack()))
			out.lease.release()
			out, err = outcome{mode: out.mode}, ErrPanic
		}
	}()
	prev := r.repo.Snapshot()
	var upd source.Update
	loaded := false
	if t == Startup && prev.Version() == 0 {
		repo, fresh, lerr := src.Load(ctx)
		switch {
		case lerr == nil:
			upd = source.Update{Repo: repo, Changed: true}
			out.mode, loaded = ModeReread, !fresh
		case !errors.Is(lerr, source.ErrNotCloned):
			return out, r.wrap(lerr)
		}
	}
	if upd.Repo == nil {
		if out.shared {
			// One refresh of a repository at a time, cluster-wide: the
			// source refresh (fetch and writes), the build and the
			// publication happen under the repository's lease.
			if out.lease, err = r.takeLease(ctx); err != nil {
				return out, err
			}
			ctx = out.lease.ctx
			out.ctx = ctx
			if err := r.m.opts.Cluster.Guard(ctx, r.repo.ID, t); err != nil {
				return out, err
			}
		}
		if hook := r.m.opts.BeforeRefresh; hook != nil {
			if err := hook(ctx, r.repo.ID, src.Mode()); err != nil {
				return out, err
			}
		}
		if upd, err = src.Refresh(ctx, r.builder.Cache()); err != nil {
			return out, r.wrap(err)
		}
		if out.shared && t == Onboard {
			if err := r.m.opts.Cluster.Onboarded(ctx, r.repo.ID); err != nil {
				return out, err
			}
		}
	}
	// What the source fetched stays pending (a mirror's pack in its
	// quarantine, its refs unmoved) until the view of it was built: a
	// repository whose new refs cannot make a view keeps the mirror and
	// the view it had.
	finished := false
	defer func() {
		if !finished {
			_ = upd.Finish(ctx, false)
		}
	}()
	if err := refs.Classify(ctx, upd.Changes, r.builder.Cache().Commits(upd.Repo), 0); err != nil {
		return out, err
	}
	out.changes, out.loaded = upd.Changes, loaded
	if upd.Changed {
		r.unbuilt = true // until a view of these refs is published
	}
	if !r.unbuilt && prev.Version() > 0 {
		return out, nil // nothing changed: no rebuild
	}
	out.buildStart = time.Now()
	out.repo = upd.Repo
	if loaded && prev.Version() == 0 {
		if snap := r.restore(upd.Repo); snap != nil {
			finished = true // a Load has nothing to commit
			out.snap, out.restored = snap, true
			return out, nil
		}
	}
	snap, stats, err := r.buildView(ctx, upd.Repo, prev)
	if err != nil {
		if errors.Is(err, ErrBuild) && prev.Version() == 0 {
			out.snap, out.stats = r.fallback(ctx, src, prev)
		}
		return out, err
	}
	finished = true
	commitStart := time.Now()
	if err := upd.Finish(ctx, true); err != nil {
		return out, r.wrap(err)
	}
	out.commit = time.Since(commitStart)
	out.snap, out.stats = snap, stats
	return out, nil
}

// fallback builds the view of the refs of the source's last good view
// (source.Fallback), when its current refs make no view and no view is
// served yet (a start-up): the run still fails, but the repository is
// served as it was. Nil when there is none, or it makes no view either.
func (r *Refresher) fallback(ctx context.Context, src source.Source, prev *view.Snapshot) (*view.Snapshot, view.Stats) {
	fb, ok := src.(source.Fallback)
	if !ok || r.shared() {
		return nil, view.Stats{}
	}
	repo, ok, err := fb.LastGood(ctx)
	if err != nil || !ok {
		if err != nil {
			r.log.Warn("the last good refs could not be read", "err", redact.Error(err))
		}
		return nil, view.Stats{}
	}
	snap, stats, err := r.buildView(ctx, repo, prev)
	if err != nil {
		r.log.Warn("the last good refs make no view either", "err", redact.Error(err))
		return nil, view.Stats{}
	}
	r.log.Warn("serving the view of the last good refs: the current ones make none")
	return snap, stats
}

// buildView builds the view of repo from prev (BeforeBuild first).
func (r *Refresher) buildView(ctx context.Context, repo view.Repo, prev *view.Snapshot) (*view.Snapshot, view.Stats, error) {
	if hook := r.m.opts.BeforeBuild; hook != nil {
		if err := hook(ctx, r.repo.ID); err != nil {
			return nil, view.Stats{}, fmt.Errorf("build view: %w", err)
		}
	}
	snap, stats, err := r.builder.Build(ctx, repo, prev)
	if err != nil {
		if ctx.Err() != nil {
			return nil, stats, fmt.Errorf("build view: %w", err)
		}
		return nil, stats, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	return snap, stats, nil
}

// wrap marks upstream failures with ErrFetch (their text is stackd's own
// wording and may be shown to clients, see Public), and the mirror's disk
// failures with ErrStorage (a 500: their text names local paths). Other
// errors stay as they are.
func (r *Refresher) wrap(err error) error {
	switch {
	case errors.Is(err, mirror.ErrStorage) && !errors.Is(err, ErrStorage):
		return fmt.Errorf("%w: %w", ErrStorage, err)
	case errors.Is(err, mirror.ErrFetch) && !errors.Is(err, ErrFetch) && !errors.Is(err, ErrStorage):
		return fmt.Errorf("%w: %w", ErrFetch, err)
	}
	return err
}

func currentBranch(s *view.Snapshot) string {
	if b := s.Repo().CurrentBranch; b != nil {
		return *b
	}
	return ""
}
