package impl_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/httpstack"
)

// accessPosture is one way to run a server, with what an anonymous caller
// must get from the gate (by operation id; every other operation passes).
type accessPosture struct {
	name      string
	cfg       config.Config
	signIn    []string // 401 /problems/unauthorized with WWW-Authenticate: Bearer
	readOnly  []string // 403 /problems/read-only
	noUsers   []string // 403 /problems/forbidden
	users     bool     // the server has users: the served spec carries security
	anonReads bool     // /api/v1/config publicReads
}

// accessPostures are the postures of the README's Access table. The
// public read-only server with auth off listens (in its configuration) on
// every address; the test serves its handler on loopback.
func accessPostures(t *testing.T, idp *mockoidc.MockOIDC, dir string) []accessPosture {
	local := baseConfig(t, dir)
	localRO := baseConfig(t, dir)
	localRO.ReadOnly = true
	publicRO := baseConfig(t, dir)
	publicRO.Addr, publicRO.ReadOnly = "0.0.0.0:8080", true
	private := oidcConfig(t, idp, dir)
	publicReads := oidcConfig(t, idp, dir)
	publicReads.PublicReads = true
	oidcRO := oidcConfig(t, idp, dir)
	oidcRO.ReadOnly = true
	anyUser := oidcConfig(t, idp, dir)
	anyUser.AllowedDomains, anyUser.AllowAnyUser = nil, true

	open := []string{"authCallback", "authLogin", "authLogout", "getConfig", "getHealth", "getReady", "githubWebhook"}
	all, _ := specOperations(t)
	var notOpen []string
	for _, o := range all {
		if !slices.Contains(open, o.id) {
			notOpen = append(notOpen, o.id)
		}
	}
	mutations := []string{"createRepo", "deleteRepo", "syncRepo"}
	needUser := []string{"getMe", "listAudit"}
	return []accessPosture{
		{name: "local", cfg: local, anonReads: true},
		{name: "local read-only", cfg: localRO, readOnly: mutations, noUsers: needUser, anonReads: true},
		{name: "public read-only, auth off", cfg: publicRO, readOnly: mutations, noUsers: needUser, anonReads: true},
		{name: "oidc private", cfg: private, signIn: notOpen, users: true},
		{name: "oidc private, any user", cfg: anyUser, signIn: notOpen, users: true},
		{name: "oidc public reads", cfg: publicReads, signIn: append(slices.Clone(mutations), needUser...), users: true, anonReads: true},
		{name: "oidc read-only", cfg: oidcRO, readOnly: mutations, signIn: needUser, users: true, anonReads: true},
	}
}

// gateCall sends o without following redirects (sign-in would) and
// without waiting for an event stream to end.
func gateCall(t *testing.T, s *testServer, o specOp, hdr ...string) (int, http.Header, string) {
	t.Helper()
	if o.id == "createRepo" {
		// Passes validation; refused by the handler without any network
		// access (local remotes are off).
		o.body = `{"url":"file:///nonexistent/x.git"}`
	}
	var body io.Reader
	if o.body != "" {
		body = strings.NewReader(o.body)
		hdr = append(hdr, "Content-Type", "application/json")
	}
	req, err := http.NewRequest(o.method, s.srv.URL+o.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, resp.Header, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// servedDoc fetches and loads the spec the server serves at path.
func servedDoc(t *testing.T, s *testServer, path string) (*openapi3.T, string) {
	t.Helper()
	code, hdr, body := s.do("GET", path, nil)
	if code != 200 {
		t.Fatalf("GET %s: %d", path, code)
	}
	if path == "/openapi.yaml" && hdr.Get("Content-Type") != "application/yaml" || path == "/openapi.json" && hdr.Get("Content-Type") != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, hdr.Get("Content-Type"))
	}
	doc, err := openapi3.NewLoader().LoadFromData([]byte(body))
	if err != nil {
		t.Fatalf("served %s does not load: %v", path, err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("served %s is not valid: %v", path, err)
	}
	return doc, body
}

// servedSecurity returns the effective security of every operation of doc
// by id, each requirement written as its sorted scheme names ("" for {}).
func servedSecurity(doc *openapi3.T) map[string][]string {
	out := map[string][]string{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			reqs := doc.Security
			if op.Security != nil {
				reqs = *op.Security
			}
			shown := []string{}
			for _, r := range reqs {
				var names []string
				for n := range r {
					names = append(names, n)
				}
				slices.Sort(names)
				shown = append(shown, strings.Join(names, "+"))
			}
			out[op.OperationID] = shown
		}
	}
	return out
}

