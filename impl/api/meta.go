package api

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/store"
)

// Tag meta: health, readiness, the server's posture and the audit log.

// GetHealth answers the liveness probe.
func (s *Server) GetHealth(ctx context.Context, _ gen.GetHealthRequestObject) (gen.GetHealthResponseObject, error) {
	return gen.GetHealth200JSONResponse{Status: "ok"}, nil
}

// GetReady answers 200 once the working repository and every mirror of the
// config file had a first refresh, while the database answers. Mirrors
// onboarded through the API do not count: their first clone shows in
// their syncStatus.
func (s *Server) GetReady(ctx context.Context, _ gen.GetReadyRequestObject) (gen.GetReadyResponseObject, error) {
	if err := s.pingDatabase(ctx); err != nil {
		return gen.GetReady503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: gen.UnavailableApplicationProblemPlusJSONResponse(
			problem.New(503, problem.Unavailable, "the database is unreachable"))}, nil
	}
	var waiting []string
	for _, r := range s.repos.List() {
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

// pingTimeout bounds readiness's question to the database.
const pingTimeout = 2 * time.Second

// pingDatabase checks that the database answers (nil without one).
func (s *Server) pingDatabase(ctx context.Context) error {
	if s.db == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	err := s.db.Ping(ctx)
	if err != nil && ctx.Err() != context.Canceled {
		s.log.Warn("readiness: the database does not answer", "requestId", requestid.From(ctx), "err", redact.Error(err))
	}
	return err
}

// GetConfig describes the server's posture, whether the caller may
// onboard (the gate's answer for its credentials), and whether it sees
// exactly one repository.
func (s *Server) GetConfig(ctx context.Context, _ gen.GetConfigRequestObject) (gen.GetConfigResponseObject, error) {
	info := s.info
	info.Onboarding = auth.Admits(ctx, auth.OpCreateRepo)
	// Counted among the repositories the caller sees: the others are
	// not there for them.
	v, n := s.viewer(ctx), 0
	for _, r := range s.repos.List() {
		if r.VisibleTo(v) {
			n++
		}
	}
	info.SingleRepo = n == 1
	return gen.GetConfig200JSONResponse(info), nil
}

// ListAudit returns recent audit entries, newest first: all of them to
// admins (and where visibility does not apply), a user's own to anybody
// else.
func (s *Server) ListAudit(ctx context.Context, req gen.ListAuditRequestObject) (gen.ListAuditResponseObject, error) {
	limit := 100
	if req.Params.Limit != nil {
		limit = *req.Params.Limit
	}
	if s.audit == nil {
		return gen.ListAudit200JSONResponse{}, nil
	}
	var (
		entries []store.AuditEntry
		err     error
	)
	switch v := s.viewer(ctx); {
	case v.All || v.Admin:
		entries, err = s.audit.AuditLog(ctx, limit)
	case v.Anonymous():
		// Not reached: with visibility on, the gate refuses anonymous
		// callers the audit log.
	default:
		entries, err = s.audit.AuditLogOf(ctx, v.Subject, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	out := make(gen.ListAudit200JSONResponse, 0, len(entries))
	for _, e := range entries {
		ge := gen.AuditEntry{Id: e.ID, At: e.At, LastAt: e.LastAt, Actor: e.Actor, Action: e.Action, Outcome: e.Outcome,
			Requests: max(e.Requests, 1)}
		ge.Route = optional(e.Route)
		ge.Subject = optional(e.Subject)
		ge.Method = optional(e.Method)
		ge.Repo = optional(e.Repo)
		ge.Client = optional(e.Client)
		out = append(out, ge)
	}
	return out, nil
}

// optional is nil for "", else a pointer to a copy of v.
func optional(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}
