package impl_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/store/pgtest"
)

// rawCall is a request as sent on the wire (no redirects followed, event
// streams not read).
type rawCall struct {
	method, path, body string
	hdr                []string
}

func (s *testServer) raw(t *testing.T, c rawCall) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, s.srv.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(c.hdr); i += 2 {
		if strings.EqualFold(c.hdr[i], "Host") {
			req.Host = c.hdr[i+1]
			continue
		}
		req.Header.Set(c.hdr[i], c.hdr[i+1])
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, resp.Header, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// onWire sends the request line and headers of method path on a raw
// connection, then extra (a partial body, or nothing), and reads the answer
// without sending more.
func (s *testServer) onWire(t *testing.T, method, path, headers, extra string) (int, http.Header, string) {
	t.Helper()
	addr := s.srv.Listener.Addr().String()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute)) // guard only
	if _, err := io.WriteString(conn, method+" "+path+" HTTP/1.1\r\nHost: "+addr+"\r\n"+headers+"\r\n"+extra); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: no answer: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// checkProblem fails unless an answer is an RFC 9457 problem of status code
// whose instance is path (escaped, without the query; for a 400, which may
// refuse a path parameter, path or the route template path matches) and
// that carries a request id; it returns the problem.
func checkProblem(t *testing.T, what string, code int, hdr http.Header, body, path string) client.Problem {
	t.Helper()
	if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: %d with Content-Type %q: %.200s", what, code, ct, body)
		return client.Problem{}
	}
	var p client.Problem
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Errorf("%s: %d not a problem: %.200s", what, code, body)
		return p
	}
	if p.Status != code || p.Title != http.StatusText(code) || !strings.HasPrefix(p.Type, "/problems/") {
		t.Errorf("%s: %d: problem %+v", what, code, p)
	}
	if p.Instance == nil || (*p.Instance != path && !(code == http.StatusBadRequest && templateOf(*p.Instance, path))) {
		t.Errorf("%s: %d: instance %v, want %q", what, code, p.Instance, path)
	}
	if p.RequestId == nil || *p.RequestId == "" || *p.RequestId != hdr.Get("X-Request-ID") {
		t.Errorf("%s: %d: requestId %v, header %q", what, code, p.RequestId, hdr.Get("X-Request-ID"))
	}
	return p
}

// templateOf reports whether tmpl is a path template with parameters
// (/api/v1/repos/{repoID}/view) that path matches.
func templateOf(tmpl, path string) bool {
	if !strings.Contains(tmpl, "{") {
		return false
	}
	re := regexp.MustCompile(`\\\{[A-Za-z]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`)
	return regexp.MustCompile("^" + re + "$").MatchString(path)
}

