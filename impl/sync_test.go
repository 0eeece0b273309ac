package impl_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/mirror/mirrortest"
	"github.com/stackd/stackd/impl/refresh"
)

// upstream is a bare repository served by git daemon, pushed to from a
// working clone.
type upstream struct {
	work *gittest.Repo
	bare string
	url  string
}

func newUpstream(t *testing.T, name string) *upstream {
	t.Helper()
	w := stackRepo(t)
	w.Git("checkout", "-q", "main")
	base := filepath.Join(t.TempDir(), "served")
	bare := filepath.Join(base, name)
	if err := os.MkdirAll(filepath.Dir(bare), 0o755); err != nil {
		t.Fatal(err)
	}
	w.Run(base, "clone", "-q", "--bare", w.Dir, bare)
	w.Git("remote", "add", "origin", bare)
	w.Git("push", "-q", "origin", "refs/stackit/*:refs/stackit/*")
	addr := mirrortest.StartDaemon(t, base)
	return &upstream{work: w, bare: bare, url: "git://" + addr + "/" + name}
}

// mirrorConfig is baseConfig without a local repository, for mirrors of
// upstreams served on loopback (git daemon, http servers): it sets
// --allow-private-remotes, without which those are refused.
func mirrorConfig(t *testing.T) config.Config {
	cfg := baseConfig(t, "")
	cfg.AllowPrivateRemotes = true
	return cfg
}

func (u *upstream) push(args ...string) {
	u.work.Git(append([]string{"push", "-q", "origin"}, args...)...)
}

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// countingFetch counts mirror fetches (source refreshes of mode
// mirror-fetch) and can hold them on a channel.
type countingFetch struct {
	n       atomic.Int64
	mu      sync.Mutex
	hold    chan struct{} // when non-nil, fetches wait for it to close
	started chan struct{} // receives once per fetch that starts
}

func (c *countingFetch) fetch(ctx context.Context, _ string, mode refresh.Mode) error {
	if mode != refresh.ModeMirrorFetch {
		return nil
	}
	c.n.Add(1)
	c.mu.Lock()
	hold, started := c.hold, c.started
	c.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (c *countingFetch) set(hold, started chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold, c.started = hold, started
}

func onboard(t *testing.T, s *testServer, u string) client.Repo {
	t.Helper()
	resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: u})
	if err != nil || resp.JSON201 == nil {
		t.Fatalf("onboard %s: %v %d %s", u, err, resp.StatusCode(), resp.Body)
	}
	return *resp.JSON201
}

func syncOK(t *testing.T, s *testServer, id string) client.SyncResult {
	t.Helper()
	resp, err := s.c.SyncRepoWithResponse(ctx(t), id, nil)
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("sync %s: %v %d %s", id, err, resp.StatusCode(), resp.Body)
	}
	return *resp.JSON200
}

func change(res client.SyncResult, ref string) string {
	for _, u := range res.UpdatedRefs {
		if u.Ref == ref {
			return string(u.Change)
		}
	}
	return ""
}

