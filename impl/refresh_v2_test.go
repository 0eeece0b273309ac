package impl_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/refresh"
)

// TestRestartServesTheMirrorOnDiskFirst: a server restarted on an existing
// mirror serves its view from disk before any network access (here the
// upstream is gone), then tries to fetch; the failed fetch keeps the view.
func TestRestartServesTheMirrorOnDiskFirst(t *testing.T) {
	up := newUpstream(t, "acme/kept.git")
	cfg := mirrorConfig(t)
	cfg.Repos = []config.RepoConfig{{ID: "kept", URL: up.url}}
	first := startServer(t, cfg, impl.Options{})
	rf, _ := first.app.Refresh().Get("kept")
	if err := rf.Idle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if h := rf.History(); len(h) != 1 || h[0].State != refresh.Succeeded {
		t.Fatalf("first clone: %+v", h)
	}
	want, _ := first.c.GetViewWithResponse(ctx(t), "kept", nil)
	first.cancel()
	first.app.Close()

	if err := os.Rename(up.bare, up.bare+".gone"); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, cfg, impl.Options{})
	rf, _ = s.app.Refresh().Get("kept")
	if err := rf.Idle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	h := rf.History() // newest first: this start's fetch and load, then the first start's clone
	if len(h) != 3 {
		t.Fatalf("history after restart: %+v", h)
	}
	if load := h[1]; load.Trigger != refresh.Startup || load.Mode != refresh.ModeReread || load.State != refresh.Succeeded {
		t.Fatalf("start-up load = %+v", load)
	}
	if fetch := h[0]; fetch.Trigger != refresh.Startup || fetch.Mode != refresh.ModeMirrorFetch || fetch.State != refresh.Failed {
		t.Fatalf("start-up fetch = %+v", fetch)
	}
	got, _ := s.c.GetViewWithResponse(ctx(t), "kept", nil)
	if got.JSON200 == nil || len(got.JSON200.Stacks) != len(want.JSON200.Stacks) || got.JSON200.Version != 1 {
		t.Fatalf("view after restart: %s", got.Body)
	}
	a, _ := json.Marshal(got.JSON200.Stacks)
	b, _ := json.Marshal(want.JSON200.Stacks)
	if !bytes.Equal(a, b) {
		t.Fatalf("the view served from disk differs:\n got %s\nwant %s", a, b)
	}
	if code, _, body := s.do("GET", "/readyz", nil); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
}

// TestLocalSyncReportsMetadataAndRewrites: a re-read reports every changed
// branch and metadata ref, and tells rewrites from fast-forwards, as a
// mirror fetch does.
func TestLocalSyncReportsMetadataAndRewrites(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	blob := r.BlobRef("refs/stackit/metadata/c", `{"parentBranchName":"b","prInfo":{"number":3}}`)
	res := syncOK(t, s, "local")
	if change(res, "refs/stackit/metadata/c") != "updated" || res.UpdatedRefsTotal != 1 {
		t.Fatalf("metadata change: %+v", res.UpdatedRefs)
	}
	if res.UpdatedRefs[0].NewSha == nil || *res.UpdatedRefs[0].NewSha != blob {
		t.Fatalf("new sha: %+v", res.UpdatedRefs[0])
	}
	r.Git("checkout", "-q", "c")
	r.Commit("c2", map[string]string{"c.txt": "c2\n"})
	if res := syncOK(t, s, "local"); change(res, "refs/heads/c") != "updated" {
		t.Fatalf("fast-forward: %+v", res.UpdatedRefs)
	}
	// The rewrite moves c in one step (c2 -> c2'), so the watcher cannot
	// see it half done (at c1, then a fast-forward).
	r.Git("checkout", "-q", "--detach", "HEAD~1")
	r.Commit("c2 again", map[string]string{"c.txt": "other\n"})
	r.Git("branch", "-f", "c", "HEAD")
	if res := syncOK(t, s, "local"); change(res, "refs/heads/c") != "forced" {
		t.Fatalf("rewrite: %+v", res.UpdatedRefs)
	}
	if res := syncOK(t, s, "local"); len(res.UpdatedRefs) != 0 || res.UpdatedRefsTotal != 0 {
		t.Fatalf("nothing changed: %+v", res.UpdatedRefs)
	}
}

