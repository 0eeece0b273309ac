// Package requestid gives every request an id that ties a client's answer
// to the server's log lines.
//
// A sane incoming X-Request-ID (1 to MaxLen letters, digits, '-', '_', '.'
// or ':') is kept, so an id set by a reverse proxy or a client follows the
// request; anything else is replaced by a fresh random id. Middleware puts
// the id in the request context (typed key) and in the X-Request-ID response
// header; From reads it back (the access log, the error hook and every
// problem body carry it).
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// Header is the request and response header that carries the id.
const Header = "X-Request-ID"

// MaxLen is the longest incoming id that is kept.
const MaxLen = 128

type ctxKey struct{}

// With returns ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the id of the request whose context is ctx, or "".
func From(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// Valid reports whether an incoming id is kept: 1 to MaxLen characters,
// each a letter, a digit, '-', '_', '.' or ':'.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}

// New returns a fresh id: 128 random bits in hex.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// Middleware settles the id of each request (the incoming one when Valid,
// else New), sets it on the response and in the request context.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(Header)
		if !Valid(id) {
			id = New()
		}
		w.Header().Set(Header, id)
		next.ServeHTTP(w, r.WithContext(With(r.Context(), id)))
	})
}
