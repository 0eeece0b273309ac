package impl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/webhook"
)

// SyncRepo forces a refresh through the repository's refresher.
func (s *Server) SyncRepo(ctx context.Context, req gen.SyncRepoRequestObject) (gen.SyncRepoResponseObject, error) {
	r, ok := s.reg.Get(req.RepoID)
	if !ok {
		return gen.SyncRepo404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no repository %q", req.RepoID))}, nil
	}
	rf, ok := s.refresh.Get(r.ID)
	if !ok {
		return nil, fmt.Errorf("repository %q has no refresher", r.ID)
	}
	// A sync token is spent only when this sync creates a run: joining a
	// queued run costs nothing (auth.Charge, the gate's deferred charge).
	// A new run of a mirror (a fetch) is refused first while the server is
	// short of memory (memory.go).
	admit := func() error {
		if r.Kind == gen.Mirror && s.shortOfMemory() {
			return memlimit.ErrPressure
		}
		return auth.Charge(ctx)
	}
	var limited *auth.LimitError
	if req.Params.Wait != nil && !*req.Params.Wait {
		id, err := rf.TriggerIf(refresh.Manual, admit)
		if errors.As(err, &limited) {
			return gen.SyncRepo429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: tooMany(limited)}, nil
		}
		if errors.Is(err, memlimit.ErrPressure) {
			return gen.SyncRepo503ApplicationProblemPlusJSONResponse{ShuttingDownApplicationProblemPlusJSONResponse: shortOfMemory()}, nil
		}
		if errors.Is(err, refresh.ErrRemoved) {
			return gen.SyncRepo404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("repository %q was removed", r.ID))}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("sync %s: %w", r.ID, err)
		}
		res, _ := rf.Get(id)
		loc := location("api", "v1", "repos", r.ID, "syncs", id)
		return gen.SyncRepo202JSONResponse{Body: res.API(), Headers: gen.SyncRepo202ResponseHeaders{Location: &loc}}, nil
	}
	res, err := rf.SyncIf(ctx, refresh.Manual, admit)
	if errors.As(err, &limited) {
		return gen.SyncRepo429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: tooMany(limited)}, nil
	}
	if errors.Is(err, memlimit.ErrPressure) {
		return gen.SyncRepo503ApplicationProblemPlusJSONResponse{ShuttingDownApplicationProblemPlusJSONResponse: shortOfMemory()}, nil
	}
	if err == nil && errors.Is(res.Err, refresh.ErrRemoved) {
		err = res.Err
	}
	if errors.Is(err, refresh.ErrRemoved) {
		return gen.SyncRepo404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("repository %q was removed", r.ID))}, nil
	}
	if err != nil && ctx.Err() != nil {
		// The client went away while waiting. The run goes on for
		// whoever else waits on it (and for the view): nothing failed.
		s.log.Info("sync: client went away while waiting; the run goes on", "repo", r.ID, "status", StatusClientClosedRequest, "requestId", requestid.From(ctx))
		return clientClosed{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", r.ID, err)
	}
	loc := location("api", "v1", "repos", r.ID, "syncs", res.ID)
	failed := func(status int, slug string) gen.Problem {
		p := problem.New(status, slug, res.Error)
		id := res.ID
		p.SyncId = &id
		return p
	}
	switch {
	case res.Err == nil:
		return gen.SyncRepo200JSONResponse(res.API()), nil
	case shutdown(res.Err):
		return gen.SyncRepo503ApplicationProblemPlusJSONResponse{ShuttingDownApplicationProblemPlusJSONResponse: shuttingDown()}, nil
	case errors.Is(res.Err, memlimit.ErrPressure):
		// Admitted, then short of memory when the fetch was to start.
		return gen.SyncRepo503ApplicationProblemPlusJSONResponse{ShuttingDownApplicationProblemPlusJSONResponse: shortOfMemory()}, nil
	case errors.Is(res.Err, refresh.ErrTimeout):
		return gen.SyncRepo504ApplicationProblemPlusJSONResponse{SyncTimeoutApplicationProblemPlusJSONResponse: gen.SyncTimeoutApplicationProblemPlusJSONResponse{
			Body: failed(http.StatusGatewayTimeout, problem.Timeout), Headers: gen.SyncTimeoutResponseHeaders{Location: loc}}}, nil
	case errors.Is(res.Err, refresh.ErrFetch), errors.Is(res.Err, mirror.ErrBadURL), errors.Is(res.Err, mirror.ErrLocalRemote),
		errors.Is(res.Err, refresh.ErrBuild):
		return gen.SyncRepo502ApplicationProblemPlusJSONResponse{SyncFetchFailedApplicationProblemPlusJSONResponse: gen.SyncFetchFailedApplicationProblemPlusJSONResponse{
			Body: failed(http.StatusBadGateway, badGateway(res.Err)), Headers: gen.SyncFetchFailedResponseHeaders{Location: loc}}}, nil
	default:
		return nil, fmt.Errorf("sync %s: %w", r.ID, res.Err)
	}
}