// TestEveryErrorIsAProblem: unknown API and server paths, trailing
// slashes, other methods, files Swagger UI or the dashboard does not have:
// every error is a problem+json whose instance is the request's path (the
// route's template for a refused path parameter). A trailing slash is a
// 404 that names the route without it (no redirect: a POST could not
// follow one). (Any other path is the dashboard's and
// answers its shell: TestDashboardRoutes.)
func TestEveryErrorIsAProblem(t *testing.T) {
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{})
	for _, tc := range []struct {
		method, path string
		status       int
		typ, detail  string
		allow        string
	}{
		{"GET", "/api/nope", 404, "/problems/not-found", "no such route: /api/nope", ""},
		{"GET", "/openapi.xml", 404, "/problems/not-found", "no such route: /openapi.xml", ""},
		{"GET", "/healthz/x", 404, "/problems/not-found", "no such route: /healthz/x", ""},
		{"GET", "/auth/nope", 404, "/problems/not-found", "no such route: /auth/nope", ""},
		{"GET", "/assets", 404, "/problems/not-found", "no such route: /assets", ""},
		{"GET", "/assets/nope.js", 404, "/problems/not-found", "no such asset: /assets/nope.js", ""},
		{"GET", "/assets/app.0123456789abcdef.js", 404, "/problems/not-found", "no such asset: /assets/app.0123456789abcdef.js", ""},
		{"HEAD", "/assets/nope.js", 404, "", "", ""},
		{"GET", "/api", 404, "/problems/not-found", "", ""},
		{"GET", "/api/", 404, "/problems/not-found", "", ""},
		{"GET", "/api/v2/repos", 404, "/problems/not-found", "", ""},
		{"GET", "/healthz/", 404, "/problems/not-found", "no such route: /healthz/ (routes have no trailing slash: /healthz)", ""},
		{"HEAD", "/healthz/", 404, "", "", ""},
		{"GET", "/readyz/x", 404, "/problems/not-found", "", ""},
		{"GET", "/api/v1/repos/", 404, "/problems/not-found", "no such route: /api/v1/repos/ (routes have no trailing slash: /api/v1/repos)", ""},
		{"POST", "/api/v1/repos/", 404, "/problems/not-found", "", ""},
		{"GET", "/api/v1/repos/local/", 404, "/problems/not-found", "", ""},
		{"GET", "/api/v1/repos/local/view/", 404, "/problems/not-found", "", ""},
		{"GET", "/api/v1/repos/local/branches/", 404, "/problems/not-found", "", ""},
		{"GET", "/api/v1/repos/local/branches/b/", 404, "/problems/not-found", "", ""},
		{"POST", "/api/v1/repos/local/sync/", 404, "/problems/not-found", "no such route: /api/v1/repos/local/sync/ (routes have no trailing slash: /api/v1/repos/local/sync)", ""},
		{"GET", "/api/v1/repos/nope/view/", 404, "/problems/not-found", "", ""},
		{"GET", "/auth/login/", 404, "/problems/not-found", "", ""},
		{"GET", "/openapi.json/", 404, "/problems/not-found", "no such route: /openapi.json/ (routes have no trailing slash: /openapi.json)", ""},
		{"GET", "/docs/nope.js", 404, "/problems/not-found", "no such file: /docs/nope.js", ""},
		{"GET", "/api/v1/repos/%2F/view", 400, "/problems/bad-request", "", ""},
		{"GET", "/api/v1/repos//view", 404, "/problems/not-found", "no such route: /api/v1/repos//view", ""},
		{"PUT", "/api/v1/repos", 405, "/problems/method-not-allowed", "", "GET, HEAD, POST"},
		{"POST", "/openapi.json", 405, "/problems/method-not-allowed", "", "GET, HEAD"},
		{"DELETE", "/openapi.yaml", 405, "/problems/method-not-allowed", "", "GET, HEAD"},
		{"PUT", "/docs/", 405, "/problems/method-not-allowed", "", "GET, HEAD"},
		{"POST", "/docs", 405, "/problems/method-not-allowed", "", "GET, HEAD"},
		{"POST", "/", 405, "/problems/method-not-allowed", "POST is not allowed on /", "GET, HEAD"},
		{"PUT", "/r/local/b/feature/login", 405, "/problems/method-not-allowed", "", "GET, HEAD"},
		{"DELETE", "/assets/app.js", 405, "/problems/method-not-allowed", "", "GET, HEAD"},
		{"DELETE", "/api/v1/repos/local/view", 405, "/problems/method-not-allowed", "", "GET, HEAD"},
		{"OPTIONS", "/api/v1/repos", 405, "/problems/method-not-allowed", "", "GET, HEAD, POST"},
		{"GET", "/api/v1/repos/local/sync", 405, "/problems/method-not-allowed", "", "POST"},
		{"HEAD", "/api/v1/repos/local/sync", 405, "", "", "POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, hdr, body := s.raw(t, rawCall{method: tc.method, path: tc.path})
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			if got := hdr.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			if tc.method == "HEAD" {
				if body != "" || hdr.Get("Content-Type") != "application/problem+json" {
					t.Errorf("HEAD: body %q, Content-Type %q", body, hdr.Get("Content-Type"))
				}
				return
			}
			p := checkProblem(t, tc.path, code, hdr, body, tc.path)
			if p.Type != tc.typ {
				t.Errorf("type %q, want %q", p.Type, tc.typ)
			}
			if tc.detail != "" && (p.Detail == nil || *p.Detail != tc.detail) {
				t.Errorf("detail %v, want %q", p.Detail, tc.detail)
			}
		})
	}
	// /docs is the one redirect, to /docs/.
	if code, hdr, _ := s.raw(t, rawCall{method: "GET", path: "/docs"}); code != 301 || hdr.Get("Location") != "/docs/" {
		t.Errorf("/docs: %d %q", code, hdr.Get("Location"))
	}
}

