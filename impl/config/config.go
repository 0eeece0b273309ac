// Package config is the one documented configuration of a stackd server:
// every setting with its default, and Validate, which checks them together.
// The command line (cmd/stackd) fills a Config from flags, STACKD_*
// environment variables and the optional YAML file; nothing else reads the
// environment.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stackd/stackd/impl/egress"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/memlimit"
)

// FetchLimits are the budgets of one received pack (mirror.Limits). Zero
// fields take the defaults given with each; operators of repositories
// with larger objects or packs raise them.
type FetchLimits struct {
	// PackSize (--fetch-max-pack-size) bounds the bytes of one pack.
	// Default 4 GiB.
	PackSize int64
	// Objects (--fetch-max-objects) bounds the objects of one pack; each
	// costs about 40 bytes of memory while the pack is indexed. Default
	// 2,000,000.
	Objects int64
	// Inflated (--fetch-max-inflated) bounds the bytes inflated and
	// produced by deltas while one pack is received and checked. Default
	// 32 GiB.
	Inflated int64
	// CommitSize (--fetch-max-commit-size) bounds every commit, tree and
	// tag. Default 4 MiB.
	CommitSize int64
	// DeltaSize (--fetch-max-delta-size) bounds every object held in
	// memory to resolve a delta: a delta's base or result. Default 64 MiB.
	DeltaSize int64
	// Refs (--fetch-max-refs) bounds the refs of the mirrored namespaces
	// an upstream may advertise. Default 150,000.
	Refs int64
	// RefBytes (--fetch-max-ref-bytes) bounds the bytes of those refs'
	// names. Default 8 MiB.
	RefBytes int64
}

