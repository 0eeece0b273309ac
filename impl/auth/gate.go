package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/validate"
	"github.com/stackd/stackd/impl/webhook"
)

// Operation ids with special treatment.
const (
	OpSyncRepo      = "syncRepo"
	OpCreateRepo    = "createRepo"
	OpGitHubWebhook = "githubWebhook"
	OpLogout        = "authLogout"
	OpHealth        = "getHealth"
	OpReady         = "getReady"
)

// MutatingExtension marks an operation that changes server state.
const MutatingExtension = "x-stackd-mutating"

// Mutating reports whether the route changes server state: its operation
// carries x-stackd-mutating: true, or it has no such extension and its method
// is not GET, HEAD or OPTIONS. An explicit x-stackd-mutating: false (sign-out)
// overrides the method. The GitHub webhook is always exempt: it is
// authenticated by its HMAC signature and only triggers mirror refreshes, so
// it stays open in a read-only server.
func Mutating(route *validate.Route) bool {
	if route == nil {
		return false
	}
	if op := route.Operation; op != nil {
		if op.OperationID == OpGitHubWebhook {
			return false
		}
		if v, ok := op.Extensions[MutatingExtension]; ok {
			if b, ok := boolValue(v); ok {
				return b
			}
		}
	}
	return !safeMethod(route.Method)
}

