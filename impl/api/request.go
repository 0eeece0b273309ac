package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/validate"
)

// What handlers know of the request itself, besides its typed object:
// facts markRequest puts in the context, and values the middleware left
// there (the raw body, the client the gate settled on).

type (
	headKey        struct{}
	acceptsGzipKey struct{}
	http11Key      struct{}
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
		if r.ProtoMajor == 1 && r.ProtoMinor >= 1 && r.TLS == nil {
			ctx = context.WithValue(ctx, http11Key{}, true)
		}
		return f(ctx, w, r, req)
	}
}

// plainHTTP11 reports whether the request of ctx came over HTTP/1.1 without
// TLS (markRequest): its connection can be taken over and its response
// is chunked, so an event stream can be served off its goroutine
// (events.Hub).
func plainHTTP11(ctx context.Context) bool { v, _ := ctx.Value(http11Key{}).(bool); return v }

// isHead reports whether the request of ctx is a HEAD (markRequest).
func isHead(ctx context.Context) bool { v, _ := ctx.Value(headKey{}).(bool); return v }

// acceptsGzipFrom reports whether the client of ctx accepts gzip
// (markRequest).
func acceptsGzipFrom(ctx context.Context) bool { v, _ := ctx.Value(acceptsGzipKey{}).(bool); return v }

// acceptsGzip reads Accept-Encoding: gzip (or *) with a non-zero q.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "*" {
				continue
			}
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = f
					}
				}
			}
			if q > 0 {
				return true
			}
		}
	}
	return false
}

// rawBodyFrom returns the request body as received (validate.Bodies keeps
// it), for the webhook's HMAC.
func rawBodyFrom(ctx context.Context) (validate.RawBody, bool) { return validate.BodyFrom(ctx) }

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
