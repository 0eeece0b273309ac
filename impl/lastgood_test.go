package impl_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/mirror/hostile"
)

// breakView adds a branch to r whose history holds a commit over the
// view's commit limit (view.MaxCommitSize): the build walks that history,
// so the repository's refs make no view while the branch exists.
func breakView(t *testing.T, r *gittest.Repo) {
	t.Helper()
	msg := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(msg, []byte("a long message\n\n"+strings.Repeat("x", 2<<20)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := r.Git("rev-parse", "main^{tree}")
	huge := r.Git("commit-tree", tree, "-p", "main", "-F", msg)
	r.Git("update-ref", "refs/heads/broken", r.Git("commit-tree", tree, "-p", huge, "-m", "on top"))
}

// viewOf returns the view's JSON without its build time.
func viewOf(t *testing.T, s *testServer, repo string) (etag string, body string) {
	t.Helper()
	res, err := s.c.GetViewWithResponse(ctx(t), repo, nil)
	if err != nil || res.StatusCode() != http.StatusOK {
		t.Fatalf("view: %v %d", err, res.StatusCode())
	}
	var v map[string]any
	if err := json.Unmarshal(res.Body, &v); err != nil {
		t.Fatal(err)
	}
	delete(v, "builtAt")
	out, _ := json.Marshal(v)
	return res.HTTPResponse.Header.Get("ETag"), string(out)
}

// TestWorkingRepositoryKeepsItsLastGoodView: refs of the working
// repository that make no view fail the sync with 502
// /problems/view-build-failed and keep the view served; a restart with
// those refs still starts, serves the repository as failed with the view
// of its last good refs (kept in the data directory, never in the
// repository), and a sync once the refs are sane again succeeds.
func TestWorkingRepositoryKeepsItsLastGoodView(t *testing.T) {
	r := stackRepo(t)
	before := treeHash(t, r.Dir)
	cfg := baseConfig(t, r.Dir)
	first := startServer(t, cfg, impl.Options{})
	etag, good := viewOf(t, first, "local")
	if !strings.Contains(good, `"name":"c"`) {
		t.Fatalf("the view lacks the stack: %s", good)
	}

	breakView(t, r)
	res, err := first.c.SyncRepoWithResponse(ctx(t), "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	var p client.Problem
	if json.Unmarshal(res.Body, &p) != nil || res.StatusCode() != http.StatusBadGateway || p.Type != "/problems/view-build-failed" || p.SyncId == nil {
		t.Fatalf("sync: %d %s", res.StatusCode(), res.Body)
	}
	if e, v := viewOf(t, first, "local"); e != etag || v != good {
		t.Fatalf("the view changed after a failed build:\n%s", v)
	}
	first.cancel()
	first.app.Close()

	// Refs that make no view at start-up: the server starts anyway.
	second := startServer(t, cfg, impl.Options{})
	if _, v := viewOf(t, second, "local"); v != good {
		t.Fatalf("after a restart the view is\n%s\nwant the last good one\n%s", v, good)
	}
	repo, err := second.c.GetRepoWithResponse(ctx(t), "local")
	if err != nil || repo.JSON200 == nil || repo.JSON200.SyncStatus.LastError == nil || repo.JSON200.SyncStatus.ConsecutiveFailures == 0 {
		t.Fatalf("the repository is not served as failed: %v %s", err, repo.Body)
	}
	if code, _, body := second.do(http.MethodGet, "/readyz", nil); code != http.StatusOK {
		t.Fatalf("readyz: %d %s", code, body)
	}

	r.Git("update-ref", "-d", "refs/heads/broken")
	if res, err := second.c.SyncRepoWithResponse(ctx(t), "local", nil); err != nil || res.StatusCode() != http.StatusOK {
		t.Fatalf("sync with sane refs: %v %s", err, res.Body)
	}
	// The repository was only ever read: the broken branch is the test's.
	after := treeHash(t, r.Dir)
	for _, c := range diffTrees(before, after) {
		if !strings.Contains(c, "objects/") && !strings.Contains(c, "refs/heads/broken") && !strings.Contains(c, "logs/") {
			t.Errorf("the working repository changed: %s", c)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "local", "local.refs")); err != nil {
		t.Fatalf("the last good refs are not kept in the data directory: %v", err)
	}
}

// TestRepositoryWithoutViewDoesNotStopTheOthers: a mirror of the config
// file whose refs make no view is served as failed at start-up, and every
// other repository is served.
func TestRepositoryWithoutViewDoesNotStopTheOthers(t *testing.T) {
	srv := hostile.Start(t)
	good := stackRepo(t)
	bad := stackRepo(t)
	breakView(t, bad)
	srv.Set("good.git", hostile.Scenario{Passthrough: good.Dir})
	srv.Set("bad.git", hostile.Scenario{Passthrough: bad.Dir})
	cfg := baseConfig(t, "")
	cfg.AllowPrivateRemotes = true
	cfg.Repos = append(cfg.Repos,
		config.RepoConfig{ID: "good", URL: srv.GitURL("good.git")}, config.RepoConfig{ID: "bad", URL: srv.GitURL("bad.git")})
	s := startServer(t, cfg, impl.Options{})
	for _, id := range []string{"good", "bad"} {
		rf, _ := s.app.Refresh().Get(id)
		if err := rf.Idle(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, body := s.do(http.MethodGet, "/readyz", nil); code != http.StatusOK {
		t.Fatalf("readyz: %d %s", code, body)
	}
	if _, v := viewOf(t, s, "good"); !strings.Contains(v, `"name":"c"`) {
		t.Fatalf("the good repository is not served: %s", v)
	}
	repo, err := s.c.GetRepoWithResponse(ctx(t), "bad")
	if err != nil || repo.JSON200 == nil || repo.JSON200.SyncStatus.LastError == nil {
		t.Fatalf("the bad repository is not served as failed: %v %s", err, repo.Body)
	}
}
