package view_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// stackRepo: main ← a ← b ← c, one or two commits each, HEAD on c.
func stackRepo(t *testing.T) *gittest.Repo {
	r := gittest.New(t)
	r.Commit("init", map[string]string{"README": "hi\n"})
	r.Branch("a", "main")
	r.Commit("a1", map[string]string{"a.txt": "a1\n"})
	r.Branch("b", "a")
	r.Commit("b1", map[string]string{"b.txt": "b1\n"})
	r.Commit("b2", map[string]string{"b.txt": "b2\n"})
	r.Branch("c", "b")
	r.Commit("c1", map[string]string{"c.txt": "c1\n"})
	return r
}

func TestStackitStack(t *testing.T) {
	r := stackRepo(t)
	r.BlobRef("refs/stackit/metadata/a", meta(t, "main", map[string]any{
		"parentBranchRevision": r.Rev("main"),
		"stackId":              "s-1",
		"scope":                "team",
		"unknownField":         []int{1, 2},
		"prInfo":               map[string]any{"number": 42, "title": "Add a", "state": "OPEN", "url": "https://example.com/pr/42", "isDraft": true, "base": "main"},
	}))
	r.BlobRef("refs/stackit/metadata/b", meta(t, "a", map[string]any{"parentBranchRevision": r.Rev("a")}))
	r.BlobRef("refs/stackit/metadata/c", meta(t, "b", nil))
	r.BlobRef("refs/stackit/stacks/s-1", `{"id":"s-1","title":"My stack","description":"Does things"}`)

	s, logs := build(t, r, view.Input{Trunk: "main", Remote: "https://example.com/x.git"})
	if l := logs.String(); l != "" {
		t.Errorf("unexpected warnings: %s", l)
	}
	wantEqual(t, "branches", names(s.Branches()), []string{"main", "a", "b", "c"})
	wantParent(t, s, "a", "main", gen.BranchParentSourceStackit)
	wantParent(t, s, "b", "a", gen.BranchParentSourceStackit)
	wantParent(t, s, "c", "b", gen.BranchParentSourceStackit)
	wantParent(t, s, "main", "<nil>", gen.BranchParentSourceNone)

	for name, want := range map[string]struct {
		depth    int
		children []string
		commits  []string
		current  bool
	}{
		"main": {0, []string{"a"}, []string{}, false},
		"a":    {1, []string{"b"}, []string{"a1"}, false},
		"b":    {2, []string{"c"}, []string{"b2", "b1"}, false},
		"c":    {3, []string{}, []string{"c1"}, true},
	} {
		b := mustBranch(t, s, name)
		if b.Depth != want.depth || b.IsCurrent != want.current || b.NeedsRestack {
			t.Errorf("%s: depth %d current %v restack %v", name, b.Depth, b.IsCurrent, b.NeedsRestack)
		}
		wantEqual(t, name+" children", b.Children, want.children)
		wantEqual(t, name+" commits", subjects(b.Commits), want.commits)
		if b.Sha != r.Rev(name) {
			t.Errorf("%s sha %s, want %s", name, b.Sha, r.Rev(name))
		}
		if b.Ahead != nil || b.Behind != nil {
			t.Errorf("%s: ahead/behind without remote-tracking branch", name)
		}
	}
	c1 := mustBranch(t, s, "c").Commits[0]
	if c1.Author != "Ada Author" || c1.Sha != r.Rev("c") || c1.Date.Location() != time.UTC ||
		c1.Date.Unix() != gittest.Epoch+5*60 {
		t.Errorf("commit c1 = %+v", c1)
	}

	a := mustBranch(t, s, "a")
	if a.Pr == nil || a.Pr.Number != 42 || deref(a.Pr.Title) != "Add a" || deref(a.Pr.State) != "OPEN" ||
		deref(a.Pr.Url) != "https://example.com/pr/42" || deref(a.Pr.IsDraft) != true || deref(a.Pr.Base) != "main" {
		t.Errorf("a.pr = %+v", a.Pr)
	}
	if mustBranch(t, s, "b").Pr != nil {
		t.Error("b has a PR")
	}

	stacks := s.Stacks()
	if len(stacks) != 1 {
		t.Fatalf("stacks = %d", len(stacks))
	}
	st := stacks[0]
	if st.Root != "a" || st.Id != "s-1" || st.Title != "My stack" || deref(st.Description) != "Does things" {
		t.Errorf("stack = %+v", st)
	}
	wantEqual(t, "stack branches", names(st.Branches), []string{"a", "b", "c"})
	if got, ok := s.Stack("a"); !ok || got.Id != "s-1" {
		t.Errorf("Stack(a) = %+v, %v", got, ok)
	}
	if _, ok := s.Stack("b"); ok {
		t.Error("Stack(b) found; b is not a root")
	}

	repo := s.Repo()
	if repo.Id != "local" || repo.Kind != gen.Local || repo.Trunk != "main" || deref(repo.CurrentBranch) != "c" ||
		deref(repo.HeadSha) != r.Rev("c") || deref(repo.Remote) != "https://example.com/x.git" {
		t.Errorf("repo = %+v", repo)
	}
	v := s.View()
	if len(v.Stacks) != 1 || v.Repo.Trunk != "main" {
		t.Errorf("view = %+v", v)
	}
	wantEqual(t, "recentlyMerged", subjects(v.RecentlyMerged), []string{"init"})

	base, tip, ok := s.DiffRange("b")
	if !ok || base.String() != r.Rev("a") || tip.String() != r.Rev("b") {
		t.Errorf("DiffRange(b) = %s %s %v", base, tip, ok)
	}
	if _, _, ok := s.DiffRange("main"); ok {
		t.Error("DiffRange(main) ok")
	}
	if _, _, ok := s.DiffRange("nope"); ok {
		t.Error("DiffRange(nope) ok")
	}
}

