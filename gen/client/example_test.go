package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
)

// Example lists the repositories of a stackd server and reads the stacks
// of one. The server here is a real stackd serving a small repository in
// this process; against your own, pass its URL (and, where it has
// sign-in, a bearer ID token: see client.WithRequestEditorFn).
func Example() {
	serverURL, stop := startStackd()
	defer stop()
	ctx := context.Background()

	c, err := client.NewClientWithResponses(serverURL)
	if err != nil {
		log.Fatal(err)
	}
	repos, err := c.ListReposWithResponse(ctx)
	if err != nil || repos.JSON200 == nil {
		log.Fatalf("list repos: %v (status %d)", err, repos.StatusCode())
	}
	for _, r := range *repos.JSON200 {
		fmt.Println("repository", r.Id, r.Kind, "trunk", r.Trunk)
	}

	view, err := c.GetViewWithResponse(ctx, "local", nil)
	if err != nil || view.JSON200 == nil {
		log.Fatalf("get view: %v (status %d)", err, view.StatusCode())
	}
	for _, st := range view.JSON200.Stacks {
		var names []string
		for _, b := range st.Branches {
			names = append(names, fmt.Sprintf("%s (on %s)", b.Name, *b.Parent))
		}
		fmt.Println("stack", st.Root+":", strings.Join(names, ", "))
	}
	// Output:
	// repository local local trunk main
	// stack feature/api: feature/api (on main), feature/ui (on feature/api)
}

// startStackd serves a new git repository (main, and a stack of two
// branches recorded in stackit's metadata) with a stackd in this process,
// and returns its URL and what stops it.
func startStackd() (string, func()) {
	tmp, err := os.MkdirTemp("", "stackd-example-")
	if err != nil {
		log.Fatal(err)
	}
	dir := filepath.Join(tmp, "repo")
	git := func(stdin string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=Ex", "GIT_AUTHOR_EMAIL=ex@example.com", "GIT_COMMITTER_NAME=Ex", "GIT_COMMITTER_EMAIL=ex@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			log.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	git("", "init", "-q", "-b", "main")
	git("", "commit", "-q", "--allow-empty", "-m", "initial")
	for _, b := range []struct{ name, parent string }{{"feature/api", "main"}, {"feature/ui", "feature/api"}} {
		git("", "checkout", "-q", "-b", b.name)
		git("", "commit", "-q", "--allow-empty", "-m", b.name)
		blob := git(`{"parentBranchName":"`+b.parent+`"}`, "hash-object", "-w", "--stdin")
		git("", "update-ref", "refs/stackit/metadata/"+b.name, blob)
	}
	git("", "checkout", "-q", "main")

	cfg := config.Default()
	cfg.Cwd, cfg.CwdExplicit = dir, true
	cfg.DataDir = filepath.Join(tmp, "data")
	app, err := impl.New(cfg, slog.New(slog.DiscardHandler), impl.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := app.Start(ctx); err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(app.Handler())
	return srv.URL, func() {
		cancel()
		srv.Close()
		app.Close()
		_ = os.RemoveAll(tmp)
	}
}
