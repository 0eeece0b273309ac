package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/stackd/stackd/impl/auth/authtest"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/validate"
)

// testDoc is a small contract with every kind of operation the gate tells
// apart.
const testDoc = `
openapi: 3.0.3
info: {title: gate test, version: "1"}
security:
  - cookieAuth: []
  - bearerAuth: []
paths:
  /healthz:
    get:
      operationId: getHealth
      security: [{}]
      responses: {"200": {description: ok}}
  /api/v1/config:
    get:
      operationId: getConfig
      security: [{}]
      responses: {"200": {description: ok}}
  /api/v1/private:
    get:
      operationId: getPrivate
      responses: {"200": {description: ok}}
  /api/v1/touch:
    get:
      operationId: touchThing
      x-stackd-mutating: true
      responses: {"200": {description: ok}}
  /api/v1/repos:
    get:
      operationId: listRepos
      security: [{}, cookieAuth: [], bearerAuth: []]
      responses: {"200": {description: ok}}
    post:
      operationId: createRepo
      x-stackd-mutating: true
      responses: {"201": {description: created}}
  /api/v1/repos/{repoID}:
    parameters:
      - {name: repoID, in: path, required: true, schema: {type: string}}
    get:
      operationId: getRepo
      security: [{}]
      responses: {"200": {description: ok}}
    delete:
      operationId: deleteRepo
      responses: {"204": {description: gone}}
  /api/v1/repos/{repoID}/sync:
    parameters:
      - {name: repoID, in: path, required: true, schema: {type: string}}
    post:
      operationId: syncRepo
      x-stackd-mutating: true
      responses: {"200": {description: ok}}
  /api/v1/webhooks/github:
    post:
      operationId: githubWebhook
      security: [{}]
      responses: {"204": {description: ok}}
components:
  securitySchemes:
    cookieAuth: {type: apiKey, in: cookie, name: stackd_session}
    bearerAuth: {type: http, scheme: bearer, bearerFormat: JWT}
`

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData([]byte(testDoc))
	if err != nil {
		t.Fatalf("load test doc: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("test doc: %v", err)
	}
	return doc
}

// clock is an injected, manually advanced time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startIDP(t *testing.T) *mockoidc.MockOIDC { return authtest.StartIDP(t) }

// env is a gated test server: Routes and a small handler behind CORS,
// validation and the gate, as the server wires them.
type env struct {
	idp    *mockoidc.MockOIDC
	auth   *Auth
	st     *store.SQLite
	dbPath string
	srv    *httptest.Server
	clk    *clock
	logs   *syncBuffer
	cfg    Config
}