func TestGraphiteStack(t *testing.T) {
	r := stackRepo(t)
	r.BlobRef("refs/branch-metadata/a", meta(t, "main", map[string]any{
		"parentBranchRevision": r.Rev("main"),
		"prInfo":               map[string]any{"number": 7, "title": "A", "state": "MERGED", "base": "main", "body": "x", "reviewDecision": "APPROVED"},
	}))
	r.BlobRef("refs/branch-metadata/b", meta(t, "a", map[string]any{"parentBranchRevision": r.Rev("a")}))
	r.BlobRef("refs/branch-metadata/c", meta(t, "b", map[string]any{"parentBranchRevision": r.Rev("b")}))
	s, logs := build(t, r, view.Input{Trunk: "main"})
	if l := logs.String(); l != "" {
		t.Errorf("unexpected warnings: %s", l)
	}
	wantEqual(t, "branches", names(s.Branches()), []string{"main", "a", "b", "c"})
	wantParent(t, s, "a", "main", gen.BranchParentSourceGraphite)
	wantParent(t, s, "b", "a", gen.BranchParentSourceGraphite)
	wantParent(t, s, "c", "b", gen.BranchParentSourceGraphite)
	if pr := mustBranch(t, s, "a").Pr; pr == nil || pr.Number != 7 || deref(pr.State) != "MERGED" || pr.Url != nil {
		t.Errorf("a.pr = %+v", pr)
	}
	st, ok := s.Stack("a")
	if !ok || st.Id != "a" || st.Title != "a" || st.Description != nil {
		t.Errorf("stack = %+v", st)
	}
}

