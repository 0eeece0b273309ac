package impl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/swaggest/swgui"
	swgui5 "github.com/swaggest/swgui/v5emb"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/deadline"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/validate"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// HandlerDeps is what the HTTP stack needs besides the API implementation.
type HandlerDeps struct {
	Logger *slog.Logger
	// Auth gates requests (client address, rate limits, identity,
	// read-only, CSRF, audit), checks Host on loopback, serves /auth/* and
	// answers CORS.
	Auth *auth.Auth
	// HSTS sends Strict-Transport-Security (the base URL is https).
	HSTS bool
	// BodyTimeout bounds the time to receive a request body
	// (validate.DefaultBodyTimeout when 0).
	BodyTimeout time.Duration
	// WriteStallTimeout bounds each write of a response (of at most
	// deadline.ChunkSize bytes) to a client that does not read
	// (deadline.DefaultBudget when 0).
	WriteStallTimeout time.Duration
}

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

// NewHandler assembles the HTTP stack, outermost first:
//
//  0. a deadline on every write of the response (deadline.Middleware):
//     a client that stops reading is cut after WriteStallTimeout, one
//     that reads on is not;
//  1. request id and security headers (every response carries them);
//  2. recovery and access log;
//  3. a request refused before its body was read has its connection
//     closed after the answer, not drained;
//  4. the Host check of the loopback posture (421), then CORS;
//  5. route finding (404/405; the body is not read);
//  6. the auth gate: client address, rate limit, identity, read-only,
//     authentication, CSRF/Origin, audit;
//  7. the body: at most the operation's x-stackd-max-body, within a read
//     deadline (413/408), kept for the webhook's HMAC;
//  8. kin-openapi validation of parameters and body;
//  9. the mux: generated strict handlers, /auth/*, and the routes outside
//     the contract (the spec and Swagger UI).
//
// So no request body is read before the gate, and none past its limit.
func NewHandler(srv *Server, d HandlerDeps) (http.Handler, error) {
	log := d.Logger
	doc, err := Spec()
	if err != nil {
		return nil, err
	}
	// The spec as served shows the security that applies in this posture;
	// doc (the embedded file) is what validation and the gate use.
	specYAML, specJSON, err := servedSpec(gen.SpecYAML, doc, d.Auth.Posture())
	if err != nil {
		return nil, err
	}
	limits, err := validate.LimitsOf(doc)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	strict := gen.NewStrictHandlerWithOptions(srv, []gen.StrictMiddlewareFunc{stampProblems, markHead}, gen.StrictHTTPServerOptions{
		RequestErrorHandlerFunc: func(w http.ResponseWriter, r *http.Request, err error) {
			problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, err.Error())
		},
		ResponseErrorHandlerFunc: answerError(log),
	})
	gen.HandlerWithOptions(strict, gen.StdHTTPServerOptions{
		BaseRouter: mux,
		ErrorHandlerFunc: func(w http.ResponseWriter, r *http.Request, err error) {
			problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, err.Error())
		},
	})
	mux.Handle("/openapi.json", onlyGet(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(specJSON)
	}))
	mux.Handle("/openapi.yaml", onlyGet(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(specYAML)
	}))
	ui := swgui5.NewWithConfig(swgui.Config{
		Title:       "stackd API",
		SwaggerJSON: "/openapi.json",
		BasePath:    "/docs/",
		ShowTopBar:  false,
		SettingsUI:  swaggerSettings,
	})("stackd API", "/openapi.json", "/docs/")
	mux.Handle("/docs/", onlyGet(notFoundAsProblem(ui).ServeHTTP))
	mux.Handle("/docs", onlyGet(http.RedirectHandler("/docs/", http.StatusMovedPermanently).ServeHTTP))
	// A path the validator's router accepts but no route of the mux takes
	// (a lone %2F segment) is a 404 problem, never the mux's text/plain.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, http.StatusNotFound, problem.NotFound, "no such route: "+r.URL.EscapedPath())
	})
	d.Auth.Routes(mux)
	docsCSP, err := docsPolicy(ui)
	if err != nil {
		return nil, err
	}

	v, err := validate.New(doc, validate.Options{Passthrough: func(p string) bool {
		return p == "/openapi.json" || p == "/openapi.yaml" || isDocs(p)
	}})
	if err != nil {
		return nil, err
	}
	var h http.Handler = mux
	h = v.Validate(h)
	h = validate.Bodies(validate.BodyOptions{Limits: limits, Timeout: d.BodyTimeout})(h)
	h = d.Auth.Gate(doc)(h)
	h = v.Routes(h)
	h = negotiate(h)
	h = d.Auth.CORS(h)
	h = d.Auth.Hosts(h)
	h = validate.CloseUnread(h)
	h = accessLog(log, h)
	h = securityHeaders(h, headerPolicy{hsts: d.HSTS, docsCSP: docsCSP})
	h = requestid.Middleware(h)
	h = deadline.Middleware(d.WriteStallTimeout)(h)
	return h, nil
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