// TestViewAnswersAreTheSnapshotsBytes: every read answer is the JSON
// encoding of the snapshot's values, the view is also sent gzip-compressed
// to clients that accept it, and ETags and 304s hold.
func TestViewAnswersAreTheSnapshotsBytes(t *testing.T) {
	r := stackRepo(t)
	r.BlobRef("refs/stackit/metadata/a", `{"parentBranchName":"main","prInfo":{"number":1,"title":"<a> & b"}}`)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	snap, _ := s.app.Registry().Get("local")
	cur := snap.Snapshot()
	enc := func(v any) string {
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	for path, want := range map[string]string{
		"/api/v1/repos/local/view":       enc(cur.View()),
		"/api/v1/repos/local/stacks":     enc(cur.Stacks()),
		"/api/v1/repos/local/stacks/a":   enc(cur.Stacks()[0]),
		"/api/v1/repos/local/branches":   enc(cur.Branches()),
		"/api/v1/repos/local/branches/b": enc(cur.Branches()[2]),
	} {
		code, hdr, body := s.do("GET", path, nil, "Accept-Encoding", "identity")
		if code != 200 || body != want || hdr.Get("ETag") != cur.ETag() || hdr.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s\n got %s\nwant %s", path, code, hdr, body, want)
		}
		if code, _, _ := s.do("GET", path, nil, "If-None-Match", cur.ETag()); code != 304 {
			t.Fatalf("GET %s with its ETag: %d", path, code)
		}
	}
	code, hdr, body := s.do("GET", "/api/v1/repos/local/view", nil, "Accept-Encoding", "br;q=1, gzip;q=0.5")
	if code != 200 || hdr.Get("Content-Encoding") != "gzip" || !strings.Contains(hdr.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("gzip view: %d %v", code, hdr)
	}
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || string(plain) != enc(cur.View()) {
		t.Fatalf("gunzipped view: %v\n%s", err, plain)
	}
	if _, hdr, _ := s.do("GET", "/api/v1/repos/local/view", nil, "Accept-Encoding", "gzip;q=0"); hdr.Get("Content-Encoding") != "" {
		t.Fatal("gzip sent to a client that refused it")
	}
	// The generated client (Go's transport asks for gzip and decodes it).
	v, err := s.c.GetViewWithResponse(ctx(t), "local", nil)
	if err != nil || v.JSON200 == nil || v.JSON200.Version != cur.Version() || len(v.JSON200.Stacks) != 1 {
		t.Fatalf("client view: %v %s", err, v.Body)
	}
	if v.JSON200.Stacks[0].Branches[0].Pr == nil || *v.JSON200.Stacks[0].Branches[0].Pr.Title != "<a> & b" {
		t.Fatalf("escaped text: %+v", v.JSON200.Stacks[0].Branches[0].Pr)
	}
}

// TestPanicInARunFailsOnlyThatRun: a panic inside a refresh (injected in
// the source refresh) fails that run with a generic error, keeps the last
// good view, logs the stack, and the next run works.
func TestPanicInARunFailsOnlyThatRun(t *testing.T) {
	up := newUpstream(t, "acme/panicky.git")
	var explode atomic.Bool
	hook := func(ctx context.Context, id string, mode refresh.Mode) error {
		if explode.Load() {
			panic("injected")
		}
		return nil
	}
	s := startServer(t, mirrorConfig(t), impl.Options{BeforeRefresh: hook})
	repo := onboard(t, s, up.url)
	explode.Store(true)
	code, _, body := s.do("POST", "/api/v1/repos/panicky/sync", nil)
	if code != 500 || strings.Contains(body, "injected") {
		t.Fatalf("sync of a panicking run: %d %s", code, body)
	}
	rf, _ := s.app.Refresh().Get("panicky")
	if h := rf.History(); h[0].State != refresh.Failed || !errors.Is(h[0].Err, refresh.ErrPanic) {
		t.Fatalf("panicked run = %+v", h[0])
	}
	if !strings.Contains(s.logs.String(), "refresh panicked") || !strings.Contains(s.logs.String(), "goroutine") {
		t.Fatal("the panic and its stack were not logged")
	}
	v, _ := s.c.GetViewWithResponse(ctx(t), "panicky", nil)
	if v.JSON200 == nil || v.JSON200.Version != vv(repo.ViewVersion) {
		t.Fatalf("view after the panic: %s", v.Body)
	}
	explode.Store(false)
	if res := syncOK(t, s, "panicky"); res.State != client.SyncResultStateSucceeded {
		t.Fatalf("next sync: %+v", res)
	}
}
