package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/stackd/stackd/impl/problem"
)

// MaxBodyExtension declares the largest request body, in bytes: on an
// operation, its limit; at the document's root, the limit of operations
// without one and of routes outside the contract. Every operation with a
// requestBody must declare its own.
const MaxBodyExtension = "x-stackd-max-body"

// DefaultBodyTimeout bounds the time to receive a request body.
const DefaultBodyTimeout = 30 * time.Second

// Limits are the body limits a document declares.
type Limits struct {
	def int64
	ops map[string]int64 // by "METHOD /path/template"
}

// ErrLimits reports a missing or unusable x-stackd-max-body.
var ErrLimits = errors.New("validate: body limits")

// LimitsOf reads the x-stackd-max-body extensions of doc: the root one
// (required) and one on every operation that has a requestBody (required
// there, allowed elsewhere). Each must be a positive integer.
func LimitsOf(doc *openapi3.T) (*Limits, error) {
	l := &Limits{ops: map[string]int64{}}
	def, ok, err := extInt(doc.Extensions)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: document %s: %w", ErrLimits, MaxBodyExtension, err)
	case !ok:
		return nil, fmt.Errorf("%w: the document has no default %s", ErrLimits, MaxBodyExtension)
	}
	l.def = def
	for p, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			n, ok, err := extInt(op.Extensions)
			if err != nil {
				return nil, fmt.Errorf("%w: %s %s: %s: %w", ErrLimits, m, p, MaxBodyExtension, err)
			}
			if !ok && op.RequestBody != nil {
				return nil, fmt.Errorf("%w: %s %s takes a body but declares no %s", ErrLimits, m, p, MaxBodyExtension)
			}
			if ok {
				l.ops[m+" "+p] = n
			}
		}
	}
	return l, nil
}

// Default is the limit of bodies that no operation declares.
func (l *Limits) Default() int64 { return l.def }

// For returns the body limit of route (nil: outside the contract).
func (l *Limits) For(route *Route) int64 {
	if route != nil {
		if n, ok := l.ops[route.Method+" "+route.Path]; ok {
			return n
		}
	}
	return l.def
}

// extInt reads MaxBodyExtension from ext as kin-openapi may hold it.
func extInt(ext map[string]any) (int64, bool, error) {
	v, ok := ext[MaxBodyExtension]
	if !ok {
		return 0, false, nil
	}
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case json.Number:
		n, err := x.Float64()
		if err != nil {
			return 0, true, err
		}
		f = n
	case json.RawMessage:
		n, err := strconv.ParseFloat(strings.TrimSpace(string(x)), 64)
		if err != nil {
			return 0, true, err
		}
		f = n
	default:
		return 0, true, fmt.Errorf("want a number of bytes, got %T", v)
	}
	if f < 1 || f != math.Trunc(f) || f > 1<<40 {
		return 0, true, fmt.Errorf("want a positive whole number of bytes, got %v", f)
	}
	return int64(f), true, nil
}

// RawBody is a request body as received, kept for the handlers that need
// the exact bytes (the webhook's HMAC).
type RawBody struct {
	Data        []byte
	ContentType string
}

type rawBodyKey struct{}

// BodyFrom returns the body Bodies read for the request, if there was one.
func BodyFrom(ctx context.Context) (RawBody, bool) {
	b, ok := ctx.Value(rawBodyKey{}).(RawBody)
	return b, ok
}

// BodyOptions configure Bodies.
type BodyOptions struct {
	Limits *Limits
	// Timeout bounds the time to receive a body (DefaultBodyTimeout when 0).
	Timeout time.Duration
}

