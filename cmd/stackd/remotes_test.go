package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRemoteFlags: --allow-private-remotes and --allowed-remote-hosts from
// flags, environment and file; a bad pattern is a usage error; a relative
// sshKey is relative to the config file.
func TestRemoteFlags(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	cfg, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AllowPrivateRemotes || len(cfg.AllowedRemoteHosts) != 0 {
		t.Fatalf("defaults: private %v, hosts %q", cfg.AllowPrivateRemotes, cfg.AllowedRemoteHosts)
	}
	cfg, err = parseServe([]string{"--allow-private-remotes", "--allowed-remote-hosts", "github.com, *.example.com"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.AllowPrivateRemotes || strings.Join(cfg.AllowedRemoteHosts, "|") != "github.com|*.example.com" {
		t.Fatalf("flags: private %v, hosts %q", cfg.AllowPrivateRemotes, cfg.AllowedRemoteHosts)
	}
	if _, err := parseServe([]string{"--allowed-remote-hosts", "https://github.com"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--allowed-remote-hosts") {
		t.Fatalf("bad pattern: %v", err)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "stackd.yaml")
	yaml := `
allowPrivateRemotes: true
allowedRemoteHosts: [gitlab.example.com]
repos:
  - id: internal
    url: ssh://git@git.internal.example/acme/api.git
    sshKey: keys/deploy
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STACKD_ALLOWED_REMOTE_HOSTS", "github.com")
	cfg, err = parseServe([]string{"--config", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.AllowPrivateRemotes || strings.Join(cfg.AllowedRemoteHosts, "|") != "github.com" {
		t.Fatalf("file and environment: private %v, hosts %q (the environment beats the file)", cfg.AllowPrivateRemotes, cfg.AllowedRemoteHosts)
	}
	if got, want := cfg.Repos[0].SSHKey, filepath.Join(dir, "keys", "deploy"); got != want {
		t.Fatalf("sshKey %q, want %q", got, want)
	}
}
