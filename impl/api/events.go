package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/handoff"
	"github.com/stackd/stackd/impl/problem"
)

// Tag sync, continued: a repository's event stream.

// StreamEvents streams a repository's events.
func (s *Server) StreamEvents(ctx context.Context, req gen.StreamEventsRequestObject) (gen.StreamEventsResponseObject, error) {
	r, missing := find[gen.StreamEvents404ApplicationProblemPlusJSONResponse](ctx, s, req.RepoID)
	if r == nil {
		return missing, nil
	}
	if isHead(ctx) {
		// The headers of the stream, without one: no subscription.
		return eventsResponse{body: strings.NewReader("")}, nil
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
	sub, err := s.streams.Resume(r.ID, clientKeyFrom(ctx), last)
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
	if cur, ok := s.lookup(ctx, req.RepoID); !ok || cur != r {
		// Removed meanwhile: its streams were ended (or this one would
		// never be), so answer as for a repository that is not there.
		sub.Close()
		return notFoundAs[gen.StreamEvents404ApplicationProblemPlusJSONResponse](noRepo(req.RepoID)), nil
	}
	// Read after subscribing: a view published in between is announced
	// by an event as well.
	hello := gen.StreamHello{RepoID: r.ID, ViewVersion: r.Snapshot().Version()}
	if s.streamHub != nil && plainHTTP11(ctx) {
		return handedOver{ctx: ctx, hub: s.streamHub, sub: sub, hello: hello}, nil
	}
	return eventsResponse{body: events.StreamBody(ctx, sub, hello).(io.WriterTo)}, nil
}

// handedOver is a stream's 200 answer served off the request's goroutine
// (events.Hub.Serve): after the headers the connection is taken over and
// the handler returns; the access log and the HTTP metrics record the
// request when the stream ends (package handoff).
type handedOver struct {
	ctx   context.Context
	hub   *events.Hub
	sub   *events.Subscription
	hello gen.StreamHello
}

var _ gen.StreamEventsResponseObject = handedOver{}

func (r handedOver) VisitStreamEventsResponse(w http.ResponseWriter) error {
	events.SetHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	err := r.hub.Serve(r.ctx, w, r.sub, r.hello, handoff.From(r.ctx).Take)
	if errors.Is(err, events.ErrSlowSubscriber) {
		return nil // as StreamBody: the answer is sent; the client reconnects
	}
	return err
}

// eventsResponse is a stream's 200 answer. It writes the stream on the
// request's goroutine (the body's WriteTo, flushing after each message):
// the generated response would read the body through a pipe fed by a
// goroutine of its own, one more goroutine and buffer per open stream.
type eventsResponse struct{ body io.WriterTo }

var _ gen.StreamEventsResponseObject = eventsResponse{}

func (r eventsResponse) VisitStreamEventsResponse(w http.ResponseWriter) error {
	events.SetHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	_, err := r.body.WriteTo(w)
	return err
}
