package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl/api"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/repos"
	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/view"
)

// The handlers alone, on in-memory fakes of the interfaces they declare:
// no git, no disk, no middleware. A repository is a real registry.Repo
// whose view was built from objects in memory; the served set, its
// lifecycle and the refreshers answer what each case sets.

// memRepo is a view.Repo over go-git's in-memory object storage.
type memRepo struct {
	st   *memory.Storage
	refs *refs.Table
}

func (m *memRepo) Refs() *refs.Table { return m.refs }

func (m *memRepo) Object(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return m.st.EncodedObject(t, h)
}

func (m *memRepo) Config() (*config.Config, error) { return config.NewConfig(), nil }

// stackRepo is trunk main and a branch feature one commit above it.
func stackRepo(t *testing.T) *memRepo {
	st := memory.NewStorage()
	put := func(enc interface {
		Encode(plumbing.EncodedObject) error
	}) plumbing.Hash {
		obj := st.NewEncodedObject()
		if err := enc.Encode(obj); err != nil {
			t.Fatal(err)
		}
		h, err := st.SetEncodedObject(obj)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tree := put(&object.Tree{})
	var parent []plumbing.Hash
	var tips []plumbing.Hash
	for i, msg := range []string{"init", "feature work"} {
		sig := object.Signature{Name: "T", Email: "t@example.com", When: time.Unix(1_700_000_000+int64(i)*60, 0).UTC()}
		h := put(&object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: parent})
		tips, parent = append(tips, h), []plumbing.Hash{h}
	}
	return &memRepo{st: st, refs: refs.NewTable([]refs.Ref{
		{Name: refs.HEAD, Target: "refs/heads/main"},
		{Name: "refs/heads/main", Hash: tips[0]},
		{Name: "refs/heads/feature", Hash: tips[1]},
	})}
}

// served is a mirror (never cloned: no root) with a published view.
func served(t *testing.T, id string, origin registry.Origin) *registry.Repo {
	r := registry.NewMirror(nil, registry.MirrorSpec{ID: id, Config: mirror.Config{URL: "https://example.com/o/" + id + ".git"}, FullName: "o/" + id, Trunk: "main", Origin: origin})
	snap, err := view.Build(context.Background(), stackRepo(t), r.Input())
	if err != nil {
		t.Fatal(err)
	}
	r.Publish(snap, time.Unix(1_700_000_600, 0))
	r.MarkReady()
	return r
}

// fakeRepos is the served set (api.Repos and api.Lifecycle).
type fakeRepos struct {
	byID      map[string]*registry.Repo
	onboard   func(gen.RepoCreate) (*registry.Repo, error)
	removeErr map[string]error
}

func (f *fakeRepos) Get(id string) (*registry.Repo, bool) {
	r, ok := f.byID[strings.ToLower(id)]
	return r, ok
}

func (f *fakeRepos) List() []*registry.Repo {
	var out []*registry.Repo
	for _, r := range f.byID {
		out = append(out, r)
	}
	return out
}

func (f *fakeRepos) ByFullName(name string) (*registry.Repo, bool) {
	for _, r := range f.byID {
		if r.FullName == strings.ToLower(name) {
			return r, true
		}
	}
	return nil, false
}

func (f *fakeRepos) Onboard(_ context.Context, req gen.RepoCreate) (*registry.Repo, error) {
	return f.onboard(req)
}

func (f *fakeRepos) Remove(_ context.Context, id string) error { return f.removeErr[id] }

// fakeRefresher answers a repository's syncs with what a case sets.
type fakeRefresher struct {
	mu      sync.Mutex
	status  refresh.Status
	sync    func() (refresh.Result, error) // SyncIf's run, once admitted
	history map[string]refresh.Result
	lookups error
	queued  []string
}

func (f *fakeRefresher) Status() refresh.Status { return f.status }

func (f *fakeRefresher) TriggerIf(t refresh.Trigger, admit func() error) (string, error) {
	if err := admit(); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("run-%d", len(f.queued)+1)
	f.queued = append(f.queued, id)
	f.history[id] = refresh.Result{ID: id, Trigger: t, State: refresh.Queued}
	return id, nil
}

