package refresh

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/mirror/mirrortest"
	"github.com/stackd/stackd/impl/registry"
)

// TestFailedBuildIsRetried: when the view build of a mirror fails after
// its fetch, the fetch is thrown away (the mirror's refs and packs stay as
// they were) and the next run fetches the same change again and builds
// its view: the view never stays behind the mirror.
func TestFailedBuildIsRetried(t *testing.T) {
	w, url, root := servedUpstream(t)

	var fail atomic.Bool
	broken := errors.New("injected build failure")
	m := NewManager(Options{BeforeBuild: func(context.Context, string) error {
		if fail.Load() {
			return broken
		}
		return nil
	}})
	t.Cleanup(m.Close)
	rf := m.Add(registry.NewMirror(root, registry.MirrorSpec{ID: "m", Config: mirror.Config{URL: url, AllowPrivate: true}}))
	ctx := context.Background()
	if res, err := rf.Sync(ctx, Onboard); err != nil || res.Err != nil {
		t.Fatalf("first build: %v %v", err, res.Err)
	}
	v1 := rf.Repo().Snapshot().Version()

	w.Git("push", "-q", "origin", "HEAD:refs/heads/feature")
	fail.Store(true)
	res, err := rf.Sync(ctx, Manual)
	if err != nil || !errors.Is(res.Err, broken) {
		t.Fatalf("sync with a failing build: %+v %v", res, err)
	}
	if strings.Contains(string(rf.Repo().Snapshot().ViewJSON()), `"feature"`) || rf.Repo().Snapshot().Version() != v1 {
		t.Fatal("a failed build published a view")
	}
	if packed, err := os.ReadFile(filepath.Join(root.Dir("m"), "packed-refs")); err != nil || strings.Contains(string(packed), "refs/heads/feature") {
		t.Fatalf("the failed run moved the mirror's refs: %v\n%s", err, packed)
	}

	fail.Store(false)
	res, err = rf.Sync(ctx, Manual)
	if err != nil || res.Err != nil {
		t.Fatalf("sync after the failure: %+v %v", res, err)
	}
	if len(res.Changes) != 1 || res.Changes[0].Ref != "refs/heads/feature" {
		t.Fatalf("the retry fetched %+v, want the new branch again", res.Changes)
	}
	snap := rf.Repo().Snapshot()
	if _, ok := snap.Branch("feature"); !ok || snap.Version() <= v1 || res.ViewVersion != snap.Version() {
		t.Fatalf("the view after the retry: version %d (was %d), result %+v", snap.Version(), v1, res)
	}

	// Built and published: a run that finds nothing builds nothing.
	fail.Store(true)
	if res, err := rf.Sync(ctx, Manual); err != nil || res.Err != nil || res.ViewVersion != snap.Version() {
		t.Fatalf("a run without changes after the retry: %+v %v", res, err)
	}
}

// servedUpstream makes a work repository with one commit whose origin is a
// bare clone served by git daemon at url (push to it with w.Git("push",
// ...)), and an empty mirror root for the mirrors of the test.
func servedUpstream(t *testing.T) (w *gittest.Repo, url string, root *mirror.Root) {
	t.Helper()
	w = gittest.New(t)
	w.Commit("initial", map[string]string{"README": "x\n"})
	base := filepath.Join(t.TempDir(), "served")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(base, "up.git")
	w.Run(base, "clone", "-q", "--bare", w.Dir, bare)
	w.Git("remote", "add", "origin", bare)
	url = "git://" + mirrortest.StartDaemon(t, base) + "/up.git"
	root, err := mirror.NewRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return w, url, root
}
