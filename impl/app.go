package impl

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/api"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/cluster"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/datadir"
	"github.com/stackd/stackd/impl/egress"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/httpstack"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refname"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/repos"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
	"github.com/stackd/stackd/impl/watch"
	"github.com/stackd/stackd/impl/webhook"
)

// App is an assembled stackd server: repositories, refreshers and the HTTP
// handler. New builds it; Run serves it until its context ends.
type App struct {
	cfg     config.Config
	log     *slog.Logger
	reg     *registry.Registry
	refresh *refresh.Manager
	broker  *events.Broker
	handler http.Handler
	after   func(time.Duration) <-chan time.Time
	auth    *auth.Auth
	store   store.Store
	replica string // --replica-id
	// cluster is this server's membership of the replicas that share
	// its PostgreSQL database (nil on SQLite); inbox queues what they
	// say (replicas.go).
	cluster      *cluster.Cluster
	inbox        chan cluster.Message
	catchUpLater atomic.Bool
	mirrors      *mirror.Root
	watcher      *watch.Watcher // of the local repository; Start runs it
	cleanups     []func()

	runMu  sync.Mutex
	runCtx context.Context // set by Start; loops of onboarded mirrors use it

	// lifeMu serialises changes of the set of repositories (lifecycle.go).
	lifeMu sync.Mutex
	// unserved are the lower-case ids of stored repositories that are not
	// served (see restore); their mirrors are not orphans.
	unserved map[string]bool
	// onboarding are the lower-case ids this replica is onboarding, with
	// the actor (onboardMu).
	onboardMu  sync.Mutex
	onboarding map[string]string

	// shortOfMemory refuses new fetches (Options.ShortOfMemory).
	shortOfMemory func() bool

	// Where mirrors may connect (see newMirror).
	remoteHosts   egress.Hosts
	remoteRootCAs *x509.CertPool
	resolver      *net.Resolver
}

// Options are test seams of New; the zero value is production.
type Options struct {
	// BeforeRefresh runs before each source refresh (tests hold runs with
	// it; see refresh.Options.BeforeRefresh).
	BeforeRefresh func(ctx context.Context, repoID string, mode refresh.Mode) error
	// Keepalive overrides the SSE keepalive ticker.
	Keepalive func() (<-chan time.Time, func())
	// After overrides the interval loop's timer.
	After func(time.Duration) <-chan time.Time
	// Now overrides the clock of sessions and tokens.
	Now func() time.Time
	// RateLimits override the per-client token buckets (API, sync, failed
	// authentication).
	Rate, SyncRate, FailRate auth.RateLimit
	// DebounceClock times the webhook debounce window (refresh.Clock).
	DebounceClock refresh.Clock
	// Enqueued is called after each trigger joined or created its run
	// (refresh.Options.Enqueued).
	Enqueued func(repoID, runID string)
	// EventLimits override the event-stream connection caps.
	EventLimits events.Limits
	// BodyTimeout overrides the request body read deadline (30 s).
	BodyTimeout time.Duration
	// RemoteRootCAs, when set, are the only roots mirrors trust for https
	// (tests serve upstreams with httptest's certificates).
	RemoteRootCAs *x509.CertPool
	// RemoteResolver resolves upstream host names (tests answer with
	// their own DNS server).
	RemoteResolver *net.Resolver
	// ShortOfMemory says whether the server is short of memory, which
	// refuses new fetches (memory.go); a fetch it refuses never reaches
	// BeforeRefresh. Default: a memlimit.Monitor of the process's memory
	// limit (tests force pressure with it).
	ShortOfMemory func() bool
	// DiffLimits override the limits of a branch's patch
	// (view.DefaultDiffLimits); DiffHooks observe their computations.
	DiffLimits view.DiffLimits
	DiffHooks  view.DiffHooks
}

// ErrPosture marks a start-up refused for its security posture (for
// example a non-loopback address with auth off): exit code 2.
var ErrPosture = auth.ErrPosture

