package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/stackd/stackd/gen"
)

// browser is an http.Client with a cookie jar that records the redirect
// chain and the cookies each hop set.
type browser struct {
	*http.Client
	hops       []*url.URL
	setCookies map[string][]*http.Cookie // by path of the response that set them
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{setCookies: map[string][]*http.Cookie{}}
	b.Client = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		b.hops = append(b.hops, req.URL)
		if resp := req.Response; resp != nil {
			b.setCookies[resp.Request.URL.Path] = append(b.setCookies[resp.Request.URL.Path], resp.Cookies()...)
		}
		return nil
	}}
	return b
}

func (b *browser) cookie(u string, name string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, c := range b.Jar.Cookies(pu) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signIn runs the browser code flow from /auth/login?return=ret and returns
// the final response.
func (e *env) signIn(t *testing.T, b *browser, ret string) result {
	t.Helper()
	return e.do(t, call{method: http.MethodGet, path: "/auth/login?return=" + url.QueryEscape(ret), client: b.Client})
}

func TestBrowserCodeFlow(t *testing.T) {
	e := newEnv(t, envOpts{mode: ModeOIDC})
	b := newBrowser(t)

	res := e.signIn(t, b, "/api/v1/config")
	if res.status != http.StatusOK {
		t.Fatalf("sign-in ended with %d: %s", res.status, res.body)
	}
	u := mockoidc.DefaultUser()
	if res.echo.Op != "getConfig" || res.echo.Subject != u.Subject || res.echo.Email != u.Email ||
		res.echo.Method != MethodSession || res.echo.Name != u.PreferredUsername {
		t.Errorf("after sign-in the handler saw %+v", res.echo)
	}
	// The chain went to the provider and back.
	var sawIDP, sawCallback bool
	for _, h := range b.hops {
		sawIDP = sawIDP || strings.HasPrefix(h.String(), e.idp.AuthorizationEndpoint())
		if h.Path == "/auth/callback" {
			sawCallback = true
			q := h.Query()
			if q.Get("code") == "" || q.Get("state") == "" {
				t.Errorf("callback without code or state: %s", h)
			}
		}
		if strings.HasPrefix(h.String(), e.idp.AuthorizationEndpoint()) {
			q := h.Query()
			if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
				t.Errorf("authorize request lacks PKCE/nonce/state: %s", h)
			}
			if q.Get("redirect_uri") != e.cfg.BaseURL+"/auth/callback" {
				t.Errorf("redirect_uri = %q", q.Get("redirect_uri"))
			}
		}
	}
	if !sawIDP || !sawCallback {
		t.Fatalf("redirect chain %v", b.hops)
	}
	// Cookie attributes, as set by the callback.
	var sess *http.Cookie
	for _, c := range b.setCookies["/auth/callback"] {
		if c.Name == SessionCookie {
			sess = c
		}
	}
	if sess == nil {
		t.Fatal("callback set no session cookie")
	}
	if !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || sess.Secure {
		t.Errorf("session cookie attributes: %+v", sess)
	}
	if sess.MaxAge != int(DefaultSessionTTL/time.Second) {
		t.Errorf("session cookie Max-Age = %d", sess.MaxAge)
	}
	if _, err := e.st.Session(context.Background(), sess.Value, e.clk.Now()); err != nil {
		t.Errorf("session not in store: %v", err)
	}

	csrf := map[string]string{CSRFHeader: "1"}
	tests := []struct {
		name     string
		header   map[string]string
		want     int
		wantSlug string
	}{
		{"with csrf header", csrf, http.StatusOK, ""},
		{"without csrf header", nil, http.StatusForbidden, "csrf"},
		{"foreign origin", map[string]string{CSRFHeader: "1", "Origin": "https://evil.example"}, http.StatusForbidden, "csrf"},
		{"null origin", map[string]string{CSRFHeader: "1", "Origin": "null"}, http.StatusForbidden, "csrf"},
		{"own origin", map[string]string{CSRFHeader: "1", "Origin": e.cfg.BaseURL}, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, call{method: http.MethodPost, path: "/api/v1/repos/r1/sync", header: tt.header, client: b.Client})
			if r.status != tt.want || r.slug != tt.wantSlug {
				t.Fatalf("status %d slug %q, want %d %q: %s", r.status, r.slug, tt.want, tt.wantSlug, r.body)
			}
			if tt.want == http.StatusOK && r.echo.Method != MethodSession {
				t.Errorf("principal method %q", r.echo.Method)
			}
		})
	}
	// A protected read needs no CSRF header.
	if r := e.do(t, call{method: http.MethodGet, path: "/api/v1/private", client: b.Client}); r.status != http.StatusOK {
		t.Errorf("protected read with session: %d", r.status)
	}

	// Sign out: CSRF-checked, deletes the session and expires the cookie.
	if r := e.do(t, call{method: http.MethodPost, path: "/auth/logout", client: b.Client}); r.status != http.StatusForbidden || r.slug != "csrf" {
		t.Fatalf("logout without csrf header: %d %q", r.status, r.slug)
	}
	if r := e.do(t, call{method: http.MethodPost, path: "/auth/logout", header: csrf, client: b.Client}); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if c := b.cookie(e.srv.URL, SessionCookie); c != nil {
		t.Errorf("session cookie kept after logout: %+v", c)
	}
	if _, err := e.st.Session(context.Background(), sess.Value, e.clk.Now()); err == nil {
		t.Error("session still in store after logout")
	}
	// The old cookie value no longer authenticates.
	r := e.do(t, call{method: http.MethodGet, path: "/api/v1/private", header: map[string]string{"Cookie": SessionCookie + "=" + sess.Value}})
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("old cookie after logout: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
}