// TestHeadOnEveryGetRoute: HEAD on every GET operation of the contract (and
// the routes outside it) answers what GET answers, headers included, without
// a body; in every posture, since HEAD takes GET's access rules.
func TestHeadOnEveryGetRoute(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	ops, _ := specOperations(t)
	volatile := []string{"Date", "X-Request-Id"}
	// Different on every request, so only their presence is compared (the
	// sign-in redirect's state and nonce).
	perRequest := []string{"Location", "Set-Cookie"}
	for _, tc := range []struct {
		name string
		s    *testServer
	}{
		{"local", startServer(t, baseConfig(t, dir), impl.Options{})},
		{"oidc", startServer(t, oidcConfig(t, idp, dir), impl.Options{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			paths := []string{"/openapi.yaml", "/openapi.json", "/docs/", "/docs/swagger-ui.css", "/api/v1/repos/local/view?x=1",
				"/", "/r/local/b/feature/login", "/assets/app.js", dashboardAsset(t, "app.js")}
			for _, o := range ops {
				if o.method == "GET" {
					paths = append(paths, o.path)
				}
			}
			for _, p := range paths {
				// The same Accept-Encoding both ways (Go's transport asks
				// GET for gzip on its own, not HEAD).
				gc, gh, _ := s.raw(t, rawCall{method: "GET", path: p, hdr: []string{"Accept-Encoding", "gzip"}})
				hc, hh, hb := s.raw(t, rawCall{method: "HEAD", path: p, hdr: []string{"Accept-Encoding", "gzip"}})
				if hc == 405 || hc != gc {
					t.Errorf("HEAD %s: %d, GET: %d", p, hc, gc)
					continue
				}
				if hb != "" {
					t.Errorf("HEAD %s has a body: %.100s", p, hb)
				}
				for k := range gh {
					switch {
					case slices.Contains(volatile, k):
						continue
					case slices.Contains(perRequest, k):
						if len(hh.Values(k)) != len(gh.Values(k)) {
							t.Errorf("%s: header %s: GET %d, HEAD %d", p, k, len(gh.Values(k)), len(hh.Values(k)))
						}
						continue
					case k == "Content-Length" && hh.Get(k) == "":
						continue // RFC 9110, 8.6: HEAD may leave it out, never differ
					case k == "Accept-Ranges" && strings.HasPrefix(p, "/docs/"):
						continue // Swagger UI's file server (statigz) leaves it out on HEAD
					}
					if !slices.Equal(gh.Values(k), hh.Values(k)) {
						t.Errorf("%s: header %s: GET %q, HEAD %q", p, k, gh.Values(k), hh.Values(k))
					}
				}
				for k := range hh {
					if _, ok := gh[k]; !ok && !slices.Contains(volatile, k) {
						t.Errorf("%s: HEAD has %s, GET has not", p, k)
					}
				}
			}
		})
	}
}

// problemExamples returns the types of the examples of the response an
// operation declares for code (nil when it declares none).
func problemExamples(op *openapi3.Operation, code int) (declared bool, types []string) {
	r := op.Responses.Value(strconv.Itoa(code))
	if r == nil || r.Value == nil {
		return false, nil
	}
	mt := r.Value.Content.Get("application/problem+json")
	if mt == nil {
		return true, nil
	}
	for _, ex := range mt.Examples {
		if ex == nil || ex.Value == nil {
			continue
		}
		if m, ok := ex.Value.Value.(map[string]any); ok {
			if typ, ok := m["type"].(string); ok {
				types = append(types, typ)
			}
		}
	}
	return true, types
}

// documentedProblems reads docs/problems.md's table: type -> statuses.
func documentedProblems(t *testing.T) map[string][]int {
	t.Helper()
	raw, err := os.ReadFile("../docs/problems.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	row := regexp.MustCompile("(?m)^\\| `(/problems/[a-z-]+)` \\| ([0-9]{3}) \\|")
	for _, m := range row.FindAllStringSubmatch(string(raw), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = append(out[m[1]], n)
	}
	return out
}

// answers collects what servers answered, by operation.
type answers struct {
	mu   sync.Mutex
	seen map[string]map[string]bool // op id -> "status type"
}

func (a *answers) add(op string, code int, typ string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen == nil {
		a.seen = map[string]map[string]bool{}
	}
	if a.seen[op] == nil {
		a.seen[op] = map[string]bool{}
	}
	a.seen[op][strconv.Itoa(code)+" "+typ] = true
}

// TestEveryAnswerDeclared provokes every status the server can send on each
// operation of the contract: every posture (local, read-only, OIDC private
// with no, bad, outsider's and valid tokens), a foreign Host (421), a foreign
// Origin (CSRF), rate limits (429), bodies over the limit (413) and stalled
// (408), broken parameters (400), unknown resources (404), wrong media
// types (415), a duplicate (409), a dead upstream (502), a timeout (504),
// shutdown (503) and readiness (503). Each answer must be declared for its
// operation in openapi.yaml; a problem must be problem+json with the
// instance and request id set, its type must be the type of one of the
// declared response's examples, and docs/problems.md must list it with
// that status.
func TestEveryAnswerDeclared(t *testing.T) {
	ops, _ := specOperations(t)
	byID := map[string]*openapi3.Operation{}
	for _, o := range ops {
		byID[o.id] = o.route.Operation
	}
	var got answers
	// call sends o (its path rewritten by edit) and records the answer.
	call := func(t *testing.T, s *testServer, o specOp, edit func(*rawCall)) (int, http.Header, string) {
		t.Helper()
		c := rawCall{method: o.method, path: o.path, body: o.body}
		if o.body != "" {
			c.hdr = []string{"Content-Type", "application/json"}
		}
		if o.id == "createRepo" {
			c.body = `{"url":"file:///nonexistent/x.git"}` // refused without network access
		}
		if edit != nil {
			edit(&c)
		}
		code, hdr, body := s.raw(t, c)
		record(t, &got, o.id, c.path, code, hdr, body)
		return code, hdr, body
	}

	idp := startIDP(t)
	dir := stackRepo(t).Dir
	t.Run("postures", func(t *testing.T) {
		ro := baseConfig(t, dir)
		ro.ReadOnly = true
		oidcRO := oidcConfig(t, idp, dir)
		oidcRO.ReadOnly = true
		servers := []*testServer{
			startServer(t, baseConfig(t, dir), impl.Options{}),
			startServer(t, ro, impl.Options{}),
			startServer(t, oidcConfig(t, idp, dir), impl.Options{}),
			startServer(t, oidcRO, impl.Options{}),
		}
		tok := idToken(t, idp, nil)
		outsider := idToken(t, idp, map[string]any{"email": "someone@elsewhere.example"})
		for _, s := range servers {
			for _, o := range ops {
				call(t, s, o, nil)
				for _, h := range [][]string{
					{"Authorization", "Bearer " + tok},
					{"Authorization", "Bearer garbage"},
					{"Authorization", "Basic eDp5"},
					{"Authorization", "Bearer " + outsider},
					{"Authorization", "Bearer " + tok, "Origin", "https://evil.example"},
					{"Origin", "https://evil.example"},
					{"Cookie", auth.SessionCookie + "=stale"},
					{"Host", "rebind.example"},
				} {
					call(t, s, o, func(c *rawCall) { c.hdr = append(c.hdr, h...) })
				}
			}
		}
	})

	t.Run("parameters and bodies", func(t *testing.T) {
		cfg := baseConfig(t, dir)
		cfg.WebhookSecret = "s3cret"
		s := startServer(t, cfg, impl.Options{BodyTimeout: 50 * time.Millisecond})
		for _, o := range ops {
			for _, edit := range []func(*rawCall){
				func(c *rawCall) { c.path = strings.Replace(c.path, "/repos/local", "/repos/nope", 1) },
				func(c *rawCall) { c.path = strings.Replace(c.path, "/repos/local", "/repos/-bad-", 1) },
				func(c *rawCall) { c.path = strings.Replace(c.path, "/branches/b", "/branches/a..b", 1) },
				func(c *rawCall) { c.path = strings.Replace(c.path, "/branches/b", "/branches/zzz", 1) },
				func(c *rawCall) { c.path = strings.Replace(c.path, "/stacks/a", "/stacks/-x", 1) },
				func(c *rawCall) { c.path = strings.Replace(c.path, "/stacks/a", "/stacks/zzz", 1) },
				func(c *rawCall) { c.path = strings.Replace(c.path, "/syncs/1", "/syncs/abc", 1) },
				func(c *rawCall) { c.path = strings.Replace(c.path, "/syncs/1", "/syncs/999", 1) },
				func(c *rawCall) { c.path += "?wait=perhaps&limit=0&return=" + strings.Repeat("x", 3000) },
				func(c *rawCall) { c.body, c.hdr = "{not json", []string{"Content-Type", "application/json"} },
				func(c *rawCall) { c.body, c.hdr = `{"url":5}`, []string{"Content-Type", "application/json"} },
				func(c *rawCall) { c.body, c.hdr = "x", []string{"Content-Type", "text/plain"} },
				func(c *rawCall) {
					c.body, c.hdr = `{}`, []string{"Content-Type", "application/json", "X-Hub-Signature-256", "sha256=00"}
				},
			} {
				call(t, s, o, edit)
			}
			// Over the limit, by Content-Length (nothing is read), and
			// a body that stalls.
			for _, wire := range [][2]string{
				{"Content-Type: application/json\r\nContent-Length: 2000000\r\n", ""},
				{"Content-Type: application/json\r\nContent-Length: 100\r\n", `{"url":`},
			} {
				code, hdr, body := s.onWire(t, o.method, o.path, wire[0], wire[1])
				record(t, &got, o.id, o.path, code, hdr, body)
			}
		}
	})

	t.Run("rate limits", func(t *testing.T) {
		s := startServer(t, baseConfig(t, dir), impl.Options{
			Rate:     auth.RateLimit{PerSecond: 0.0001, Burst: 1},
			SyncRate: auth.RateLimit{PerSecond: 0.0001, Burst: 1},
		})
		for _, o := range ops {
			call(t, s, o, nil)
		}
	})

	t.Run("mirrors", func(t *testing.T) {
		up := newUpstream(t, "acme/edge.git")
		cf := &countingFetch{}
		cfg := mirrorConfig(t)
		cfg.SyncTimeout = time.Second
		var short atomic.Bool
		s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch, ShortOfMemory: short.Load})
		createRepo, syncRepo := specOp{id: "createRepo", method: "POST", path: "/api/v1/repos"}, specOp{id: "syncRepo", method: "POST", path: "/api/v1/repos/edge/sync"}
		body := func(u string) func(c *rawCall) {
			return func(c *rawCall) { c.body, c.hdr = `{"url":"`+u+`"}`, []string{"Content-Type", "application/json"} }
		}
		if code, _, b := call(t, s, createRepo, body(up.url)); code != 201 {
			t.Fatalf("onboarding: %d %s", code, b)
		}
		if code, _, b := call(t, s, createRepo, body(up.url)); code != 409 {
			t.Fatalf("onboarding twice: %d %s", code, b)
		}
		if code, _, b := call(t, s, createRepo, body("git://127.0.0.1:1/nothing.git")); code != 502 {
			t.Fatalf("onboarding a dead upstream: %d %s", code, b)
		}
		cf.set(make(chan struct{}), nil) // never released: the run times out
		if code, _, b := call(t, s, syncRepo, nil); code != 504 {
			t.Fatalf("a sync that times out: %d %s", code, b)
		}
		cf.set(nil, nil)
		if err := os.RemoveAll(up.bare); err != nil {
			t.Fatal(err)
		}
		if code, _, b := call(t, s, syncRepo, nil); code != 502 {
			t.Fatalf("a sync of a vanished upstream: %d %s", code, b)
		}
		// Short of memory: no new fetch starts.
		short.Store(true)
		if code, _, b := call(t, s, syncRepo, nil); code != 503 {
			t.Fatalf("a sync while short of memory: %d %s", code, b)
		}
		if code, _, b := call(t, s, createRepo, body("git://127.0.0.1:1/third.git")); code != 503 {
			t.Fatalf("onboarding while short of memory: %d %s", code, b)
		}
		short.Store(false)
		// Shutdown: the refresher closes under a waiting sync and a
		// waiting onboarding, both held before any network access.
		hold, started := make(chan struct{}), make(chan struct{}, 2)
		cf.set(hold, started)
		answered := make(chan int, 2)
		go func() { code, _, _ := call(t, s, syncRepo, nil); answered <- code }()
		go func() {
			code, _, _ := call(t, s, createRepo, body("git://127.0.0.1:1/other.git"))
			answered <- code
		}()
		<-started
		<-started
		s.app.Refresh().Close()
		for range 2 {
			if code := <-answered; code != 503 {
				t.Fatalf("at shutdown: %d", code)
			}
		}
	})

	t.Run("readiness", func(t *testing.T) {
		up := newUpstream(t, "acme/late.git")
		cfg := mirrorConfig(t)
		cfg.Repos = append(cfg.Repos, config.RepoConfig{ID: "late", URL: up.url})
		s := startServerNoStart(t, cfg, impl.Options{})
		if code, _, b := call(t, s, specOp{id: "getReady", method: "GET", path: "/readyz"}, nil); code != 503 {
			t.Fatalf("readyz before the first clone: %d %s", code, b)
		}
	})

	t.Run("database down", func(t *testing.T) {
		// A server on PostgreSQL, signed in; then the database stops:
		// everything a signed-in browser asks needs its session (and
		// sign-in and sign-out need the database too).
		c := pgtest.Start(t)
		cfg := oidcConfig(t, idp, dir)
		cfg.DatabaseURL, cfg.AllowLocalWithDatabase, cfg.WebhookSecret = c.NewDatabase(t), true, "s3cret"
		s := startServer(t, cfg, impl.Options{})
		cookie := signIn(t, s)
		c.Stop(t)
		for _, o := range ops {
			call(t, s, o, func(c *rawCall) {
				c.hdr = append(c.hdr, "Cookie", auth.SessionCookie+"="+cookie, "X-Stackd-CSRF", "1")
			})
		}
		jar, _ := cookiejar.New(nil)
		resp, err := (&http.Client{Jar: jar}).Get(s.srv.URL + "/auth/login")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Request.URL.Path != "/auth/callback" || resp.StatusCode != 503 {
			t.Fatalf("sign-in with the database down: %s %d %s", resp.Request.URL.Path, resp.StatusCode, body)
		}
		record(t, &got, "authCallback", resp.Request.URL.Path, resp.StatusCode, resp.Header, string(body))
	})

	// What was seen must be declared, with an example of its type, and
	// documented.
	documented := documentedProblems(t)
	for id, seen := range got.seen {
		op := byID[id]
		var list []string
		for k := range seen {
			list = append(list, k)
		}
		slices.Sort(list)
		for _, k := range list {
			code, typ, _ := strings.Cut(k, " ")
			n, _ := strconv.Atoi(code)
			declared, types := problemExamples(op, n)
			switch {
			case !declared:
				t.Errorf("%s answers %s, not declared in openapi.yaml", id, k)
			case typ != "" && !slices.Contains(types, typ):
				t.Errorf("%s answers %s; the declared %s response has examples of %v", id, k, code, types)
			case typ != "" && !slices.Contains(documented[typ], n):
				t.Errorf("%s answers %s; docs/problems.md does not list %s with %s", id, k, typ, code)
			}
		}
		t.Logf("%s: %v", id, list)
	}
	for _, o := range ops {
		if got.seen[o.id] == nil {
			t.Errorf("%s was never called", o.id)
		}
	}
}

