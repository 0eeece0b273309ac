package impl_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

func names(bs []client.Branch) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Name
	}
	return out
}

func TestStackFromStackitMetadata(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})

	resp, err := s.c.GetViewWithResponse(ctx(t), "local", nil)
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("view: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	v := resp.JSON200
	if v.Repo.Trunk != "main" || v.Repo.Kind != client.Local || v.Repo.CurrentBranch == nil || *v.Repo.CurrentBranch != "b" {
		t.Fatalf("repo = %+v", v.Repo)
	}
	if len(v.Stacks) != 1 {
		t.Fatalf("stacks = %d, want 1", len(v.Stacks))
	}
	st := v.Stacks[0]
	if st.Root != "a" || st.Id != "s1" || st.Title != "Login flow" || st.Description == nil || *st.Description != "three steps" {
		t.Fatalf("stack = %+v", st)
	}
	if got := strings.Join(names(st.Branches), ","); got != "a,b,c" {
		t.Fatalf("branches = %s", got)
	}
	a, b, c := st.Branches[0], st.Branches[1], st.Branches[2]
	if *a.Parent != "main" || *b.Parent != "a" || *c.Parent != "b" || a.Depth != 1 || c.Depth != 3 {
		t.Fatalf("parents/depths wrong: %+v", st.Branches)
	}
	if a.ParentSource != client.BranchParentSourceStackit || !b.IsCurrent || a.IsCurrent || a.NeedsRestack || b.NeedsRestack || c.NeedsRestack {
		t.Fatalf("flags wrong: %+v", st.Branches)
	}
	if len(b.Commits) != 2 || b.Commits[0].Subject != "b2" || b.Commits[1].Subject != "b1" {
		t.Fatalf("b commits = %+v", b.Commits)
	}
	if a.Pr == nil || a.Pr.Number != 7 || a.Pr.State == nil || *a.Pr.State != "OPEN" {
		t.Fatalf("a pr = %+v", a.Pr)
	}
	if len(v.RecentlyMerged) != 1 || v.RecentlyMerged[0].Subject != "initial" {
		t.Fatalf("recentlyMerged = %+v", v.RecentlyMerged)
	}
	if v.Version < 1 {
		t.Fatalf("version = %d", v.Version)
	}

	// Conditional GET answers 304 while the snapshot is unchanged.
	etag := resp.HTTPResponse.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	again, err := s.c.GetViewWithResponse(ctx(t), "local", &client.GetViewParams{IfNoneMatch: &etag})
	if err != nil || again.StatusCode() != http.StatusNotModified {
		t.Fatalf("conditional view: %v %d", err, again.StatusCode())
	}
	stk, err := s.c.GetStackWithResponse(ctx(t), "local", "a", &client.GetStackParams{IfNoneMatch: &etag})
	if err != nil || stk.StatusCode() != http.StatusNotModified {
		t.Fatalf("conditional stack: %v %d", err, stk.StatusCode())
	}

	// A later commit moves the parent: its child needs a restack after a sync.
	r.Git("checkout", "-q", "a")
	r.Commit("a2", map[string]string{"a.txt": "a2\n"})
	sync, err := s.c.SyncRepoWithResponse(ctx(t), "local", nil)
	if err != nil || sync.JSON200 == nil {
		t.Fatalf("sync: %v %s", err, sync.Body)
	}
	br, err := s.c.GetBranchWithResponse(ctx(t), "local", "b", nil)
	if err != nil || br.JSON200 == nil {
		t.Fatalf("branch: %v %s", err, br.Body)
	}
	if !br.JSON200.NeedsRestack {
		t.Fatal("b should need a restack after a moved")
	}
	old, err := s.c.GetViewWithResponse(ctx(t), "local", &client.GetViewParams{IfNoneMatch: &etag})
	if err != nil || old.StatusCode() != http.StatusOK {
		t.Fatalf("stale ETag should get 200, got %d", old.StatusCode())
	}
}

