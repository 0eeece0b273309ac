// Package impl assembles the stackd server: New wires the concern
// packages together, Start launches the background work, Serve serves
// HTTP until its context ends, Close stops everything. Nothing else lives
// here; docs/architecture.md draws the two paths (a request, a refresh)
// through the packages:
//
//   - httpstack: the middleware chain, the spec and docs routes;
//   - api: the strict handlers, one file per OpenAPI tag;
//   - repos: the set of served repositories and their lifecycle;
//   - replica: the coordination of replicas that share a database;
//   - datadir: the data directory's lock and its place;
//   - metrics: the Prometheus series and the metrics listener's handler;
//   - refresh, registry, source, view, events, auth, store, ...: the
//     concerns they are made of.
package impl

import (
	"cmp"
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
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/api"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/datadir"
	"github.com/stackd/stackd/impl/deadline"
	"github.com/stackd/stackd/impl/egress"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/httpstack"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/metrics"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/replica"
	"github.com/stackd/stackd/impl/repos"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
)

// App is an assembled stackd server. New builds it; Serve serves it until
// its context ends (or Start and Handler, for a caller with its own HTTP
// server); Close stops it.
type App struct {
	log      *slog.Logger
	repos    *repos.Set
	refresh  *refresh.Manager
	auth     *auth.Auth
	replica  *replica.Replica // nil without --database-url
	streams  *events.Broker
	handler  http.Handler
	cleanups []func() // run in reverse by Close

	// metrics are the series (nil without --metrics-addr); metricsLn is
	// their listener, bound by New, served from Start.
	metrics      *metrics.Metrics
	metricsLn    net.Listener
	metricsPprof bool
}

// Options are test seams of New; the zero value is production.
type Options struct {
	// BeforeRefresh runs before each source refresh (tests hold runs with
	// it; see refresh.Options.BeforeRefresh).
	BeforeRefresh func(ctx context.Context, repoID string, mode refresh.Mode) error
	// After overrides the interval scheduler's timer.
	After func(time.Duration) <-chan time.Time
	// Now overrides the clock of sessions and tokens.
	Now func() time.Time
	// Rate, SyncRate and FailRate override the per-client token buckets
	// (API, sync, failed authentication).
	Rate, SyncRate, FailRate auth.RateLimit
	// DebounceClock times the webhook debounce window (refresh.Clock).
	DebounceClock refresh.Clock
	// Enqueued is called after each trigger joined or created its run
	// (refresh.Options.Enqueued).
	Enqueued func(repoID, runID string)
	// EventLimits override, field by field when not zero, the event
	// streams' caps (--max-event-streams, --max-event-streams-per-client)
	// and buffers.
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
	// refuses new fetches (repos.GuardFetches); a fetch it refuses never
	// reaches BeforeRefresh. Default: a memlimit.Monitor of the process's
	// memory limit (tests force pressure with it).
	ShortOfMemory func() bool
	// DiffLimits override the limits of a branch's patch
	// (view.DefaultDiffLimits); DiffHooks observe their computations.
	DiffLimits view.DiffLimits
	DiffHooks  view.DiffHooks
}

// ErrPosture marks a start-up refused for its security posture (for
// example a non-loopback address with auth off, or a data directory
// inside the served repository): exit code 2.
var ErrPosture = auth.ErrPosture

// ErrDataDirInUse marks a start-up refused because another stackd process
// uses the data directory (datadir.ErrInUse).
var ErrDataDirInUse = datadir.ErrInUse

// ErrLocalWithDatabase marks a start-up refused because --cwd came with
// --database-url without --allow-local-with-database: exit code 2.
var ErrLocalWithDatabase = repos.ErrLocalWithDatabase