// ErrDataDirInUse marks a start-up refused because another stackd process
// uses the data directory (datadir.ErrInUse).
var ErrDataDirInUse = datadir.ErrInUse

// ErrLocalWithDatabase marks a start-up refused because --cwd came with
// --database-url without --allow-local-with-database: exit code 2.
var ErrLocalWithDatabase = errors.New("working repository refused")

// AuthConfig is the auth package's view of the configuration.
func AuthConfig(cfg config.Config) auth.Config {
	return auth.Config{
		Mode:           auth.Mode(cfg.Auth),
		ReadOnly:       cfg.ReadOnly,
		PublicReads:    cfg.PublicReads,
		AllowAnyUser:   cfg.AllowAnyUser,
		Loopback:       cfg.Loopback(),
		Issuer:         cfg.OIDCIssuer,
		ClientID:       cfg.OIDCClientID,
		ClientSecret:   cfg.OIDCClientSecret,
		BaseURL:        cfg.BaseURL,
		ExtraAudiences: cfg.OIDCExtraAudiences,
		AllowedEmails:  cfg.AllowedEmails,
		AllowedDomains: cfg.AllowedDomains,
		AllowedGroups:  cfg.AllowedGroups,
		CORSOrigins:    cfg.CORSOrigins,
		TrustedProxies: cfg.Proxies(),
		Rate:           rateLimit(cfg.RateLimit),
		SyncRate:       rateLimit(cfg.SyncRateLimit),
		FailRate:       rateLimit(cfg.AuthFailureRateLimit),

		IPv6ClientPrefix: cfg.IPv6ClientPrefix,
		AuditMaxAge:      noneIfZero(cfg.AuditMaxAge),
		AuditMaxEntries:  int(noneIfZero(int64(cfg.AuditMaxEntries))),
	}
}

