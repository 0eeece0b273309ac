// Package deadline bounds how long a response write may wait for a client
// that does not read.
//
// The server has no global WriteTimeout: one would cut every response that
// takes longer in total, event streams first. Instead every write of a
// response gets its own deadline (Middleware): before each write of at
// most ChunkSize bytes and before each flush, the connection's write
// deadline is set to the budget from now (http.ResponseController's
// SetWriteDeadline). A client that keeps reading, however slowly, moves
// the deadline on with every chunk it takes, and an event stream idle
// between two events has no write pending, so nothing expires; a client
// that stops reading makes a write miss its deadline once the socket
// buffers are full: the write fails, the handler sees the error and ends,
// and net/http closes the connection (a connection whose write failed is
// never reused).
package deadline

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"time"
)

// ChunkSize is the most bytes one write passes to the connection under
// one deadline: a large body is written in chunks, each with the whole
// budget. A client that reads ChunkSize bytes within the budget is never
// cut (about 9 KB/s with the default budget). Each chunk is a write of its
// own: smaller chunks cost a small view's rate a fifth (32 KiB: 0.69x a
// plain server on 1,000 branches, 256 KiB: 0.87x, make bench).
const ChunkSize = 256 << 10

// DefaultBudget is the budget of Middleware(0).
const DefaultBudget = 30 * time.Second

// Middleware returns the middleware that gives every write of a response
// budget (0: DefaultBudget) to complete, as the package describes; also
// when the handler returns, for what net/http writes after it (the
// buffered rest of the body, the end of a chunked one). It must wrap the
// server's own ResponseWriter (be the outermost middleware), so that the
// deadlines reach the connection. Where the writer has no deadlines
// (httptest.ResponseRecorder) it only passes the writes on.
func Middleware(budget time.Duration) func(http.Handler) http.Handler {
	if budget <= 0 {
		budget = DefaultBudget
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			dw := &writer{ResponseWriter: w, rc: http.NewResponseController(w), budget: budget, ok: true}
			defer dw.extend()
			next.ServeHTTP(dw, r)
		})
	}
}

// writer sets the write deadline before every write and flush.
type writer struct {
	http.ResponseWriter
	rc     *http.ResponseController
	budget time.Duration
	ok     bool // the connection takes deadlines (and is not hijacked)
}

// extend sets the deadline to the budget from now.
func (w *writer) extend() {
	if !w.ok {
		return
	}
	if err := w.rc.SetWriteDeadline(time.Now().Add(w.budget)); errors.Is(err, http.ErrNotSupported) {
		w.ok = false
	}
}

func (w *writer) WriteHeader(code int) {
	w.extend() // a 1xx answer is written at once
	w.ResponseWriter.WriteHeader(code)
}

// Write writes p in chunks of at most ChunkSize bytes, each under a new
// deadline.
func (w *writer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		w.extend()
		return w.ResponseWriter.Write(p)
	}
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), ChunkSize)]
		w.extend()
		m, err := w.ResponseWriter.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[len(chunk):]
	}
	return n, nil
}

// FlushError flushes under a new deadline and reports the error
// (http.ResponseController.Flush uses it).
func (w *writer) FlushError() error {
	w.extend()
	return w.rc.Flush()
}

// Flush is FlushError for http.Flusher callers, which cannot see errors.
func (w *writer) Flush() { _ = w.FlushError() }

// Hijack takes the connection over (http.ResponseController.Hijack finds
// it here): from then on no deadline is set, also not when the handler
// returns (the connection's new owner keeps its own).
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := w.rc.Hijack()
	if err == nil {
		w.ok = false
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
