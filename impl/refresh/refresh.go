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
	"strconv"
	"sync"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/source"
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
)

// Result is the record of one run. API converts it to the API's
// SyncResult, for HTTP answers and events alike.
type Result struct {
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

	// Err is the error the run ended with (nil on success).
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

// Options configure a Manager.
type Options struct {
	// Workers bounds how many repositories refresh at once. Default 4.
	Workers int
	// Timeout bounds each run. Default 2m.
	Timeout time.Duration
	// History is how many results each repository keeps. Default 50.
	History int
	// BeforeRefresh, when set, runs before each source refresh with the
	// source's mode; an error fails the run. Tests hold runs with it.
	BeforeRefresh func(ctx context.Context, repoID string, mode Mode) error
	// Publish receives the events of every repository (nil: none).
	Publish func(repoID string, ev events.Event)
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
	Logger   *slog.Logger
	Now      func() time.Time
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
	wg     sync.WaitGroup

	mu   sync.Mutex
	byID map[string]*Refresher
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
		opts.History = 50
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Publish == nil {
		opts.Publish = func(string, events.Event) {}
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
	r := &Refresher{m: m, repo: repo, log: log, builder: view.NewBuilder(in, nil)}
	m.byID[repo.ID] = r
	return r
}

// Remove forgets a repository's Refresher.
func (m *Manager) Remove(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.byID, id)
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
	builder *view.Builder // used by one run at a time

	mu      sync.Mutex
	seq     int
	current *run // running now
	next    *run // queued to start when current ends; absorbs triggers
	// held: next waits for its debounce window (TriggerDebounced) and does
	// not start, even when nothing runs, until released (the window ends,
	// or another trigger joins it). released is closed then.
	held     bool
	released chan struct{}
	lastPoke time.Time // the latest debounced trigger that joined next
	deadline time.Time // the debounced trigger that queued next + MaxDelay
	history  []*run
	status   Status
}

type run struct {
	done   chan struct{}
	result Result // guarded by Refresher.mu until done is closed
	// followUp: the run loaded a mirror from disk; a refresh must follow.
	followUp bool
}

// Repo is the repository this Refresher refreshes.
func (r *Refresher) Repo() *registry.Repo { return r.repo }

// Trigger asks for a refresh and returns at once with the id of the run that
// will serve it. Triggers during a run coalesce into one follow-up run.
func (r *Refresher) Trigger(t Trigger) string {
	id, _ := r.TriggerIf(t, nil)
	return id
}

// TriggerIf is Trigger that calls admit (when not nil) before it creates a
// new run, under the Refresher's lock; when admit fails, nothing is queued
// and its error is returned. Joining a queued run does not call admit.
func (r *Refresher) TriggerIf(t Trigger, admit func() error) (string, error) {
	r.mu.Lock()
	ru, err := r.enqueueLocked(t, admit)
	id := ""
	if ru != nil {
		id = ru.result.ID
	}
	r.mu.Unlock()
	if err != nil {
		return "", err
	}
	r.m.opts.Enqueued(r.repo.ID, id)
	return id, nil
}

// Sync asks for a refresh and waits for the result of a run that started
// after this call. The run goes on if ctx ends first (others may wait on it).
func (r *Refresher) Sync(ctx context.Context, t Trigger) (Result, error) {
	return r.SyncIf(ctx, t, nil)
}

// SyncIf is Sync with admit, as in TriggerIf.
func (r *Refresher) SyncIf(ctx context.Context, t Trigger, admit func() error) (Result, error) {
	r.mu.Lock()
	ru, err := r.enqueueLocked(t, admit)
	id := ""
	if ru != nil {
		id = ru.result.ID
	}
	r.mu.Unlock()
	if err != nil {
		return Result{}, err
	}
	r.m.opts.Enqueued(r.repo.ID, id)
	select {
	case <-ru.done:
		return ru.result, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// TriggerDebounced is Trigger for webhook pushes, which come in bursts. It
// returns the id of the run that will serve the push, always one that has
// not started yet: the queued run, when there is one, else a new one that
// waits for the debounce window. That run starts once no debounced trigger
// joined it for Options.Debounce, at the latest Options.MaxDelay after it
// was queued, at once when another kind of trigger joins it, and in any
// case only after the running run (if any) has ended.
func (r *Refresher) TriggerDebounced(t Trigger) string {
	opts := r.m.opts
	if opts.Debounce <= 0 {
		return r.Trigger(t)
	}
	r.mu.Lock()
	ru := r.next
	if ru != nil {
		if r.held {
			r.lastPoke = opts.Clock.Now()
		}
		r.joinLocked(t)
	} else {
		ru = r.newRunLocked(t)
		r.next, r.held, r.released = ru, true, make(chan struct{})
		r.lastPoke = opts.Clock.Now()
		r.deadline = r.lastPoke.Add(opts.MaxDelay)
		fire := opts.Clock.After(opts.Debounce)
		r.m.wg.Add(1)
		go r.hold(ru, r.released, fire)
	}
	id := ru.result.ID
	r.mu.Unlock()
	opts.Enqueued(r.repo.ID, id)
	return id
}

// hold releases the waiting run ru when its debounce window ends, and
// abandons it when the manager closes first. It returns as soon as ru is
// released by another trigger (released is closed).
func (r *Refresher) hold(ru *run, released <-chan struct{}, fire <-chan time.Time) {
	defer r.m.wg.Done()
	opts := r.m.opts
	for {
		select {
		case <-released:
			return
		case <-r.m.base.Done():
			r.mu.Lock()
			mine := r.next == ru
			if mine {
				r.next = nil
				r.unholdLocked()
				ru.result.State, ru.result.Err, ru.result.Error = Failed, ErrClosed, ErrClosed.Error()
			}
			r.mu.Unlock()
			if mine {
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
	if r.current == nil && r.next != nil && r.m.base.Err() == nil {
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

// enqueueLocked returns a run that has not started yet: a new one started
// now when idle, else the queued follow-up (created if needed). A queued
// run waiting for its debounce window is released. admit (when not nil) is
// called before a run is created; its error is returned.
func (r *Refresher) enqueueLocked(t Trigger, admit func() error) (*run, error) {
	if r.next != nil {
		ru := r.next
		r.joinLocked(t)
		r.releaseLocked()
		return ru, nil
	}
	if admit != nil {
		if err := admit(); err != nil {
			return nil, err
		}
	}
	if r.current == nil {
		ru := r.newRunLocked(t)
		r.current = ru
		r.startLocked(ru)
		return ru, nil
	}
	r.next = r.newRunLocked(t)
	return r.next, nil
}

func (r *Refresher) newRunLocked(t Trigger) *run {
	r.seq++
	ru := &run{done: make(chan struct{}), result: Result{
		ID:          strconv.Itoa(r.seq),
		RepoID:      r.repo.ID,
		Trigger:     t,
		Mode:        r.repo.Source().Mode(),
		State:       Queued,
		QueuedAt:    r.m.opts.Now().UTC(),
		ViewVersion: r.repo.Snapshot().Version(),
	}}
	r.history = append(r.history, ru)
	if over := len(r.history) - r.m.opts.History; over > 0 {
		r.history = append([]*run(nil), r.history[over:]...)
	}
	return ru
}

func (r *Refresher) startLocked(ru *run) {
	r.m.wg.Add(1)
	go r.execute(ru)
}

func (r *Refresher) execute(ru *run) {
	defer r.m.wg.Done()
	opts := r.m.opts

	var res Result
	select {
	case r.m.sem <- struct{}{}:
		res = r.perform(ru)
		<-r.m.sem
	case <-r.m.base.Done():
		r.mu.Lock()
		res = ru.result
		r.mu.Unlock()
		res.State, res.Err, res.Error = Failed, ErrClosed, ErrClosed.Error()
	}

	r.mu.Lock()
	ru.result = res
	now := opts.Now().UTC()
	r.status.LastAttemptAt = res.StartedAt
	if res.Err == nil {
		r.status.LastSuccessAt = &now
		r.status.LastError = ""
		r.status.ConsecutiveFailures = 0
	} else {
		r.status.LastError = res.Error
		r.status.ConsecutiveFailures++
	}
	r.current = nil
	if ru.followUp && r.m.base.Err() == nil {
		if r.next == nil {
			r.next = r.newRunLocked(Startup)
		}
		r.unholdLocked() // the mirror on disk must be fetched now
	}
	var abandoned *run
	if r.next != nil {
		switch {
		case r.m.base.Err() != nil:
			abandoned, r.next = r.next, nil
			r.unholdLocked()
			abandoned.result.State, abandoned.result.Err, abandoned.result.Error = Failed, ErrClosed, ErrClosed.Error()
		case !r.held: // a held run starts when its window ends
			r.current, r.next = r.next, nil
			r.startLocked(r.current)
		}
	}
	r.mu.Unlock()
	close(ru.done)
	if abandoned != nil {
		close(abandoned.done)
	}

	if res.Err == nil {
		opts.Publish(r.repo.ID, events.Event{Type: events.SyncFinished, Data: res.API()})
	} else {
		opts.Publish(r.repo.ID, events.Event{Type: events.SyncFailed, Data: res.API()})
	}
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
	opts.Publish(r.repo.ID, events.Event{Type: events.SyncStarted, Data: res.API()})

	ctx, cancel := context.WithTimeout(r.m.base, opts.Timeout)
	defer cancel()
	prev := r.repo.Snapshot()
	out, err := r.work(ctx, res.Trigger)
	res.Mode = out.mode
	res.ViewVersion = prev.Version()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, opts.Timeout, err)
		}
		r.log.Warn("refresh failed", "trigger", res.Trigger, "mode", res.Mode, "err", redact.Error(err))
	} else {
		res.ChangesTotal = len(out.changes)
		// A copy: the full list of a first clone is not kept in history.
		res.Changes = slices.Clone(out.changes[:min(len(out.changes), MaxReportedChanges)])
		if out.snap != nil {
			cur, changed := r.repo.Publish(out.snap, opts.Now().UTC())
			res.ViewVersion = cur.Version()
			if changed {
				opts.Publish(r.repo.ID, events.Event{Type: events.ViewUpdated, Data: gen.ViewUpdatedEvent{Version: cur.Version()}})
				if from, to := currentBranch(prev), currentBranch(cur); from != to && prev.Version() > 0 {
					opts.Publish(r.repo.ID, events.Event{Type: events.BranchSwitched, Data: gen.BranchSwitchedEvent{From: from, To: to}})
				}
			}
			st := out.stats
			r.log.Info("view built", "trigger", res.Trigger, "full", st.Full, "patched", st.Patched,
				"branches", st.Branches, "recomputed", st.Recomputed,
				"ms", float64(time.Since(out.buildStart).Microseconds())/1000)
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
	loaded     bool // read from disk without refreshing; a refresh must follow
}

// work asks the source for what changed and rebuilds the view when
// anything did. A panic fails the run with ErrPanic.
func (r *Refresher) work(ctx context.Context, t Trigger) (out outcome, err error) {
	src := r.repo.Source()
	out.mode = src.Mode()
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("refresh panicked", "panic", p, "stack", string(debug.Stack()))
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
		if hook := r.m.opts.BeforeRefresh; hook != nil {
			if err := hook(ctx, r.repo.ID, src.Mode()); err != nil {
				return out, err
			}
		}
		if upd, err = src.Refresh(ctx, r.builder.Cache()); err != nil {
			return out, r.wrap(err)
		}
	}
	if err := refs.Classify(ctx, upd.Changes, r.builder.Cache().Commits(upd.Repo), 0); err != nil {
		return out, err
	}
	out.changes, out.loaded = upd.Changes, loaded
	if !upd.Changed && prev.Version() > 0 {
		return out, nil // nothing changed: no rebuild
	}
	out.buildStart = time.Now()
	snap, stats, err := r.builder.Build(ctx, upd.Repo, prev)
	if err != nil {
		return out, fmt.Errorf("build view: %w", err)
	}
	out.snap, out.stats = snap, stats
	return out, nil
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

// History returns recent results, newest first.
func (r *Refresher) History() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Result, 0, len(r.history))
	for i := len(r.history) - 1; i >= 0; i-- {
		out = append(out, r.history[i].result)
	}
	return out
}

// Wait waits for the run with this id to finish and returns its result.
func (r *Refresher) Wait(ctx context.Context, id string) (Result, error) {
	r.mu.Lock()
	var ru *run
	for _, h := range r.history {
		if h.result.ID == id {
			ru = h
		}
	}
	r.mu.Unlock()
	if ru == nil {
		return Result{}, fmt.Errorf("no run %q", id)
	}
	select {
	case <-ru.done:
		return ru.result, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Get returns one result by id.
func (r *Refresher) Get(id string) (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ru := range r.history {
		if ru.result.ID == id {
			return ru.result, true
		}
	}
	return Result{}, false
}
