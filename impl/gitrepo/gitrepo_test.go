package gitrepo_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/view"
)

// branchNames lists refs/heads/* of a Read, sorted.
func branchNames(t *testing.T, repo *gitrepo.Repo) []string {
	t.Helper()
	var names []string
	for _, r := range repo.Refs().Prefix("refs/heads/") {
		names = append(names, strings.TrimPrefix(r.Name, "refs/heads/"))
	}
	return names
}

// basicRepo has main (2 commits) and feature (1 more) with origin set.
func basicRepo(t *testing.T) *gittest.Repo {
	r := gittest.New(t)
	r.Commit("first", map[string]string{"a.txt": "a\n"})
	r.Commit("second", map[string]string{"b.txt": "b\n"})
	r.Branch("feature", "main")
	r.Commit("feature work", map[string]string{"a.txt": "a changed\n"})
	r.Git("checkout", "-q", "main")
	return r
}

// partialClone makes dst a blob-less partial clone of src. Depending on
// the git version, clone records the promisor remote only as
// remote.origin.promisor; the extension newer versions (and older ones)
// write is set explicitly so the test always covers it.
func partialClone(t *testing.T, src *gittest.Repo, dst string) {
	t.Helper()
	src.Git("config", "uploadpack.allowFilter", "true")
	src.Run(src.Dir, "-c", "protocol.file.allow=always", "clone", "-q", "--no-checkout",
		"--filter=blob:none", "file://"+src.Dir, dst)
	c := src.Sibling(dst)
	c.Git("config", "core.repositoryformatversion", "1")
	c.Git("config", "extensions.partialClone", "origin")
	if got := c.Git("config", "remote.origin.promisor"); got != "true" {
		t.Fatalf("remote.origin.promisor = %q; not a partial clone", got)
	}
}

func TestOpenCheckoutKinds(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the directory to open and the expected HEAD branch.
		setup    func(t *testing.T) (dir, head string)
		branches []string
		bare     bool
		linked   bool
	}{
		{
			name: "normal",
			setup: func(t *testing.T) (string, string) {
				return basicRepo(t).Dir, "main"
			},
			branches: []string{"feature", "main"},
		},
		{
			name: "packed refs",
			setup: func(t *testing.T) (string, string) {
				r := basicRepo(t)
				r.Git("pack-refs", "--all")
				if _, err := os.Stat(filepath.Join(r.Dir, ".git", "refs", "heads", "feature")); !os.IsNotExist(err) {
					t.Fatalf("feature still loose: %v", err)
				}
				return r.Dir, "main"
			},
			branches: []string{"feature", "main"},
		},
		{
			name: "linked worktree",
			setup: func(t *testing.T) (string, string) {
				r := basicRepo(t)
				wt := filepath.Join(t.TempDir(), "wt")
				r.Git("worktree", "add", "-q", "-b", "wtbranch", wt, "feature")
				return wt, "wtbranch"
			},
			branches: []string{"feature", "main", "wtbranch"},
			linked:   true,
		},
		{
			name: "partial clone",
			setup: func(t *testing.T) (string, string) {
				src := basicRepo(t)
				dst := filepath.Join(t.TempDir(), "partial")
				partialClone(t, src, dst)
				return dst, "main"
			},
			branches: []string{"main"},
		},
		{
			name: "worktreeConfig extension",
			setup: func(t *testing.T) (string, string) {
				r := basicRepo(t)
				r.Git("config", "core.repositoryformatversion", "1")
				r.Git("config", "extensions.worktreeConfig", "true")
				r.Git("sparse-checkout", "init", "--cone")
				return r.Dir, "main"
			},
			branches: []string{"feature", "main"},
		},
		{
			name: "bare",
			setup: func(t *testing.T) (string, string) {
				src := basicRepo(t)
				dst := filepath.Join(t.TempDir(), "bare.git")
				src.Run(src.Dir, "clone", "-q", "--mirror", src.Dir, dst)
				return dst, "main"
			},
			branches: []string{"feature", "main"},
			bare:     true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, head := tt.setup(t)
			w, err := gitrepo.Open(dir)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if w.IsBare() != tt.bare {
				t.Errorf("IsBare = %v, want %v", w.IsBare(), tt.bare)
			}
			if (w.RefDirs().Head != w.RefDirs().Common) != tt.linked {
				t.Errorf("GitDir %q CommonDir %q, linked want %v", w.RefDirs().Head, w.RefDirs().Common, tt.linked)
			}
			repo, err := w.Read()
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if got := branchNames(t, repo); !slices.Equal(got, tt.branches) {
				t.Errorf("branches = %v, want %v", got, tt.branches)
			}
			target, _, ok := repo.Refs().Head()
			if !ok || target != "refs/heads/"+head {
				t.Errorf("HEAD = %s, want %s", target, head)
			}
			h, ok := repo.Refs().Resolve(refs.HEAD)
			if !ok {
				t.Fatal("HEAD does not resolve")
			}
			if _, err := repo.Object(plumbing.CommitObject, h); err != nil {
				t.Errorf("head commit: %v", err)
			}
		})
	}
}

