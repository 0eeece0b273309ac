// Package auth decides who may do what on the stackd API.
//
// Access depends on the posture: Classify reads an operation's Level from
// its security in the contract, Config.Access says what an anonymous caller
// at that level gets (with OIDC, reads are private unless PublicReads or
// ReadOnly), and Config.ServedSecurity shows the same rule in the served
// spec. Bearer tokens must be ID tokens: JWTs typed at+jwt are refused.
//
// It covers the start-up posture (CheckPosture: auth off is only for a
// loopback listener unless the server is read-only; OIDC needs an allowlist
// or AllowAnyUser), OpenID Connect sign-in
// with the authorization code flow, PKCE, state and nonce (Routes), server-side
// sessions kept in the store behind an HttpOnly cookie, bearer ID tokens
// verified against the issuer's keys, and the per-request Gate that runs
// after the operation is found and before any body is read or validated:
// client address, principal, rate limits (per principal, else per address;
// failed authentication in its own per-address bucket), read-only,
// authentication, CSRF and the audit log. Hosts refuses, on a loopback listener, requests whose
// Host is not a local name (DNS rebinding); CORS answers preflights before
// routing.
//
// Wiring, outermost first:
//
//	a.Hosts(a.CORS(validator.Routes(a.Gate(doc)(validate.Bodies(...)(validator.Validate(mux))))))
//
// with the validator's Passthrough accepting a.IsAuthPath and Routes
// registered on mux.
package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/store"
)

// Mode is the authentication mode.
type Mode string

// Modes.
const (
	ModeNone Mode = "none" // no authentication: every operation is reachable
	ModeOIDC Mode = "oidc" // OpenID Connect sign-in and bearer ID tokens
)

// Names shared with clients.
const (
	// SessionCookie carries the raw session id.
	SessionCookie = "stackd_session"
	// CSRFHeader must be present (any non-empty value) on unsafe requests
	// authenticated by the session cookie.
	CSRFHeader = "X-Stackd-CSRF"
	// loginCookie carries the signed state of a sign-in in progress.
	loginCookie = "stackd_login"
)

// Defaults applied by New to a zero Config field.
var (
	DefaultSessionTTL = 12 * time.Hour
	DefaultRate       = RateLimit{PerSecond: 20, Burst: 40}
	DefaultSyncRate   = RateLimit{PerSecond: 1, Burst: 5}
	DefaultFailRate   = RateLimit{PerSecond: 1, Burst: 10}
)

// loginTTL bounds the time between /auth/login and /auth/callback.
const loginTTL = 10 * time.Minute

