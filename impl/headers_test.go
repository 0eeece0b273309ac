package impl_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/dashboard"
	"github.com/stackd/stackd/impl/requestid"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// checkSecurityHeaders asserts the headers every response carries.
func checkSecurityHeaders(t *testing.T, what string, h http.Header, hsts bool) {
	t.Helper()
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"X-Frame-Options":        "DENY",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-") {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
	if got := h.Get("Strict-Transport-Security"); (got != "") != hsts || hsts && !strings.HasPrefix(got, "max-age=") {
		t.Errorf("%s: Strict-Transport-Security %q (want it: %v)", what, got, hsts)
	}
	if id := h.Get(requestid.Header); !requestid.Valid(id) {
		t.Errorf("%s: X-Request-ID %q", what, id)
	}
}

// TestSecurityHeadersOnEveryResponse walks answers of every kind — API
// success and errors, the spec, Swagger UI and its assets, redirects,
// /auth/*, the dashboard's shell and assets, the problem type pages, 404,
// 405, 413, 421, CORS
// preflights, the event stream — on a server whose base URL is https
// (HSTS) and on one whose base URL is http (no HSTS).
func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	local := baseConfig(t, dir)
	local.BaseURL = "https://stackd.example"
	local.CORSOrigins = []string{"https://ui.example"}
	oidc := oidcConfig(t, idp, dir) // base URL: the test server, http
	oidc.PublicReads = true         // the event stream is read anonymously below
	for _, p := range []struct {
		name string
		s    *testServer
		hsts bool
	}{
		{"https base URL", startServer(t, local, impl.Options{}), true},
		{"oidc, http base URL", startServer(t, oidc, impl.Options{}), false},
	} {
		t.Run(p.name, func(t *testing.T) {
			s := p.s
			noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for _, rq := range []struct {
				method, path string
				body         string
				hdr          []string
			}{
				{"GET", "/api/v1/repos/local/view", "", nil},
				{"GET", "/api/v1/repos/local/branches/b/diff", "", nil},
				{"GET", "/api/v1/repos/nope/view", "", nil},
				{"GET", "/api/v1/audit?limit=0", "", nil},
				{"POST", "/api/v1/repos/local/sync", "", nil},
				{"DELETE", "/api/v1/repos", "", nil},
				{"GET", "/api/nowhere", "", nil},
				{"GET", "/", "", nil},
				{"GET", "/nowhere", "", nil},
				{"GET", "/r/local/b/feature/login", "", nil},
				{"POST", "/r/local", "", nil},
				{"GET", dashboardAsset(t, "app.js"), "", nil},
				{"GET", "/assets/nope.css", "", nil},
				{"POST", "/api/v1/repos", strings.Repeat(" ", 64<<10), []string{"Content-Type", "application/json"}},
				{"GET", "/openapi.json", "", nil},
				{"GET", "/openapi.yaml", "", nil},
				{"GET", "/docs", "", nil},
				{"GET", "/docs/", "", nil},
				{"GET", "/docs/swagger-ui-bundle.js", "", nil},
				{"GET", "/auth/login", "", nil},
				{"GET", "/auth/callback", "", nil},
				{"POST", "/auth/logout", "", nil},
				{"OPTIONS", "/api/v1/repos/local/sync", "", []string{"Origin", "https://ui.example", "Access-Control-Request-Method", "POST"}},
				{"GET", "/healthz", "", []string{"Host", "evil.example"}},
				{"GET", "/problems/", "", nil},
				{"GET", "/problems/not-found", "", nil},
				{"HEAD", "/problems/remote-not-allowed", "", nil},
				{"GET", "/problems/nope", "", nil},
				{"POST", "/problems/not-found", "", nil},
			} {
				var body io.Reader
				if rq.body != "" {
					body = strings.NewReader(rq.body)
				}
				req, err := http.NewRequest(rq.method, s.srv.URL+rq.path, body)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i+1 < len(rq.hdr); i += 2 {
					if rq.hdr[i] == "Host" {
						req.Host = rq.hdr[i+1]
						continue
					}
					req.Header.Set(rq.hdr[i], rq.hdr[i+1])
				}
				resp, err := noRedirect.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				what := rq.method + " " + rq.path + " (" + resp.Status + ")"
				checkSecurityHeaders(t, what, resp.Header, p.hsts)
				// Swagger UI's policy allows its inline scripts by hash;
				// the dashboard's shell allows this origin's scripts; the
				// rest (the assets included) allows no script.
				csp := resp.Header.Get("Content-Security-Policy")
				switch {
				case strings.HasPrefix(rq.path, "/docs"):
					if !strings.Contains(csp, "script-src 'self' 'sha256-") {
						t.Errorf("%s: Content-Security-Policy %q", what, csp)
					}
				case dashboard.IsAppPath(rq.path):
					if csp != dashboard.CSP {
						t.Errorf("%s: Content-Security-Policy %q, want the dashboard's", what, csp)
					}
				case strings.Contains(csp, "script-src"):
					t.Errorf("%s: Content-Security-Policy %q", what, csp)
				}
			}
			// The event stream: headers arrive with the stream, which
			// flushes through every middleware.
			sctx, cancel := context.WithCancel(ctx(t))
			defer cancel()
			req, _ := http.NewRequestWithContext(sctx, "GET", s.srv.URL+"/api/v1/repos/local/events", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			checkSecurityHeaders(t, "event stream", resp.Header, p.hsts)
			br := bufio.NewReader(resp.Body)
			for i := 0; ; i++ {
				line, err := br.ReadString('\n')
				if err != nil || i == 5 {
					t.Fatalf("event stream: no connected event: %q %v", line, err)
				}
				if strings.HasPrefix(line, "event: connected") {
					break
				}
			}
		})
	}
}