func TestReturnPathOnlyRelative(t *testing.T) {
	e := newEnv(t, envOpts{mode: ModeOIDC})
	for _, ret := range []string{"https://evil.example/x", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"} {
		t.Run(ret, func(t *testing.T) {
			b := newBrowser(t)
			e.signIn(t, b, ret)
			last := b.hops[len(b.hops)-1]
			if last.Host != e.srv.Listener.Addr().String() || last.Path != "/" {
				t.Fatalf("sign-in returned to %s", last)
			}
		})
	}
}

func TestSafeReturn(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/repos/x?tab=stacks#top", "/repos/x?tab=stacks#top"},
		{"https://evil.example", "/"},
		{"//evil.example", "/"},
		{"/\\evil.example", "/"},
		{"relative", "/"},
		{"/a\r\nSet-Cookie: x", "/"},
		{"http:/evil", "/"},
	}
	for _, tt := range tests {
		if got := safeReturn(tt.in); got != tt.want {
			t.Errorf("safeReturn(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSecureCookiesWithHTTPSBaseURL(t *testing.T) {
	idp := startIDP(t)
	e := newEnv(t, envOpts{mode: ModeOIDC, idp: idp, cfg: func(c *Config) { c.BaseURL = "https://stackd.example.com" }})
	h := e.srv.Config.Handler

	// /auth/login, served directly: the login cookie is Secure too.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://stackd.example.com/auth/login?return=/x", nil))
	if rec.Code != http.StatusFound {
		t.Fatalf("login: %d", rec.Code)
	}
	login := rec.Result().Cookies()
	if len(login) != 1 || login[0].Name != loginCookie || !login[0].Secure || !login[0].HttpOnly {
		t.Fatalf("login cookie: %+v", login)
	}
	// The provider, over HTTP, without following its redirect.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Host != "stackd.example.com" || back.Path != "/auth/callback" {
		t.Fatalf("provider redirected to %v (%v)", back, err)
	}
	// The callback, served directly with the login cookie.
	req := httptest.NewRequest(http.MethodGet, back.String(), nil)
	req.AddCookie(login[0])
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/x" {
		t.Fatalf("callback: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	var sess *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == SessionCookie {
			sess = c
		}
	}
	if sess == nil || !sess.Secure || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" {
		t.Fatalf("session cookie: %+v", sess)
	}
	raw := strings.Join(rec.Header().Values("Set-Cookie"), "\n")
	for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(raw, attr) {
			t.Errorf("Set-Cookie lacks %s: %s", attr, raw)
		}
	}
	// Without the login cookie (it is cleared by the callback) the state is
	// unknown: a replayed callback is refused.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, back.String(), nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("callback without login cookie: %d", rec.Code)
	}
}

