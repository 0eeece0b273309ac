package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
)

// recentRuns is how many finished runs a Refresher keeps in memory, with
// their errors, for callers that wait on a run by id.
const recentRuns = 16

// Refresher serialises and coalesces the refreshes of one repository.
type Refresher struct {
	m       *Manager
	repo    *registry.Repo
	log     *slog.Logger
	builder *view.Builder // used by one run (or follow) at a time: busy

	// busy (a lock: a slot of one) is held by a run's work and
	// publication, by a follow (Follow) and by Full: they use the builder
	// and the source one at a time.
	busy chan struct{}
	// unbuilt: the source changed since the view was last built (that
	// build failed or never published), so the next run or follow builds
	// even when its source reports no change. Guarded by busy.
	unbuilt bool
	// quiet counts the runs in a row that built no view (no-op syncs);
	// at two, a whole interval passed without one, and the source lets
	// its pack indexes go (source.Trimmer). Guarded by busy.
	quiet int

	// ctx is the parent of its runs' contexts: Stop (and the manager's
	// Close) cancel it.
	ctx    context.Context
	cancel context.CancelFunc
	runs   sync.WaitGroup // its run goroutines

	mu      sync.Mutex
	stopped bool
	current *run // running now
	next    *run // queued to start when current ends; absorbs triggers
	// held: next waits for its debounce window (TriggerDebounced) and does
	// not start, even when nothing runs, until released (the window ends,
	// or another trigger joins it). released is closed then.
	held     bool
	released chan struct{}
	lastPoke time.Time // the latest debounced trigger that joined next
	deadline time.Time // the debounced trigger that queued next + MaxDelay
	recent   []*run    // the last finished runs, oldest first (recentRuns)
	status   Status
	// following: a follow goroutine runs; followAgain: a Follow came
	// since it last started reading (it reads once more).
	following, followAgain bool
}

type run struct {
	done chan struct{}
	// stored is closed once the queued record was written (or failed to
	// be): the run's id is handed out only after it, so that the id can
	// be looked up in the store at once.
	stored chan struct{}
	result Result // guarded by Refresher.mu until done is closed
	// followUp: the run loaded a mirror from disk; a refresh must follow.
	followUp bool
	// unstored: the run is not in the store (yet): its queued and
	// running states are not written, only its end, and a no-op run's end
	// a little later with others (endBatch). Only an interval run of the
	// scheduler (Sync with Interval), whose id no caller gets before it
	// ended, is created so; a trigger that joins it and hands its id out
	// stores it first (unlockStored). Guarded by Refresher.mu.
	unstored bool
}

// Repo is the repository this Refresher refreshes.
func (r *Refresher) Repo() *registry.Repo { return r.repo }

// Trigger asks for a refresh and returns at once with the id of the run that
// will serve it, once that run is in the store. Triggers during a run
// coalesce into one follow-up run. A stopped Refresher (a removed
// repository) starts nothing and returns "".
func (r *Refresher) Trigger(t Trigger) string {
	_, id, err := r.enqueue(t, nil)
	if err != nil {
		return ""
	}
	return id
}

// TriggerIf is Trigger that calls admit (when not nil) before it creates a
// new run, under the Refresher's lock; when admit fails, nothing is queued
// and its error is returned (ErrRemoved for a stopped Refresher). Joining
// a queued run does not call admit.
func (r *Refresher) TriggerIf(t Trigger, admit func() error) (string, error) {
	_, id, err := r.enqueue(t, admit)
	return id, err
}

// Sync asks for a refresh and waits for the result of a run that started
// after this call. The run goes on if ctx ends first (others may wait on
// it). A stopped Refresher answers ErrRemoved at once. The result comes
// after the run's sync_finished or sync_failed event was published (a run
// failed while still queued, by Stop or Close, publishes none).
func (r *Refresher) Sync(ctx context.Context, t Trigger) (Result, error) {
	return r.SyncIf(ctx, t, nil)
}

