package validate

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func loadDoc(t *testing.T, src string) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

const limitsDoc = `openapi: 3.0.3
info: {title: t, version: "1"}
%ROOT%
paths:
  /things:
    post:
      operationId: createThing
%OP%
      requestBody:
        content:
          application/json:
            schema: {type: object}
      responses:
        "204": {description: ok}
    get:
      operationId: listThings
      responses:
        "204": {description: ok}
`

func TestLimitsOf(t *testing.T) {
	for _, tt := range []struct {
		name, root, op string
		ok             bool
		post, get      int64
	}{
		{"both declared", "x-stackd-max-body: 100", "      x-stackd-max-body: 2048", true, 2048, 100},
		{"no default", "", "      x-stackd-max-body: 2048", false, 0, 0},
		{"body without a limit", "x-stackd-max-body: 100", "", false, 0, 0},
		{"zero", "x-stackd-max-body: 100", "      x-stackd-max-body: 0", false, 0, 0},
		{"negative", "x-stackd-max-body: -1", "      x-stackd-max-body: 10", false, 0, 0},
		{"fraction", "x-stackd-max-body: 100", "      x-stackd-max-body: 1.5", false, 0, 0},
		{"string", "x-stackd-max-body: 100", "      x-stackd-max-body: lots", false, 0, 0},
	} {
		src := strings.NewReplacer("%ROOT%", tt.root, "%OP%", tt.op).Replace(limitsDoc)
		l, err := LimitsOf(loadDoc(t, src))
		if !tt.ok {
			if !errors.Is(err, ErrLimits) {
				t.Errorf("%s: want ErrLimits, got %v", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		post := l.For(&Route{Method: "POST", Path: "/things"})
		get := l.For(&Route{Method: "GET", Path: "/things"})
		if post != tt.post || get != tt.get || l.For(nil) != tt.get {
			t.Errorf("%s: post %d get %d outside %d", tt.name, post, get, l.For(nil))
		}
	}
}

// TestBodies runs Bodies behind a real server (read deadlines need a
// connection): bodies within the limit reach the handler whole and are
// kept; larger ones answer 413 whether announced or chunked.
func TestBodies(t *testing.T) {
	doc := loadDoc(t, strings.NewReplacer("%ROOT%", "x-stackd-max-body: 8", "%OP%", "      x-stackd-max-body: 16").Replace(limitsDoc))
	limits, err := LimitsOf(doc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(doc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := v.Routes(Bodies(BodyOptions{Limits: limits})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := BodyFrom(r.Context())
		b, _ := io.ReadAll(r.Body)
		if ok && string(raw.Data) != string(b) {
			http.Error(w, "raw body differs", 500)
			return
		}
		_, _ = w.Write(b)
	})))
	srv := httptest.NewServer(CloseUnread(h))
	defer srv.Close()
	for _, tt := range []struct {
		method  string
		body    string
		chunked bool
		want    int
	}{
		{"POST", strings.Repeat("a", 16), false, 200},
		{"POST", strings.Repeat("a", 16), true, 200},
		{"POST", strings.Repeat("a", 17), false, 413},
		{"POST", strings.Repeat("a", 17), true, 413},
		{"GET", strings.Repeat("a", 8), false, 200},
		{"GET", strings.Repeat("a", 9), false, 413},
		{"GET", strings.Repeat("a", 9), true, 413},
	} {
		var body io.Reader = strings.NewReader(tt.body)
		if tt.chunked {
			body = io.MultiReader(body) // unknown length: sent chunked
		}
		req, _ := http.NewRequest(tt.method, srv.URL+"/things", body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want || tt.want == 200 && string(got) != tt.body || tt.want == 413 && !resp.Close {
			t.Errorf("%s %d bytes (chunked %v): %d close %v %s", tt.method, len(tt.body), tt.chunked, resp.StatusCode, resp.Close, got)
		}
	}
}