func TestStackitWinsOverGraphite(t *testing.T) {
	r := stackRepo(t)
	// Graphite says c's parent is a, stackit says b.
	r.BlobRef("refs/branch-metadata/c", meta(t, "a", map[string]any{"prInfo": map[string]any{"number": 1}}))
	r.BlobRef("refs/stackit/metadata/c", meta(t, "b", map[string]any{"prInfo": map[string]any{"number": 2}}))
	// Only Graphite for b: used.
	r.BlobRef("refs/branch-metadata/b", meta(t, "main", nil))
	s, _ := build(t, r, view.Input{Trunk: "main"})
	wantParent(t, s, "c", "b", gen.BranchParentSourceStackit)
	wantParent(t, s, "b", "main", gen.BranchParentSourceGraphite)
	wantParent(t, s, "a", "main", gen.BranchParentSourceAncestry)
	if pr := mustBranch(t, s, "c").Pr; pr == nil || pr.Number != 2 {
		t.Errorf("c.pr = %+v", pr)
	}
	// b's recorded parent is main, but a's commits sit in between: b's
	// own commits are everything above main.
	wantEqual(t, "b commits", subjects(mustBranch(t, s, "b").Commits), []string{"b2", "b1", "a1"})
	wantEqual(t, "stacks", []string{s.Stacks()[0].Root, s.Stacks()[1].Root}, []string{"a", "b"})
}

func TestAncestry(t *testing.T) {
	r := gittest.New(t)
	r.Commit("m1", nil)
	old := r.Commit("m2", nil)
	r.Branch("a", "main")
	r.Commit("a1", nil)
	r.Branch("b", "a")
	r.Commit("b1", nil)
	r.Git("branch", "b-twin", "b") // same tip as b: neither is the other's parent
	r.Branch("feature/deep/x", "b")
	r.Commit("x1", nil)
	r.Branch("old", old)
	r.Commit("old1", nil)
	r.Git("checkout", "-q", "main")
	r.Commit("m3", nil) // trunk moves on: old and a now need a restack
	// at-trunk has no commits of its own. It is still a branch tip, and
	// branch tips win ties against trunk: late, forked from the same
	// commit, is stacked on it.
	r.Branch("at-trunk", "main")
	r.Branch("late", "main")
	r.Commit("late1", nil)
	r.Git("checkout", "-q", "main")

	s, logs := build(t, r, view.Input{Trunk: "main"})
	if l := logs.String(); l != "" {
		t.Errorf("unexpected warnings: %s", l)
	}
	tests := []struct {
		name, parent string
		depth        int
		restack      bool
		commits      []string
	}{
		{"a", "main", 1, true, []string{"a1"}},
		{"b", "a", 2, false, []string{"b1"}},
		{"b-twin", "a", 2, false, []string{"b1"}},
		{"feature/deep/x", "b", 3, false, []string{"x1"}},
		{"at-trunk", "main", 1, false, []string{}},
		{"old", "main", 1, true, []string{"old1"}},
		{"late", "at-trunk", 2, false, []string{"late1"}},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, "/", "_"), func(t *testing.T) {
			wantParent(t, s, tt.name, tt.parent, gen.BranchParentSourceAncestry)
			b := mustBranch(t, s, tt.name)
			if b.Depth != tt.depth || b.NeedsRestack != tt.restack {
				t.Errorf("depth %d restack %v, want %d %v", b.Depth, b.NeedsRestack, tt.depth, tt.restack)
			}
			wantEqual(t, "commits", subjects(b.Commits), tt.commits)
		})
	}
	wantEqual(t, "order", names(s.Branches()),
		[]string{"main", "a", "b", "feature/deep/x", "b-twin", "at-trunk", "late", "old"})
	wantEqual(t, "roots", []string{s.Stacks()[0].Root, s.Stacks()[1].Root, s.Stacks()[2].Root}, []string{"a", "at-trunk", "old"})
	wantEqual(t, "a children", mustBranch(t, s, "a").Children, []string{"b", "b-twin"})
	st, ok := s.Stack("a")
	if !ok {
		t.Fatal("no stack a")
	}
	wantEqual(t, "stack a", names(st.Branches), []string{"a", "b", "feature/deep/x", "b-twin"})
	if mustBranch(t, s, "main").IsCurrent != true {
		t.Error("main not current")
	}
}

