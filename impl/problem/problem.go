// Package problem writes RFC 9457 problem details (application/problem+json).
//
// Problem types are relative URI references under /problems/ (for example
// /problems/not-found); docs/problems.md lists them. Handlers that answer a
// declared error response build the body with New; middleware that answers
// before a handler runs (validation, routing, auth) uses Write.
//
// Every problem carries its instance (the request's path) and the request
// id (requestId, from impl/requestid's typed context key): Write takes them
// from the request, Stamp adds them to a problem that a handler built.
package problem

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/requestid"
)

// ContentType is the media type of every error body.
const ContentType = "application/problem+json"

// Problem type slugs. The type URI is TypePrefix + slug.
const (
	TypePrefix       = "/problems/"
	BadRequest       = "bad-request"
	NotFound         = "not-found"
	MethodNotAllowed = "method-not-allowed"
	Conflict         = "conflict"
	Internal         = "internal"
	Unavailable      = "unavailable"
	Unauthorized     = "unauthorized"
	Forbidden        = "forbidden"
	ReadOnly         = "read-only"
	CSRF             = "csrf"
	TooManyRequests  = "too-many-requests"
	PayloadTooLarge  = "payload-too-large"
	RequestTimeout   = "request-timeout"
	Misdirected      = "misdirected-request"
	FetchFailed      = "fetch-failed"
	UpstreamTooLarge = "upstream-too-large"
	UpstreamInvalid  = "upstream-invalid"
	ViewBuildFailed  = "view-build-failed"
	RemoteNotAllowed = "remote-not-allowed"
	Timeout          = "timeout"
	UnsupportedMedia = "unsupported-media-type"
	NotAcceptable    = "not-acceptable"
	GenericDetail    = "An unexpected error occurred; the server log has the details."
	// DatabaseUnavailable is the detail of a 503 for an operation that
	// needed the unreachable database (it never names the database).
	DatabaseUnavailable = "the database is unreachable; try again shortly"
	// DatabaseRetryAfter is that 503's Retry-After, in seconds.
	DatabaseRetryAfter = 5
	maxDetailLineBytes = 1000
)

// New builds a problem body. detail is flattened to one line.
func New(status int, slug, detail string) gen.Problem {
	p := gen.Problem{
		Type:   TypePrefix + slug,
		Title:  http.StatusText(status),
		Status: status,
	}
	if d := OneLine(detail); d != "" {
		p.Detail = &d
	}
	return p
}

// Write sends a problem with the given status, type slug and detail; the
// instance is the request's path and requestId its id.
func Write(w http.ResponseWriter, r *http.Request, status int, slug, detail string) {
	p := New(status, slug, detail)
	if r != nil {
		p = Stamp(r, p)
	}
	WriteProblem(w, p)
}

// Stamp returns p with what every problem carries from its request: the
// instance (the request's path) and the request id. Values p has already
// are kept. Handlers build problems with New; the strict middleware stamps
// them (impl's stampProblems), Write stamps its own.
func Stamp(r *http.Request, p gen.Problem) gen.Problem {
	if p.Instance == nil {
		// The escaped form: a URI reference, which never carries raw
		// control or format characters from the request path.
		inst := r.URL.EscapedPath()
		p.Instance = &inst
	}
	return WithRequestID(r.Context(), p)
}

// WithRequestID returns p with the id of the request whose context is ctx
// (p unchanged when it has one already or ctx has none).
func WithRequestID(ctx context.Context, p gen.Problem) gen.Problem {
	if p.RequestId == nil {
		if id := requestid.From(ctx); id != "" {
			p.RequestId = &id
		}
	}
	return p
}

// WriteProblem sends an already built problem.
func WriteProblem(w http.ResponseWriter, p gen.Problem) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// OneLine collapses whitespace runs (newlines included) to single spaces and
// caps the length, so a detail never carries a multi-line dump.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxDetailLineBytes {
		s = s[:maxDetailLineBytes] + "…"
	}
	return s
}
