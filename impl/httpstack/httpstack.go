// Package httpstack is the server's HTTP stack: the middleware chain
// around the API's strict handlers (New, in this file, outermost first),
// the routes outside the contract (the served spec, Swagger UI and the
// dashboard), the security headers and their Content-Security-Policies,
// and the access log.
//
// It knows the API only as something that puts its routes on a mux
// (Routes): package api.
package httpstack

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/swaggest/swgui"
	swgui5 "github.com/swaggest/swgui/v5emb"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/dashboard"
	"github.com/stackd/stackd/impl/deadline"
	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/requestid"
	"github.com/stackd/stackd/impl/validate"
)

// Routes puts routes on a mux: the API's strict handlers (api.Server),
// the auth endpoints (auth.Auth).
type Routes interface {
	Routes(mux *http.ServeMux)
}

// Deps is what the HTTP stack needs.
type Deps struct {
	Logger *slog.Logger
	// API serves the operations of openapi.yaml (package api).
	API Routes
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
	// AccessLog writes one line per request (--access-log).
	AccessLog bool
	// Metrics counts requests by route template, method and status, and
	// times them (nil: not counted).
	Metrics *metrics.Metrics
}

// New assembles the HTTP stack, outermost first:
//
//  0. a deadline on every write of the response (deadline.Middleware):
//     a client that stops reading is cut after WriteStallTimeout, one
//     that reads on is not;
//  1. request id, then security headers (every response carries them);
//  2. recovery, the access log and the HTTP metrics (accesslog.go);
//  3. a request refused before its body was read has its connection
//     closed after the answer, not drained;
//  4. the Host check of the loopback posture (421), then CORS;
//  5. route finding (404/405; the body is not read), noted for the
//     access log;
//  6. the auth gate: client address, rate limit, identity, read-only,
//     authentication, CSRF/Origin, audit; the principal it admitted is
//     noted for the access log;
//  7. the body: at most the operation's x-stackd-max-body, within a read
//     deadline (413/408), kept for the webhook's HMAC;
//  8. kin-openapi validation of parameters and body;
//  9. the mux: the API's strict handlers, /auth/*, and the routes outside
//     the contract (the spec, Swagger UI, the problem type pages under
//     /problems/, and the dashboard on every other
//     path: its assets, its shell on the app paths, a 404 problem on the
//     server's paths no route took).
//
// So no request body is read before the gate, and none past its limit.
func New(d Deps) (http.Handler, error) {
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
	ui := swaggerUI()
	docsCSP, err := docsPolicy(ui)
	if err != nil {
		return nil, err
	}
	dash, err := dashboard.New(dashboard.Build())
	if err != nil {
		return nil, err
	}
	pages, err := problem.Pages()
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	d.API.Routes(mux)
	specRoutes(mux, specYAML, specJSON, ui, dash)
	// The problem types' pages: a problem's type URI leads to its page.
	mux.Handle(problem.TypePrefix, pages)
	d.Auth.Routes(mux)
	v, err := validate.New(doc, validate.Options{Passthrough: outsideContract})
	if err != nil {
		return nil, err
	}

	// Outermost first: a request goes down this list, its answer up.
	chain := []func(http.Handler) http.Handler{
		deadline.Middleware(d.WriteStallTimeout), // 0
		requestid.Middleware,                     // 1
		securityHeaders(headerPolicy{hsts: d.HSTS, docsCSP: docsCSP}),
		accessLog(d.Logger, d.AccessLog, d.Auth.ClientAddress, d.Metrics), // 2
		validate.CloseUnread,                                              // 3
		d.Auth.Hosts,                                                      // 4
		d.Auth.CORS,
		v.Routes, // 5
		noteRoute,
		d.Auth.Gate(doc), // 6
		notePrincipal,
		validate.Bodies(validate.BodyOptions{Limits: limits, Timeout: d.BodyTimeout}), // 7
		v.Validate, // 8
	}
	var h http.Handler = mux // 9
	for i := len(chain) - 1; i >= 0; i-- {
		h = chain[i](h)
	}
	return h, nil
}

// outsideContract reports whether a path is served outside openapi.yaml
// (the spec itself, Swagger UI, the dashboard's assets and app paths): the
// validator lets it through.
func outsideContract(p string) bool {
	return p == "/openapi.json" || p == "/openapi.yaml" || isDocs(p) || isProblemPage(p) || dashboard.IsAssetPath(p) || dashboard.IsAppPath(p)
}

// isProblemPage reports whether p is under the problem type pages
// (problem.Pages).
func isProblemPage(p string) bool { return strings.HasPrefix(p, problem.TypePrefix) }

func isDocs(p string) bool { return p == "/docs" || strings.HasPrefix(p, "/docs/") }

// swaggerUI is Swagger UI at /docs/, reading /openapi.json.
func swaggerUI() http.Handler {
	return swgui5.NewWithConfig(swgui.Config{
		Title:       "stackd API",
		SwaggerJSON: "/openapi.json",
		BasePath:    "/docs/",
		ShowTopBar:  false,
		SettingsUI:  swaggerSettings,
	})("stackd API", "/openapi.json", "/docs/")
}

// swaggerSettings configure Swagger UI: with a cookie session, unsafe calls
// need the CSRF header, which the request interceptor adds to every call
// (bearer calls ignore it); "Authorize" with a bearer token works as usual.
var swaggerSettings = map[string]string{
	"persistAuthorization":   "true",
	"displayRequestDuration": "true",
	"requestInterceptor":     "function(req) { req.headers['" + auth.CSRFHeader + "'] = 'swagger-ui'; return req; }",
}

// specRoutes serves the spec (as served: servedSpec) and Swagger UI, and
// gives every path no other route takes to the dashboard: its assets, its
// shell on an app path, a 404 problem on any other.
func specRoutes(mux *http.ServeMux, specYAML, specJSON []byte, ui, dash http.Handler) {
	mux.Handle("/openapi.json", onlyGet(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(specJSON)
	}))
	mux.Handle("/openapi.yaml", onlyGet(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(specYAML)
	}))
	mux.Handle("/docs/", onlyGet(notFoundAsProblem(ui).ServeHTTP))
	mux.Handle("/docs", onlyGet(http.RedirectHandler("/docs/", http.StatusMovedPermanently).ServeHTTP))
	// The dashboard takes the rest. A path the validator's router accepts
	// but no route of the mux takes (a lone %2F segment under /api/) is
	// not an app path: its 404 problem, never the mux's text/plain.
	mux.Handle("/", dash)
}
