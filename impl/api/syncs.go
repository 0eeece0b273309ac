package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/store"
)

// Tag sync: manual syncs and the sync history (the event stream is in
// events.go).

// SyncRepo forces a refresh through the repository's refresher.
func (s *Server) SyncRepo(ctx context.Context, req gen.SyncRepoRequestObject) (gen.SyncRepoResponseObject, error) {
	r, missing := find[gen.SyncRepo404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	rf, ok := s.refreshers.Refresher(r.ID)
	if !ok {
		return nil, fmt.Errorf("repository %q has no refresher", r.ID)
	}
	removed := notFoundAs[gen.SyncRepo404ApplicationProblemPlusJSONResponse](notFound("repository %q was removed", r.ID))
	// A sync token is spent only when this sync creates a run: joining a
	// queued run costs nothing (auth.Charge, the gate's deferred charge).
	// A new run of a mirror (a fetch) is refused first while the server is
	// short of memory.
	admit := func() error {
		if r.Kind == gen.Mirror && s.shortOfMemory() {
			return memlimit.ErrPressure
		}
		return auth.Charge(ctx)
	}
	var limited *auth.LimitError
	if req.Params.Wait != nil && !*req.Params.Wait {
		id, err := rf.TriggerIf(refresh.Manual, admit)
		switch {
		case errors.As(err, &limited):
			return gen.SyncRepo429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: tooMany(limited)}, nil
		case errors.Is(err, memlimit.ErrPressure):
			return gen.SyncRepo503ApplicationProblemPlusJSONResponse{ShuttingDownApplicationProblemPlusJSONResponse: shortOfMemory()}, nil
		case errors.Is(err, refresh.ErrRemoved):
			return removed, nil
		case err != nil:
			return nil, fmt.Errorf("sync %s: %w", r.ID, err)
		}
		res, _ := rf.Get(id)
		loc := location("api", "v1", "repos", r.ID, "syncs", id)
		return gen.SyncRepo202JSONResponse{Body: res.API(), Headers: gen.SyncRepo202ResponseHeaders{Location: &loc}}, nil
	}
	res, err := rf.SyncIf(ctx, refresh.Manual, admit)
	switch {
	case errors.As(err, &limited):
		return gen.SyncRepo429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: tooMany(limited)}, nil
	case errors.Is(err, memlimit.ErrPressure):
		return gen.SyncRepo503ApplicationProblemPlusJSONResponse{ShuttingDownApplicationProblemPlusJSONResponse: shortOfMemory()}, nil
	case errors.Is(err, refresh.ErrRemoved), err == nil && errors.Is(res.Err, refresh.ErrRemoved):
		return removed, nil
	case err != nil && ctx.Err() != nil:
		// The client went away while waiting. The run goes on for
		// whoever else waits on it (and for the view): nothing failed.
		s.log.Info("sync: client went away while waiting; the run goes on", "repo", r.ID, "status", statusClientClosedRequest, "requestId", requestid.From(ctx))
		return clientClosed{}, nil
	case err != nil:
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

// defaultSyncPage is GET .../syncs' page size without limit (the spec's
// default).
const defaultSyncPage = 50

// ListSyncs pages through the stored refreshes, newest first; a Link
// header names the next page.
func (s *Server) ListSyncs(ctx context.Context, req gen.ListSyncsRequestObject) (gen.ListSyncsResponseObject, error) {
	r, rf, missing := findRefresher[gen.ListSyncs404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
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
		return nil, fmt.Errorf("sync history of %s: %w", r.ID, err)
	}
	out := gen.ListSyncs200JSONResponse{Body: make([]gen.SyncResult, 0, min(len(page), limit))}
	for _, res := range page[:min(len(page), limit)] {
		out.Body = append(out.Body, res.API())
	}
	if len(page) > limit {
		q := url.Values{"limit": {strconv.Itoa(limit)}, "cursor": {page[limit-1].ID}}
		link := fmt.Sprintf("<%s?%s>; rel=\"next\"", location("api", "v1", "repos", r.ID, "syncs"), q.Encode())
		out.Headers.Link = &link
	}
	return out, nil
}

// GetSync returns one refresh from the stored history.
func (s *Server) GetSync(ctx context.Context, req gen.GetSyncRequestObject) (gen.GetSyncResponseObject, error) {
	r, rf, missing := findRefresher[gen.GetSync404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	res, err := rf.Lookup(ctx, req.SyncID)
	if errors.Is(err, store.ErrNotFound) {
		return notFoundAs[gen.GetSync404ApplicationProblemPlusJSONResponse](notFound("no sync %q of %q (the history keeps the most recent ones)", req.SyncID, req.RepoID)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("sync %s of %s: %w", req.SyncID, r.ID, err)
	}
	return gen.GetSync200JSONResponse(res.API()), nil
}
