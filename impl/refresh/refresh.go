// Package refresh is the one way into a refresh of a repository.
//
// Every trigger (manual sync, webhook, interval loop, watcher, onboarding,
// start-up) calls the repository's Refresher. A Refresher runs at most one
// refresh of its repository at a time; triggers that arrive during a run
// coalesce into exactly one follow-up run, and a caller that waits (Sync)
// always gets the result of a run that started after its request. Runs of
// different repositories share a bounded pool of workers, each run has a
// timeout, and a panic in a run fails that run, not the process.
//
// Webhook pushes are debounced (TriggerDebounced): the run a push queues
// waits until no push joined it for Options.Debounce, and at most
// Options.MaxDelay, so a burst of pushes costs one refresh, plus at most one
// for pushes that arrive while it runs. Any other trigger that joins a
// waiting run starts it at once. A trigger that joins a queued run creates
// nothing, so callers that pay for new runs (rate limits) pass an admit
// function that is called only when a run is created (TriggerIf, SyncIf).
//
// What a run does is the repository's source's business (package source,
// where the kind was decided once): a mirror lists its upstream and fetches
// only what changed, a working repository has its refs re-read. The run
// classifies the changed refs (refs.Classify, bounded), and when anything
// changed rebuilds the view incrementally from the previous snapshot
// (view.Builder) and publishes it atomically. A no-op mirror sync rebuilds
// nothing. A failed refresh or rebuild keeps the last good snapshot and
// records the error.
package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
)

// Trigger says what asked for a refresh.
type Trigger string

// The triggers.
const (
	Manual   Trigger = "manual"
	Webhook  Trigger = "webhook"
	Interval Trigger = "interval"
	Watcher  Trigger = "watcher"
	Onboard  Trigger = "onboard"
	// Startup: the server started. A run with nothing published yet first
	// reads what is on disk (a mirror without network access) and, for a
	// mirror, queues a refresh after it.
	Startup Trigger = "startup"
)

// Mode says what a run did (source.Mode).
type Mode = source.Mode

// The modes.
const (
	ModeMirrorFetch = source.ModeMirrorFetch
	ModeReread      = source.ModeReread
)

// State is where a run is.
type State string

// The states of a run.
const (
	Queued    State = "queued"
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
)

// Errors a run can end with, for errors.Is.
var (
	// ErrTimeout: the run exceeded its timeout.
	ErrTimeout = errors.New("refresh timed out")
	// ErrFetch: the upstream could not be fetched (its text is sanitized).
	ErrFetch = errors.New("fetch failed")
	// ErrClosed: the manager is shutting down.
	ErrClosed = errors.New("refresher closed")
	// ErrPanic: the run panicked (a bug); the panic is logged.
	ErrPanic = errors.New("refresh failed unexpectedly")
	// ErrRemoved: the repository was removed; its queued run was
	// cancelled, its running one stopped, and it takes no new ones.
	ErrRemoved = errors.New("the repository was removed")
	// ErrBuild: the view could not be built from the repository's refs
	// (a branch that names a blob, a commit over the view's limits, a
	// missing object). Nothing was published: a mirror's fetch was thrown
	// away, and the last good view is still served. The next run tries
	// again.
	ErrBuild = errors.New("the view could not be built from the repository's refs")
)

// Result is the record of one run. API converts it to the API's
// SyncResult, for HTTP answers and events alike.
type Result struct {
	// ID is a UUIDv7 (RFC 9562) in text form: globally unique, and ordered
	// like the runs' creation (also across restarts, while the clock does
	// not go back), so that text order is time order.
	ID         string
	RepoID     string
	Trigger    Trigger
	Mode       Mode
	State      State
	QueuedAt   time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
	DurationMs *int64
	// Changes are the refs the run changed (branches and metadata),
	// classified, by name; at most MaxReportedChanges of them.
	Changes []refs.Change
	// ChangesTotal counts every changed ref.
	ChangesTotal int
	ViewVersion  int64
	// Error is the sanitized text of Err.
	Error string
	// Replica is the id of the stackd process that ran the run
	// (Options.Replica; "" in results stored before replica ids).
	Replica string

	// Err is the error the run ended with (nil on success). A result read
	// back from the store has only the text: Err is then an error with
	// Error's text.
	Err error
}

