package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/store"
)

// fileConfig is the YAML file given with --config.
type fileConfig struct {
	Addr                string              `yaml:"addr"`
	DataDir             string              `yaml:"dataDir"`
	SyncWorkers         *int                `yaml:"syncWorkers"`
	SyncTimeout         string              `yaml:"syncTimeout"`
	SyncInterval        string              `yaml:"syncInterval"`
	SyncHistory         *int                `yaml:"syncHistory"`
	AllowLocalRemotes   *bool               `yaml:"allowLocalRemotes"`
	AllowPrivateRemotes *bool               `yaml:"allowPrivateRemotes"`
	AllowedRemoteHosts  []string            `yaml:"allowedRemoteHosts"`
	Admins              []string            `yaml:"admins"`
	WebhookSecret       string              `yaml:"webhookSecret"`
	WebhookDebounce     string              `yaml:"webhookDebounce"`
	WebhookMaxDelay     string              `yaml:"webhookMaxDelay"`
	MemoryLimit         string              `yaml:"memoryLimit"`
	MaxEventStreams     *int                `yaml:"maxEventStreams"`
	MaxStreamsPerClient *int                `yaml:"maxEventStreamsPerClient"`
	Repos               []config.RepoConfig `yaml:"repos"`
}

// serveFlags binds the serve flags to cfg. Each flag's default is the
// STACKD_<FLAG> variable when set, else the config default.
type serveFlags struct {
	fs       *flag.FlagSet
	envErrs  []error
	explicit map[string]bool
}

func envName(flagName string) string {
	return "STACKD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (s *serveFlags) str(p *string, name, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		*p = v
		s.explicit[name] = true
	}
	s.fs.StringVar(p, name, *p, usage+" ("+envName(name)+")")
}

func (s *serveFlags) value(v flag.Value, name, usage string) {
	if env, ok := os.LookupEnv(envName(name)); ok {
		if err := v.Set(env); err != nil {
			s.envErrs = append(s.envErrs, fmt.Errorf("%s=%q: %w", envName(name), env, err))
		}
		s.explicit[name] = true
	}
	s.fs.Var(v, name, usage+" ("+envName(name)+")")
}

// serveEnv are the environment variables serve reads besides
// STACKD_<FLAG>, for serve -h.
const serveEnv = `environment (besides STACKD_<FLAG> for each flag above):
  STACKD_WEBHOOK_SECRET          enables POST /api/v1/webhooks/github (or webhookSecret: in --config)
  STACKD_OIDC_CLIENT_SECRET      the OIDC client secret (browser sign-in)
  STACKD_REPO_<ID>_USERNAME      https credentials of the repository <ID> of the config file
  STACKD_REPO_<ID>_PASSWORD      (only ever sent to that repository's origin)
  STACKD_DEBUG                   any value: debug logging
  XDG_DATA_HOME                  the default --data-dir is $XDG_DATA_HOME/stackd
  GOMEMLIMIT                     the memory limit when --memory-limit is auto (the default)
  SSH_KNOWN_HOSTS                known_hosts for ssh mirrors (default ~/.ssh/known_hosts)
  PGPASSWORD, ~/.pgpass          the database password, when --database-url has none
`

