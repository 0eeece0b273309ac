package httpstack

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/requestid"
)

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
func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
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
}