func TestMirrorOnboardingAndManualSync(t *testing.T) {
	up := newUpstream(t, "acme/widgets.git")
	cf := &countingFetch{}
	cfg := mirrorConfig(t)
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})

	repo := onboard(t, s, up.url)
	if repo.Id != "widgets" || repo.Kind != client.Mirror || repo.Trunk != "main" || vv(repo.ViewVersion) < 1 {
		t.Fatalf("onboarded repo = %+v", repo)
	}
	view, err := s.c.GetViewWithResponse(ctx(t), "widgets", nil)
	if err != nil || view.JSON200 == nil || len(view.JSON200.Stacks) != 1 || len(view.JSON200.Stacks[0].Branches) != 3 {
		t.Fatalf("mirror view: %v %s", err, view.Body)
	}

	// Conflicts and bad URLs are refused before any clone.
	for _, tc := range []struct {
		body   client.RepoCreate
		status int
	}{
		{client.RepoCreate{Url: up.url}, 409},
		{client.RepoCreate{Url: strings.ToUpper(up.url[:6]) + up.url[6:] + "/", Id: strptr("other")}, 409},
		{client.RepoCreate{Url: "git://127.0.0.1:1/x.git", Id: strptr("WIDGETS")}, 409},
		{client.RepoCreate{Url: "ftp://example.com/x.git"}, 400},
		{client.RepoCreate{Url: "file:///etc"}, 400},
		{client.RepoCreate{Url: "/etc"}, 400},
	} {
		resp, err := s.c.CreateRepoWithResponse(ctx(t), tc.body)
		if err != nil || resp.StatusCode() != tc.status {
			t.Fatalf("create %+v: %v %d %s", tc.body, err, resp.StatusCode(), resp.Body)
		}
	}
	// A failed clone leaves nothing behind.
	resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: "git://127.0.0.1:1/gone.git"})
	if err != nil || resp.StatusCode() != 502 || resp.ApplicationproblemJSON502 == nil {
		t.Fatalf("unreachable clone: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	if _, ok := s.app.Registry().Get("gone"); ok {
		t.Fatal("failed onboarding left a repository")
	}
	entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, "mirrors"))
	if len(entries) != 1 {
		t.Fatalf("mirrors dir holds %d entries, want only widgets.git", len(entries))
	}

	cf.n.Store(0) // count the fetches of the syncs below

	// A new upstream commit arrives through a manual sync.
	up.work.Git("checkout", "-q", "c")
	up.work.Commit("c2", map[string]string{"c.txt": "c2\n"})
	up.push("c")
	res := syncOK(t, s, "widgets")
	if res.Mode != client.MirrorFetch || res.Trigger != client.Manual || change(res, "refs/heads/c") != "updated" || vv(res.ViewVersion) <= vv(repo.ViewVersion) {
		t.Fatalf("sync after push = %+v", res)
	}
	// Force-push and deletion are followed and reported.
	up.work.Git("reset", "-q", "--hard", "HEAD~1")
	up.work.Commit("c2 rewritten", map[string]string{"c.txt": "rewritten\n"})
	up.push("+c")
	if res := syncOK(t, s, "widgets"); change(res, "refs/heads/c") != "forced" {
		t.Fatalf("force-push: %+v", res.UpdatedRefs)
	}
	up.push(":c")
	res = syncOK(t, s, "widgets")
	if change(res, "refs/heads/c") != "deleted" {
		t.Fatalf("deletion: %+v", res.UpdatedRefs)
	}
	br, _ := s.c.GetBranchWithResponse(ctx(t), "widgets", "c", nil)
	if br.StatusCode() != 404 {
		t.Fatalf("deleted branch still served: %d", br.StatusCode())
	}

	// An unreachable upstream: 502 with the git error, last good view kept.
	before, _ := s.c.GetViewWithResponse(ctx(t), "widgets", nil)
	if err := os.Rename(up.bare, up.bare+".moved"); err != nil {
		t.Fatal(err)
	}
	bad, err := s.c.SyncRepoWithResponse(ctx(t), "widgets", nil)
	if err != nil || bad.StatusCode() != 502 || bad.ApplicationproblemJSON502 == nil || bad.ApplicationproblemJSON502.Detail == nil {
		t.Fatalf("unreachable sync: %v %d %s", err, bad.StatusCode(), bad.Body)
	}
	after, _ := s.c.GetViewWithResponse(ctx(t), "widgets", nil)
	if after.JSON200 == nil || after.JSON200.Version != before.JSON200.Version || len(after.JSON200.Stacks) != len(before.JSON200.Stacks) {
		t.Fatal("a failed fetch changed the served view")
	}
	r, _ := s.c.GetRepoWithResponse(ctx(t), "widgets")
	if st := r.JSON200.SyncStatus; st == nil || st.ConsecutiveFailures != 1 || st.LastError == nil || st.State != client.SyncStatusStateIdle {
		t.Fatalf("sync status after failure = %+v", st)
	}
	if err := os.Rename(up.bare+".moved", up.bare); err != nil {
		t.Fatal(err)
	}
	syncOK(t, s, "widgets")

	// History, newest first, and one sync by id.
	hist, err := s.c.ListSyncsWithResponse(ctx(t), "widgets", nil)
	if err != nil || hist.JSON200 == nil || len(*hist.JSON200) < 5 || (*hist.JSON200)[0].State != client.SyncResultStateSucceeded {
		t.Fatalf("history: %v %s", err, hist.Body)
	}
	one, err := s.c.GetSyncWithResponse(ctx(t), "widgets", (*hist.JSON200)[1].Id)
	if err != nil || one.JSON200 == nil || one.JSON200.State != client.SyncResultStateFailed {
		t.Fatalf("sync by id: %v %s", err, one.Body)
	}
	if got := cf.n.Load(); got != 5 {
		t.Fatalf("fetches = %d, want 5 (one per manual sync)", got)
	}
}