// SyncIf is Sync with admit, as in TriggerIf.
func (r *Refresher) SyncIf(ctx context.Context, t Trigger, admit func() error) (Result, error) {
	ru, _, err := r.enqueueAs(t, admit, t == Interval)
	if err != nil {
		return Result{}, err
	}
	select {
	case <-ru.done:
		return ru.result, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// enqueue returns a run that has not started yet, and its id, once it is
// stored: a new one started now when idle, else the queued follow-up
// (created if needed). A queued run waiting for its debounce window is
// released. admit (when not nil) is called before a run is created; its
// error is returned.
func (r *Refresher) enqueue(t Trigger, admit func() error) (*run, string, error) {
	return r.enqueueAs(t, admit, false)
}

// enqueueAs is enqueue; with waiting, the caller gets the run's id only
// with its end (Sync), and an interval run it creates is stored only when
// it ends (run.unstored): a no-op interval run, the most common run of a
// server with many mirrors, costs one write instead of three.
func (r *Refresher) enqueueAs(t Trigger, admit func() error, waiting bool) (*run, string, error) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, "", ErrRemoved
	}
	var ru *run
	created, store := false, false
	if r.next != nil {
		ru = r.next
		store = r.joinLocked(t, waiting)
		r.releaseLocked()
	} else {
		if admit != nil {
			if err := admit(); err != nil {
				r.mu.Unlock()
				return nil, "", err
			}
		}
		ru, created = r.newRunLocked(t), true
		ru.unstored = waiting && t == Interval
		if r.current == nil {
			r.current = ru
			r.startLocked(ru)
		} else {
			r.next = ru
		}
	}
	return ru, r.unlockStored(ru, created, store), nil
}

// unlockStored releases r.mu, which the caller holds, and returns ru's id
// once ru is stored: a run the caller created is stored here (unless it is
// unstored), one it joined by its creator, or here as well when the join
// made an unstored run stored (store, from joinLocked). Options.Enqueued
// hears of it then.
func (r *Refresher) unlockStored(ru *run, created, store bool) string {
	res := ru.result
	unstored := ru.unstored
	r.mu.Unlock()
	if created {
		if !unstored {
			r.record(res)
		}
		close(ru.stored)
	}
	<-ru.stored
	if store {
		// What the run is now (queued, or running when it started
		// meanwhile): a state write never moves a stored sync back, so
		// this and the run's own writes may come in any order.
		r.record(res)
	}
	r.m.opts.Enqueued(r.repo.ID, res.ID)
	return res.ID
}

// TriggerDebounced is Trigger for webhook pushes, which come in bursts. It
// returns the id of the run that will serve the push, always one that has
// not started yet: the queued run, when there is one, else a new one that
// waits for the debounce window. That run starts once no debounced trigger
// joined it for Options.Debounce, at the latest Options.MaxDelay after it
// was queued, at once when another kind of trigger joins it, and in any
// case only after the running run (if any) has ended. A stopped Refresher
// returns "".
func (r *Refresher) TriggerDebounced(t Trigger) string {
	opts := r.m.opts
	if opts.Debounce <= 0 {
		return r.Trigger(t)
	}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return ""
	}
	ru := r.next
	created, store := false, false
	if ru != nil {
		if r.held {
			r.lastPoke = opts.Clock.Now()
		}
		store = r.joinLocked(t, false)
	} else {
		ru, created = r.newRunLocked(t), true
		r.next, r.held, r.released = ru, true, make(chan struct{})
		r.lastPoke = opts.Clock.Now()
		r.deadline = r.lastPoke.Add(opts.MaxDelay)
		fire := opts.Clock.After(opts.Debounce)
		r.m.wg.Add(1)
		go r.hold(ru, r.released, fire)
	}
	return r.unlockStored(ru, created, store)
}

// hold releases the waiting run ru when its debounce window ends. It
// returns as soon as ru is released otherwise (released is closed: another
// trigger joined it, or the Refresher was stopped), and fails ru when the
// manager closes while ru still waits.
func (r *Refresher) hold(ru *run, released <-chan struct{}, fire <-chan time.Time) {
	defer r.m.wg.Done()
	opts := r.m.opts
	for {
		select {
		case <-released:
			return
		case <-r.ctx.Done():
			r.mu.Lock()
			mine := r.next == ru
			var res Result
			if mine {
				r.next = nil
				r.unholdLocked()
				stop := r.stopErr()
				end := opts.Now().UTC()
				ru.result.State, ru.result.Err, ru.result.Error = Failed, stop, Public(stop)
				ru.result.FinishedAt = &end
				res = ru.result
			}
			r.mu.Unlock()
			if mine {
				r.record(res)
				r.remember(ru)
				close(ru.done)
			}
			return
		case <-fire:
		}
		r.mu.Lock()
		if r.next != ru || !r.held {
			r.mu.Unlock()
			return
		}
		now := opts.Clock.Now()
		wake := r.lastPoke.Add(opts.Debounce)
		if r.deadline.Before(wake) {
			wake = r.deadline
		}
		if !now.Before(wake) {
			r.releaseLocked()
			r.mu.Unlock()
			return
		}
		fire = opts.Clock.After(wake.Sub(now))
		r.mu.Unlock()
	}
}

// unholdLocked ends the debounce wait of next, if any.
func (r *Refresher) unholdLocked() {
	if r.held {
		r.held = false
		close(r.released)
		r.released = nil
	}
}

