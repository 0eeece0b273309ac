package httpstack

import (
	"regexp"
	"testing"

	"github.com/stackd/stackd/impl/dashboard"
)

// TestServerPathsAreNotAppPaths: no route of the contract, nor any route
// outside it but the dashboard's, is an app path, so a route added to
// openapi.yaml outside the server's prefixes (which would answer the
// dashboard's shell where it should 404 as a problem) fails here; and the
// app paths and assets pass the validator (outsideContract).
func TestServerPathsAreNotAppPaths(t *testing.T) {
	doc, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	paths := doc.Paths.InMatchingOrder()
	if len(paths) < 10 {
		t.Fatalf("the spec has %d paths", len(paths))
	}
	paths = append(paths, "/openapi.yaml", "/openapi.json", "/docs", "/docs/", "/docs/swagger-ui.css",
		"/auth/login", "/auth/callback", "/auth/logout")
	for _, p := range paths {
		concrete := param.ReplaceAllString(p, "x")
		if dashboard.IsAppPath(concrete) {
			t.Errorf("%s is a server route, and an app path", p)
		}
		if dashboard.IsAppPath(concrete + "/nope") {
			t.Errorf("%s/nope is under a server route, and an app path", p)
		}
	}
	for _, p := range []string{"/", "/r/x", "/r/x/b/feature/login", "/r/x/syncs", "/nope", "/assets/app.js"} {
		if !outsideContract(p) {
			t.Errorf("%s does not pass the validator", p)
		}
	}
	for _, p := range []string{"/api/v1/nope", "/healthz/x", "/assets"} {
		if outsideContract(p) {
			t.Errorf("%s passes the validator outside the contract", p)
		}
	}
}
