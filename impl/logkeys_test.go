package impl_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/refs"
)

// keyCheck is a slog handler that records every record whose keys (its
// own and those the logger was given with With, in their groups) repeat
// one; the records themselves go to next.
type keyCheck struct {
	st    *keyState
	keys  []string // from WithAttrs, group-qualified
	group string
	next  slog.Handler
}

type keyState struct {
	mu      sync.Mutex
	records int
	dups    []string
}

func (h *keyCheck) Enabled(context.Context, slog.Level) bool { return true }

func (h *keyCheck) Handle(ctx context.Context, r slog.Record) error {
	seen := map[string]bool{}
	var dup []string
	for _, k := range h.keys {
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
	}
	r.Attrs(func(a slog.Attr) bool {
		k := h.group + a.Key
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
		return true
	})
	h.st.mu.Lock()
	h.st.records++
	if len(dup) > 0 {
		h.st.dups = append(h.st.dups, fmt.Sprintf("%q repeats %q", r.Message, dup))
	}
	h.st.mu.Unlock()
	return h.next.Handle(ctx, r)
}

func (h *keyCheck) WithAttrs(as []slog.Attr) slog.Handler {
	keys := slices.Clone(h.keys)
	for _, a := range as {
		keys = append(keys, h.group+a.Key)
	}
	return &keyCheck{st: h.st, keys: keys, group: h.group, next: h.next.WithAttrs(as)}
}

func (h *keyCheck) WithGroup(name string) slog.Handler {
	return &keyCheck{st: h.st, keys: h.keys, group: h.group + name + ".", next: h.next.WithGroup(name)}
}

// TestLogKeysAppearOnce captures every log record of a real server at
// debug level — start-up, the working repository's first build (with
// malformed metadata, which the view builder warns about), a watcher
// triggered run, a mirror's onboarding and manual sync, a failed
// onboarding, a refused one, requests with the access log — and fails if
// any record names a key twice (repo=local repo=local).
func TestLogKeysAppearOnce(t *testing.T) {
	r := stackRepo(t)
	r.BlobRef("refs/stackit/metadata/b", "{not json")
	up := newUpstream(t, "acme/logged.git")
	cfg := baseConfig(t, r.Dir)
	cfg.AllowPrivateRemotes = true
	cfg.AccessLog = true
	enqueued := make(chan string, 16)
	st := &keyState{}
	logs := &syncBuffer{}
	log := slog.New(&keyCheck{st: st, next: slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})})
	app, err := impl.New(cfg, log, impl.Options{
		Rate: auth.RateLimit{PerSecond: -1}, SyncRate: auth.RateLimit{PerSecond: -1}, FailRate: auth.RateLimit{PerSecond: -1},
		Enqueued: func(repoID, id string) {
			if repoID == "local" {
				enqueued <- id
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(func() {
		cancel()
		srv.Close()
		app.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	if err := app.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	c, err := client.NewClientWithResponses(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, app: app, srv: srv, c: c, cancel: cancel, logs: logs, runCtx: runCtx}
	rf, _ := app.Refresh().Get("local")

	// The watcher sees a new branch and triggers a run (after any run of
	// the start-up).
	r.Branch("watched", "main")
	for {
		res, err := rf.Wait(ctx(t), <-enqueued)
		if err != nil || res.State != refresh.Succeeded {
			t.Fatalf("run: %+v %v", res, err)
		}
		if slices.ContainsFunc(res.Changes, func(c refs.Change) bool { return c.Ref == "refs/heads/watched" }) {
			break // the run the watcher's trigger made or joined
		}
	}
	onboard(t, s, up.url)
	syncOK(t, s, "logged")
	syncOK(t, s, "local")
	id := "gone"
	if resp, err := c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: "git://127.0.0.1:1/gone.git", Id: &id}); err != nil || resp.StatusCode() != 502 {
		t.Fatalf("failed onboarding: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	if resp, err := c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: "file:///x"}); err != nil || resp.StatusCode() != 400 {
		t.Fatalf("refused onboarding: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	if resp, err := c.GetBranchWithResponse(ctx(t), "local", "nope", nil); err != nil || resp.StatusCode() != 404 {
		t.Fatalf("missing branch: %v %d", err, resp.StatusCode())
	}

	text := logs.String()
	for _, want := range []string{"view: malformed branch metadata ignored", "refresh done", "mirror onboarded", "refresh failed"} {
		if !strings.Contains(text, want) {
			t.Errorf("the run did not log %q: the test no longer covers it", want)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.records < 20 {
		t.Errorf("only %d records captured", st.records)
	}
	for _, d := range st.dups {
		t.Errorf("a log record repeats a key: %s", d)
	}
}
