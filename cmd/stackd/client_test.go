package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
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

	cfg := config.Default()
	cfg.Cwd, cfg.CwdExplicit = r.Dir, true
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
	out = runOK("sync", "--json", "--server", srv.URL, "local")
	if !strings.Contains(out, `"mode": "reread"`) {
		t.Fatalf("sync --json output:\n%s", out)
	}

	var errb bytes.Buffer
	if code := run([]string{"view", "nope", "--server", srv.URL}, &bytes.Buffer{}, &errb); code != 1 || !strings.Contains(errb.String(), `404 Not Found: no repository "nope"`) {
		t.Fatalf("unknown repo: exit %d %q", code, errb.String())
	}
}
