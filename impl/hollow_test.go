package impl_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/stackd/stackd/impl"
)

// TestIdleMirrorAnswersAsBefore: a mirror idle for two runs keeps only
// the hollow copy of its view (README, Memory); every read route answers
// it exactly as before (GET view with and without gzip, stacks, a stack,
// branches, a branch, a diff), with the same ETag, and so does a restart
// that loads the saved view instead of building it.
func TestIdleMirrorAnswersAsBefore(t *testing.T) {
	up := newUpstream(t, "up.git")
	cfg := mirrorConfig(t)
	first := startServer(t, cfg, impl.Options{})
	id := onboard(t, first, up.url).Id

	identity := func(ctx context.Context, req *http.Request) error {
		req.Header.Set("Accept-Encoding", "identity")
		return nil
	}
	gzipped := func(ctx context.Context, req *http.Request) error {
		req.Header.Set("Accept-Encoding", "gzip")
		return nil
	}
	// answers reads every route and returns each answer's status, ETag and
	// body (a gzip body decompressed), by route.
	answers := func(s *testServer) map[string]string {
		t.Helper()
		out := map[string]string{}
		add := func(name string, res *http.Response, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			defer res.Body.Close()
			var body io.Reader = res.Body
			if res.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(res.Body)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				body = zr
			}
			b, err := io.ReadAll(body)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if res.Header.Get("Content-Encoding") == "" && res.ContentLength != int64(len(b)) {
				t.Fatalf("%s: Content-Length %d, body %d bytes", name, res.ContentLength, len(b))
			}
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %s", name, res.StatusCode, b)
			}
			// The build time differs after a restart; the rest may not.
			b = bytes.TrimSpace(b)
			if i := bytes.Index(b, []byte(`{"builtAt":`)); i == 0 {
				b = b[bytes.IndexByte(b, ','):]
			}
			out[name] = res.Header.Get("ETag") + " " + string(b)
		}
		res, err := s.c.GetView(ctx(t), id, nil, identity)
		add("view", res, err)
		res, err = s.c.GetView(ctx(t), id, nil, gzipped)
		add("view gzip", res, err)
		res, err = s.c.ListStacks(ctx(t), id, nil)
		add("stacks", res, err)
		res, err = s.c.GetStack(ctx(t), id, "a", nil)
		add("stack", res, err)
		res, err = s.c.ListBranches(ctx(t), id, nil)
		add("branches", res, err)
		res, err = s.c.GetBranch(ctx(t), id, "b", nil)
		add("branch", res, err)
		res, err = s.c.GetBranchDiff(ctx(t), id, "c", nil)
		add("diff", res, err)
		return out
	}
	same := func(label string, got, want map[string]string) {
		t.Helper()
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: %s differs:\n got %s\nwant %s", label, k, got[k], w)
			}
		}
	}

	before := answers(first)
	syncOK(t, first, id)
	syncOK(t, first, id) // two runs without a build: idle, hollow
	hollow := func(s *testServer) bool {
		rf, ok := s.app.Refresh().Get(id)
		return ok && rf.Repo().Snapshot().Hollow()
	}
	if !hollow(first) {
		t.Fatal("an idle mirror's view is not hollow")
	}
	// GET view first: it is served from the hollow copy.
	res, err := first.c.GetView(ctx(t), id, nil, identity)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	same("idle", answers(first), before)

	first.cancel()
	first.app.Close()
	second := startServer(t, cfg, impl.Options{})
	waitUntil(t, "the view after a restart", func() bool {
		rf, ok := second.app.Refresh().Get(id)
		return ok && rf.Repo().Snapshot().Version() > 0
	})
	if !hollow(second) {
		t.Fatal("a restart built the view it had saved")
	}
	same("after a restart", answers(second), before)
}