// RateLimit is a per-client token bucket: PerSecond tokens are added each
// second up to Burst. The zero value means the default; a negative PerSecond
// means no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// Config is the authentication configuration.
type Config struct {
	Mode     Mode // "" means none
	ReadOnly bool
	// PublicReads lets anonymous callers use the read operations (the
	// operations whose security includes {} next to the schemes) when
	// Mode is oidc. Off (the default) they need a signed-in user, unless
	// ReadOnly is set: a read-only server keeps reads anonymous.
	PublicReads bool
	// AllowAnyUser admits every account of the issuer. Mode oidc needs
	// either this or an allowlist (CheckPosture refuses to start with
	// neither, or with both); without either, nobody is admitted.
	AllowAnyUser bool
	// Loopback is the local posture: the listener is on the loopback
	// interface only. Requests must then name this machine in Host
	// (localhost, a loopback address, or BaseURL's host), and Origins are
	// compared with that same set (see Hosts).
	Loopback bool

	Issuer       string
	ClientID     string
	ClientSecret string
	// BaseURL is the external URL of the server, e.g. https://stackd.example.com.
	// The OIDC redirect is BaseURL+"/auth/callback"; cookies are Secure when it
	// is https; its origin is accepted on cookie-authenticated unsafe requests.
	BaseURL string

	ExtraAudiences []string // more accepted audiences for bearer ID tokens
	AllowedEmails  []string // verified e-mail addresses allowed in
	AllowedDomains []string // verified e-mail domains allowed in
	AllowedGroups  []string // values of the groups claim allowed in
	CORSOrigins    []string // exact origins allowed cross-origin, e.g. https://ui.example.com
	// AdminEmails and AdminGroups are the admins (--admins): a signed-in
	// user with one of these verified e-mail addresses, or one of these
	// values in the groups claim, sees and manages every repository
	// (Principal.Admin). Admins must be allowed in as well.
	AdminEmails, AdminGroups []string

	// TrustedProxies are the reverse proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// IPv6ClientPrefix groups anonymous IPv6 clients: the addresses of
	// one prefix of this length share one client key (rate limits, the
	// failed-authentication bucket, event-stream caps, audit
	// aggregates). IPv4 clients (IPv4-mapped IPv6 included) are keyed
	// per address. 0 means DefaultIPv6ClientPrefix (64); 128 keys every
	// IPv6 address apart.
	IPv6ClientPrefix int

	SessionTTL time.Duration // default 12h
	// Rate is the API bucket of each client (the signed-in principal, else
	// the address): every request but health, readiness, the spec, /docs/
	// and the GitHub webhook spends a token. Default 20/s burst 40.
	Rate RateLimit
	// SyncRate is the bucket of runs a client starts (per principal, else
	// address): onboarding spends a token, a sync only when it creates a
	// run (joining a queued run is free; see Charge). Default 1/s burst 5.
	SyncRate RateLimit
	// FailRate is the bucket of failed authentication per address: bad or
	// refused bearer tokens and sessions, and GitHub webhooks without a
	// valid signature. Once it is spent such requests answer 429; it is
	// never a signed-in user's bucket. Default 1/s burst 10.
	FailRate RateLimit
	// AuditMaxAge is how long audit entries are kept (0: 90 days,
	// DefaultAuditMaxAge; negative: any age).
	AuditMaxAge time.Duration
	// AuditMaxEntries is how many audit entries are kept, the newest (0:
	// 100,000, DefaultAuditMaxEntries; negative: no count limit).
	AuditMaxEntries int
	// LoginKey is the HMAC key of the sign-in cookie (the state between
	// /auth/login and /auth/callback). Replicas behind one load balancer
	// share it (the store's shared key), so that a sign-in started on
	// one can end on another. Empty: a random key of this process.
	LoginKey []byte
	// Refusals counts the requests a rate limit refused, by bucket
	// (package metrics: metrics.Bucket*); nil: not counted.
	Refusals interface{ RateLimited(bucket string) }
}

// Principal is the authenticated caller.
type Principal struct {
	Subject string
	Email   string
	Name    string
	Groups  []string
	Method  string // "session" or "bearer"
	// EmailVerified is the ID token's email_verified claim.
	EmailVerified bool
	// Admin: the principal is one of the admins (Config.AdminEmails,
	// AdminGroups), decided on every request.
	Admin bool
}

// Authentication methods, as in Principal.Method and the audit log.
const (
	MethodSession   = "session"
	MethodBearer    = "bearer"
	MethodAnonymous = "anonymous"
)

func (p *Principal) actor() string {
	if p.Email != "" {
		return p.Email
	}
	return p.Subject
}

type ctxKey int

const (
	principalKey ctxKey = iota
	clientIPKey
	clientKeyKey
	chargeKey
	admitsKey
	auditKey
)

// PrincipalFrom returns the principal the gate found for a request.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey).(*Principal)
	return p, ok && p != nil
}

// ClientIP returns the client address the gate settled on ("" outside it).
func ClientIP(ctx context.Context) string {
	s, _ := ctx.Value(clientIPKey).(string)
	return s
}

// ClientKey returns the key of the caller's rate-limit buckets as the gate
// settled it: "user:<subject>" for a signed-in principal, else
// "ip:<address group>" (an IPv4 address, or an IPv6 prefix such as
// 2001:db8:1:2::/64: see AddressGroup) ("" outside the gate). Per-client
// caps (event streams) use it too.
func ClientKey(ctx context.Context) string {
	s, _ := ctx.Value(clientKeyKey).(string)
	return s
}