func strptr(s string) *string { return &s }

func TestSyncWithoutWaitAnswers202(t *testing.T) {
	up := newUpstream(t, "acme/async.git")
	s := startServer(t, mirrorConfig(t), impl.Options{})
	onboard(t, s, up.url)
	wait := false
	resp, err := s.c.SyncRepoWithResponse(ctx(t), "async", &client.SyncRepoParams{Wait: &wait})
	if err != nil || resp.StatusCode() != 202 || resp.JSON202 == nil {
		t.Fatalf("202: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	loc := resp.HTTPResponse.Header.Get("Location")
	if loc != "/api/v1/repos/async/syncs/"+resp.JSON202.Id {
		t.Fatalf("Location = %q", loc)
	}
	rf, _ := s.app.Refresh().Get("async")
	if _, err := rf.Wait(ctx(t), resp.JSON202.Id); err != nil {
		t.Fatal(err)
	}
	code, _, body := s.do("GET", loc, nil)
	if code != 200 || !strings.Contains(body, `"state":"succeeded"`) {
		t.Fatalf("GET %s: %d %s", loc, code, body)
	}
}

// heldMirror onboards a mirror named name, then holds its fetches: the
// returned id is a run whose fetch has started and waits until hold is
// closed.
func heldMirror(t *testing.T, name string, trigger refresh.Trigger) (s *testServer, rf *refresh.Refresher, cf *countingFetch, hold chan struct{}, first string) {
	t.Helper()
	up := newUpstream(t, "acme/"+name+".git")
	cf = &countingFetch{}
	s = startServer(t, mirrorConfig(t), impl.Options{BeforeRefresh: cf.fetch})
	onboard(t, s, up.url)
	cf.n.Store(0) // count the refreshes after the onboarding clone
	rf, _ = s.app.Refresh().Get(name)
	hold, started := make(chan struct{}), make(chan struct{}, 2)
	cf.set(hold, started)
	first = rf.Trigger(trigger)
	<-started
	return s, rf, cf, hold, first
}

// TestCoalescing holds a fetch, fires 50 triggers of every kind while it is
// held, releases it, and proves that exactly two fetches ran: the held one
// and one follow-up that absorbed all 50.
func TestCoalescing(t *testing.T) {
	_, rf, cf, hold, first := heldMirror(t, "busy", refresh.Manual) // the first fetch is running and held

	// Trigger returns once its request is queued, so when wg.Wait returns
	// all 50 requests are in, while the first fetch is still held.
	var wg sync.WaitGroup
	ids := make([]string, 50)
	kinds := []refresh.Trigger{refresh.Manual, refresh.Webhook, refresh.Interval, refresh.Watcher}
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ids[i] = rf.Trigger(kinds[i%len(kinds)])
		}(i)
	}
	wg.Wait()
	close(hold)
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 || seen[first] {
		t.Fatalf("triggers during a run went to runs %v, want one follow-up run", seen)
	}
	res, err := rf.Wait(ctx(t), ids[0])
	if err != nil || res.State != refresh.Succeeded {
		t.Fatalf("follow-up run: %+v %v", res, err)
	}
	firstRes, _ := rf.Get(first)
	if !res.StartedAt.After(*firstRes.FinishedAt) && !res.StartedAt.Equal(*firstRes.FinishedAt) {
		t.Fatal("the follow-up run overlapped the first")
	}
	if got := cf.n.Load(); got != 2 {
		t.Fatalf("fetches = %d, want exactly 2", got)
	}
}