// record checks one answer (a problem must be one, with instance and
// request id) and adds it to got.
func record(t *testing.T, got *answers, op, path string, code int, hdr http.Header, body string) {
	t.Helper()
	typ := ""
	if code >= 400 {
		p, _, _ := strings.Cut(path, "?")
		if u, err := url.Parse(p); err == nil {
			p = u.EscapedPath()
		}
		typ = checkProblem(t, op+" "+path, code, hdr, body, p).Type
	}
	got.add(op, code, typ)
}

// TestFailedSyncNamesTheSync: a synchronous sync that runs and fails (502,
// 504) answers a problem with the sync's id (syncId) and its Location,
// where the failed run is found.
func TestFailedSyncNamesTheSync(t *testing.T) {
	up := newUpstream(t, "acme/named.git")
	cf := &countingFetch{}
	cfg := mirrorConfig(t)
	cfg.SyncTimeout = time.Second
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	onboard(t, s, up.url)

	cf.set(make(chan struct{}), nil) // never released: the run times out
	timedOut, err := s.c.SyncRepoWithResponse(ctx(t), "named", nil)
	if err != nil || timedOut.ApplicationproblemJSON504 == nil {
		t.Fatalf("timeout: %v %d %s", err, timedOut.StatusCode(), timedOut.Body)
	}
	cf.set(nil, nil)
	if err := os.RemoveAll(up.bare); err != nil {
		t.Fatal(err)
	}
	fetchFailed, err := s.c.SyncRepoWithResponse(ctx(t), "named", nil)
	if err != nil || fetchFailed.ApplicationproblemJSON502 == nil {
		t.Fatalf("fetch failure: %v %d %s", err, fetchFailed.StatusCode(), fetchFailed.Body)
	}
	for _, tc := range []struct {
		name  string
		p     *client.Problem
		hdr   http.Header
		typ   string
		inErr string
	}{
		{"504", timedOut.ApplicationproblemJSON504, timedOut.HTTPResponse.Header, "/problems/timeout", "timed out"},
		{"502", fetchFailed.ApplicationproblemJSON502, fetchFailed.HTTPResponse.Header, "/problems/fetch-failed", "fetch"},
	} {
		p := tc.p
		if p.Type != tc.typ || p.SyncId == nil || p.Instance == nil || *p.Instance != "/api/v1/repos/named/sync" {
			t.Fatalf("%s: problem %+v", tc.name, p)
		}
		loc := tc.hdr.Get("Location")
		if loc != "/api/v1/repos/named/syncs/"+*p.SyncId {
			t.Fatalf("%s: Location %q, syncId %s", tc.name, loc, *p.SyncId)
		}
		code, _, body := s.do("GET", loc, nil)
		var res client.SyncResult
		if code != 200 || json.Unmarshal([]byte(body), &res) != nil {
			t.Fatalf("%s: GET %s: %d %s", tc.name, loc, code, body)
		}
		if res.Id != *p.SyncId || res.State != client.SyncResultStateFailed || res.Error == nil || !strings.Contains(*res.Error, tc.inErr) ||
			p.Detail == nil || *p.Detail != *res.Error {
			t.Fatalf("%s: the sync at Location is %+v; the problem says %v", tc.name, res, p.Detail)
		}
	}
	if *timedOut.ApplicationproblemJSON504.SyncId == *fetchFailed.ApplicationproblemJSON502.SyncId {
		t.Fatal("two failed syncs, one id")
	}
}