func TestCallbackRefusals(t *testing.T) {
	e := newEnv(t, envOpts{mode: ModeOIDC})
	h := e.srv.Config.Handler
	start := func(t *testing.T) (*http.Cookie, url.Values) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/auth/login", nil))
		loc, _ := url.Parse(rec.Header().Get("Location"))
		return rec.Result().Cookies()[0], loc.Query()
	}
	tests := []struct {
		name    string
		query   func(q url.Values) string
		cookie  func(c *http.Cookie) *http.Cookie
		advance time.Duration
		want    int
	}{
		{"wrong state", func(q url.Values) string { return "state=other&code=x" }, nil, 0, http.StatusBadRequest},
		{"no cookie", func(q url.Values) string { return "state=" + q.Get("state") + "&code=x" },
			func(*http.Cookie) *http.Cookie { return nil }, 0, http.StatusBadRequest},
		{"tampered cookie", func(q url.Values) string { return "state=" + q.Get("state") + "&code=x" },
			func(c *http.Cookie) *http.Cookie { c.Value = "x" + c.Value; return c }, 0, http.StatusBadRequest},
		{"expired login", func(q url.Values) string { return "state=" + q.Get("state") + "&code=x" }, nil, loginTTL, http.StatusBadRequest},
		{"provider error", func(q url.Values) string { return "state=" + q.Get("state") + "&error=access_denied" }, nil, 0, http.StatusUnauthorized},
		{"unknown code", func(q url.Values) string { return "state=" + q.Get("state") + "&code=nope" }, nil, 0, http.StatusUnauthorized},
		{"no code", func(q url.Values) string { return "state=" + q.Get("state") }, nil, 0, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, q := start(t)
			if tt.cookie != nil {
				c = tt.cookie(c)
			}
			e.clk.Advance(tt.advance)
			req := httptest.NewRequest(http.MethodGet, "/auth/callback?"+tt.query(q), nil)
			if c != nil {
				req.AddCookie(c)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			for _, sc := range rec.Result().Cookies() {
				if sc.Name == SessionCookie {
					t.Errorf("refused callback set a session cookie")
				}
			}
		})
	}
}