type envOpts struct {
	mode   Mode
	idp    *mockoidc.MockOIDC // reuse a provider (restart tests)
	dbPath string             // reuse a store file
	clk    *clock
	cfg    func(*Config)
	doc    *openapi3.T // default: testDoc
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{clk: o.clk, logs: &syncBuffer{}, dbPath: o.dbPath}
	if e.clk == nil {
		e.clk = newClock(time.Now())
	}
	if e.dbPath == "" {
		e.dbPath = filepath.Join(t.TempDir(), "stackd.db")
	}
	st, err := store.Open(ctx, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.st = st

	srv := httptest.NewUnstartedServer(nil)
	cfg := Config{
		Mode:     o.mode,
		BaseURL:  "http://" + srv.Listener.Addr().String(),
		Rate:     RateLimit{PerSecond: -1},
		SyncRate: RateLimit{PerSecond: -1},
		FailRate: RateLimit{PerSecond: -1},
	}
	if o.mode == ModeOIDC {
		e.idp = o.idp
		if e.idp == nil {
			e.idp = startIDP(t)
		}
		cfg.Issuer, cfg.ClientID, cfg.ClientSecret = e.idp.Issuer(), e.idp.ClientID, e.idp.ClientSecret
		// Most tests are about something else than who is allowed in;
		// the allowlist tests set their lists (which then apply) or turn
		// this off.
		cfg.AllowAnyUser = true
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e.cfg = cfg
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(ctx, cfg, st, log, e.clk.Now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.auth = a
	doc := o.doc
	if doc == nil {
		doc = loadDoc(t)
	}
	srv.Config.Handler = wire(t, a, doc)
	srv.Start()
	t.Cleanup(srv.Close)
	e.srv = srv
	return e
}

// wire builds the middleware chain in the documented order.
func wire(t *testing.T, a *Auth, doc *openapi3.T) http.Handler {
	t.Helper()
	mux := http.NewServeMux()
	a.Routes(mux)
	mux.HandleFunc("/", echo)
	v, err := validate.New(doc, validate.Options{Passthrough: a.IsAuthPath})
	if err != nil {
		t.Fatal(err)
	}
	return a.Hosts(a.CORS(v.Routes(a.Gate(doc)(v.Validate(mux)))))
}

// echoBody is what the gated handler answers: who and what it saw.
type echoBody struct {
	Op      string   `json:"op"`
	Subject string   `json:"subject"`
	Email   string   `json:"email"`
	Name    string   `json:"name"`
	Groups  []string `json:"groups"`
	Method  string   `json:"method"`
	Admin   bool     `json:"admin"`
	Client  string   `json:"client"`
	Key     string   `json:"key"`
}

// echo answers what the gate let through. For a sync it plays a handler
// that creates a run, and for the webhook one whose signature is wrong
// unless the request carries X-Test-Signed: both call Charge and answer 429
// when it refuses.
func echo(w http.ResponseWriter, r *http.Request) {
	var b echoBody
	if route, ok := validate.RouteFrom(r.Context()); ok {
		b.Op = route.Operation.OperationID
	}
	if b.Op == OpSyncRepo || b.Op == OpGitHubWebhook && r.Header.Get("X-Test-Signed") == "" {
		var limited *LimitError
		if err := Charge(r.Context()); errors.As(err, &limited) {
			w.Header().Set("Retry-After", strconv.Itoa(limited.RetrySeconds()))
			problem.Write(w, r, http.StatusTooManyRequests, problem.TooManyRequests, limited.Error())
			return
		}
	}
	b.Key = ClientKey(r.Context())
	if p, ok := PrincipalFrom(r.Context()); ok {
		b.Subject, b.Email, b.Name, b.Groups, b.Method, b.Admin = p.Subject, p.Email, p.Name, p.Groups, p.Method, p.Admin
	}
	b.Client = ClientIP(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(b)
}

// token signs an ID token with the provider's key; claims override the
// defaults (a nil value removes a claim).
func (e *env) token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	return signToken(t, e.idp.Keypair, e.defaultClaims(claims))
}

func (e *env) defaultClaims(over jwt.MapClaims) jwt.MapClaims {
	now := e.clk.Now()
	c := jwt.MapClaims{
		"iss":            e.idp.Issuer(),
		"aud":            e.idp.ClientID,
		"sub":            "bearer-sub",
		"iat":            now.Unix(),
		"exp":            now.Add(10 * time.Minute).Unix(),
		"email":          "robot@example.com",
		"email_verified": true,
		"name":           "Robot",
	}
	maps.Copy(c, over)
	for k, v := range c {
		if v == nil {
			delete(c, k)
		}
	}
	return c
}

func signToken(t *testing.T, kp *mockoidc.Keypair, claims jwt.MapClaims) string {
	t.Helper()
	s, err := kp.SignJWT(claims)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// call sends one request to the env's server.
type call struct {
	method, path string
	header       map[string]string
	client       *http.Client
}

type result struct {
	status int
	header http.Header
	body   []byte
	echo   echoBody
	slug   string
}

func (e *env) do(t *testing.T, c call) result {
	t.Helper()
	req, err := http.NewRequest(c.method, e.srv.URL+c.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	client := c.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	res := result{status: resp.StatusCode, header: resp.Header, body: body}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		var p struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("problem body %q: %v", body, err)
		}
		res.slug = strings.TrimPrefix(p.Type, "/problems/")
	} else if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &res.echo); err != nil {
			t.Fatalf("echo body %q: %v", body, err)
		}
	}
	return res
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