// parseServe fills the Config from args, the environment and --config;
// -h prints the flags and the environment to help (and returns
// flag.ErrHelp).
func parseServe(args []string, help io.Writer) (config.Config, error) {
	cfg := config.Default()
	cfg.Version = version
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	s := &serveFlags{fs: fs, explicit: map[string]bool{}}
	var cfgFile string
	s.str(&cfgFile, "config", "YAML file with mirrors (repos:) and settings")
	s.str(&cfg.Addr, "addr", "listen address; loopback selects the local posture")
	s.str(&cfg.Cwd, "cwd", "the working repository to serve read-only (default: the one containing the current directory)")
	s.str(&cfg.RepoID, "repo-id", "id of the local repository")
	s.str(&cfg.Trunk, "trunk", "trunk branch (default: remote HEAD, init.defaultBranch, main, master)")
	s.str(&cfg.LogFormat, "log-format", "log format: text or json")
	s.value(boolValue{&cfg.AccessLog}, "access-log", "one info line per request: method, route, status, bytes, duration, request id, principal, client address (--access-log=false: none)")
	s.str(&cfg.DataDir, "data-dir", "stackd's own data (mirrors, database)")
	s.value(intValue{&cfg.SyncWorkers}, "sync-workers", "repositories refreshed in parallel")
	s.value(durationValue{&cfg.SyncTimeout}, "sync-timeout", "timeout of one refresh")
	s.value(durationValue{&cfg.SyncInterval}, "sync-interval", "mirror refresh interval, 0 disables")
	s.value(intValue{&cfg.SyncHistory}, "sync-history", "finished syncs kept per repository in the database")
	s.value(boolValue{&cfg.AllowLocalRemotes}, "allow-local-remotes", "allow file:// and plain-path mirror remotes")
	s.value(boolValue{&cfg.AllowPrivateRemotes}, "allow-private-remotes", "allow mirrors to connect to loopback, private and other non-public addresses, and plain http")
	s.value(stringList{&cfg.AllowedRemoteHosts}, "allowed-remote-hosts", "the only hosts onboarding may clone from, e.g. github.com,*.example.com (comma-separated; recommended on a server)")
	s.str(&cfg.Auth, "auth", "authentication: none or oidc (default none; a non-loopback --addr needs oidc or --read-only)")
	s.value(boolValue{&cfg.ReadOnly}, "read-only", "refuse every mutating operation; reads stay anonymous")
	s.value(boolValue{&cfg.PublicReads}, "public-reads", "with --auth oidc, let anonymous callers read (default: every read needs a signed-in user)")
	s.value(boolValue{&cfg.AllowAnyUser}, "allow-any-user", "with --auth oidc, admit every account of the issuer (instead of --allowed-emails/--allowed-domains/--allowed-groups)")
	s.str(&cfg.OIDCIssuer, "oidc-issuer", "OIDC issuer URL")
	s.str(&cfg.OIDCClientID, "oidc-client-id", "OIDC client id (the audience of bearer ID tokens)")
	s.str(&cfg.BaseURL, "base-url", "external URL of this server, e.g. https://stackd.example.com")
	s.value(stringList{&cfg.OIDCExtraAudiences}, "oidc-extra-audiences", "more accepted audiences of bearer ID tokens (comma-separated)")
	s.value(stringList{&cfg.AllowedEmails}, "allowed-emails", "verified e-mail addresses allowed in (comma-separated)")
	s.value(stringList{&cfg.AllowedDomains}, "allowed-domains", "verified e-mail domains allowed in (comma-separated)")
	s.value(stringList{&cfg.AllowedGroups}, "allowed-groups", "groups-claim values allowed in (comma-separated)")
	s.value(stringList{&cfg.Admins}, "admins", "admins, who see and manage every repository: verified e-mail addresses and group:<name> for groups-claim values (comma-separated; needs --auth oidc)")
	s.value(stringList{&cfg.CORSOrigins}, "cors-origins", "exact origins allowed cross-origin (comma-separated)")
	s.value(stringList{&cfg.TrustedProxies}, "trusted-proxies", "CIDRs of reverse proxies whose X-Forwarded-For is believed (comma-separated)")
	s.str(&cfg.RateLimit, "rate-limit", `per-client API requests, "<per-second>/<burst>" or "off"`)
	s.str(&cfg.SyncRateLimit, "sync-rate-limit", `per-client new runs (onboardings, syncs that do not join a queued run), "<per-second>/<burst>" or "off"`)
	s.str(&cfg.AuthFailureRateLimit, "auth-failure-rate-limit", `per-address failed authentication (bad tokens, unsigned webhooks), "<per-second>/<burst>" or "off"`)
	s.value(intValue{&cfg.IPv6ClientPrefix}, "ipv6-client-prefix", "prefix length (bits) that groups anonymous IPv6 clients for rate limits, event-stream caps and the audit log; 128 keys every address apart")
	s.value(durationValue{&cfg.WriteStallTimeout}, "write-stall-timeout", "longest wait of one response write (32 KiB) for a client that does not read; then the response is cut and the connection closed")
	s.value(durationValue{&cfg.AuditMaxAge}, "audit-max-age", "how long audit entries are kept, 0 keeps them whatever their age")
	s.value(intValue{&cfg.AuditMaxEntries}, "audit-max-entries", "how many audit entries are kept (the newest), 0 for no limit")
	s.value(durationValue{&cfg.WebhookDebounce}, "webhook-debounce", "quiet window before the refresh a webhook push queues starts, 0 starts it at once")
	s.value(durationValue{&cfg.WebhookMaxDelay}, "webhook-max-delay", "longest wait of a webhook push's refresh (at least --webhook-debounce)")
	s.str(&cfg.DatabaseURL, "database-url", "PostgreSQL URL (postgres://...) of the database replicas share; default: SQLite in --data-dir")
	s.value(boolValue{&cfg.AllowLocalWithDatabase}, "allow-local-with-database", "serve the working repository also with --database-url (a single-replica feature)")
	s.str(&cfg.MemoryLimit, "memory-limit", `soft memory limit, e.g. 1GiB or 512MiB, "off", or "auto": GOMEMLIMIT when set, else 80% of the cgroup's limit, else 2GiB; near it new fetches are refused (503)`)
	s.value(sizeValue{&cfg.FetchLimits.PackSize}, "fetch-max-pack-size", "largest pack one clone or fetch may receive, e.g. 4GiB (0: the default, 4GiB)")
	s.value(int64Value{&cfg.FetchLimits.Objects}, "fetch-max-objects", "most objects one pack may hold (0: the default, 2000000)")
	s.value(sizeValue{&cfg.FetchLimits.Inflated}, "fetch-max-inflated", "most bytes inflated to receive and check one pack (0: the default, 32GiB)")
	s.value(sizeValue{&cfg.FetchLimits.CommitSize}, "fetch-max-commit-size", "largest commit, tree or tag a pack may hold (0: the default, 4MiB)")
	s.value(int64Value{&cfg.FetchLimits.Refs}, "fetch-max-refs", "most refs of refs/heads, refs/stackit and refs/branch-metadata an upstream may advertise (0: the default, 150000)")
	s.value(sizeValue{&cfg.FetchLimits.RefBytes}, "fetch-max-ref-bytes", "most bytes of the names of those refs (0: the default, 8MiB)")
	s.value(sizeValue{&cfg.FetchLimits.DeltaSize}, "fetch-max-delta-size", "largest object held in memory to resolve a delta, a delta's base or result (0: the default, 64MiB)")
	s.value(intValue{&cfg.MaxEventStreams}, "max-event-streams", "most event streams open at once (429 past it); each holds a file descriptor, see README")
	s.value(intValue{&cfg.MaxEventStreamsPerClient}, "max-event-streams-per-client", "most event streams one client (signed-in user, else address) holds open at once")
	s.str(&cfg.MetricsAddr, "metrics-addr", "listen address of /metrics (Prometheus), a listener of its own, never --addr; default: none")
	s.value(boolValue{&cfg.MetricsPprof}, "metrics-pprof", "also serve net/http/pprof at /debug/pprof/ on the metrics listener (needs --metrics-addr)")
	s.str(&cfg.ReplicaID, "replica-id", "this process's name in logs and sync results (default <hostname>:<port of --addr>)")
	if v, ok := os.LookupEnv("STACKD_WEBHOOK_SECRET"); ok {
		cfg.WebhookSecret = v
	}
	cfg.OIDCClientSecret = os.Getenv("STACKD_OIDC_CLIENT_SECRET")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(help, "usage: stackd serve [flags]\n\nServe the git repository of the current directory (and the mirrors of --config).\n\nflags:\n")
			fs.SetOutput(help)
			fs.PrintDefaults()
			fmt.Fprint(help, "\n"+serveEnv)
			return cfg, err
		}
		return cfg, fmt.Errorf("%w: %v (see stackd serve -h)", errUsage, err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := errors.Join(s.envErrs...); err != nil {
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	fs.Visit(func(f *flag.Flag) { s.explicit[f.Name] = true })
	if cfgFile != "" {
		if err := applyFile(&cfg, cfgFile, s.explicit); err != nil {
			return cfg, fmt.Errorf("%w: %v", errUsage, err)
		}
		cfg.ConfigFile = cfgFile
	}
	cfg.CwdExplicit = s.explicit["cwd"]
	if cfg.CwdExplicit {
		cfg.Cwd = config.AbsPath(cfg.Cwd)
	}
	cfg.DataDir = config.AbsPath(cfg.DataDir)
	cfg.ResolveDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: %v", errUsage, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return cfg, nil
}

// applyFile fills settings that no flag or variable set from the file.
func applyFile(cfg *config.Config, path string, explicit map[string]bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var fc fileConfig
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	set := func(name string, apply func() error) error {
		if explicit[name] {
			return nil
		}
		if err := apply(); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, name, err)
		}
		return nil
	}
	errs := []error{
		set("addr", func() error {
			if fc.Addr != "" {
				cfg.Addr = fc.Addr
			}
			return nil
		}),
		set("data-dir", func() error {
			if fc.DataDir != "" {
				cfg.DataDir = fc.DataDir
			}
			return nil
		}),
		set("sync-workers", func() error {
			if fc.SyncWorkers != nil {
				cfg.SyncWorkers = *fc.SyncWorkers
			}
			return nil
		}),
		set("sync-timeout", func() error {
			if fc.SyncTimeout == "" {
				return nil
			}
			return durationValue{&cfg.SyncTimeout}.Set(fc.SyncTimeout)
		}),
		set("sync-interval", func() error {
			if fc.SyncInterval == "" {
				return nil
			}
			return durationValue{&cfg.SyncInterval}.Set(fc.SyncInterval)
		}),
		set("sync-history", func() error {
			if fc.SyncHistory != nil {
				cfg.SyncHistory = *fc.SyncHistory
			}
			return nil
		}),
		set("allow-local-remotes", func() error {
			if fc.AllowLocalRemotes != nil {
				cfg.AllowLocalRemotes = *fc.AllowLocalRemotes
			}
			return nil
		}),
		set("allow-private-remotes", func() error {
			if fc.AllowPrivateRemotes != nil {
				cfg.AllowPrivateRemotes = *fc.AllowPrivateRemotes
			}
			return nil
		}),
		set("webhook-debounce", func() error {
			if fc.WebhookDebounce == "" {
				return nil
			}
			return durationValue{&cfg.WebhookDebounce}.Set(fc.WebhookDebounce)
		}),
		set("webhook-max-delay", func() error {
			if fc.WebhookMaxDelay == "" {
				return nil
			}
			return durationValue{&cfg.WebhookMaxDelay}.Set(fc.WebhookMaxDelay)
		}),
		set("memory-limit", func() error {
			if fc.MemoryLimit != "" {
				cfg.MemoryLimit = fc.MemoryLimit
			}
			return nil
		}),
		set("allowed-remote-hosts", func() error {
			if fc.AllowedRemoteHosts != nil {
				cfg.AllowedRemoteHosts = fc.AllowedRemoteHosts
			}
			return nil
		}),
		set("max-event-streams", func() error {
			if fc.MaxEventStreams != nil {
				cfg.MaxEventStreams = *fc.MaxEventStreams
			}
			return nil
		}),
		set("max-event-streams-per-client", func() error {
			if fc.MaxStreamsPerClient != nil {
				cfg.MaxEventStreamsPerClient = *fc.MaxStreamsPerClient
			}
			return nil
		}),
		set("admins", func() error {
			if fc.Admins != nil {
				cfg.Admins = fc.Admins
			}
			return nil
		}),
	}
	if cfg.WebhookSecret == "" {
		cfg.WebhookSecret = fc.WebhookSecret
	}
	cfg.Repos = fc.Repos
	for i, r := range cfg.Repos {
		if r.SSHKey != "" && !filepath.IsAbs(r.SSHKey) {
			cfg.Repos[i].SSHKey = filepath.Join(filepath.Dir(config.AbsPath(path)), r.SSHKey)
		}
	}
	return errors.Join(errs...)
}