func TestAllowlistsAtSignIn(t *testing.T) {
	idp := startIDP(t)
	user := func(email string, verified bool, groups ...string) *mockoidc.MockUser {
		return &mockoidc.MockUser{Subject: "s-" + email, Email: email, EmailVerified: verified, PreferredUsername: "u", Groups: groups}
	}
	tests := []struct {
		name string
		cfg  func(*Config)
		user *mockoidc.MockUser
		ok   bool
	}{
		{"no allowlist, any user allowed", nil, user("a@x.example", false), true},
		{"no allowlist and not any user: nobody", func(c *Config) { c.AllowAnyUser = false }, user("a@x.example", true), false},
		{"email listed", func(c *Config) { c.AllowedEmails = []string{"A@X.example"} }, user("a@x.example", true), true},
		{"email listed but unverified", func(c *Config) { c.AllowedEmails = []string{"a@x.example"} }, user("a@x.example", false), false},
		{"email not listed", func(c *Config) { c.AllowedEmails = []string{"b@x.example"} }, user("a@x.example", true), false},
		{"domain listed", func(c *Config) { c.AllowedDomains = []string{"x.example"} }, user("a@x.example", true), true},
		{"domain listed but unverified", func(c *Config) { c.AllowedDomains = []string{"x.example"} }, user("a@x.example", false), false},
		{"subdomain is another domain", func(c *Config) { c.AllowedDomains = []string{"x.example"} }, user("a@evil.x.example", true), false},
		{"group listed", func(c *Config) { c.AllowedGroups = []string{"ops"} }, user("a@y.example", false, "dev", "ops"), true},
		{"group not listed", func(c *Config) { c.AllowedGroups = []string{"ops"} }, user("a@y.example", true, "dev"), false},
		{"any list matches", func(c *Config) {
			c.AllowedDomains = []string{"z.example"}
			c.AllowedGroups = []string{"ops"}
		}, user("a@y.example", true, "ops"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{mode: ModeOIDC, idp: idp, cfg: tt.cfg})
			idp.QueueUser(tt.user)
			b := newBrowser(t)
			res := e.signIn(t, b, "/api/v1/config")
			if tt.ok {
				if res.status != http.StatusOK || res.echo.Subject != tt.user.Subject {
					t.Fatalf("sign-in: %d %+v %s", res.status, res.echo, res.body)
				}
				return
			}
			if res.status != http.StatusForbidden || res.slug != "forbidden" {
				t.Fatalf("refused sign-in answered %d %q", res.status, res.slug)
			}
			if c := b.cookie(e.srv.URL, SessionCookie); c != nil {
				t.Errorf("refused user got a session cookie")
			}
			if n, err := e.st.Sweep(context.Background(), e.clk.Now().Add(365*24*time.Hour)); err != nil || n != 0 {
				t.Errorf("refused user left %d sessions (%v)", n, err)
			}
		})
	}
}

// TestAdminsAtSignIn: a signed-in user is an admin by a verified e-mail
// address of AdminEmails or a groups-claim value of AdminGroups, decided
// on every request of the session. The groups scope is asked for when
// only AdminGroups needs it (mockoidc sends the claim only then).
func TestAdminsAtSignIn(t *testing.T) {
	idp := startIDP(t)
	user := func(email string, verified bool, groups ...string) *mockoidc.MockUser {
		return &mockoidc.MockUser{Subject: "s-" + email, Email: email, EmailVerified: verified, PreferredUsername: "u", Groups: groups}
	}
	tests := []struct {
		name  string
		cfg   func(*Config)
		user  *mockoidc.MockUser
		admin bool
	}{
		{"no admins", nil, user("root@x.example", true, "ops"), false},
		{"admin e-mail", func(c *Config) { c.AdminEmails = []string{"Root@X.example"} }, user("root@x.example", true), true},
		{"admin e-mail unverified", func(c *Config) { c.AdminEmails = []string{"root@x.example"} }, user("root@x.example", false), false},
		{"other e-mail", func(c *Config) { c.AdminEmails = []string{"root@x.example"} }, user("ann@x.example", true), false},
		{"admin group", func(c *Config) { c.AdminGroups = []string{"ops"} }, user("ann@x.example", false, "dev", "ops"), true},
		{"other group", func(c *Config) { c.AdminGroups = []string{"ops"} }, user("ann@x.example", true, "dev"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{mode: ModeOIDC, idp: idp, cfg: tt.cfg})
			idp.QueueUser(tt.user)
			b := newBrowser(t)
			res := e.signIn(t, b, "/api/v1/config")
			if res.status != http.StatusOK || res.echo.Subject != tt.user.Subject {
				t.Fatalf("sign-in: %d %+v %s", res.status, res.echo, res.body)
			}
			if res.echo.Admin != tt.admin {
				t.Errorf("admin = %v, want %v (principal %+v)", res.echo.Admin, tt.admin, res.echo)
			}
			again := e.do(t, call{method: http.MethodGet, path: "/api/v1/private", client: b.Client})
			if again.status != http.StatusOK || again.echo.Admin != tt.admin {
				t.Errorf("next request of the session: %d admin %v, want %v", again.status, again.echo.Admin, tt.admin)
			}
		})
	}
}

