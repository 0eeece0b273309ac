package refresh

import (
	"bytes"
	"context"
	"testing"

	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/registry"
)

// TestIdleRepositoryReleasesItsCaches: a repository's view keeps its
// serialized bytes while it changes; once two runs in a row built nothing
// (a whole interval idle) they are released and made again, equal, on the
// next request; a run that builds starts the count over.
func TestIdleRepositoryReleasesItsCaches(t *testing.T) {
	w, url, root := servedUpstream(t)
	m := NewManager(Options{})
	t.Cleanup(m.Close)
	rf := m.Add(registry.NewMirror(root, registry.MirrorSpec{ID: "m", Config: mirror.Config{URL: url, AllowPrivate: true}}))
	ctx := context.Background()
	syncOnce := func(tr Trigger) {
		t.Helper()
		if res, err := rf.Sync(ctx, tr); err != nil || res.Err != nil {
			t.Fatalf("%v sync: %v %v", tr, err, res.Err)
		}
	}
	// kept reports whether the view's bytes are still those of js.
	kept := func(js []byte) bool {
		t.Helper()
		now := rf.Repo().Snapshot().ViewJSON()
		if !bytes.Equal(now, js) {
			t.Fatalf("the view's bytes changed:\n got %s\nwant %s", now, js)
		}
		return &now[0] == &js[0]
	}

	syncOnce(Onboard)
	js := rf.Repo().Snapshot().ViewJSON()
	syncOnce(Manual) // built nothing: one quiet run
	if !kept(js) {
		t.Fatal("one run without a build released the view's bytes")
	}
	syncOnce(Manual) // two: idle
	if kept(js) {
		t.Fatal("an idle repository kept its view's bytes")
	}

	w.Git("push", "-q", "origin", "HEAD:refs/heads/feature")
	syncOnce(Manual) // builds: the count starts over
	js = rf.Repo().Snapshot().ViewJSON()
	if !bytes.Contains(js, []byte(`"feature"`)) {
		t.Fatalf("the new branch is not in the view: %s", js)
	}
	syncOnce(Manual)
	if !kept(js) {
		t.Fatal("one run without a build after a build released the view's bytes")
	}
}