// TestAccessPerPosture walks every operation of the contract in every
// posture of the README's Access table. Anonymous callers get exactly the
// pinned refusals; a bearer ID token passes everything but a read-only
// server's mutations. The spec served at /openapi.yaml and /openapi.json
// shows the same thing: an operation answers 401 to anonymous callers
// exactly when its served security lacks the empty requirement {}; with
// auth off every operation is just {} and there are no schemes.
// /api/v1/config tells whether reads are anonymous. (TestValidatingProxyAgrees
// runs a validating proxy against the served spec.)
func TestAccessPerPosture(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	tok := idToken(t, idp, nil)
	for _, p := range accessPostures(t, idp, dir) {
		t.Run(p.name, func(t *testing.T) {
			s := startServer(t, p.cfg, impl.Options{})
			ops, _ := specOperations(t)

			yamlDoc, yamlText := servedDoc(t, s, "/openapi.yaml")
			jsonDoc, _ := servedDoc(t, s, "/openapi.json")
			served := servedSecurity(yamlDoc)
			if js := servedSecurity(jsonDoc); !equalSecurity(js, served) {
				t.Fatalf("/openapi.json and /openapi.yaml differ:\n%v\n%v", js, served)
			}
			if !strings.HasPrefix(yamlText, "openapi: 3.0.3\n") || !strings.Contains(yamlText, "On this server (") {
				t.Errorf("served YAML does not start like openapi.yaml or lacks the posture sentence:\n%.300s", yamlText)
			}
			if has := yamlDoc.Components != nil && len(yamlDoc.Components.SecuritySchemes) > 0; has != p.users {
				t.Errorf("security schemes served: %v, want %v", has, p.users)
			}

			// Whether each operation passed the gate, anonymously and
			// with the bearer token.
			passed := map[string]bool{}
			passedTok := map[string]bool{}
			for _, o := range ops {
				want := "pass"
				switch {
				case slices.Contains(p.signIn, o.id):
					want = "401 /problems/unauthorized"
				case slices.Contains(p.readOnly, o.id):
					want = "403 /problems/read-only"
				case slices.Contains(p.noUsers, o.id):
					want = "403 /problems/forbidden"
				}
				code, hdr, body := gateCall(t, s, o)
				got := "pass"
				if code == 401 || code == 403 {
					got = strconv.Itoa(code) + " " + problemType(t, body)
				}
				if got != want {
					t.Errorf("anonymous %s %s: %s, want %s: %s", o.method, o.path, got, want, body)
				}
				passed[o.id] = got == "pass"
				if code == 401 && hdr.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("anonymous %s: 401 without the Bearer challenge", o.id)
				}
				// The served spec agrees with the gate.
				sec, ok := served[o.id]
				if !ok {
					t.Fatalf("%s missing from the served spec", o.id)
				}
				anonymousServed := slices.Contains(sec, "")
				if len(sec) == 0 || !p.users && !slices.Equal(sec, []string{""}) {
					t.Errorf("%s: served security %q in a posture with users=%v", o.id, sec, p.users)
				}
				// 401 exactly where {} is missing.
				if anonymousServed == (code == 401) {
					t.Errorf("%s: served security %q, but an anonymous call got %d", o.id, sec, code)
				}
				if !p.users {
					continue
				}
				// With a bearer ID token only read-only refuses.
				code, _, body = gateCall(t, s, o, "Authorization", "Bearer "+tok)
				wantTok := "pass"
				if slices.Contains(p.readOnly, o.id) {
					wantTok = "403 /problems/read-only"
				}
				got = "pass"
				if code == 401 || code == 403 {
					got = strconv.Itoa(code) + " " + problemType(t, body)
				}
				if got != wantTok {
					t.Errorf("%s %s with a bearer token: %s, want %s: %s", o.method, o.path, got, wantTok, body)
				}
				passedTok[o.id] = got == "pass"
			}

			// config's onboarding is the gate's answer to the same
			// caller for createRepo (and the other mutations), read
			// through the generated client.
			onboarding := func(edit ...client.RequestEditorFn) bool {
				t.Helper()
				resp, err := s.c.GetConfigWithResponse(ctx(t), edit...)
				if err != nil || resp.JSON200 == nil {
					t.Fatalf("config: %v %d %s", err, resp.StatusCode(), resp.Body)
				}
				return resp.JSON200.Onboarding
			}
			for _, m := range []string{"createRepo", "deleteRepo", "syncRepo"} {
				if got := onboarding(); got != passed[m] {
					t.Errorf("anonymous: config onboarding %v, but %s passed the gate: %v", got, m, passed[m])
				}
			}
			if p.users {
				bearer := func(_ context.Context, r *http.Request) error {
					r.Header.Set("Authorization", "Bearer "+tok)
					return nil
				}
				for _, m := range []string{"createRepo", "deleteRepo", "syncRepo"} {
					if got := onboarding(bearer); got != passedTok[m] {
						t.Errorf("bearer: config onboarding %v, but %s passed the gate: %v", got, m, passedTok[m])
					}
				}
			}

			code, _, body := s.do("GET", "/api/v1/config", nil)
			var c struct {
				PublicReads  *bool `json:"publicReads"`
				AuthRequired bool  `json:"authRequired"`
			}
			if err := json.Unmarshal([]byte(body), &c); err != nil || code != 200 || c.PublicReads == nil {
				t.Fatalf("config: %d %s", code, body)
			}
			if *c.PublicReads != p.anonReads || c.AuthRequired != p.users {
				t.Errorf("config says publicReads %v authRequired %v, want %v %v", *c.PublicReads, c.AuthRequired, p.anonReads, p.users)
			}
		})
	}
}

