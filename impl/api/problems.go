package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"sync"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refname"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/store"
)

// The problems handlers answer, and the two hooks around them: the error
// hook (answerError) and the stamping of instance and request id
// (stampProblems).

// notFound builds a 404 body. Values in it are quoted: repository and
// sync ids passed their patterns in the validator, branch names passed
// refname.Check and are shown through refname.Quote.
func notFound(format string, args ...any) gen.Problem {
	return problem.New(http.StatusNotFound, problem.NotFound, fmt.Sprintf(format, args...))
}

// noRepo is the 404 body of an unknown repository.
func noRepo(id string) gen.Problem { return notFound("no repository %q", id) }

// badBranch checks a branch-name path parameter (param is its name in the
// spec) by git's rules. The 400 body names the rule that failed and never
// repeats the value, not even in its instance: that is route, the
// operation's path template (as for the path parameters the validator
// refuses).
func badBranch(route, param, name string) *gen.Problem {
	err := refname.Check(name)
	if err == nil {
		return nil
	}
	p := problem.New(http.StatusBadRequest, problem.BadRequest, fmt.Sprintf("path parameter %q: %v", param, err))
	p.Instance = &route
	return &p
}

// tooMany is the 429 problem of a rate limit refusal.
func tooMany(err *auth.LimitError) gen.TooManyRequestsApplicationProblemPlusJSONResponse {
	retry := err.RetrySeconds()
	return gen.TooManyRequestsApplicationProblemPlusJSONResponse{
		Body:    problem.New(http.StatusTooManyRequests, problem.TooManyRequests, err.Error()),
		Headers: gen.TooManyRequestsResponseHeaders{RetryAfter: &retry},
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

// statusClientClosedRequest is the status recorded (and logged) for a
// request whose client went away before the answer: nginx's 499. It is
// never received by anyone, so it is not in openapi.yaml.
const statusClientClosedRequest = 499

// clientClosed answers a client that went away: the status only, for the
// access log (the connection is gone).
type clientClosed struct{}

func (clientClosed) VisitSyncRepoResponse(w http.ResponseWriter) error {
	w.WriteHeader(statusClientClosedRequest)
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

// Memory pressure (memlimit): while the server is short of memory, no new
// fetch starts. A sync of a mirror that would create a run and an
// onboarding answer 503 with Retry-After. Joining a queued run starts
// nothing and is never refused.

// memoryRetryAfter is the Retry-After, in seconds, of a 503 for memory: a
// few collections' time.
const memoryRetryAfter = 10

// shortOfMemory is the 503 of a fetch refused for memory.
func shortOfMemory() gen.ShuttingDownApplicationProblemPlusJSONResponse {
	return gen.ShuttingDownApplicationProblemPlusJSONResponse{
		Body:    problem.New(http.StatusServiceUnavailable, problem.Unavailable, memlimit.ErrPressure.Error()),
		Headers: gen.ShuttingDownResponseHeaders{RetryAfter: memoryRetryAfter},
	}
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
			log.Info("client went away before the answer", "method", r.Method, "path", r.URL.Path, "status", statusClientClosedRequest, "requestId", requestid.From(r.Context()))
			w.WriteHeader(statusClientClosedRequest)
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

// writeDatabaseUnavailable answers a request whose operation needed the
// unreachable database: 503 /problems/unavailable with Retry-After.
func writeDatabaseUnavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", strconv.Itoa(problem.DatabaseRetryAfter))
	problem.Write(w, r, http.StatusServiceUnavailable, problem.Unavailable, problem.DatabaseUnavailable)
}

// stampProblems is a strict-handler middleware that puts the instance (the
// request's path) and the request id in the problem of a handler's error
// response (handlers build problems with problem.New, without the
// request); problem.Write does the same for the middleware's answers.
func stampProblems(f gen.StrictHandlerFunc, _ string) gen.StrictHandlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, req any) (any, error) {
		resp, err := f(ctx, w, r, req)
		if err != nil || resp == nil {
			return resp, err
		}
		return withProblem(r, resp), nil
	}
}

var (
	problemType  = reflect.TypeFor[gen.Problem]()
	requestIDIdx = func() []int {
		f, ok := problemType.FieldByName("RequestId")
		if !ok {
			panic("gen.Problem has no RequestId")
		}
		return f.Index
	}()
	// problemPaths caches, per response type, the field index path of its
	// problem's RequestId (nil: the response holds no problem).
	problemPaths sync.Map
)

// withProblem returns resp with its problem stamped from r (instance and
// requestId, problem.Stamp), or resp itself when it holds no problem. Generated error responses embed
// gen.Problem (as a named type of the same structure) directly or as Body.
func withProblem(r *http.Request, resp any) any {
	v := reflect.ValueOf(resp)
	path, ok := problemPaths.Load(v.Type())
	if !ok {
		path = findProblem(v.Type(), nil, 0)
		problemPaths.Store(v.Type(), path)
	}
	idx, _ := path.([]int)
	if idx == nil {
		return resp
	}
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	p := c.FieldByIndex(idx[:len(idx)-len(requestIDIdx)])
	stamped := problem.Stamp(r, p.Convert(problemType).Interface().(gen.Problem))
	p.Set(reflect.ValueOf(stamped).Convert(p.Type()))
	return c.Interface()
}

// findProblem returns the index path from t to the RequestId of a struct
// of gen.Problem's structure within t (at most three fields deep), or nil.
func findProblem(t reflect.Type, at []int, depth int) []int {
	if t.Kind() != reflect.Struct || depth > 3 {
		return nil
	}
	if t.ConvertibleTo(problemType) {
		return append(append([]int{}, at...), requestIDIdx...)
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if p := findProblem(f.Type, append(append([]int{}, at...), i), depth+1); p != nil {
			return p
		}
	}
	return nil
}
