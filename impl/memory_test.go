package impl_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/refresh"
)

const shortOfMemoryDetail = "the server is short of memory; try again shortly"

// wantShortOfMemory checks a 503 for memory: the problem, its detail and
// Retry-After.
func wantShortOfMemory(t *testing.T, what string, code int, p *client.Problem, retryAfter int) {
	t.Helper()
	if code != 503 || p == nil || p.Type != "/problems/unavailable" || p.Detail == nil || *p.Detail != shortOfMemoryDetail {
		t.Fatalf("%s: %d %+v, want 503 /problems/unavailable %q", what, code, p, shortOfMemoryDetail)
	}
	if retryAfter != 10 {
		t.Fatalf("%s: Retry-After %d, want 10", what, retryAfter)
	}
}

// TestMemoryPressureRefusesNewFetches: while the server is short of
// memory (forced through Options.ShortOfMemory), a sync of a mirror that
// would start a run and an onboarding answer 503 with Retry-After; nothing
// is fetched or cloned, no run is recorded, no sync token is spent; a sync
// of the working repository (which fetches nothing) still runs. Once the
// pressure passes, syncs fetch again.
func TestMemoryPressureRefusesNewFetches(t *testing.T) {
	up := newUpstream(t, "acme/tight.git")
	other := newUpstream(t, "acme/later.git")
	var short atomic.Bool
	var laterRuns atomic.Int64
	cf := &countingFetch{}
	cfg := baseConfig(t, stackRepo(t).Dir) // serves the working repository "local" too
	cfg.AllowPrivateRemotes = true
	s := startServer(t, cfg, impl.Options{
		BeforeRefresh: cf.fetch,
		ShortOfMemory: short.Load,
		Enqueued: func(repoID, _ string) {
			if repoID == "later" {
				laterRuns.Add(1)
			}
		},
		// Four sync tokens: the onboarding below, the refused
		// onboarding (the gate charges onboardings), the sync of the
		// working repository, one sync of the mirror after the pressure.
		SyncRate: auth.RateLimit{PerSecond: 0.0001, Burst: 4},
	})
	onboard(t, s, up.url)
	fetches := cf.n.Load()
	runs := len(listSyncs(t, s, "tight"))

	short.Store(true)
	for _, wait := range []bool{true, false, true} {
		resp, err := s.c.SyncRepoWithResponse(ctx(t), "tight", &client.SyncRepoParams{Wait: &wait})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Headers503 == nil {
			t.Fatalf("sync (wait=%v) under pressure: %d %s", wait, resp.StatusCode(), resp.Body)
		}
		wantShortOfMemory(t, "sync", resp.StatusCode(), resp.ApplicationproblemJSON503, resp.Headers503.RetryAfter)
	}
	created, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: other.url})
	if err != nil {
		t.Fatal(err)
	}
	if created.Headers503 == nil {
		t.Fatalf("onboarding under pressure: %d %s", created.StatusCode(), created.Body)
	}
	wantShortOfMemory(t, "onboarding", created.StatusCode(), created.ApplicationproblemJSON503, created.Headers503.RetryAfter)
	if n := laterRuns.Load(); n != 0 {
		t.Fatalf("the refused onboarding created %d runs (it must be refused before it is registered)", n)
	}
	if got, _ := s.c.GetRepoWithResponse(ctx(t), "later"); got.StatusCode() != 404 {
		t.Fatalf("the refused onboarding is served: %d", got.StatusCode())
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "mirrors", "later.git")); !os.IsNotExist(err) {
		t.Fatalf("the refused onboarding left a mirror directory: %v", err)
	}
	if n := cf.n.Load(); n != fetches {
		t.Fatalf("%d fetches under pressure", n-fetches)
	}
	if n := len(listSyncs(t, s, "tight")); n != runs {
		t.Fatalf("%d runs recorded under pressure", n-runs)
	}
	// The working repository is only re-read: not refused.
	local := syncOK(t, s, "local")
	if local.Mode != client.Reread {
		t.Fatalf("local sync under pressure: %+v", local)
	}

	// The pressure passes: the sync fetches, with the token the refused
	// syncs did not spend; the next finds the bucket empty.
	short.Store(false)
	if res := syncOK(t, s, "tight"); res.Mode != client.MirrorFetch || cf.n.Load() != fetches+1 {
		t.Fatalf("sync after the pressure: %+v, %d fetches", res, cf.n.Load()-fetches)
	}
	if resp, _ := s.c.SyncRepoWithResponse(ctx(t), "tight", nil); resp.StatusCode() != 429 {
		t.Fatalf("the sync bucket should be empty now: %d %s", resp.StatusCode(), resp.Body)
	}
}

