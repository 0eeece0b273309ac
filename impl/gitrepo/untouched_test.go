package gitrepo_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/view"
)

// TestServingWritesNothing hashes every file under the checkout (and, for
// a linked worktree, the main repository), including .git, by mode and
// content before and after Read + view.Build + a diff of every branch, and
// requires them to be byte-identical.
func TestServingWritesNothing(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the dir to open and the roots to snapshot.
		setup       func(t *testing.T) (string, []string)
		diffMissing bool // a partial clone lacks blobs: diffs must fail
	}{
		{
			name: "normal with loose and packed refs and metadata",
			setup: func(t *testing.T) (string, []string) {
				r := basicRepo(t)
				r.BlobRef("refs/stackit/metadata/feature", `{"parentBranchName":"main"}`)
				r.Git("pack-refs", "--all")
				r.Branch("loose", "feature")
				r.Commit("loose work", map[string]string{"c.txt": "c\n"})
				return r.Dir, []string{r.Dir}
			},
		},
		{
			name: "linked worktree",
			setup: func(t *testing.T) (string, []string) {
				r := basicRepo(t)
				wt := filepath.Join(t.TempDir(), "wt")
				r.Git("worktree", "add", "-q", "-b", "wtbranch", wt, "feature")
				return wt, []string{wt, r.Dir}
			},
		},
		{
			name: "worktreeConfig sparse checkout",
			setup: func(t *testing.T) (string, []string) {
				r := basicRepo(t)
				r.Git("config", "core.repositoryformatversion", "1")
				r.Git("config", "extensions.worktreeConfig", "true")
				r.Git("sparse-checkout", "init", "--cone")
				return r.Dir, []string{r.Dir}
			},
		},
		{
			name: "partial clone",
			setup: func(t *testing.T) (string, []string) {
				src := basicRepo(t)
				dst := filepath.Join(t.TempDir(), "partial")
				partialClone(t, src, dst)
				c := src.Sibling(dst)
				c.Git("branch", "feature", "origin/feature")
				return dst, []string{dst}
			},
			diffMissing: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, roots := tt.setup(t)
			before := make([]map[string]string, len(roots))
			for i, root := range roots {
				before[i] = snapshotTree(t, root)
			}
			w, err := gitrepo.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			repo, err := w.Read()
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			s, err := view.Build(ctx, repo, view.Input{RepoID: "local", Kind: gen.Local})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Branches()) < 2 {
				t.Fatalf("branches = %d", len(s.Branches()))
			}
			diffs := 0
			for _, b := range s.Branches() {
				base, tip, ok := s.DiffRange(b.Name)
				if !ok {
					continue
				}
				diffs++
				_, err := view.Diff(ctx, repo, base, tip, view.DiffLimits{})
				if tt.diffMissing != (err != nil) {
					t.Errorf("Diff(%s) err = %v, want error: %v", b.Name, err, tt.diffMissing)
				}
			}
			if diffs == 0 {
				t.Fatal("no branch had a diff range")
			}
			for i, root := range roots {
				assertSameTree(t, before[i], snapshotTree(t, root))
			}
		})
	}
}