func TestStackFromGraphiteMetadata(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	r.Branch("g1", "main")
	r.Commit("g1", map[string]string{"g1": "1\n"})
	r.Branch("g2", "g1")
	r.Commit("g2", map[string]string{"g2": "2\n"})
	r.BlobRef("refs/branch-metadata/g1", `{"parentBranchName":"main","parentBranchRevision":"`+r.Rev("main")+`","prInfo":{"number":3,"title":"G1","state":"OPEN"}}`)
	r.BlobRef("refs/branch-metadata/g2", `{"parentBranchName":"g1","parentBranchRevision":"`+r.Rev("g1")+`"}`)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})

	resp, err := s.c.ListStacksWithResponse(ctx(t), "local", nil)
	if err != nil || resp.JSON200 == nil || len(*resp.JSON200) != 1 {
		t.Fatalf("stacks: %v %s", err, resp.Body)
	}
	st := (*resp.JSON200)[0]
	if got := strings.Join(names(st.Branches), ","); got != "g1,g2" {
		t.Fatalf("branches = %s", got)
	}
	if st.Branches[1].ParentSource != client.BranchParentSourceGraphite || *st.Branches[1].Parent != "g1" || st.Branches[0].Pr == nil || st.Branches[0].Pr.Number != 3 {
		t.Fatalf("graphite stack = %+v", st.Branches)
	}
}

func TestStackByAncestryAndSlashedNames(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	r.Branch("feature/base", "main")
	r.Commit("base work", map[string]string{"base.txt": "base\n"})
	r.Branch("feature/top", "feature/base")
	r.Commit("top work", map[string]string{"top.txt": "top\n"})
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})

	resp, err := s.c.GetBranchWithResponse(ctx(t), "local", "feature/top", nil)
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("branch with slash: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	b := resp.JSON200
	if b.Parent == nil || *b.Parent != "feature/base" || b.ParentSource != client.BranchParentSourceAncestry || b.Depth != 2 {
		t.Fatalf("ancestry parent = %+v", b)
	}
	stack, err := s.c.GetStackWithResponse(ctx(t), "local", "feature/base", nil)
	if err != nil || stack.JSON200 == nil || strings.Join(names(stack.JSON200.Branches), ",") != "feature/base,feature/top" {
		t.Fatalf("stack by slashed root: %v %s", err, stack.Body)
	}
	diff, err := s.c.GetBranchDiffWithResponse(ctx(t), "local", "feature/top", nil)
	if err != nil || diff.StatusCode() != http.StatusOK {
		t.Fatalf("diff: %v %d %s", err, diff.StatusCode(), diff.Body)
	}
	if ct := diff.HTTPResponse.Header.Get("Content-Type"); ct != "text/x-patch" {
		t.Fatalf("diff content type %q", ct)
	}
	patch := string(diff.Body)
	if !strings.Contains(patch, "+top") || !strings.Contains(patch, "top.txt") || strings.Contains(patch, "base.txt") {
		t.Fatalf("patch should hold only top's change:\n%s", patch)
	}
	// The percent-encoded raw path works for curl users too.
	code, _, _ := s.do("GET", "/api/v1/repos/local/branches/feature%2Ftop", nil)
	if code != http.StatusOK {
		t.Fatalf("raw encoded path: %d", code)
	}
}

func TestDetachedHeadAndEmptyRepo(t *testing.T) {
	r := stackRepo(t)
	r.Git("checkout", "-q", "--detach", "c")
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	resp, err := s.c.GetRepoWithResponse(ctx(t), "local")
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("repo: %v", err)
	}
	if resp.JSON200.CurrentBranch != nil || resp.JSON200.HeadSha == nil || *resp.JSON200.HeadSha != r.Rev("c") {
		t.Fatalf("detached repo = %+v", resp.JSON200)
	}
	bs, err := s.c.ListBranchesWithResponse(ctx(t), "local", nil)
	if err != nil || bs.JSON200 == nil {
		t.Fatal(err)
	}
	for _, b := range *bs.JSON200 {
		if b.IsCurrent {
			t.Fatalf("%s is current with a detached HEAD", b.Name)
		}
	}

	empty := gittest.New(t)
	s2 := startServer(t, baseConfig(t, empty.Dir), impl.Options{})
	v, err := s2.c.GetViewWithResponse(ctx(t), "local", nil)
	if err != nil || v.JSON200 == nil {
		t.Fatalf("empty view: %v %d %s", err, v.StatusCode(), v.Body)
	}
	if len(v.JSON200.Stacks) != 0 || len(v.JSON200.RecentlyMerged) != 0 {
		t.Fatalf("empty repo view = %+v", v.JSON200)
	}
}

