// Package validate matches requests to the OpenAPI document and checks
// them with kin-openapi, in two steps with the access gate between them:
//
//	Routes -> (auth gate) -> Bodies -> Validate -> handler
//
// Routes finds the operation of a request without reading its body: a path
// in the document asked with an undeclared method gets a 405 problem with an
// Allow header; any other path gets a 404 problem, except for the few paths
// that are served outside the contract (the spec itself and Swagger UI),
// which pass through. The matched operation is put in the request context
// (RouteFrom) for the gate. Bodies (body.go) reads the body, bounded by the
// operation's x-stackd-max-body and a read deadline. Validate then checks
// parameters, headers and the body already read.
//
// Validation failures become single-line 400 problems: the parameter or body
// location and the reason, never a schema dump.
package validate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/stackd/stackd/impl/problem"
)

// Route is what the validator found for a request: its operation in the
// document. Later middleware (auth, read-only gating) reads it from the
// request context with RouteFrom.
type Route struct {
	Operation *openapi3.Operation
	Path      string // the path template, e.g. /api/v1/repos/{repoID}
	Method    string
}

type routeKey struct{}

// found is what Routes leaves in the context: the public Route and what
// Validate needs to check the request against it.
type found struct {
	pub    *Route
	route  *routers.Route
	params map[string]string
}

// RouteFrom returns the matched route of a request, if any.
func RouteFrom(ctx context.Context) (*Route, bool) {
	f, ok := ctx.Value(routeKey{}).(*found)
	if !ok {
		return nil, false
	}
	return f.pub, true
}

// Options configure the middleware.
type Options struct {
	// Passthrough reports whether a path outside the document is still served
	// by the wrapped handler (for example /docs/).
	Passthrough func(path string) bool
	// Authenticate is called by kin-openapi for each security requirement.
	// Nil means requirements are not checked here (the auth middleware gates).
	Authenticate openapi3filter.AuthenticationFunc
}

// Validator is the request-validating middleware.
type Validator struct {
	router  routers.Router
	opts    Options
	filter  *openapi3filter.Options
	methods []string
}

// New prepares a validator for doc. doc is copied shallowly so its servers
// can be dropped: paths are matched from the root.
func New(doc *openapi3.T, opts Options) (*Validator, error) {
	d := *doc
	d.Servers = nil
	router, err := legacy.NewRouter(&d)
	if err != nil {
		return nil, fmt.Errorf("validate: build router: %w", err)
	}
	auth := opts.Authenticate
	if auth == nil {
		auth = openapi3filter.NoopAuthenticationFunc
	}
	fopts := &openapi3filter.Options{AuthenticationFunc: auth}
	fopts.WithCustomSchemaErrorFunc(func(err *openapi3.SchemaError) string {
		where := strings.Join(err.JSONPointer(), "/")
		if where == "" {
			return err.Reason
		}
		return "at /" + where + ": " + err.Reason
	})
	if opts.Passthrough == nil {
		opts.Passthrough = func(string) bool { return false }
	}
	return &Validator{
		router:  router,
		opts:    opts,
		filter:  fopts,
		methods: []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
	}, nil
}

// Routes finds the operation of each request (the body is not read): 404
// for an unknown path, 405 with Allow for an undeclared method, the
// passthrough paths go on without a route (their handlers answer other
// methods); otherwise the route goes in the request context (RouteFrom).
// HEAD takes the route of GET on the same path. A path with a trailing
// slash is a 404 (no route has one) whose detail names the route without
// it, when there is one.
func (v *Validator) Routes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rr := routable(r)
		if p := rr.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") && !v.opts.Passthrough(r.URL.Path) {
			// No route ends with a slash. The router would forgive it
			// (and the mux would not): a 404 problem that names the
			// route meant, rather than a redirect a POST cannot follow.
			detail := "no such route: " + p
			trimmed := rr.Clone(rr.Context())
			trimmed.URL.Path = strings.TrimRight(p, "/")
			if _, _, err := v.findRoute(withGet(trimmed)); (err == nil || v.opts.Passthrough(trimmed.URL.Path)) && trimmed.URL.Path != "" {
				detail += " (routes have no trailing slash: " + trimmed.URL.Path + ")"
			}
			problem.Write(w, r, http.StatusNotFound, problem.NotFound, detail)
			return
		}
		route, params, err := v.findRoute(rr)
		if err != nil && r.Method == http.MethodHead {
			// HEAD is GET without the body (RFC 9110, 9.3.2): every GET
			// route takes it, with the GET operation's checks; the mux
			// routes it to the GET handler and net/http drops the body.
			route, params, err = v.findRoute(withGet(rr))
		}
		if err != nil {
			if v.opts.Passthrough(r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
			if allow := v.allowed(rr); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				problem.Write(w, r, http.StatusMethodNotAllowed, problem.MethodNotAllowed,
					fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.EscapedPath()))
				return
			}
			problem.Write(w, r, http.StatusNotFound, problem.NotFound, "no such route: "+r.URL.EscapedPath())
			return
		}
		f := &found{pub: &Route{Operation: route.Operation, Path: route.Path, Method: route.Method}, route: route, params: params}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, f)))
	})
}

