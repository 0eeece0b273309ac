package watch

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// TestWatchLinkedWorktree watches a linked worktree (its HEAD in
// .git/worktrees/<name>, its refs in the common dir) and expects one
// trigger per change: a commit, a new branch with a slash (a new
// directory), a checkout, and packed refs.
func TestWatchLinkedWorktree(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	wtDir := filepath.Join(t.TempDir(), "linked")
	r.Git("worktree", "add", "-q", "-b", "feature", wtDir)
	linked := r.Sibling(wtDir)
	wt, err := gitrepo.Discover(wtDir)
	if err != nil {
		t.Fatal(err)
	}
	if wt.GitDir() == wt.CommonDir() {
		t.Fatal("a linked worktree should have its own git dir")
	}
	fired := make(chan struct{}, 16)
	w, err := New(wt.GitDir(), wt.CommonDir(), 20*time.Millisecond, func() { fired <- struct{}{} }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	wait := func(what string) {
		t.Helper()
		select {
		case <-fired:
		case <-time.After(30 * time.Second): // failure guard
			t.Fatalf("no trigger after %s", what)
		}
	}
	for _, step := range []struct {
		what string
		do   func()
	}{
		{"a commit in the linked worktree", func() { linked.Commit("work", map[string]string{"f": "1\n"}) }},
		{"a branch with a slash", func() { r.Git("branch", "team/new", "main") }},
		{"a commit on the slashed branch", func() { r.Git("update-ref", "refs/heads/team/new", linked.Rev("feature")) }},
		{"a checkout in the linked worktree", func() { linked.Git("checkout", "-q", "team/new") }},
		{"stackit metadata", func() { r.BlobRef("refs/stackit/metadata/team/new", `{"parentBranchName":"main"}`) }},
		{"packing refs", func() { r.Git("pack-refs", "--all") }},
	} {
		step.do()
		wait(step.what)
		// Drain a second trigger of the same burst, if the debounce split it.
		select {
		case <-fired:
		default:
		}
	}
}

func TestRelevant(t *testing.T) {
	w := &Watcher{gitDir: "/r/.git/worktrees/x", commonDir: "/r/.git"}
	cases := map[string]bool{
		"/r/.git/worktrees/x/HEAD":        true,
		"/r/.git/worktrees/x/index":       false,
		"/r/.git/HEAD":                    false, // the main worktree's HEAD is not ours
		"/r/.git/packed-refs":             true,
		"/r/.git/packed-refs.lock":        false,
		"/r/.git/refs/heads/a/b":          true,
		"/r/.git/refs/heads/a.lock":       false,
		"/r/.git/refs/stackit/metadata/a": true,
		"/r/.git/refs/branch-metadata/a":  true,
		"/r/.git/refs/remotes/origin/a":   false,
		"/r/.git/refs/tags/v1":            false,
		"/r/.git/index":                   false,
		"/r/.git/FETCH_HEAD":              false,
	}
	for p, want := range cases {
		if got := w.relevant(p); got != want {
			t.Errorf("relevant(%s) = %v, want %v", p, got, want)
		}
	}
}
