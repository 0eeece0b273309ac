// Package store keeps the state that users create and that must outlive a
// process: browser sessions, the audit log, the repositories onboarded
// through the API, the sync history of every repository and the webhook
// deliveries already seen; and what replicas sharing a database must agree
// on: the version of every mirror's view and shared keys.
//
// The server depends on the Store interface only. Two engines implement
// it with the same code (engine.go: one text of every statement, "?"
// placeholders that the PostgreSQL engine rebinds to $n) and the same
// versioned migrations (migrations.go: portable SQL, with an engine's own
// text where it needs one):
//
//   - SQLite (Open), the default: one file in the data directory, created
//     with mode 0600, opened in WAL mode with a busy timeout.
//   - PostgreSQL (OpenPostgres) through a pgx connection pool, for several
//     stackd processes sharing one database. Its Pool is there for what
//     only PostgreSQL offers (LISTEN/NOTIFY, advisory locks). When the
//     database cannot be reached, every method fails with an error that
//     errors.Is ErrUnavailable, and the pool drops its idle connections,
//     so the first call after the database is back opens a new one: no
//     restart needed.
//
// Both engines keep portable types (TEXT, BIGINT, BOOLEAN), times as Unix
// nanoseconds, INSERT ... ON CONFLICT for upserts and no engine-specific
// functions in queries. The same contract tests (state_test.go) run
// against both.
//
// A session is known to the browser by a random raw id (32 bytes, base64url)
// that travels only in its cookie; the database keeps the SHA-256 of it, so a
// copy of the database does not hand out live sessions.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors of the store, for errors.Is.
var (
	// ErrNotFound: a session (missing or expired), repository or sync that
	// is not stored.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalid: a record that lacks a required field.
	ErrInvalid = errors.New("store: invalid argument")
	// ErrConflict: a repository whose id is already stored.
	ErrConflict = errors.New("store: already exists")
	// ErrUnavailable: the database cannot be reached (PostgreSQL down,
	// restarting or unreachable). The call may succeed later, on the
	// same Store: nothing needs reopening.
	ErrUnavailable = errors.New("store: database unavailable")
	// ErrSchemaTooNew: the database was migrated by a newer stackd.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")
	// ErrNUL: a text value holds a NUL byte. Every engine refuses it
	// before the statement runs (PostgreSQL cannot store one in TEXT,
	// SQLite could), so the engines agree and no caller's value reaches
	// the database with one. It also matches ErrInvalid.
	ErrNUL = fmt.Errorf("%w: a text value contains a NUL byte", ErrInvalid)
)

// Store is everything stackd keeps. Implementations are safe for
// concurrent use.
type Store interface {
	SessionStore
	AuditStore
	RepoStore
	SyncStore
	DeliveryStore
	ViewStore
	ScheduleStore
	KeyStore
	// SchemaVersion reports how many migrations the database has applied.
	SchemaVersion(ctx context.Context) (int, error)
	// Applied returns the migration steps that opening the store applied
	// (none when its schema was current).
	Applied() []Step
	// Ping checks that the database answers (readiness).
	Ping(ctx context.Context) error
	// Observe makes o time every operation from now on (metrics).
	Observe(o QueryObserver)
	// Close releases the database.
	Close() error
}

// SessionStore keeps browser sessions.
type SessionStore interface {
	// CreateSession stores sess under a new random id and returns the raw
	// id, which only the caller (the cookie) keeps. Subject, CreatedAt and
	// a later ExpiresAt are required.
	CreateSession(ctx context.Context, sess Session) (rawID string, err error)
	// Session returns the session for rawID, or ErrNotFound when there is
	// none or it has expired at now.
	Session(ctx context.Context, rawID string, now time.Time) (Session, error)
	// DeleteSession removes the session for rawID (missing: no error).
	DeleteSession(ctx context.Context, rawID string) error
	// Sweep deletes the sessions expired at now and reports how many went.
	Sweep(ctx context.Context, now time.Time) (int64, error)
}