// NoteAuditRepo names the repository a mutating request is about, for its
// audit entry, when the route has no repoID path parameter (an
// onboarding: the id it was given or derived from its URL). It does
// nothing outside an audited request. The entry stores it bounded and
// escaped, as it stores the path parameter.
func NoteAuditRepo(ctx context.Context, repoID string) {
	if rec, ok := ctx.Value(auditKey).(*recorder); ok {
		rec.repo = repoID
	}
}

// Store is what auth keeps in the store: sessions and the audit log.
type Store interface {
	store.SessionStore
	store.AuditStore
}

// Auth holds the authentication state of a server.
type Auth struct {
	cfg   Config
	store Store
	log   *slog.Logger
	now   func() time.Time

	secure      bool   // cookies are Secure
	baseURL     string // without trailing slash
	baseOrigin  string // scheme://host of BaseURL, lower case
	baseHost    string // host name of BaseURL without port, lower case
	corsOrigins map[string]bool

	verifier  *oidc.IDTokenVerifier
	oauth     *oauth2.Config
	audiences map[string]bool // accepted for bearer tokens
	loginKey  []byte          // HMAC key of the login cookie (Config.LoginKey)

	allowEmails, allowDomains, allowGroups map[string]bool
	adminEmails, adminGroups               map[string]bool

	apiLimit, syncLimit, failLimit *limiter

	// The aggregates of failed anonymous requests of the current minute
	// (audit.go).
	aggMu     sync.Mutex
	aggWindow time.Time // start of the current minute; zero: none open
	aggs      map[aggKey]*store.AuditEntry
	// bg runs the audit writes and prunes no request waits for.
	bg      sync.WaitGroup
	audited atomic.Int64 // entries this process stored
	pruning atomic.Bool  // a prune is running
}

// PerUserVisibility reports whether repositories are shown per user
// (registry.Repo.VisibleTo): with OIDC, and with auth off on a listener
// that is not on the loopback interface (read-only, anonymous readers).
// In the local posture (auth off on loopback) every caller sees every
// repository.
func (c Config) PerUserVisibility() bool {
	return c.Mode == ModeOIDC || !c.Loopback
}

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("auth: invalid configuration")