// noneIfZero turns the config's "0: no limit" into auth's (negative; 0
// there is the default).
func noneIfZero[T ~int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// rateLimit converts a validated rate setting ("" or invalid: the default).
func rateLimit(v string) auth.RateLimit {
	perSecond, burst, _, err := config.ParseRate(v)
	if err != nil {
		return auth.RateLimit{}
	}
	return auth.RateLimit{PerSecond: perSecond, Burst: burst}
}

// New assembles the server from a validated Config. The local repository (if
// any) gets its first view before New returns; mirrors clone in the
// background once Run starts.
func New(cfg config.Config, log *slog.Logger, opts Options) (*App, error) {
	a := &App{cfg: cfg, log: log, reg: registry.New(), broker: events.NewBroker(opts.EventLimits), after: opts.After,
		remoteRootCAs: opts.RemoteRootCAs, resolver: opts.RemoteResolver, unserved: map[string]bool{}, replica: cfg.ReplicaID,
		onboarding: map[string]string{}}
	if a.replica == "" {
		a.replica = config.DefaultReplicaID(cfg.Addr)
	}
	hosts, err := egress.ParseHosts(cfg.AllowedRemoteHosts)
	if err != nil {
		return nil, fmt.Errorf("--allowed-remote-hosts: %w", err)
	}
	a.remoteHosts = hosts
	a.shortOfMemory = opts.ShortOfMemory
	if a.shortOfMemory == nil {
		a.shortOfMemory = memlimit.NewMonitor(memlimit.Options{Logger: log}).Short
	}
	acfg := AuthConfig(cfg)
	if opts.Rate != (auth.RateLimit{}) {
		acfg.Rate = opts.Rate
	}
	if opts.SyncRate != (auth.RateLimit{}) {
		acfg.SyncRate = opts.SyncRate
	}
	if opts.FailRate != (auth.RateLimit{}) {
		acfg.FailRate = opts.FailRate
	}
	warnings, err := auth.CheckPosture(cfg.Loopback(), acfg)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	// Find the working repository first: nothing may be created (the
	// data dir included) before we know it is not inside it.
	wt, err := a.findLocal()
	if err != nil {
		return nil, err
	}
	if err := a.openStore(); err != nil {
		return nil, err
	}
	if err := a.failUnfinished(context.Background()); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.joinCluster(); err != nil {
		a.Close()
		return nil, err
	}
	a.mirrors, err = mirror.NewRoot(cfg.DataDir)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if a.cluster == nil {
		// Replicas sweep under each mirror's lease instead (sweepShared).
		if removed, err := a.mirrors.SweepTemp(); err != nil {
			log.Warn("cannot remove leftovers of interrupted clones", "err", redact.Error(err))
		} else if len(removed) > 0 {
			log.Info("removed leftovers of interrupted clones", "count", len(removed))
		}
	}
	actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if acfg.Mode == auth.ModeOIDC {
		// One sign-in cookie key for every process on this database, so
		// that a sign-in may start and end on different replicas.
		if acfg.LoginKey, err = a.store.SharedKey(actx, "login-cookie", 32); err != nil {
			a.Close()
			return nil, fmt.Errorf("sign-in key: %w", err)
		}
	}
	a.auth, err = auth.New(actx, acfg, a.store, log, opts.Now)
	if err != nil {
		a.Close()
		return nil, err
	}
	// The audit aggregates still open are written before the store
	// closes (cleanups run in reverse).
	a.cleanups = append(a.cleanups, func() { a.auth.FlushAudit(true) })
	a.refresh = refresh.NewManager(a.clustered(refresh.Options{
		Workers:       cfg.SyncWorkers,
		Timeout:       cfg.SyncTimeout,
		BeforeRefresh: guardFetches(a.shortOfMemory, opts.BeforeRefresh),
		Events:        relay{a},
		Debounce:      cfg.WebhookDebounce,
		MaxDelay:      cfg.WebhookMaxDelay,
		Clock:         opts.DebounceClock,
		Enqueued:      opts.Enqueued,
		Logger:        log,
		Store:         a.store,
		History:       cfg.SyncHistory,
		Replica:       a.replica,
	}))
	a.cleanups = append(a.cleanups, a.refresh.Close, a.broker.Close)

	if wt != nil {
		if err := a.addLocal(wt); err != nil {
			a.Close()
			return nil, err
		}
	}
	for _, rc := range cfg.Repos {
		if err := a.addConfiguredMirror(rc); err != nil {
			a.Close()
			return nil, err
		}
	}
	if err := a.restore(context.Background()); err != nil {
		a.Close()
		return nil, err
	}
	if a.cluster != nil {
		a.sweepShared(context.Background())
	} else {
		a.sweepOrphans(context.Background())
	}

	srv := api.New(api.Deps{
		Repos:      a.reg,
		Lifecycle:  a,
		Refreshers: api.RefreshersOf(a.refresh),
		Streams:    a.broker,
		Database:   a.store,
		Audit:      a.store,
		Logger:     log,
		Info: gen.ServerConfig{ReadOnly: cfg.ReadOnly, AuthRequired: cfg.Auth == string(auth.ModeOIDC),
			PublicReads: acfg.ReadsAnonymous(), SingleRepo: len(a.reg.List()) == 1, Version: cfg.Version},
		WebhookSecret: []byte(cfg.WebhookSecret),
		Keepalive:     opts.Keepalive,
		ShortOfMemory: a.shortOfMemory,
		DiffLimits:    opts.DiffLimits,
		DiffHooks:     opts.DiffHooks,
	})
	h, err := httpstack.New(httpstack.Deps{
		Logger:            log,
		API:               srv,
		Auth:              a.auth,
		HSTS:              strings.HasPrefix(strings.ToLower(cfg.BaseURL), "https://"),
		BodyTimeout:       opts.BodyTimeout,
		WriteStallTimeout: cfg.WriteStallTimeout,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.handler = h
	return a, nil
}

// openStore opens the database (sessions, audit log, repositories
// onboarded through the API, sync history, webhook deliveries): the
// PostgreSQL of --database-url, else SQLite in the data dir. Missing
// migrations are applied (and logged).
func (a *App) openStore() error {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	switch release, err := datadir.Lock(a.cfg.DataDir, a.cfg.DatabaseURL != ""); {
	case errors.Is(err, ErrDataDirInUse):
		return fmt.Errorf("--data-dir %s: %w", a.cfg.DataDir, err)
	case err != nil:
		a.log.Warn("the data directory is not locked: make sure no other stackd process uses it, except replicas on the same database", "err", err)
	default:
		a.cleanups = append(a.cleanups, release)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := OpenStore(ctx, a.cfg)
	if err != nil {
		return err
	}
	a.store = st
	a.cleanups = append(a.cleanups, func() { _ = st.Close() })
	for _, step := range st.Applied() {
		a.log.Info("database migrated", "version", step.Version, "step", step.Name)
	}
	return nil
}

// OpenStore opens the store cfg selects and applies the migrations it
// lacks: PostgreSQL at cfg.DatabaseURL, else SQLite at
// <DataDir>/stackd.db (the data dir must exist). Errors never contain the
// database URL's password.
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	if cfg.DatabaseURL != "" {
		st, err := store.OpenPostgres(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	return store.Open(ctx, DatabasePath(cfg))
}

// DatabasePath is the SQLite file of a server without --database-url.
func DatabasePath(cfg config.Config) string { return filepath.Join(cfg.DataDir, "stackd.db") }

// findLocal discovers the operator's working repository (nil if none) and
// checks that the data dir is not inside it, nor inside any other worktree
// of the same repository, symbolic links resolved (datadir.Check).
func (a *App) findLocal() (*gitrepo.Worktree, error) {
	cfg := a.cfg
	var wt *gitrepo.Worktree
	var err error
	if cfg.DatabaseURL != "" && !cfg.AllowLocalWithDatabase {
		// The working repository is a single-replica feature: its view
		// would differ between the replicas that share the database.
		if cfg.CwdExplicit {
			return nil, fmt.Errorf("%w: --cwd with --database-url: the working repository is a single-replica feature (--allow-local-with-database serves it anyway)", ErrLocalWithDatabase)
		}
		a.log.Info("not serving a working repository: with --database-url only mirrors are served (--allow-local-with-database serves the current directory's repository)")
		return nil, nil
	}
	if cfg.CwdExplicit {
		wt, err = gitrepo.Discover(cfg.Cwd)
		if err != nil {
			return nil, fmt.Errorf("--cwd %s: %w", cfg.Cwd, err)
		}
	} else {
		dir := cfg.Cwd
		if dir == "" {
			if dir, err = os.Getwd(); err != nil {
				return nil, fmt.Errorf("current directory: %w", err)
			}
		}
		wt, err = gitrepo.Discover(dir)
		if errors.Is(err, gitrepo.ErrNotRepository) {
			a.log.Info("no git repository here; serving without a local repository", "dir", dir)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("open repository at %s: %w", dir, err)
		}
	}
	if err := datadir.Check(cfg.DataDir, wt.Dirs()); errors.Is(err, datadir.ErrInsideRepository) {
		return nil, fmt.Errorf("%w: %w", ErrPosture, err)
	} else if err != nil {
		return nil, err
	}
	return wt, nil
}

// addLocal registers the working repository and builds its first view.
func (a *App) addLocal(wt *gitrepo.Worktree) error {
	cfg := a.cfg
	good := filepath.Join(cfg.DataDir, "local", cfg.RepoID+".refs")
	repo := registry.NewLocal(cfg.RepoID, wt, cfg.Trunk, redact.URL(wt.RemoteURL()), good)
	if err := a.reg.Add(repo); err != nil {
		return err
	}
	rf := a.refresh.Add(repo)
	// The watches exist before the first read, so a change made between
	// that read and Start is not lost: its events wait for Run.
	dirs := wt.RefDirs()
	w, err := watch.New(dirs.Head, dirs.Common, watch.Options{
		Debounce: cfg.WatchDebounce,
		Trigger:  func() { rf.Trigger(refresh.Watcher) },
		Log:      a.log.With("repo", repo.ID),
	})
	if err != nil {
		return err
	}
	a.watcher = w
	a.cleanups = append(a.cleanups, func() { _ = w.Close() })
	res, err := rf.Sync(context.Background(), refresh.Onboard)
	if err != nil {
		return err
	}
	if errors.Is(res.Err, refresh.ErrBuild) {
		// Refs that make no view must not keep the server from starting
		// (a supervisor would restart it forever): the repository is
		// served as failed (its syncStatus says so), with the view of its
		// last good refs when they were kept, and the next sync tries
		// again.
		a.log.Error("the working repository's refs make no view; it is served as failed", "id", repo.ID, "err", res.Err,
			"version", repo.Snapshot().Version())
		return nil
	}
	if res.Err != nil {
		return fmt.Errorf("read repository %s: %w", wt.WorkDir(), res.Err)
	}
	a.log.Info("serving local repository", "id", repo.ID, "dir", wt.WorkDir(), "trunk", repo.Snapshot().Repo().Trunk, "branches", len(repo.Snapshot().Branches()))
	return nil
}

// credentials are the https credentials of a repository declared in the
// config file: STACKD_REPO_<ID>_USERNAME / _PASSWORD, else the file's
// username/password. Only configured repositories ever get credentials
// (an onboarded mirror never does, whatever its id), and the mirror sends
// them only to the origin of the configured URL.
func credentials(id, user, pass string) transport.AuthMethod {
	key := strings.ToUpper(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, id))
	if v := os.Getenv("STACKD_REPO_" + key + "_USERNAME"); v != "" {
		user = v
	}
	if v := os.Getenv("STACKD_REPO_" + key + "_PASSWORD"); v != "" {
		pass = v
	}
	if user == "" && pass == "" {
		return nil
	}
	if user == "" {
		user = "x-access-token"
	}
	return &githttp.BasicAuth{Username: user, Password: pass}
}

// remoteSpec says how a mirror reaches its upstream.
type remoteSpec struct {
	id, url, trunk, fullName string
	// auth is nil for onboarded mirrors: operator credentials belong to
	// the repositories of the config file only.
	auth transport.AuthMethod
	// onboarded: added through the API (stored), so restricted to
	// --allowed-remote-hosts; else declared in the config file.
	onboarded bool
}

// newMirror checks the upstream (mirror.Config.Check: URL, private
// addresses, allowed hosts, ssh key) and builds the repository.
func (a *App) newMirror(rs remoteSpec) (*registry.Repo, error) {
	mc := mirror.Config{
		URL:          rs.url,
		Auth:         rs.auth,
		AllowLocal:   a.cfg.AllowLocalRemotes,
		AllowPrivate: a.cfg.AllowPrivateRemotes,
		RootCAs:      a.remoteRootCAs,
		Resolver:     a.resolver,
		Log:          a.log.With("repo", rs.id),
		Limits: mirror.Limits{
			MaxPackSize:  a.cfg.FetchLimits.PackSize,
			MaxObjects:   a.cfg.FetchLimits.Objects,
			MaxInflated:  a.cfg.FetchLimits.Inflated,
			MaxMetaSize:  a.cfg.FetchLimits.CommitSize,
			MaxDeltaSize: a.cfg.FetchLimits.DeltaSize,
			MaxRefs:      a.cfg.FetchLimits.Refs,
			MaxRefBytes:  a.cfg.FetchLimits.RefBytes,
		},
	}
	origin := registry.OriginConfig
	if rs.onboarded {
		mc.AllowedHosts = a.remoteHosts
		origin = registry.OriginAPI
	}
	if err := mc.Check(); err != nil {
		return nil, err
	}
	fullName := rs.fullName
	if fullName == "" {
		fullName = webhook.FullNameFromURL(rs.url)
		if strings.ContainsFunc(fullName, unicode.IsControl) {
			// Derived from a URL whose path decodes to control
			// characters: no name to match webhooks by, rather than
			// one that cannot be stored or shown.
			fullName = ""
		}
	}
	return registry.NewMirror(a.mirrors, registry.MirrorSpec{
		ID:       rs.id,
		Config:   mc,
		FullName: webhook.NormalizeFullName(fullName),
		Trunk:    rs.trunk,
		Origin:   origin,
		Shared:   a.cluster != nil,
	}), nil
}

func (a *App) addConfiguredMirror(rc config.RepoConfig) error {
	var auth transport.AuthMethod
	if rc.SSHKey != "" {
		key, err := gitssh.NewPublicKeysFromFile("git", rc.SSHKey, "")
		if err != nil {
			return fmt.Errorf("repos %s: sshKey: %w", rc.ID, err)
		}
		auth = key
	} else {
		auth = credentials(rc.ID, rc.Username, rc.Password)
	}
	r, err := a.newMirror(remoteSpec{id: rc.ID, url: rc.URL, trunk: rc.Trunk, fullName: rc.FullName, auth: auth})
	if errors.Is(err, mirror.ErrSSHKey) {
		return fmt.Errorf("repos %s: %w: set sshKey to the path of a private key", rc.ID, err)
	}
	if errors.Is(err, mirror.ErrForbiddenAddress) || errors.Is(err, mirror.ErrPlainHTTP) {
		return fmt.Errorf("repos %s: %w (--allow-private-remotes permits it)", rc.ID, err)
	}
	if err != nil {
		return fmt.Errorf("repos %s: %w", rc.ID, err)
	}
	if err := a.reg.Add(r); err != nil {
		return fmt.Errorf("repos %s: %w", rc.ID, err)
	}
	a.refresh.Add(r)
	return nil
}

// Onboard registers and clones a mirror for POST /api/v1/repos.
func (a *App) Onboard(ctx context.Context, req gen.RepoCreate) (*registry.Repo, error) {
	id := ""
	if req.Id != nil {
		id = *req.Id
	} else {
		id = defaultRepoID(req.Url)
	}
	if !config.ValidID(id) {
		return nil, fmt.Errorf("%w: %q (give an id of 1-64 letters, digits, '.', '_' or '-')", repos.ErrBadID, id)
	}
	trunk, fullName := "", ""
	if req.Trunk != nil {
		trunk = *req.Trunk
		if err := refname.Check(trunk); err != nil {
			return nil, repos.FieldError{Field: "trunk", Err: err}
		}
	}
	if req.FullName != nil {
		fullName = *req.FullName
		if err := webhook.CheckFullName(fullName); err != nil {
			return nil, repos.FieldError{Field: "fullName", Err: err}
		}
	}
	// A clone that the database then cannot store would be cleaned up
	// with the database's help: with it unreachable, refuse (503) before
	// anything is cloned.
	if err := a.store.Ping(ctx); err != nil {
		return nil, fmt.Errorf("onboard %s: %w", id, err)
	}
	// newMirror checks the URL; Add refuses a duplicate id or URL. Both
	// happen before any clone. An onboarded mirror never gets operator
	// credentials.
	r, err := a.newMirror(remoteSpec{id: id, url: req.Url, trunk: trunk, fullName: fullName, onboarded: true})
	if errors.Is(err, mirror.ErrSSHKey) {
		return nil, fmt.Errorf("%w: ssh remotes can only be declared in the config file, with an sshKey", mirror.ErrSSHKey)
	}
	if err != nil {
		return nil, err
	}
	// No clone starts while the server is short of memory (memory.go).
	if a.shortOfMemory() {
		return nil, fmt.Errorf("onboard %s: %w", id, memlimit.ErrPressure)
	}
	a.setOnboarding(id, actorOf(ctx), true)
	defer a.setOnboarding(id, "", false)
	rf, err := a.register(r)
	if err != nil {
		return nil, err
	}
	res, err := rf.Sync(context.WithoutCancel(ctx), refresh.Onboard)
	if err == nil {
		err = res.Err
	}
	if err == nil {
		// Stored only once cloned: a failed onboarding leaves nothing.
		// (Replicas store it in the run, under the mirror's lease:
		// leaseOnboarded.)
		err = a.commitOnboarding(context.WithoutCancel(ctx), r)
	}
	if err != nil {
		// The refresher is stopped before the directory goes, so no run
		// of it can clone it again.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.SyncTimeout)
		defer cancel()
		if a.cluster != nil && !errors.Is(err, repos.ErrRemovedWhileOnboarding) {
			a.abandonOnboarding(fctx, r)
		} else if ferr := a.forget(fctx, r); ferr != nil && !errors.Is(ferr, repos.ErrNotFound) {
			a.log.Warn("cannot clean up a failed onboarding", "id", r.ID, "err", redact.Error(ferr))
		}
		if errors.Is(err, refresh.ErrRemoved) {
			err = repos.ErrRemovedWhileOnboarding
		}
		return nil, err
	}
	if a.cluster != nil {
		a.cluster.Notify(cluster.Message{Kind: cluster.KindAdded, Repo: r.ID})
	}
	a.log.Info("mirror onboarded", "id", r.ID, "url", r.Remote)
	a.runMu.Lock()
	if a.runCtx != nil {
		a.startInterval(a.runCtx, rf)
	}
	a.runMu.Unlock()
	return r, nil
}

// defaultRepoID is the URL's last path segment without .git.
func defaultRepoID(url string) string {
	u := strings.TrimSuffix(strings.TrimRight(url, "/"), ".git")
	if i := strings.LastIndexAny(u, "/:"); i >= 0 {
		u = u[i+1:]
	}
	return u
}

// Handler is the server's HTTP handler.
func (a *App) Handler() http.Handler { return a.handler }

// Registry exposes the repositories (tests and the watcher).
func (a *App) Registry() *registry.Registry { return a.reg }

// Refresh exposes the refresh manager.
func (a *App) Refresh() *refresh.Manager { return a.refresh }

// Start launches the background work and returns at once: the first clone
// of configured mirrors and their interval loops, and the watcher of the
// local repository. It all stops when ctx ends.
func (a *App) Start(ctx context.Context) error {
	a.runMu.Lock()
	a.runCtx = ctx
	a.runMu.Unlock()
	go a.auth.Sweeper(ctx, every(ctx, time.Hour))
	go a.auth.AuditFlusher(ctx, every(ctx, time.Minute))
	for _, r := range a.reg.List() {
		rf, ok := a.refresh.Get(r.ID)
		if !ok {
			continue
		}
		if _, ok := r.Source().(*source.Mirror); ok {
			// A mirror on disk is served before any network access; a
			// second start-up run then fetches it (see refresh.Startup).
			rf.Trigger(refresh.Startup)
			a.startInterval(ctx, rf)
		}
	}
	if a.watcher != nil {
		go a.watcher.Run(ctx)
	}
	if a.cluster != nil {
		go a.runInbox(ctx)
		go a.cluster.Listen(ctx, clusterHandler{a: a})
	}
	return nil
}

// every ticks every d until ctx ends.
func every(ctx context.Context, d time.Duration) <-chan time.Time {
	t := time.NewTicker(d)
	context.AfterFunc(ctx, t.Stop)
	return t.C
}

func (a *App) startInterval(ctx context.Context, rf *refresh.Refresher) {
	if a.cfg.SyncInterval <= 0 {
		return
	}
	go rf.RunInterval(ctx, refresh.Schedule{Interval: a.cfg.SyncInterval, After: a.after})
}

// Close stops the background work.
func (a *App) Close() {
	for i := len(a.cleanups) - 1; i >= 0; i-- {
		a.cleanups[i]()
	}
}

// Serve listens on cfg.Addr and serves until ctx ends, then shuts down
// gracefully.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		return err
	}
	// No ReadTimeout or WriteTimeout: they would cut the event streams.
	// Request bodies get their own read deadline (validate.Bodies, after
	// the access gate) and a size limit from the spec; every response
	// write its own deadline (deadline.Middleware, --write-stall-timeout).
	hs := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	a.log.Info("stackd listening", "addr", ln.Addr().String(), "docs", "http://"+ln.Addr().String()+"/docs/")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	err := hs.Shutdown(sctx)
	a.Close()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
