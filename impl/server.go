// Package impl implements the stackd API (gen.StrictServerInterface) on top
// of the concern packages: registry (repositories and their snapshots),
// refresh (the one way into a refresh), view (snapshots), events (SSE),
// webhook (GitHub deliveries) and problem (RFC 9457 errors).
//
// Handlers are thin: they read the current snapshot or call the repository's
// Refresher. Expected failures are the typed responses declared in
// openapi.yaml; an unexpected error is returned as is and the error hook
// (see http.go) logs it and answers a generic 500 problem.
package impl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/refname"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
	"github.com/stackd/stackd/impl/webhook"
)

var _ gen.StrictServerInterface = (*Server)(nil)

// Server implements the API.
type Server struct {
	reg     *registry.Registry
	refresh *refresh.Manager
	broker  *events.Broker
	log     *slog.Logger
	info    gen.ServerConfig

	webhookSecret []byte
	deliveries    *webhook.Deduper
	onboard       func(ctx context.Context, req gen.RepoCreate) (*registry.Repo, error)
	deleteRepo    func(ctx context.Context, id string) error
	keepalive     func() (<-chan time.Time, func())

	diffs *view.Diffs

	me       func(ctx context.Context) (gen.Me, bool)
	auditLog func(ctx context.Context, limit int) ([]gen.AuditEntry, error)

	db Database

	shortOfMemory func() bool
}

// ServerDeps is what the API handlers need.
type ServerDeps struct {
	Registry *registry.Registry
	Refresh  *refresh.Manager
	Broker   *events.Broker
	Logger   *slog.Logger
	Info     gen.ServerConfig
	// WebhookSecret enables POST /api/v1/webhooks/github when set.
	WebhookSecret []byte
	// Onboard registers and clones a new mirror (POST /api/v1/repos).
	Onboard func(ctx context.Context, req gen.RepoCreate) (*registry.Repo, error)
	// Delete removes a mirror onboarded through the API (DELETE
	// /api/v1/repos/{repoID}).
	Delete func(ctx context.Context, id string) error
	// Keepalive makes the ticker of SSE keepalive comments (default 25 s).
	Keepalive func() (<-chan time.Time, func())
	// Me returns the authenticated caller; false means anonymous.
	Me func(ctx context.Context) (gen.Me, bool)
	// AuditLog lists recent audit entries (nil: no audit store).
	AuditLog func(ctx context.Context, limit int) ([]gen.AuditEntry, error)
	// Database is asked by readiness and the webhook's deduplication
	// (nil: no database; readiness does not wait for one, deliveries are
	// deduplicated in memory).
	Database Database
	// ShortOfMemory says whether the server is short of memory: a sync
	// of a mirror that would start a fetch is refused (nil: never).
	ShortOfMemory func() bool
	// DiffLimits bound each patch (zero fields: view.DefaultDiffLimits);
	// DiffHooks observe their computations (tests).
	DiffLimits view.DiffLimits
	DiffHooks  view.DiffHooks
}

// Database is what handlers ask of the store directly.
type Database interface {
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	store.DeliveryStore
}

// NewServer builds the API implementation.
func NewServer(d ServerDeps) *Server {
	ka := d.Keepalive
	if ka == nil {
		ka = func() (<-chan time.Time, func()) {
			t := time.NewTicker(25 * time.Second)
			return t.C, t.Stop
		}
	}
	short := d.ShortOfMemory
	if short == nil {
		short = func() bool { return false }
	}
	return &Server{
		reg: d.Registry, refresh: d.Refresh, broker: d.Broker, log: d.Logger, info: d.Info,
		webhookSecret: d.WebhookSecret,
		deliveries:    webhook.NewDeduper(time.Hour, 10000, time.Now),
		onboard:       d.Onboard,
		deleteRepo:    d.Delete,
		keepalive:     ka,
		diffs:         view.NewDiffs(d.DiffLimits, view.DefaultDiffCacheBytes, d.DiffHooks),
		me:            d.Me,
		auditLog:      d.AuditLog,
		db:            d.Database,
		shortOfMemory: short,
	}
}

// notFound builds a 404 body. Values in it are quoted: repository and
// sync ids passed their patterns in the validator, branch names passed
// refname.Check and are shown through refname.Quote.
func notFound(format string, args ...any) gen.Problem {
	return problem.New(404, problem.NotFound, fmt.Sprintf(format, args...))
}

// badBranch checks a branch-name path parameter (param is its name in the
// spec) by git's rules. The 400 body names the rule that failed and never
// repeats the value.
func badBranch(param, name string) *gen.Problem {
	err := refname.Check(name)
	if err == nil {
		return nil
	}
	p := problem.New(http.StatusBadRequest, problem.BadRequest, fmt.Sprintf("path parameter %q: %v", param, err))
	return &p
}

