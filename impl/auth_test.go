package impl_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/auth/authtest"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/httpstack"
	"github.com/stackd/stackd/impl/validate"
)

func startIDP(t *testing.T) *mockoidc.MockOIDC { return authtest.StartIDP(t) }

func oidcConfig(t *testing.T, idp *mockoidc.MockOIDC, dir string) config.Config {
	cfg := baseConfig(t, dir)
	cfg.Auth = "oidc"
	cfg.OIDCIssuer = idp.Issuer()
	cfg.OIDCClientID = idp.ClientID
	cfg.OIDCClientSecret = idp.ClientSecret
	// mockoidc's default user (jane.doe@) and idToken's robot@ have
	// verified example.com addresses.
	cfg.AllowedDomains = []string{"example.com"}
	return cfg
}

// idToken signs an ID token with the provider's key; over replaces claims
// (nil deletes one).
func idToken(t *testing.T, idp *mockoidc.MockOIDC, over jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss": idp.Issuer(), "aud": idp.ClientID, "sub": "robot", "iat": now.Unix(),
		"exp": now.Add(10 * time.Minute).Unix(), "email": "robot@example.com", "email_verified": true,
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok, err := idp.Keypair.SignJWT(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestPostureMatrix(t *testing.T) {
	idp := startIDP(t)
	cases := []struct {
		addr, mode string
		readOnly   bool
		ok         bool
	}{
		{"127.0.0.1:0", "none", false, true},
		{"127.0.0.1:0", "none", true, true},
		{"127.0.0.1:0", "oidc", false, true},
		{"127.0.0.1:0", "oidc", true, true},
		{"[::1]:0", "none", false, true},
		{"0.0.0.0:0", "none", false, false},
		{"0.0.0.0:0", "none", true, true},
		{"0.0.0.0:0", "oidc", false, true},
		{"0.0.0.0:0", "oidc", true, true},
		{"192.0.2.1:0", "none", false, false},
	}
	for _, tc := range cases {
		cfg := oidcConfig(t, idp, "")
		cfg.Addr, cfg.Auth, cfg.ReadOnly = tc.addr, tc.mode, tc.readOnly
		cfg.BaseURL = "http://stackd.test"
		app, err := impl.New(cfg, slogDiscard(), impl.Options{})
		if tc.ok {
			if err != nil {
				t.Errorf("%s auth=%s read-only=%v: %v", tc.addr, tc.mode, tc.readOnly, err)
				continue
			}
			app.Close()
		} else if !errors.Is(err, impl.ErrPosture) {
			t.Errorf("%s auth=%s read-only=%v: want a posture refusal, got %v", tc.addr, tc.mode, tc.readOnly, err)
		}
	}
	// OIDC without an allowlist is refused on every address (see
	// TestOIDCNeedsAnAllowlist), and so is OIDC without its settings.
	for _, addr := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		cfg := oidcConfig(t, idp, "")
		cfg.Addr, cfg.BaseURL, cfg.AllowedDomains = addr, "http://stackd.test", nil
		if _, err := impl.New(cfg, slogDiscard(), impl.Options{}); !errors.Is(err, impl.ErrPosture) {
			t.Errorf("%s oidc without an allowlist: %v", addr, err)
		}
	}
	cfg := baseConfig(t, "")
	cfg.Auth = "oidc"
	if _, err := impl.New(cfg, slogDiscard(), impl.Options{}); !errors.Is(err, impl.ErrPosture) {
		t.Fatalf("oidc without issuer: %v", err)
	}
}

// specOp is one operation of the embedded spec with a request that passes
// validation.
type specOp struct {
	id, method, path, body string
	route                  *validate.Route
}

func specOperations(t *testing.T) ([]specOp, *openapi3.T) {
	t.Helper()
	doc, err := httpstack.Spec()
	if err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("{repoID}", "local", "{branch}", "b", "{root}", "a", "{syncID}", "0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")
	var out []specOp
	for p, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			o := specOp{id: op.OperationID, method: m, path: fill.Replace(p), route: &validate.Route{Operation: op, Path: p, Method: m}}
			switch op.OperationID {
			case "createRepo":
				o.body = `{"url":"https://example.invalid/acme/x.git"}`
			case "githubWebhook":
				o.body = `{}`
			}
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, doc
}

func (o specOp) send(t *testing.T, s *testServer, hdr ...string) (int, http.Header, string) {
	t.Helper()
	var body *strings.Reader
	if o.body != "" {
		body = strings.NewReader(o.body)
		hdr = append(hdr, "Content-Type", "application/json")
	}
	if body == nil {
		return s.do(o.method, o.path, nil, hdr...)
	}
	return s.do(o.method, o.path, body, hdr...)
}

func problemType(t *testing.T, body string) string {
	t.Helper()
	var p client.Problem
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("not a problem: %s", body)
	}
	return p.Type
}

