package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in        string
		perSecond float64
		burst     int
		isDefault bool
		wantErr   bool
	}{
		{in: "", isDefault: true},
		{in: "off", perSecond: -1},
		{in: " none ", perSecond: -1},
		{in: "20/40", perSecond: 20, burst: 40},
		{in: "0.5", perSecond: 0.5},
		{in: "2 / 3", perSecond: 2, burst: 3},
		{in: "0/5", wantErr: true},
		{in: "-1/5", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "5/0", wantErr: true},
		{in: "5/x", wantErr: true},
		{in: "NaN/2", wantErr: true},
		{in: "Inf", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ps, b, def, err := ParseRate(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseRate(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if ps != tt.perSecond || b != tt.burst || def != tt.isDefault {
				t.Fatalf("ParseRate(%q) = %v, %v, %v; want %v, %v, %v", tt.in, ps, b, def, tt.perSecond, tt.burst, tt.isDefault)
			}
		})
	}
}

func TestValidateRates(t *testing.T) {
	c := Default()
	c.DataDir = t.TempDir()
	c.RateLimit = "fast"
	c.SyncRateLimit = "off"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), `--rate-limit "fast"`) {
		t.Fatalf("Validate() = %v, want a --rate-limit error", err)
	}
	if strings.Contains(err.Error(), "--sync-rate-limit") {
		t.Fatalf("Validate() = %v, off is a valid sync rate", err)
	}
}

func TestValidateWebhookDebounce(t *testing.T) {
	tests := []struct {
		debounce, maxDelay time.Duration
		want               string
	}{
		{2 * time.Second, 10 * time.Second, ""},
		{0, 0, ""},
		{0, 10 * time.Second, ""},
		{2 * time.Second, 2 * time.Second, ""},
		{-time.Second, 10 * time.Second, "--webhook-debounce"},
		{5 * time.Second, 2 * time.Second, "--webhook-max-delay"},
	}
	for _, tt := range tests {
		c := Default()
		c.DataDir = t.TempDir()
		c.WebhookDebounce, c.WebhookMaxDelay = tt.debounce, tt.maxDelay
		err := c.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("debounce %s, max %s: %v, want %q", tt.debounce, tt.maxDelay, err, tt.want)
		}
	}
	c := Default()
	c.DataDir = t.TempDir()
	c.AuthFailureRateLimit = "often"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--auth-failure-rate-limit") {
		t.Fatalf("bad failure rate: %v", err)
	}
}

// TestDefaultBaseURL: a loopback address with a fixed port gives
// http://<addr>; other addresses and port 0 give nothing, and a base URL
// that is set is kept.
func TestDefaultBaseURL(t *testing.T) {
	for _, tc := range []struct {
		addr, base, want string
		defaulted        bool
	}{
		{"127.0.0.1:8080", "", "http://127.0.0.1:8080", true},
		{"localhost:9000", "", "http://localhost:9000", true},
		{"[::1]:8080", "", "http://[::1]:8080", true},
		{"127.0.0.2:18080", "", "http://127.0.0.2:18080", true},
		{"127.0.0.1:0", "", "", false},
		{"0.0.0.0:8080", "", "", false},
		{"192.0.2.1:8080", "", "", false},
		{":8080", "", "", false},
		{"127.0.0.1:8080", "https://stackd.example", "https://stackd.example", false},
	} {
		c := Default()
		c.Addr, c.BaseURL = tc.addr, tc.base
		if got := c.ResolveDefaults(); got != tc.defaulted || c.BaseURL != tc.want {
			t.Errorf("%s with base %q: %q (defaulted %v), want %q (%v)", tc.addr, tc.base, c.BaseURL, got, tc.want, tc.defaulted)
		}
	}
}

func TestValidateSyncHistory(t *testing.T) {
	for _, tt := range []struct {
		n  int
		ok bool
	}{{100, true}, {1, true}, {MaxSyncHistory, true}, {0, false}, {-3, false}, {MaxSyncHistory + 1, false}} {
		c := Default()
		c.DataDir = t.TempDir()
		c.SyncHistory = tt.n
		err := c.Validate()
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "--sync-history")) {
			t.Errorf("SyncHistory %d: Validate() = %v", tt.n, err)
		}
	}
}

func TestValidateMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		v  string
		ok bool
	}{{"auto", true}, {"", true}, {"off", true}, {"0", true}, {"1GiB", true}, {"512MiB", true},
		{"1MiB", false}, {"1.5GiB", false}, {"plenty", false}} {
		c := Default()
		c.DataDir = t.TempDir()
		c.MemoryLimit = tt.v
		err := c.Validate()
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "--memory-limit")) {
			t.Errorf("MemoryLimit %q: Validate() = %v", tt.v, err)
		}
	}
	if d := Default(); d.MemoryLimit != "auto" {
		t.Errorf("default MemoryLimit %q, want auto", d.MemoryLimit)
	}
}