// TestClientGoneDuringWaitingSync: a client that goes away while its sync
// waits for the run is logged at info level with status 499 (no error, no
// 500), and the run, shared with another waiting client, goes on and
// succeeds for that client.
func TestClientGoneDuringWaitingSync(t *testing.T) {
	hold, started := make(chan struct{}), make(chan struct{}, 4)
	var armed atomic.Bool // the first read, in impl.New, is not held
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{BeforeRefresh: func(ctx context.Context, _ string, _ refresh.Mode) error {
		if !armed.Load() {
			return nil
		}
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-hold:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	armed.Store(true)

	// The first sync starts the run, which is held.
	goneCtx, leave := context.WithCancel(context.Background())
	goneDone := make(chan error, 1)
	go func() {
		_, err := s.c.SyncRepoWithResponse(goneCtx, "local", nil)
		goneDone <- err
	}()
	<-started
	// A second client joins: it waits on the follow-up run. The first
	// client goes away; its handler returns while the run is held.
	stay := make(chan *client.SyncRepoResponse, 1)
	go func() {
		resp, err := s.c.SyncRepoWithResponse(context.Background(), "local", nil)
		if err != nil {
			t.Errorf("the staying client: %v", err)
		}
		stay <- resp
	}()
	leave()
	if err := <-goneDone; err == nil {
		t.Fatal("the cancelled request did not fail on the client side")
	}
	waitLog(t, s, "client went away while waiting")
	close(hold)
	resp := <-stay
	if resp == nil || resp.JSON200 == nil || resp.JSON200.State != client.SyncResultStateSucceeded {
		t.Fatalf("the staying client: %+v", resp)
	}
	// The run the first client left finished as well.
	list, _ := s.c.ListSyncsWithResponse(ctx(t), "local", nil)
	for _, res := range *list.JSON200 {
		if res.Trigger == client.Manual && res.State != client.SyncResultStateSucceeded {
			t.Errorf("a manual run ended %s: %v", res.State, res.Error)
		}
	}
	logs := s.logs.String()
	line := lineWith(logs, "client went away while waiting")
	if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "status=499") {
		t.Errorf("log line: %s", line)
	}
	if strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "status=500") {
		t.Errorf("an error was logged:\n%s", logs)
	}
}