// AuditStore keeps the audit log.
type AuditStore interface {
	// Audit appends e. At and Action are required; ID is assigned.
	Audit(ctx context.Context, e AuditEntry) error
	// AuditLog returns up to limit entries, newest first (by time, then by
	// insertion order). limit <= 0 means 100.
	AuditLog(ctx context.Context, limit int) ([]AuditEntry, error)
	// AuditLogOf is AuditLog, of the entries of one subject.
	AuditLogOf(ctx context.Context, subject string, limit int) ([]AuditEntry, error)
	// PruneAudit deletes the entries older than before (zero: none for
	// their age) and then all but the newest keep (keep <= 0: no count
	// limit), oldest first, in statements of at most AuditPruneBatch rows
	// each (so other writers are never held up long), and reports how
	// many went.
	PruneAudit(ctx context.Context, before time.Time, keep int) (int64, error)
}

// AuditPruneBatch is the most rows one statement of PruneAudit deletes.
const AuditPruneBatch = 1000

// RepoStore keeps the repositories onboarded through the API. Repositories
// of the config file and the working repository are not stored: they come
// from the configuration at every start.
type RepoStore interface {
	// Repos returns every stored repository, ordered by id.
	Repos(ctx context.Context) ([]Repo, error)
	// AddRepo stores r. ID and URL are required; an id already stored
	// (compared case-insensitively) is ErrConflict.
	AddRepo(ctx context.Context, r Repo) error
	// DeleteRepo forgets the repository with this id (case-insensitively)
	// and its sync history, in one transaction. Deleting a repository that
	// is not stored is not an error.
	DeleteRepo(ctx context.Context, id string) error
}

// SyncStore keeps the sync history of every repository, by repository id
// (compared case-insensitively).
type SyncStore interface {
	// PutSync inserts or updates s. A stored sync never goes back: an
	// update whose state comes before the stored one (queued, then
	// running, then succeeded or failed) is ignored, so writers need not
	// be ordered. Then only the keep newest finished syncs of the
	// repository are kept (keep <= 0: all); queued and running ones are
	// never dropped.
	PutSync(ctx context.Context, s Sync, keep int) error
	// PutSyncs is PutSync of each of list, in one transaction: all are
	// stored, or none.
	PutSyncs(ctx context.Context, list []Sync, keep int) error
	// GetSync returns one sync of the repository, or ErrNotFound.
	GetSync(ctx context.Context, repoID, id string) (Sync, error)
	// ListSyncs returns up to limit syncs of the repository, newest first
	// (by id, which is time-ordered), only those older than before when
	// before is not empty: the page after the one that ended with before.
	ListSyncs(ctx context.Context, repoID, before string, limit int) ([]Sync, error)
	// FailUnfinished marks every queued or running sync recorded by
	// replica (or by no replica: before replica ids existed) failed at at
	// with the error reason, and reports how many it changed. A server
	// calls it once at start-up, before its refreshers run: such a sync
	// belonged to an earlier process of the same replica that ended
	// without finishing it. Other replicas' syncs are left alone.
	FailUnfinished(ctx context.Context, replica string, at time.Time, reason string) (int64, error)
	// DeleteSyncs forgets the sync history of one repository.
	DeleteSyncs(ctx context.Context, repoID string) error
}

// DeliveryStore remembers the webhook deliveries already handled, for
// every process that shares the database.
type DeliveryStore interface {
	// SeenDelivery records id (X-GitHub-Delivery) at now and reports
	// whether it had been recorded within ttl before: a repeat is seen
	// (and does not extend the first record's lifetime); of concurrent
	// calls with one new id exactly one reports false. An empty id is
	// never recorded and never seen.
	SeenDelivery(ctx context.Context, id string, now time.Time, ttl time.Duration) (bool, error)
}

