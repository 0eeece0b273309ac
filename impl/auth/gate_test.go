package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/validate"
)

// TestGatePostureMatrix sends every kind of operation of the test contract in
// every posture, anonymously and with a bearer ID token. The expectations
// are written out per posture, not derived from Config.Access.
func TestGatePostureMatrix(t *testing.T) {
	ops := []struct {
		op, method, path string
	}{
		{"listRepos", http.MethodGet, "/api/v1/repos"},                // read: {} and schemes
		{"getPrivate", http.MethodGet, "/api/v1/private"},             // signed-in (global security)
		{"touchThing", http.MethodGet, "/api/v1/touch"},               // signed-in, x-stackd-mutating
		{"createRepo", http.MethodPost, "/api/v1/repos"},              // signed-in, mutating
		{"syncRepo", http.MethodPost, "/api/v1/repos/r1/sync"},        // signed-in, mutating
		{"deleteRepo", http.MethodDelete, "/api/v1/repos/r1"},         // signed-in, mutating by method
		{"getRepo", http.MethodGet, "/api/v1/repos/r1"},               // open: only {}
		{"getConfig", http.MethodGet, "/api/v1/config"},               // open
		{"githubWebhook", http.MethodPost, "/api/v1/webhooks/github"}, // open, never mutating
	}
	const (
		ok     = "200"
		signIn = "401 unauthorized"
		ro     = "403 read-only"
		noUser = "403 forbidden"
	)
	// all returns want with every op not listed in except set to def.
	all := func(def string, except map[string]string) map[string]string {
		m := map[string]string{}
		for _, o := range ops {
			m[o.op] = def
			if v, ok := except[o.op]; ok {
				m[o.op] = v
			}
		}
		return m
	}
	mutations := func(v string, more map[string]string) map[string]string {
		m := map[string]string{"touchThing": v, "createRepo": v, "syncRepo": v, "deleteRepo": v}
		maps.Copy(m, more)
		return m
	}
	postures := []struct {
		name             string
		mode             Mode
		readOnly, public bool
		bearer           bool
		want             map[string]string
	}{
		{"local", ModeNone, false, false, false, all(ok, nil)},
		{"local, --public-reads has no effect", ModeNone, false, true, false, all(ok, nil)},
		{"read-only, auth off", ModeNone, true, false, false, all(ok, mutations(ro, map[string]string{"getPrivate": noUser}))},
		{"oidc private, anonymous", ModeOIDC, false, false, false, all(signIn, map[string]string{"getRepo": ok, "getConfig": ok, "githubWebhook": ok})},
		{"oidc private, bearer", ModeOIDC, false, false, true, all(ok, nil)},
		{"oidc public reads, anonymous", ModeOIDC, false, true, false, all(signIn, map[string]string{"listRepos": ok, "getRepo": ok, "getConfig": ok, "githubWebhook": ok})},
		{"oidc public reads, bearer", ModeOIDC, false, true, true, all(ok, nil)},
		{"oidc read-only, anonymous", ModeOIDC, true, false, false, all(ok, mutations(ro, map[string]string{"getPrivate": signIn}))},
		{"oidc read-only, bearer", ModeOIDC, true, false, true, all(ok, mutations(ro, nil))},
		{"oidc read-only and public reads, anonymous", ModeOIDC, true, true, false, all(ok, mutations(ro, map[string]string{"getPrivate": signIn}))},
	}
	idp := startIDP(t)
	for _, p := range postures {
		e := newEnv(t, envOpts{mode: p.mode, idp: idp, cfg: func(c *Config) { c.ReadOnly, c.PublicReads = p.readOnly, p.public }})
		for _, o := range ops {
			t.Run(p.name+"/"+o.op, func(t *testing.T) {
				var h map[string]string
				if p.bearer {
					h = bearer(e.token(t, nil))
				}
				r := e.do(t, call{method: o.method, path: o.path, header: h})
				got := strconv.Itoa(r.status)
				if r.slug != "" {
					got += " " + r.slug
				}
				if got != p.want[o.op] {
					t.Fatalf("%s, want %s: %s", got, p.want[o.op], r.body)
				}
				if r.status == http.StatusOK && r.echo.Op != o.op {
					t.Errorf("handler saw %q", r.echo.Op)
				}
				if r.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("401 without the Bearer challenge: %q", r.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
}

func TestMutatingAndPublic(t *testing.T) {
	doc := loadDoc(t)
	ext := func(v any) *openapi3.Operation {
		return &openapi3.Operation{OperationID: "x", Extensions: map[string]any{MutatingExtension: v}}
	}
	mut := []struct {
		name  string
		route *validate.Route
		want  bool
	}{
		{"nil", nil, false},
		{"get", &validate.Route{Method: "GET", Operation: &openapi3.Operation{}}, false},
		{"head", &validate.Route{Method: "HEAD", Operation: &openapi3.Operation{}}, false},
		{"options", &validate.Route{Method: "OPTIONS"}, false},
		{"post", &validate.Route{Method: "POST", Operation: &openapi3.Operation{}}, true},
		{"put", &validate.Route{Method: "PUT"}, true},
		{"patch", &validate.Route{Method: "PATCH"}, true},
		{"delete", &validate.Route{Method: "DELETE"}, true},
		{"get marked true", &validate.Route{Method: "GET", Operation: ext(true)}, true},
		{"get marked false", &validate.Route{Method: "GET", Operation: ext(false)}, false},
		{"get marked \"true\"", &validate.Route{Method: "GET", Operation: ext("true")}, true},
		{"post marked false", &validate.Route{Method: "POST", Operation: ext(false)}, false},
		{"post marked garbage", &validate.Route{Method: "POST", Operation: ext(42)}, true},
		{"get marked raw true", &validate.Route{Method: "GET", Operation: ext(json.RawMessage("true"))}, true},
		{"webhook", &validate.Route{Method: "POST", Operation: &openapi3.Operation{OperationID: OpGitHubWebhook}}, false},
		{"webhook marked", &validate.Route{Method: "POST", Operation: &openapi3.Operation{OperationID: OpGitHubWebhook,
			Extensions: map[string]any{MutatingExtension: true}}}, false},
	}
	for _, tt := range mut {
		if got := Mutating(tt.route); got != tt.want {
			t.Errorf("Mutating(%s) = %v", tt.name, got)
		}
	}
	secs := func(reqs ...openapi3.SecurityRequirement) *openapi3.SecurityRequirements {
		s := openapi3.SecurityRequirements(reqs)
		return &s
	}
	cookie := openapi3.SecurityRequirement{"cookieAuth": {}}
	empty := openapi3.SecurityRequirement{}
	pub := []struct {
		name   string
		op     *openapi3.Operation
		global openapi3.SecurityRequirements
		want   bool
	}{
		{"inherits protected global", &openapi3.Operation{}, doc.Security, false},
		{"inherits nothing", &openapi3.Operation{}, nil, true},
		{"inherits public global", &openapi3.Operation{}, *secs(empty), true},
		{"own empty requirement", &openapi3.Operation{Security: secs(empty)}, doc.Security, true},
		{"own empty list", &openapi3.Operation{Security: secs()}, doc.Security, true},
		{"own cookie", &openapi3.Operation{Security: secs(cookie)}, nil, false},
		{"own cookie or anonymous", &openapi3.Operation{Security: secs(cookie, empty)}, doc.Security, true},
		{"nil op", nil, doc.Security, false},
	}
	for _, tt := range pub {
		if got := Public(tt.op, tt.global); got != tt.want {
			t.Errorf("Public(%s) = %v", tt.name, got)
		}
	}
	bearerReq := openapi3.SecurityRequirement{"bearerAuth": {}}
	levels := []struct {
		name   string
		op     *openapi3.Operation
		global openapi3.SecurityRequirements
		want   Level
	}{
		{"inherits protected global", &openapi3.Operation{}, doc.Security, LevelSignedIn},
		{"inherits nothing", &openapi3.Operation{}, nil, LevelOpen},
		{"own empty requirement", &openapi3.Operation{Security: secs(empty)}, doc.Security, LevelOpen},
		{"own empty requirement twice", &openapi3.Operation{Security: secs(empty, empty)}, doc.Security, LevelOpen},
		{"own empty list", &openapi3.Operation{Security: secs()}, doc.Security, LevelOpen},
		{"own cookie", &openapi3.Operation{Security: secs(cookie)}, nil, LevelSignedIn},
		{"own cookie or bearer", &openapi3.Operation{Security: secs(cookie, bearerReq)}, nil, LevelSignedIn},
		{"anonymous or cookie", &openapi3.Operation{Security: secs(empty, cookie)}, doc.Security, LevelRead},
		{"cookie, bearer or anonymous", &openapi3.Operation{Security: secs(cookie, bearerReq, empty)}, nil, LevelRead},
		{"nil op", nil, nil, LevelSignedIn},
	}
	for _, tt := range levels {
		if got := Classify(tt.op, tt.global); got != tt.want {
			t.Errorf("Classify(%s) = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestAccess pins the posture table of Config.Access.
func TestAccess(t *testing.T) {
	const (
		A = AccessAnonymous
		S = AccessSignIn
		N = AccessNoUsers
	)
	tests := []struct {
		cfg                  Config
		open, read, signedIn Access
	}{
		{Config{}, A, A, A},
		{Config{Mode: ModeNone, PublicReads: true, AllowAnyUser: true}, A, A, A},
		{Config{ReadOnly: true}, A, A, N},
		{Config{Mode: ModeNone, ReadOnly: true, PublicReads: true}, A, A, N},
		{Config{Mode: ModeOIDC}, A, S, S},
		{Config{Mode: ModeOIDC, AllowAnyUser: true}, A, S, S},
		{Config{Mode: ModeOIDC, PublicReads: true}, A, A, S},
		{Config{Mode: ModeOIDC, ReadOnly: true}, A, A, S},
		{Config{Mode: ModeOIDC, ReadOnly: true, PublicReads: true}, A, A, S},
	}
	for _, tt := range tests {
		got := [3]Access{tt.cfg.Access(LevelOpen), tt.cfg.Access(LevelRead), tt.cfg.Access(LevelSignedIn)}
		if want := [3]Access{tt.open, tt.read, tt.signedIn}; got != want {
			t.Errorf("%+v: open, read, signed-in = %v, want %v", tt.cfg, got, want)
		}
		if tt.cfg.ReadsAnonymous() != (tt.read == A) {
			t.Errorf("%+v: ReadsAnonymous = %v", tt.cfg, tt.cfg.ReadsAnonymous())
		}
		if d := tt.cfg.Describe(); d == "" || strings.Contains(d, "\n") {
			t.Errorf("%+v: Describe = %q", tt.cfg, d)
		}
	}
}

// TestServedSecurity: what the served spec shows per posture: {} first
// where credentials do not decide (anonymous passes, or everyone is refused
// alike), then the schemes where there are users.
func TestServedSecurity(t *testing.T) {
	doc := loadDoc(t)
	op := func(id string) (string, *openapi3.Operation) {
		for _, item := range doc.Paths.Map() {
			for m, o := range item.Operations() {
				if o.OperationID == id {
					return m, o
				}
			}
		}
		t.Fatalf("no operation %s", id)
		return "", nil
	}
	show := func(reqs openapi3.SecurityRequirements) string {
		var parts []string
		for _, r := range reqs {
			names := slices.Sorted(maps.Keys(r))
			parts = append(parts, "{"+strings.Join(names, ",")+"}")
		}
		return strings.Join(parts, " ")
	}
	tests := []struct {
		cfg                        Config
		users                      bool
		read, signedIn, sync, open string
	}{
		{Config{Mode: ModeOIDC}, true, "{cookieAuth} {bearerAuth}", "{cookieAuth} {bearerAuth}", "{cookieAuth} {bearerAuth}", "{}"},
		{Config{Mode: ModeOIDC, PublicReads: true}, true, "{} {cookieAuth} {bearerAuth}", "{cookieAuth} {bearerAuth}", "{cookieAuth} {bearerAuth}", "{}"},
		// Read-only: a mutation is refused to everyone, credentials or not.
		{Config{Mode: ModeOIDC, ReadOnly: true}, true, "{} {cookieAuth} {bearerAuth}", "{cookieAuth} {bearerAuth}", "{}", "{}"},
		// Auth off: nobody to sign in as; every operation is just {}.
		{Config{}, false, "{}", "{}", "{}", "{}"},
		{Config{ReadOnly: true}, false, "{}", "{}", "{}", "{}"},
	}
	for _, tt := range tests {
		for _, c := range []struct{ id, want string }{{"listRepos", tt.read}, {"getPrivate", tt.signedIn}, {"syncRepo", tt.sync}, {"getConfig", tt.open}} {
			m, o := op(c.id)
			reqs, users := tt.cfg.ServedSecurity(m, o, doc.Security)
			if got := show(reqs); users != tt.users || got != c.want {
				t.Errorf("%+v %s: %q (users %v), want %q (users %v)", tt.cfg, c.id, got, users, c.want, tt.users)
			}
		}
	}
}

// TestContractClassification pins how the gate reads the real contract:
// which operations are mutating (read-only refuses them, the audit logs
// them) and which are public.
func TestContractClassification(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(gen.SpecYAML) // the contract the server embeds
	if err != nil {
		t.Fatalf("the embedded openapi.yaml does not load: %v", err)
	}
	type class struct {
		mutating bool
		level    Level
	}
	known := map[string]class{
		OpCreateRepo:    {true, LevelSignedIn},
		OpSyncRepo:      {true, LevelSignedIn},
		OpGitHubWebhook: {false, LevelOpen},
		"authLogin":     {false, LevelOpen},
		"authCallback":  {false, LevelOpen},
		"authLogout":    {false, LevelOpen},
		"getConfig":     {false, LevelOpen},
		"getHealth":     {false, LevelOpen},
		"getReady":      {false, LevelOpen},
		"getRepo":       {false, LevelRead},
		"listRepos":     {false, LevelRead},
		"getView":       {false, LevelRead},
		"getBranchDiff": {false, LevelRead},
		"streamEvents":  {false, LevelRead},
		"getMe":         {false, LevelSignedIn},
		"listAudit":     {false, LevelSignedIn},
	}
	seen := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			route := &validate.Route{Operation: op, Path: path, Method: method}
			want, ok := known[op.OperationID]
			if !ok {
				if method == http.MethodGet && Mutating(route) {
					t.Errorf("GET %s is mutating", op.OperationID)
				}
				continue
			}
			seen++
			if got := Mutating(route); got != want.mutating {
				t.Errorf("%s %s: Mutating = %v", method, op.OperationID, got)
			}
			if got := Classify(op, doc.Security); got != want.level {
				t.Errorf("%s %s: level %s, want %s", method, op.OperationID, got, want.level)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("only %d known operations in openapi.yaml", seen)
	}
}

func TestClientIP(t *testing.T) {
	a, err := New(context.Background(), Config{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"direct ignores xff", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"proxy without xff", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"proxy with client", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed left entry", "10.1.2.3:4000", []string{"1.1.1.1, 198.51.100.1"}, "198.51.100.1"},
		{"chain of proxies", "10.1.2.3:4000", []string{"198.51.100.1, 10.9.9.9", "10.8.8.8"}, "198.51.100.1"},
		{"all trusted", "10.1.2.3:4000", []string{"10.2.2.2, 10.3.3.3"}, "10.2.2.2"},
		{"garbage stops the walk", "10.1.2.3:4000", []string{"198.51.100.1, junk, 10.3.3.3"}, "10.3.3.3"},
		{"xff with port", "10.1.2.3:4000", []string{"198.51.100.1:5555"}, "198.51.100.1"},
		{"ipv6 proxy", "[::1]:4000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"mapped ipv4", "[::ffff:203.0.113.9]:4000", nil, "203.0.113.9"},
		{"unparsable remote", "pipe", nil, "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := a.clientIP(r); got != tt.want {
				t.Errorf("clientIP = %q, want %q", got, tt.want)
			}
		})
	}
	// End to end: the handler sees the client address through ClientIP.
	e := newEnv(t, envOpts{mode: ModeNone, cfg: func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}})
	r := e.do(t, call{method: http.MethodGet, path: "/api/v1/repos", header: map[string]string{"X-Forwarded-For": "198.51.100.7"}})
	if r.echo.Client != "198.51.100.7" {
		t.Errorf("handler saw client %q", r.echo.Client)
	}
}

// rlStep is one request of a rate-limit scenario.
type rlStep struct {
	name       string
	advance    time.Duration
	method     string
	path       string
	from       string            // X-Forwarded-For (the proxy is trusted)
	header     map[string]string // more headers
	want       int
	retryAfter string
	key        string // the bucket key the handler saw (200 only)
}

func runSteps(t *testing.T, e *env, clk *clock, steps []rlStep) {
	t.Helper()
	for _, st := range steps {
		clk.Advance(st.advance)
		h := map[string]string{"X-Forwarded-For": st.from}
		maps.Copy(h, st.header)
		method := st.method
		if method == "" {
			method = http.MethodGet
		}
		r := e.do(t, call{method: method, path: st.path, header: h})
		if r.status != st.want {
			t.Fatalf("%s: status %d, want %d: %s", st.name, r.status, st.want, r.body)
		}
		if got := r.header.Get("Retry-After"); got != st.retryAfter {
			t.Errorf("%s: Retry-After %q, want %q", st.name, got, st.retryAfter)
		}
		if st.want == 429 && r.slug != "too-many-requests" {
			t.Errorf("%s: slug %q", st.name, r.slug)
		}
		if st.key != "" && r.echo.Key != st.key {
			t.Errorf("%s: bucket key %q, want %q", st.name, r.echo.Key, st.key)
		}
	}
}

func TestRateLimits(t *testing.T) {
	const a, b = "198.51.100.1", "198.51.100.2"
	trust := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	t.Run("by principal, else by address", func(t *testing.T) {
		clk := newClock(start)
		e := newEnv(t, envOpts{mode: ModeOIDC, clk: clk, cfg: func(c *Config) {
			c.Rate = RateLimit{PerSecond: 1, Burst: 2}
			c.PublicReads = true
			c.TrustedProxies = trust
		}})
		u := bearer(e.token(t, jwt.MapClaims{"sub": "u"}))
		v := bearer(e.token(t, jwt.MapClaims{"sub": "v"}))
		runSteps(t, e, clk, []rlStep{
			{name: "anonymous 1", path: "/api/v1/repos", from: a, want: 200, key: "ip:" + a},
			{name: "anonymous 2 (burst)", path: "/api/v1/repos", from: a, want: 200},
			{name: "anonymous 3", path: "/api/v1/repos", from: a, want: 429, retryAfter: "1"},
			{name: "another address", path: "/api/v1/repos", from: b, want: 200, key: "ip:" + b},
			{name: "a user at the spent address", path: "/api/v1/repos", from: a, header: u, want: 200, key: "user:u"},
			{name: "the user again", path: "/api/v1/repos", from: b, header: u, want: 200},
			{name: "the user spent, wherever from", path: "/api/v1/repos", from: b, header: u, want: 429, retryAfter: "1"},
			{name: "another user at the same address", path: "/api/v1/repos", from: a, header: v, want: 200, key: "user:v"},
			{name: "health is never limited", path: "/healthz", from: a, want: 200},
			{name: "a second later", advance: time.Second, path: "/api/v1/repos", from: a, want: 200},
		})
		for range 20 {
			runSteps(t, e, clk, []rlStep{{name: "health", path: "/healthz", from: a, want: 200}})
		}
	})

	t.Run("failed authentication has its own bucket per address", func(t *testing.T) {
		clk := newClock(start)
		e := newEnv(t, envOpts{mode: ModeOIDC, clk: clk, cfg: func(c *Config) {
			c.Rate = RateLimit{PerSecond: 1, Burst: 2}
			c.FailRate = RateLimit{PerSecond: 0.5, Burst: 2}
			c.PublicReads = true
			c.TrustedProxies = trust
		}})
		bad := bearer("not-a-token")
		u := bearer(e.token(t, jwt.MapClaims{"sub": "u"}))
		runSteps(t, e, clk, []rlStep{
			{name: "bad token 1", path: "/api/v1/repos", from: a, header: bad, want: 401},
			{name: "bad token 2", path: "/api/v1/repos", from: a, header: bad, want: 401},
			{name: "bad token 3", path: "/api/v1/repos", from: a, header: bad, want: 429, retryAfter: "2"},
			{name: "bad token 4", path: "/api/v1/repos", from: a, header: bad, want: 429, retryAfter: "2"},
			{name: "bad tokens spent nothing of the address's API bucket", path: "/api/v1/repos", from: a, want: 200},
			{name: "nor of a user's there", path: "/api/v1/repos", from: a, header: u, want: 200, key: "user:u"},
			{name: "the user's sync", method: http.MethodPost, path: "/api/v1/repos/r/sync", from: a, header: u, want: 200},
			{name: "a bad token elsewhere", path: "/api/v1/repos", from: b, header: bad, want: 401},
			{name: "refilled", advance: 2 * time.Second, path: "/api/v1/repos", from: a, header: bad, want: 401},
			{name: "health answers bad tokens without limit", path: "/healthz", from: a, header: bad, want: 401},
			{name: "health again", path: "/healthz", from: a, header: bad, want: 401},
			{name: "health a third time", path: "/healthz", from: a, header: bad, want: 401},
		})
	})

	t.Run("syncs and onboardings", func(t *testing.T) {
		clk := newClock(start)
		e := newEnv(t, envOpts{mode: ModeOIDC, clk: clk, cfg: func(c *Config) {
			c.Rate = RateLimit{PerSecond: -1}
			c.SyncRate = RateLimit{PerSecond: 0.25, Burst: 1}
			c.TrustedProxies = trust
		}})
		u := bearer(e.token(t, jwt.MapClaims{"sub": "u"}))
		v := bearer(e.token(t, jwt.MapClaims{"sub": "v"}))
		runSteps(t, e, clk, []rlStep{
			{name: "a sync that creates a run", method: http.MethodPost, path: "/api/v1/repos/r/sync", from: a, header: u, want: 200},
			{name: "another", method: http.MethodPost, path: "/api/v1/repos/r/sync", from: a, header: u, want: 429, retryAfter: "4"},
			{name: "another user at the address", method: http.MethodPost, path: "/api/v1/repos/r/sync", from: a, header: v, want: 200},
			{name: "onboarding shares the sync bucket", method: http.MethodPost, path: "/api/v1/repos", from: a, header: u, want: 429, retryAfter: "4"},
			{name: "refilled", advance: 4 * time.Second, method: http.MethodPost, path: "/api/v1/repos", from: a, header: u, want: 200},
		})
	})

	t.Run("webhooks", func(t *testing.T) {
		clk := newClock(start)
		e := newEnv(t, envOpts{mode: ModeNone, clk: clk, cfg: func(c *Config) {
			c.Rate = RateLimit{PerSecond: 0.001, Burst: 1}
			c.FailRate = RateLimit{PerSecond: 0.5, Burst: 1}
			c.TrustedProxies = trust
		}})
		wellFormed := map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("ab", 32)}
		signed := map[string]string{"X-Hub-Signature-256": wellFormed["X-Hub-Signature-256"], "X-Test-Signed": "1"}
		const hook = "/api/v1/webhooks/github"
		steps := []rlStep{
			{name: "the API bucket", path: "/api/v1/repos", from: a, want: 200},
			{name: "spent", path: "/api/v1/repos", from: a, want: 429, retryAfter: "1000"},
		}
		for i := range 8 {
			steps = append(steps, rlStep{name: fmt.Sprint("verified delivery ", i), method: http.MethodPost, path: hook, from: a, header: signed, want: 200})
		}
		steps = append(steps,
			rlStep{name: "a wrong signature is charged by the handler", method: http.MethodPost, path: hook, from: a, header: wellFormed, want: 200},
			rlStep{name: "the next is refused", method: http.MethodPost, path: hook, from: a, header: wellFormed, want: 429, retryAfter: "2"},
			rlStep{name: "no signature: refused by the gate", method: http.MethodPost, path: hook, from: a, want: 429, retryAfter: "2"},
			rlStep{name: "verified deliveries still pass", method: http.MethodPost, path: hook, from: a, header: signed, want: 200},
			rlStep{name: "no signature elsewhere: charged by the gate", method: http.MethodPost, path: hook, from: b, want: 200},
			rlStep{name: "and not again by the handler", method: http.MethodPost, path: hook, from: b, header: map[string]string{"X-Hub-Signature-256": "sha1=x"}, want: 429, retryAfter: "2"},
		)
		runSteps(t, e, clk, steps)
	})

	t.Run("credentials on a webhook are ignored", func(t *testing.T) {
		clk := newClock(start)
		e := newEnv(t, envOpts{mode: ModeOIDC, clk: clk, cfg: func(c *Config) {
			c.FailRate = RateLimit{PerSecond: 0.001, Burst: 1}
			c.TrustedProxies = trust
		}})
		bad := map[string]string{"Authorization": "Bearer bad"}
		signedBad := map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("ab", 32), "X-Test-Signed": "1", "Authorization": "Bearer bad"}
		runSteps(t, e, clk, []rlStep{
			{name: "a bad token spends the address's failures", path: "/api/v1/private", from: a, header: bad, want: 401},
			{name: "spent", path: "/api/v1/private", from: a, header: bad, want: 429, retryAfter: "1000"},
			{name: "a verified delivery with a bad token", method: http.MethodPost, path: "/api/v1/webhooks/github", from: a, header: signedBad, want: 200},
		})
	})
}

func TestLimiterPrunesOnlyFullBuckets(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter("api", RateLimit{PerSecond: 1, Burst: 1}, DefaultRate)
	for i := 0; i < maxClients; i++ {
		if ok, _ := l.take(fmt.Sprint(i), now); !ok {
			t.Fatal("fresh client limited")
		}
	}
	// Client 0 is empty now; once a second has passed every bucket is full
	// and can be forgotten.
	if ok, _ := l.take("new", now); !ok {
		t.Fatal("new client limited")
	}
	if len(l.clients) != maxClients+1 {
		t.Fatalf("pruned non-full buckets: %d", len(l.clients))
	}
	if ok, _ := l.take("newer", now.Add(2*time.Second)); !ok {
		t.Fatal("newer client limited")
	}
	if len(l.clients) != 1 {
		t.Fatalf("%d buckets after prune, want 1", len(l.clients))
	}
	if ok, _ := newLimiter("api", RateLimit{PerSecond: -1}, DefaultRate).take("x", now); !ok {
		t.Fatal("unlimited limiter limited")
	}
}

func TestCSRFWithoutSession(t *testing.T) {
	// Auth off: no cookie to protect, but a browser on a foreign page must
	// still not drive unsafe calls.
	// The local posture: origins are compared with the local names.
	e := newEnv(t, envOpts{mode: ModeNone, cfg: func(c *Config) {
		c.BaseURL = ""
		c.Loopback = true
		c.CORSOrigins = []string{"https://ui.example"}
	}})
	tests := []struct {
		name   string
		origin string
		want   int
	}{
		{"no origin (curl)", "", 200},
		{"same host", "http://" + e.srv.Listener.Addr().String(), 200},
		{"localhost, another port", "http://localhost:1234", 200},
		{"ipv6 loopback", "http://[::1]:8080", 200},
		{"cors origin", "https://ui.example", 200},
		{"foreign", "https://evil.example", 403},
		{"foreign on a loopback port", "http://evil.example:8080", 403},
		{"null", "null", 403},
		{"not http", "file://localhost", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.origin != "" {
				h["Origin"] = tt.origin
			}
			r := e.do(t, call{method: http.MethodPost, path: "/api/v1/repos/r/sync", header: h})
			if r.status != tt.want {
				t.Fatalf("status %d, want %d", r.status, tt.want)
			}
		})
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t, envOpts{mode: ModeNone, cfg: func(c *Config) { c.CORSOrigins = []string{"https://UI.example"} }})
	preflight := func(origin string) result {
		return e.do(t, call{method: http.MethodOptions, path: "/api/v1/repos/r/sync", header: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-stackd-csrf"}})
	}
	r := preflight("https://ui.example")
	if r.status != http.StatusNoContent {
		t.Fatalf("preflight: %d", r.status)
	}
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":      "https://ui.example",
		"Access-Control-Allow-Credentials": "true",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, h := range []string{"Authorization", "Content-Type", "X-Stackd-CSRF", "If-None-Match"} {
		if !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), h) {
			t.Errorf("Allow-Headers lacks %s", h)
		}
	}
	if !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("Allow-Methods: %q", r.header.Get("Access-Control-Allow-Methods"))
	}
	if !slices.Contains(r.header.Values("Vary"), "Origin") {
		t.Errorf("Vary: %q", r.header.Values("Vary"))
	}

	r = preflight("https://evil.example")
	if r.header.Get("Access-Control-Allow-Origin") != "" || r.status == http.StatusNoContent {
		t.Errorf("foreign preflight answered %d with ACAO %q", r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	r = e.do(t, call{method: http.MethodGet, path: "/api/v1/repos", header: map[string]string{"Origin": "https://ui.example"}})
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://ui.example" || !slices.Contains(r.header.Values("Vary"), "Origin") {
		t.Errorf("simple request: %d %v", r.status, r.header)
	}
	r = e.do(t, call{method: http.MethodGet, path: "/api/v1/repos", header: map[string]string{"Origin": "https://evil.example"}})
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign simple request: %d ACAO %q", r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	if r := e.do(t, call{method: http.MethodGet, path: "/api/v1/repos"}); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("ACAO without Origin")
	}
}

func TestAudit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, envOpts{mode: ModeOIDC})
	tok := e.token(t, nil)
	calls := []struct {
		method, path string
		header       map[string]string
		audited      bool
	}{
		{http.MethodPost, "/api/v1/repos/team%2Fone/sync", bearer(tok), true},
		{http.MethodGet, "/api/v1/repos", nil, false},
		{http.MethodPost, "/api/v1/webhooks/github", nil, false},
		{http.MethodPost, "/api/v1/repos", nil, true},
		{http.MethodDelete, "/api/v1/repos/r2", bearer(tok), true},
	}
	for _, c := range calls {
		e.clk.Advance(time.Second)
		e.do(t, call{method: c.method, path: c.path, header: c.header})
	}
	// The anonymous 401 is counted in the aggregate of its minute,
	// written when the minute is over (here: at shutdown).
	e.auth.FlushAudit(true)
	log, err := e.st.AuditLog(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	strip := func(es []store.AuditEntry) []store.AuditEntry {
		for i := range es {
			if es[i].LastAt != es[i].At {
				t.Errorf("entry %d: last request %v, first %v", i, es[i].LastAt, es[i].At)
			}
			es[i].ID, es[i].At, es[i].LastAt = 0, time.Time{}, time.Time{}
		}
		return es
	}
	want := []store.AuditEntry{
		{Actor: "robot@example.com", Subject: "bearer-sub", Method: "bearer", Action: "deleteRepo", Route: "/api/v1/repos/{repoID}", Repo: "r2", Outcome: "200", Client: "127.0.0.1", Requests: 1},
		{Actor: "anonymous", Method: "anonymous", Action: "createRepo", Route: "/api/v1/repos", Repo: "", Outcome: "401 unauthorized", Client: "127.0.0.1", Requests: 1},
		{Actor: "robot@example.com", Subject: "bearer-sub", Method: "bearer", Action: "syncRepo", Route: "/api/v1/repos/{repoID}/sync", Repo: "team/one", Outcome: "200", Client: "127.0.0.1", Requests: 1},
	}
	if got := strip(log); !slices.Equal(got, want) {
		t.Errorf("audit log:\n got %+v\nwant %+v", got, want)
	}
	if n := strings.Count(e.logs.String(), "msg=audit"); n != 3 {
		t.Errorf("%d audit lines in the server log:\n%s", n, e.logs.String())
	}

	// Read-only refusals are audited with their slug.
	ro := newEnv(t, envOpts{mode: ModeNone, cfg: func(c *Config) { c.ReadOnly = true }})
	ro.do(t, call{method: http.MethodPost, path: "/api/v1/repos/x/sync"})
	ro.auth.FlushAudit(true)
	got, err := ro.st.AuditLog(ctx, 1)
	if err != nil || len(got) != 1 || got[0].Outcome != "403 read-only" || got[0].Repo != "x" || got[0].Method != "anonymous" {
		t.Errorf("read-only audit: %+v %v", got, err)
	}
}

func TestPathParam(t *testing.T) {
	tests := []struct{ tmpl, path, want string }{
		{"/api/v1/repos/{repoID}/sync", "/api/v1/repos/abc/sync", "abc"},
		{"/api/v1/repos/{repoID}", "/api/v1/repos/a%2Fb", "a/b"},
		{"/api/v1/repos", "/api/v1/repos", ""},
		{"/api/v1/repos/{repoID}/branches/{branch}", "/api/v1/repos/r/branches/feat%2Fx", "r"},
		{"/api/v1/repos/{repoID}", "/api/v1/repos/%zz", "%zz"},
	}
	for _, tt := range tests {
		if got := pathParam(tt.tmpl, tt.path, "repoID"); got != tt.want {
			t.Errorf("pathParam(%q, %q) = %q, want %q", tt.tmpl, tt.path, got, tt.want)
		}
	}
}

func TestRecorderKeepsFlusherAndUnwrap(t *testing.T) {
	under := httptest.NewRecorder()
	rec := &recorder{ResponseWriter: under}
	if err := http.NewResponseController(rec).Flush(); err != nil {
		t.Fatal(err)
	}
	if !under.Flushed {
		t.Error("flush did not reach the underlying writer")
	}
	if rec.Unwrap() != under {
		t.Error("Unwrap")
	}
	var _ http.Flusher = rec
	rec2 := &recorder{ResponseWriter: httptest.NewRecorder()}
	rec2.WriteHeader(http.StatusEarlyHints)
	rec2.WriteHeader(http.StatusAccepted)
	if rec2.outcome() != "202" {
		t.Errorf("outcome %q", rec2.outcome())
	}
	if (&recorder{}).outcome() != "200" {
		t.Error("empty response outcome")
	}
}

func TestSweeper(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	e := newEnv(t, envOpts{mode: ModeNone})
	now := e.clk.Now()
	for _, ttl := range []time.Duration{time.Minute, time.Hour} {
		if _, err := e.st.CreateSession(ctx, store.Session{Subject: "s", CreatedAt: now, ExpiresAt: now.Add(ttl)}); err != nil {
			t.Fatal(err)
		}
	}
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { e.auth.Sweeper(ctx, tick); close(done) }()
	e.clk.Advance(2 * time.Minute)
	tick <- time.Time{}
	tick <- time.Time{} // accepted only once the first sweep has finished
	if n, err := e.st.Sweep(ctx, now.Add(2*time.Minute)); err != nil || n != 0 {
		t.Errorf("Sweeper left %d expired sessions (%v)", n, err)
	}
	if n, err := e.st.Sweep(ctx, now.Add(2*time.Hour)); err != nil || n != 1 {
		t.Errorf("live session: swept %d later (%v)", n, err)
	}
	cancel()
	<-done
}

func TestLogoutInEveryPosture(t *testing.T) {
	for _, p := range []struct {
		mode Mode
		ro   bool
	}{{ModeNone, false}, {ModeNone, true}, {ModeOIDC, true}} {
		t.Run(fmt.Sprintf("%s/ro=%v", p.mode, p.ro), func(t *testing.T) {
			e := newEnv(t, envOpts{mode: p.mode, cfg: func(c *Config) { c.ReadOnly = p.ro }})
			r := e.do(t, call{method: http.MethodPost, path: "/auth/logout"})
			if r.status != http.StatusNoContent {
				t.Fatalf("logout: %d", r.status)
			}
			if !strings.Contains(r.header.Get("Set-Cookie"), SessionCookie+"=;") {
				t.Errorf("cookie not expired: %q", r.header.Get("Set-Cookie"))
			}
			if p.mode == ModeNone {
				if r := e.do(t, call{method: http.MethodGet, path: "/auth/login"}); r.status != http.StatusNotFound {
					t.Errorf("login with auth off: %d", r.status)
				}
			}
		})
	}
}

func TestMe(t *testing.T) {
	if _, ok := PrincipalFrom(context.Background()); ok {
		t.Error("principal in empty context")
	}
	p := &Principal{Subject: "s", Method: MethodBearer}
	got, ok := PrincipalFrom(WithPrincipal(context.Background(), p))
	if !ok || got != p {
		t.Errorf("PrincipalFrom = %v %v", got, ok)
	}
	if ClientIP(context.Background()) != "" {
		t.Error("client IP in empty context")
	}
}