// New assembles the server from a validated Config. The working
// repository (if any) gets its first view before New returns; mirrors
// are fetched in the background once Start runs.
func New(cfg config.Config, log *slog.Logger, opts Options) (*App, error) {
	a := &App{log: log}
	if err := a.assemble(cfg, opts); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) assemble(cfg config.Config, opts Options) error {
	log := a.log
	replicaID := cfg.ReplicaID
	if replicaID == "" {
		replicaID = config.DefaultReplicaID(cfg.Addr)
	}
	hosts, err := egress.ParseHosts(cfg.AllowedRemoteHosts)
	if err != nil {
		return fmt.Errorf("--allowed-remote-hosts: %w", err)
	}
	short := opts.ShortOfMemory
	if short == nil {
		// Short of memory, the views of mirrors not in a run keep only
		// their bytes before anything is refused (refresh.Manager.Relieve).
		relieve := func() bool { return a.refresh != nil && a.refresh.Relieve() }
		short = memlimit.NewMonitor(memlimit.Options{Logger: log, Relieve: relieve}).Short
	}
	acfg := auth.FromConfig(cfg)
	for _, o := range []struct{ to, from *auth.RateLimit }{{&acfg.Rate, &opts.Rate}, {&acfg.SyncRate, &opts.SyncRate}, {&acfg.FailRate, &opts.FailRate}} {
		if *o.from != (auth.RateLimit{}) {
			*o.to = *o.from
		}
	}
	warnings, err := auth.CheckPosture(cfg.Loopback(), acfg)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	// Find the working repository first: nothing may be created (the
	// data dir included) before we know it is not inside it.
	wt, err := repos.FindLocal(cfg, log)
	if err != nil {
		return err
	}
	if err := a.listenMetrics(cfg); err != nil {
		return err
	}
	st, err := a.openStore(cfg)
	if err != nil {
		return err
	}
	if a.metrics != nil {
		st.Observe(a.metrics)
	}
	if err := refresh.FailUnfinished(context.Background(), st, replicaID, log); err != nil {
		return err
	}
	broker := events.NewBroker(eventLimits(cfg, opts.EventLimits))
	a.streams = broker
	a.metrics.GaugeFunc(metrics.EventStreams, "Event streams (GET /api/v1/repos/{repoID}/events) open on this process.",
		func() float64 { return float64(broker.Subscribers()) })
	if pg, ok := st.(*store.Postgres); ok {
		if a.replica, err = replica.New(pg, replica.Options{Replica: replicaID, Leases: cfg.SyncWorkers + 4, Streams: broker, Logger: log, Metrics: a.metrics}); err != nil {
			return err
		}
		a.cleanups = append(a.cleanups, a.replica.Close)
	}
	mirrors, err := mirror.NewRoot(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if acfg.Mode == auth.ModeOIDC {
		// One sign-in cookie key for every process on this database, so
		// that a sign-in may start and end on different replicas.
		if acfg.LoginKey, err = st.SharedKey(actx, "login-cookie", 32); err != nil {
			return fmt.Errorf("sign-in key: %w", err)
		}
	}
	if a.metrics != nil {
		acfg.Refusals = a.metrics
	}
	if a.auth, err = auth.New(actx, acfg, st, log, opts.Now); err != nil {
		return err
	}
	// The audit aggregates still open are written before the store
	// closes (cleanups run in reverse).
	a.cleanups = append(a.cleanups, func() { a.auth.FlushAudit(true) })

	ropts := refresh.Options{
		Workers: cfg.SyncWorkers, Timeout: cfg.SyncTimeout, Store: st, History: cfg.SyncHistory,
		BeforeRefresh: repos.GuardFetches(short, opts.BeforeRefresh),
		Events:        broker,
		Debounce:      cfg.WebhookDebounce, MaxDelay: cfg.WebhookMaxDelay, Clock: opts.DebounceClock,
		Enqueued: opts.Enqueued, Logger: log, Replica: replicaID, Metrics: a.metrics,
	}
	sopts := repos.Options{
		Store: st, Mirrors: mirrors, Streams: broker, Logger: log,
		Remotes: repos.Remotes{
			AllowLocal: cfg.AllowLocalRemotes, AllowPrivate: cfg.AllowPrivateRemotes, AllowedHosts: hosts,
			RootCAs: opts.RemoteRootCAs, Resolver: opts.RemoteResolver, Limits: cfg.FetchLimits,
		},
		SyncTimeout: cfg.SyncTimeout, SyncInterval: cfg.SyncInterval, After: opts.After, ShortOfMemory: short,
		Metrics: a.metrics,
	}
	if a.replica != nil {
		// The replica relays the events of syncs, guards and stores the
		// runs of shared mirrors, and holds their leases.
		ropts.Cluster, ropts.Events, sopts.Replicas = a.replica, a.replica, a.replica
		// The schedule of interval runs lives in the database: a
		// replica claims a due run there before it starts it.
		sopts.Schedule = st
	}
	// Idle event streams are served off their requests' goroutines
	// (events.Hub; nil where it is not available: on them). The hub
	// closes after the broker: every stream has its last chunk written.
	hub, err := events.NewHub(cmp.Or(cfg.WriteStallTimeout, deadline.DefaultBudget))
	if err != nil {
		return err
	}
	if hub != nil {
		a.cleanups = append(a.cleanups, hub.Close)
	}
	a.refresh = refresh.NewManager(ropts)
	a.cleanups = append(a.cleanups, a.refresh.Close, broker.Close)
	runs := func(running bool) func() float64 {
		return func() float64 {
			q, r := a.refresh.Runs()
			if running {
				return float64(r)
			}
			return float64(q)
		}
	}
	a.metrics.GaugeFunc(metrics.SyncQueued, "Sync runs queued on this process, waiting for their start (a debounce window, a worker).", runs(false))
	a.metrics.GaugeFunc(metrics.SyncRunning, "Sync runs running on this process.", runs(true))
	sopts.Refresh = a.refresh
	a.repos = repos.New(sopts)
	a.cleanups = append(a.cleanups, a.repos.Close)
	if a.replica != nil {
		a.replica.Serve(a.repos)
	}

	if wt != nil {
		local := repos.Local{ID: cfg.RepoID, Trunk: cfg.Trunk, Good: filepath.Join(cfg.DataDir, "local", cfg.RepoID+".refs"), WatchDebounce: cfg.WatchDebounce}
		if err := a.repos.AddLocal(wt, local); err != nil {
			return err
		}
	}
	for _, rc := range cfg.Repos {
		if err := a.repos.AddConfigured(rc); err != nil {
			return err
		}
	}
	if err := a.repos.Restore(context.Background()); err != nil {
		return err
	}
	a.repos.Sweep(context.Background())

	srv := api.New(api.Deps{
		Repos: a.repos, Lifecycle: a.repos, Refreshers: api.RefreshersOf(a.refresh), Streams: broker, StreamHub: hub,
		Database: st, Audit: st, Logger: log,
		Info: gen.ServerConfig{ReadOnly: cfg.ReadOnly, AuthRequired: cfg.Auth == string(auth.ModeOIDC),
			PublicReads: acfg.ReadsAnonymous(), Version: cfg.Version},
		WebhookSecret: []byte(cfg.WebhookSecret),
		ShortOfMemory: short,
		DiffLimits:    opts.DiffLimits,
		DiffHooks:     opts.DiffHooks,
		Metrics:       a.metrics,
		PerUser:       acfg.PerUserVisibility(),
	})
	a.handler, err = httpstack.New(httpstack.Deps{
		Logger:            log,
		API:               srv,
		Auth:              a.auth,
		HSTS:              strings.HasPrefix(strings.ToLower(cfg.BaseURL), "https://"),
		BodyTimeout:       opts.BodyTimeout,
		WriteStallTimeout: cfg.WriteStallTimeout,
		AccessLog:         cfg.AccessLog,
		Metrics:           a.metrics,
	})
	return err
}

// listenMetrics makes the series and binds the metrics listener of
// --metrics-addr (none without it): its own listener, never the API's,
// so that the API's exposure (the gate, the postures) and the operator's
// scrapes stay apart. Start serves it; Close closes it.
func (a *App) listenMetrics(cfg config.Config) error {
	if cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	a.metrics, a.metricsLn, a.metricsPprof = metrics.New(cfg.Version), ln, cfg.MetricsPprof
	a.cleanups = append(a.cleanups, func() { _ = ln.Close() })
	return nil
}

// MetricsAddr is the address the metrics listener is bound to ("" without
// --metrics-addr).
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// serveMetrics serves /metrics (and with --metrics-pprof
// /debug/pprof/) on the metrics listener until ctx ends or Close.
func (a *App) serveMetrics(ctx context.Context) {
	if a.metricsLn == nil {
		return
	}
	hs := &http.Server{
		Handler:           a.metrics.Handler(a.metricsPprof),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
	}
	ln := a.metricsLn
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			a.log.Error("metrics listener failed", "err", err)
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = hs.Close() })
	a.cleanups = append(a.cleanups, func() { stop(); _ = hs.Close() })
	a.log.Info("metrics listening", "addr", ln.Addr().String(), "pprof", a.metricsPprof)
}