// Status is a repository's refresh status.
type Status struct {
	Running             bool
	LastAttemptAt       *time.Time
	LastSuccessAt       *time.Time
	LastError           string
	ConsecutiveFailures int
	NextScheduledAt     *time.Time
}

// DefaultHistory is how many finished results of a repository the store
// keeps by default.
const DefaultHistory = 100

// recentRuns is how many finished runs a Refresher keeps in memory, with
// their errors, for callers that wait on a run by id.
const recentRuns = 16

// Options configure a Manager.
type Options struct {
	// Workers bounds how many repositories refresh at once. Default 4.
	Workers int
	// Timeout bounds each run. Default 2m.
	Timeout time.Duration
	// Store keeps the results (nil: only the recent ones in memory).
	Store store.SyncStore
	// History is how many finished results each repository keeps in the
	// store. Default 100.
	History int
	// BeforeRefresh, when set, runs before each source refresh with the
	// source's mode; an error fails the run. Tests hold runs with it.
	BeforeRefresh func(ctx context.Context, repoID string, mode Mode) error
	// BeforeBuild, when set, runs before each view build; an error fails
	// the build. Tests make builds fail with it.
	BeforeBuild func(ctx context.Context, repoID string) error
	// Events receives the events of every repository (nil: none); see
	// Options.Publish.
	Events events.Publisher
	// Debounce is the quiet window of TriggerDebounced: the run it queues
	// starts once no debounced trigger joined it for this long. 0: none
	// (TriggerDebounced is Trigger).
	Debounce time.Duration
	// MaxDelay caps that wait: the run starts at the latest MaxDelay after
	// the debounced trigger that queued it. Default (and at least)
	// Debounce.
	MaxDelay time.Duration
	// Clock times the debounce window (tests use a fake one). Default: the
	// system clock.
	Clock Clock
	// Enqueued, when set, is called after each trigger has joined or
	// created its run, with the run's id (tests synchronise on it).
	Enqueued func(repoID, runID string)
	// Replica names this process in every result (--replica-id).
	Replica string
	// Cluster, when set, makes this Manager one replica of several that
	// share a database and a data directory: see Cluster. Only shared
	// mirrors (source.NewSharedMirror) use it.
	Cluster Cluster
	Logger  *slog.Logger
	Now     func() time.Time
}

// Clock is the time source of the debounce window.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Manager owns the Refreshers and the worker pool.
type Manager struct {
	opts   Options
	base   context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     goroutines // runs, holds and follows: Close waits for them

	mu   sync.Mutex
	byID map[string]*Refresher
}

// goroutines counts running goroutines like a sync.WaitGroup, except that
// Add may be called while Wait waits with the count at zero: a trigger
// that races with Close (a watcher event during shutdown) starts a run
// that ends at once, cancelled, and Close waits for it too.
type goroutines struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0; nil while n is 0
}

func (g *goroutines) Add(d int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 && d > 0 {
		g.zero = make(chan struct{})
	}
	g.n += d
	switch {
	case g.n < 0:
		panic("refresh: negative goroutine count")
	case g.n == 0 && g.zero != nil:
		close(g.zero)
		g.zero = nil
	}
}

func (g *goroutines) Done() { g.Add(-1) }

// Wait returns once the count is zero.
func (g *goroutines) Wait() {
	for {
		g.mu.Lock()
		zero := g.zero
		g.mu.Unlock()
		if zero == nil {
			return
		}
		<-zero
	}
}