// waitLog waits until the server's log has a line containing text: the
// handler of a request whose client left logs when it returns, which the
// client cannot observe otherwise. The log writer signals each write.
func waitLog(t *testing.T, s *testServer, text string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		wrote := s.logs.wrote()
		if strings.Contains(s.logs.String(), text) {
			return
		}
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("no log line with %q:\n%s", text, s.logs.String())
		}
	}
}

func lineWith(logs, text string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, text) {
			return l
		}
	}
	return ""
}

// TestSyncAtShutdown: when the refresher shuts down under a waiting sync,
// the answer is 503 /problems/unavailable with Retry-After, not a 500.
// (A run that was still queued fails with refresh.ErrClosed: see
// TestShutdownErrors.)
func TestSyncAtShutdown(t *testing.T) {
	started := make(chan struct{}, 1)
	var armed atomic.Bool
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{BeforeRefresh: func(ctx context.Context, _ string, _ refresh.Mode) error {
		if !armed.Load() {
			return nil
		}
		started <- struct{}{}
		<-ctx.Done() // held until the manager closes
		return ctx.Err()
	}})
	armed.Store(true)
	answered := make(chan *client.SyncRepoResponse, 1)
	go func() {
		resp, err := s.c.SyncRepoWithResponse(ctx(t), "local", nil)
		if err != nil {
			t.Errorf("sync: %v", err)
		}
		answered <- resp
	}()
	<-started
	s.app.Refresh().Close()
	resp := <-answered
	if resp == nil || resp.StatusCode() != 503 || resp.ApplicationproblemJSON503 == nil {
		t.Fatalf("a sync at shutdown: %+v", resp)
	}
	p := resp.ApplicationproblemJSON503
	if ra := resp.HTTPResponse.Header.Get("Retry-After"); ra == "" || p.Type != "/problems/unavailable" || p.Instance == nil {
		t.Fatalf("Retry-After %q, %+v", ra, p)
	}
	if strings.Contains(s.logs.String(), "level=ERROR") {
		t.Errorf("shutdown logged an error:\n%s", s.logs.String())
	}
}

