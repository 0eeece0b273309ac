// Package refresh is the one way into a refresh of a repository.
//
// Every trigger (manual sync, webhook, interval loop, watcher, onboarding,
// start-up) calls the repository's Refresher. A Refresher runs at most one
// refresh of its repository at a time; triggers that arrive during a run
// coalesce into exactly one follow-up run, and a caller that waits (Sync)
// always gets the result of a run that started after its request. A run's
// end (its sync_finished or sync_failed event) is published once its status
// is updated, and before its waiters get its result and the next run starts.
// Runs of different repositories share a bounded pool of workers, each run
// has a timeout, and a panic in a run fails that run, not the process.
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
	"errors"
	"time"

	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/source"
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
	// ViewVersion is 0 (null in answers) while the run is queued or
	// running; once it has ended, the version of the view it published, or
	// when it published none (nothing changed, or it failed), the version
	// the repository served when it ended (0 while there is no view yet).
	ViewVersion int64
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