// TestEveryOperationNeedsAuthUnlessPublic walks every operation of the
// embedded spec on an OIDC server in its default, private posture: every
// operation that is not open (only the empty security requirement)
// answers 401 with WWW-Authenticate: Bearer to an anonymous caller, reads
// included. The open set is pinned, so a new operation cannot become
// anonymous by accident. (TestAccessPerPosture covers the other postures.)
func TestEveryOperationNeedsAuthUnlessPublic(t *testing.T) {
	idp := startIDP(t)
	s := startServer(t, oidcConfig(t, idp, stackRepo(t).Dir), impl.Options{})
	ops, doc := specOperations(t)
	var open []string
	for _, o := range ops {
		if auth.Classify(o.route.Operation, doc.Security) == auth.LevelOpen {
			open = append(open, o.id)
			continue
		}
		code, hdr, body := o.send(t, s)
		if code != 401 || hdr.Get("WWW-Authenticate") != "Bearer" || problemType(t, body) != "/problems/unauthorized" {
			t.Errorf("%s %s without credentials: %d %q %s", o.method, o.path, code, hdr.Get("WWW-Authenticate"), body)
		}
	}
	want := []string{"authCallback", "authLogin", "authLogout", "getConfig", "getHealth", "getReady", "githubWebhook"}
	if strings.Join(open, ",") != strings.Join(want, ",") {
		t.Fatalf("open operations = %v\nwant %v", open, want)
	}
	// Reads need a user too; a bearer ID token is one.
	if code, _, body := s.do("GET", "/api/v1/repos/local/view", nil); code != 401 {
		t.Fatalf("anonymous read: %d %s", code, body)
	}
	if code, _, body := s.do("GET", "/api/v1/repos/local/view", nil, "Authorization", "Bearer "+idToken(t, idp, nil)); code != 200 {
		t.Fatalf("read with a bearer ID token: %d %s", code, body)
	}
}