func (f *fakeRefresher) SyncIf(_ context.Context, _ refresh.Trigger, admit func() error) (refresh.Result, error) {
	if err := admit(); err != nil {
		return refresh.Result{}, err
	}
	return f.sync()
}

func (f *fakeRefresher) TriggerDebounced(refresh.Trigger) string { return "" }

func (f *fakeRefresher) Get(id string) (refresh.Result, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.history[id]
	return r, ok
}

func (f *fakeRefresher) Page(context.Context, int, string) ([]refresh.Result, error) { return nil, nil }

func (f *fakeRefresher) Lookup(_ context.Context, id string) (refresh.Result, error) {
	if f.lookups != nil {
		return refresh.Result{}, f.lookups
	}
	if r, ok := f.Get(id); ok {
		return r, nil
	}
	return refresh.Result{}, store.ErrNotFound
}

type fakeRefreshers map[string]*fakeRefresher

func (f fakeRefreshers) Refresher(id string) (api.Refresher, bool) {
	rf, ok := f[id]
	if !ok {
		return nil, false
	}
	return rf, true
}

// fixture is the handlers behind httptest, with the generated client.
type fixture struct {
	repos *fakeRepos
	rfs   fakeRefreshers
	short bool
	c     *client.ClientWithResponses
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		repos: &fakeRepos{byID: map[string]*registry.Repo{}, removeErr: map[string]error{}},
		rfs:   fakeRefreshers{},
	}
	for _, id := range []string{"alpha", "beta"} {
		f.repos.byID[id] = served(t, id, registry.OriginAPI)
		f.rfs[id] = &fakeRefresher{history: map[string]refresh.Result{}, sync: func() (refresh.Result, error) {
			return refresh.Result{ID: "done", State: refresh.Succeeded}, nil
		}}
	}
	srv := api.New(api.Deps{
		Repos: f.repos, Lifecycle: f.repos, Refreshers: f.rfs, Streams: events.NewBroker(events.Limits{}),
		Logger:        slog.New(slog.DiscardHandler),
		ShortOfMemory: func() bool { return f.short },
	})
	mux := http.NewServeMux()
	srv.Routes(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	c, err := client.NewClientWithResponses(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	return f
}

// problemOf decodes a problem body.
func problemOf(t *testing.T, body []byte) gen.Problem {
	t.Helper()
	var p gen.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("not a problem: %v %q", err, body)
	}
	return p
}