// onlyGet serves GET and HEAD with h (the routes outside the contract);
// any other method is a 405 problem.
func onlyGet(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem.Write(w, r, http.StatusMethodNotAllowed, problem.MethodNotAllowed,
				fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.EscapedPath()))
			return
		}
		h(w, r)
	})
}

// notFoundAsProblem answers h's 404s (a file server's text/plain "404
// page not found") as problems: every error stackd sends is one.
func notFoundAsProblem(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&notFoundWriter{ResponseWriter: w, r: r}, r)
	})
}

type notFoundWriter struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool // a problem was sent instead: drop h's body
}

func (n *notFoundWriter) WriteHeader(code int) {
	if n.replaced {
		return
	}
	if code == http.StatusNotFound {
		n.replaced = true
		n.Header().Del("Content-Length")
		problem.Write(n.ResponseWriter, n.r, http.StatusNotFound, problem.NotFound, "no such file: "+n.r.URL.EscapedPath())
		return
	}
	n.ResponseWriter.WriteHeader(code)
}

func (n *notFoundWriter) Write(b []byte) (int, error) {
	if n.replaced {
		return len(b), nil
	}
	return n.ResponseWriter.Write(b)
}

type headKey struct{}

// markHead is a strict-handler middleware that tells handlers (isHead) a
// request is a HEAD: the mux gives HEAD to the GET handler and net/http
// drops the body, so only a handler whose body never ends (the event
// stream) needs to know.
func markHead(f gen.StrictHandlerFunc, _ string) gen.StrictHandlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, req any) (any, error) {
		if r.Method == http.MethodHead {
			ctx = context.WithValue(ctx, headKey{}, true)
		}
		return f(ctx, w, r, req)
	}
}

// isHead reports whether the request of ctx is a HEAD (markHead).
func isHead(ctx context.Context) bool { v, _ := ctx.Value(headKey{}).(bool); return v }

func isDocs(p string) bool { return p == "/docs" || strings.HasPrefix(p, "/docs/") }

// Spec loads openapi.yaml exactly as written (gen.SpecYAML). The
// generator's own embedded copy (gen.GetSwagger) is not used: it renames
// operation ids and drops the operations excluded from generation.
func Spec() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(gen.SpecYAML)
	if err != nil {
		return nil, fmt.Errorf("load embedded openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("embedded openapi.yaml: %w", err)
	}
	return doc, nil
}

// swaggerSettings configure Swagger UI: with a cookie session, unsafe calls
// need the CSRF header, which the request interceptor adds to every call
// (bearer calls ignore it); "Authorize" with a bearer token works as usual.
var swaggerSettings = map[string]string{
	"persistAuthorization":   "true",
	"displayRequestDuration": "true",
	"requestInterceptor":     "function(req) { req.headers['" + auth.CSRFHeader + "'] = 'swagger-ui'; return req; }",
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

// accessLog logs each request and turns a panic into a 500 problem.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "requestId", requestid.From(r.Context()), "panic", fmt.Sprint(v))
				if rec.status == 0 {
					problem.Write(rec, r, http.StatusInternalServerError, problem.Internal, problem.GenericDetail)
				}
			}
			log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "bytes", rec.bytes, "ms", time.Since(start).Milliseconds(), "remote", r.RemoteAddr, "requestId", requestid.From(r.Context()))
		}()
		next.ServeHTTP(rec, r)
	})
}