// Config is the whole server configuration.
type Config struct {
	// Addr is the listen address. A loopback address selects the local
	// posture (auth off by default). Default 127.0.0.1:8080.
	Addr string
	// Cwd is the operator's working repository to serve read-only. Empty:
	// the repository containing the current directory, if any (CwdExplicit
	// false); with CwdExplicit true it must be a git repository.
	Cwd         string
	CwdExplicit bool
	// RepoID is the id of the local repository. Default "local".
	RepoID string
	// Trunk is the local repository's trunk branch. Empty: detected from
	// the remote's HEAD, init.defaultBranch, then main/master.
	Trunk string
	// LogFormat is "text" (default) or "json".
	LogFormat string
	// AccessLog (--access-log) writes one line per request at info
	// level. Default on.
	AccessLog bool
	// Version is the build version reported by /api/v1/config.
	Version string

	// ConfigFile is the optional YAML file (--config) the mirrors and the
	// settings below came from.
	ConfigFile string
	// DataDir holds stackd's own state: mirrors/ and the database. Default
	// $XDG_DATA_HOME/stackd (~/.local/share/stackd). Never inside a served
	// working repository.
	DataDir string
	// Repos are the managed mirrors to serve.
	Repos []RepoConfig
	// SyncWorkers bounds parallel refreshes across repositories. Default 4.
	SyncWorkers int
	// SyncTimeout bounds one refresh. Default 2m.
	SyncTimeout time.Duration
	// SyncInterval is the mirrors' refresh period; 0 disables. Default 5m.
	SyncInterval time.Duration
	// SyncHistory is how many finished syncs of each repository the store
	// keeps (GET .../syncs pages through them). Default 100.
	SyncHistory int
	// AllowLocalRemotes lets mirrors use file:// and plain paths.
	AllowLocalRemotes bool
	// AllowPrivateRemotes lets mirrors connect to addresses that are not
	// public (loopback, RFC 1918, CGNAT, link-local, unique-local,
	// multicast, unspecified, reserved) and use plain http. Off: such
	// destinations are refused where the connection is made, after DNS
	// resolution, for configured and onboarded mirrors alike.
	AllowPrivateRemotes bool
	// AllowedRemoteHosts, when set, are the only hosts POST /api/v1/repos
	// may onboard from (and http redirects may lead to): patterns such as
	// github.com or *.example.com (any host below example.com), or IP
	// addresses. Repositories of the config file are not restricted by it.
	AllowedRemoteHosts []string
	// WebhookSecret enables the GitHub webhook receiver when set.
	WebhookSecret string
	// WebhookDebounce is the quiet window of webhook pushes: the refresh a
	// push queues starts once no push for that repository arrived for this
	// long (so a burst costs one fetch). 0 starts it at once. Default 2s.
	WebhookDebounce time.Duration
	// WebhookMaxDelay caps that wait: the refresh starts at the latest this
	// long after the first push it serves. At least WebhookDebounce.
	// Default 10s.
	WebhookMaxDelay time.Duration
	// MemoryLimit (--memory-limit) is the process's soft memory limit
	// (runtime/debug.SetMemoryLimit), in memlimit.Parse's syntax: "auto"
	// (default), "off" (or "0": none), or a size such as 1GiB or 512MiB,
	// at least 64MiB. Auto keeps the limit of a GOMEMLIMIT environment
	// variable, else takes 80% of the cgroup's memory limit, else 2GiB
	// (memlimit.Choose); an explicit size or "off" wins over GOMEMLIMIT.
	// Near the limit the server refuses new fetches (memlimit.Monitor).
	MemoryLimit string
	// FetchLimits bound what receiving one clone or fetch may cost (see
	// FetchLimits); a zero field takes its default. Over a limit the
	// transfer fails with 502 /problems/upstream-too-large and nothing is
	// kept.
	FetchLimits FetchLimits
	// WatchDebounce is the watcher's quiet period. Default 100ms. A steady
	// stream of changes still triggers every 10 quiet periods.
	WatchDebounce time.Duration

	// Auth is "none" or "oidc". Empty: none. A non-loopback Addr needs oidc
	// or ReadOnly (start-up refuses otherwise). With oidc the server is
	// private: every operation but health, readiness, /api/v1/config, the
	// spec, /docs/, /auth/* and the signed webhook needs a signed-in,
	// allowlisted user, unless PublicReads or ReadOnly opens the reads.
	Auth string
	// ReadOnly refuses every mutating operation (403) to everyone and keeps
	// reads anonymous (the public read-only posture). With Auth none,
	// /api/v1/me and /api/v1/audit answer 403. Default off.
	ReadOnly bool
	// PublicReads (--public-reads) lets anonymous callers use the read
	// operations (repositories, views, stacks, branches, diffs, syncs,
	// events) when Auth is oidc; everything else stays gated. Default off.
	PublicReads bool
	// AllowAnyUser (--allow-any-user) admits every account of the OIDC
	// issuer. Auth oidc needs this or one of the allowlists below, not both
	// (start-up refuses otherwise). Default off.
	AllowAnyUser bool
	// OIDCIssuer, OIDCClientID and OIDCClientSecret (STACKD_OIDC_CLIENT_SECRET
	// only) configure the provider; BaseURL is this server's external URL
	// (redirects; cookies are Secure when it is https). On a loopback Addr
	// it defaults to http://<Addr> (ResolveDefaults).
	OIDCIssuer, OIDCClientID, OIDCClientSecret, BaseURL string
	// OIDCExtraAudiences are more accepted audiences of bearer ID tokens.
	OIDCExtraAudiences []string
	// AllowedEmails, AllowedDomains, AllowedGroups say who may enter (a
	// verified e-mail address, its domain, or a groups-claim value); Auth
	// oidc needs at least one of them unless AllowAnyUser is set.
	AllowedEmails, AllowedDomains, AllowedGroups []string
	// Admins (--admins, admins: in the config file) see and manage every
	// repository, whoever onboarded it (everybody else sees the
	// operator's repositories and their own). Each entry is a verified
	// e-mail address (ann@example.com) or a groups-claim value prefixed
	// with "group:" (group:platform). They need Auth oidc, and must be
	// allowed in by the allowlists like everybody else.
	Admins []string
	// CORSOrigins is the exact allowlist of cross-origin callers.
	CORSOrigins []string
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string
	// RateLimit is the per-client bucket of API requests, as
	// "<per-second>/<burst>" or "off". Default "20/40".
	RateLimit string
	// SyncRateLimit is the per-client bucket of new runs, same syntax:
	// onboarding spends a token, a sync only when it creates a run (one that
	// joins a queued run is free). Default "1/5".
	SyncRateLimit string
	// AuthFailureRateLimit is the per-address bucket of failed
	// authentication (refused bearer tokens and sessions, webhooks without a
	// valid signature), same syntax; never a signed-in user's bucket.
	// Default "1/10".
	AuthFailureRateLimit string

	// IPv6ClientPrefix (--ipv6-client-prefix) is the prefix length, in
	// bits, that groups anonymous IPv6 clients: every address of one such
	// prefix is one client for the rate limits, the failed-authentication
	// bucket, the event-stream caps and the audit log's aggregates (a
	// client picks addresses inside its /64 at will). IPv4 clients, IPv4-
	// mapped IPv6 included, are one client per address. 1 to 128 (128:
	// every address apart). Default 64.
	IPv6ClientPrefix int
	// WriteStallTimeout (--write-stall-timeout) is how long one write of
	// a response (at most 256 KiB) may wait for a client that does not
	// read: past it the response is cut, its handler ends and the
	// connection is closed. A client that keeps reading is never cut,
	// however long the whole response takes, and an event stream stays
	// open between events. Default 30s.
	WriteStallTimeout time.Duration
	// AuditMaxAge (--audit-max-age) is how long audit entries are kept;
	// 0 keeps them whatever their age. Default 2160h (90 days).
	AuditMaxAge time.Duration
	// AuditMaxEntries (--audit-max-entries) is how many audit entries are
	// kept (the newest); 0: no count limit. Default 100000.
	AuditMaxEntries int

	// DatabaseURL (--database-url, STACKD_DATABASE_URL) selects the
	// PostgreSQL engine of the store: a postgres:// or postgresql:// URL.
	// Empty (default): SQLite, stackd.db in DataDir. It may carry a
	// password: it is never logged or shown (see store.DescribeURL).
	DatabaseURL string
	// AllowLocalWithDatabase (--allow-local-with-database) lets a server
	// with DatabaseURL serve the working repository. The working
	// repository is a single-replica feature: without it, an explicit
	// Cwd is refused with DatabaseURL, and the repository of the current
	// directory is not served. Default off.
	AllowLocalWithDatabase bool
	// ReplicaID (--replica-id) names this stackd process among the
	// replicas sharing a database: every log line and every sync it
	// records carry it. It must be stable across restarts (a replica
	// fails its own unfinished syncs at start-up) and unique among the
	// replicas. Default (ResolveDefaults): <hostname>:<port of Addr>.
	ReplicaID string
	// MetricsAddr (--metrics-addr) is the listen address of /metrics
	// (Prometheus text format), a listener of its own that never serves
	// the API, and the API's never serves it. Empty (the default): no
	// metrics listener. It must differ from Addr.
	MetricsAddr string
	// MaxEventStreams (--max-event-streams) is the most event streams
	// (GET /api/v1/repos/{repoID}/events) the server holds open at once;
	// past it a new stream is answered 429. Each open stream holds a
	// file descriptor (see FileDescriptorsNeeded). Default 20000.
	MaxEventStreams int
	// MaxEventStreamsPerClient (--max-event-streams-per-client) is the
	// most streams one client holds open: one signed-in principal, else
	// one address (IPv6: one --ipv6-client-prefix). A dashboard holds
	// one per repository it shows, in each open tab. At most
	// MaxEventStreams. Default 64.
	MaxEventStreamsPerClient int

	// MetricsPprof (--metrics-pprof) also serves net/http/pprof at
	// /debug/pprof/ on the metrics listener (never on the API's). It needs
	// MetricsAddr. Default off.
	MetricsPprof bool
}