// New prepares authentication. In Mode oidc it discovers the provider at
// c.Issuer (an HTTP round trip bounded by ctx) and needs a store for sessions.
// log may be nil; now may be nil (time.Now).
func New(ctx context.Context, c Config, st Store, log *slog.Logger, now func() time.Time) (*Auth, error) {
	if c.Mode == "" {
		c.Mode = ModeNone
	}
	if c.Mode != ModeNone && c.Mode != ModeOIDC {
		return nil, fmt.Errorf("%w: unknown auth mode %q (want none or oidc)", ErrConfig, c.Mode)
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.AuditMaxAge == 0 {
		c.AuditMaxAge = DefaultAuditMaxAge
	}
	if c.AuditMaxEntries == 0 {
		c.AuditMaxEntries = DefaultAuditMaxEntries
	}
	if c.IPv6ClientPrefix == 0 {
		c.IPv6ClientPrefix = DefaultIPv6ClientPrefix
	}
	if c.IPv6ClientPrefix < 1 || c.IPv6ClientPrefix > 128 {
		return nil, fmt.Errorf("%w: the IPv6 client prefix must be 1 to 128 bits, not %d", ErrConfig, c.IPv6ClientPrefix)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	a := &Auth{
		cfg:          c,
		store:        st,
		log:          log,
		now:          now,
		corsOrigins:  map[string]bool{},
		allowEmails:  lowerSet(c.AllowedEmails),
		allowDomains: lowerSet(c.AllowedDomains),
		allowGroups:  set(c.AllowedGroups),
		adminEmails:  lowerSet(c.AdminEmails),
		adminGroups:  set(c.AdminGroups),
		apiLimit:     newLimiter(metrics.BucketAPI, c.Rate, DefaultRate),
		syncLimit:    newLimiter(metrics.BucketSync, c.SyncRate, DefaultSyncRate),
		failLimit:    newLimiter(metrics.BucketAuthFailure, c.FailRate, DefaultFailRate),
		aggs:         map[aggKey]*store.AuditEntry{},
	}
	if c.BaseURL != "" {
		origin, err := parseOrigin(c.BaseURL, true)
		if err != nil {
			return nil, fmt.Errorf("%w: base URL: %w", ErrConfig, err)
		}
		a.baseOrigin = origin
		a.baseHost = hostName(strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://"))
		a.baseURL = strings.TrimSuffix(c.BaseURL, "/")
		a.secure = strings.HasPrefix(origin, "https://")
	}
	for _, o := range c.CORSOrigins {
		origin, err := parseOrigin(o, false)
		if err != nil {
			return nil, fmt.Errorf("%w: CORS origin: %w", ErrConfig, err)
		}
		a.corsOrigins[origin] = true
	}
	if c.Mode == ModeNone {
		return a, nil
	}
	switch {
	case c.Issuer == "":
		return nil, fmt.Errorf("%w: oidc needs an issuer", ErrConfig)
	case c.ClientID == "":
		return nil, fmt.Errorf("%w: oidc needs a client id", ErrConfig)
	case a.baseURL == "":
		return nil, fmt.Errorf("%w: oidc needs the base URL for its redirect", ErrConfig)
	case st == nil:
		return nil, fmt.Errorf("%w: oidc needs a session store", ErrConfig)
	}
	provider, err := oidc.NewProvider(ctx, c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("auth: discover OIDC issuer %s: %w", c.Issuer, err)
	}
	// The audience is checked here, against the client id and the extra
	// audiences, rather than by go-oidc, which knows only one client id.
	a.verifier = provider.Verifier(&oidc.Config{SkipClientIDCheck: true, Now: now})
	a.audiences = set(append([]string{c.ClientID}, c.ExtraAudiences...))
	scopes := []string{oidc.ScopeOpenID, "email", "profile"}
	if len(c.AllowedGroups)+len(c.AdminGroups) > 0 {
		scopes = append(scopes, "groups")
	}
	a.oauth = &oauth2.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		Endpoint:     provider.Endpoint(),
		RedirectURL:  a.baseURL + "/auth/callback",
		Scopes:       scopes,
	}
	a.loginKey = append([]byte(nil), c.LoginKey...)
	if len(a.loginKey) == 0 {
		a.loginKey = make([]byte, 32)
		if _, err := rand.Read(a.loginKey); err != nil {
			return nil, fmt.Errorf("auth: login key: %w", err)
		}
	}
	return a, nil
}

// Sweeper deletes expired sessions and applies the audit log's retention
// (PruneAudit) once at once, then on each tick of every, until ctx is
// done.
func (a *Auth) Sweeper(ctx context.Context, every <-chan time.Time) {
	a.PruneAudit(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-every:
			if !ok {
				return
			}
			if a.store == nil {
				continue
			}
			if n, err := a.store.Sweep(ctx, a.now()); err != nil {
				a.log.Error("session sweep failed", "err", err)
			} else if n > 0 {
				a.log.Debug("expired sessions deleted", "count", n)
			}
			a.PruneAudit(ctx)
		}
	}
}

// parseOrigin returns the lower-case scheme://host[:port] of raw, which must
// be an absolute http or https URL; with pathOK false it must be an origin
// (no path beyond "/", no query).
func parseOrigin(raw string, pathOK bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if !pathOK && (u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "") {
		return "", fmt.Errorf("%q is not an origin (scheme://host[:port])", raw)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		if x = strings.TrimSpace(x); x != "" {
			m[x] = true
		}
	}
	return m
}

func lowerSet(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		if x = strings.ToLower(strings.TrimSpace(x)); x != "" {
			m[strings.TrimPrefix(x, "@")] = true
		}
	}
	return m
}