// etagMatches implements If-None-Match (weak comparison, lists and *).
func etagMatches(header *string, etag string) bool {
	if header == nil {
		return false
	}
	strip := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "W/") }
	want := strip(etag)
	for _, cand := range strings.Split(*header, ",") {
		c := strings.TrimSpace(cand)
		if c == "*" || strip(c) == want {
			return true
		}
	}
	return false
}

func (s *Server) repoResource(r *registry.Repo) gen.Repo {
	snap := r.Snapshot()
	out := snap.Repo()
	if r.FullName != "" && r.Kind == gen.Mirror {
		fn := r.FullName
		out.FullName = &fn
	}
	if rf, ok := s.refresh.Get(r.ID); ok {
		st := rf.Status()
		ss := gen.SyncStatus{
			State:               gen.SyncStatusStateIdle,
			LastAttemptAt:       st.LastAttemptAt,
			LastSuccessAt:       st.LastSuccessAt,
			ConsecutiveFailures: st.ConsecutiveFailures,
			NextScheduledAt:     st.NextScheduledAt,
		}
		switch {
		case st.Running && r.Kind == gen.Mirror && snap.Version() == 0:
			ss.State = gen.SyncStatusStateCloning
		case st.Running:
			ss.State = gen.SyncStatusStateRunning
		}
		if st.LastError != "" {
			e := st.LastError
			ss.LastError = &e
		}
		out.SyncStatus = &ss
	}
	return out
}

// GetHealth answers the liveness probe.
func (s *Server) GetHealth(ctx context.Context, _ gen.GetHealthRequestObject) (gen.GetHealthResponseObject, error) {
	return gen.GetHealth200JSONResponse{Status: "ok"}, nil
}

// GetReady answers 200 once the working repository and every mirror of the
// config file had a first refresh, while the database answers. Mirrors onboarded through the API do
// not count: their first clone shows in their syncStatus.
func (s *Server) GetReady(ctx context.Context, _ gen.GetReadyRequestObject) (gen.GetReadyResponseObject, error) {
	if err := s.pingDatabase(ctx); err != nil {
		return gen.GetReady503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: gen.UnavailableApplicationProblemPlusJSONResponse(
			problem.New(503, problem.Unavailable, "the database is unreachable"))}, nil
	}
	var waiting []string
	for _, r := range s.reg.List() {
		if r.Origin != registry.OriginAPI && !r.Ready() {
			waiting = append(waiting, r.ID)
		}
	}
	if len(waiting) > 0 {
		return gen.GetReady503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: gen.UnavailableApplicationProblemPlusJSONResponse(
			problem.New(503, problem.Unavailable, "waiting for the first refresh of: "+strings.Join(waiting, ", ")))}, nil
	}
	return gen.GetReady200JSONResponse{Status: "ready"}, nil
}

// GetConfig describes the server's posture.
func (s *Server) GetConfig(ctx context.Context, _ gen.GetConfigRequestObject) (gen.GetConfigResponseObject, error) {
	return gen.GetConfig200JSONResponse(s.info), nil
}

// ListRepos lists every repository.
func (s *Server) ListRepos(ctx context.Context, _ gen.ListReposRequestObject) (gen.ListReposResponseObject, error) {
	out := gen.ListRepos200JSONResponse{}
	for _, r := range s.reg.List() {
		out = append(out, s.repoResource(r))
	}
	return out, nil
}

// GetRepo returns one repository.
func (s *Server) GetRepo(ctx context.Context, req gen.GetRepoRequestObject) (gen.GetRepoResponseObject, error) {
	r, ok := s.reg.Get(req.RepoID)
	if !ok {
		return gen.GetRepo404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no repository %q", req.RepoID))}, nil
	}
	return gen.GetRepo200JSONResponse(s.repoResource(r)), nil
}

// snapshotOf finds a repository's snapshot or builds the 404 body.
func (s *Server) snapshotOf(id string) (*view.Snapshot, *gen.Problem) {
	r, ok := s.reg.Get(id)
	if !ok {
		p := notFound("no repository %q", id)
		return nil, &p
	}
	return r.Snapshot(), nil
}

// GetView returns the whole current view.
func (s *Server) GetView(ctx context.Context, req gen.GetViewRequestObject) (gen.GetViewResponseObject, error) {
	snap, p := s.snapshotOf(req.RepoID)
	if p != nil {
		return gen.GetView404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(*p)}, nil
	}
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.GetView304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	// The view is the snapshot alone (its repo without syncStatus, which
	// changes between snapshots), so its ETag stays exact.
	return viewResponse{viewAnswer(ctx, snap)}, nil
}

// ListStacks returns every stack.
func (s *Server) ListStacks(ctx context.Context, req gen.ListStacksRequestObject) (gen.ListStacksResponseObject, error) {
	snap, p := s.snapshotOf(req.RepoID)
	if p != nil {
		return gen.ListStacks404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(*p)}, nil
	}
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.ListStacks304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	return stacksResponse{jsonBytes{body: snap.StacksJSON(), etag: snap.ETag()}}, nil
}

