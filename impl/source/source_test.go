package source_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/mirror/mirrortest"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/view"
)

func TestLocalReportsWhatChangedSinceTheLastRead(t *testing.T) {
	r := gittest.New(t)
	r.Commit("init", map[string]string{"a": "a"})
	r.Branch("feat", "main")
	r.Commit("feat", map[string]string{"b": "b"})
	wt, err := gitrepo.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	l := source.NewLocal(wt, "")
	if l.Kind() != gen.Local || l.Mode() != source.ModeReread {
		t.Fatalf("kind %s mode %s", l.Kind(), l.Mode())
	}
	repo, fresh, err := l.Load(context.Background())
	if err != nil || !fresh || repo.Refs().Len() == 0 {
		t.Fatalf("Load = %v %v %v", repo, fresh, err)
	}
	r.BlobRef("refs/stackit/metadata/feat", `{"parentBranchName":"main"}`)
	r.Git("update-ref", "refs/remotes/origin/feat", "feat") // not reported
	r.Git("branch", "-D", "main")
	u, err := l.Refresh(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []refs.Kind{refs.Deleted, refs.Created}
	if len(u.Changes) != 2 || u.Changes[0].Ref != "refs/heads/main" || u.Changes[1].Ref != "refs/stackit/metadata/feat" ||
		u.Changes[0].Kind != want[0] || u.Changes[1].Kind != want[1] || !u.Changed {
		t.Fatalf("changes = %+v", u.Changes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Refresh(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled refresh: %v", err)
	}
}

func TestMirrorLoadsOnlyWhatIsOnDisk(t *testing.T) {
	base := t.TempDir()
	up := gittest.At(t, filepath.Join(base, "up.git"))
	if err := gittest.BuildStacks(up.Dir, gittest.Shape{Branches: 6, MetadataEvery: 1, Bare: true}); err != nil {
		t.Fatal(err)
	}
	url := "git://" + mirrortest.StartDaemon(t, base) + "/up.git"
	root, err := mirror.NewRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := source.NewMirror(root, "up", mirror.Config{AllowPrivate: true, URL: url})
	if _, _, err := m.Load(context.Background()); !errors.Is(err, source.ErrNotCloned) {
		t.Fatalf("Load before a clone = %v", err)
	}
	cache := view.NewCache()
	u, err := m.Refresh(context.Background(), cache)
	if err != nil || !u.Changed || len(u.Changes) != 13 { // main, 6 branches, 6 metadata refs
		t.Fatalf("first refresh (clone) = %d changes, %v", len(u.Changes), err)
	}
	// The clone is pending until committed: nothing is on disk yet.
	if _, _, err := source.NewMirror(root, "up", mirror.Config{AllowPrivate: true, URL: url}).Load(context.Background()); !errors.Is(err, source.ErrNotCloned) {
		t.Fatalf("Load of a pending clone = %v", err)
	}
	if err := u.Finish(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	// The clone handed the branch tips to the cache: a build reads none.
	commits := cache.Commits(u.Repo)
	for _, r := range u.Repo.Refs().Prefix("refs/heads/") {
		if _, _, ok, err := commits.CommitInfo(r.Hash); !ok || err != nil {
			t.Fatalf("%s: %v %v", r.Name, ok, err)
		}
	}
	again, err := m.Refresh(context.Background(), cache)
	if err != nil || again.Changed || len(again.Changes) != 0 {
		t.Fatalf("no-op refresh = %+v %v", again.Changes, err)
	}
	// A second source over the same root loads the mirror without network.
	other := source.NewMirror(root, "up", mirror.Config{AllowPrivate: true, URL: "git://127.0.0.1:1/unreachable.git"})
	repo, fresh, err := other.Load(context.Background())
	if err != nil || fresh || !refs.Equal(repo.Refs(), u.Repo.Refs()) {
		t.Fatalf("Load = %v %v", fresh, err)
	}
}