// TestSyncWaitsForARunStartedAfterIt: a caller that arrives while a run is
// in progress gets the result of the follow-up run, not the running one.
func TestSyncWaitsForARunStartedAfterIt(t *testing.T) {
	s, rf, _, hold, first := heldMirror(t, "waiting", refresh.Webhook)
	queued := rf.Trigger(refresh.Interval) // the follow-up exists and cannot start yet
	got := make(chan refresh.Result, 1)
	go func() {
		res, err := s.c.SyncRepoWithResponse(context.Background(), "waiting", nil)
		if err != nil || res.JSON200 == nil {
			t.Errorf("sync: %v", err)
			got <- refresh.Result{}
			return
		}
		got <- refresh.Result{ID: res.JSON200.Id}
	}()
	// The API call can only join the queued run or, if it arrives after
	// that one started, a later one; never the held first run.
	close(hold)
	if r := <-got; r.ID == first || r.ID == "" {
		t.Fatalf("the manual caller got run %q (first %s, queued %s)", r.ID, first, queued)
	}
}

func TestSyncTimeoutThenRecovery(t *testing.T) {
	up := newUpstream(t, "acme/slow.git")
	cf := &countingFetch{}
	cfg := mirrorConfig(t)
	cfg.SyncTimeout = 300 * time.Millisecond
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	onboard(t, s, up.url)

	cf.set(make(chan struct{}), nil) // never released: the run times out
	resp, err := s.c.SyncRepoWithResponse(ctx(t), "slow", nil)
	if err != nil || resp.StatusCode() != 504 || resp.ApplicationproblemJSON504 == nil {
		t.Fatalf("timeout: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	cf.set(nil, nil)
	up.work.Commit("more", map[string]string{"m": "m\n"})
	up.push("main")
	if res := syncOK(t, s, "slow"); change(res, "refs/heads/main") != "updated" {
		t.Fatalf("recovery sync = %+v", res.UpdatedRefs)
	}
}

func TestWebhooks(t *testing.T) {
	up := newUpstream(t, "Acme/Hooked.git")
	cfg := mirrorConfig(t)
	cfg.WebhookSecret = "s3cret"
	cf := &countingFetch{}
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	onboard(t, s, up.url)
	rf, _ := s.app.Refresh().Get("Hooked")

	push := `{"ref":"refs/heads/main","before":"0","after":"1","repository":{"full_name":"acme/HOOKED"}}`
	post := func(event, delivery, body, sig, ctype string) (int, string) {
		hdr := []string{"Content-Type", ctype, "X-GitHub-Event", event, "X-GitHub-Delivery", delivery}
		if sig != "" {
			hdr = append(hdr, "X-Hub-Signature-256", sig)
		}
		code, _, text := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(body), hdr...)
		return code, text
	}

	up.work.Commit("hooked", map[string]string{"h": "h\n"})
	up.push("main")
	code, body := post("push", "d-1", push, sign("s3cret", push), "application/json")
	if code != 202 || !strings.Contains(body, `"repoID":"Hooked"`) {
		t.Fatalf("push: %d %s", code, body)
	}
	res, err := rf.Wait(ctx(t), rf.History()[0].ID)
	if err != nil || res.Trigger != refresh.Webhook || res.State != refresh.Succeeded || len(res.Changes) != 1 {
		t.Fatalf("webhook run = %+v %v", res, err)
	}
	n := cf.n.Load()

	form := "payload=" + url.QueryEscape(push)
	unknownPush := `{"ref":"refs/heads/main","repository":{"full_name":"x/y"}}`
	cases := []struct {
		name, event, delivery, body, sig, ctype string
		want                                    int
	}{
		{"repeated delivery", "push", "d-1", push, sign("s3cret", push), "application/json", 204},
		{"bad signature", "push", "d-2", push, sign("wrong", push), "application/json", 401},
		{"missing signature", "push", "d-3", push, "", "application/json", 401},
		{"ping", "ping", "d-4", `{"zen":"hi"}`, sign("s3cret", `{"zen":"hi"}`), "application/json", 204},
		{"other event", "issues", "d-5", `{}`, sign("s3cret", `{}`), "application/json", 204},
		{"unknown repository", "push", "d-6", unknownPush, sign("s3cret", unknownPush), "application/json", 204},
		{"form encoded", "push", "d-7", form, sign("s3cret", form), "application/x-www-form-urlencoded", 202},
		// Verified but unusable: accepted (GitHub could do nothing about
		// a 4xx), logged, nothing fetched.
		{"verified, not JSON", "push", "d-9", "not json", sign("s3cret", "not json"), "application/json", 204},
		{"verified, a JSON array", "push", "d-10", "[1]", sign("s3cret", "[1]"), "application/json", 204},
		{"verified, no repository", "push", "d-11", `{"ref":"x"}`, sign("s3cret", `{"ref":"x"}`), "application/json", 204},
		{"verified, another content type", "push", "d-12", push, sign("s3cret", push), "text/plain", 204},
		{"verified, no content type", "push", "d-13", push, sign("s3cret", push), "", 204},
		{"bad signature, not JSON", "push", "d-14", "not json", sign("wrong", "not json"), "application/json", 401},
	}
	for _, tc := range cases {
		if code, text := post(tc.event, tc.delivery, tc.body, tc.sig, tc.ctype); code != tc.want {
			t.Fatalf("%s: %d %s", tc.name, code, text)
		}
	}
	if _, err := rf.Wait(ctx(t), rf.History()[0].ID); err != nil {
		t.Fatal(err)
	}
	if got := cf.n.Load() - n; got != 1 {
		t.Fatalf("fetches after the table = %d, want 1 (the form-encoded push only)", got)
	}
	if got := strings.Count(s.logs.String(), "a verified push delivery cannot be parsed"); got != 5 {
		t.Fatalf("%d unparseable deliveries logged, want 5", got)
	}
	big := `{"pad":"` + strings.Repeat("x", 1<<20) + `"}`
	if code, _ := post("push", "d-8", big, sign("s3cret", big), "application/json"); code != 413 {
		t.Fatalf("big body: %d", code)
	}
}

func TestIntervalLoop(t *testing.T) {
	up := newUpstream(t, "acme/ticking.git")
	cfg := mirrorConfig(t)
	cfg.SyncInterval = time.Hour
	// Each time the loop waits, it hands its timer channel to the test: so
	// receiving the next one proves the previous run has finished.
	waits := make(chan chan time.Time)
	done := make(chan struct{})
	after := func(time.Duration) <-chan time.Time {
		c := make(chan time.Time, 1)
		select {
		case waits <- c:
		case <-done:
		}
		return c
	}
	cf := &countingFetch{}
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch, After: after})
	t.Cleanup(func() { close(done) })
	onboard(t, s, up.url)
	rf, _ := s.app.Refresh().Get("ticking")
	timer := <-waits
	repo, _ := s.c.GetRepoWithResponse(ctx(t), "ticking")
	if repo.JSON200.SyncStatus.NextScheduledAt == nil {
		t.Fatal("no next scheduled run")
	}

	// The remote did not change: the interval run lists it, fetches and
	// writes nothing, rebuilds nothing, and records a success.
	mirrorDir := filepath.Join(cfg.DataDir, "mirrors", "ticking.git")
	before := treeHash(t, mirrorDir)
	timer <- time.Now()
	timer = <-waits
	hist := rf.History()
	if hist[0].Trigger != refresh.Interval || hist[0].State != refresh.Succeeded || len(hist[0].Changes) != 0 || hist[0].ViewVersion != vv(repo.JSON200.ViewVersion) {
		t.Fatalf("unchanged interval run = %+v", hist[0])
	}
	if diffs := diffTrees(before, treeHash(t, mirrorDir)); len(diffs) > 0 {
		t.Fatalf("the remote did not change, yet the mirror did: %v", diffs)
	}

	up.work.Commit("tick", map[string]string{"t": "t\n"})
	up.push("main")
	timer <- time.Now()
	<-waits
	hist = rf.History()
	if hist[0].Trigger != refresh.Interval || len(hist[0].Changes) != 1 || hist[0].ViewVersion <= vv(repo.JSON200.ViewVersion) {
		t.Fatalf("interval run after a push = %+v", hist[0])
	}
}

