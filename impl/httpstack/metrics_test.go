package httpstack

import "testing"

// TestRouteLabel: the route label of the HTTP metrics is bounded whatever
// the path sent: templates and the fixed routes stay, the dashboard's
// and Swagger UI's many paths fold into one each, no route is
// "unmatched".
func TestRouteLabel(t *testing.T) {
	for route, want := range map[string]string{
		"":                                 "unmatched",
		"/api/v1/repos/{repoID}/view":      "/api/v1/repos/{repoID}/view",
		"/api/v1/webhooks/github":          "/api/v1/webhooks/github",
		"/auth/login":                      "/auth/login",
		"/openapi.json":                    "/openapi.json",
		"/openapi.yaml":                    "/openapi.yaml",
		"/docs":                            "/docs/",
		"/docs/swagger-ui-bundle.js":       "/docs/",
		"/assets/index-abc123.js":          "/assets/",
		"/assets/anything/the/client/sent": "/assets/",
		"/repos/some-repo/stacks/x":        "/",
		"/":                                "/",
	} {
		if got := routeLabel(route); got != want {
			t.Errorf("routeLabel(%q) = %q, want %q", route, got, want)
		}
	}
	for method, want := range map[string]string{"GET": "GET", "DELETE": "DELETE", "PROPFIND": "other", "get": "other"} {
		if got := methodLabel(method); got != want {
			t.Errorf("methodLabel(%q) = %q, want %q", method, got, want)
		}
	}
}