// boolValue reads an extension value as kin-openapi may hold it.
func boolValue(v any) (value, ok bool) {
	var s string
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		s = x
	case []byte:
		s = string(x)
	case json.RawMessage:
		s = string(x)
	default:
		return false, false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	return b, err == nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// refusal is a problem answered by the gate instead of the handler.
type refusal struct {
	status  int
	slug    string
	detail  string
	wwwAuth string
	// retryAfter (seconds) is sent as Retry-After when positive.
	retryAfter int
}

// databaseDown is the refusal of a request whose session cannot be looked
// up because the database is unreachable.
var databaseDown = &refusal{status: http.StatusServiceUnavailable, slug: problem.Unavailable,
	detail: problem.DatabaseUnavailable, retryAfter: problem.DatabaseRetryAfter}

// Gate returns the middleware that runs after the operation is found
// (validate.Routes) and before the body is read or validated, in this order:
// client address; principal from a bearer ID token or the session cookie;
// rate limits (see below); read-only refusal of mutating operations; a
// refusal of bad credentials; the posture's access rule for anonymous
// callers (Config.Access of the operation's Level: 401 to sign in, or 403
// where the posture has no users); CSRF on unsafe cookie-authenticated or
// anonymous requests; and the audit of every mutating operation (a 429 is
// not audited). doc gives the global security that applies to operations
// without their own.
//
// Rate limits, each a token bucket (answering 429 with Retry-After):
//
//   - not limited: /healthz and /readyz (getHealth, getReady) and the
//     requests outside the contract (the spec, /docs/);
//   - a request whose credentials are refused spends from the failed
//     authentication bucket of its address (Config.FailRate) and nothing
//     else, never from a user's bucket;
//   - the GitHub webhook (whose session or bearer credentials, if any, are
//     ignored) spends nothing when its signature verifies: one
//     without a well-formed X-Hub-Signature-256 header spends a failed
//     authentication token here, before its body is read; one whose
//     signature is wrong is charged by the handler (Charge);
//   - every other request spends from the API bucket (Config.Rate) of its
//     client: the signed-in principal, else the address (ClientKey);
//     onboarding also spends from the client's sync bucket
//     (Config.SyncRate), and a sync is charged a sync token by the handler
//     only when it creates a run (Charge; joining a queued run is free).
func (a *Auth) Gate(doc *openapi3.T) func(http.Handler) http.Handler {
	var global openapi3.SecurityRequirements
	if doc != nil {
		global = doc.Security
	}
	ops := operationsOf(doc)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ip := a.clientIP(r)
			ctx := context.WithValue(r.Context(), clientIPKey, ip)
			route, hasRoute := validate.RouteFrom(ctx)
			if !hasRoute {
				// Outside the contract: the spec and Swagger UI,
				// precomputed or static. Not limited.
				next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, clientKeyKey, a.addrKey(ip))))
				return
			}
			opID := ""
			if route.Operation != nil {
				opID = route.Operation.OperationID
			}
			r = r.WithContext(ctx)

			var (
				p *Principal
				f *refusal
			)
			if opID != OpGitHubWebhook {
				// The webhook is authenticated by its signature alone:
				// credentials on it are not looked at (a bad one must not
				// refuse a verified push).
				p, f = a.identify(r)
			}
			if f == databaseDown && a.cfg.Access(Classify(route.Operation, global)) == AccessAnonymous {
				// The session cannot be looked up, and an anonymous
				// caller may do this anyway: go on without it (health,
				// readiness, public reads keep working).
				p, f = nil, nil
			}
			if f != nil && opID == OpLogout {
				// Signing out always works, even for a session the
				// allowlists now refuse: the handler checks CSRF and
				// deletes whatever session the cookie names.
				p, f = nil, nil
			}
			key := a.addrKey(ip)
			if p != nil {
				key = "user:" + p.Subject
			}
			ctx = context.WithValue(r.Context(), clientKeyKey, key)
			if opID != OpHealth && opID != OpReady {
				var refused bool
				// A store failure (500, or 503: the database is
				// unreachable) is not a failed authentication.
				failed := f != nil && f.status < http.StatusInternalServerError
				if ctx, refused = a.limit(w, r.WithContext(ctx), opID, ip, key, failed); refused {
					return
				}
			}
			r = r.WithContext(ctx)

			var rec *recorder
			if Mutating(route) {
				rec = &recorder{ResponseWriter: w}
				w = rec
				r = r.WithContext(context.WithValue(r.Context(), auditKey, rec))
				defer func() { a.audit(r, route, p, ip, rec) }()
			}
			refuse := func(f *refusal) {
				if rec != nil {
					rec.note = f.slug
				}
				if f.wwwAuth != "" {
					w.Header().Set("WWW-Authenticate", f.wwwAuth)
				}
				if f.retryAfter > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
				}
				problem.Write(w, r, f.status, f.slug, f.detail)
			}
			if f != nil {
				refuse(f)
				return
			}
			level := Classify(route.Operation, global)
			if !a.cfg.Admits(level, rec != nil, p != nil) {
				switch {
				case a.cfg.ReadOnly && rec != nil:
					refuse(&refusal{status: http.StatusForbidden, slug: problem.ReadOnly,
						detail: fmt.Sprintf("the server is read-only: %s is not allowed", opName(route))})
				case a.cfg.Access(level) == AccessNoUsers:
					refuse(&refusal{status: http.StatusForbidden, slug: problem.Forbidden,
						detail: fmt.Sprintf("%s needs a signed-in user, and this read-only server runs with auth off", opName(route))})
				default:
					refuse(&refusal{status: http.StatusUnauthorized, slug: problem.Unauthorized, wwwAuth: "Bearer",
						detail: "authentication required: sign in at /auth/login or send a bearer ID token"})
				}
				return
			}
			if !safeMethod(r.Method) && (p == nil || p.Method == MethodSession) {
				if slug, detail := a.csrfRefusal(r, p != nil); slug != "" {
					refuse(&refusal{status: http.StatusForbidden, slug: slug, detail: detail})
					return
				}
			}
			signedIn := p != nil
			ctx = context.WithValue(r.Context(), admitsKey, func(opID string) bool {
				op, ok := ops[opID]
				return ok && a.cfg.Admits(Classify(op.Operation, global), Mutating(op), signedIn)
			})
			if p != nil {
				ctx = context.WithValue(ctx, principalKey, p)
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// operationsOf indexes the operations of doc by operation id.
func operationsOf(doc *openapi3.T) map[string]*validate.Route {
	out := map[string]*validate.Route{}
	if doc == nil || doc.Paths == nil {
		return out
	}
	for _, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op != nil && op.OperationID != "" {
				out[op.OperationID] = &validate.Route{Operation: op, Method: method}
			}
		}
	}
	return out
}