func TestLinkedWorktreeLayout(t *testing.T) {
	r := basicRepo(t)
	wt := filepath.Join(t.TempDir(), "wt")
	r.Git("worktree", "add", "-q", "-b", "wtbranch", wt, "feature")
	w, err := gitrepo.Open(wt)
	if err != nil {
		t.Fatal(err)
	}
	mainGit := filepath.Join(r.Dir, ".git")
	if w.RefDirs().Common != mainGit {
		t.Errorf("CommonDir = %q, want %q", w.RefDirs().Common, mainGit)
	}
	if w.RefDirs().Head != filepath.Join(mainGit, "worktrees", "wt") {
		t.Errorf("GitDir = %q", w.RefDirs().Head)
	}
	if w.WorkDir() != wt {
		t.Errorf("WorkDir = %q, want %q", w.WorkDir(), wt)
	}
	// A branch created in the main checkout is visible from the worktree.
	r.Git("branch", "late", "main")
	repo, err := w.Read()
	if err != nil {
		t.Fatal(err)
	}
	if got := branchNames(t, repo); !slices.Contains(got, "late") {
		t.Errorf("branches = %v, missing late", got)
	}
}

func TestPartialCloneMissingBlob(t *testing.T) {
	src := basicRepo(t)
	dst := filepath.Join(t.TempDir(), "partial")
	partialClone(t, src, dst)
	w, err := gitrepo.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := w.Read()
	if err != nil {
		t.Fatal(err)
	}
	tip, parent := plumbing.NewHash(src.Rev("main")), plumbing.NewHash(src.Rev("main~1"))
	if _, err := repo.Object(plumbing.CommitObject, tip); err != nil {
		t.Fatalf("commit objects must be present: %v", err)
	}
	if _, err := view.Diff(context.Background(), repo, parent, tip, view.DiffLimits{}); !errors.Is(err, plumbing.ErrObjectNotFound) {
		t.Fatalf("diff over missing blobs = %v, want ErrObjectNotFound", err)
	}
}

func TestDiscover(t *testing.T) {
	r := basicRepo(t)
	sub := filepath.Join(r.Dir, "deep", "er")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := gitrepo.Discover(sub)
	if err != nil {
		t.Fatal(err)
	}
	if w.WorkDir() != r.Dir {
		t.Errorf("WorkDir = %q, want %q", w.WorkDir(), r.Dir)
	}
	if _, err := gitrepo.Open(sub); !errors.Is(err, gitrepo.ErrNotRepository) {
		t.Errorf("Open(subdir) = %v, want ErrNotRepository", err)
	}
	if _, err := gitrepo.Discover(t.TempDir()); !errors.Is(err, gitrepo.ErrNotRepository) {
		t.Errorf("Discover(empty dir) = %v, want ErrNotRepository", err)
	}
}