// badGateway is the problem type of a run that failed for what the
// repository holds: an upstream over the fetch limits, an invalid pack,
// refs that make no view, or another failure of the upstream.
func badGateway(err error) string {
	switch {
	case errors.Is(err, refresh.ErrBuild):
		return problem.ViewBuildFailed
	case errors.Is(err, mirror.ErrTooLarge):
		return problem.UpstreamTooLarge
	case errors.Is(err, mirror.ErrCorrupt):
		return problem.UpstreamInvalid
	}
	return problem.FetchFailed
}

// StatusClientClosedRequest is the status recorded (and logged) for a
// request whose client went away before the answer: nginx's 499. It is
// never received by anyone, so it is not in openapi.yaml.
const StatusClientClosedRequest = 499

// clientClosed answers a client that went away: the status only, for the
// access log (the connection is gone).
type clientClosed struct{}

func (clientClosed) VisitSyncRepoResponse(w http.ResponseWriter) error {
	w.WriteHeader(StatusClientClosedRequest)
	return nil
}

// shutdownRetryAfter is the Retry-After, in seconds, of the 503 answered
// while the server shuts down: about a restart's time.
const shutdownRetryAfter = 10

// shutdown reports whether a run failed because the server is shutting
// down: it never started (refresh.ErrClosed), or the manager cancelled it
// (its context derives from the manager's, plus a timeout that is
// ErrTimeout).
func shutdown(err error) bool {
	return errors.Is(err, refresh.ErrClosed) || errors.Is(err, context.Canceled) && !errors.Is(err, refresh.ErrTimeout)
}

func shuttingDown() gen.ShuttingDownApplicationProblemPlusJSONResponse {
	return gen.ShuttingDownApplicationProblemPlusJSONResponse{
		Body:    problem.New(http.StatusServiceUnavailable, problem.Unavailable, "the server is shutting down; try again when it is back"),
		Headers: gen.ShuttingDownResponseHeaders{RetryAfter: shutdownRetryAfter},
	}
}

// ListSyncs pages through the stored refreshes, newest first; a Link
// header names the next page.
func (s *Server) ListSyncs(ctx context.Context, req gen.ListSyncsRequestObject) (gen.ListSyncsResponseObject, error) {
	rf, ok := s.refresherOf(req.RepoID)
	if !ok {
		return gen.ListSyncs404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no repository %q", req.RepoID))}, nil
	}
	limit := defaultSyncPage
	if req.Params.Limit != nil {
		limit = *req.Params.Limit
	}
	cursor := ""
	if req.Params.Cursor != nil {
		cursor = *req.Params.Cursor
	}
	// One more than asked tells whether there is a next page.
	page, err := rf.Page(ctx, limit+1, cursor)
	if err != nil {
		return nil, fmt.Errorf("sync history of %s: %w", rf.Repo().ID, err)
	}
	out := gen.ListSyncs200JSONResponse{Body: make([]gen.SyncResult, 0, min(len(page), limit))}
	for _, res := range page[:min(len(page), limit)] {
		out.Body = append(out.Body, res.API())
	}
	if len(page) > limit {
		q := url.Values{"limit": {strconv.Itoa(limit)}, "cursor": {page[limit-1].ID}}
		link := fmt.Sprintf("<%s?%s>; rel=\"next\"", location("api", "v1", "repos", rf.Repo().ID, "syncs"), q.Encode())
		out.Headers.Link = &link
	}
	return out, nil
}

// defaultSyncPage is GET .../syncs' page size without limit (the spec's
// default).
const defaultSyncPage = 50

// GetSync returns one refresh from the stored history.
func (s *Server) GetSync(ctx context.Context, req gen.GetSyncRequestObject) (gen.GetSyncResponseObject, error) {
	rf, ok := s.refresherOf(req.RepoID)
	if !ok {
		return gen.GetSync404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no repository %q", req.RepoID))}, nil
	}
	res, err := rf.Lookup(ctx, req.SyncID)
	if errors.Is(err, store.ErrNotFound) {
		return gen.GetSync404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no sync %q of %q (the history keeps the most recent ones)", req.SyncID, req.RepoID))}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sync %s of %s: %w", req.SyncID, rf.Repo().ID, err)
	}
	return gen.GetSync200JSONResponse(res.API()), nil
}

func (s *Server) refresherOf(id string) (*refresh.Refresher, bool) {
	r, ok := s.reg.Get(id)
	if !ok {
		return nil, false
	}
	return s.refresh.Get(r.ID)
}

