package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/refname"
)

// Tag stacks: the view of a repository, its stacks and branches, and a
// branch's patch.
//
// The view handlers never encode: every body is bytes the snapshot made
// when it was built (and shares with the snapshots after it while
// unchanged), written with their ETag. GET .../view also has a gzip form,
// sent to clients that accept it (acceptsGzipFrom).

// GetView returns the whole current view.
func (s *Server) GetView(ctx context.Context, req gen.GetViewRequestObject) (gen.GetViewResponseObject, error) {
	r, missing := find[gen.GetView404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	snap := r.Snapshot()
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.GetView304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	// The view is the snapshot alone (its repo without syncStatus, which
	// changes between snapshots), so its ETag stays exact.
	gz, sendGzip := snap.ViewGzip(), acceptsGzipFrom(ctx)
	if snap.Hollow() && !sendGzip {
		// An idle mirror's view is kept compressed only: decompressed as
		// it is written.
		return viewResponse{jsonBytes{gzip: gz, etag: snap.ETag(), size: snap.ViewSize(), stream: snap.WriteView}}, nil
	}
	js := snap.ViewJSON()
	return viewResponse{jsonBytes{body: js[:len(js)-1], gzip: gz, etag: snap.ETag(), sendGzip: sendGzip}}, nil
}

// ListStacks returns every stack.
func (s *Server) ListStacks(ctx context.Context, req gen.ListStacksRequestObject) (gen.ListStacksResponseObject, error) {
	r, missing := find[gen.ListStacks404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	snap := r.Snapshot()
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.ListStacks304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	snap, err := r.Full(ctx)
	if err != nil {
		return nil, err
	}
	return stacksResponse{jsonBytes{body: snap.StacksJSON(), etag: snap.ETag()}}, nil
}

// GetStack returns one stack by its root branch.
func (s *Server) GetStack(ctx context.Context, req gen.GetStackRequestObject) (gen.GetStackResponseObject, error) {
	if p := badBranch("/api/v1/repos/{repoID}/stacks/{root}", "root", req.Root); p != nil {
		return gen.GetStack400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(*p)}, nil
	}
	r, missing := find[gen.GetStack404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	snap, err := r.Full(ctx)
	if err != nil {
		return nil, err
	}
	st, ok := snap.StackJSON(req.Root)
	if !ok {
		return notFoundAs[gen.GetStack404ApplicationProblemPlusJSONResponse](notFound("no stack rooted at %s in %q", refname.Quote(req.Root), req.RepoID)), nil
	}
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.GetStack304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	return stackResponse{jsonBytes{body: st, etag: snap.ETag()}}, nil
}

// ListBranches returns every branch.
func (s *Server) ListBranches(ctx context.Context, req gen.ListBranchesRequestObject) (gen.ListBranchesResponseObject, error) {
	r, missing := find[gen.ListBranches404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	snap := r.Snapshot()
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.ListBranches304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	snap, err := r.Full(ctx)
	if err != nil {
		return nil, err
	}
	js := snap.BranchesJSON()
	return branchesResponse{jsonBytes{body: js[:len(js)-1], etag: snap.ETag()}}, nil
}

// GetBranch returns one branch.
func (s *Server) GetBranch(ctx context.Context, req gen.GetBranchRequestObject) (gen.GetBranchResponseObject, error) {
	if p := badBranch("/api/v1/repos/{repoID}/branches/{branch}", "branch", req.Branch); p != nil {
		return gen.GetBranch400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(*p)}, nil
	}
	r, missing := find[gen.GetBranch404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	snap, err := r.Full(ctx)
	if err != nil {
		return nil, err
	}
	b, ok := snap.BranchJSON(req.Branch)
	if !ok {
		return notFoundAs[gen.GetBranch404ApplicationProblemPlusJSONResponse](notFound("no branch %s in %q", refname.Quote(req.Branch), req.RepoID)), nil
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
	type diff404 = gen.GetBranchDiff404ApplicationProblemPlusJSONResponse
	if p := badBranch("/api/v1/repos/{repoID}/branches/{branch}/diff", "branch", req.Branch); p != nil {
		return gen.GetBranchDiff400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: gen.BadRequestApplicationProblemPlusJSONResponse(*p)}, nil
	}
	r, missing := find[diff404](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	snap, err := r.Full(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := snap.Branch(req.Branch); !ok {
		return notFoundAs[diff404](notFound("no branch %s in %q", refname.Quote(req.Branch), req.RepoID)), nil
	}
	base, tip, ok := snap.DiffRange(req.Branch)
	if !ok {
		return notFoundAs[diff404](notFound("branch %s has no parent to diff against", refname.Quote(req.Branch))), nil
	}
	if etagMatches(req.Params.IfNoneMatch, snap.ETag()) {
		return gen.GetBranchDiff304Response{Headers: gen.NotModifiedResponseHeaders{ETag: snap.ETag()}}, nil
	}
	patch, err := s.diffs.Get(ctx, req.RepoID, snap.Objects(), base, tip)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return notFoundAs[diff404](
			notFound("objects of branch %s are not in the local object store (a partial clone, or the branch moved on)", refname.Quote(req.Branch))), nil
	}
	if err != nil {
		return nil, fmt.Errorf("diff %s %s..%s: %w", req.RepoID, base, tip, err)
	}
	return gen.GetBranchDiff200TextxPatchResponse{Body: bytes.NewReader(patch), ContentLength: int64(len(patch)), Headers: gen.GetBranchDiff200ResponseHeaders{ETag: snap.ETag()}}, nil
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

// jsonBytes is a 200 answer with a JSON body serialized in advance.
type jsonBytes struct {
	body []byte // without the final newline
	gzip []byte // body and newline, gzip-compressed; nil when there is none
	etag string
	// stream, when set, writes the body and newline (size bytes) instead
	// of body.
	stream func(io.Writer) error
	size   int
	// sendGzip: the client accepts gzip and there is a gzip form.
	sendGzip bool
}

var newline = []byte{'\n'}

func (j jsonBytes) write(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("ETag", j.etag)
	if j.gzip != nil {
		h.Add("Vary", "Accept-Encoding")
	}
	if j.sendGzip {
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(j.gzip)))
		w.WriteHeader(http.StatusOK)
		_, err := w.Write(j.gzip)
		return err
	}
	if j.stream != nil {
		h.Set("Content-Length", strconv.Itoa(j.size))
		w.WriteHeader(http.StatusOK)
		return j.stream(w)
	}
	h.Set("Content-Length", strconv.Itoa(len(j.body)+1))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(j.body); err != nil {
		return err
	}
	_, err := w.Write(newline)
	return err
}

type viewResponse struct{ jsonBytes }

func (r viewResponse) VisitGetViewResponse(w http.ResponseWriter) error { return r.write(w) }

type stacksResponse struct{ jsonBytes }

func (r stacksResponse) VisitListStacksResponse(w http.ResponseWriter) error { return r.write(w) }

type stackResponse struct{ jsonBytes }

func (r stackResponse) VisitGetStackResponse(w http.ResponseWriter) error { return r.write(w) }

type branchesResponse struct{ jsonBytes }

func (r branchesResponse) VisitListBranchesResponse(w http.ResponseWriter) error { return r.write(w) }

type branchResponse struct{ jsonBytes }

func (r branchResponse) VisitGetBranchResponse(w http.ResponseWriter) error { return r.write(w) }

var (
	_ gen.GetViewResponseObject      = viewResponse{}
	_ gen.ListStacksResponseObject   = stacksResponse{}
	_ gen.GetStackResponseObject     = stackResponse{}
	_ gen.ListBranchesResponseObject = branchesResponse{}
	_ gen.GetBranchResponseObject    = branchResponse{}
)