// releaseLocked ends the debounce wait of next and starts it when nothing
// runs (else it starts when the current run ends).
func (r *Refresher) releaseLocked() {
	r.unholdLocked()
	if r.current == nil && r.next != nil && !r.stopped && r.m.base.Err() == nil {
		r.current, r.next = r.next, nil
		r.startLocked(r.current)
	}
}

// joinLocked makes the trigger t join the queued run next. It reports
// whether the joiner must store the run before it hands out its id: the
// run was unstored, and the joiner is not another waiting interval run.
func (r *Refresher) joinLocked(t Trigger, waiting bool) bool {
	if r.next.result.Trigger == Interval && t != Interval {
		// The result names the caller's trigger rather than the timer.
		r.next.result.Trigger = t
	}
	if r.next.unstored && !(waiting && t == Interval) {
		r.next.unstored = false
		return true
	}
	return false
}

func (r *Refresher) newRunLocked(t Trigger) *run {
	return &run{done: make(chan struct{}), stored: make(chan struct{}), result: Result{
		ID:       newID(),
		RepoID:   r.repo.ID,
		Trigger:  t,
		Mode:     r.repo.Source().Mode(),
		State:    Queued,
		QueuedAt: r.m.opts.Now().UTC(),
		Replica:  r.m.opts.Replica, // ViewVersion: 0 (null) until the run ends
	}}
}

// newID is a UUIDv7: 48 bits of Unix milliseconds, then a counter that
// keeps ids made in one process strictly increasing within a millisecond,
// then random bits (google/uuid).
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}

func (r *Refresher) startLocked(ru *run) {
	r.m.wg.Add(1)
	r.runs.Add(1)
	go r.execute(ru)
}

// record writes res to the store. A failure is logged: the run goes on,
// and callers that wait on it still get its result from memory.
func (r *Refresher) record(res Result) {
	st := r.m.opts.Store
	if st == nil {
		return
	}
	if err := st.PutSync(context.WithoutCancel(r.ctx), res.record(), r.m.opts.History); err != nil {
		r.log.Error("sync not stored", "sync", res.ID, "state", res.State, "err", err)
	}
}

// stopErr is why a run of a cancelled Refresher ends: the manager's
// shutdown, or the repository's removal.
func (r *Refresher) stopErr() error {
	if r.m.base.Err() != nil {
		return ErrClosed
	}
	return ErrRemoved
}