func TestSessionsSurviveRestart(t *testing.T) {
	idp := startIDP(t)
	first := newEnv(t, envOpts{mode: ModeOIDC, idp: idp})
	b := newBrowser(t)
	if res := first.signIn(t, b, "/api/v1/config"); res.status != http.StatusOK {
		t.Fatalf("sign-in: %d", res.status)
	}
	first.srv.Close()
	if err := first.st.Close(); err != nil {
		t.Fatal(err)
	}
	// A new Auth (new login key, new process state) on the same file. The jar
	// sends the cookie to the new port: cookies are per host.
	second := newEnv(t, envOpts{mode: ModeOIDC, idp: idp, dbPath: first.dbPath, clk: first.clk})
	res := second.do(t, call{method: http.MethodGet, path: "/api/v1/private", client: b.Client})
	if res.status != http.StatusOK || res.echo.Method != MethodSession || res.echo.Subject != mockoidc.DefaultUser().Subject {
		t.Fatalf("after restart: %d %+v", res.status, res.echo)
	}
	// Past the TTL the session is gone.
	second.clk.Advance(DefaultSessionTTL + time.Second)
	res = second.do(t, call{method: http.MethodGet, path: "/api/v1/private", client: b.Client})
	if res.status != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", res.status)
	}
}

func TestSessionAllowlistReapplied(t *testing.T) {
	idp := startIDP(t)
	first := newEnv(t, envOpts{mode: ModeOIDC, idp: idp})
	b := newBrowser(t)
	if res := first.signIn(t, b, "/api/v1/config"); res.status != http.StatusOK {
		t.Fatalf("sign-in: %d", res.status)
	}
	second := newEnv(t, envOpts{mode: ModeOIDC, idp: idp, dbPath: first.dbPath, clk: first.clk,
		cfg: func(c *Config) { c.AllowedDomains = []string{"elsewhere.example"} }})
	if res := second.do(t, call{method: http.MethodGet, path: "/api/v1/config", client: b.Client}); res.status != http.StatusForbidden {
		t.Fatalf("session of a user no longer allowed: %d", res.status)
	}
}