func listSyncs(t *testing.T, s *testServer, id string) []client.SyncResult {
	t.Helper()
	resp, err := s.c.ListSyncsWithResponse(ctx(t), id, nil)
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("syncs of %s: %v %d %s", id, err, resp.StatusCode(), resp.Body)
	}
	return *resp.JSON200
}

// TestMemoryPressureFailsQueuedFetchFast: a sync that joins an already
// queued run is not refused (it starts nothing); when that run reaches its
// fetch under pressure it fails at once with the memory error, recorded in
// the history, and the waiting sync answers 503 with Retry-After. The run
// that was already fetching finishes.
func TestMemoryPressureFailsQueuedFetchFast(t *testing.T) {
	up := newUpstream(t, "acme/queued.git")
	var short atomic.Bool
	cf := &countingFetch{}
	enqueued := make(chan string, 16)
	s := startServer(t, mirrorConfig(t), impl.Options{
		BeforeRefresh: cf.fetch,
		ShortOfMemory: short.Load,
		Enqueued: func(repoID, run string) {
			if repoID == "queued" {
				enqueued <- run
			}
		},
	})
	onboard(t, s, up.url)
	drain(enqueued)

	hold, started := make(chan struct{}), make(chan struct{}, 4)
	cf.set(hold, started)
	first := make(chan *client.SyncRepoResponse, 1)
	go func() {
		resp, err := s.c.SyncRepoWithResponse(context.Background(), "queued", nil)
		if err != nil {
			t.Error(err)
		}
		first <- resp
	}()
	<-started // the first run fetches, held
	<-enqueued
	noWait := false
	queued, err := s.c.SyncRepoWithResponse(ctx(t), "queued", &client.SyncRepoParams{Wait: &noWait})
	if err != nil || queued.JSON202 == nil {
		t.Fatalf("queueing a follow-up: %v %d %s", err, queued.StatusCode(), queued.Body)
	}
	<-enqueued
	short.Store(true)
	joined := make(chan *client.SyncRepoResponse, 1)
	go func() {
		resp, err := s.c.SyncRepoWithResponse(context.Background(), "queued", nil)
		if err != nil {
			t.Error(err)
		}
		joined <- resp
	}()
	if run := <-enqueued; run != queued.JSON202.Id {
		t.Fatalf("the sync under pressure created run %s instead of joining %s", run, queued.JSON202.Id)
	}
	close(hold)
	if resp := <-first; resp == nil || resp.JSON200 == nil {
		t.Fatalf("the run that was fetching: %+v", resp)
	}
	resp := <-joined
	if resp == nil || resp.Headers503 == nil {
		t.Fatalf("the sync that joined the queued run: %+v", resp)
	}
	wantShortOfMemory(t, "joined sync", resp.StatusCode(), resp.ApplicationproblemJSON503, resp.Headers503.RetryAfter)
	got, err := s.c.GetSyncWithResponse(ctx(t), "queued", queued.JSON202.Id)
	if err != nil || got.JSON200 == nil {
		t.Fatalf("the queued run: %v %d", err, got.StatusCode())
	}
	if res := got.JSON200; res.State != client.SyncResultStateFailed || res.Error == nil || !strings.Contains(*res.Error, shortOfMemoryDetail) {
		t.Fatalf("the queued run under pressure: %+v", res)
	}
	if n := cf.n.Load(); n != 2 { // the onboarding's and the held one
		t.Fatalf("%d fetches, want 2", n)
	}
	if !strings.Contains(s.logs.String(), "fetch postponed: the server is short of memory") {
		t.Fatalf("the postponed fetch is not logged:\n%s", s.logs.String())
	}
}

