package source_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/mirror/mirrortest"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/view"
)

// TestFollowerAfterCollection: a replica that follows a shared mirror
// (Reread) while another one syncs it, and falls two Syncs behind while
// the writer's collections delete the commits of its old tips, still
// rereads, classifies the changes (an unreadable old tip is forced) and
// builds its next view from its previous one, equal to a fresh build.
func TestFollowerAfterCollection(t *testing.T) {
	base := t.TempDir()
	up := gittest.At(t, filepath.Join(base, "up.git"))
	if err := gittest.BuildStacks(up.Dir, gittest.Shape{Branches: 6, MetadataEvery: 1, Bare: true}); err != nil {
		t.Fatal(err)
	}
	url := "git://" + mirrortest.StartDaemon(t, base) + "/up.git"
	data := t.TempDir()
	roots := make([]*mirror.Root, 2)
	for i := range roots {
		r, err := mirror.NewRoot(data)
		if err != nil {
			t.Fatal(err)
		}
		roots[i] = r
	}
	cfg := mirror.Config{AllowPrivate: true, URL: url}
	writer := source.NewSharedMirror(roots[0], "up", cfg)
	follower := source.NewSharedMirror(roots[1], "up", cfg)
	t.Cleanup(func() { _ = writer.Close(); _ = follower.Close() })
	ctx := context.Background()
	if u, err := writer.Refresh(ctx, view.NewCache()); err != nil || u.Finish(ctx, true) != nil {
		t.Fatal(err)
	}
	repo0, _, err := follower.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := view.Input{RepoID: "up", Kind: gen.Mirror}
	b := view.NewBuilder(in, nil)
	snap0, _, err := b.Build(ctx, repo0, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Two restacks: every branch gets a new commit (new tree) on its old
	// parent; the writer's Syncs collect (its record is made to look
	// small, so that the growth threshold is passed).
	dir := writer.Dir()
	for round := 1; round <= 2; round++ {
		for _, r := range repo0.Refs().Prefix("refs/heads/") {
			if r.Name == "refs/heads/main" {
				continue
			}
			tip := up.Git("rev-parse", r.Name)
			blob, err := up.RunStdin(up.Dir, fmt.Sprintf("round %d of %s\n", round, r.Name), "hash-object", "-w", "--stdin")
			if err != nil {
				t.Fatal(err)
			}
			tree, err := up.RunStdin(up.Dir, up.Git("ls-tree", tip)+fmt.Sprintf("\n100644 blob %s\tround-%d.txt\n", blob, round), "mktree")
			if err != nil {
				t.Fatal(err)
			}
			up.Git("update-ref", r.Name, up.Git("commit-tree", tree, "-p", tip+"^", "-m", "restacked"))
		}
		if err := os.WriteFile(filepath.Join(dir, "stackd-gc.json"), []byte(`{"format":1,"pack_bytes":1}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if u, err := writer.Refresh(ctx, view.NewCache()); err != nil || !u.Changed || u.Finish(ctx, true) != nil {
			t.Fatalf("writer refresh: %+v, %v", u, err)
		}
	}
	gone := 0
	for _, r := range repo0.Refs().Prefix("refs/heads/") {
		if exec.Command("git", "-C", dir, "cat-file", "-e", r.Hash.String()).Run() != nil {
			gone++
		}
	}
	if gone == 0 {
		t.Fatal("no old tip was collected")
	}

	u, err := follower.Reread(ctx)
	if err != nil || !u.Changed {
		t.Fatalf("Reread = %+v, %v", u, err)
	}
	changes := refs.Diff(repo0.Refs(), u.Repo.Refs(), mirror.InNamespaces)
	if err := refs.Classify(ctx, changes, b.Cache().Commits(u.Repo), 0); err != nil {
		t.Fatal(err)
	}
	forced := 0
	for _, c := range changes {
		if c.Kind == refs.Forced {
			forced++
		}
	}
	if forced < gone {
		t.Fatalf("%d forced changes, %d old tips gone: %+v", forced, gone, changes)
	}
	snap, _, err := b.Build(ctx, u.Repo, snap0)
	if err != nil {
		t.Fatalf("build from the previous view: %v", err)
	}
	fresh, err := view.Build(ctx, u.Repo, in)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	if got, want := string(snap.WithVersion(1, at).ViewJSON()), string(fresh.WithVersion(1, at).ViewJSON()); got != want || !strings.Contains(got, "restacked") {
		t.Fatalf("incremental build:\n%s\nfresh build:\n%s", got, want)
	}
}