// RepoConfig is one managed mirror from the config file. Credentials may
// also come from STACKD_REPO_<ID>_USERNAME and STACKD_REPO_<ID>_PASSWORD;
// they apply to these repositories only, and are only sent to the origin
// (scheme, host, port) of URL. An ssh URL needs SSHKey, the path of an
// unencrypted private key (relative paths are relative to the config
// file): the ssh agent is never used.
type RepoConfig struct {
	ID       string `yaml:"id"`
	URL      string `yaml:"url"`
	Trunk    string `yaml:"trunk"`
	FullName string `yaml:"fullName"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	SSHKey   string `yaml:"sshKey"`
}

// MaxSyncHistory bounds SyncHistory: every stored sync can hold up to 1,000
// changed refs.
const MaxSyncHistory = 100000

// DefaultDataDir is $XDG_DATA_HOME/stackd, else ~/.local/share/stackd.
func DefaultDataDir() string {
	if x := os.Getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "stackd")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "stackd")
	}
	return filepath.Join(home, ".local", "share", "stackd")
}

// Default returns a Config with every default filled in.
func Default() Config {
	return Config{
		Addr:          "127.0.0.1:8080",
		RepoID:        "local",
		LogFormat:     "text",
		AccessLog:     true,
		Version:       "dev",
		DataDir:       DefaultDataDir(),
		SyncWorkers:   4,
		SyncTimeout:   2 * time.Minute,
		SyncInterval:  5 * time.Minute,
		SyncHistory:   100,
		WatchDebounce: 100 * time.Millisecond,
		RateLimit:     "20/40",
		SyncRateLimit: "1/5",
		MemoryLimit:   "auto",

		WebhookDebounce:      2 * time.Second,
		WebhookMaxDelay:      10 * time.Second,
		AuthFailureRateLimit: "1/10",
		IPv6ClientPrefix:     64,
		WriteStallTimeout:    30 * time.Second,
		AuditMaxAge:          90 * 24 * time.Hour,
		AuditMaxEntries:      100000,

		MaxEventStreams:          events.DefaultTotal,
		MaxEventStreamsPerClient: events.DefaultPerClient,
	}
}

// FileDescriptorReserve is the file descriptors counted for everything
// but event streams in FileDescriptorsNeeded: the listeners, the
// database, the mirrors' pack files and upstream connections of the
// syncs running, and the other requests being served.
const FileDescriptorReserve = 1024

// FileDescriptorsNeeded is the open-files limit (RLIMIT_NOFILE) the
// server needs to hold MaxEventStreams streams: one descriptor per
// stream, plus FileDescriptorReserve.
func (c *Config) FileDescriptorsNeeded() uint64 {
	return uint64(max(c.MaxEventStreams, 0)) + FileDescriptorReserve
}

// ResolveDefaults fills the settings whose defaults depend on others, once
// flags, environment and file have been applied: an empty ReplicaID
// becomes DefaultReplicaID; on a loopback Addr with a fixed port, an
// empty BaseURL becomes DefaultBaseURL. It reports whether it set the
// base URL.
func (c *Config) ResolveDefaults() (baseURLDefaulted bool) {
	if c.ReplicaID == "" {
		c.ReplicaID = DefaultReplicaID(c.Addr)
	}
	if c.BaseURL == "" {
		if u := c.DefaultBaseURL(); u != "" {
			c.BaseURL = u
			return true
		}
	}
	return false
}

// DefaultBaseURL is the base URL of a server listening on a loopback Addr:
// http://<Addr>, the one way a browser on this machine reaches it. Empty
// when Addr is not loopback (the external URL cannot be guessed there) or
// its port is 0 (chosen when listening).
func (c *Config) DefaultBaseURL() string {
	if !c.Loopback() {
		return ""
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil || port == "" || port == "0" {
		return ""
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Validate checks the settings together and returns every problem found,
// each on its own line.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: %w", c.Addr, err))
	}
	if !validID(c.RepoID) {
		errs = append(errs, fmt.Errorf("--repo-id %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", c.RepoID))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
	}
	if c.CwdExplicit {
		if fi, err := os.Stat(c.Cwd); err != nil {
			errs = append(errs, fmt.Errorf("--cwd %q: %w", c.Cwd, err))
		} else if !fi.IsDir() {
			errs = append(errs, fmt.Errorf("--cwd %q: not a directory", c.Cwd))
		}
	}
	if c.SyncWorkers < 1 {
		errs = append(errs, fmt.Errorf("--sync-workers %d: must be at least 1", c.SyncWorkers))
	}
	if c.SyncTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--sync-timeout %s: must be positive", c.SyncTimeout))
	}
	if c.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("--sync-interval %s: must be 0 (off) or positive", c.SyncInterval))
	}
	if c.SyncHistory < 1 || c.SyncHistory > MaxSyncHistory {
		errs = append(errs, fmt.Errorf("--sync-history %d: must be 1 to %d", c.SyncHistory, MaxSyncHistory))
	}
	if c.DataDir == "" || !filepath.IsAbs(c.DataDir) {
		errs = append(errs, fmt.Errorf("--data-dir %q: must be an absolute path", c.DataDir))
	}
	ids := map[string]bool{strings.ToLower(c.RepoID): true}
	for i, r := range c.Repos {
		if !validID(r.ID) {
			errs = append(errs, fmt.Errorf("repos[%d]: id %q: use 1-64 letters, digits, '.', '_' or '-'", i, r.ID))
		} else if ids[strings.ToLower(r.ID)] {
			errs = append(errs, fmt.Errorf("repos[%d]: duplicate id %q", i, r.ID))
		}
		ids[strings.ToLower(r.ID)] = true
		if r.URL == "" {
			errs = append(errs, fmt.Errorf("repos[%d] (%s): url is required", i, r.ID))
		}
	}
	if _, err := egress.ParseHosts(c.AllowedRemoteHosts); err != nil {
		errs = append(errs, fmt.Errorf("--allowed-remote-hosts: %w", err))
	}
	switch c.Auth {
	case "", "none", "oidc":
	default:
		errs = append(errs, fmt.Errorf("--auth %q: want none or oidc", c.Auth))
	}
	errs = append(errs, c.validateAdmins()...)
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err2 := netip.ParseAddr(p); err2 != nil {
				errs = append(errs, fmt.Errorf("--trusted-proxies %q: want a CIDR such as 10.0.0.0/8", p))
			}
		}
	}
	if c.WebhookDebounce < 0 {
		errs = append(errs, fmt.Errorf("--webhook-debounce %s: must be 0 (off) or positive", c.WebhookDebounce))
	}
	if c.WebhookMaxDelay < c.WebhookDebounce {
		errs = append(errs, fmt.Errorf("--webhook-max-delay %s: must be at least --webhook-debounce (%s)", c.WebhookMaxDelay, c.WebhookDebounce))
	}
	for _, rl := range []struct{ flag, v string }{{"--rate-limit", c.RateLimit}, {"--sync-rate-limit", c.SyncRateLimit}, {"--auth-failure-rate-limit", c.AuthFailureRateLimit}} {
		if _, _, _, err := ParseRate(rl.v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", rl.flag, rl.v, err))
		}
	}
	for _, l := range []struct {
		name string
		v    int64
	}{{"--fetch-max-pack-size", c.FetchLimits.PackSize}, {"--fetch-max-objects", c.FetchLimits.Objects}, {"--fetch-max-inflated", c.FetchLimits.Inflated},
		{"--fetch-max-commit-size", c.FetchLimits.CommitSize}, {"--fetch-max-delta-size", c.FetchLimits.DeltaSize},
		{"--fetch-max-refs", c.FetchLimits.Refs}, {"--fetch-max-ref-bytes", c.FetchLimits.RefBytes}} {
		if l.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", l.name))
		}
	}
	if _, err := memlimit.Parse(c.MemoryLimit); err != nil {
		errs = append(errs, fmt.Errorf("--memory-limit %q: %w", c.MemoryLimit, err))
	}
	if c.IPv6ClientPrefix < 1 || c.IPv6ClientPrefix > 128 {
		errs = append(errs, fmt.Errorf("--ipv6-client-prefix %d: must be 1 to 128 bits", c.IPv6ClientPrefix))
	}
	if c.WriteStallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--write-stall-timeout %s: must be positive", c.WriteStallTimeout))
	}
	if c.AuditMaxAge < 0 {
		errs = append(errs, fmt.Errorf("--audit-max-age %s: must be 0 (any age) or positive", c.AuditMaxAge))
	}
	if c.AuditMaxEntries < 0 {
		errs = append(errs, fmt.Errorf("--audit-max-entries %d: must be 0 (no limit) or positive", c.AuditMaxEntries))
	}
	if c.MaxEventStreams < 1 {
		errs = append(errs, fmt.Errorf("--max-event-streams %d: must be at least 1", c.MaxEventStreams))
	}
	if c.MaxEventStreamsPerClient < 1 || c.MaxEventStreamsPerClient > max(c.MaxEventStreams, 1) {
		errs = append(errs, fmt.Errorf("--max-event-streams-per-client %d: must be 1 to --max-event-streams (%d)", c.MaxEventStreamsPerClient, c.MaxEventStreams))
	}
	errs = append(errs, c.validateMetrics()...)
	if c.DatabaseURL != "" {
		// The message never repeats the URL: it may hold a password.
		l := strings.ToLower(c.DatabaseURL)
		if !strings.HasPrefix(l, "postgres://") && !strings.HasPrefix(l, "postgresql://") {
			errs = append(errs, errors.New("--database-url: want a postgres:// or postgresql:// URL"))
		}
		if c.CwdExplicit && !c.AllowLocalWithDatabase {
			errs = append(errs, errors.New("--cwd with --database-url: the working repository is a single-replica feature; serve it without --database-url, or add --allow-local-with-database"))
		}
	}
	if c.ReplicaID != "" && !validReplicaID(c.ReplicaID) {
		errs = append(errs, fmt.Errorf("--replica-id %q: use 1-128 letters, digits, '.', '_', ':' or '-'", c.ReplicaID))
	}
	if strings.ContainsAny(c.Trunk, " ~^:?*[\\") {
		errs = append(errs, fmt.Errorf("--trunk %q: not a valid branch name", c.Trunk))
	}
	return errors.Join(errs...)
}

// adminGroupPrefix marks an Admins entry that names a group.
const adminGroupPrefix = "group:"

// validateAdmins checks Admins: e-mail addresses or group:<name>, with
// Auth oidc.
func (c *Config) validateAdmins() []error {
	var errs []error
	for _, a := range c.Admins {
		switch name, group := strings.CutPrefix(a, adminGroupPrefix); {
		case group && strings.TrimSpace(name) == "":
			errs = append(errs, fmt.Errorf("--admins %q: name the group after %q", a, adminGroupPrefix))
		case !group && (strings.Count(a, "@") != 1 || strings.HasPrefix(a, "@") || strings.HasSuffix(a, "@") || strings.ContainsAny(a, " \t,")):
			errs = append(errs, fmt.Errorf("--admins %q: want an e-mail address or group:<name>", a))
		}
	}
	if len(c.Admins) > 0 && c.Auth != "oidc" {
		errs = append(errs, errors.New("--admins needs --auth oidc: without sign-in there is nobody to be an admin"))
	}
	return errs
}

// AdminEmails are the e-mail addresses of Admins.
func (c *Config) AdminEmails() []string {
	var out []string
	for _, a := range c.Admins {
		if !strings.HasPrefix(a, adminGroupPrefix) {
			out = append(out, a)
		}
	}
	return out
}

// AdminGroups are the groups of Admins (without the group: prefix).
func (c *Config) AdminGroups() []string {
	var out []string
	for _, a := range c.Admins {
		if name, ok := strings.CutPrefix(a, adminGroupPrefix); ok {
			out = append(out, name)
		}
	}
	return out
}

// Loopback reports whether Addr listens on a loopback address only.
func (c *Config) Loopback() bool {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i, r := range id {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._-", r)) {
			return false
		}
	}
	return true
}

// Proxies parses TrustedProxies (a bare address is a /32 or /128).
func (c *Config) Proxies() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range c.TrustedProxies {
		if pre, err := netip.ParsePrefix(p); err == nil {
			out = append(out, pre.Masked())
		} else if a, err := netip.ParseAddr(p); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func validReplicaID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r)) {
			return false
		}
	}
	return true
}

// DefaultReplicaID is <hostname>:<port of addr>, stable across restarts
// of one process on one machine. When the hostname is unknown or the port
// is chosen at listen time (0), it is a random "replica-<8 hex digits>"
// instead, which changes at every start.
func DefaultReplicaID(addr string) string {
	host, err := os.Hostname()
	_, port, perr := net.SplitHostPort(addr)
	if err == nil && perr == nil && port != "" && port != "0" {
		if id := host + ":" + port; validReplicaID(id) {
			return id
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "replica-" + hex.EncodeToString(b[:])
}

// ValidID reports whether id is a valid repository id.
func ValidID(id string) bool { return validID(id) }

// AbsPath makes p absolute (a helper for flags that take paths).
func AbsPath(p string) string {
	if p == "" {
		return p
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// ParseRate parses a rate limit setting: "<per-second>/<burst>" (burst
// optional, default the rate rounded up), or "off" (no limit). An empty
// value means the default (isDefault).
func ParseRate(v string) (perSecond float64, burst int, isDefault bool, err error) {
	v = strings.TrimSpace(v)
	switch v {
	case "":
		return 0, 0, true, nil
	case "off", "none", "unlimited":
		return -1, 0, false, nil
	}
	rate, b, hasBurst := strings.Cut(v, "/")
	perSecond, err = strconv.ParseFloat(strings.TrimSpace(rate), 64)
	if err != nil || perSecond <= 0 || math.IsInf(perSecond, 0) || math.IsNaN(perSecond) {
		return 0, 0, false, errors.New(`want "<per-second>/<burst>" with a positive rate, or "off"`)
	}
	if hasBurst {
		burst, err = strconv.Atoi(strings.TrimSpace(b))
		if err != nil || burst < 1 {
			return 0, 0, false, errors.New("the burst must be a positive integer")
		}
	}
	return perSecond, burst, false, nil
}

// validateMetrics checks --metrics-addr and --metrics-pprof: the metrics
// listener is never the API's (the same address, or the same port with
// either host a wildcard), and pprof only ever comes with it.
func (c *Config) validateMetrics() []error {
	if c.MetricsAddr == "" {
		if c.MetricsPprof {
			return []error{errors.New("--metrics-pprof needs --metrics-addr: pprof is served on the metrics listener only")}
		}
		return nil
	}
	host, port, err := net.SplitHostPort(c.MetricsAddr)
	if err != nil {
		return []error{fmt.Errorf("--metrics-addr %q: %w", c.MetricsAddr, err)}
	}
	apiHost, apiPort, err := net.SplitHostPort(c.Addr)
	if err != nil || port != apiPort || port == "0" {
		return nil // --addr's own error, or another port
	}
	if host == apiHost || wildcardHost(host) || wildcardHost(apiHost) || strings.EqualFold(host, apiHost) {
		return []error{fmt.Errorf("--metrics-addr %q: must not be the API's address (--addr %q): metrics get a listener of their own", c.MetricsAddr, c.Addr)}
	}
	return nil
}

// wildcardHost reports whether a listen host means every address.
func wildcardHost(h string) bool {
	if h == "" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsUnspecified()
}