func equalSecurity(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestServedSpecSecurity pins what Swagger UI is shown: private reads
// require a scheme, public reads make it optional, the open operations are
// just {} (no padlock), and with auth off every operation is just {}.
func TestServedSpecSecurity(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	private := oidcConfig(t, idp, dir)
	public := oidcConfig(t, idp, dir)
	public.PublicReads = true
	const schemes = "cookieAuth,bearerAuth"
	for _, tc := range []struct {
		name                    string
		cfg                     config.Config
		view, sync, me, healthz string
	}{
		{"local", baseConfig(t, dir), ",", ",", ",", ","},
		{"oidc private", private, schemes, schemes, schemes, ","},
		{"oidc public reads", public, "," + schemes, schemes, schemes, ","},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.cfg, impl.Options{})
			for _, path := range []string{"/openapi.yaml", "/openapi.json"} {
				doc, _ := servedDoc(t, s, path)
				sec := servedSecurity(doc)
				for id, want := range map[string]string{"getView": tc.view, "syncRepo": tc.sync, "getMe": tc.me, "getHealth": tc.healthz} {
					got := strings.Join(sec[id], ",")
					if want == "," {
						want = "" // just {}
						if len(sec[id]) != 1 {
							got = "not just {}: " + got
						}
					}
					if got != want {
						t.Errorf("%s %s: security %q, want %q", path, id, got, want)
					}
				}
			}
		})
	}
	// The embedded file, which validation uses, is unchanged: reads carry
	// {} next to the schemes.
	doc, err := httpstack.Spec()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(servedSecurity(doc)["getView"], ","); got != ","+schemes {
		t.Errorf("embedded getView security %q", got)
	}
}