// NewManager starts a manager; Close stops it.
func NewManager(opts Options) *Manager {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Debounce < 0 {
		opts.Debounce = 0
	}
	opts.MaxDelay = max(opts.MaxDelay, opts.Debounce)
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.Enqueued == nil {
		opts.Enqueued = func(string, string) {}
	}
	base, cancel := context.WithCancel(context.Background())
	return &Manager{opts: opts, base: base, cancel: cancel, sem: make(chan struct{}, opts.Workers), byID: map[string]*Refresher{}}
}

// Close cancels running refreshes and waits for them to end.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// Add creates the Refresher of repo.
func (m *Manager) Add(repo *registry.Repo) *Refresher {
	m.mu.Lock()
	defer m.mu.Unlock()
	log := m.opts.Logger.With("repo", repo.ID)
	in := repo.Input()
	in.Logger = log
	ctx, cancel := context.WithCancel(m.base)
	r := &Refresher{m: m, repo: repo, log: log, builder: view.NewBuilder(in, nil), ctx: ctx, cancel: cancel}
	m.byID[repo.ID] = r
	return r
}

// Remove stops a repository's Refresher without waiting (see
// Refresher.Stop) and forgets it.
func (m *Manager) Remove(id string) {
	m.mu.Lock()
	r, ok := m.byID[id]
	delete(m.byID, id)
	m.mu.Unlock()
	if ok {
		r.stop()
	}
}

// Get returns the Refresher of a repository.
func (m *Manager) Get(id string) (*Refresher, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.byID[id]
	return r, ok
}

// Refresher serialises and coalesces the refreshes of one repository.
type Refresher struct {
	m       *Manager
	repo    *registry.Repo
	log     *slog.Logger
	builder *view.Builder // used by one run (or follow) at a time: busy

	// busy is held by a run's work and publication, and by a follow
	// (Follow): they use the builder and the source one at a time.
	busy sync.Mutex
	// unbuilt: the source changed since the view was last built (that
	// build failed or never published), so the next run or follow builds
	// even when its source reports no change. Guarded by busy.
	unbuilt bool

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
// it). A stopped Refresher answers ErrRemoved at once.
func (r *Refresher) Sync(ctx context.Context, t Trigger) (Result, error) {
	return r.SyncIf(ctx, t, nil)
}

// SyncIf is Sync with admit, as in TriggerIf.
func (r *Refresher) SyncIf(ctx context.Context, t Trigger, admit func() error) (Result, error) {
	ru, _, err := r.enqueue(t, admit)
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
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, "", ErrRemoved
	}
	var ru *run
	created := false
	if r.next != nil {
		ru = r.next
		r.joinLocked(t)
		r.releaseLocked()
	} else {
		if admit != nil {
			if err := admit(); err != nil {
				r.mu.Unlock()
				return nil, "", err
			}
		}
		ru, created = r.newRunLocked(t), true
		if r.current == nil {
			r.current = ru
			r.startLocked(ru)
		} else {
			r.next = ru
		}
	}
	return ru, r.unlockStored(ru, created), nil
}