// TestValidateHostileClientSettings: the IPv6 client prefix, the write
// stall timeout and the audit retention, at and past their bounds.
func TestValidateHostileClientSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*Config)
		flag string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"/128", func(c *Config) { c.IPv6ClientPrefix = 128 }, ""},
		{"/1", func(c *Config) { c.IPv6ClientPrefix = 1 }, ""},
		{"/0", func(c *Config) { c.IPv6ClientPrefix = 0 }, "--ipv6-client-prefix"},
		{"/129", func(c *Config) { c.IPv6ClientPrefix = 129 }, "--ipv6-client-prefix"},
		{"no write budget", func(c *Config) { c.WriteStallTimeout = 0 }, "--write-stall-timeout"},
		{"any age", func(c *Config) { c.AuditMaxAge = 0 }, ""},
		{"negative age", func(c *Config) { c.AuditMaxAge = -time.Hour }, "--audit-max-age"},
		{"no count limit", func(c *Config) { c.AuditMaxEntries = 0 }, ""},
		{"negative count", func(c *Config) { c.AuditMaxEntries = -1 }, "--audit-max-entries"},
	} {
		c := Default()
		c.DataDir = t.TempDir()
		tt.set(&c)
		err := c.Validate()
		if (err == nil) != (tt.flag == "") || (err != nil && !strings.Contains(err.Error(), tt.flag)) {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
	d := Default()
	if d.IPv6ClientPrefix != 64 || d.WriteStallTimeout != 30*time.Second || d.AuditMaxAge != 90*24*time.Hour || d.AuditMaxEntries != 100000 {
		t.Errorf("defaults: %+v", d)
	}
}

func TestValidateAdmins(t *testing.T) {
	tests := []struct {
		name    string
		auth    string
		admins  []string
		wantErr string // "" for valid
		emails  []string
		groups  []string
	}{
		{name: "none", auth: "oidc"},
		{name: "e-mails and groups", auth: "oidc", admins: []string{"ann@example.com", "group:platform", "group:ops team"},
			emails: []string{"ann@example.com"}, groups: []string{"platform", "ops team"}},
		{name: "not an address", auth: "oidc", admins: []string{"ann"}, wantErr: `--admins "ann"`},
		{name: "empty local part", auth: "oidc", admins: []string{"@example.com"}, wantErr: `--admins "@example.com"`},
		{name: "space", auth: "oidc", admins: []string{"ann @example.com"}, wantErr: `--admins "ann @example.com"`},
		{name: "empty group", auth: "oidc", admins: []string{"group:"}, wantErr: `--admins "group:"`},
		{name: "auth off", auth: "none", admins: []string{"ann@example.com"}, wantErr: "--admins needs --auth oidc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.DataDir = t.TempDir()
			c.Auth = tt.auth
			c.Admins = tt.admins
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				if !slices.Equal(c.AdminEmails(), tt.emails) || !slices.Equal(c.AdminGroups(), tt.groups) {
					t.Fatalf("admins = %q, %q; want %q, %q", c.AdminEmails(), c.AdminGroups(), tt.emails, tt.groups)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want %s", err, tt.wantErr)
			}
		})
	}
}

// TestValidateEventStreamLimits: the stream caps at and past their bounds,
// their defaults, and the file descriptors they need.
func TestValidateEventStreamLimits(t *testing.T) {
	for _, tt := range []struct {
		name          string
		total, client int
		flag          string // "" = valid
	}{
		{"defaults", 20000, 64, ""},
		{"one stream", 1, 1, ""},
		{"per client equals total", 300, 300, ""},
		{"no streams", 0, 1, "--max-event-streams "},
		{"negative total", -5, 1, "--max-event-streams "},
		{"no streams per client", 100, 0, "--max-event-streams-per-client"},
		{"per client above total", 100, 101, "--max-event-streams-per-client"},
	} {
		c := Default()
		c.DataDir = t.TempDir()
		c.MaxEventStreams, c.MaxEventStreamsPerClient = tt.total, tt.client
		err := c.Validate()
		if (err == nil) != (tt.flag == "") || (err != nil && !strings.Contains(err.Error(), tt.flag)) {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
	d := Default()
	if d.MaxEventStreams != 20000 || d.MaxEventStreamsPerClient != 64 {
		t.Errorf("defaults: %d streams, %d per client", d.MaxEventStreams, d.MaxEventStreamsPerClient)
	}
	if got := d.FileDescriptorsNeeded(); got != 20000+FileDescriptorReserve {
		t.Errorf("FileDescriptorsNeeded() = %d", got)
	}
}
