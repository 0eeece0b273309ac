// Package refresh is the one way into a refresh of a repository.
//
// Every trigger (manual sync, webhook, interval loop, watcher, onboarding)
// calls the repository's Refresher. A Refresher runs at most one refresh of
// its repository at a time; triggers that arrive during a run coalesce into
// exactly one follow-up run, and a caller that waits (Sync) always gets the
// result of a run that started after its request. Runs of different
// repositories share a bounded pool of workers, and each run has a timeout.
//
// What a run does is decided in one place, by the repository's kind (see
// Refresher.execute): a managed mirror is fetched and then its view rebuilt
// (ModeMirrorFetch); the operator's working repository only has its on-disk
// refs re-read (ModeReread), through reread, which is handed the read-only
// gitrepo.Worktree and nothing that can fetch.
//
// A successful rebuild publishes a new snapshot atomically; a failed fetch or
// rebuild keeps the last good snapshot and records the error.
package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/registry"
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
)

// Mode says what a refresh did; it follows from the repository's kind.
type Mode string

// The modes.
const (
	ModeMirrorFetch Mode = "mirror-fetch"
	ModeReread      Mode = "reread"
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
)

// RefUpdate is one ref that a run changed.
type RefUpdate struct {
	Ref    string `json:"ref"`
	OldSha string `json:"oldSha,omitempty"`
	NewSha string `json:"newSha,omitempty"`
	Change string `json:"change"`
}