// TestViewVersionNullUntilPublished: a repository whose first clone has not
// published a view shows viewVersion null, and so does a sync queued
// before it; afterwards both carry the version.
func TestViewVersionNullUntilPublished(t *testing.T) {
	up := newUpstream(t, "acme/fresh.git")
	cf := &countingFetch{}
	hold := make(chan struct{})
	cf.set(hold, nil)
	cfg := mirrorConfig(t)
	cfg.Repos = append(cfg.Repos, config.RepoConfig{ID: "fresh", URL: up.url})
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	wait := false
	queued, err := s.c.SyncRepoWithResponse(ctx(t), "fresh", &client.SyncRepoParams{Wait: &wait})
	if err != nil || queued.JSON202 == nil {
		t.Fatalf("sync: %v %s", err, queued.Body)
	}
	if queued.JSON202.ViewVersion != nil || !strings.Contains(string(queued.Body), `"viewVersion":null`) {
		t.Fatalf("a sync before any view: %s", queued.Body)
	}
	repo, _ := s.c.GetRepoWithResponse(ctx(t), "fresh")
	if repo.JSON200 == nil || repo.JSON200.ViewVersion != nil || !strings.Contains(string(repo.Body), `"viewVersion":null`) {
		t.Fatalf("a repository before any view: %s", repo.Body)
	}
	close(hold)
	rf, _ := s.app.Refresh().Get("fresh")
	res, err := rf.Wait(ctx(t), queued.JSON202.Id)
	if err != nil || res.State != refresh.Succeeded {
		t.Fatalf("the sync: %+v %v", res, err)
	}
	done, _ := s.c.GetSyncWithResponse(ctx(t), "fresh", queued.JSON202.Id)
	repo, _ = s.c.GetRepoWithResponse(ctx(t), "fresh")
	if done.JSON200 == nil || vv(done.JSON200.ViewVersion) < 1 || repo.JSON200 == nil || vv(repo.JSON200.ViewVersion) != vv(done.JSON200.ViewVersion) {
		t.Fatalf("after the first view: sync %s, repo %s", done.Body, repo.Body)
	}
}

// TestSyncViewVersionNullUntilItsRunEnds: a sync's viewVersion is null
// while it is queued or running, even though the repository already has a
// view; once its run has ended it is the version that run published (a
// new commit upstream: a new view), and a follow-up that changed nothing
// carries the version served when it ended.
func TestSyncViewVersionNullUntilItsRunEnds(t *testing.T) {
	up := newUpstream(t, "acme/versioned.git")
	cf := &countingFetch{}
	s := startServer(t, mirrorConfig(t), impl.Options{BeforeRefresh: cf.fetch})
	onboard(t, s, up.url)
	before, _ := s.c.GetRepoWithResponse(ctx(t), "versioned")
	if before.JSON200 == nil || vv(before.JSON200.ViewVersion) < 1 {
		t.Fatalf("the onboarded repository has no view: %s", before.Body)
	}
	rf, _ := s.app.Refresh().Get("versioned")
	hold, started := make(chan struct{}), make(chan struct{}, 2)
	cf.set(hold, started)
	first := rf.Trigger(refresh.Manual)
	<-started // the first run is running, its fetch held
	up.work.Commit("later", map[string]string{"later": "l\n"})
	up.push("main")

	wait := false
	queued, err := s.c.SyncRepoWithResponse(ctx(t), "versioned", &client.SyncRepoParams{Wait: &wait})
	if err != nil || queued.JSON202 == nil || queued.JSON202.Id == first {
		t.Fatalf("a sync while one runs: %v %s", err, queued.Body)
	}
	second := queued.JSON202.Id
	for _, tc := range []struct {
		id    string
		state client.SyncResultState
	}{
		{first, client.SyncResultStateRunning},
		{second, client.SyncResultStateQueued},
	} {
		got, err := s.c.GetSyncWithResponse(ctx(t), "versioned", tc.id)
		if err != nil || got.JSON200 == nil || got.JSON200.State != tc.state {
			t.Fatalf("sync %s: %v %s", tc.id, err, got.Body)
		}
		if got.JSON200.ViewVersion != nil || !strings.Contains(string(got.Body), `"viewVersion":null`) {
			t.Errorf("a %s sync shows a view version: %s", tc.state, got.Body)
		}
	}
	if queued.JSON202.ViewVersion != nil {
		t.Errorf("the 202 of a queued sync shows a view version: %s", queued.Body)
	}

	close(hold)
	for _, id := range []string{first, second} {
		if res, err := rf.Wait(ctx(t), id); err != nil || res.State != refresh.Succeeded {
			t.Fatalf("sync %s: %+v %v", id, res, err)
		}
	}
	repo, _ := s.c.GetRepoWithResponse(ctx(t), "versioned")
	one, _ := s.c.GetSyncWithResponse(ctx(t), "versioned", first)
	two, _ := s.c.GetSyncWithResponse(ctx(t), "versioned", second)
	if repo.JSON200 == nil || one.JSON200 == nil || two.JSON200 == nil {
		t.Fatalf("after the runs: %s %s %s", repo.Body, one.Body, two.Body)
	}
	v := vv(repo.JSON200.ViewVersion)
	if change(*one.JSON200, "refs/heads/main") != "updated" || vv(one.JSON200.ViewVersion) != v || v <= vv(before.JSON200.ViewVersion) {
		t.Errorf("the run that fetched the commit: %s; repository at %d, was %d", one.Body, v, vv(before.JSON200.ViewVersion))
	}
	if len(two.JSON200.UpdatedRefs) != 0 || vv(two.JSON200.ViewVersion) != v {
		t.Errorf("the follow-up that changed nothing: %s; repository at %d", two.Body, v)
	}
}

