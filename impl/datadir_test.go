package impl_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl"
)

// TestDataDirNeverInsideTheServedRepository: start-up refuses a data dir
// inside any directory of the served repository (its work tree, .git, the
// main worktree and every linked worktree), symbolic links resolved on
// both sides, and creates nothing there; a data dir elsewhere, even behind
// a link, is accepted.
func TestDataDirNeverInsideTheServedRepository(t *testing.T) {
	r := stackRepo(t)
	base := t.TempDir()
	linked := filepath.Join(base, "linked")
	r.Git("worktree", "add", "-q", linked, "c")
	// A second linked worktree, recorded the way git 2.48+ does with
	// worktree.useRelativePaths: a gitdir relative to its admin directory.
	relLinked := filepath.Join(base, "rel-linked")
	r.Git("worktree", "add", "-q", relLinked, "a")
	admin := filepath.Join(r.Dir, ".git", "worktrees", "rel-linked")
	rel, err := filepath.Rel(admin, filepath.Join(relLinked, ".git"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(admin, "gitdir"), []byte(rel+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	links := t.TempDir()
	link := func(name, target string) string {
		p := filepath.Join(links, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	toGit := link("to-git", filepath.Join(r.Dir, ".git"))
	toRepo := link("to-repo", r.Dir)
	dangling := link("dangling", filepath.Join(r.Dir, ".git", "not-yet"))
	toElsewhere := link("elsewhere", t.TempDir())
	linkToLinked := link("to-linked", linked)

	cases := []struct {
		name    string
		serve   string // --cwd
		dataDir string
		refused bool
	}{
		{"inside the work tree", r.Dir, filepath.Join(r.Dir, ".stackd"), true},
		{"the work tree itself", r.Dir, r.Dir, true},
		{"inside .git", r.Dir, filepath.Join(r.Dir, ".git", "stackd"), true},
		{"inside a linked worktree", r.Dir, filepath.Join(linked, "data"), true},
		{"inside a linked worktree recorded with a relative path", r.Dir, filepath.Join(relLinked, "data"), true},
		{"inside the main worktree when serving a linked one", linked, filepath.Join(r.Dir, "data"), true},
		{"inside .git when serving a linked worktree", linked, filepath.Join(r.Dir, ".git", "x"), true},
		{"inside another linked worktree when serving a linked one", linked, filepath.Join(relLinked, "x", "y"), true},
		{"a symlink pointing into .git", r.Dir, toGit, true},
		{"below a symlink pointing into .git", r.Dir, filepath.Join(toGit, "stackd"), true},
		{"below a symlink to the work tree", r.Dir, filepath.Join(toRepo, "data"), true},
		{"a dangling symlink into .git", r.Dir, dangling, true},
		{"served through a symlink, data dir given by its real path", linkToLinked, filepath.Join(linked, "data"), true},
		{"elsewhere", r.Dir, filepath.Join(t.TempDir(), "data"), false},
		{"a symlink elsewhere", r.Dir, filepath.Join(toElsewhere, "data"), false},
		{"next to the repository", r.Dir, r.Dir + "-data", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := treeHash(t, r.Dir)
			beforeLinked := treeHash(t, linked)
			cfg := baseConfig(t, tc.serve)
			cfg.DataDir = tc.dataDir
			app, err := impl.New(cfg, slogDiscard(), impl.Options{})
			if !tc.refused {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				app.Close()
				return
			}
			if err == nil {
				app.Close()
				t.Fatal("accepted")
			}
			if !errors.Is(err, impl.ErrPosture) || !strings.Contains(err.Error(), "inside the served repository") {
				t.Fatalf("err = %v", err)
			}
			if d := diffTrees(before, treeHash(t, r.Dir)); len(d) > 0 {
				t.Fatalf("the repository changed: %v", d)
			}
			if d := diffTrees(beforeLinked, treeHash(t, linked)); len(d) > 0 {
				t.Fatalf("the linked worktree changed: %v", d)
			}
			if _, err := os.Stat(filepath.Join(r.Dir, ".git", "not-yet")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the dangling link's target was created: %v", err)
			}
		})
	}
}
