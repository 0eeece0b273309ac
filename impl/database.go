package impl

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/webhook"
)

// The database as handlers see it: readiness follows it, a store error that
// says it cannot be reached (store.ErrUnavailable) is a 503 problem with
// Retry-After rather than a 500, and webhook deliveries are deduplicated in
// it, for every replica that shares it.

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

// seenDelivery reports whether a webhook delivery id was handled within
// the last hour. The database is the truth, for every replica that shares
// it; while it cannot answer, this process's memory decides, so webhooks
// keep working (a redelivery to another replica in that time may trigger
// one more refresh, which changes nothing that the first did not).
func (s *Server) seenDelivery(ctx context.Context, id string) bool {
	if s.db == nil {
		return s.deliveries.Seen(id)
	}
	seen, err := s.db.SeenDelivery(ctx, id, time.Now(), webhook.DefaultDedupTTL)
	if err == nil {
		return seen
	}
	s.log.Warn("webhook: the database did not answer; delivery deduplicated in this process only",
		"delivery", id, "requestId", requestid.From(ctx), "err", redact.Error(err))
	return s.deliveries.Seen(id)
}

// writeDatabaseUnavailable answers a request whose operation needed the
// unreachable database: 503 /problems/unavailable with Retry-After.
func writeDatabaseUnavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", strconv.Itoa(problem.DatabaseRetryAfter))
	problem.Write(w, r, http.StatusServiceUnavailable, problem.Unavailable, problem.DatabaseUnavailable)
}