// limit applies the rate limits of a request (see Gate) and returns the
// context for the rest of the chain, with the deferred charge of a sync or
// webhook (Charge). When a bucket is empty it writes the 429 and reports
// refused.
func (a *Auth) limit(w http.ResponseWriter, r *http.Request, opID, ip, key string, failed bool) (ctx context.Context, refused bool) {
	ctx = r.Context()
	refuse := func(err *LimitError) (context.Context, bool) {
		w.Header().Set("Retry-After", strconv.Itoa(err.RetrySeconds()))
		problem.Write(w, r, http.StatusTooManyRequests, problem.TooManyRequests, err.Error())
		return ctx, true
	}
	failure := func() error {
		return a.spend(a.failLimit, a.addrKey(ip), "too many failed authentications from "+a.group(ip))
	}
	who := "from " + a.group(ip)
	if key != a.addrKey(ip) {
		who = "for this user"
	}
	switch {
	case failed:
		if err := failure(); err != nil {
			return refuse(err.(*LimitError))
		}
	case opID == OpGitHubWebhook:
		if !webhook.WellFormed(r.Header.Get(webhook.HeaderSignature)) {
			// It cannot verify: charged now, before its body is read.
			if err := failure(); err != nil {
				return refuse(err.(*LimitError))
			}
			return context.WithValue(ctx, chargeKey, func() error { return nil }), false
		}
		return context.WithValue(ctx, chargeKey, failure), false
	default:
		if err := a.spend(a.apiLimit, key, "too many requests "+who); err != nil {
			return refuse(err.(*LimitError))
		}
		switch opID {
		case OpCreateRepo:
			if err := a.spend(a.syncLimit, key, "too many onboardings and syncs "+who); err != nil {
				return refuse(err.(*LimitError))
			}
		case OpSyncRepo:
			return context.WithValue(ctx, chargeKey, func() error {
				return a.spend(a.syncLimit, key, "too many new syncs "+who)
			}), false
		}
	}
	return ctx, false
}

// spend takes a token of l's bucket for key, or returns a *LimitError
// saying what was refused and when to retry.
func (a *Auth) spend(l *limiter, key, what string) error {
	ok, wait := l.take(key, a.now())
	if ok {
		return nil
	}
	if a.cfg.Refusals != nil {
		a.cfg.Refusals.RateLimited(l.bucket)
	}
	return &LimitError{RetryAfter: wait, Detail: what + "; retry in " + retryText(wait)}
}

// ErrRateLimited is matched (errors.Is) by every *LimitError.
var ErrRateLimited = errors.New("rate limited")

// LimitError is a refusal by a rate limit.
type LimitError struct {
	// RetryAfter is when a token is available again.
	RetryAfter time.Duration
	// Detail is a one-line text for the problem's detail.
	Detail string
}

func (e *LimitError) Error() string { return e.Detail }

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *LimitError) Is(target error) bool { return target == ErrRateLimited }

// RetrySeconds is RetryAfter in whole seconds, rounded up, at least 1 (for
// the Retry-After header).
func (e *LimitError) RetrySeconds() int {
	return max(1, int(math.Ceil(e.RetryAfter.Seconds())))
}

// Charge spends the token the gate deferred to the handler, and must be
// called at most once per request: for a sync, a token of the client's
// sync bucket, to be spent only when the sync creates a run (pass it to
// refresh.Refresher.SyncIf); for the GitHub webhook, a failed
// authentication token of the address, to be spent only when the
// signature is wrong. It returns nil when there is nothing to charge or
// the token was spent, and a *LimitError when the bucket is empty.
func Charge(ctx context.Context) error {
	if f, ok := ctx.Value(chargeKey).(func() error); ok && f != nil {
		return f()
	}
	return nil
}