// Bodies reads each request body before validation, after the access gate:
//
//   - A Content-Length over the route's limit answers 413 at once; nothing
//     of the body is read.
//   - Otherwise the body is read through http.MaxBytesReader: a body
//     without a length (chunked) that crosses the limit answers 413 as soon
//     as it does.
//   - The reading has a deadline (the connection's read deadline, set
//     through http.ResponseController and cleared afterwards): a body that
//     stalls answers 408.
//
// After a 413 or 408 net/http closes the connection (with a FIN first, so
// the client reads the answer) instead of draining what is left. A body
// read in full replaces the request's body and is kept for BodyFrom.
func Bodies(o BodyOptions) func(http.Handler) http.Handler {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultBodyTimeout
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			route, _ := RouteFrom(r.Context())
			if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
				if route != nil && route.Operation != nil && route.Operation.RequestBody != nil {
					// An empty body of an operation that takes one is
					// still a body, for the handlers that read it raw.
					r = r.WithContext(context.WithValue(r.Context(), rawBodyKey{}, RawBody{ContentType: r.Header.Get("Content-Type")}))
				}
				next.ServeHTTP(w, r)
				return
			}
			limit := o.Limits.For(route)
			if r.ContentLength > limit {
				tooLarge(w, r, limit)
				return
			}
			rc := http.NewResponseController(w)
			deadline := rc.SetReadDeadline(time.Now().Add(timeout)) == nil
			data, err := readBody(http.MaxBytesReader(innermost(w), r.Body, limit), r.ContentLength)
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				tooLarge(w, r, limit)
				return
			case isTimeout(err):
				closeAfterReply(w)
				problem.Write(w, r, http.StatusRequestTimeout, problem.RequestTimeout,
					fmt.Sprintf("the request body did not arrive within %s", timeout))
				return
			case err != nil:
				closeAfterReply(w)
				problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, "the request body could not be read")
				return
			}
			if deadline {
				_ = rc.SetReadDeadline(time.Time{})
			}
			r.Body = io.NopCloser(bytes.NewReader(data))
			r.ContentLength = int64(len(data))
			ctx := context.WithValue(r.Context(), rawBodyKey{}, RawBody{Data: data, ContentType: r.Header.Get("Content-Type")})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// readBody reads r to its end (so net/http sees the body's EOF); size is
// the announced length (-1: unknown), never more than the limit r
// enforces.
func readBody(r io.Reader, size int64) ([]byte, error) {
	if size < 0 {
		return io.ReadAll(r)
	}
	buf := make([]byte, 0, size+1)
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, err
		case len(buf) == cap(buf):
			return buf, errors.New("request body longer than announced") // net/http stops at Content-Length
		}
	}
}

// CloseUnread wraps the whole chain: a request whose body was not read to
// its end (refused by the Host check, routing, the gate or the body limit)
// is answered and then its connection closed, rather than net/http reading
// (up to 256 KiB of) the rest to reuse the connection, which a client that
// stops sending would hold open.
func CloseUnread(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		t := &eofReader{ReadCloser: r.Body}
		r.Body = t
		next.ServeHTTP(w, r)
		if !t.eof {
			closeAfterReply(w)
		}
	})
}

// eofReader notes whether its reader reached the end.
type eofReader struct {
	io.ReadCloser
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.ReadCloser.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

func tooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	closeAfterReply(w)
	problem.Write(w, r, http.StatusRequestEntityTooLarge, problem.PayloadTooLarge,
		fmt.Sprintf("the request body is larger than the %s this operation accepts", byteSize(limit)))
}

// closeAfterReply tells net/http to close the connection after this
// response instead of draining the rest of the body for the next request:
// it sends the answer, half-closes, and closes shortly after. net/http does
// so for a request whose http.MaxBytesReader hit its limit; a reader
// limited to 0 bytes over one byte that is not the body's hits it at once.
// The read deadline is moved into the past, so that nothing waits on the
// rest of the body (net/http reads a short remainder when it closes the
// body).
func closeAfterReply(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	one := io.NopCloser(strings.NewReader("x"))
	_, _ = http.MaxBytesReader(innermost(w), one, 0).Read(make([]byte, 1))
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}

// innermost unwraps middleware response writers (Unwrap, as
// http.ResponseController does) down to net/http's own.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	default:
		return strconv.FormatInt(n, 10) + " bytes"
	}
}
