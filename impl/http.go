package impl

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/validate"
)

type rawBody struct {
	body        []byte
	contentType string
}

// rawBodyFrom returns the request body as received (validate.Bodies keeps
// it), for the webhook's HMAC.
func rawBodyFrom(ctx context.Context) (rawBody, bool) {
	b, ok := validate.BodyFrom(ctx)
	return rawBody{body: b.Data, contentType: b.ContentType}, ok
}

// clientKeyFrom returns the client the gate settled on: the signed-in
// principal, else the address (trusted proxies considered), else "unknown".
func clientKeyFrom(ctx context.Context) string {
	if k := auth.ClientKey(ctx); k != "" {
		return k
	}
	if ip := auth.ClientIP(ctx); ip != "" {
		return ip
	}
	return "unknown"
}

var errBadRepoID = errors.New("bad repository id")

// badField is a request field that breaks its rule: a 400 whose detail
// names the field and the rule (err's text, which never repeats the
// value).
type badField struct {
	field string
	err   error
}

func (e badField) Error() string { return e.field + ": " + e.err.Error() }

func (e badField) Unwrap() error { return e.err }

func redactErr(err error) string { return redact.Error(err) }

// Routes puts the API's strict handlers on mux: every request gets the
// facts handlers read from its context (markRequest), and every problem
// they answer its instance and request id (stampProblems); an error a
// handler returns is answered by answerError.
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

// answerError is the one error hook of the strict handlers: it answers an
// error a handler returned instead of a typed response. A client that
// went away is logged (499) and gets nothing; text with a NUL byte that
// the store refused (store.ErrNUL) is the request's fault: 400; an
// unreachable database is a 503 worth retrying; anything else is logged
// and answered 500 with the generic detail.
func answerError(log *slog.Logger) func(w http.ResponseWriter, r *http.Request, err error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
			// The client went away: nothing failed, and nobody reads
			// an answer. The access log records 499.
			log.Info("client went away before the answer", "method", r.Method, "path", r.URL.Path, "status", StatusClientClosedRequest, "requestId", requestid.From(r.Context()))
			w.WriteHeader(StatusClientClosedRequest)
			return
		}
		if errors.Is(err, store.ErrNUL) {
			// Text with a NUL byte that no rule of the contract
			// caught: every engine refuses it before the database
			// sees it, so nothing was stored, and the request is at
			// fault, not the server.
			log.Info("request refused: a text value contains a NUL byte", "method", r.Method, "path", r.URL.Path, "requestId", requestid.From(r.Context()))
			problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, "a text value of the request contains a NUL byte, which is not stored")
			return
		}
		if errors.Is(err, store.ErrUnavailable) {
			// The database is down or out of reach: worth another
			// try, not a bug.
			log.Warn("request failed: the database is unreachable", "method", r.Method, "path", r.URL.Path, "requestId", requestid.From(r.Context()), "err", redact.Error(err))
			writeDatabaseUnavailable(w, r)
			return
		}
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "requestId", requestid.From(r.Context()), "err", redact.Error(err))
		problem.Write(w, r, http.StatusInternalServerError, problem.Internal, problem.GenericDetail)
	}
}

type (
	headKey        struct{}
	acceptsGzipKey struct{}
)

// markRequest is a strict-handler middleware that tells handlers what they
// need of the request itself: whether it is a HEAD (isHead: the mux gives
// HEAD to the GET handler and net/http drops the body, so only a handler
// whose body never ends, the event stream, needs to know), and whether
// its Accept-Encoding allows gzip (acceptsGzipFrom: GET .../view has a
// gzip form).
func markRequest(f gen.StrictHandlerFunc, _ string) gen.StrictHandlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, req any) (any, error) {
		if r.Method == http.MethodHead {
			ctx = context.WithValue(ctx, headKey{}, true)
		}
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			ctx = context.WithValue(ctx, acceptsGzipKey{}, true)
		}
		return f(ctx, w, r, req)
	}
}

// isHead reports whether the request of ctx is a HEAD (markRequest).
func isHead(ctx context.Context) bool { v, _ := ctx.Value(headKey{}).(bool); return v }

// acceptsGzipFrom reports whether the client of ctx accepts gzip
// (markRequest).
func acceptsGzipFrom(ctx context.Context) bool { v, _ := ctx.Value(acceptsGzipKey{}).(bool); return v }