// identify finds the principal of r. No credentials is no principal and no
// refusal; bad credentials are refused.
func (a *Auth) identify(r *http.Request) (*Principal, *refusal) {
	if a.cfg.Mode != ModeOIDC {
		return nil, nil
	}
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			return nil, &refusal{status: http.StatusUnauthorized, slug: problem.Unauthorized,
				wwwAuth: `Bearer error="invalid_request"`,
				detail:  "the Authorization header must be \"Bearer\" followed by an ID token"}
		}
		id, err := a.verify(ctx, token, true)
		if err != nil {
			a.log.Info("bearer token refused", "err", err, "client", ClientIP(ctx))
			detail := "the bearer token is not a valid ID token for this server"
			var exp *oidc.TokenExpiredError
			switch {
			case errors.Is(err, errAccessToken):
				detail = "the bearer token is an OAuth access token (typ at+jwt); send an OIDC ID token issued for this server's client id"
			case errors.As(err, &exp):
				detail = "the bearer token has expired"
			}
			return nil, &refusal{status: http.StatusUnauthorized, slug: problem.Unauthorized,
				wwwAuth: `Bearer error="invalid_token"`, detail: detail}
		}
		if !a.allowed(id) {
			return nil, &refusal{status: http.StatusForbidden, slug: problem.Forbidden,
				detail: "this account is not allowed on this server"}
		}
		p := a.principal(id)
		p.Method = MethodBearer
		return p, nil
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" || a.store == nil {
		return nil, nil
	}
	sess, err := a.store.Session(ctx, c.Value, a.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if errors.Is(err, store.ErrUnavailable) {
		a.log.Warn("session lookup failed: the database is unreachable", "err", err)
		return nil, databaseDown
	}
	if err != nil {
		a.log.Error("session lookup failed", "err", err)
		return nil, &refusal{status: http.StatusInternalServerError, slug: problem.Internal, detail: problem.GenericDetail}
	}
	id := &identity{
		Principal:     Principal{Subject: sess.Subject, Email: sess.Email, Name: sess.Name, Groups: sess.Groups, Method: MethodSession},
		emailVerified: sess.EmailVerified,
	}
	// The allowlists are applied again so that narrowing them takes effect
	// on existing sessions.
	if !a.allowed(id) {
		return nil, &refusal{status: http.StatusForbidden, slug: problem.Forbidden,
			detail: "this account is not allowed on this server"}
	}
	return a.principal(id), nil
}

// principal is the principal of a verified, allowed identity, with what
// visibility needs: whether its e-mail is verified and whether it is an
// admin (decided on every request, so that changing --admins applies to
// existing sessions).
func (a *Auth) principal(id *identity) *Principal {
	p := id.Principal
	p.EmailVerified = id.emailVerified
	p.Admin = a.admin(id)
	return &p
}

// csrfRefusal checks an unsafe request that is not bearer-authenticated: an
// Origin, when present, must be the server's own (BaseURL; on a loopback
// listener also any origin whose host is local, see Hosts) or a CORS
// origin, never merely the request's own Host; a cookie-authenticated
// request must also carry the X-Stackd-CSRF header. It returns the problem
// slug and detail of a refusal, or "".
func (a *Auth) csrfRefusal(r *http.Request, cookie bool) (slug, detail string) {
	if origin := r.Header.Get("Origin"); origin != "" && !a.originAllowed(origin) {
		return problem.CSRF, fmt.Sprintf("cross-origin request from %q refused", origin)
	}
	if cookie && r.Header.Get(CSRFHeader) == "" {
		return problem.CSRF, "requests authenticated by the session cookie must carry the " + CSRFHeader + " header"
	}
	return "", ""
}

func (a *Auth) originAllowed(origin string) bool {
	o := strings.ToLower(origin)
	if a.corsOrigins[o] || a.baseOrigin != "" && o == a.baseOrigin {
		return true
	}
	if !a.cfg.Loopback {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.User == nil && (u.Path == "" || u.Path == "/") && a.localHost(u.Host)
}

func opName(route *validate.Route) string {
	if route.Operation != nil && route.Operation.OperationID != "" {
		return route.Operation.OperationID
	}
	return route.Method + " " + route.Path
}

// recorder keeps the final status of a response for the audit log.
type recorder struct {
	http.ResponseWriter
	status int
	note   string // problem slug of a gate refusal
	repo   string // the repository the handler named (NoteAuditRepo)
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 && code >= 200 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	return rw.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the recorder.
func (rw *recorder) Flush() {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// final is the status the response had (200 when nothing was written).
func (rw *recorder) final() int {
	if rw.status == 0 {
		return http.StatusOK
	}
	return rw.status
}

func (rw *recorder) outcome() string {
	status := rw.final()
	if rw.note != "" {
		return strconv.Itoa(status) + " " + rw.note
	}
	return strconv.Itoa(status)
}