// TestHandlersWithFakes: the handlers answer from the interfaces they
// declare, map each failure those return to its problem, and make every
// unknown repository the same 404.
func TestHandlersWithFakes(t *testing.T) {
	ctx := context.Background()

	t.Run("repositories and views", func(t *testing.T) {
		f := newFixture(t)
		f.rfs["alpha"].status = refresh.Status{LastError: "upstream said no", ConsecutiveFailures: 2}
		got, err := f.c.GetRepoWithResponse(ctx, "ALPHA")
		if err != nil || got.JSON200 == nil {
			t.Fatalf("get repo: %v %d %s", err, got.StatusCode(), got.Body)
		}
		if got.JSON200.Id != "alpha" || got.JSON200.SyncStatus == nil || got.JSON200.SyncStatus.ConsecutiveFailures != 2 ||
			got.JSON200.SyncStatus.LastError == nil || *got.JSON200.SyncStatus.LastError != "upstream said no" ||
			got.JSON200.FullName == nil || *got.JSON200.FullName != "o/alpha" {
			t.Fatalf("repo: %+v %+v", got.JSON200, got.JSON200.SyncStatus)
		}
		v, err := f.c.GetViewWithResponse(ctx, "alpha", nil)
		if err != nil || v.JSON200 == nil || v.JSON200.Version != 1 || v.JSON200.Repo.Id != "alpha" || len(v.JSON200.Stacks) != 1 {
			t.Fatalf("view: %v %d %s", err, v.StatusCode(), v.Body)
		}
		etag := v.HTTPResponse.Header.Get("ETag")
		again, err := f.c.GetViewWithResponse(ctx, "alpha", &client.GetViewParams{IfNoneMatch: &etag})
		if err != nil || again.StatusCode() != http.StatusNotModified {
			t.Fatalf("If-None-Match %s: %v %d", etag, err, again.StatusCode())
		}
		// The plain client: the typed one would decode the gzip bytes as JSON.
		gz, err := f.c.GetView(ctx, "alpha", nil, func(_ context.Context, r *http.Request) error {
			r.Header.Set("Accept-Encoding", "gzip;q=0.5")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		gz.Body.Close()
		if gz.Header.Get("Content-Encoding") != "gzip" || gz.Header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("gzip: %v", gz.Header)
		}
		b, err := f.c.GetBranchWithResponse(ctx, "alpha", "bad..name", nil)
		if err != nil || b.StatusCode() != http.StatusBadRequest {
			t.Fatalf("bad branch: %v %d %s", err, b.StatusCode(), b.Body)
		}
		if p := problemOf(t, b.Body); p.Detail == nil || strings.Contains(*p.Detail, "bad..name") {
			t.Fatalf("bad branch: the detail repeats the name: %+v", p)
		}
	})

	t.Run("repository list follows views and statuses", func(t *testing.T) {
		// The list's items are encoded in advance: a new snapshot alone,
		// or a new status alone, must show in the next list.
		f := newFixture(t)
		alpha := func() client.Repo {
			t.Helper()
			l, err := f.c.ListReposWithResponse(ctx)
			if err != nil || l.JSON200 == nil || len(*l.JSON200) != 2 {
				t.Fatalf("list: %v %s", err, l.Body)
			}
			for _, r := range *l.JSON200 {
				if r.Id == "alpha" {
					return r
				}
			}
			t.Fatalf("alpha not listed: %s", l.Body)
			return client.Repo{}
		}
		if r := alpha(); r.ViewVersion == nil || *r.ViewVersion != 1 || r.SyncStatus.ConsecutiveFailures != 0 {
			t.Fatalf("first list: %+v", r)
		}
		repo := f.repos.byID["alpha"]
		if _, ok := repo.PublishAt(repo.Snapshot(), 5, time.Unix(1_700_001_000, 0)); !ok {
			t.Fatal("PublishAt changed nothing")
		}
		if r := alpha(); r.ViewVersion == nil || *r.ViewVersion != 5 {
			t.Fatalf("after a new snapshot: %+v", r)
		}
		at := time.Unix(1_700_002_000, 0).UTC()
		f.rfs["alpha"].status = refresh.Status{ConsecutiveFailures: 3, LastAttemptAt: &at}
		if r := alpha(); r.SyncStatus.ConsecutiveFailures != 3 || r.SyncStatus.LastAttemptAt == nil || !r.SyncStatus.LastAttemptAt.Equal(at) {
			t.Fatalf("after a new status: %+v", r.SyncStatus)
		}
		later := at.Add(time.Minute)
		f.rfs["alpha"].status.LastAttemptAt = &later
		if r := alpha(); !r.SyncStatus.LastAttemptAt.Equal(later) {
			t.Fatalf("after a later attempt: %+v", r.SyncStatus)
		}
	})

	t.Run("unknown repository", func(t *testing.T) {
		f := newFixture(t)
		want := `no repository "nope"`
		for name, call := range map[string]func() (int, []byte, error){
			"repo": func() (int, []byte, error) {
				r, err := f.c.GetRepoWithResponse(ctx, "nope")
				return r.StatusCode(), r.Body, err
			},
			"view": func() (int, []byte, error) {
				r, err := f.c.GetViewWithResponse(ctx, "nope", nil)
				return r.StatusCode(), r.Body, err
			},
			"branch": func() (int, []byte, error) {
				r, err := f.c.GetBranchWithResponse(ctx, "nope", "main", nil)
				return r.StatusCode(), r.Body, err
			},
			"sync": func() (int, []byte, error) {
				r, err := f.c.SyncRepoWithResponse(ctx, "nope", nil)
				return r.StatusCode(), r.Body, err
			},
			"get sync": func() (int, []byte, error) {
				r, err := f.c.GetSyncWithResponse(ctx, "nope", "x")
				return r.StatusCode(), r.Body, err
			},
		} {
			status, body, err := call()
			if err != nil || status != http.StatusNotFound {
				t.Errorf("%s: %v %d %s", name, err, status, body)
				continue
			}
			if p := problemOf(t, body); p.Type != "/problems/not-found" || p.Detail == nil || *p.Detail != want || p.Instance == nil || !strings.HasPrefix(*p.Instance, "/api/v1/repos/nope") {
				t.Errorf("%s: %+v", name, p)
			}
		}
	})

	t.Run("onboarding failures", func(t *testing.T) {
		for _, tc := range []struct {
			err    error
			status int
			typ    string
		}{
			{fmt.Errorf("%w: %q", repos.ErrBadID, "a b"), 400, "/problems/bad-request"},
			{repos.FieldError{Field: "trunk", Err: errors.New("has a space")}, 400, "/problems/bad-request"},
			{fmt.Errorf("x: %w", registry.ErrDuplicateURL), 409, "/problems/conflict"},
			{repos.ErrRemovedWhileOnboarding, 409, "/problems/conflict"},
			{fmt.Errorf("onboard x: %w", memlimit.ErrPressure), 503, "/problems/unavailable"},
			{fmt.Errorf("%w after 2m", refresh.ErrTimeout), 504, "/problems/timeout"},
			{fmt.Errorf("%w: no such host", refresh.ErrFetch), 502, "/problems/fetch-failed"},
			{refresh.ErrClosed, 503, "/problems/unavailable"},
		} {
			f := newFixture(t)
			f.repos.onboard = func(gen.RepoCreate) (*registry.Repo, error) { return nil, tc.err }
			r, err := f.c.CreateRepoWithResponse(ctx, client.CreateRepoJSONRequestBody{Url: "https://example.com/o/new.git"})
			if err != nil || r.StatusCode() != tc.status {
				t.Errorf("%v: %v %d %s", tc.err, err, r.StatusCode(), r.Body)
				continue
			}
			if p := problemOf(t, r.Body); p.Type != tc.typ {
				t.Errorf("%v: %+v", tc.err, p)
			}
		}
		f := newFixture(t)
		f.repos.onboard = func(req gen.RepoCreate) (*registry.Repo, error) { return served(t, "new", registry.OriginAPI), nil }
		r, err := f.c.CreateRepoWithResponse(ctx, client.CreateRepoJSONRequestBody{Url: "https://example.com/o/new.git"})
		if err != nil || r.StatusCode() != http.StatusCreated || r.HTTPResponse.Header.Get("Location") != "/api/v1/repos/new" {
			t.Fatalf("onboarded: %v %d %v", err, r.StatusCode(), r.HTTPResponse.Header)
		}
	})

	t.Run("removal", func(t *testing.T) {
		f := newFixture(t)
		f.repos.removeErr["gone"] = fmt.Errorf("%w: %q", repos.ErrNotFound, "gone")
		f.repos.removeErr["alpha"] = fmt.Errorf("%w: %q is declared in the config file", repos.ErrNotRemovable, "alpha")
		for id, want := range map[string]int{"gone": 404, "alpha": 409, "beta": 204} {
			r, err := f.c.DeleteRepoWithResponse(ctx, id)
			if err != nil || r.StatusCode() != want {
				t.Errorf("delete %s: %v %d %s", id, err, r.StatusCode(), r.Body)
			}
		}
	})

	t.Run("sync failures", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			short  bool
			res    refresh.Result
			err    error
			status int
			typ    string
		}{
			{name: "succeeded", res: refresh.Result{ID: "s1", State: refresh.Succeeded}, status: 200},
			{name: "fetch failed", res: refresh.Result{ID: "s2", State: refresh.Failed, Err: fmt.Errorf("%w: refused", refresh.ErrFetch), Error: "refused"}, status: 502, typ: "/problems/fetch-failed"},
			{name: "too large", res: refresh.Result{ID: "s3", State: refresh.Failed, Err: fmt.Errorf("%w: %w", refresh.ErrFetch, mirror.ErrTooLarge)}, status: 502, typ: "/problems/upstream-too-large"},
			{name: "view build", res: refresh.Result{ID: "s4", State: refresh.Failed, Err: fmt.Errorf("%w: cycle", refresh.ErrBuild)}, status: 502, typ: "/problems/view-build-failed"},
			{name: "timeout", res: refresh.Result{ID: "s5", State: refresh.Failed, Err: fmt.Errorf("%w after 2m", refresh.ErrTimeout)}, status: 504, typ: "/problems/timeout"},
			{name: "shutdown", res: refresh.Result{ID: "s6", State: refresh.Failed, Err: refresh.ErrClosed}, status: 503, typ: "/problems/unavailable"},
			{name: "removed", err: refresh.ErrRemoved, status: 404, typ: "/problems/not-found"},
			{name: "short of memory", short: true, status: 503, typ: "/problems/unavailable"},
		} {
			f := newFixture(t)
			f.short = tc.short
			f.rfs["alpha"].sync = func() (refresh.Result, error) { return tc.res, tc.err }
			r, err := f.c.SyncRepoWithResponse(ctx, "alpha", nil)
			if err != nil || r.StatusCode() != tc.status {
				t.Errorf("%s: %v %d %s", tc.name, err, r.StatusCode(), r.Body)
				continue
			}
			if tc.typ == "" {
				continue
			}
			p := problemOf(t, r.Body)
			if p.Type != tc.typ {
				t.Errorf("%s: %+v", tc.name, p)
			}
			if tc.status == 502 || tc.status == 504 {
				if p.SyncId == nil || *p.SyncId != tc.res.ID || r.HTTPResponse.Header.Get("Location") != "/api/v1/repos/alpha/syncs/"+tc.res.ID {
					t.Errorf("%s: sync id %v, Location %q", tc.name, p.SyncId, r.HTTPResponse.Header.Get("Location"))
				}
			}
		}
		f := newFixture(t)
		wait := false
		r, err := f.c.SyncRepoWithResponse(ctx, "alpha", &client.SyncRepoParams{Wait: &wait})
		if err != nil || r.StatusCode() != http.StatusAccepted || r.HTTPResponse.Header.Get("Location") != "/api/v1/repos/alpha/syncs/run-1" {
			t.Fatalf("wait=false: %v %d %v", err, r.StatusCode(), r.HTTPResponse.Header)
		}
		got, err := f.c.GetSyncWithResponse(ctx, "alpha", "run-1")
		if err != nil || got.JSON200 == nil || got.JSON200.Id != "run-1" {
			t.Fatalf("get sync: %v %d %s", err, got.StatusCode(), got.Body)
		}
		missing, err := f.c.GetSyncWithResponse(ctx, "alpha", "run-9")
		if err != nil || missing.StatusCode() != http.StatusNotFound {
			t.Fatalf("unknown sync: %v %d", err, missing.StatusCode())
		}
		f.rfs["alpha"].lookups = fmt.Errorf("read: %w", store.ErrUnavailable)
		down, err := f.c.GetSyncWithResponse(ctx, "alpha", "run-1")
		if err != nil || down.StatusCode() != http.StatusServiceUnavailable || down.HTTPResponse.Header.Get("Retry-After") == "" {
			t.Fatalf("database down: %v %d %s", err, down.StatusCode(), down.Body)
		}
	})

	t.Run("webhooks disabled", func(t *testing.T) {
		f := newFixture(t)
		r, err := f.c.GithubWebhookWithBodyWithResponse(ctx, nil, "application/json", strings.NewReader(`{}`))
		if err != nil || r.StatusCode() != http.StatusNotFound {
			t.Fatalf("webhook: %v %d %s", err, r.StatusCode(), r.Body)
		}
	})
}