// openStore opens the database (sessions, audit log, repositories
// onboarded through the API, sync history, webhook deliveries): the
// PostgreSQL of --database-url, else SQLite in the data dir, which is
// locked first. Missing migrations are applied (and logged).
func (a *App) openStore(cfg config.Config) (store.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	switch release, err := datadir.Lock(cfg.DataDir, cfg.DatabaseURL != ""); {
	case errors.Is(err, datadir.ErrInUse):
		return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	case err != nil:
		a.log.Warn("the data directory is not locked: make sure no other stackd process uses it, except replicas on the same database", "err", err)
	default:
		a.cleanups = append(a.cleanups, release)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := store.OpenFor(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.cleanups = append(a.cleanups, func() { _ = st.Close() })
	for _, step := range st.Applied() {
		a.log.Info("database migrated", "version", step.Version, "step", step.Name)
	}
	return st, nil
}

// Handler is the server's HTTP handler (Serve serves it).
func (a *App) Handler() http.Handler { return a.handler }

// Start launches the background work and returns at once: the first
// fetch of every mirror and the interval scheduler, the watcher of the working
// repository, the sweeps of sessions and audit entries, the event
// streams' keepalives, the metrics
// listener (--metrics-addr), and on a replica the listening to the
// others. It all stops when ctx ends.
func (a *App) Start(ctx context.Context) error {
	a.serveMetrics(ctx)
	go a.auth.Sweeper(ctx, every(ctx, time.Hour))
	go a.auth.AuditFlusher(ctx, every(ctx, time.Minute))
	// One ticker keeps every event stream alive (not a timer per stream).
	go a.streams.KeepaliveEvery(ctx, every(ctx, keepaliveEvery))
	a.repos.Start(ctx)
	if a.replica != nil {
		a.replica.Start(ctx)
	}
	return nil
}

// keepaliveEvery is the period of the event streams' keepalive comments:
// below the idle timeouts of common proxies (60 s).
const keepaliveEvery = 25 * time.Second

// eventLimits are the event-stream caps of --max-event-streams and
// --max-event-streams-per-client, with the non-zero fields of over (a
// test seam) taking precedence.
func eventLimits(cfg config.Config, over events.Limits) events.Limits {
	l := events.Limits{Total: cfg.MaxEventStreams, PerClient: cfg.MaxEventStreamsPerClient}
	for _, f := range []struct{ to, from *int }{{&l.Total, &over.Total}, {&l.PerClient, &over.PerClient}, {&l.Buffer, &over.Buffer}, {&l.Replay, &over.Replay}, {&l.ReplayBytes, &over.ReplayBytes}} {
		if *f.from != 0 {
			*f.to = *f.from
		}
	}
	return l
}

// every ticks every d until ctx ends.
func every(ctx context.Context, d time.Duration) <-chan time.Time {
	t := time.NewTicker(d)
	context.AfterFunc(ctx, t.Stop)
	return t.C
}

// Close stops the background work and closes the database and the data
// directory's lock.
func (a *App) Close() {
	for i := len(a.cleanups) - 1; i >= 0; i-- {
		a.cleanups[i]()
	}
	a.cleanups = nil
}

// Serve starts the background work (Start), serves HTTP on ln until ctx
// ends, then shuts down gracefully and closes the App.
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