// ViewStore keeps, for replicas that share the database, the version of
// every mirror's current view, so that they all serve the same version
// for the same content (see View).
type ViewStore interface {
	// CommitView records hash as the repository's current view and
	// returns the record now stored: for the stored hash, the stored
	// version (raised to local if that is higher) with its build time;
	// for another hash a new version, above both the stored one and
	// local, built at builtAt. created reports a new version. One
	// statement decides, also between processes.
	CommitView(ctx context.Context, repoID, hash string, local int64, builtAt time.Time) (v View, created bool, err error)
	// CurrentView returns the repository's current view record, or
	// ErrNotFound when none was committed.
	CurrentView(ctx context.Context, repoID string) (View, error)
}

// KeyStore keeps keys that every process sharing the database must use
// alike.
type KeyStore interface {
	// SharedKey returns the key called name, created with size random
	// bytes by the first process that asks: later calls, from any
	// process, get the same bytes.
	SharedKey(ctx context.Context, name string, size int) ([]byte, error)
}

// Step is one versioned migration of the schema.
type Step struct {
	Version int
	Name    string
}

// Session is a signed-in browser's server-side state.
type Session struct {
	// ID is the SHA-256 (hex) of the raw id: safe to log, useless as a
	// cookie. The raw id is never stored. It is set by Session.
	ID            string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string
	CreatedAt     time.Time
	ExpiresAt     time.Time
}

// AuditEntry is one audited operation, or an aggregate of requests
// (Requests > 1). The store keeps the values as given: the caller bounds
// and escapes them (auth does).
type AuditEntry struct {
	ID      int64
	At      time.Time // the request, or the first of an aggregate
	Actor   string    // e-mail or subject of the principal; "anonymous" when there is none
	Subject string    // the principal's OIDC subject ("" when anonymous)
	Method  string    // session | bearer | anonymous
	Action  string    // the operationId
	Route   string    // the route template, e.g. /api/v1/repos/{repoID}/sync ("" in entries older than the column)
	Repo    string    // the repository parameter (escaped, cut), when the route has one
	Outcome string    // the final status, e.g. "200" or "403 read-only"
	Client  string    // the client address (of an aggregate: the address group)
	// Requests is how many requests the entry stands for: 1 for one
	// request (0 is stored as 1), more for an aggregate.
	Requests int64
	// LastAt is the time of the last request of an aggregate; zero is
	// stored as At, and AuditLog always sets it.
	LastAt time.Time
}

// Repo is a repository onboarded through the API: what it takes to serve
// it again after a restart.
type Repo struct {
	ID string
	// URL is the upstream as given when onboarding. Onboarded mirrors
	// never get operator credentials; a URL with userinfo keeps it here,
	// in a file only the server's user can read.
	URL       string
	Trunk     string // "" = the remote's default branch
	FullName  string // owner/name, lower-case ("" if none)
	CreatedAt time.Time
	CreatedBy string // the actor who onboarded it ("" when anonymous)
	// AddedBySubject and AddedByEmail are the principal who onboarded it
	// (its subject and e-mail; both "" when anonymous): its owner, for
	// per-user visibility.
	AddedBySubject, AddedByEmail string
}

// The states of a stored sync, in the order a sync goes through them.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// Sync is one stored refresh run.
type Sync struct {
	// ID is globally unique and time-ordered (the refresher uses UUIDv7
	// text): ordering by ID is ordering by creation.
	ID          string
	RepoID      string
	Trigger     string
	Mode        string
	State       string // one of the State constants
	QueuedAt    time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
	DurationMs  *int64
	ViewVersion int64
	// Changes are the refs the run reported (at most what the refresher
	// keeps); ChangesTotal counts every changed ref.
	Changes      []RefChange
	ChangesTotal int
	Error        string // the sanitized error of a failed run
	// Replica is the id of the stackd process that recorded the run
	// (--replica-id); "" for runs stored before replica ids existed.
	Replica string
}

// RefChange is one changed ref of a sync.
type RefChange struct {
	Ref    string `json:"ref"`
	Old    string `json:"old,omitempty"` // hex object id; "" when created
	New    string `json:"new,omitempty"` // hex object id; "" when deleted
	Change string `json:"change"`        // created | updated | forced | deleted
}