// applyMemoryLimit sets the process's soft memory limit from the
// validated --memory-limit (memlimit.Choose), and returns what to log
// about it.
func applyMemoryLimit(v string) []any {
	setting, err := memlimit.Parse(v)
	if err != nil { // not reached: Validate checked it
		return []any{"limit", "unchanged", "err", err}
	}
	gomemlimit := os.Getenv("GOMEMLIMIT")
	choice := memlimit.Choose(setting, gomemlimit, debug.SetMemoryLimit(-1), os.DirFS("/"))
	memlimit.Apply(choice)
	attrs := []any{"limit", memlimit.Format(choice.Bytes), "from", choice.From}
	if choice.Cgroup > 0 {
		attrs = append(attrs, "cgroup", memlimit.Format(choice.Cgroup))
	}
	if gomemlimit != "" && choice.From == memlimit.FromFlag {
		attrs = append(attrs, "overrides", "GOMEMLIMIT", "gomemlimit", gomemlimit)
	}
	return attrs
}

func newLogger(format string, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if os.Getenv("STACKD_DEBUG") != "" {
		opts.Level = slog.LevelDebug
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	// Every line names the replica: several processes may share a
	// database and a log pipeline.
	log := newLogger(cfg.LogFormat, stderr).With("replica", cfg.ReplicaID)
	// Set before anything is read; logged once start-up is not refused
	// (a refusal is one line).
	memAttrs := applyMemoryLimit(cfg.MemoryLimit)
	openFiles := raiseOpenFiles()
	if cfg.DatabaseURL != "" {
		log.Info("database", "engine", "postgres", "url", store.DescribeURL(cfg.DatabaseURL))
	}
	app, err := impl.New(cfg, log, impl.Options{})
	if errors.Is(err, impl.ErrPosture) || errors.Is(err, gitrepo.ErrNotRepository) || errors.Is(err, impl.ErrLocalWithDatabase) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err != nil {
		return err
	}
	log.Info("memory limit", memAttrs...)
	logOpenFiles(log, openFiles, cfg)
	if cfg.Auth == "oidc" {
		// On loopback the base URL defaults to http://<addr>: say what
		// the provider must have registered.
		log.Info("sign-in redirect", "baseURL", cfg.BaseURL, "redirectURI", strings.TrimSuffix(cfg.BaseURL, "/")+"/auth/callback")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		app.Close()
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	return app.Serve(ctx, ln)
}
