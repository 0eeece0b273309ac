// Package api implements the stackd API (gen.StrictServerInterface), one
// file per OpenAPI tag: repos, views (tag stacks), syncs and events (tag
// sync), webhooks, meta, and me (tag auth).
//
// Handlers are thin. They depend on small interfaces declared here and
// implemented elsewhere: Repos and Lifecycle (the served set, package
// repos), Refreshers (package refresh, the one way into a refresh),
// Streams (package events), Database and Audit (package store). The
// repository a path names is looked up in one place (find, through
// lookup), which also makes the operation's 404 and decides whether the
// caller may see it (per-user visibility: a repository the caller may not
// see gets the very answer of one that does not exist). Expected failures
// are the typed responses declared in openapi.yaml, matched with
// errors.Is against the sentinels of the packages that return them; an
// unexpected error is returned as is and the error hook (answerError)
// logs it and answers a generic 500 problem.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
	"github.com/stackd/stackd/impl/webhook"
)

// Repos is the set of served repositories, as the handlers read it
// (repos.Set).
type Repos interface {
	// Get finds a repository by id (ids match case-insensitively).
	Get(id string) (*registry.Repo, bool)
	// List returns every repository, in id order.
	List() []*registry.Repo
	// ByFullName finds a repository by its forge full name (owner/name).
	ByFullName(fullName string) (*registry.Repo, bool)
}

// Lifecycle changes the set of served repositories (repos.Set). Its
// failures are the sentinels of package repos (ErrNotFound,
// ErrNotRemovable, ErrRemovedWhileOnboarding, ErrBadID, FieldError), of
// registry (duplicates), mirror (refused remotes), refresh (the first
// clone's failure) and memlimit.
type Lifecycle interface {
	// Onboard registers and clones a mirror (POST /api/v1/repos).
	Onboard(ctx context.Context, req gen.RepoCreate) (*registry.Repo, error)
	// Remove removes a mirror onboarded through the API (DELETE
	// /api/v1/repos/{repoID}).
	Remove(ctx context.Context, id string) error
}

// Refreshers finds the refresher of a repository (RefreshersOf a
// refresh.Manager).
type Refreshers interface {
	Refresher(id string) (Refresher, bool)
}

// Refresher is what the handlers ask of a repository's refreshes
// (*refresh.Refresher).
type Refresher interface {
	Status() refresh.Status
	TriggerIf(t refresh.Trigger, admit func() error) (string, error)
	SyncIf(ctx context.Context, t refresh.Trigger, admit func() error) (refresh.Result, error)
	TriggerDebounced(t refresh.Trigger) string
	Get(runID string) (refresh.Result, bool)
	Page(ctx context.Context, limit int, before string) ([]refresh.Result, error)
	Lookup(ctx context.Context, syncID string) (refresh.Result, error)
}

// RefreshersOf is the Refreshers of a refresh manager.
func RefreshersOf(m *refresh.Manager) Refreshers { return managerRefreshers{m} }

type managerRefreshers struct{ m *refresh.Manager }

func (m managerRefreshers) Refresher(id string) (Refresher, bool) {
	rf, ok := m.m.Get(id)
	if !ok {
		return nil, false
	}
	return rf, true
}

// Streams subscribes event streams (*events.Broker).
type Streams interface {
	Resume(repoID, client, lastID string) (*events.Subscription, error)
}

// Database is what handlers ask of the store directly: readiness follows
// it, and webhook deliveries are deduplicated in it.
type Database interface {
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	store.DeliveryStore
}

// Audit reads the audit log (store.AuditStore): whole, or the entries of
// one subject.
type Audit interface {
	AuditLog(ctx context.Context, limit int) ([]store.AuditEntry, error)
	AuditLogOf(ctx context.Context, subject string, limit int) ([]store.AuditEntry, error)
}

var _ gen.StrictServerInterface = (*Server)(nil)

// Server implements the API.
type Server struct {
	repos      Repos
	lifecycle  Lifecycle
	refreshers Refreshers
	streams    Streams
	streamHub  *events.Hub
	db         Database
	audit      Audit
	log        *slog.Logger
	info       gen.ServerConfig

	webhookSecret []byte
	deliveries    *webhook.Deduper
	metrics       *metrics.Metrics
	diffs         *view.Diffs
	shortOfMemory func() bool
	perUser       bool
	repoItems     repoItems // GET /api/v1/repos's encoded items
}

