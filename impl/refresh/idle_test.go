package refresh

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/source"
)

// TestIdleRepositoryReleasesItsCaches: a just onboarded mirror's view is
// hollow (the same view bytes and ETag, no records) and its builder keeps
// no decoded commits; a request for its records (Full) builds them again
// at the same version, and so does a change; the view keeps its records
// while it is used, until two runs in a row built nothing (a whole
// interval idle).
func TestIdleRepositoryReleasesItsCaches(t *testing.T) {
	w, url, root := servedUpstream(t)
	w.Git("push", "-q", "origin", "HEAD:refs/heads/side")
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
	// same fails unless the view's bytes and ETag are still those of js
	// and etag, and reports whether the snapshot is hollow.
	same := func(js []byte, etag string) bool {
		t.Helper()
		s := rf.Repo().Snapshot()
		if now := s.ViewJSON(); !bytes.Equal(now, js) || s.ETag() != etag {
			t.Fatalf("the view changed:\n got %s %s\nwant %s %s", s.ETag(), now, etag, js)
		}
		gz := s.ViewGzip()
		if len(gz) == 0 {
			t.Fatal("no gzip")
		}
		return s.Hollow()
	}

	syncOnce(Onboard)
	js, etag := rf.Repo().Snapshot().ViewJSON(), rf.Repo().Snapshot().ETag()
	if !same(js, etag) {
		t.Fatal("a just onboarded mirror kept its view's records")
	}
	if n := rf.builder.Cache().Len(); n != 0 {
		t.Fatalf("a hollow mirror's builder kept %d decoded commits", n)
	}

	full, err := rf.Repo().Full(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if full.Hollow() || full.ETag() != etag || !bytes.Equal(full.ViewJSON(), js) || rf.Repo().Snapshot() != full {
		t.Fatalf("Full: hollow %v, etag %s (want %s), current %v", full.Hollow(), full.ETag(), etag, rf.Repo().Snapshot() == full)
	}
	if _, ok := full.Branch("side"); !ok {
		t.Fatal("the full snapshot lost a branch")
	}
	syncOnce(Manual) // Full counts as use: one quiet run again
	if same(js, etag) {
		t.Fatal("a view whose records were just asked for went hollow after one quiet run")
	}
	syncOnce(Manual)
	if !same(js, etag) {
		t.Fatal("an idle mirror kept its view's records")
	}

	w.Git("push", "-q", "origin", "HEAD:refs/heads/feature")
	syncOnce(Manual) // builds (in full, from the hollow view): the count starts over
	js = rf.Repo().Snapshot().ViewJSON()
	if !bytes.Contains(js, []byte(`"feature"`)) || rf.Repo().Snapshot().Hollow() {
		t.Fatalf("the new branch is not in the view: %s", js)
	}
	etag = rf.Repo().Snapshot().ETag()
	syncOnce(Manual)
	if same(js, etag) {
		t.Fatal("one run without a build after a build made the view hollow")
	}
}

// TestStartupLoadsTheSavedView: a mirror's view is saved after each new
// one; a later process loads it (hollow, the same content) instead of
// building it when the refs on disk are those it was built from, and
// builds it when they moved or the file is damaged.
func TestStartupLoadsTheSavedView(t *testing.T) {
	w, url, root := servedUpstream(t)
	w.Git("push", "-q", "origin", "HEAD:refs/heads/side")
	spec := registry.MirrorSpec{ID: "m", Config: mirror.Config{URL: url, AllowPrivate: true}}
	ctx := context.Background()
	first := NewManager(Options{})
	rf := first.Add(registry.NewMirror(root, spec))
	if res, err := rf.Sync(ctx, Onboard); err != nil || res.Err != nil {
		t.Fatalf("onboard: %v %v", err, res.Err)
	}
	want := rf.Repo().Snapshot()
	file := rf.Repo().Source().(source.ViewKeeper).ViewFile()
	first.Close()
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("no saved view: %v", err)
	}
	saved, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// start runs a start-up read of the mirror on disk in a new manager
	// and reports whether it loaded the saved view (rather than built it).
	start := func(t *testing.T) (*Refresher, bool, func()) {
		t.Helper()
		logs := &lockedLog{}
		m := NewManager(Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
		r := m.Add(registry.NewMirror(root, spec))
		if res, err := r.Sync(ctx, Startup); err != nil || res.Err != nil {
			t.Fatalf("start-up: %v %v", err, res.Err)
		}
		loaded := strings.Contains(logs.String(), "view loaded from its saved form")
		if built := strings.Contains(logs.String(), "view built"); built == loaded {
			t.Fatalf("start-up loaded %v, built %v:\n%s", loaded, built, logs.String())
		}
		return r, loaded, m.Close
	}

	t.Run("same refs: loaded", func(t *testing.T) {
		r, loaded, stop := start(t)
		defer stop()
		got := r.Repo().Snapshot()
		at := time.Unix(1, 0)
		if !loaded || !got.Hollow() || got.ContentHash() != want.ContentHash() || !bytes.Equal(got.WithVersion(1, at).ViewJSON(), want.WithVersion(1, at).ViewJSON()) {
			t.Fatalf("start-up view: hollow %v, hash %s (want %s)", got.Hollow(), got.ContentHash(), want.ContentHash())
		}
		full, err := r.Repo().Full(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := full.Branch("side"); !ok || full.ContentHash() != want.ContentHash() {
			t.Fatal("the records built for a loaded view differ")
		}
	})
	t.Run("damaged file: built", func(t *testing.T) {
		bad := bytes.Clone(saved)
		bad[len(bad)/2] ^= 0xff
		if err := os.WriteFile(file, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		r, loaded, stop := start(t)
		defer stop()
		if got := r.Repo().Snapshot(); loaded || got.ContentHash() != want.ContentHash() {
			t.Fatalf("start-up with a damaged file: loaded %v, hash %s (want %s)", loaded, got.ContentHash(), want.ContentHash())
		}
	})
	t.Run("moved refs: built", func(t *testing.T) {
		if err := os.WriteFile(file, saved, 0o644); err != nil {
			t.Fatal(err)
		}
		w.Git("push", "-q", "origin", "HEAD:refs/heads/feature")
		m := NewManager(Options{})
		r := m.Add(registry.NewMirror(root, spec))
		defer m.Close()
		if res, err := r.Sync(ctx, Manual); err != nil || res.Err != nil { // fetches feature: a new view, saved
			t.Fatalf("sync: %v %v", err, res.Err)
		}
		now, err := os.ReadFile(file)
		if err != nil || bytes.Equal(now, saved) {
			t.Fatalf("the new view was not saved (%v)", err)
		}
		// The old file's refs are not the mirror's: a start-up builds.
		if err := os.WriteFile(file, saved, 0o644); err != nil {
			t.Fatal(err)
		}
		r2, loaded, stop := start(t)
		defer stop()
		got := r2.Repo().Snapshot()
		if loaded || !bytes.Contains(got.ViewJSON(), []byte(`"feature"`)) {
			t.Fatalf("start-up with a saved view of other refs: loaded %v, %s", loaded, got.ViewJSON())
		}
	})
}

// TestRelieveMakesViewsHollow: short of memory, every mirror's view not in
// a run is made hollow (whether idle or not); one in a run keeps its view.
func TestRelieveMakesViewsHollow(t *testing.T) {
	_, url, root := servedUpstream(t)
	m := NewManager(Options{})
	t.Cleanup(m.Close)
	ctx := context.Background()
	var rfs []*Refresher
	for _, id := range []string{"a", "b"} {
		rf := m.Add(registry.NewMirror(root, registry.MirrorSpec{ID: id, Config: mirror.Config{URL: url, AllowPrivate: true}}))
		if res, err := rf.Sync(ctx, Onboard); err != nil || res.Err != nil {
			t.Fatalf("onboard %s: %v %v", id, err, res.Err)
		}
		if _, err := rf.Repo().Full(ctx); err != nil { // onboarded: hollow; asked for: full
			t.Fatal(err)
		}
		rfs = append(rfs, rf)
	}
	rfs[1].busy <- struct{}{} // as a run holds it
	if !m.Relieve() {
		t.Fatal("Relieve made nothing hollow")
	}
	if !rfs[0].Repo().Snapshot().Hollow() || rfs[0].builder.Cache().Len() != 0 {
		t.Fatal("a mirror not in a run kept its view's records")
	}
	if rfs[1].Repo().Snapshot().Hollow() {
		t.Fatal("a mirror in a run lost its view's records")
	}
	<-rfs[1].busy
	if !m.Relieve() || !rfs[1].Repo().Snapshot().Hollow() {
		t.Fatal("the mirror out of its run kept its records")
	}
	if m.Relieve() {
		t.Fatal("Relieve reported hollow views it had made before")
	}
}

// lockedLog is a log sink safe for the runs' goroutines.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