// TestOIDCNeedsAnAllowlist: --auth oidc refuses to start without an
// allowlist unless --allow-any-user is given, and with both.
func TestOIDCNeedsAnAllowlist(t *testing.T) {
	idp := startIDP(t)
	for _, tc := range []struct {
		name     string
		set      func(*config.Config)
		startsOK bool
	}{
		{"no allowlist", func(c *config.Config) { c.AllowedDomains = nil }, false},
		{"no allowlist, read-only", func(c *config.Config) { c.AllowedDomains, c.ReadOnly = nil, true }, false},
		{"no allowlist, public reads", func(c *config.Config) { c.AllowedDomains, c.PublicReads = nil, true }, false},
		{"--allow-any-user", func(c *config.Config) { c.AllowedDomains, c.AllowAnyUser = nil, true }, true},
		{"--allow-any-user and an allowlist", func(c *config.Config) { c.AllowAnyUser = true }, false},
		{"e-mail allowlist", func(c *config.Config) { c.AllowedDomains, c.AllowedEmails = nil, []string{"a@example.com"} }, true},
		{"group allowlist", func(c *config.Config) { c.AllowedDomains, c.AllowedGroups = nil, []string{"ops"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oidcConfig(t, idp, "")
			cfg.BaseURL = "http://stackd.test"
			tc.set(&cfg)
			app, err := impl.New(cfg, slogDiscard(), impl.Options{})
			if tc.startsOK {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				app.Close()
				return
			}
			if !errors.Is(err, impl.ErrPosture) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want a one-line posture refusal, got %v", err)
			}
			if !strings.Contains(err.Error(), "--allow-any-user") {
				t.Errorf("refusal does not name --allow-any-user: %v", err)
			}
		})
	}
}

// TestPrivateReads: with --auth oidc an anonymous read is 401 and the
// same read with a bearer ID token, or a signed-in session, is 200; a token
// of an account outside the allowlist is 403; --public-reads opens reads
// again, and --read-only keeps them open.
func TestPrivateReads(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	s := startServer(t, oidcConfig(t, idp, dir), impl.Options{})
	reads := []string{"/api/v1/repos", "/api/v1/repos/local", "/api/v1/repos/local/view", "/api/v1/repos/local/stacks",
		"/api/v1/repos/local/branches", "/api/v1/repos/local/branches/b", "/api/v1/repos/local/branches/b/diff", "/api/v1/repos/local/syncs"}
	for _, p := range reads {
		code, hdr, body := s.do("GET", p, nil)
		if code != 401 || hdr.Get("WWW-Authenticate") != "Bearer" || problemType(t, body) != "/problems/unauthorized" {
			t.Errorf("anonymous GET %s: %d %q %s", p, code, hdr.Get("WWW-Authenticate"), body)
		}
		if code, _, body := s.do("GET", p, nil, "Authorization", "Bearer "+idToken(t, idp, nil)); code != 200 {
			t.Errorf("GET %s with a bearer ID token: %d %s", p, code, body)
		}
		outsider := idToken(t, idp, jwt.MapClaims{"email": "someone@elsewhere.example"})
		if code, _, body := s.do("GET", p, nil, "Authorization", "Bearer "+outsider); code != 403 || problemType(t, body) != "/problems/forbidden" {
			t.Errorf("GET %s with an outsider's token: %d %s", p, code, body)
		}
	}
	// The generated client, with a bearer token.
	view, err := s.c.GetViewWithResponse(ctx(t), "local", nil, func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+idToken(t, idp, nil))
		return nil
	})
	if err != nil || view.JSON200 == nil {
		t.Fatalf("client view with a token: %v %d", err, view.StatusCode())
	}
	if anon, err := s.c.GetViewWithResponse(ctx(t), "local", nil); err != nil || anon.StatusCode() != 401 || anon.ApplicationproblemJSON401 == nil {
		t.Fatalf("client view without a token: %v %d", err, anon.StatusCode())
	}
	// Open operations stay anonymous.
	for _, p := range []string{"/healthz", "/readyz", "/api/v1/config", "/openapi.yaml", "/openapi.json", "/docs/"} {
		if code, _, body := s.do("GET", p, nil); code != 200 {
			t.Errorf("anonymous GET %s: %d %.200s", p, code, body)
		}
	}

	pub := oidcConfig(t, idp, dir)
	pub.PublicReads = true
	ro := oidcConfig(t, idp, dir)
	ro.ReadOnly = true
	for name, cfg := range map[string]config.Config{"--public-reads": pub, "--read-only": ro} {
		s := startServer(t, cfg, impl.Options{})
		for _, p := range reads {
			if code, _, body := s.do("GET", p, nil); code != 200 {
				t.Errorf("%s: anonymous GET %s: %d %s", name, p, code, body)
			}
		}
		for _, p := range []string{"/api/v1/me", "/api/v1/audit"} {
			if code, _, _ := s.do("GET", p, nil); code != 401 {
				t.Errorf("%s: anonymous GET %s: %d", name, p, code)
			}
		}
	}
}

