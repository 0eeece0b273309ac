package mirrortest

import (
	"crypto/x509"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// GitHTTP is git http-backend (smart HTTP) on loopback, optionally over
// TLS, recording the Authorization header of every request.
type GitHTTP struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string // Authorization of every request, "" when absent
	paths []string
}

// ServeHTTP serves every repository under root with git http-backend.
// With useTLS the server has its own certificate (see Pool). mw, when
// not nil, wraps the backend (to redirect, require auth, fail, ...).
func ServeHTTP(t testing.TB, root string, useTLS bool, mw func(http.Handler) http.Handler) *GitHTTP {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	var backend http.Handler = &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Dir:  root,
		Env: append(os.Environ(), "HOME="+root, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_PROJECT_ROOT="+root, "GIT_HTTP_EXPORT_ALL=1"),
	}
	if mw != nil {
		backend = mw(backend)
	}
	g := &GitHTTP{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.auths = append(g.auths, r.Header.Get("Authorization"))
		g.paths = append(g.paths, r.URL.Path)
		g.mu.Unlock()
		backend.ServeHTTP(w, r)
	})
	if useTLS {
		g.Server = httptest.NewTLSServer(h)
	} else {
		g.Server = httptest.NewServer(h)
	}
	t.Cleanup(g.Close)
	return g
}

// Auths returns the Authorization header of every request so far, in
// order ("" for a request without one).
func (g *GitHTTP) Auths() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.auths...)
}

// Requests is the number of requests so far.
func (g *GitHTTP) Requests() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.paths)
}

// Pool returns a certificate pool trusting the certificates of servers.
func Pool(servers ...*httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	for _, s := range servers {
		if c := s.Certificate(); c != nil {
			p.AddCert(c)
		}
	}
	return p
}

// Listen returns a TCP listener on addr ("127.0.0.1:0", "[::1]:0") that
// nobody accepts from until NoConnection is called: a connection made to
// it waits in the kernel's accept queue.
func Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// NoConnection fails the test when any connection reached ln before this
// call. It connects once itself and accepts: the accept queue is first in,
// first out, so the first connection accepted must be its own.
func NoConnection(t testing.TB, ln net.Listener) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatalf("a connection from %s reached the listener %s", got.RemoteAddr(), ln.Addr())
	}
}