// Stop ends the Refresher of a repository that is being removed: no new
// run starts (Trigger returns "", Sync ErrRemoved), the queued run fails
// with ErrRemoved, and the running one is cancelled; Stop then waits until
// it has ended, so that when Stop returns nil no run of this repository
// is left that could still write its mirror directory. It returns early
// with ctx's error (the running run stays cancelled). Stop is idempotent.
func (r *Refresher) Stop(ctx context.Context) error {
	r.stop()
	done := make(chan struct{})
	go func() {
		r.runs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop refuses new runs, fails the queued one and cancels the running one.
func (r *Refresher) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	queued := r.next
	r.next = nil
	r.unholdLocked()
	var res Result
	if queued != nil {
		end := r.m.opts.Now().UTC()
		queued.result.State, queued.result.Err, queued.result.Error = Failed, ErrRemoved, Public(ErrRemoved)
		queued.result.FinishedAt = &end
		res = queued.result
	}
	r.mu.Unlock()
	r.cancel()
	if r.m.ends != nil {
		// After stopped was set: no end of this repository is deferred
		// any more (deferEnd), and none still waiting is stored.
		r.m.ends.drop(r)
	}
	if queued != nil {
		r.record(res)
		r.remember(queued)
		close(queued.done)
	}
}

// Idle waits until no run of the Refresher is running: it waits for the
// running run, and for each run that starts as one ends (the queued
// follow-up), and returns when a run ends with none started after it, or
// when ctx ends. A queued run that still waits for its debounce window
// (TriggerDebounced) has not started, so Idle does not wait for it, nor
// for a follow of another replica's view (Follow). The runs Idle waited
// for have published their sync_finished or sync_failed event.
func (r *Refresher) Idle(ctx context.Context) error {
	for {
		r.mu.Lock()
		ru := r.current
		r.mu.Unlock()
		if ru == nil {
			return nil
		}
		select {
		case <-ru.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// remember keeps a finished run in memory for Wait and Get.
func (r *Refresher) remember(ru *run) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recent = append(r.recent, ru)
	if over := len(r.recent) - recentRuns; over > 0 {
		r.recent = append([]*run(nil), r.recent[over:]...)
	}
}

// Status returns the repository's refresh status.
func (r *Refresher) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// SetNextScheduled records when the interval scheduler plans the next
// run (nil: none).
func (r *Refresher) SetNextScheduled(t *time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.NextScheduledAt = t
}

// Page reads a page of the repository's results from the store, newest
// first: up to limit (<= 0: 50) results older than the run before (""
// for the newest). Without a store it pages through the recent runs kept
// in memory.
func (r *Refresher) Page(ctx context.Context, limit int, before string) ([]Result, error) {
	if limit <= 0 {
		limit = 50
	}
	st := r.m.opts.Store
	if st == nil {
		var out []Result
		for _, res := range r.memory() {
			if (before == "" || res.ID < before) && len(out) < limit {
				out = append(out, res)
			}
		}
		return out, nil
	}
	// Read before the store: a run stored meanwhile is then in the page.
	unstored := r.unstored(before)
	list, err := st.ListSyncs(ctx, r.repo.ID, before, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(list)+len(unstored))
	for _, sy := range list {
		out = append(out, resultOf(sy))
	}
	return withUnstored(out, unstored, limit), nil
}

// unstored returns the runs of this process older than before ("": any)
// that are not in the store yet (run.unstored: an interval run is stored
// when it ends, a no-op one a little later, see endBatch).
func (r *Refresher) unstored(before string) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for _, ru := range append([]*run{r.next, r.current}, r.recent...) {
		if ru != nil && ru.unstored && (before == "" || ru.result.ID < before) {
			out = append(out, ru.result)
		}
	}
	return out
}

// withUnstored adds to a page of stored results (newest first) the
// unstored runs, in id order, so that the history shows them as it shows
// other runs, and paging by id still returns every result once.
func withUnstored(page, unstored []Result, limit int) []Result {
	if len(unstored) == 0 {
		return page
	}
	for _, res := range unstored {
		// The run may have ended and been stored since the page was read.
		if slices.ContainsFunc(page, func(p Result) bool { return p.ID == res.ID }) {
			continue
		}
		page = append(page, res)
	}
	slices.SortStableFunc(page, func(a, b Result) int { return strings.Compare(b.ID, a.ID) })
	return page[:min(len(page), limit)]
}

// History returns the newest page of results, with the live and recent
// runs as this process knows them (their errors included). A store error
// is logged and leaves only those.
func (r *Refresher) History() []Result {
	mem := r.memory()
	page, err := r.Page(context.Background(), 0, "")
	if err != nil {
		r.log.Error("sync history unreadable", "err", err)
		return mem
	}
	byID := make(map[string]Result, len(mem))
	for _, res := range mem {
		byID[res.ID] = res
	}
	for i, res := range page {
		if m, ok := byID[res.ID]; ok {
			page[i] = m
		}
	}
	return page
}

// memory returns the runs this Refresher holds, newest first: queued,
// running, then the recent finished ones.
func (r *Refresher) memory() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for _, ru := range []*run{r.next, r.current} {
		if ru != nil {
			out = append(out, ru.result)
		}
	}
	for i := len(r.recent) - 1; i >= 0; i-- {
		out = append(out, r.recent[i].result)
	}
	return out
}

// find returns the live or recent run with this id.
func (r *Refresher) find(id string) *run {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ru := range append([]*run{r.current, r.next}, r.recent...) {
		if ru != nil && ru.result.ID == id {
			return ru
		}
	}
	return nil
}

// Wait waits for the run with this id to finish and returns its result:
// a live run from memory, a finished one from memory or the store.
func (r *Refresher) Wait(ctx context.Context, id string) (Result, error) {
	if ru := r.find(id); ru != nil {
		select {
		case <-ru.done:
			return ru.result, nil
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	res, err := r.Lookup(ctx, id)
	if err != nil {
		return Result{}, err
	}
	if res.State == Queued || res.State == Running {
		// Only a run of this process could be waited on; the store's
		// unfinished runs of others are failed at start-up.
		return Result{}, fmt.Errorf("run %q is not a run of this server", id)
	}
	return res, nil
}

// Get returns the live or recent result with this id, from memory.
func (r *Refresher) Get(id string) (Result, bool) {
	ru := r.find(id)
	if ru == nil {
		return Result{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return ru.result, true
}

// Lookup returns one result by id from the store, or from memory when the
// store does not have it (a failed write) or cannot be reached. It is
// store.ErrNotFound when neither has it; the store's error when it cannot
// be reached and memory does not have it.
func (r *Refresher) Lookup(ctx context.Context, id string) (Result, error) {
	if st := r.m.opts.Store; st != nil {
		sy, err := st.GetSync(ctx, r.repo.ID, id)
		if err == nil {
			return resultOf(sy), nil
		}
		if errors.Is(err, store.ErrUnavailable) {
			if res, ok := r.Get(id); ok {
				return res, nil
			}
			return Result{}, err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return Result{}, err
		}
	}
	if res, ok := r.Get(id); ok {
		return res, nil
	}
	return Result{}, fmt.Errorf("run %q: %w", id, store.ErrNotFound)
}