// TestLocalSyncNeverFetches: a working repository whose upstream has new
// commits and which has a dirty file stays byte-identical through syncs.
func TestLocalSyncNeverFetches(t *testing.T) {
	up := newUpstream(t, "acme/local.git")
	dir := filepath.Join(t.TempDir(), "checkout")
	up.work.Run(filepath.Dir(dir), "clone", "-q", up.bare, dir)
	local := up.work.Sibling(dir)
	local.Git("checkout", "-q", "-b", "mine")
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("dirty\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up.work.Commit("upstream moves on", map[string]string{"new": "n\n"})
	up.push("main")

	before := treeHash(t, dir)
	cf := &countingFetch{}
	s := startServer(t, baseConfig(t, dir), impl.Options{BeforeRefresh: cf.fetch})
	for i := 0; i < 3; i++ {
		res := syncOK(t, s, "local")
		if res.Mode != client.Reread {
			t.Fatalf("local sync mode = %s", res.Mode)
		}
	}
	if diffs := diffTrees(before, treeHash(t, dir)); len(diffs) > 0 {
		t.Fatalf("a local sync changed the working repository: %v", diffs)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git", "FETCH_HEAD")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("FETCH_HEAD exists: %v", err)
	}
	if head := local.Git("symbolic-ref", "HEAD"); head != "refs/heads/mine" {
		t.Fatalf("HEAD = %s", head)
	}
	if cf.n.Load() != 0 {
		t.Fatal("a local sync reached fetch code")
	}
	// The origin is a filesystem path: never shown (see TestRemoteIsNeverALocalPath).
	r, _ := s.c.GetRepoWithResponse(ctx(t), "local")
	if r.JSON200.Remote != nil {
		t.Fatalf("remote = %q", *r.JSON200.Remote)
	}
}

// sse reads a server-sent event stream.
type sse struct {
	sc   *bufio.Scanner
	resp *http.Response
}

func openEvents(t *testing.T, s *testServer, repo string) *sse {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx(t), "GET", s.srv.URL+"/api/v1/repos/"+repo+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sse{sc: bufio.NewScanner(resp.Body), resp: resp}
}

// next returns the next event's type and data.
func (e *sse) next(t *testing.T) (string, string) {
	t.Helper()
	var typ, data string
	for e.sc.Scan() {
		line := e.sc.Text()
		switch {
		case line == "" && typ != "":
			return typ, data
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
	t.Fatalf("event stream ended: %v", e.sc.Err())
	return "", ""
}

// until reads events until one of type typ whose data contains want.
func (e *sse) until(t *testing.T, typ, want string) string {
	t.Helper()
	for {
		et, data := e.next(t)
		if et == typ && strings.Contains(data, want) {
			return data
		}
	}
}

// TestWatcherReflectsWorkingRepoChanges: a commit, a new branch and a
// checkout in the working repository show up without any API call.
func TestWatcherReflectsWorkingRepoChanges(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	ev := openEvents(t, s, "local")
	if typ, _ := ev.next(t); typ != "connected" {
		t.Fatalf("first event %q", typ)
	}
	r.Git("checkout", "-q", "c")
	r.Commit("c2", map[string]string{"c.txt": "c2\n"})
	ev.until(t, "branch_switched", `"to":"c"`)
	// The checkout and the commit may land in one run or two: read view
	// updates until the view holds the commit.
	want := r.Rev("c")
	for {
		br, _ := s.c.GetBranchWithResponse(ctx(t), "local", "c", nil)
		if br.JSON200 != nil && br.JSON200.Sha == want {
			break
		}
		ev.until(t, "view_updated", "version")
	}
	r.Git("branch", "fresh/one", "c")
	for {
		if b, _ := s.c.GetBranchWithResponse(ctx(t), "local", "fresh/one", nil); b.StatusCode() == 200 {
			break
		}
		ev.until(t, "view_updated", "version")
	}
	res, _ := s.app.Refresh().Get("local")
	if h := res.History(); h[0].Trigger != refresh.Watcher || h[0].Mode != refresh.ModeReread {
		t.Fatalf("watcher run = %+v", h[0])
	}
}

func TestEventsOfAManualSync(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	ev := openEvents(t, s, "local")
	ev.until(t, "connected", "local")
	r.Git("update-ref", "refs/heads/extra", "main")
	syncOK(t, s, "local")
	ev.until(t, "sync_started", `"trigger"`)
	ev.until(t, "sync_finished", `"state":"succeeded"`)
	if code, _, _ := s.do("GET", "/api/v1/repos/nope/events", nil); code != 404 {
		t.Fatalf("events of unknown repo: %d", code)
	}
}

// TestConfiguredMirrorsCloneInBackground: mirrors from the config file are
// served at once and cloned in the background; /readyz answers 503 until the
// first clone finished, and syncStatus shows the run.
func TestConfiguredMirrorsCloneInBackground(t *testing.T) {
	up := newUpstream(t, "acme/configured.git")
	cf := &countingFetch{}
	cfg := mirrorConfig(t)
	cfg.Repos = []config.RepoConfig{{ID: "cfg", URL: up.url}}
	// Before Start nothing runs in the background: the repository is
	// served, with no view yet.
	s := startServerNoStart(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	code, _, body := s.do("GET", "/readyz", nil)
	if code != 503 || !strings.Contains(body, "cfg") {
		t.Fatalf("readyz before the clone: %d %s", code, body)
	}
	list, _ := s.c.ListReposWithResponse(ctx(t))
	if list.JSON200 == nil || len(*list.JSON200) != 1 || (*list.JSON200)[0].ViewVersion != nil {
		t.Fatalf("repos before the clone: %s", list.Body)
	}
	s.start(t)
	rf, _ := s.app.Refresh().Get("cfg")
	if err := rf.Idle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	h := rf.History()
	if res := h[len(h)-1]; len(h) != 1 || res.Trigger != refresh.Startup || res.Mode != refresh.ModeMirrorFetch || res.State != refresh.Succeeded {
		t.Fatalf("background clone: %+v", h)
	}
	if code, _, body := s.do("GET", "/readyz", nil); code != 200 {
		t.Fatalf("readyz after the clone: %d %s", code, body)
	}
	r, _ := s.c.GetRepoWithResponse(ctx(t), "cfg")
	if r.JSON200 == nil || vv(r.JSON200.ViewVersion) < 1 || r.JSON200.SyncStatus.LastSuccessAt == nil || r.JSON200.Remote == nil {
		t.Fatalf("repo after the clone: %s", r.Body)
	}
}

// TestEventConnectionCaps: past the per-client cap, 429 with Retry-After.
func TestEventConnectionCaps(t *testing.T) {
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{EventLimits: events.Limits{PerClient: 2, Total: 10}})
	a := openEvents(t, s, "local")
	b := openEvents(t, s, "local")
	a.next(t)
	b.next(t)
	code, hdr, body := s.do("GET", "/api/v1/repos/local/events", nil)
	if code != 429 || hdr.Get("Retry-After") == "" || !strings.Contains(body, "too-many-requests") {
		t.Fatalf("third stream: %d %s", code, body)
	}
}

// TestWebhookPushForLocalRepo: a push for the local repository's GitHub name
// is answered 204 and fetches nothing.
func TestWebhookPushForLocalRepo(t *testing.T) {
	r := stackRepo(t)
	r.Git("remote", "add", "origin", "https://github.com/acme/mine.git")
	cfg := baseConfig(t, r.Dir)
	cfg.WebhookSecret = "k"
	cf := &countingFetch{}
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	before := treeHash(t, r.Dir)
	body := `{"ref":"refs/heads/main","repository":{"full_name":"acme/mine"}}`
	code, _, text := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(body),
		"Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", "x1", "X-Hub-Signature-256", sign("k", body))
	if code != 204 {
		t.Fatalf("push for the local repo: %d %s", code, text)
	}
	rf, _ := s.app.Refresh().Get("local")
	if h := rf.History(); len(h) != 1 || cf.n.Load() != 0 {
		t.Fatalf("a push for a local repository triggered work: %d runs, %d fetches", len(h), cf.n.Load())
	}
	if diffs := diffTrees(before, treeHash(t, r.Dir)); len(diffs) > 0 {
		t.Fatalf("changed: %v", diffs)
	}
}

// TestSyncWorkersBoundParallelism: with one worker, a second repository's
// refresh starts only after the first one's held fetch has finished.
func TestSyncWorkersBoundParallelism(t *testing.T) {
	slow, fast := newUpstream(t, "acme/slowpoke.git"), newUpstream(t, "acme/quick.git")
	hold := make(chan struct{})
	started := make(chan string, 4)
	var armed atomic.Bool // after both onboardings
	fetch := func(ctx context.Context, id string, _ refresh.Mode) error {
		if !armed.Load() {
			return nil
		}
		started <- id
		if id == "slowpoke" {
			select {
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	cfg := mirrorConfig(t)
	cfg.SyncWorkers = 1
	s := startServer(t, cfg, impl.Options{BeforeRefresh: fetch})
	onboard(t, s, slow.url)
	onboard(t, s, fast.url)
	rfSlow, _ := s.app.Refresh().Get("slowpoke")
	rfFast, _ := s.app.Refresh().Get("quick")
	armed.Store(true)

	a := rfSlow.Trigger(refresh.Manual)
	if got := <-started; got != "slowpoke" {
		t.Fatalf("first fetch was %s", got)
	}
	b := rfFast.Trigger(refresh.Manual)
	close(hold)
	ra, err := rfSlow.Wait(ctx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := rfFast.Wait(ctx(t), b)
	if err != nil {
		t.Fatal(err)
	}
	if rb.StartedAt.Before(*ra.FinishedAt) {
		t.Fatalf("the second repository started at %s, before the first finished at %s", rb.StartedAt, ra.FinishedAt)
	}
}

// TestIntervalRunJoinedByAManualTriggerFetches: a queued interval run that a
// manual trigger joins becomes a manual run and fetches, even when the
// remote's refs look unchanged.
func TestIntervalRunJoinedByAManualTriggerFetches(t *testing.T) {
	_, rf, cf, hold, first := heldMirror(t, "joined", refresh.Webhook)
	queued := rf.Trigger(refresh.Interval)
	if joined := rf.Trigger(refresh.Manual); joined != queued {
		t.Fatalf("the manual trigger went to run %s, not the queued %s", joined, queued)
	}
	close(hold)
	res, err := rf.Wait(ctx(t), queued)
	if err != nil || res.Trigger != refresh.Manual || res.State != refresh.Succeeded {
		t.Fatalf("joined run = %+v %v", res, err)
	}
	if _, err := rf.Wait(ctx(t), first); err != nil {
		t.Fatal(err)
	}
	if got := cf.n.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (the joined run must fetch)", got)
	}
}