func TestMalformedMetadataFallsBackToAncestry(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	r.Branch("ok", "main")
	r.Commit("ok", nil)
	r.Branch("bad", "ok")
	r.Commit("bad", nil)
	r.BlobRef("refs/stackit/metadata/bad", `{"parentBranchName": `) // truncated JSON
	r.BlobRef("refs/stackit/metadata/ok", `{"parentBranchName":"nope"}`)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	resp, err := s.c.ListBranchesWithResponse(ctx(t), "local", nil)
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("branches: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	got := map[string]client.Branch{}
	for _, b := range *resp.JSON200 {
		got[b.Name] = b
	}
	if b := got["bad"]; b.Parent == nil || *b.Parent != "ok" || b.ParentSource != client.BranchParentSourceAncestry {
		t.Fatalf("bad = %+v", b)
	}
	if b := got["ok"]; b.Parent == nil || *b.Parent != "main" || b.ParentSource != client.BranchParentSourceAncestry {
		t.Fatalf("ok = %+v", b)
	}
	if !strings.Contains(s.logs.String(), "bad") {
		t.Fatal("malformed metadata was not logged")
	}
}

func TestTwoThousandBranches(t *testing.T) {
	r := gittest.New(t)
	var fi strings.Builder
	fi.WriteString("commit refs/heads/main\nmark :1\ncommitter C <c@example.com> 1700000000 +0000\ndata 4\nbase\n\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&fi, "commit refs/heads/topic-%04d\nmark :%d\ncommitter C <c@example.com> %d +0000\ndata 6\nwork%d\nfrom :1\n\n", i, i+2, 1700000100+i, i%10)
	}
	r.FastImport(fi.String())
	r.Git("checkout", "-q", "main")
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	resp, err := s.c.ListBranchesWithResponse(ctx(t), "local", nil)
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("branches: %v", err)
	}
	if len(*resp.JSON200) != 2001 {
		t.Fatalf("branches = %d, want 2001", len(*resp.JSON200))
	}
	stacks, err := s.c.ListStacksWithResponse(ctx(t), "local", nil)
	if err != nil || stacks.JSON200 == nil || len(*stacks.JSON200) != 2000 {
		t.Fatalf("stacks: %v", err)
	}
	b, err := s.c.GetBranchWithResponse(ctx(t), "local", "topic-1234", nil)
	if err != nil || b.JSON200 == nil || *b.JSON200.Parent != "main" || len(b.JSON200.Commits) != 1 {
		t.Fatalf("topic-1234: %v %s", err, b.Body)
	}
}