func TestSlashBranchWithMetadata(t *testing.T) {
	r := gittest.New(t)
	r.Commit("init", nil)
	r.Branch("user/feat/one", "main")
	r.Commit("one", nil)
	r.Branch("user/feat/two", "user/feat/one")
	r.Commit("two", nil)
	r.BlobRef("refs/stackit/metadata/user/feat/one", meta(t, "main", nil))
	r.BlobRef("refs/stackit/metadata/user/feat/two", meta(t, "user/feat/one", map[string]any{"prInfo": map[string]any{"number": 3}}))
	s, _ := build(t, r, view.Input{})
	wantParent(t, s, "user/feat/two", "user/feat/one", gen.BranchParentSourceStackit)
	wantParent(t, s, "user/feat/one", "main", gen.BranchParentSourceStackit)
	if s.Repo().Trunk != "main" || deref(s.Repo().CurrentBranch) != "user/feat/two" {
		t.Errorf("repo = %+v", s.Repo())
	}
	if !mustBranch(t, s, "user/feat/two").IsCurrent {
		t.Error("user/feat/two not current")
	}
}

func TestDetachedHead(t *testing.T) {
	r := stackRepo(t)
	r.Git("checkout", "-q", "--detach", "b")
	s, _ := build(t, r, view.Input{Trunk: "main"})
	repo := s.Repo()
	if repo.CurrentBranch != nil || deref(repo.HeadSha) != r.Rev("b") {
		t.Errorf("repo = %+v", repo)
	}
	for _, b := range s.Branches() {
		if b.IsCurrent {
			t.Errorf("%s is current with detached HEAD", b.Name)
		}
	}
}

func TestMirrorHasNoCurrentBranch(t *testing.T) {
	r := stackRepo(t)
	s, _ := build(t, r, view.Input{Trunk: "main", Kind: gen.Mirror})
	if s.Repo().CurrentBranch != nil || deref(s.Repo().HeadSha) != r.Rev("c") || mustBranch(t, s, "c").IsCurrent {
		t.Errorf("mirror repo = %+v", s.Repo())
	}
}

func TestEmptyRepository(t *testing.T) {
	r := gittest.New(t)
	s, _ := build(t, r, view.Input{})
	if len(s.Branches()) != 0 || len(s.Stacks()) != 0 || len(s.View().RecentlyMerged) != 0 {
		t.Errorf("non-empty view: %+v", s.View())
	}
	repo := s.Repo()
	if repo.HeadSha != nil || deref(repo.CurrentBranch) != "main" || repo.Trunk != "" {
		t.Errorf("repo = %+v", repo)
	}
	b, err := json.Marshal(s.View())
	if err != nil {
		t.Fatal(err)
	}
	if !containsAll(string(b), `"stacks":[]`, `"recentlyMerged":[]`) {
		t.Errorf("empty lists must encode as []: %s", b)
	}
}

func TestEmptySnapshot(t *testing.T) {
	s := view.Empty(view.Input{RepoID: "r", Kind: gen.Mirror, Trunk: "main", Remote: "https://x"})
	if s.Version() != 0 || s.Repo().Trunk != "main" || deref(s.Repo().Remote) != "https://x" || s.Repo().Kind != gen.Mirror {
		t.Errorf("repo = %+v", s.Repo())
	}
	if s.Branches() == nil || s.Stacks() == nil || s.View().RecentlyMerged == nil || s.View().Stacks == nil {
		t.Error("nil slices in Empty")
	}
	if len(s.ContentHash()) != 64 || s.ETag() != `"0-`+s.ContentHash()[:16]+`"` {
		t.Errorf("hash %q etag %q", s.ContentHash(), s.ETag())
	}
	if _, ok := s.Branch("main"); ok {
		t.Error("Branch(main) in empty snapshot")
	}
}

