package impl_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/dashboard"
	"github.com/stackd/stackd/impl/problem"
)

// TestProblemTypesDereference: the type URI of a problem the server sends
// leads to a human-readable page on the server itself, for every type (on
// a local server and behind OIDC sign-in without public reads: the pages
// hold no data); the dashboard's catch-all does not shadow them, and an
// unknown type is a 404 problem.
func TestProblemTypesDereference(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	for _, tc := range []struct {
		name string
		s    *testServer
	}{
		{"local", startServer(t, baseConfig(t, dir), impl.Options{})},
		{"oidc", startServer(t, oidcConfig(t, idp, dir), impl.Options{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			get := func(path string) (int, http.Header, string) {
				resp, err := http.Get(s.srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header, string(b)
			}
			// A problem the server sent: its type is a path of the server.
			code, _, body := get("/api/v1/repos/nope")
			sent := problemBody(t, body)
			if code != 401 && code != 404 || !strings.HasPrefix(sent.Type, problem.TypePrefix) {
				t.Fatalf("GET /api/v1/repos/nope: %d %s", code, body)
			}
			types := []string{sent.Type, problem.TypePrefix}
			for _, ty := range problem.Types {
				types = append(types, problem.TypePrefix+ty.Slug)
			}
			for _, ty := range types {
				code, hdr, page := get(ty)
				if code != 200 || hdr.Get("Content-Type") != "text/html; charset=utf-8" {
					t.Errorf("GET %s: %d %q", ty, code, hdr.Get("Content-Type"))
					continue
				}
				if ty != problem.TypePrefix && !strings.Contains(page, "<code>"+ty+"</code>") {
					t.Errorf("GET %s: not its page: %.300s", ty, page)
				}
				if csp := hdr.Get("Content-Security-Policy"); csp == dashboard.CSP || strings.Contains(csp, "script-src") {
					t.Errorf("GET %s: Content-Security-Policy %q", ty, csp)
				}
				checkSecurityHeaders(t, "GET "+ty, hdr, false)
			}
			for _, p := range []string{"/problems/nope", "/problems/not-found/x", "/problems/%2E%2E"} {
				code, hdr, body := get(p)
				if code != 404 || hdr.Get("Content-Type") != problem.ContentType {
					t.Errorf("GET %s: %d %q %.200s", p, code, hdr.Get("Content-Type"), body)
				}
			}
		})
	}
}
