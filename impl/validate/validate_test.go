package validate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

const routesDoc = `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /things:
    get:
      operationId: listThings
      responses:
        "204": {description: ok}
    post:
      operationId: createThing
      responses:
        "204": {description: ok}
  /things/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    delete:
      operationId: deleteThing
      responses:
        "204": {description: ok}
`

// TestRoutes: HEAD takes the GET operation; Allow lists HEAD with GET; a
// path parameter never matches an empty segment; a trailing slash is a 404
// problem naming the route without it; an unknown path a 404, a
// passthrough path goes on.
func TestRoutes(t *testing.T) {
	v, err := New(loadDoc(t, routesDoc), Options{Passthrough: func(p string) bool { return p == "/docs/" }})
	if err != nil {
		t.Fatal(err)
	}
	var routed *Route
	h := v.Routes(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		routed, _ = RouteFrom(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tc := range []struct {
		method, path string
		status       int
		op, allow    string
		detail       string
	}{
		{"GET", "/things", 204, "listThings", "", ""},
		{"HEAD", "/things", 204, "listThings", "", ""},
		{"HEAD", "/things/x", 405, "", "DELETE", ""},
		{"PUT", "/things", 405, "", "GET, HEAD, POST", ""},
		// Not DELETE /things/{id} with an empty id.
		{"DELETE", "/things", 405, "", "GET, HEAD, POST", ""},
		{"DELETE", "/things//", 404, "", "", ""},
		{"GET", "/things/", 404, "", "", "no such route: /things/ (routes have no trailing slash: /things)"},
		{"POST", "/things/", 404, "", "", "no such route: /things/ (routes have no trailing slash: /things)"},
		{"DELETE", "/things/x/", 404, "", "", "no such route: /things/x/ (routes have no trailing slash: /things/x)"},
		{"GET", "/nothing/", 404, "", "", "no such route: /nothing/"},
		{"GET", "/nothing", 404, "", "", "no such route: /nothing"},
		{"GET", "/docs/", 204, "", "", ""},
	} {
		routed = nil
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.status, tc.allow)
			continue
		}
		if tc.op != "" && (routed == nil || routed.Operation.OperationID != tc.op) {
			t.Errorf("%s %s: routed to %+v, want %s", tc.method, tc.path, routed, tc.op)
		}
		if tc.detail != "" {
			var p struct {
				Detail, Instance string
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Detail != tc.detail || p.Instance != tc.path {
				t.Errorf("%s %s: %s", tc.method, tc.path, rec.Body.String())
			}
		}
	}
}