func TestMalformedMetadata(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, r *gittest.Repo)
		// branch whose metadata is broken; it must fall back to ancestry.
		branch  string
		parent  string
		warning string
	}{
		{
			name:    "bad JSON",
			setup:   func(t *testing.T, r *gittest.Repo) { r.BlobRef("refs/stackit/metadata/b", `{"parentBranchName": "a",`) },
			branch:  "b",
			parent:  "a",
			warning: "malformed",
		},
		{
			name:    "wrong field type",
			setup:   func(t *testing.T, r *gittest.Repo) { r.BlobRef("refs/stackit/metadata/b", `{"parentBranchName": 5}`) },
			branch:  "b",
			parent:  "a",
			warning: "malformed",
		},
		{
			name: "ref to a commit",
			setup: func(t *testing.T, r *gittest.Repo) {
				r.Git("update-ref", "refs/stackit/metadata/b", r.Rev("a"))
			},
			branch:  "b",
			parent:  "a",
			warning: "not point to a blob",
		},
		{
			name: "ref to a tree (Graphite)",
			setup: func(t *testing.T, r *gittest.Repo) {
				r.Git("update-ref", "refs/branch-metadata/b", r.Rev("a^{tree}"))
			},
			branch:  "b",
			parent:  "a",
			warning: "not point to a blob",
		},
		{
			name:    "missing parent",
			setup:   func(t *testing.T, r *gittest.Repo) { r.BlobRef("refs/stackit/metadata/c", meta(t, "gone", nil)) },
			branch:  "c",
			parent:  "b",
			warning: "parent branch does not exist",
		},
		{
			name:    "self parent",
			setup:   func(t *testing.T, r *gittest.Repo) { r.BlobRef("refs/stackit/metadata/c", meta(t, "c", nil)) },
			branch:  "c",
			parent:  "b",
			warning: "parent is the branch itself",
		},
		{
			name:    "no parent field",
			setup:   func(t *testing.T, r *gittest.Repo) { r.BlobRef("refs/stackit/metadata/c", `{"stackId":"x"}`) },
			branch:  "c",
			parent:  "b",
			warning: "no parentBranchName",
		},
		{
			name: "two-branch cycle",
			setup: func(t *testing.T, r *gittest.Repo) {
				r.BlobRef("refs/stackit/metadata/a", meta(t, "b", nil))
				r.BlobRef("refs/stackit/metadata/b", meta(t, "a", nil))
			},
			branch:  "a", // smallest name in the cycle falls back
			parent:  "main",
			warning: "cycle",
		},
		{
			name: "three-branch cycle",
			setup: func(t *testing.T, r *gittest.Repo) {
				r.BlobRef("refs/stackit/metadata/a", meta(t, "c", nil))
				r.BlobRef("refs/stackit/metadata/b", meta(t, "a", nil))
				r.BlobRef("refs/stackit/metadata/c", meta(t, "b", nil))
			},
			branch:  "a",
			parent:  "main",
			warning: "cycle",
		},
		{
			name: "cycle through ancestry",
			setup: func(t *testing.T, r *gittest.Repo) {
				// a says its parent is c; c (no metadata) descends from a.
				r.BlobRef("refs/stackit/metadata/a", meta(t, "c", nil))
			},
			branch:  "a",
			parent:  "main",
			warning: "cycle",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := stackRepo(t)
			tt.setup(t, r)
			s, logs := build(t, r, view.Input{Trunk: "main"})
			wantParent(t, s, tt.branch, tt.parent, gen.BranchParentSourceAncestry)
			l := logs.String()
			if !containsAll(l, "level=WARN", "branch="+tt.branch, tt.warning) {
				t.Errorf("warning for %s with %q missing:\n%s", tt.branch, tt.warning, l)
			}
			wantEqual(t, "order", names(s.Branches()), []string{"main", "a", "b", "c"})
			for _, b := range s.Branches() {
				if b.Name != "main" && b.Parent == nil {
					t.Errorf("%s lost its parent", b.Name)
				}
			}
		})
	}
}

func TestMalformedStackitFallsBackToGraphite(t *testing.T) {
	r := stackRepo(t)
	r.BlobRef("refs/stackit/metadata/c", `not json`)
	r.BlobRef("refs/branch-metadata/c", meta(t, "a", nil))
	s, _ := build(t, r, view.Input{Trunk: "main"})
	wantParent(t, s, "c", "a", gen.BranchParentSourceGraphite)
}