// TestRequestIDs: a sane incoming X-Request-ID is kept, anything else is
// replaced by a generated one; the id is answered in X-Request-ID, written
// in the access log, and carried by every problem, whoever wrote it (the
// router, validation, the gate, the body limit, the Host check, a handler,
// a handler's problem with headers, the error hook, which logs it too).
func TestRequestIDs(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	cfg := baseConfig(t, dir)
	cfg.WebhookSecret = "s3cret"
	s := startServer(t, cfg, impl.Options{})
	gated := startServer(t, oidcConfig(t, idp, dir), impl.Options{})

	// Kept or replaced.
	for _, tc := range []struct{ in, want string }{
		{"abc-123_x.y:z", "abc-123_x.y:z"},
		{strings.Repeat("a", requestid.MaxLen), strings.Repeat("a", requestid.MaxLen)},
		{strings.Repeat("a", requestid.MaxLen+1), ""},
		{"two words", ""},
		{"<script>", ""},
		{"id\"quote", ""},
		{"é", ""},
		{"", ""},
	} {
		var hdr []string
		if tc.in != "" {
			hdr = []string{requestid.Header, tc.in}
		}
		code, h, body := s.do("GET", "/api/v1/repos/nope/view", nil, hdr...)
		got := h.Get(requestid.Header)
		if tc.want != "" && got != tc.want || tc.want == "" && !generatedID.MatchString(got) {
			t.Errorf("incoming %q: X-Request-ID %q", tc.in, got)
		}
		p := bodyOf(t, body)
		if code != 404 || p.RequestId == nil || *p.RequestId != got {
			t.Errorf("incoming %q: %d, problem requestId %v, header %q", tc.in, code, p.RequestId, got)
		}
	}
	_, h1, _ := s.do("GET", "/healthz", nil)
	_, h2, _ := s.do("GET", "/healthz", nil)
	if a, b := h1.Get(requestid.Header), h2.Get(requestid.Header); a == b || !generatedID.MatchString(a) {
		t.Fatalf("generated ids %q and %q", a, b)
	}

	// Every problem carries the id of its request.
	for _, tc := range []struct {
		name         string
		s            *testServer
		method, path string
		body         string
		hdr          []string
		status       int
	}{
		{"router 404", s, "GET", "/api/nowhere", "", nil, 404},
		{"dashboard 404", s, "GET", "/assets/nowhere.js", "", nil, 404},
		{"dashboard 405", s, "POST", "/r/local", "", nil, 405},
		{"router 405", s, "DELETE", "/api/v1/repos", "", nil, 405},
		{"validation 400", s, "GET", "/api/v1/audit?limit=0", "", nil, 400},
		{"validation 415", s, "POST", "/api/v1/repos", "x", []string{"Content-Type", "text/plain"}, 415},
		{"gate 401", gated, "POST", "/api/v1/repos/local/sync", "", nil, 401},
		{"gate csrf 403", s, "POST", "/api/v1/repos/local/sync", "", []string{"Origin", "https://evil.example"}, 403},
		{"body 413", s, "POST", "/api/v1/repos", strings.Repeat(" ", 64<<10), []string{"Content-Type", "application/json"}, 413},
		{"host 421", s, "GET", "/healthz", "", []string{"Host", "evil.example"}, 421},
		{"handler 404", s, "GET", "/api/v1/repos/local/branches/nope", "", nil, 404},
		{"handler 400", s, "POST", "/api/v1/repos", `{"url":"ftp://x.invalid/y.git"}`, []string{"Content-Type", "application/json"}, 400},
		{"handler 401 with headers", s, "POST", "/api/v1/webhooks/github", `{}`, []string{"Content-Type", "application/json", "X-GitHub-Event", "push"}, 401},
		{"auth route 404", s, "GET", "/auth/login", "", nil, 404},
	} {
		const id = "trace-" + "0123456789"
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, _ := http.NewRequest(tc.method, tc.s.srv.URL+tc.path, body)
		req.Header.Set(requestid.Header, id)
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			if tc.hdr[i] == "Host" {
				req.Host = tc.hdr[i+1]
			} else {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		p := bodyOf(t, string(raw))
		if resp.StatusCode != tc.status || p.RequestId == nil || *p.RequestId != id || resp.Header.Get(requestid.Header) != id {
			t.Errorf("%s: %d, requestId %v, header %q: %s", tc.name, resp.StatusCode, p.RequestId, resp.Header.Get(requestid.Header), raw)
		}
	}
	if !strings.Contains(s.logs.String(), "requestId=trace-0123456789") {
		t.Fatal("the access log has no request id")
	}

	// The error hook: the store is gone, the audit log fails. The answer
	// is the generic 500 with the id, which the log line has too.
	s.app.Close()
	code, h, body := s.do("GET", "/api/v1/audit", nil, requestid.Header, "hook-1")
	p := bodyOf(t, body)
	if code != 500 || p.RequestId == nil || *p.RequestId != "hook-1" || h.Get(requestid.Header) != "hook-1" {
		t.Fatalf("error hook: %d %s", code, body)
	}
	var hookLine string
	for _, l := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(l, `msg="request failed"`) {
			hookLine = l
		}
	}
	if !strings.Contains(hookLine, "requestId=hook-1") || strings.Contains(body, "database") {
		t.Fatalf("error hook log line %q, body %s", hookLine, body)
	}
}