func drain(c chan string) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// TestMemoryPressurePostponesIntervalAndWebhookRuns: under pressure the
// interval loop's run and a webhook's run fail fast with the memory error
// (nothing is fetched, the server goes on), the loop backs off as after
// any failure, and once the pressure passes the next interval run fetches
// what changed.
func TestMemoryPressurePostponesIntervalAndWebhookRuns(t *testing.T) {
	up := newUpstream(t, "acme/Pressed.git")
	cfg := mirrorConfig(t)
	cfg.SyncInterval = time.Minute // the backoff's cap is 16 intervals, at most an hour
	cfg.WebhookSecret = "s3cret"
	type wait struct {
		d time.Duration
		c chan time.Time
	}
	waits := make(chan wait)
	done := make(chan struct{})
	after := func(d time.Duration) <-chan time.Time {
		c := make(chan time.Time, 1)
		select {
		case waits <- wait{d, c}:
		case <-done:
		}
		return c
	}
	var short atomic.Bool
	cf := &countingFetch{}
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch, After: after, ShortOfMemory: short.Load})
	t.Cleanup(func() { close(done) })
	onboard(t, s, up.url)
	rf, _ := s.app.Refresh().Get("Pressed")
	w := <-waits
	fetches := cf.n.Load()

	up.work.Commit("pressed", map[string]string{"p": "p\n"})
	up.push("main")
	short.Store(true)

	// A webhook push: accepted (a verified delivery is never refused), its
	// run fails fast.
	push := `{"ref":"refs/heads/main","repository":{"full_name":"acme/pressed"}}`
	code, _, body := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(push), "Content-Type", "application/json",
		"X-GitHub-Event", "push", "X-GitHub-Delivery", "m-1", "X-Hub-Signature-256", sign("s3cret", push))
	if code != 202 {
		t.Fatalf("webhook under pressure: %d %s", code, body)
	}
	res, err := rf.Wait(ctx(t), rf.History()[0].ID)
	if err != nil || res.Trigger != refresh.Webhook || res.State != refresh.Failed || !strings.Contains(res.Error, shortOfMemoryDetail) {
		t.Fatalf("webhook run under pressure: %+v %v", res, err)
	}

	// The interval run: fails fast too, and the loop waits longer.
	w.c <- time.Now()
	next := <-waits
	hist := rf.History()
	if hist[0].Trigger != refresh.Interval || hist[0].State != refresh.Failed || !strings.Contains(hist[0].Error, shortOfMemoryDetail) {
		t.Fatalf("interval run under pressure: %+v", hist[0])
	}
	if next.d < time.Duration(1.5*float64(w.d)) {
		t.Fatalf("the loop does not back off after a run refused for memory: waited %s, now %s", w.d, next.d)
	}
	if n := cf.n.Load(); n != fetches {
		t.Fatalf("%d fetches under pressure", n-fetches)
	}
	repo, _ := s.c.GetRepoWithResponse(ctx(t), "Pressed")
	if st := repo.JSON200.SyncStatus; st.LastError == nil || !strings.Contains(*st.LastError, shortOfMemoryDetail) {
		t.Fatalf("sync status under pressure: %+v", st)
	}

	// The pressure passes: the next interval run fetches the push.
	short.Store(false)
	next.c <- time.Now()
	<-waits
	hist = rf.History()
	if hist[0].Trigger != refresh.Interval || hist[0].State != refresh.Succeeded || len(hist[0].Changes) != 1 || cf.n.Load() != fetches+1 {
		t.Fatalf("interval run after the pressure: %+v, %d fetches", hist[0], cf.n.Load()-fetches)
	}
}
