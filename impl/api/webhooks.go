package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/webhook"
)

// Tag webhooks: GitHub's push deliveries.

// GithubWebhook receives GitHub deliveries. The signature is checked
// first, on the body as received; a verified delivery is never refused
// (it answers 202 or 204), and the refresh it asks for is debounced
// (refresh.Refresher.TriggerDebounced): the 202's syncID is the queued run
// that will serve the push.
func (s *Server) GithubWebhook(ctx context.Context, req gen.GithubWebhookRequestObject) (gen.GithubWebhookResponseObject, error) {
	if len(s.webhookSecret) == 0 {
		return notFoundAs[gen.GithubWebhook404ApplicationProblemPlusJSONResponse](notFound("webhooks are disabled: no webhook secret is configured")), nil
	}
	raw, ok := rawBodyFrom(ctx)
	if !ok {
		return nil, errors.New("webhook: raw body missing from context")
	}
	sig := ""
	if req.Params.XHubSignature256 != nil {
		sig = *req.Params.XHubSignature256
	}
	if err := webhook.Verify(s.webhookSecret, raw.Data, sig); err != nil {
		s.metrics.WebhookDelivery(metrics.WebhookBadSignature)
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
		s.metrics.WebhookDelivery(metrics.WebhookDuplicate)
		return gen.GithubWebhook204Response{}, nil
	}
	if event != webhook.EventPush {
		log.Info("webhook: event ignored")
		s.metrics.WebhookDelivery(metrics.WebhookIgnored)
		return gen.GithubWebhook204Response{}, nil
	}
	payload, err := webhook.Payload(raw.ContentType, raw.Data)
	var push webhook.Push
	if err == nil {
		push, err = webhook.ParsePush(payload)
	}
	if err != nil {
		// Signed by GitHub, so answering 4xx would only make it show a
		// failure nobody can fix; nothing is fetched.
		log.Warn("webhook: a verified push delivery cannot be parsed; nothing fetched", "err", err)
		s.metrics.WebhookDelivery(metrics.WebhookUnparseable)
		return gen.GithubWebhook204Response{}, nil
	}
	repo, ok := s.repos.ByFullName(push.FullName)
	if !ok || repo.Kind != gen.Mirror {
		log.Info("webhook: push for a repository that is not a managed mirror; nothing fetched", "fullName", push.FullName)
		s.metrics.WebhookDelivery(metrics.WebhookIgnored)
		return gen.GithubWebhook204Response{}, nil
	}
	id := ""
	if rf, ok := s.refreshers.Refresher(repo.ID); ok {
		id = rf.TriggerDebounced(refresh.Webhook)
	}
	if id == "" { // removed since it was looked up, or being removed
		log.Info("webhook: push for a repository being removed; nothing fetched", "repo", repo.ID)
		s.metrics.WebhookDelivery(metrics.WebhookIgnored)
		return gen.GithubWebhook204Response{}, nil
	}
	log.Info("webhook: refresh queued", "repo", repo.ID, "sync", id, "ref", push.Ref)
	s.metrics.WebhookDelivery(metrics.WebhookAccepted)
	return gen.GithubWebhook202JSONResponse{RepoID: repo.ID, SyncID: id}, nil
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