// Validate checks a routed request (parameters, headers, body) against its
// operation; requests without a route (the passthrough paths) go on as
// they are. The body should already be bounded (Bodies): kin-openapi reads
// all of it.
func (v *Validator) Validate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := r.Context().Value(routeKey{}).(*found)
		if !ok || f.route == nil {
			next.ServeHTTP(w, r)
			return
		}
		rr := routable(r)
		in := &openapi3filter.RequestValidationInput{
			Request:    rr,
			PathParams: f.params,
			Route:      f.route,
			Options:    v.filter,
		}
		if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
			status, detail := describe(err)
			slug := problem.BadRequest
			if status == http.StatusUnsupportedMediaType {
				slug = problem.UnsupportedMedia
			}
			p := problem.New(status, slug, detail)
			if reqErr, ok := errors.AsType[*openapi3filter.RequestError](err); ok && reqErr.Parameter != nil && reqErr.Parameter.In == openapi3.ParameterInPath {
				// A refused path parameter is not repeated, not even in
				// the instance: that is the route's template.
				inst := f.pub.Path
				p.Instance = &inst
			}
			problem.WriteProblem(w, problem.Stamp(r, p))
			return
		}
		// ValidateRequest may have replaced the body with a re-readable copy.
		r.Body = rr.Body
		next.ServeHTTP(w, r)
	})
}

// errEmptySegment: a path template matched with an empty path parameter.
var errEmptySegment = errors.New("empty path segment")

// findRoute is the router's FindRoute, except that a path parameter never
// matches an empty segment: kin-openapi's router would take /things (and
// /things//x) for /things/{id} with id "", so that DELETE /things looked
// like a malformed DELETE /things/{id} (400) instead of a method /things
// does not have (405), and Allow listed DELETE.
func (v *Validator) findRoute(r *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		return nil, nil, err
	}
	for _, val := range params {
		if val == "" {
			return nil, nil, errEmptySegment
		}
	}
	return route, params, nil
}

// withGet returns r asking with GET when it is a HEAD (HEAD takes the GET
// routes).
func withGet(r *http.Request) *http.Request {
	if r.Method != http.MethodHead {
		return r
	}
	g := r.Clone(r.Context())
	g.Method = http.MethodGet
	return g
}

// routable returns a copy of r whose URL.Path is the escaped path, so that a
// percent-encoded slash in a branch name stays inside one path segment.
func routable(r *http.Request) *http.Request {
	rr := r.Clone(r.Context())
	u := *r.URL
	u.Path = r.URL.EscapedPath()
	u.RawPath = ""
	rr.URL = &u
	return rr
}

func (v *Validator) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range v.methods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, _, err := v.findRoute(probe); err == nil {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	return allow
}

// describe turns a kin-openapi error into a status and a one-line detail.
func describe(err error) (int, string) {
	var reqErr *openapi3filter.RequestError
	if errors.As(err, &reqErr) {
		reason := reqErr.Reason
		var schemaErr *openapi3.SchemaError
		if errors.As(reqErr.Err, &schemaErr) {
			where := strings.Join(schemaErr.JSONPointer(), "/")
			reason = schemaErr.Reason
			if where != "" {
				reason = "at /" + where + ": " + reason
			}
		} else if reqErr.Err != nil && reason == "" {
			reason = reqErr.Err.Error()
		} else if reqErr.Err != nil && !strings.Contains(reason, reqErr.Err.Error()) {
			reason += ": " + reqErr.Err.Error()
		}
		status := http.StatusBadRequest
		if strings.Contains(reason, "header Content-Type has unexpected value") ||
			strings.Contains(strings.ToLower(reason), "unsupported content type") {
			status = http.StatusUnsupportedMediaType
		}
		switch {
		case reqErr.Parameter != nil:
			name := reqErr.Parameter.Name
			if reqErr.Parameter.In == openapi3.ParameterInPath {
				if s, uerr := url.PathUnescape(name); uerr == nil {
					name = s
				}
			}
			return status, problem.OneLine(fmt.Sprintf("%s parameter %q: %s", reqErr.Parameter.In, name, reason))
		case reqErr.RequestBody != nil:
			return status, problem.OneLine("request body: " + reason)
		default:
			return status, problem.OneLine(reason)
		}
	}
	var secErr *openapi3filter.SecurityRequirementsError
	if errors.As(err, &secErr) {
		return http.StatusUnauthorized, "authentication required"
	}
	return http.StatusBadRequest, problem.OneLine(err.Error())
}