// Result is the record of one run. Its JSON form is the API's SyncResult.
type Result struct {
	ID          string      `json:"id"`
	RepoID      string      `json:"repoID"`
	Trigger     Trigger     `json:"trigger"`
	Mode        Mode        `json:"mode"`
	State       State       `json:"state"`
	QueuedAt    time.Time   `json:"queuedAt"`
	StartedAt   *time.Time  `json:"startedAt,omitempty"`
	FinishedAt  *time.Time  `json:"finishedAt,omitempty"`
	DurationMs  *int64      `json:"durationMs,omitempty"`
	UpdatedRefs []RefUpdate `json:"updatedRefs"`
	ViewVersion int64       `json:"viewVersion"`
	Error       string      `json:"error,omitempty"`

	// Err is the error the run ended with (nil on success); Error is its
	// sanitized text.
	Err error `json:"-"`
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

// FetchFunc fetches a mirror. The default is (*mirror.Mirror).Fetch.
type FetchFunc func(ctx context.Context, m *mirror.Mirror) ([]mirror.RefUpdate, error)

// Options configure a Manager.
type Options struct {
	// Workers bounds how many repositories refresh at once. Default 4.
	Workers int
	// Timeout bounds each run. Default 2m.
	Timeout time.Duration
	// History is how many results each repository keeps. Default 50.
	History int
	// DataDir holds the mirrors (DataDir/mirrors/<id>.git).
	DataDir string
	// AllowLocalRemotes lets mirrors use file:// and plain-path remotes.
	AllowLocalRemotes bool
	// Fetch overrides how a mirror is fetched (tests hold fetches with it).
	Fetch FetchFunc
	// Publish receives the events of every repository (nil: none).
	Publish func(repoID string, ev events.Event)
	Logger  *slog.Logger
	Now     func() time.Time
}

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
	if opts.Fetch == nil {
		opts.Fetch = func(ctx context.Context, m *mirror.Mirror) ([]mirror.RefUpdate, error) { return m.Fetch(ctx) }
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
	r := &Refresher{m: m, repo: repo, log: m.opts.Logger.With("repo", repo.ID)}
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

// MirrorDir is where the mirror of repository id lives.
func (m *Manager) MirrorDir(id string) string {
	return filepath.Join(m.opts.DataDir, "mirrors", id+".git")
}

// Refresher serialises and coalesces the refreshes of one repository.
type Refresher struct {
	m    *Manager
	repo *registry.Repo
	log  *slog.Logger

	mu      sync.Mutex
	seq     int
	current *run // running now
	next    *run // queued to start when current ends; absorbs triggers
	history []*run
	status  Status
}

type run struct {
	done   chan struct{}
	result Result // guarded by Refresher.mu until done is closed
}

// Repo is the repository this Refresher refreshes.
func (r *Refresher) Repo() *registry.Repo { return r.repo }

// Trigger asks for a refresh and returns at once with the id of the run that
// will serve it. Triggers during a run coalesce into one follow-up run.
func (r *Refresher) Trigger(t Trigger) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.enqueueLocked(t).result.ID
}

// Sync asks for a refresh and waits for the result of a run that started
// after this call. The run goes on if ctx ends first (others may wait on it).
func (r *Refresher) Sync(ctx context.Context, t Trigger) (Result, error) {
	r.mu.Lock()
	ru := r.enqueueLocked(t)
	r.mu.Unlock()
	select {
	case <-ru.done:
		return ru.result, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// enqueueLocked returns a run that has not started yet: a new one started
// now when idle, else the queued follow-up (created if needed).
func (r *Refresher) enqueueLocked(t Trigger) *run {
	if r.current == nil {
		ru := r.newRunLocked(t)
		r.current = ru
		r.startLocked(ru)
		return ru
	}
	if r.next == nil {
		r.next = r.newRunLocked(t)
	} else if r.next.result.Trigger == Interval && t != Interval {
		// An interval run may skip the fetch when the remote looks
		// unchanged; a run that another trigger joined must not.
		r.next.result.Trigger = t
	}
	return r.next
}

func (r *Refresher) newRunLocked(t Trigger) *run {
	r.seq++
	ru := &run{done: make(chan struct{}), result: Result{
		ID:          strconv.Itoa(r.seq),
		RepoID:      r.repo.ID,
		Trigger:     t,
		Mode:        modeOf(r.repo.Kind),
		State:       Queued,
		QueuedAt:    r.m.opts.Now().UTC(),
		UpdatedRefs: []RefUpdate{},
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

// modeOf is the single place where a repository's kind decides what a
// refresh may do.
func modeOf(kind gen.RepoKind) Mode {
	if kind == gen.Mirror {
		return ModeMirrorFetch
	}
	return ModeReread
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
	var abandoned *run
	if r.next != nil {
		if r.m.base.Err() == nil {
			r.current, r.next = r.next, nil
			r.startLocked(r.current)
		} else {
			abandoned, r.next = r.next, nil
			abandoned.result.State, abandoned.result.Err, abandoned.result.Error = Failed, ErrClosed, ErrClosed.Error()
		}
	}
	r.mu.Unlock()
	close(ru.done)
	if abandoned != nil {
		close(abandoned.done)
	}

	if res.Err == nil {
		opts.Publish(r.repo.ID, events.Event{Type: events.SyncFinished, Data: res})
	} else {
		opts.Publish(r.repo.ID, events.Event{Type: events.SyncFailed, Data: res})
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
	opts.Publish(r.repo.ID, events.Event{Type: events.SyncStarted, Data: res})

	ctx, cancel := context.WithTimeout(r.m.base, opts.Timeout)
	defer cancel()
	prev := r.repo.Snapshot()
	updates, snap, err := r.work(ctx, res.Trigger)
	if err == nil && snap == nil {
		// An interval check found the remote unchanged: nothing fetched,
		// nothing rebuilt; the success is recorded.
		res.ViewVersion = prev.Version()
	} else if err == nil {
		r.repo.MarkReady()
		cur, changed := r.repo.Publish(snap, opts.Now().UTC())
		res.ViewVersion = cur.Version()
		if res.Mode == ModeReread {
			updates = branchChanges(prev, cur)
		}
		if changed {
			opts.Publish(r.repo.ID, events.Event{Type: events.ViewUpdated, Data: map[string]int64{"version": cur.Version()}})
			if from, to := currentBranch(prev), currentBranch(cur); from != to && prev.Version() > 0 {
				opts.Publish(r.repo.ID, events.Event{Type: events.BranchSwitched, Data: map[string]string{"from": from, "to": to}})
			}
		}
	} else {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, opts.Timeout, err)
		}
		r.repo.MarkReady()
		res.ViewVersion = prev.Version()
		r.log.Warn("refresh failed", "trigger", res.Trigger, "mode", res.Mode, "err", redact.Error(err))
	}
	end := opts.Now().UTC()
	dur := end.Sub(start).Milliseconds()
	res.FinishedAt, res.DurationMs = &end, &dur
	if updates != nil {
		res.UpdatedRefs = updates
	}
	if err != nil {
		res.State, res.Err, res.Error = Failed, err, redact.Error(err)
	} else {
		res.State = Succeeded
		r.log.Info("refresh done", "trigger", res.Trigger, "mode", res.Mode, "updated", len(res.UpdatedRefs), "version", res.ViewVersion, "ms", dur)
	}
	r.mu.Lock()
	r.status.Running = false
	r.mu.Unlock()
	return res
}

// work does what the repository's kind allows. A nil snapshot without an
// error means there was nothing to do.
func (r *Refresher) work(ctx context.Context, t Trigger) ([]RefUpdate, *view.Snapshot, error) {
	in := r.repo.Input()
	in.Logger = r.log
	switch modeOf(r.repo.Kind) {
	case ModeMirrorFetch:
		return r.mirrorFetch(ctx, in, t)
	default:
		snap, err := reread(ctx, r.repo.Local, in)
		return nil, snap, err
	}
}

// reread is the whole refresh of the operator's working repository: open it
// read-only and rebuild the view from its on-disk refs. It is given the
// Worktree only; nothing reachable from here can fetch or write.
func reread(ctx context.Context, wt *gitrepo.Worktree, in view.Input) (*view.Snapshot, error) {
	if wt == nil {
		return nil, errors.New("no working repository")
	}
	repo, err := wt.Read()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", wt.WorkDir(), err)
	}
	return build(ctx, repo, in)
}

func build(ctx context.Context, repo *git.Repository, in view.Input) (*view.Snapshot, error) {
	snap, err := view.Build(ctx, repo, in)
	if err != nil {
		return nil, fmt.Errorf("build view: %w", err)
	}
	return snap, nil
}

// mirrorFetch clones the mirror on first use, fetches it and rebuilds.
// An interval run first lists the remote's refs and stops there when
// nothing changed since a good view was built.
func (r *Refresher) mirrorFetch(ctx context.Context, in view.Input, t Trigger) ([]RefUpdate, *view.Snapshot, error) {
	opts := r.m.opts
	m := r.repo.Mirror()
	var ups []mirror.RefUpdate
	var err error
	if m != nil && t == Interval && r.healthy() {
		changed, cerr := m.Changed(ctx)
		if cerr != nil {
			if ctx.Err() == nil {
				cerr = fmt.Errorf("%w: %w", ErrFetch, cerr)
			}
			return nil, nil, cerr
		}
		if !changed {
			return []RefUpdate{}, nil, nil
		}
	}
	if m == nil {
		cfg := mirror.Config{Dir: r.m.MirrorDir(r.repo.ID), URL: r.repo.URL, Auth: r.repo.Auth, AllowLocal: opts.AllowLocalRemotes}
		if err := os.MkdirAll(filepath.Dir(cfg.Dir), 0o700); err != nil {
			return nil, nil, fmt.Errorf("mirror directory: %w", err)
		}
		if mm, oerr := mirror.Open(cfg); oerr == nil {
			m = mm
			ups, err = opts.Fetch(ctx, m)
		} else {
			m, ups, err = mirror.Clone(ctx, cfg)
		}
		if m != nil {
			r.repo.SetMirror(m)
		}
	} else {
		ups, err = opts.Fetch(ctx, m)
	}
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, mirror.ErrBadURL) && !errors.Is(err, mirror.ErrLocalRemote) && !errors.Is(err, ErrFetch) {
			err = fmt.Errorf("%w: %w", ErrFetch, err)
		}
		return nil, nil, err
	}
	repo, err := m.Repository()
	if err != nil {
		return nil, nil, fmt.Errorf("open mirror: %w", err)
	}
	snap, err := build(ctx, repo, in)
	if err != nil {
		return nil, nil, err
	}
	out := make([]RefUpdate, 0, len(ups))
	for _, u := range ups {
		out = append(out, RefUpdate{Ref: u.Ref, OldSha: u.OldSha, NewSha: u.NewSha, Change: string(u.Change)})
	}
	return out, snap, nil
}

// healthy reports whether the last run succeeded and a view exists.
func (r *Refresher) healthy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.ConsecutiveFailures == 0 && r.repo.Snapshot().Version() > 0
}

// branchChanges lists the branch tips that differ between two snapshots.
func branchChanges(prev, cur *view.Snapshot) []RefUpdate {
	old := map[string]string{}
	for _, b := range prev.Branches() {
		old[b.Name] = b.Sha
	}
	out := []RefUpdate{}
	seen := map[string]bool{}
	for _, b := range cur.Branches() {
		seen[b.Name] = true
		switch o, ok := old[b.Name]; {
		case !ok:
			out = append(out, RefUpdate{Ref: "refs/heads/" + b.Name, NewSha: b.Sha, Change: "created"})
		case o != b.Sha:
			out = append(out, RefUpdate{Ref: "refs/heads/" + b.Name, OldSha: o, NewSha: b.Sha, Change: "updated"})
		}
	}
	for name, sha := range old {
		if !seen[name] {
			out = append(out, RefUpdate{Ref: "refs/heads/" + name, OldSha: sha, Change: "deleted"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out
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
