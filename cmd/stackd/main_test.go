package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestCommandLineErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no command", nil, nil, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{"bad flag", []string{"serve", "--nope"}, nil, 2, "flag provided but not defined: -nope"},
		{"bad log format", []string{"serve", "--log-format", "xml"}, nil, 2, `--log-format "xml": want text or json`},
		{"bad env duration", []string{"serve"}, map[string]string{"STACKD_SYNC_TIMEOUT": "soon"}, 2, "STACKD_SYNC_TIMEOUT"},
		{"bad addr from env", []string{"serve"}, map[string]string{"STACKD_ADDR": "nonsense"}, 2, `--addr "nonsense"`},
		{"cwd not a repo", []string{"serve", "--cwd", "/", "--addr", "127.0.0.1:0"}, nil, 2, "not a git repository"},
		{"missing cwd", []string{"serve", "--cwd", "/does/not/exist"}, nil, 2, "--cwd"},
		{"sync needs a repo", []string{"sync"}, nil, 2, "stackd sync REPO"},
		{"version", []string{"version"}, nil, 0, "stackd dev"},
		{"public address without auth", []string{"serve", "--addr", "0.0.0.0:0", "--cwd", "."}, nil, 2, "refusing to serve a non-loopback address with auth off"},
		{"bad auth mode", []string{"serve", "--auth", "ldap"}, nil, 2, `--auth "ldap": want none or oidc`},
		{"oidc without issuer", []string{"serve", "--auth", "oidc", "--cwd", "."}, nil, 2, "auth oidc needs the issuer"},
		{"oidc without allowlist", []string{"serve", "--auth", "oidc", "--oidc-issuer", "https://idp.invalid", "--oidc-client-id", "stackd",
			"--base-url", "https://stackd.invalid", "--cwd", "."}, nil, 2, "name who may sign in, or pass --allow-any-user"},
		// On loopback the base URL is not needed: the next refusal is
		// the allowlist's.
		{"oidc on loopback without base URL", []string{"serve", "--auth", "oidc", "--oidc-issuer", "https://idp.invalid", "--oidc-client-id", "stackd",
			"--cwd", "."}, nil, 2, "name who may sign in, or pass --allow-any-user"},
		{"oidc elsewhere without base URL", []string{"serve", "--auth", "oidc", "--oidc-issuer", "https://idp.invalid", "--oidc-client-id", "stackd",
			"--addr", "0.0.0.0:0", "--cwd", "."}, nil, 2, "auth oidc needs the base URL"},
		{"server that is no URL", []string{"repos", "--server", "ftp://x"}, nil, 2, `--server "ftp://x": scheme "ftp": want http or https`},
		{"oidc with allowlist and any user", []string{"serve", "--auth", "oidc", "--oidc-issuer", "https://idp.invalid", "--oidc-client-id", "stackd",
			"--base-url", "https://stackd.invalid", "--allowed-domains", "example.com", "--cwd", "."}, map[string]string{"STACKD_ALLOW_ANY_USER": "true"}, 2, "--allow-any-user contradicts"},
		{"cwd with database", []string{"serve", "--cwd", ".", "--database-url", "postgres://u:sekrit@db/x"}, nil, 2, "--cwd with --database-url: the working repository is a single-replica feature"},
		{"database URL not postgres", []string{"serve", "--database-url", "mysql://u:sekrit@db/x"}, nil, 2, "--database-url: want a postgres:// or postgresql:// URL"},
		{"bad replica id", []string{"serve", "--replica-id", "a b"}, nil, 2, `--replica-id "a b"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errb.String())
			}
			text := out.String() + errb.String()
			if !strings.Contains(text, tc.want) {
				t.Fatalf("output %q lacks %q", text, tc.want)
			}
			if strings.Contains(text, "sekrit") {
				t.Fatalf("output shows the database password: %q", text)
			}
			if tc.code != 0 && tc.name != "no command" && tc.name != "unknown command" {
				if lines := strings.Count(strings.TrimSpace(errb.String()), "\n"); lines > 0 {
					t.Fatalf("error is not one line: %q", errb.String())
				}
			}
		})
	}
}

func TestConfigFileAndPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/stackd.yaml"
	yaml := `
syncInterval: 10m
syncWorkers: 2
syncHistory: 7
webhookSecret: from-file
admins: [root@example.com, "group:platform"]
repos:
  - id: api
    url: https://github.com/acme/api.git
    trunk: develop
    fullName: acme/api
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_DATA_HOME", dir)
	t.Setenv("STACKD_SYNC_WORKERS", "3")
	cfg, err := parseServe([]string{"--config", file, "--sync-interval", "1m", "--auth", "oidc", "--allowed-emails", " a@x.com, ,b@y.com "}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SyncInterval != time.Minute {
		t.Errorf("flag should beat the file: %s", cfg.SyncInterval)
	}
	if strings.Join(cfg.AllowedEmails, "|") != "a@x.com|b@y.com" {
		t.Errorf("list flag: %q", cfg.AllowedEmails)
	}
	if cfg.SyncWorkers != 3 {
		t.Errorf("environment should beat the file: %d", cfg.SyncWorkers)
	}
	if strings.Join(cfg.Admins, "|") != "root@example.com|group:platform" {
		t.Errorf("admins from the file: %q", cfg.Admins)
	}
	if cfg.SyncHistory != 7 {
		t.Errorf("syncHistory from the file: %d", cfg.SyncHistory)
	}
	if cfg.WebhookSecret != "from-file" || len(cfg.Repos) != 1 || cfg.Repos[0].Trunk != "develop" {
		t.Errorf("file settings: %+v", cfg)
	}
	if cfg.DataDir != dir+"/stackd" {
		t.Errorf("data dir %s", cfg.DataDir)
	}
	if cfg.PublicReads || cfg.AllowAnyUser {
		t.Errorf("--public-reads and --allow-any-user are off by default: %v %v", cfg.PublicReads, cfg.AllowAnyUser)
	}
	t.Setenv("STACKD_ALLOW_ANY_USER", "1")
	cfg, err = parseServe([]string{"--public-reads"}, io.Discard)
	if err != nil || !cfg.PublicReads || !cfg.AllowAnyUser {
		t.Errorf("--public-reads and STACKD_ALLOW_ANY_USER: %v %v %v", cfg.PublicReads, cfg.AllowAnyUser, err)
	}

	if err := os.WriteFile(file, []byte("bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseServe([]string{"--config", file}, io.Discard); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown key: %v", err)
	}
}

// TestBaseURLDefaultsOnLoopback: with --auth oidc on a loopback address
// and no --base-url, the base URL is http://<addr>; a set one is kept, and
// elsewhere nothing is guessed.
func TestBaseURLDefaultsOnLoopback(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	oidc := []string{"--auth", "oidc", "--oidc-issuer", "https://idp.invalid", "--oidc-client-id", "stackd", "--allow-any-user"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{oidc, "http://127.0.0.1:8080"},
		{append([]string{"--addr", "localhost:18080"}, oidc...), "http://localhost:18080"},
		{append([]string{"--base-url", "https://stackd.example"}, oidc...), "https://stackd.example"},
		{append([]string{"--addr", "0.0.0.0:8080"}, oidc...), ""},
	} {
		cfg, err := parseServe(tc.args, io.Discard)
		if err != nil || cfg.BaseURL != tc.want {
			t.Errorf("%v: base URL %q (%v), want %q", tc.args, cfg.BaseURL, err, tc.want)
		}
	}
}

// TestHelpGoesToStdout: -h of every command prints its usage, flags and
// the environment variables it reads to stdout, and exits 0.
func TestHelpGoesToStdout(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"sync", "-h"}, []string{"usage: stackd sync REPO", "-no-wait", "-server", "STACKD_SERVER", "STACKD_TOKEN"}},
		{[]string{"repos", "--help"}, []string{"usage: stackd repos", "-json", "STACKD_SERVER", "STACKD_TOKEN"}},
		{[]string{"view", "-h"}, []string{"usage: stackd view REPO", "STACKD_SERVER", "STACKD_TOKEN"}},
		{[]string{"serve", "-h"}, []string{"usage: stackd serve", "-base-url", "STACKD_ADDR", "STACKD_WEBHOOK_SECRET", "STACKD_OIDC_CLIENT_SECRET", "STACKD_REPO_<ID>_USERNAME", "STACKD_DEBUG",
			"-database-url", "STACKD_DATABASE_URL", "-replica-id", "-allow-local-with-database", "-memory-limit", "STACKD_MEMORY_LIMIT", "GOMEMLIMIT"}},
		{[]string{"migrate", "-h"}, []string{"usage: stackd migrate", "-database-url", "STACKD_DATABASE_URL", "-data-dir"}},
		{[]string{"help"}, []string{"usage: stackd <command>", "migrate", "STACKD_SERVER", "STACKD_TOKEN"}},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: stdout lacks %q:\n%s", tc.args, w, out.String())
			}
		}
	}
}
