package httpstack

import (
	"fmt"
	"net/http"

	"github.com/stackd/stackd/impl/problem"
)

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