// TestLongBranchComponentRefused: a branch name with a '/'-separated
// component over 255 bytes (which git cannot store as a loose ref) is a
// 400 problem on every route that takes a branch name, whose answer
// repeats no part of the name in any field or header; a name whose
// components are at most 255 bytes is looked up as usual (404).
func TestLongBranchComponentRefused(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	type answer struct {
		code int
		hdr  http.Header
		body []byte
		p    *client.Problem
	}
	routes := []struct {
		name string
		call func(name string) (answer, error)
	}{
		{"getBranch", func(n string) (answer, error) {
			resp, err := s.c.GetBranchWithResponse(ctx(t), "local", n, nil)
			if err != nil {
				return answer{}, err
			}
			return answer{resp.StatusCode(), resp.HTTPResponse.Header, resp.Body, resp.ApplicationproblemJSON400}, nil
		}},
		{"getBranchDiff", func(n string) (answer, error) {
			resp, err := s.c.GetBranchDiffWithResponse(ctx(t), "local", n, nil)
			if err != nil {
				return answer{}, err
			}
			return answer{resp.StatusCode(), resp.HTTPResponse.Header, resp.Body, resp.ApplicationproblemJSON400}, nil
		}},
		{"getStack", func(n string) (answer, error) {
			resp, err := s.c.GetStackWithResponse(ctx(t), "local", n, nil)
			if err != nil {
				return answer{}, err
			}
			return answer{resp.StatusCode(), resp.HTTPResponse.Header, resp.Body, resp.ApplicationproblemJSON400}, nil
		}},
		{"getBranch of an unknown repository", func(n string) (answer, error) {
			resp, err := s.c.GetBranchWithResponse(ctx(t), "nope", n, nil)
			if err != nil {
				return answer{}, err
			}
			return answer{resp.StatusCode(), resp.HTTPResponse.Header, resp.Body, resp.ApplicationproblemJSON400}, nil
		}},
		{"createRepo trunk", func(n string) (answer, error) {
			resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: "https://example.com/acme/x.git", Trunk: &n})
			if err != nil {
				return answer{}, err
			}
			return answer{resp.StatusCode(), resp.HTTPResponse.Header, resp.Body, resp.ApplicationproblemJSON400}, nil
		}},
	}
	names := []struct {
		name, chunk string // chunk: a part of the name no answer may carry
	}{
		{strings.Repeat("x", 300), strings.Repeat("x", 16)},
		{strings.Repeat("q", 256), strings.Repeat("q", 16)},
		{"feature/" + strings.Repeat("k", 256) + "/tail", strings.Repeat("k", 16)},
		{strings.Repeat("é", 128), strings.Repeat("é", 8)},   // 256 bytes, 128 runes
		{strings.Repeat("v", 1100), strings.Repeat("v", 16)}, // over 1024 bytes: refused by the validator
	}
	for _, rt := range routes {
		for _, nm := range names {
			t.Run(fmt.Sprintf("%s/%d-bytes", rt.name, len(nm.name)), func(t *testing.T) {
				a, err := rt.call(nm.name)
				if err != nil {
					t.Fatal(err)
				}
				if a.code != 400 || a.hdr.Get("Content-Type") != "application/problem+json" || a.p == nil {
					t.Fatalf("%d %s", a.code, a.body)
				}
				if a.p.Type != "/problems/bad-request" || a.p.Detail == nil || (len(nm.name) <= 1024 && !strings.Contains(*a.p.Detail, "longer than 255 bytes")) {
					t.Errorf("problem: %s", a.body)
				}
				if strings.Contains(string(a.body), nm.chunk) {
					t.Errorf("the answer repeats the name: %s", a.body)
				}
				esc := url.PathEscape(nm.chunk)
				for k, vs := range a.hdr {
					for _, v := range vs {
						if strings.Contains(v, nm.chunk) || strings.Contains(v, esc) {
							t.Errorf("header %s repeats the name: %q", k, v)
						}
					}
				}
			})
		}
	}
	// At the limit, a name is looked up: 404, not 400.
	limit := strings.Repeat("z", 255) + "/" + strings.Repeat("z", 255)
	resp, err := s.c.GetBranchWithResponse(ctx(t), "local", limit, nil)
	if err != nil || resp.StatusCode() != 404 {
		t.Fatalf("a name with 255-byte components: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
}
