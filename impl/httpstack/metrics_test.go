package httpstack

import "testing"

// TestRouteLabel: the route label of the HTTP metrics is bounded whatever
// the path sent: templates and the fixed routes stay, the dashboard's
// and Swagger UI's many paths fold into one each, a path no route took is
// "unmatched"; an unknown method is "other".
func TestRouteLabel(t *testing.T) {
	for _, tpl := range []string{"/api/v1/repos/{repoID}/view", "/api/v1/webhooks/github", "/auth/login", "/healthz"} {
		if got := routeLabel(tpl, true); got != tpl {
			t.Errorf("routeLabel(%q, template) = %q", tpl, got)
		}
	}
	for route, want := range map[string]string{
		"":                                 "unmatched",
		"/openapi.json":                    "/openapi.json",
		"/openapi.yaml":                    "/openapi.yaml",
		"/docs":                            "/docs/",
		"/docs/swagger-ui-bundle.js":       "/docs/",
		"/assets/index-abc123.js":          "/assets/",
		"/assets/anything/the/client/sent": "/assets/",
		"/repos/some-repo/stacks/x":        "/",
		"/api/v1/repos/x/view":             "/", // a path, not a template: never kept
		"/":                                "/",
	} {
		if got := routeLabel(route, false); got != want {
			t.Errorf("routeLabel(%q) = %q, want %q", route, got, want)
		}
	}
	for method, want := range map[string]string{"GET": "GET", "DELETE": "DELETE", "PROPFIND": "other", "get": "other"} {
		if got := methodLabel(method); got != want {
			t.Errorf("methodLabel(%q) = %q, want %q", method, got, want)
		}
	}
}
