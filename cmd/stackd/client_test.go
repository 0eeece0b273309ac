package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// TestClientCommands runs sync, repos and view against a real server.
func TestClientCommands(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	r.Branch("feature/a", "main")
	r.Commit("a1", map[string]string{"a": "1\n"})
	r.BlobRef("refs/stackit/metadata/feature/a", `{"parentBranchName":"main","prInfo":{"number":12,"state":"OPEN"}}`)

	srv := serveWorktree(t, r.Dir)

	runOK := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("stackd %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	r.Git("branch", "extra", "main")
	out := runOK("sync", "local", "--server", srv.URL)
	if !strings.Contains(out, "of local: succeeded (reread, manual)") || !strings.Contains(out, "created  refs/heads/extra") {
		t.Fatalf("sync output:\n%s", out)
	}
	out = runOK("repos", "--server", srv.URL)
	if !strings.Contains(out, "local  local  main") {
		t.Fatalf("repos output:\n%s", out)
	}
	out = runOK("view", "--server", srv.URL, "local")
	if !strings.Contains(out, "stack feature/a") || !strings.Contains(out, "feature/a") || !strings.Contains(out, "PR #12 OPEN") {
		t.Fatalf("view output:\n%s", out)
	}
	// feature/a has one commit of its own.
	if !strings.Contains(out, "(1 commit,") || strings.Contains(out, "1 commits") {
		t.Fatalf("view output gets the plural wrong:\n%s", out)
	}
	// --server as host:port, as printed by "stackd listening".
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	out = runOK("repos", "--server", hostPort)
	if !strings.Contains(out, "local  local  main") {
		t.Fatalf("repos --server %s:\n%s", hostPort, out)
	}
	t.Setenv("STACKD_SERVER", hostPort)
	out = runOK("sync", "local")
	if !strings.Contains(out, "of local: succeeded") {
		t.Fatalf("sync with STACKD_SERVER=%s:\n%s", hostPort, out)
	}
	out = runOK("sync", "--json", "--server", srv.URL, "local")
	if !strings.Contains(out, `"mode": "reread"`) {
		t.Fatalf("sync --json output:\n%s", out)
	}

	var errb bytes.Buffer
	if code := run([]string{"view", "nope", "--server", srv.URL}, &bytes.Buffer{}, &errb); code != 1 || !strings.Contains(errb.String(), `404 Not Found: no repository "nope"`) {
		t.Fatalf("unknown repo: exit %d %q", code, errb.String())
	}
}

// TestClientWithoutServer: with nothing listening, every client command
// fails in one line that says how to start stackd.
func TestClientWithoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, args := range [][]string{{"repos", "--server", addr}, {"view", "local", "--server", "http://" + addr}, {"sync", "local", "--server", addr}} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		msg := errb.String()
		if code != 1 || !strings.Contains(msg, "is stackd running? start it with `stackd serve`") ||
			!strings.Contains(msg, "http://"+addr) || strings.Count(strings.TrimSpace(msg), "\n") > 0 {
			t.Errorf("%v: exit %d: %q", args, code, msg)
		}
	}
}

// TestClientShowsNullViewVersion: a repository without a view yet (a
// configured mirror before its first clone) shows "-" as its version.
func TestClientShowsNullViewVersion(t *testing.T) {
	up := gittest.New(t)
	up.Commit("initial", map[string]string{"README": "x\n"})
	cfg := config.Default()
	cfg.Cwd = t.TempDir() // no local repository
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.SyncInterval = 0
	cfg.AllowLocalRemotes = true
	cfg.Repos = []config.RepoConfig{{ID: "later", URL: up.Dir}}
	app, err := impl.New(cfg, slog.New(slog.DiscardHandler), impl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Not started: the mirror is not cloned, so it has no view.
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(func() { srv.Close(); app.Close() })
	var out, errb bytes.Buffer
	if code := run([]string{"repos", "--server", srv.URL}, &out, &errb); code != 0 {
		t.Fatalf("repos: exit %d %s", code, errb.String())
	}
	if !regexp.MustCompile(`(?m)^later\s+mirror\s+(\S+\s+)?-\s+-\s+idle`).MatchString(out.String()) {
		t.Fatalf("repos output:\n%s", out.String())
	}
}

// TestClientFlagsBeforeOrAfterCommand: the client flags work before the
// command as after it (stackd --server HOST repos), against a real
// server; flags before a command that is not a client command stay an
// unknown command.
func TestClientFlagsBeforeOrAfterCommand(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	srv := serveWorktree(t, r.Dir)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("STACKD_SERVER", "127.0.0.1:1") // nothing there: only the flag can reach the server

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--server", hostPort, "repos"}, "local  local  main"},
		{[]string{"repos", "--server", hostPort}, "local  local  main"},
		{[]string{"--server=" + srv.URL, "repos"}, "local  local  main"},
		{[]string{"-server", hostPort, "--json", "repos"}, `"id": "local"`},
		{[]string{"--json", "--server", hostPort, "repos"}, `"id": "local"`},
		{[]string{"--server", hostPort, "view", "local"}, "local"},
		{[]string{"--server", hostPort, "sync", "local"}, "of local: succeeded"},
		{[]string{"--server", hostPort, "sync", "--json", "local"}, `"state": "succeeded"`},
		{[]string{"--server", hostPort, "--no-wait", "sync", "local"}, "local"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 0 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("stackd %q: exit %d, want %q in:\n%s%s", tc.args, code, tc.want, out.String(), errb.String())
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--server", hostPort}, `unknown command "--server"`},
		{[]string{"--port", "8080", "serve"}, `unknown command "--port"`},
		{[]string{"--server", hostPort, "repos", "extra"}, "stackd repos takes no arguments"},
		{[]string{"--server", hostPort, "view"}, "stackd view REPO"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("stackd %q: exit %d, want 2 and %q: %s", tc.args, code, tc.want, errb.String())
		}
	}
}

// serveWorktree serves the working repository dir with a real App (no
// interval runs) on an httptest server, closed at the test's end.
func serveWorktree(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	cfg := config.Default()
	cfg.Cwd, cfg.CwdExplicit = dir, true
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.SyncInterval = 0
	app, err := impl.New(cfg, slog.New(slog.DiscardHandler), impl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(func() { cancel(); srv.Close(); app.Close() })
	return srv
}