// Deps is what the handlers need.
type Deps struct {
	Repos      Repos
	Lifecycle  Lifecycle
	Refreshers Refreshers
	Streams    Streams
	// StreamHub serves event streams off their requests' goroutines
	// (events.Hub; nil: on them).
	StreamHub *events.Hub
	// Database is asked by readiness and the webhook's deduplication
	// (nil: no database; readiness does not wait for one, deliveries are
	// deduplicated in memory).
	Database Database
	// Audit lists recent audit entries (nil: none).
	Audit  Audit
	Logger *slog.Logger
	Info   gen.ServerConfig
	// WebhookSecret enables POST /api/v1/webhooks/github when set.
	WebhookSecret []byte
	// ShortOfMemory says whether the server is short of memory: a sync
	// of a mirror that would start a fetch is refused (nil: never).
	ShortOfMemory func() bool
	// DiffLimits bound each patch (zero fields: view.DefaultDiffLimits);
	// DiffHooks observe their computations (tests).
	DiffLimits view.DiffLimits
	DiffHooks  view.DiffHooks
	// Metrics counts the webhook deliveries by outcome (nil: none).
	Metrics *metrics.Metrics
	// PerUser shows each caller only the repositories it may see
	// (registry.Repo.VisibleTo; auth.Config.PerUserVisibility). Off:
	// every caller sees every repository (the local posture).
	PerUser bool
}

// New builds the API implementation.
func New(d Deps) *Server {
	short := d.ShortOfMemory
	if short == nil {
		short = func() bool { return false }
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		repos: d.Repos, lifecycle: d.Lifecycle, refreshers: d.Refreshers, streams: d.Streams, streamHub: d.StreamHub, db: d.Database, audit: d.Audit,
		log: log, info: d.Info,
		webhookSecret: d.WebhookSecret,
		deliveries:    webhook.NewDeduper(time.Hour, 10000, time.Now),
		metrics:       d.Metrics,
		diffs:         view.NewDiffs(d.DiffLimits, view.DefaultDiffCacheBytes, d.DiffHooks),
		shortOfMemory: short,
		perUser:       d.PerUser,
	}
}

// Routes puts the strict handlers on mux: every request gets the facts
// handlers read from its context (markRequest), and every problem they
// answer its instance and request id (stampProblems); an error a handler
// returns is answered by answerError.
func (s *Server) Routes(mux *http.ServeMux) {
	strict := gen.NewStrictHandlerWithOptions(s, []gen.StrictMiddlewareFunc{stampProblems, markRequest}, gen.StrictHTTPServerOptions{
		RequestErrorHandlerFunc: func(w http.ResponseWriter, r *http.Request, err error) {
			problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, err.Error())
		},
		ResponseErrorHandlerFunc: answerError(s.log),
	})
	gen.HandlerWithOptions(strict, gen.StdHTTPServerOptions{
		BaseRouter: mux,
		ErrorHandlerFunc: func(w http.ResponseWriter, r *http.Request, err error) {
			problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, err.Error())
		},
	})
}

// notFound404 is an operation's 404 response: every one embeds the
// same problem.
type notFound404 interface {
	~struct {
		gen.NotFoundApplicationProblemPlusJSONResponse
	}
}

// notFoundAs is the operation's 404 response (T) with problem p.
func notFoundAs[T notFound404](p gen.Problem) T {
	return T{gen.NotFoundApplicationProblemPlusJSONResponse(p)}
}

// viewer is the caller, as the visibility rule sees it.
func (s *Server) viewer(ctx context.Context) registry.Viewer {
	if !s.perUser {
		return registry.Viewer{All: true}
	}
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return registry.Viewer{}
	}
	return registry.Viewer{Subject: p.Subject, Email: p.Email, EmailVerified: p.EmailVerified, Admin: p.Admin}
}

// lookup finds the repository a path's repoID names, if the caller may see
// it: the one place a request reaches a repository by id.
func (s *Server) lookup(ctx context.Context, id string) (*registry.Repo, bool) {
	r, ok := s.repos.Get(id)
	if !ok || !r.VisibleTo(s.viewer(ctx)) {
		return nil, false
	}
	return r, true
}

// find looks up the repository a path's repoID names (lookup). When there
// is none, or the caller may not see it, it returns nil and the
// operation's 404 response (T), the one answer of every operation for an
// unknown repository.
func find[T notFound404](ctx context.Context, s *Server, id string) (*registry.Repo, T) {
	r, ok := s.lookup(ctx, id)
	if !ok {
		return nil, notFoundAs[T](noRepo(id))
	}
	return r, T{}
}

// findRefresher is find, for the operations on a repository's syncs: a
// repository without a refresher (being removed) is not there either.
func findRefresher[T notFound404](ctx context.Context, s *Server, id string) (*registry.Repo, Refresher, T) {
	r, missing := find[T](ctx, s, id)
	if r == nil {
		return nil, nil, missing
	}
	rf, ok := s.refreshers.Refresher(r.ID)
	if !ok {
		return nil, nil, notFoundAs[T](noRepo(id))
	}
	return r, rf, T{}
}