func TestNeedsRestack(t *testing.T) {
	t.Run("parent moved", func(t *testing.T) {
		r := stackRepo(t)
		r.Git("checkout", "-q", "a")
		r.Commit("a2", nil)
		r.BlobRef("refs/stackit/metadata/b", meta(t, "a", nil))
		s, _ := build(t, r, view.Input{Trunk: "main"})
		if !mustBranch(t, s, "b").NeedsRestack {
			t.Error("b does not need a restack after a moved")
		}
		if mustBranch(t, s, "c").NeedsRestack || mustBranch(t, s, "a").NeedsRestack {
			t.Error("c or a needs a restack")
		}
		// b's own commits stay b1, b2 (the base is the merge base).
		wantEqual(t, "b commits", subjects(mustBranch(t, s, "b").Commits), []string{"b2", "b1"})
		base, _, ok := s.DiffRange("b")
		if !ok || base.String() != r.Rev("a~1") {
			t.Errorf("DiffRange(b) base = %s, want merge base %s", base, r.Rev("a~1"))
		}
	})
	t.Run("recorded revision differs", func(t *testing.T) {
		r := stackRepo(t)
		r.BlobRef("refs/stackit/metadata/b", meta(t, "a", map[string]any{"parentBranchRevision": r.Rev("main")}))
		r.BlobRef("refs/stackit/metadata/c", meta(t, "b", map[string]any{"parentBranchRevision": r.Rev("b")}))
		s, _ := build(t, r, view.Input{Trunk: "main"})
		if !mustBranch(t, s, "b").NeedsRestack {
			t.Error("b: recorded revision differs but no restack")
		}
		if mustBranch(t, s, "c").NeedsRestack {
			t.Error("c: recorded revision matches but restack")
		}
	})
}

func TestAheadBehind(t *testing.T) {
	r := stackRepo(t)
	// origin/a is one commit behind a; origin/b has one commit b lacks
	// and lacks b2.
	r.Git("update-ref", "refs/remotes/origin/a", r.Rev("main"))
	r.Git("checkout", "-q", "-b", "tmp", "b~1")
	r.Commit("remote only", nil)
	r.Git("update-ref", "refs/remotes/origin/b", "HEAD")
	r.Git("checkout", "-q", "c")
	r.Git("branch", "-D", "tmp")
	// c tracks upstream/c-remote through branch config.
	r.Git("update-ref", "refs/remotes/upstream/c-remote", r.Rev("c"))
	r.Git("config", "branch.c.remote", "upstream")
	r.Git("config", "branch.c.merge", "refs/heads/c-remote")
	// main tracks origin/main, which is ahead of it by one commit.
	r.Git("update-ref", "refs/remotes/origin/main", r.Rev("a"))
	s, _ := build(t, r, view.Input{Trunk: "main"})
	tests := []struct {
		name          string
		ahead, behind any
	}{
		{"main", 0, 1},
		{"a", 1, 0},
		{"b", 1, 1},
		{"c", 0, 0},
	}
	for _, tt := range tests {
		b := mustBranch(t, s, tt.name)
		if deref(b.Ahead) != tt.ahead || deref(b.Behind) != tt.behind {
			t.Errorf("%s: ahead %v behind %v, want %v %v", tt.name, deref(b.Ahead), deref(b.Behind), tt.ahead, tt.behind)
		}
	}
}

