package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWebhookAndLimitFlags: --webhook-debounce, --webhook-max-delay and
// --auth-failure-rate-limit from defaults, flags, environment and file.
func TestWebhookAndLimitFlags(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	cfg, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WebhookDebounce != 2*time.Second || cfg.WebhookMaxDelay != 10*time.Second || cfg.AuthFailureRateLimit != "1/10" {
		t.Fatalf("defaults: %s %s %q", cfg.WebhookDebounce, cfg.WebhookMaxDelay, cfg.AuthFailureRateLimit)
	}
	cfg, err = parseServe([]string{"--webhook-debounce", "500ms", "--webhook-max-delay", "3s", "--auth-failure-rate-limit", "off"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WebhookDebounce != 500*time.Millisecond || cfg.WebhookMaxDelay != 3*time.Second || cfg.AuthFailureRateLimit != "off" {
		t.Fatalf("flags: %s %s %q", cfg.WebhookDebounce, cfg.WebhookMaxDelay, cfg.AuthFailureRateLimit)
	}
	for _, args := range [][]string{
		{"--webhook-debounce", "20s"}, // beyond the default maximum delay
		{"--webhook-debounce", "-1s"},
		{"--auth-failure-rate-limit", "lots"},
	} {
		if _, err := parseServe(args, io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) && !strings.Contains(err.Error(), "--webhook-max-delay") {
			t.Fatalf("%v: %v", args, err)
		}
	}

	file := filepath.Join(t.TempDir(), "stackd.yaml")
	if err := os.WriteFile(file, []byte("webhookDebounce: 1s\nwebhookMaxDelay: 30s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STACKD_WEBHOOK_MAX_DELAY", "5s")
	cfg, err = parseServe([]string{"--config", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WebhookDebounce != time.Second || cfg.WebhookMaxDelay != 5*time.Second {
		t.Fatalf("file and environment: %s %s (the environment beats the file)", cfg.WebhookDebounce, cfg.WebhookMaxDelay)
	}
}

// TestHostileClientFlags: --ipv6-client-prefix, --write-stall-timeout,
// --audit-max-age and --audit-max-entries from defaults, flags and the
// environment, and refused when out of range.
func TestHostileClientFlags(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	cfg, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IPv6ClientPrefix != 64 || cfg.WriteStallTimeout != 30*time.Second || cfg.AuditMaxAge != 2160*time.Hour || cfg.AuditMaxEntries != 100000 {
		t.Fatalf("defaults: %d %s %s %d", cfg.IPv6ClientPrefix, cfg.WriteStallTimeout, cfg.AuditMaxAge, cfg.AuditMaxEntries)
	}
	t.Setenv("STACKD_AUDIT_MAX_ENTRIES", "500")
	cfg, err = parseServe([]string{"--ipv6-client-prefix", "56", "--write-stall-timeout", "5s", "--audit-max-age", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IPv6ClientPrefix != 56 || cfg.WriteStallTimeout != 5*time.Second || cfg.AuditMaxAge != 0 || cfg.AuditMaxEntries != 500 {
		t.Fatalf("flags: %d %s %s %d", cfg.IPv6ClientPrefix, cfg.WriteStallTimeout, cfg.AuditMaxAge, cfg.AuditMaxEntries)
	}
	for _, args := range [][]string{
		{"--ipv6-client-prefix", "0"},
		{"--ipv6-client-prefix", "129"},
		{"--write-stall-timeout", "0s"},
		{"--audit-max-age", "-1h"},
		{"--audit-max-entries", "-5"},
	} {
		if _, err := parseServe(args, io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v", args, err)
		}
	}
}