// unlockStored releases r.mu, which the caller holds, and returns ru's id
// once ru is stored: a run the caller created is stored here, one it
// joined by its creator. Options.Enqueued hears of it then.
func (r *Refresher) unlockStored(ru *run, created bool) string {
	res := ru.result
	r.mu.Unlock()
	if created {
		r.record(res)
		close(ru.stored)
	}
	<-ru.stored
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
	created := false
	if ru != nil {
		if r.held {
			r.lastPoke = opts.Clock.Now()
		}
		r.joinLocked(t)
	} else {
		ru, created = r.newRunLocked(t), true
		r.next, r.held, r.released = ru, true, make(chan struct{})
		r.lastPoke = opts.Clock.Now()
		r.deadline = r.lastPoke.Add(opts.MaxDelay)
		fire := opts.Clock.After(opts.Debounce)
		r.m.wg.Add(1)
		go r.hold(ru, r.released, fire)
	}
	return r.unlockStored(ru, created)
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

// joinLocked makes the trigger t join the queued run next.
func (r *Refresher) joinLocked(t Trigger) {
	if r.next.result.Trigger == Interval && t != Interval {
		// The result names the caller's trigger rather than the timer.
		r.next.result.Trigger = t
	}
}

func (r *Refresher) newRunLocked(t Trigger) *run {
	return &run{done: make(chan struct{}), stored: make(chan struct{}), result: Result{
		ID:          newID(),
		RepoID:      r.repo.ID,
		Trigger:     t,
		Mode:        r.repo.Source().Mode(),
		State:       Queued,
		QueuedAt:    r.m.opts.Now().UTC(),
		ViewVersion: r.repo.Snapshot().Version(),
		Replica:     r.m.opts.Replica,
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
	if queued != nil {
		r.record(res)
		r.remember(queued)
		close(queued.done)
	}
}

// Idle waits until the Refresher has no running or queued run.
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
	// got the result finds the same in the history.
	r.record(res)

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
		r.remember(abandoned)
		close(abandoned.done)
	}

	if res.Err == nil {
		opts.Publish(r.repo.ID, events.Event{Type: events.SyncFinished, Data: res.API()})
	} else {
		opts.Publish(r.repo.ID, events.Event{Type: events.SyncFailed, Data: res.API()})
	}
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
	r.mu.Unlock()
	r.record(res)
	opts.Publish(r.repo.ID, events.Event{Type: events.SyncStarted, Data: res.API()})

	ctx, cancel := context.WithTimeout(r.ctx, opts.Timeout)
	defer cancel()
	r.busy.Lock()
	defer r.busy.Unlock()
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
		r.log.Warn("refresh failed", "trigger", res.Trigger, "mode", res.Mode, "err", redact.Error(err))
		if out.snap != nil && !out.shared {
			// The view of the last good refs (fallback).
			cur, changed := r.repo.Publish(out.snap, opts.Now().UTC())
			res.ViewVersion = cur.Version()
			if changed {
				r.announce(prev, cur)
			}
		}
	} else {
		r.unbuilt = false // published below (or nothing to build)
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
			}
		}
		if out.snap != nil {
			st := out.stats
			r.log.Info("view built", "trigger", res.Trigger, "full", st.Full, "patched", st.Patched,
				"branches", st.Branches, "recomputed", st.Recomputed,
				"ms", float64((time.Since(out.buildStart)-out.commit).Microseconds())/1000,
				"commitMs", float64(out.commit.Microseconds())/1000)
		}
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
		r.log.Info("refresh done", "trigger", res.Trigger, "mode", res.Mode, "updated", res.ChangesTotal, "version", res.ViewVersion, "ms", dur)
	}
	r.mu.Lock()
	r.status.Running = false
	r.mu.Unlock()
	return res
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
	// shared: a shared mirror of a cluster; its view is published with
	// the version the cluster agrees on (publishShared).
	shared bool
	// lease is the repository's cluster-wide lease, held from before the
	// source refresh until the publication (nil when none was taken);
	// ctx is the run's context, cancelled when the lease is lost.
	lease *heldLease
	ctx   context.Context
}

// work asks the source for what changed and rebuilds the view when
// anything did. A panic fails the run with ErrPanic.
func (r *Refresher) work(ctx context.Context, t Trigger) (out outcome, err error) {
	src := r.repo.Source()
	out.mode = src.Mode()
	out.shared = r.shared()
	out.ctx = ctx
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

// Status returns the repository's refresh status.
func (r *Refresher) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// SetNextScheduled records when the interval loop plans the next run.
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
	list, err := st.ListSyncs(ctx, r.repo.ID, before, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(list))
	for _, sy := range list {
		out = append(out, resultOf(sy))
	}
	return out, nil
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