// CreateRepo onboards a managed mirror.
func (s *Server) CreateRepo(ctx context.Context, req gen.CreateRepoRequestObject) (gen.CreateRepoResponseObject, error) {
	repo, err := s.onboard(ctx, *req.Body)
	switch {
	case err == nil:
		loc := location("api", "v1", "repos", repo.ID)
		return gen.CreateRepo201JSONResponse{Body: s.repoResource(repo), Headers: gen.CreateRepo201ResponseHeaders{Location: &loc}}, nil
	case errors.Is(err, registry.ErrDuplicateID), errors.Is(err, registry.ErrDuplicateURL),
		errors.Is(err, registry.ErrDuplicateFullName), errors.Is(err, errRemovedWhileOnboarding):
		return gen.CreateRepo409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: gen.ConflictApplicationProblemPlusJSONResponse(
			problem.New(http.StatusConflict, problem.Conflict, err.Error()))}, nil
	case mirror.Refused(err):
		// A policy refusal, before or while connecting (a name that
		// resolved to a private address): nothing was cloned.
		return gen.CreateRepo400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(
			problem.New(http.StatusBadRequest, problem.RemoteNotAllowed, redactErr(err)))}, nil
	case errors.Is(err, mirror.ErrBadURL), errors.Is(err, errBadRepoID), errors.As(err, new(badField)):
		return gen.CreateRepo400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(
			problem.New(http.StatusBadRequest, problem.BadRequest, err.Error()))}, nil
	case shutdown(err):
		return gen.CreateRepo503ApplicationProblemPlusJSONResponse{ShuttingDownApplicationProblemPlusJSONResponse: shuttingDown()}, nil
	case errors.Is(err, memlimit.ErrPressure):
		return gen.CreateRepo503ApplicationProblemPlusJSONResponse{ShuttingDownApplicationProblemPlusJSONResponse: shortOfMemory()}, nil
	case errors.Is(err, refresh.ErrTimeout):
		return gen.CreateRepo504ApplicationProblemPlusJSONResponse{TimeoutApplicationProblemPlusJSONResponse: gen.TimeoutApplicationProblemPlusJSONResponse(
			problem.New(http.StatusGatewayTimeout, problem.Timeout, refresh.Public(err)))}, nil
	case errors.Is(err, refresh.ErrFetch), errors.Is(err, refresh.ErrBuild):
		return gen.CreateRepo502ApplicationProblemPlusJSONResponse{FetchFailedApplicationProblemPlusJSONResponse: gen.FetchFailedApplicationProblemPlusJSONResponse(
			problem.New(http.StatusBadGateway, badGateway(err), refresh.Public(err)))}, nil
	default:
		return nil, err
	}
}

// DeleteRepo removes a mirror onboarded through the API.
func (s *Server) DeleteRepo(ctx context.Context, req gen.DeleteRepoRequestObject) (gen.DeleteRepoResponseObject, error) {
	err := s.deleteRepo(ctx, req.RepoID)
	switch {
	case err == nil:
		return gen.DeleteRepo204Response{}, nil
	case errors.Is(err, errNoRepo):
		return gen.DeleteRepo404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no repository %q", req.RepoID))}, nil
	case errors.Is(err, errNotRemovable):
		return gen.DeleteRepo409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: gen.ConflictApplicationProblemPlusJSONResponse(
			problem.New(http.StatusConflict, problem.Conflict, err.Error()))}, nil
	default:
		return nil, err
	}
}

