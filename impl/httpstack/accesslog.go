package httpstack

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/dashboard"
	"github.com/stackd/stackd/impl/handoff"
	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/validate"
)

// The access log: one line per request, at info level, written when the
// answer is complete: method, route (the path template of the operation,
// e.g. /api/v1/repos/{repoID}/view, or the path of a route outside the
// contract; "" when no route matched), status, bytes, duration, request
// id, principal (the signed-in user's e-mail, else subject; "" when
// anonymous) and client address (trusted proxies considered). What the
// chain learns inside (the route, the principal) it notes for the log
// (noteRoute, notePrincipal): an outer middleware cannot see the
// contexts of the inner ones.
//
// The same middleware counts the request in the HTTP metrics, labelled
// with its route template (routeLabel), never its raw path.

// requestNote is what the access log learns from inside the chain.
type requestNote struct {
	route     string
	template  bool // route is an operation's path template
	principal string
}

type noteKey struct{}

func noteFrom(ctx context.Context) *requestNote {
	n, _ := ctx.Value(noteKey{}).(*requestNote)
	return n
}

// noteRoute notes the route the validator's router found (it runs just
// inside it).
func noteRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := noteFrom(r.Context()); n != nil {
			if route, ok := validate.RouteFrom(r.Context()); ok {
				n.route, n.template = route.Path, true
			} else if outsideContract(r.URL.Path) {
				n.route = r.URL.Path
			}
		}
		next.ServeHTTP(w, r)
	})
}

// notePrincipal notes the principal the gate admitted (it runs just
// inside it).
func notePrincipal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := noteFrom(r.Context()); n != nil {
			if p, ok := auth.PrincipalFrom(r.Context()); ok {
				n.principal = p.Email
				if n.principal == "" {
					n.principal = p.Subject
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status for the access log; Unwrap keeps
// http.ResponseController (flushing SSE) working through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// accessLog turns a panic into a 500 problem, counts each request in m
// (nil: not counted) and, when on, logs it (see above). client says who
// the client is (auth's reading of the peer and the trusted proxies). A
// response the handler handed over (package handoff: an event stream
// whose connection was taken over) is counted and logged when it ends,
// with the bytes written after the hand-over; until then it is in flight.
func accessLog(log *slog.Logger, on bool, client func(*http.Request) string, m *metrics.Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			done := m.HTTPStarted()
			rec := &statusRecorder{ResponseWriter: w}
			note := &requestNote{}
			ctx, tracker := handoff.New(context.WithValue(r.Context(), noteKey{}, note))
			panicked := true
			defer func() {
				if !panicked {
					return
				}
				// Also when an aborted handler's panic goes on up.
				v := recover()
				if v == http.ErrAbortHandler {
					// Counted, not logged; net/http ends the connection.
					done(routeLabel(note.route, note.template), methodLabel(r.Method), rec.status)
					panic(v)
				}
				log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "requestId", requestid.From(r.Context()), "panic", fmt.Sprint(v))
				if rec.status == 0 {
					problem.Write(rec, r, http.StatusInternalServerError, problem.Internal, problem.GenericDetail)
				}
				entryOf(r, start, rec, note, client).record(log, on, done, 0)
			}()
			next.ServeHTTP(rec, r.WithContext(ctx))
			panicked = false
			// The few values the line needs, not the request: a handed
			// over stream may stay open for hours.
			e := entryOf(r, start, rec, note, client)
			if !tracker.Returned(func(extra int64) { e.record(log, on, done, extra) }) {
				e.record(log, on, done, 0)
			}
		})
	}
}

// accessEntry is what the access log and the metrics record of a request.
type accessEntry struct {
	method, route, principal, requestID, client string
	template                                    bool
	status                                      int
	bytes                                       int64
	start                                       time.Time
}

func entryOf(r *http.Request, start time.Time, rec *statusRecorder, note *requestNote, client func(*http.Request) string) *accessEntry {
	e := &accessEntry{method: r.Method, route: note.route, template: note.template, principal: note.principal,
		requestID: requestid.From(r.Context()), status: rec.status, bytes: rec.bytes, start: start}
	e.client = client(r)
	return e
}

// record counts the request (done) and, when on, logs it; extra is the
// bytes written after a hand-over.
func (e *accessEntry) record(log *slog.Logger, on bool, done func(route, method string, status int), extra int64) {
	if on {
		log.Info("request", "method", e.method, "route", e.route, "status", e.status, "bytes", e.bytes+extra,
			"durationMs", time.Since(e.start).Milliseconds(), "requestId", e.requestID,
			"principal", e.principal, "client", e.client)
	}
	done(routeLabel(e.route, e.template), methodLabel(e.method), e.status)
}

// routeLabel is the route label of the HTTP metrics: the operation's path
// template (template), or the path of a route outside the contract, with
// the dashboard's many paths folded into two ("/assets/" and "/" for its
// app paths) and Swagger UI's into "/docs/"; "unmatched" when no route
// did. So the label's values are bounded whatever paths clients send.
func routeLabel(route string, template bool) string {
	switch {
	case template:
		return route
	case route == "":
		return "unmatched"
	case isDocs(route):
		return "/docs/"
	case dashboard.IsAssetPath(route):
		return dashboard.AssetPrefix
	case route == "/openapi.json" || route == "/openapi.yaml":
		return route
	default:
		return "/"
	}
}

// methodLabel is the method label: the methods the server answers, every
// other one as "other" (a client chooses it freely).
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