func TestBearerTokens(t *testing.T) {
	e := newEnv(t, envOpts{mode: ModeOIDC, cfg: func(c *Config) {
		c.ExtraAudiences = []string{"stackd-cli"}
		c.AllowedDomains = []string{"example.com"}
	}})
	foreign, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	foreignKP, err := mockoidc.NewKeypair(foreign)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now()
	tests := []struct {
		name     string
		header   map[string]string
		want     int
		wantAuth string // WWW-Authenticate
		detail   string
	}{
		{"good", bearer(e.token(t, nil)), http.StatusOK, "", ""},
		{"lower-case scheme", map[string]string{"Authorization": "bearer " + e.token(t, nil)}, http.StatusOK, "", ""},
		{"extra audience", bearer(e.token(t, jwt.MapClaims{"aud": "stackd-cli"})), http.StatusOK, "", ""},
		{"one of several audiences", bearer(e.token(t, jwt.MapClaims{"aud": []string{"other", "stackd-cli"}})), http.StatusOK, "", ""},
		{"wrong audience", bearer(e.token(t, jwt.MapClaims{"aud": "someone-else"})), http.StatusUnauthorized, `Bearer error="invalid_token"`, "not a valid ID token"},
		{"expired", bearer(e.token(t, jwt.MapClaims{"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(-time.Minute).Unix()})), http.StatusUnauthorized, `Bearer error="invalid_token"`, "expired"},
		{"wrong issuer", bearer(e.token(t, jwt.MapClaims{"iss": "https://issuer.example"})), http.StatusUnauthorized, `Bearer error="invalid_token"`, ""},
		{"foreign key", bearer(signToken(t, foreignKP, e.defaultClaims(nil))), http.StatusUnauthorized, `Bearer error="invalid_token"`, ""},
		{"garbage", bearer("not.a.jwt"), http.StatusUnauthorized, `Bearer error="invalid_token"`, ""},
		{"basic scheme", map[string]string{"Authorization": "Basic dTpw"}, http.StatusUnauthorized, `Bearer error="invalid_request"`, ""},
		{"missing", nil, http.StatusUnauthorized, "Bearer", "authentication required"},
		{"not allowed", bearer(e.token(t, jwt.MapClaims{"email": "x@other.example"})), http.StatusForbidden, "", "not allowed"},
		{"unverified email", bearer(e.token(t, jwt.MapClaims{"email_verified": false})), http.StatusForbidden, "", ""},
		{"string email_verified", bearer(e.token(t, jwt.MapClaims{"email_verified": "true"})), http.StatusOK, "", ""},
		{"typ JWT", bearer(e.typedToken(t, "JWT")), http.StatusOK, "", ""},
		{"access token at+jwt", bearer(e.typedToken(t, "at+jwt")), http.StatusUnauthorized, `Bearer error="invalid_token"`, "access token (typ at+jwt)"},
		{"access token AT+JWT", bearer(e.typedToken(t, "AT+JWT")), http.StatusUnauthorized, `Bearer error="invalid_token"`, "access token (typ at+jwt)"},
		{"access token application/at+jwt", bearer(e.typedToken(t, "application/at+jwt")), http.StatusUnauthorized, `Bearer error="invalid_token"`, "access token (typ at+jwt)"},
		{"access token Application/At+Jwt", bearer(e.typedToken(t, "Application/At+Jwt")), http.StatusUnauthorized, `Bearer error="invalid_token"`, "access token (typ at+jwt)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, call{method: http.MethodGet, path: "/api/v1/private", header: tt.header})
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != tt.wantAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantAuth)
			}
			if !strings.Contains(string(r.body), tt.detail) {
				t.Errorf("body %s lacks %q", r.body, tt.detail)
			}
			if tt.want == http.StatusOK && (r.echo.Method != MethodBearer || r.echo.Subject != "bearer-sub" || r.echo.Email != "robot@example.com") {
				t.Errorf("principal %+v", r.echo)
			}
		})
	}

	// A bad token is refused even on a public operation; no token is fine.
	if r := e.do(t, call{method: http.MethodGet, path: "/api/v1/config", header: bearer("not.a.jwt")}); r.status != http.StatusUnauthorized {
		t.Errorf("bad token on public op: %d", r.status)
	}
	if r := e.do(t, call{method: http.MethodGet, path: "/api/v1/config"}); r.status != http.StatusOK || r.echo.Subject != "" {
		t.Errorf("anonymous public op: %d %+v", r.status, r.echo)
	}
	// A good token expires by the injected clock.
	tok := e.token(t, nil)
	e.clk.Advance(11 * time.Minute)
	if r := e.do(t, call{method: http.MethodGet, path: "/api/v1/private", header: bearer(tok)}); r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "expired") {
		t.Errorf("token after its expiry: %d %s", r.status, r.body)
	}
	// Bearer requests are exempt from CSRF, even with a foreign Origin.
	r := e.do(t, call{method: http.MethodPost, path: "/api/v1/repos/r/sync", header: map[string]string{
		"Authorization": "Bearer " + e.token(t, nil), "Origin": "https://evil.example"}})
	if r.status != http.StatusOK {
		t.Errorf("bearer unsafe call: %d %s", r.status, r.body)
	}
}