// TestReadOnlyRefusesEveryMutation walks every operation: each mutating one
// answers 403 /problems/read-only, to an anonymous caller on a local
// read-only server and to a valid bearer token on an OIDC one, before any
// work starts. The mutating set is pinned.
func TestReadOnlyRefusesEveryMutation(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	local := baseConfig(t, dir)
	local.ReadOnly = true
	oidc := oidcConfig(t, idp, dir)
	oidc.ReadOnly = true
	tok := idToken(t, idp, nil)
	for _, tc := range []struct {
		name string
		cfg  config.Config
		hdr  []string
	}{
		{"local read-only", local, nil},
		{"oidc read-only with a bearer token", oidc, []string{"Authorization", "Bearer " + tok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.cfg, impl.Options{})
			ops, _ := specOperations(t)
			var mutating []string
			for _, o := range ops {
				if !auth.Mutating(o.route) {
					continue
				}
				mutating = append(mutating, o.id)
				code, _, body := o.send(t, s, tc.hdr...)
				if code != 403 || !strings.HasSuffix(problemType(t, body), "/read-only") {
					t.Errorf("%s %s: %d %s", o.method, o.path, code, body)
				}
			}
			if got := strings.Join(mutating, ","); got != "createRepo,deleteRepo,syncRepo" {
				t.Fatalf("mutating operations = %s", got)
			}
			if _, ok := s.app.Registry().Get("x"); ok {
				t.Fatal("a refused onboarding registered a repository")
			}
			hist, _ := s.c.ListSyncsWithResponse(ctx(t), "local", nil)
			if hist.JSON200 == nil || len(*hist.JSON200) != 1 { // only the start-up read
				t.Fatalf("a refused sync ran: %s", hist.Body)
			}
			for _, p := range []string{"/api/v1/repos/local/view", "/api/v1/repos/local/branches/b", "/api/v1/config"} {
				if code, _, body := s.do("GET", p, nil); code != 200 {
					t.Fatalf("anonymous read %s: %d %s", p, code, body)
				}
			}
			if code, _, body := s.do("GET", "/api/v1/config", nil); !strings.Contains(body, `"readOnly":true`) || code != 200 {
				t.Fatalf("config: %s", body)
			}
			if code, _, _ := s.do("POST", "/auth/logout", nil); code != 204 && code != 404 {
				t.Fatalf("logout on a read-only server: %d", code)
			}
		})
	}
}