// GetStack returns one stack by its root branch.
func (s *Server) GetStack(ctx context.Context, req gen.GetStackRequestObject) (gen.GetStackResponseObject, error) {
	if p := badBranch("root", req.Root); p != nil {
		return gen.GetStack400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(*p)}, nil
	}
	snap, p := s.snapshotOf(req.RepoID)
	if p != nil {
		return gen.GetStack404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(*p)}, nil
	}
	st, ok := snap.StackJSON(req.Root)
	if !ok {
		return gen.GetStack404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no stack rooted at %s in %q", refname.Quote(req.Root), req.RepoID))}, nil
	}
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.GetStack304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	return stackResponse{jsonBytes{body: st, etag: snap.ETag()}}, nil
}

// ListBranches returns every branch.
func (s *Server) ListBranches(ctx context.Context, req gen.ListBranchesRequestObject) (gen.ListBranchesResponseObject, error) {
	snap, p := s.snapshotOf(req.RepoID)
	if p != nil {
		return gen.ListBranches404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(*p)}, nil
	}
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.ListBranches304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	js := snap.BranchesJSON()
	return branchesResponse{jsonBytes{body: js[:len(js)-1], etag: snap.ETag()}}, nil
}

// GetBranch returns one branch.
func (s *Server) GetBranch(ctx context.Context, req gen.GetBranchRequestObject) (gen.GetBranchResponseObject, error) {
	if p := badBranch("branch", req.Branch); p != nil {
		return gen.GetBranch400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(*p)}, nil
	}
	snap, p := s.snapshotOf(req.RepoID)
	if p != nil {
		return gen.GetBranch404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(*p)}, nil
	}
	b, ok := snap.BranchJSON(req.Branch)
	if !ok {
		return gen.GetBranch404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no branch %s in %q", refname.Quote(req.Branch), req.RepoID))}, nil
	}
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.GetBranch304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	return branchResponse{jsonBytes{body: b, etag: snap.ETag()}}, nil
}

// GetBranchDiff returns the branch's patch against its parent, computed
// from the commits the snapshot pinned, within view.DiffLimits, once per
// commit pair however many requests want it (view.Diffs).
func (s *Server) GetBranchDiff(ctx context.Context, req gen.GetBranchDiffRequestObject) (gen.GetBranchDiffResponseObject, error) {
	if p := badBranch("branch", req.Branch); p != nil {
		return gen.GetBranchDiff400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(*p)}, nil
	}
	r, ok := s.reg.Get(req.RepoID)
	if !ok {
		return gen.GetBranchDiff404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no repository %q", req.RepoID))}, nil
	}
	snap := r.Snapshot()
	if _, ok := snap.Branch(req.Branch); !ok {
		return gen.GetBranchDiff404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no branch %s in %q", refname.Quote(req.Branch), req.RepoID))}, nil
	}
	base, tip, ok := snap.DiffRange(req.Branch)
	if !ok {
		return gen.GetBranchDiff404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("branch %s has no parent to diff against", refname.Quote(req.Branch)))}, nil
	}
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.GetBranchDiff304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	patch, err := s.diffs.Get(ctx, req.RepoID, snap.Objects(), base, tip)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return gen.GetBranchDiff404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(
			notFound("objects of branch %s are not in the local object store (a partial clone, or the branch moved on)", refname.Quote(req.Branch)))}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("diff %s %s..%s: %w", req.RepoID, base, tip, err)
	}
	return gen.GetBranchDiff200TextxPatchResponse{Body: bytes.NewReader(patch), ContentLength: int64(len(patch)), Headers: gen.GetBranchDiff200ResponseHeaders{ETag: snap.ETag()}}, nil
}

// location builds a path from escaped segments.
func location(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteString("/")
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// GetMe returns the caller. The gate has already refused an anonymous
// caller when auth is on, so anonymous here means auth is off.
func (s *Server) GetMe(ctx context.Context, _ gen.GetMeRequestObject) (gen.GetMeResponseObject, error) {
	if s.me != nil {
		if me, ok := s.me(ctx); ok {
			return gen.GetMe200JSONResponse(me), nil
		}
	}
	return gen.GetMe200JSONResponse{Subject: "anonymous", AuthenticatedBy: gen.MeAuthenticatedByNone, Groups: []string{}}, nil
}

// ListAudit returns recent audit entries, newest first.
func (s *Server) ListAudit(ctx context.Context, req gen.ListAuditRequestObject) (gen.ListAuditResponseObject, error) {
	limit := 100
	if req.Params.Limit != nil {
		limit = *req.Params.Limit
	}
	if s.auditLog == nil {
		return gen.ListAudit200JSONResponse{}, nil
	}
	entries, err := s.auditLog(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return gen.ListAudit200JSONResponse(entries), nil
}
