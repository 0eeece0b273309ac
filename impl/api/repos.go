package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/repos"
	"github.com/stackd/stackd/impl/view"
)

// Tag repos: the served repositories, onboarding and removal.

// ListRepos lists the repositories the caller may see, from the items
// encoded in advance (reposList).
func (s *Server) ListRepos(ctx context.Context, _ gen.ListReposRequestObject) (gen.ListReposResponseObject, error) {
	body, err := s.reposList(s.viewer(ctx))
	if err != nil {
		return nil, err
	}
	return reposResponse{body: body}, nil
}

// GetRepo returns one repository.
func (s *Server) GetRepo(ctx context.Context, req gen.GetRepoRequestObject) (gen.GetRepoResponseObject, error) {
	r, missing := find[gen.GetRepo404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	return gen.GetRepo200JSONResponse(s.repoResource(s.viewer(ctx), r)), nil
}

// CreateRepo onboards a managed mirror.
func (s *Server) CreateRepo(ctx context.Context, req gen.CreateRepoRequestObject) (gen.CreateRepoResponseObject, error) {
	repo, err := s.lifecycle.Onboard(ctx, *req.Body)
	switch {
	case err == nil:
		loc := location("api", "v1", "repos", repo.ID)
		return gen.CreateRepo201JSONResponse{Body: s.repoResource(s.viewer(ctx), repo), Headers: gen.CreateRepo201ResponseHeaders{Location: &loc}}, nil
	case errors.Is(err, registry.ErrDuplicateID), errors.Is(err, registry.ErrDuplicateURL),
		errors.Is(err, registry.ErrDuplicateFullName), errors.Is(err, repos.ErrRemovedWhileOnboarding):
		return gen.CreateRepo409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: gen.ConflictApplicationProblemPlusJSONResponse(
			problem.New(http.StatusConflict, problem.Conflict, err.Error()))}, nil
	case mirror.Refused(err):
		// A policy refusal, before or while connecting (a name that
		// resolved to a private address): nothing was cloned.
		return gen.CreateRepo400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(
			problem.New(http.StatusBadRequest, problem.RemoteNotAllowed, repos.RefusalDetail(err)))}, nil
	case errors.Is(err, mirror.ErrBadURL), errors.Is(err, repos.ErrBadID), errors.As(err, new(repos.FieldError)):
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

// DeleteRepo removes a mirror onboarded through the API. One the caller
// may not see is not there.
func (s *Server) DeleteRepo(ctx context.Context, req gen.DeleteRepoRequestObject) (gen.DeleteRepoResponseObject, error) {
	r, missing := find[gen.DeleteRepo404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	err := s.lifecycle.Remove(ctx, r.ID)
	switch {
	case err == nil:
		return gen.DeleteRepo204Response{}, nil
	case errors.Is(err, repos.ErrNotFound):
		return notFoundAs[gen.DeleteRepo404ApplicationProblemPlusJSONResponse](noRepo(req.RepoID)), nil
	case errors.Is(err, repos.ErrNotRemovable):
		return gen.DeleteRepo409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: gen.ConflictApplicationProblemPlusJSONResponse(
			problem.New(http.StatusConflict, problem.Conflict, err.Error()))}, nil
	default:
		return nil, err
	}
}

// repoResource is a repository as the API shows it to v: its snapshot's
// description and counts, its full name and origin, its refresher's
// status, and who onboarded it when v may know.
func (s *Server) repoResource(v registry.Viewer, r *registry.Repo) gen.Repo {
	snap, st := s.repoState(r)
	return s.repoResourceOf(r, snap, st, r.OwnerShownTo(v))
}

// repoResourceOf is r as the API shows it with snapshot snap and its
// refresher's status st (nil: no refresher), and addedBy when own.
func (s *Server) repoResourceOf(r *registry.Repo, snap *view.Snapshot, st *refresh.Status, own bool) gen.Repo {
	out := snap.Repo()
	if r.FullName != "" && r.Kind == gen.Mirror {
		fn := r.FullName
		out.FullName = &fn
	}
	origin := gen.RepoOrigin(r.Origin)
	out.Origin = &origin
	if own {
		out.AddedBy = &gen.RepoAddedBy{Subject: r.AddedBy.Subject, Email: optional(r.AddedBy.Email)}
	}
	if snap.Version() > 0 {
		c := snap.Counts()
		out.Counts = &gen.RepoCounts{Stacks: int64(c.Stacks), Branches: int64(c.Branches), NeedsRestack: int64(c.NeedsRestack)}
	}
	if st != nil {
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
		ss.LastError = optional(st.LastError)
		out.SyncStatus = &ss
	}
	return out
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