func TestRemoteURL(t *testing.T) {
	tests := []struct {
		name    string
		remotes [][2]string
		want    string
	}{
		{"none", nil, ""},
		{"origin", [][2]string{{"upstream", "https://u.example/x"}, {"origin", "https://o.example/x"}}, "https://o.example/x"},
		{"only remote", [][2]string{{"upstream", "https://user:pw@u.example/x"}}, "https://user:pw@u.example/x"},
		{"two without origin", [][2]string{{"a", "https://a.example"}, {"b", "https://b.example"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := gittest.New(t)
			for _, rm := range tt.remotes {
				r.Git("remote", "add", rm[0], rm[1])
			}
			w, err := gitrepo.Open(r.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.RemoteURL(); got != tt.want {
				t.Errorf("RemoteURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEmptyRepositoryOpens(t *testing.T) {
	r := gittest.New(t)
	w, err := gitrepo.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := w.Read()
	if err != nil {
		t.Fatalf("Read empty repo: %v", err)
	}
	if got := branchNames(t, repo); len(got) != 0 {
		t.Errorf("branches = %v", got)
	}
}

func TestDetectTrunk(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, r *gittest.Repo) string // returns dir to open
		global string                                     // init.defaultBranch in the user's global config
		want   string
	}{
		{
			name: "origin HEAD",
			setup: func(t *testing.T, r *gittest.Repo) string {
				r.Branch("develop", "main")
				r.Git("update-ref", "refs/remotes/origin/develop", "develop")
				r.Git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/develop")
				return r.Dir
			},
			want: "develop",
		},
		{
			name: "origin HEAD to missing local branch falls through",
			setup: func(t *testing.T, r *gittest.Repo) string {
				r.Git("update-ref", "refs/remotes/origin/gone", "main")
				r.Git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/gone")
				return r.Dir
			},
			want: "main",
		},
		{
			name: "bare HEAD",
			setup: func(t *testing.T, r *gittest.Repo) string {
				r.Branch("trunk", "main")
				dst := filepath.Join(t.TempDir(), "m.git")
				r.Git("clone", "-q", "--mirror", r.Dir, dst)
				return dst
			},
			want: "trunk",
		},
		{
			name: "repo init.defaultBranch",
			setup: func(t *testing.T, r *gittest.Repo) string {
				r.Branch("dev", "main")
				r.Git("checkout", "-q", "main")
				r.Git("config", "init.defaultBranch", "dev")
				return r.Dir
			},
			want: "dev",
		},
		{
			name: "global init.defaultBranch",
			setup: func(t *testing.T, r *gittest.Repo) string {
				r.Branch("glob", "main")
				r.Git("checkout", "-q", "main")
				return r.Dir
			},
			global: "glob",
			want:   "glob",
		},
		{
			name: "configured default branch missing",
			setup: func(t *testing.T, r *gittest.Repo) string {
				r.Git("config", "init.defaultBranch", "nope")
				return r.Dir
			},
			want: "main",
		},
		{
			name: "master",
			setup: func(t *testing.T, r *gittest.Repo) string {
				r.Git("branch", "-m", "main", "master")
				return r.Dir
			},
			want: "master",
		},
		{
			name: "none",
			setup: func(t *testing.T, r *gittest.Repo) string {
				r.Git("branch", "-m", "main", "other")
				return r.Dir
			},
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			t.Setenv("HOME", home)
			t.Setenv("XDG_CONFIG_HOME", "")
			if tt.global != "" {
				if err := os.WriteFile(filepath.Join(home, ".gitconfig"),
					[]byte("[init]\n\tdefaultBranch = "+tt.global+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := gittest.New(t)
			r.Commit("first", map[string]string{"a": "a"})
			dir := tt.setup(t, r)
			w, err := gitrepo.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			repo, err := w.Read()
			if err != nil {
				t.Fatal(err)
			}
			if got := view.DetectTrunk(repo); got != tt.want {
				t.Errorf("DetectTrunk = %q, want %q", got, tt.want)
			}
		})
	}
}