func TestRecentlyMergedAndCommitCap(t *testing.T) {
	r := gittest.New(t)
	for i := range 25 {
		r.Commit(fmt.Sprintf("m%02d", i), nil)
	}
	// A merge on trunk: its second parent's commits are not first-parent.
	r.Branch("side", "main~1")
	r.Commit("side commit", nil)
	r.Git("checkout", "-q", "main")
	r.Tick()
	r.Git("merge", "-q", "--no-ff", "-m", "merge side", "side")
	r.Git("branch", "-D", "side")
	r.Branch("long", "main")
	for i := range 55 {
		r.Commit(fmt.Sprintf("l%02d", i), nil)
	}
	s, _ := build(t, r, view.Input{Trunk: "main"})
	merged := subjects(s.View().RecentlyMerged)
	want := []string{"merge side"}
	for i := 24; len(want) < 20; i-- {
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	wantEqual(t, "recentlyMerged", merged, want)
	long := subjects(mustBranch(t, s, "long").Commits)
	if len(long) != 50 || long[0] != "l54" || long[49] != "l05" {
		t.Errorf("long commits: %d, first %v last %v", len(long), long[0], long[len(long)-1])
	}
}

func TestOrphanBranch(t *testing.T) {
	r := stackRepo(t)
	r.Git("checkout", "-q", "--orphan", "pages")
	r.Commit("pages root", map[string]string{"index.html": "x"})
	r.Branch("pages-child", "pages")
	r.Commit("pages child", nil)
	s, _ := build(t, r, view.Input{Trunk: "main"})
	wantParent(t, s, "pages", "<nil>", gen.BranchParentSourceNone)
	wantParent(t, s, "pages-child", "pages", gen.BranchParentSourceAncestry)
	wantEqual(t, "order", names(s.Branches()), []string{"main", "a", "b", "c", "pages", "pages-child"})
	p := mustBranch(t, s, "pages")
	if p.Depth != 0 || p.NeedsRestack {
		t.Errorf("pages = %+v", p)
	}
	wantEqual(t, "pages commits", subjects(p.Commits), []string{"pages root"})
	if _, _, ok := s.DiffRange("pages"); ok {
		t.Error("DiffRange(pages) ok")
	}
	if len(s.Stacks()) != 1 {
		t.Errorf("stacks = %d", len(s.Stacks()))
	}
}

func TestTrunkDetectionHook(t *testing.T) {
	r := stackRepo(t)
	s, _ := build(t, r, view.Input{DetectTrunk: view.DetectTrunk})
	if s.Repo().Trunk != "main" {
		t.Errorf("trunk = %q", s.Repo().Trunk)
	}
	s, _ = build(t, r, view.Input{DetectTrunk: func(view.Repo) string { return "b" }})
	if s.Repo().Trunk != "b" {
		t.Errorf("trunk from hook = %q", s.Repo().Trunk)
	}
	s, _ = build(t, r, view.Input{Trunk: "a", DetectTrunk: func(view.Repo) string { panic("called with a configured trunk") }})
	// main's tip is on a's first-parent history: trunk a is its parent.
	wantEqual(t, "order with trunk a", names(s.Branches()), []string{"a", "b", "c", "main"})
	wantParent(t, s, "main", "a", gen.BranchParentSourceAncestry)
	wantParent(t, s, "b", "a", gen.BranchParentSourceAncestry)
	if m := mustBranch(t, s, "main"); !m.NeedsRestack || len(m.Commits) != 0 {
		t.Errorf("main = %+v", m)
	}
}

func TestMissingTrunk(t *testing.T) {
	r := stackRepo(t)
	s, _ := build(t, r, view.Input{Trunk: "develop"})
	if s.Repo().Trunk != "develop" || len(s.Stacks()) != 0 || len(s.View().RecentlyMerged) != 0 {
		t.Errorf("repo %+v stacks %d", s.Repo(), len(s.Stacks()))
	}
	wantEqual(t, "order", names(s.Branches()), []string{"main", "a", "b", "c"})
}

func TestContentHashAndETag(t *testing.T) {
	r := stackRepo(t)
	r.BlobRef("refs/stackit/metadata/a", meta(t, "main", nil))
	s1, _ := build(t, r, view.Input{Trunk: "main"})
	s2, _ := build(t, r, view.Input{Trunk: "main"})
	if s1.ContentHash() != s2.ContentHash() {
		t.Fatal("two builds of the same repository differ")
	}
	v1 := s1.WithVersion(1, time.Unix(100, 0))
	v2 := s1.WithVersion(2, time.Unix(200, 0))
	if v1.ContentHash() != s1.ContentHash() || v1.ETag() == v2.ETag() {
		t.Errorf("etags %s %s", v1.ETag(), v2.ETag())
	}
	if v1.ETag() != `"1-`+s1.ContentHash()[:16]+`"` {
		t.Errorf("etag = %s", v1.ETag())
	}
	if v2.Version() != 2 || v2.Repo().ViewVersion == nil || *v2.Repo().ViewVersion != 2 || v2.View().Version != 2 || v2.View().Repo.ViewVersion == nil || *v2.View().Repo.ViewVersion != 2 ||
		!v2.View().BuiltAt.Equal(time.Unix(200, 0)) || v2.BuiltAt().Location() != time.UTC {
		t.Errorf("v2 = %+v", v2.View())
	}
	if s1.Version() != 0 || s1.Repo().ViewVersion != nil {
		t.Error("WithVersion mutated the original")
	}
	changes := map[string]func(){
		"commit":   func() { r.Commit("new", nil) },
		"metadata": func() { r.BlobRef("refs/stackit/metadata/b", meta(t, "main", nil)) },
		"HEAD":     func() { r.Git("checkout", "-q", "a") },
	}
	for _, what := range []string{"commit", "metadata", "HEAD"} {
		prev, _ := build(t, r, view.Input{Trunk: "main"})
		changes[what]()
		next, _ := build(t, r, view.Input{Trunk: "main"})
		if prev.ContentHash() == next.ContentHash() {
			t.Errorf("content hash unchanged after %s", what)
		}
	}
}

func TestDiff(t *testing.T) {
	r := gittest.New(t)
	r.Commit("init", map[string]string{"file.txt": "one\ntwo\n", "keep.txt": "same\n"})
	r.Branch("feat", "main")
	r.Commit("change", map[string]string{"file.txt": "one\nTWO\n", "new.txt": "new\n"})
	repo := openRepo(t, r.Dir)
	s, err := view.Build(context.Background(), repo, view.Input{RepoID: "x", Kind: gen.Local, Trunk: "main"})
	if err != nil {
		t.Fatal(err)
	}
	base, tip, ok := s.DiffRange("feat")
	if !ok {
		t.Fatal("no diff range")
	}
	patchBytes, err := view.Diff(context.Background(), repo, base, tip, view.DiffLimits{})
	if err != nil {
		t.Fatal(err)
	}
	patch := string(patchBytes)
	for _, want := range []string{
		"diff --git a/file.txt b/file.txt", "-two", "+TWO",
		"diff --git a/new.txt b/new.txt", "new file mode 100644", "+new",
	} {
		if !strings.Contains(patch, want) {
			t.Errorf("patch lacks %q:\n%s", want, patch)
		}
	}
	if strings.Contains(patch, "keep.txt") {
		t.Errorf("patch mentions unchanged file:\n%s", patch)
	}
	if _, err := view.Diff(context.Background(), repo, plumbing.NewHash("1111111111111111111111111111111111111111"), tip, view.DiffLimits{}); !errors.Is(err, plumbing.ErrObjectNotFound) {
		t.Errorf("Diff(missing base) = %v", err)
	}
}

func TestBuildHonoursCancellation(t *testing.T) {
	r := stackRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := view.Build(ctx, openRepo(t, r.Dir), view.Input{RepoID: "x", Trunk: "main"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Build(cancelled) = %v", err)
	}
}

func TestReturnedSlicesCannotClobberSnapshot(t *testing.T) {
	r := stackRepo(t)
	s, _ := build(t, r, view.Input{Trunk: "main"})
	st, _ := s.Stack("a")
	_ = append(st.Branches, gen.Branch{Name: "evil"})
	_ = append(s.Branches(), gen.Branch{Name: "evil"})
	_ = append(mustBranch(t, s, "a").Children, "evil")
	wantEqual(t, "branches", names(s.Branches()), []string{"main", "a", "b", "c"})
	wantEqual(t, "a children", mustBranch(t, s, "a").Children, []string{"b"})
}