// TestSyncAccess is the "done when": 401 without credentials, 200
// with a bearer token or a logged-in session plus the CSRF header.
func TestSyncAccess(t *testing.T) {
	idp := startIDP(t)
	cfg := oidcConfig(t, idp, stackRepo(t).Dir)
	// robot@ reads the whole audit log, others' entries too: an admin.
	cfg.Admins = []string{"robot@example.com"}
	s := startServer(t, cfg, impl.Options{})
	sync := func(hdr ...string) (int, string) {
		code, _, body := s.do("POST", "/api/v1/repos/local/sync", nil, hdr...)
		return code, body
	}
	if code, body := sync(); code != 401 {
		t.Fatalf("anonymous sync: %d %s", code, body)
	}
	for _, tc := range []struct {
		name  string
		token string
		want  int
	}{
		{"good token", idToken(t, idp, nil), 200},
		{"wrong audience", idToken(t, idp, jwt.MapClaims{"aud": "someone-else"}), 401},
		{"expired", idToken(t, idp, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}), 401},
		{"foreign key", foreignToken(t, idp), 401},
		{"garbage", "not-a-jwt", 401},
	} {
		if code, body := sync("Authorization", "Bearer "+tc.token); code != tc.want {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
	}

	// Browser: the code flow with a cookie jar, then a gated call.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(s.srv.URL + "/auth/login?return=/api/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	var me client.Me
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after login: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if me.AuthenticatedBy != client.MeAuthenticatedBySession || me.Email == nil || *me.Email != mockoidc.DefaultUser().Email {
		t.Fatalf("me = %+v", me)
	}
	post := func(hdr ...string) int {
		req, _ := http.NewRequest("POST", s.srv.URL+"/api/v1/repos/local/sync", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(); code != 403 {
		t.Fatalf("session without CSRF header: %d", code)
	}
	if code := post("X-Stackd-CSRF", "1", "Origin", "https://evil.example"); code != 403 {
		t.Fatalf("session from a foreign origin: %d", code)
	}
	if code := post("X-Stackd-CSRF", "1"); code != 200 {
		t.Fatalf("session with CSRF header: %d", code)
	}

	// The audit log has who did what.
	audit, _, body := s.do("GET", "/api/v1/audit", nil, "Authorization", "Bearer "+idToken(t, idp, nil))
	if audit != 200 || !strings.Contains(body, `"action":"syncRepo"`) || !strings.Contains(body, mockoidc.DefaultUser().Email) || !strings.Contains(body, "robot@example.com") {
		t.Fatalf("audit: %d %s", audit, body)
	}
	if code, _, _ := s.do("GET", "/api/v1/audit", nil); code != 401 {
		t.Fatalf("anonymous audit: %d", code)
	}
}

// foreignToken is a well-formed token signed by a key the issuer never had.
func foreignToken(t *testing.T, idp *mockoidc.MockOIDC) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := mockoidc.NewKeypair(key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := kp.SignJWT(jwt.MapClaims{"iss": idp.Issuer(), "aud": idp.ClientID, "sub": "x", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestLocalPostureSyncIsOpen(t *testing.T) {
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{})
	if code, _, body := s.do("POST", "/api/v1/repos/local/sync", nil); code != 200 {
		t.Fatalf("anonymous sync on loopback with auth off: %d %s", code, body)
	}
	me, err := s.c.GetMeWithResponse(ctx(t))
	if err != nil || me.JSON200 == nil || me.JSON200.AuthenticatedBy != client.MeAuthenticatedByNone {
		t.Fatalf("me: %v %s", err, me.Body)
	}
	if code, _, _ := s.do("GET", "/auth/login", nil); code != 404 {
		t.Fatalf("login with auth off: %d", code)
	}
}

// TestRateLimits: a sync that creates a run spends a sync token, and every
// request an API token.
func TestRateLimits(t *testing.T) {
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{
		Rate:     auth.RateLimit{PerSecond: 0.001, Burst: 5},
		SyncRate: auth.RateLimit{PerSecond: 0.001, Burst: 1},
	})
	if code, _, _ := s.do("POST", "/api/v1/repos/local/sync", nil); code != 200 {
		t.Fatalf("first sync: %d", code)
	}
	code, hdr, body := s.do("POST", "/api/v1/repos/local/sync", nil)
	if code != 429 || hdr.Get("Retry-After") == "" || problemType(t, body) != "/problems/too-many-requests" {
		t.Fatalf("second sync: %d %q %s", code, hdr.Get("Retry-After"), body)
	}
	for i := 0; i < 3; i++ {
		if code, _, _ := s.do("GET", "/api/v1/repos/local/view", nil); code != 200 {
			t.Fatalf("read %d: %d", i, code)
		}
	}
	if code, _, _ := s.do("GET", "/api/v1/repos/local/view", nil); code != 429 {
		t.Fatalf("read past the burst: %d", code)
	}
}

// TestRefusedSessionCanSignOut: after a restart with a tighter allowlist, a
// stored session is refused (403) everywhere but on sign-out, which deletes
// it.
func TestRefusedSessionCanSignOut(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	cfg := oidcConfig(t, idp, dir)
	first := startServer(t, cfg, impl.Options{})
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(first.srv.URL + "/auth/login?return=/api/v1/me")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sign-in: %v", err)
	}
	resp.Body.Close()
	u, _ := url.Parse(first.srv.URL)
	var session string
	for _, c := range jar.Cookies(u) {
		if c.Name == auth.SessionCookie {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatal("no session cookie")
	}
	first.app.Close() // the store is released; the session stays in it

	cfg.AllowedDomains = []string{"elsewhere.example"}
	cfg.BaseURL = ""
	second := startServer(t, cfg, impl.Options{})
	cookie := auth.SessionCookie + "=" + session
	if code, _, body := second.do("GET", "/api/v1/me", nil, "Cookie", cookie); code != 403 {
		t.Fatalf("refused session: %d %s", code, body)
	}
	code, hdr, body := second.do("POST", "/auth/logout", nil, "Cookie", cookie, "X-Stackd-CSRF", "1")
	if code != 204 || !strings.Contains(hdr.Get("Set-Cookie"), auth.SessionCookie+"=;") {
		t.Fatalf("sign-out of a refused session: %d %q %s", code, hdr.Get("Set-Cookie"), body)
	}
	second.app.Close() // one server per data directory
	cfg.AllowedDomains, cfg.AllowAnyUser = nil, true
	third := startServer(t, cfg, impl.Options{})
	if code, _, _ := third.do("GET", "/api/v1/me", nil, "Cookie", cookie); code != 401 {
		t.Fatalf("the signed-out session still works: %d", code)
	}
}