// TestMeAndAuditNeverAnonymous: /api/v1/me and /api/v1/audit answer an
// anonymous caller only in the local posture; a read-only server with auth
// off answers 403, whatever its address, and a server with OIDC 401.
func TestMeAndAuditNeverAnonymous(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	for _, p := range accessPostures(t, idp, dir) {
		t.Run(p.name, func(t *testing.T) {
			s := startServer(t, p.cfg, impl.Options{})
			for _, path := range []string{"/api/v1/me", "/api/v1/audit"} {
				code, _, body := s.do("GET", path, nil)
				switch {
				case p.name == "local":
					if code != 200 {
						t.Errorf("%s: %d %s", path, code, body)
					}
				case p.users:
					if code != 401 {
						t.Errorf("%s: %d %s", path, code, body)
					}
				default:
					if code != 403 || problemType(t, body) != "/problems/forbidden" || !strings.Contains(body, "auth off") {
						t.Errorf("%s: %d %s", path, code, body)
					}
					if strings.Contains(body, "127.0.0.1") {
						t.Errorf("%s leaks a client address: %s", path, body)
					}
				}
			}
		})
	}
}

// TestAccessTokenRefused: a JWT whose header says typ at+jwt (an RFC 9068
// access token), signed by the issuer's own key with valid claims, is
// refused with a 401 that says why; the same claims as an ID token pass.
func TestAccessTokenRefused(t *testing.T) {
	idp := startIDP(t)
	s := startServer(t, oidcConfig(t, idp, stackRepo(t).Dir), impl.Options{})
	sign := func(typ string) string {
		t.Helper()
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": idp.Issuer(), "aud": idp.ClientID, "sub": "robot", "iat": now.Unix(),
			"exp": now.Add(10 * time.Minute).Unix(), "email": "robot@example.com", "email_verified": true,
		})
		kid, err := idp.Keypair.KeyID()
		if err != nil {
			t.Fatal(err)
		}
		tok.Header["kid"], tok.Header["typ"] = kid, typ
		raw, err := tok.SignedString(idp.Keypair.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if code, _, body := s.do("GET", "/api/v1/repos/local/view", nil, "Authorization", "Bearer "+sign("JWT")); code != 200 {
		t.Fatalf("ID token: %d %s", code, body)
	}
	for _, typ := range []string{"at+jwt", "AT+JWT", "application/at+jwt"} {
		for _, call := range [][2]string{{"GET", "/api/v1/repos/local/view"}, {"POST", "/api/v1/repos/local/sync"}, {"GET", "/api/v1/config"}} {
			code, hdr, body := s.do(call[0], call[1], nil, "Authorization", "Bearer "+sign(typ))
			if code != 401 || hdr.Get("WWW-Authenticate") != `Bearer error="invalid_token"` || !strings.Contains(body, "access token (typ at+jwt)") {
				t.Errorf("typ %s, %s %s: %d %q %s", typ, call[0], call[1], code, hdr.Get("WWW-Authenticate"), body)
			}
		}
	}
}