// GithubWebhook receives GitHub deliveries. The signature is checked
// first, on the body as received; a verified delivery is never refused
// (it answers 202 or 204), and the refresh it asks for is debounced
// (refresh.Refresher.TriggerDebounced): the 202's syncID is the queued run
// that will serve the push.
func (s *Server) GithubWebhook(ctx context.Context, req gen.GithubWebhookRequestObject) (gen.GithubWebhookResponseObject, error) {
	if len(s.webhookSecret) == 0 {
		return gen.GithubWebhook404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(
			notFound("webhooks are disabled: no webhook secret is configured"))}, nil
	}
	raw, ok := rawBodyFrom(ctx)
	if !ok {
		return nil, errors.New("webhook: raw body missing from context")
	}
	sig := ""
	if req.Params.XHubSignature256 != nil {
		sig = *req.Params.XHubSignature256
	}
	if err := webhook.Verify(s.webhookSecret, raw.body, sig); err != nil {
		// A failed authentication: it spends from the address's bucket
		// (the gate already did when the header was not even well-formed).
		var limited *auth.LimitError
		if errors.As(auth.Charge(ctx), &limited) {
			return gen.GithubWebhook429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: tooMany(limited)}, nil
		}
		challenge := `HMAC realm="github-webhook"`
		return gen.GithubWebhook401ApplicationProblemPlusJSONResponse{UnauthorizedApplicationProblemPlusJSONResponse: gen.UnauthorizedApplicationProblemPlusJSONResponse{
			Body:    problem.New(http.StatusUnauthorized, problem.Unauthorized, "bad or missing X-Hub-Signature-256"),
			Headers: gen.UnauthorizedResponseHeaders{WWWAuthenticate: &challenge},
		}}, nil
	}
	event := ""
	if req.Params.XGitHubEvent != nil {
		event = *req.Params.XGitHubEvent
	}
	delivery := ""
	if req.Params.XGitHubDelivery != nil {
		delivery = *req.Params.XGitHubDelivery
	}
	log := s.log.With("event", event, "delivery", delivery)
	if s.seenDelivery(ctx, delivery) {
		log.Info("webhook: repeated delivery ignored")
		return gen.GithubWebhook204Response{}, nil
	}
	if event != webhook.EventPush {
		log.Info("webhook: event ignored")
		return gen.GithubWebhook204Response{}, nil
	}
	payload, err := webhook.Payload(raw.contentType, raw.body)
	var push webhook.Push
	if err == nil {
		push, err = webhook.ParsePush(payload)
	}
	if err != nil {
		// Signed by GitHub, so answering 4xx would only make it show a
		// failure nobody can fix; nothing is fetched.
		log.Warn("webhook: a verified push delivery cannot be parsed; nothing fetched", "err", err)
		return gen.GithubWebhook204Response{}, nil
	}
	repo, ok := s.reg.ByFullName(push.FullName)
	if !ok || repo.Kind != gen.Mirror {
		log.Info("webhook: push for a repository that is not a managed mirror; nothing fetched", "fullName", push.FullName)
		return gen.GithubWebhook204Response{}, nil
	}
	rf, ok := s.refresh.Get(repo.ID)
	id := ""
	if ok {
		id = rf.TriggerDebounced(refresh.Webhook)
	}
	if id == "" { // removed since it was looked up, or being removed
		log.Info("webhook: push for a repository being removed; nothing fetched", "repo", repo.ID)
		return gen.GithubWebhook204Response{}, nil
	}
	log.Info("webhook: refresh queued", "repo", repo.ID, "sync", id, "ref", push.Ref)
	return gen.GithubWebhook202JSONResponse{RepoID: repo.ID, SyncID: id}, nil
}

// tooMany is the 429 problem of a rate limit refusal.
func tooMany(err *auth.LimitError) gen.TooManyRequestsApplicationProblemPlusJSONResponse {
	retry := err.RetrySeconds()
	return gen.TooManyRequestsApplicationProblemPlusJSONResponse{
		Body:    problem.New(http.StatusTooManyRequests, problem.TooManyRequests, err.Error()),
		Headers: gen.TooManyRequestsResponseHeaders{RetryAfter: &retry},
	}
}

// StreamEvents streams a repository's events.
func (s *Server) StreamEvents(ctx context.Context, req gen.StreamEventsRequestObject) (gen.StreamEventsResponseObject, error) {
	r, ok := s.reg.Get(req.RepoID)
	if !ok {
		return gen.StreamEvents404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no repository %q", req.RepoID))}, nil
	}
	if isHead(ctx) {
		// The headers of the stream, without one: no subscription.
		return gen.StreamEvents200TexteventStreamResponse{Body: strings.NewReader("")}, nil
	}
	// A client that reconnects names the last event it saw; the header
	// wins over the query parameter.
	last := ""
	if req.Params.LastEventId != nil {
		last = *req.Params.LastEventId
	}
	if req.Params.LastEventID != nil {
		last = *req.Params.LastEventID
	}
	sub, err := s.broker.Resume(r.ID, clientKeyFrom(ctx), last)
	if errors.Is(err, events.ErrTooManyConnections) {
		retry := 5
		return gen.StreamEvents429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: gen.TooManyRequestsApplicationProblemPlusJSONResponse{
			Body:    problem.New(http.StatusTooManyRequests, problem.TooManyRequests, err.Error()),
			Headers: gen.TooManyRequestsResponseHeaders{RetryAfter: &retry},
		}}, nil
	}
	if err != nil {
		return nil, err
	}
	if cur, ok := s.reg.Get(req.RepoID); !ok || cur != r {
		// Removed meanwhile: its streams were ended (or this one would
		// never be), so answer as for a repository that is not there.
		sub.Close()
		return gen.StreamEvents404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: gen.NotFoundApplicationProblemPlusJSONResponse(notFound("no repository %q", req.RepoID))}, nil
	}
	// Read after subscribing: a view published in between is announced
	// by an event as well.
	hello := gen.StreamHello{RepoID: r.ID, ViewVersion: r.Snapshot().Version()}
	return gen.StreamEvents200TexteventStreamResponse{Body: events.StreamBody(ctx, sub, hello, s.keepalive)}, nil
}