func TestErrorsAreProblems(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	cases := []struct {
		name, method, path string
		hdr                []string
		status             int
		typ                string
	}{
		{"unknown repo view", "GET", "/api/v1/repos/nope/view", nil, 404, "/problems/not-found"},
		{"unknown repo", "GET", "/api/v1/repos/nope", nil, 404, "/problems/not-found"},
		{"unknown repo stacks", "GET", "/api/v1/repos/nope/stacks", nil, 404, "/problems/not-found"},
		{"unknown repo branches", "GET", "/api/v1/repos/nope/branches", nil, 404, "/problems/not-found"},
		{"unknown repo sync", "POST", "/api/v1/repos/nope/sync", nil, 404, "/problems/not-found"},
		{"unknown repo syncs", "GET", "/api/v1/repos/nope/syncs", nil, 404, "/problems/not-found"},
		{"unknown stack", "GET", "/api/v1/repos/local/stacks/zzz", nil, 404, "/problems/not-found"},
		{"non-root is no stack", "GET", "/api/v1/repos/local/stacks/b", nil, 404, "/problems/not-found"},
		{"unknown branch", "GET", "/api/v1/repos/local/branches/zzz", nil, 404, "/problems/not-found"},
		{"unknown branch diff", "GET", "/api/v1/repos/local/branches/zzz/diff", nil, 404, "/problems/not-found"},
		{"trunk has no diff", "GET", "/api/v1/repos/local/branches/main/diff", nil, 404, "/problems/not-found"},
		{"unknown sync", "GET", "/api/v1/repos/local/syncs/0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", nil, 404, "/problems/not-found"},
		{"sync id that is not a UUIDv7", "GET", "/api/v1/repos/local/syncs/999", nil, 400, "/problems/bad-request"},
		{"unknown route", "GET", "/api/v2/nothing", nil, 404, "/problems/not-found"},
		{"bad repo id", "GET", "/api/v1/repos/-bad-/view", nil, 400, "/problems/bad-request"},
		{"bad sync id", "GET", "/api/v1/repos/local/syncs/abc", nil, 400, "/problems/bad-request"},
		{"bad wait flag", "POST", "/api/v1/repos/local/sync?wait=perhaps", nil, 400, "/problems/bad-request"},
		{"wrong method", "DELETE", "/api/v1/repos/local/view", nil, 405, "/problems/method-not-allowed"},
		{"wrong method on sync", "GET", "/api/v1/repos/local/sync", nil, 405, "/problems/method-not-allowed"},
		{"bad onboarding body", "POST", "/api/v1/repos", []string{"Content-Type", "application/json"}, 400, "/problems/bad-request"},
		{"webhooks disabled", "POST", "/api/v1/webhooks/github", []string{"Content-Type", "application/json"}, 404, "/problems/not-found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body *strings.Reader
			if tc.method == "POST" && len(tc.hdr) > 0 {
				body = strings.NewReader(`{"url": 5}`)
				if strings.Contains(tc.path, "webhooks") {
					body = strings.NewReader(`{}`)
				}
			}
			var code int
			var hdr http.Header
			var text string
			if body != nil {
				code, hdr, text = s.do(tc.method, tc.path, body, tc.hdr...)
			} else {
				code, hdr, text = s.do(tc.method, tc.path, nil, tc.hdr...)
			}
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, text)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q", ct)
			}
			var p client.Problem
			if err := json.Unmarshal([]byte(text), &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != tc.typ || p.Status != tc.status || p.Title == "" {
				t.Fatalf("problem = %+v", p)
			}
			if p.Detail != nil && strings.Contains(*p.Detail, "\n") {
				t.Fatalf("multi-line detail %q", *p.Detail)
			}
			if tc.status == 405 && hdr.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
}

func TestSpecDocsAndProbes(t *testing.T) {
	s := startServer(t, baseConfig(t, ""), impl.Options{})
	for _, p := range []struct {
		path, contains string
	}{
		{"/openapi.yaml", "openapi: 3.0.3"},
		{"/openapi.json", `"openapi":"3.0.3"`},
		{"/docs/", "swagger"},
		{"/docs/", "X-Stackd-CSRF"}, // the request interceptor for cookie sessions
		{"/healthz", `"ok"`},
		{"/readyz", `"ready"`},
		{"/api/v1/config", `"singleRepo":false`},
		{"/api/v1/repos", `[]`},
	} {
		code, _, body := s.do("GET", p.path, nil)
		if code != 200 || !strings.Contains(strings.ToLower(body), strings.ToLower(p.contains)) {
			t.Fatalf("%s: %d %.200s", p.path, code, body)
		}
	}
}

// TestLocalRepositoryIsOnlyRead exercises the whole read API and a manual
// sync on a working repository and proves that not one byte under it (its
// .git included) changed.
func TestLocalRepositoryIsOnlyRead(t *testing.T) {
	r := stackRepo(t)
	r.Git("pack-refs", "--all")
	before := treeHash(t, r.Dir)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	paths := []string{
		"/api/v1/config", "/api/v1/repos", "/api/v1/repos/local", "/api/v1/repos/local/view",
		"/api/v1/repos/local/stacks", "/api/v1/repos/local/stacks/a", "/api/v1/repos/local/branches",
		"/api/v1/repos/local/branches/b", "/api/v1/repos/local/branches/b/diff", "/api/v1/repos/local/branches/c/diff",
		"/api/v1/repos/local/syncs",
	}
	for _, p := range paths {
		if code, _, body := s.do("GET", p, nil); code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	if code, _, body := s.do("POST", "/api/v1/repos/local/sync", nil); code != 200 {
		t.Fatalf("sync: %d %s", code, body)
	}
	if diffs := diffTrees(before, treeHash(t, r.Dir)); len(diffs) > 0 {
		t.Fatalf("the working repository changed: %v", diffs)
	}
}

func TestDataDirInsideRepoRefused(t *testing.T) {
	r := stackRepo(t)
	cfg := baseConfig(t, r.Dir)
	cfg.DataDir = r.Dir + "/.stackd"
	_, err := impl.New(cfg, slogDiscard(), impl.Options{})
	if err == nil || !strings.Contains(err.Error(), "inside the served repository") {
		t.Fatalf("err = %v", err)
	}
}

func TestCwdThatIsNotARepository(t *testing.T) {
	cfg := baseConfig(t, t.TempDir())
	_, err := impl.New(cfg, slogDiscard(), impl.Options{})
	if err == nil || !strings.Contains(err.Error(), "not a git repository") {
		t.Fatalf("err = %v", err)
	}
}

// TestUnexpectedErrorIsAGeneric500: an error no response declares is logged
// with its detail and answered with a generic problem.
func TestUnexpectedErrorIsAGeneric500(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	if err := os.Rename(r.Dir+"/.git", r.Dir+"/.git-away"); err != nil {
		t.Fatal(err)
	}
	code, hdr, body := s.do("POST", "/api/v1/repos/local/sync", nil)
	if code != 500 || hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("sync of a vanished repository: %d %s", code, body)
	}
	if !strings.Contains(body, "unexpected error") || strings.Contains(body, ".git") {
		t.Fatalf("the 500 body leaks the detail: %s", body)
	}
	if !strings.Contains(s.logs.String(), "request failed") {
		t.Fatal("the detail was not logged")
	}
	// The last good view is still served.
	if code, _, _ := s.do("GET", "/api/v1/repos/local/view", nil); code != 200 {
		t.Fatalf("view after a failed sync: %d", code)
	}
}

// TestServesLinkedWorktreeWithWorktreeConfig: a linked worktree of a
// repository with extensions.worktreeConfig (which go-git alone refuses to
// open) is served, with its own HEAD, and stays byte-identical.
func TestServesLinkedWorktreeWithWorktreeConfig(t *testing.T) {
	r := stackRepo(t)
	r.Git("config", "extensions.worktreeConfig", "true")
	r.Git("pack-refs", "--all")
	wtDir := t.TempDir() + "/linked"
	r.Git("worktree", "add", "-q", wtDir, "c")
	beforeMain, beforeLinked := treeHash(t, r.Dir), treeHash(t, wtDir)

	s := startServer(t, baseConfig(t, wtDir), impl.Options{})
	resp, err := s.c.GetViewWithResponse(ctx(t), "local", nil)
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("view: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	v := resp.JSON200
	if v.Repo.CurrentBranch == nil || *v.Repo.CurrentBranch != "c" || len(v.Stacks) != 1 || len(v.Stacks[0].Branches) != 3 {
		t.Fatalf("linked worktree view: %+v", v)
	}
	if code, _, body := s.do("GET", "/api/v1/repos/local/branches/c/diff", nil); code != 200 || !strings.Contains(body, "c.txt") {
		t.Fatalf("diff: %d %s", code, body)
	}
	if code, _, _ := s.do("POST", "/api/v1/repos/local/sync", nil); code != 200 {
		t.Fatalf("sync: %d", code)
	}
	if d := diffTrees(beforeMain, treeHash(t, r.Dir)); len(d) > 0 {
		t.Fatalf("main checkout changed: %v", d)
	}
	if d := diffTrees(beforeLinked, treeHash(t, wtDir)); len(d) > 0 {
		t.Fatalf("linked worktree changed: %v", d)
	}
}
