package refresh

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
)

// DefaultHistory is how many finished results of a repository the store
// keeps by default.
const DefaultHistory = 100

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
	// Events receives the events of every repository (nil: none; see
	// Options.Publish). A run's sync_finished or sync_failed is published
	// after its status is updated, before the callers that wait for the
	// run get its result and before the next run of the repository starts
	// (its sync_started). Events is called without the Refresher's lock,
	// but it must not wait for a run of the repository (Sync, Wait,
	// Idle): the run it reports has not ended yet.
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
	// Metrics counts the runs that end on this process, their queue
	// waits and durations, the refs they changed, the views' builds and
	// sizes (nil: none).
	Metrics *metrics.Metrics
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
	ends   *endBatch  // nil without a store

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
	m := &Manager{opts: opts, base: base, cancel: cancel, sem: make(chan struct{}, opts.Workers), byID: map[string]*Refresher{}}
	if opts.Store != nil {
		m.ends = &endBatch{st: opts.Store, keep: opts.History, delay: endBatchDelay, log: opts.Logger.Error}
	}
	return m
}

// Close cancels running refreshes, waits for them to end, and stores the
// ends of runs still waiting to be stored (endBatch).
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
	if m.ends != nil {
		m.ends.flush()
	}
}

// Add creates the Refresher of repo.
func (m *Manager) Add(repo *registry.Repo) *Refresher {
	m.mu.Lock()
	defer m.mu.Unlock()
	log := m.opts.Logger.With("repo", repo.ID)
	in := repo.Input()
	in.Logger = log
	ctx, cancel := context.WithCancel(m.base)
	r := &Refresher{m: m, repo: repo, log: log, builder: view.NewBuilder(in, nil), ctx: ctx, cancel: cancel,
		busy: make(chan struct{}, 1)}
	repo.SetFull(r.Full)
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
		m.opts.Metrics.Forget(id)
	}
}

// all returns the Refreshers of every repository (a copy, taken under
// the manager's lock).
func (m *Manager) all() []*Refresher {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := make([]*Refresher, 0, len(m.byID))
	for _, r := range m.byID {
		rs = append(rs, r)
	}
	return rs
}

// Runs counts the runs queued (waiting for their start: a debounce
// window, a worker slot) and running, over every repository.
func (m *Manager) Runs() (queued, running int) {
	for _, r := range m.all() {
		r.mu.Lock()
		for _, ru := range []*run{r.current, r.next} {
			if ru == nil {
				continue
			}
			switch ru.result.State {
			case Queued:
				queued++
			case Running:
				running++
			}
		}
		r.mu.Unlock()
	}
	return queued, running
}

// Get returns the Refresher of a repository.
func (m *Manager) Get(id string) (*Refresher, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.byID[id]
	return r, ok
}