// typedToken is an ID token with every valid claim, signed by the
// provider's own key (which the verifier trusts), whose JOSE header carries
// typ. mockoidc's SignJWT cannot set typ, so the token is built here the
// way it builds its own: RS256 with the key id.
func (e *env) typedToken(t *testing.T, typ string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, e.defaultClaims(nil))
	kid, err := e.idp.Keypair.KeyID()
	if err != nil {
		t.Fatal(err)
	}
	tok.Header["kid"] = kid
	tok.Header["typ"] = typ
	s, err := tok.SignedString(e.idp.Keypair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTType(t *testing.T) {
	enc := func(h string) string { return base64.RawURLEncoding.EncodeToString([]byte(h)) + ".e30.sig" }
	tests := []struct {
		raw    string
		typ    string
		access bool
	}{
		{enc(`{"alg":"RS256","typ":"at+jwt"}`), "at+jwt", true},
		{enc(`{"alg":"RS256","typ":" application/AT+JWT "}`), " application/AT+JWT ", true},
		{enc(`{"alg":"RS256","typ":"JWT"}`), "JWT", false},
		{enc(`{"alg":"RS256"}`), "", false},
		{enc(`{"alg":"RS256","typ":"at+jwt+x"}`), "at+jwt+x", false},
		{enc(`not json`), "", false},
		{"%%%.e30.sig", "", false},
		{"no-dots", "", false},
	}
	for _, tt := range tests {
		typ := jwtType(tt.raw)
		if typ != tt.typ || isAccessTokenType(typ) != tt.access {
			t.Errorf("%s: typ %q access %v, want %q %v", tt.raw, typ, isAccessTokenType(typ), tt.typ, tt.access)
		}
	}
}

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	idp := startIDP(t)
	e := newEnv(t, envOpts{mode: ModeNone})
	good := Config{Mode: ModeOIDC, Issuer: idp.Issuer(), ClientID: idp.ClientID, BaseURL: "https://s.example"}
	tests := []struct {
		name    string
		cfg     func(c Config) Config
		noStore bool
	}{
		{"unknown mode", func(c Config) Config { c.Mode = "ldap"; return c }, false},
		{"no issuer", func(c Config) Config { c.Issuer = ""; return c }, false},
		{"no client id", func(c Config) Config { c.ClientID = ""; return c }, false},
		{"no base URL", func(c Config) Config { c.BaseURL = ""; return c }, false},
		{"relative base URL", func(c Config) Config { c.BaseURL = "/x"; return c }, false},
		{"no store", func(c Config) Config { return c }, true},
		{"CORS origin with path", func(c Config) Config { c.CORSOrigins = []string{"https://ui.example/app"}; return c }, false},
		{"CORS wildcard", func(c Config) Config { c.CORSOrigins = []string{"*"}; return c }, false},
		{"unreachable issuer", func(c Config) Config { c.Issuer = e.srv.URL + "/nothing-here"; return c }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st Store = e.st
			if tt.noStore {
				st = nil
			}
			if _, err := New(ctx, tt.cfg(good), st, nil, nil); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
	if _, err := New(ctx, good, e.st, nil, nil); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

// TestRealContract runs sign-in, a refused mutation and sign-out through the
// project's openapi.yaml, validated as the server does, in a read-only oidc
// posture.
func TestRealContract(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(gen.SpecYAML) // the contract the server embeds
	if err != nil {
		t.Fatalf("the embedded openapi.yaml does not load: %v", err)
	}
	e := newEnv(t, envOpts{mode: ModeOIDC, doc: doc, cfg: func(c *Config) { c.ReadOnly = true }})
	b := newBrowser(t)
	res := e.signIn(t, b, "/api/v1/repos")
	if res.status != http.StatusOK || res.echo.Op != "listRepos" || res.echo.Method != MethodSession {
		t.Fatalf("sign-in through the contract: %d %+v %s", res.status, res.echo, res.body)
	}
	csrf := map[string]string{CSRFHeader: "1"}
	r := e.do(t, call{method: http.MethodPost, path: "/api/v1/repos/r1/sync", header: csrf, client: b.Client})
	if r.status != http.StatusForbidden || r.slug != "read-only" {
		t.Fatalf("sync on a read-only server: %d %q %s", r.status, r.slug, r.body)
	}
	r = e.do(t, call{method: http.MethodPost, path: "/auth/logout", header: csrf, client: b.Client})
	if r.status != http.StatusNoContent {
		t.Fatalf("logout on a read-only server: %d %s", r.status, r.body)
	}
	if c := b.cookie(e.srv.URL, SessionCookie); c != nil {
		t.Error("cookie kept after logout")
	}
}
