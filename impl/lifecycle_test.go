package impl_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/store"
)

func readCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// restart stops s completely (background work, HTTP server, App: the
// database is closed) and starts a new server on the same configuration,
// so the same data directory.
func restart(t *testing.T, s *testServer, cfg config.Config, opts impl.Options) *testServer {
	t.Helper()
	s.cancel()
	s.srv.CloseClientConnections()
	s.srv.Close()
	s.app.Close()
	return startServer(t, cfg, opts)
}

func mirrorDir(cfg config.Config, id string) string {
	return filepath.Join(cfg.DataDir, "mirrors", id+".git")
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// idle waits until the repository has no queued or running refresh.
func idle(t *testing.T, s *testServer, id string) *refresh.Refresher {
	t.Helper()
	rf, ok := s.app.Refresh().Get(id)
	if !ok {
		t.Fatalf("no refresher for %s", id)
	}
	if err := rf.Idle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	return rf
}

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// nextLink is the URL of a Link header's rel="next" ("" when none).
func nextLink(h http.Header) string {
	m := regexp.MustCompile(`^<([^>]+)>;\s*rel="next"$`).FindStringSubmatch(h.Get("Link"))
	if m == nil {
		return ""
	}
	return m[1]
}

// allSyncs follows the next links from the first page of limit results.
func allSyncs(t *testing.T, s *testServer, repo string, limit int) []client.SyncResult {
	t.Helper()
	var out []client.SyncResult
	resp, err := s.c.ListSyncsWithResponse(ctx(t), repo, &client.ListSyncsParams{Limit: &limit})
	for {
		if err != nil || resp.JSON200 == nil {
			t.Fatalf("list syncs: %v %s", err, resp.Body)
		}
		if len(*resp.JSON200) > limit {
			t.Fatalf("a page of %d results, limit %d", len(*resp.JSON200), limit)
		}
		out = append(out, *resp.JSON200...)
		next := nextLink(resp.HTTPResponse.Header)
		if next == "" {
			return out
		}
		code, hdr, body := s.do("GET", next, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", next, code, body)
		}
		resp, err = client.ParseListSyncsResponse(&http.Response{StatusCode: code, Header: hdr, Body: readCloser(body)})
	}
}

// TestOnboardedMirrorSurvivesRestart: after a restart on the same data
// directory, a mirror onboarded through the API is served again (from
// disk first, then fetched), with its sync history; a 202's Location still
// answers; the sync ids of both runs are unique and time-ordered.
func TestOnboardedMirrorSurvivesRestart(t *testing.T) {
	up := newUpstream(t, "acme/durable.git")
	cfg := mirrorConfig(t)
	s := startServer(t, cfg, impl.Options{})
	repo := onboard(t, s, up.url)
	up.work.Commit("more", map[string]string{"m": "m\n"})
	up.push("main")
	syncOK(t, s, "durable")
	wait := false
	accepted, err := s.c.SyncRepoWithResponse(ctx(t), "durable", &client.SyncRepoParams{Wait: &wait})
	if err != nil || accepted.JSON202 == nil {
		t.Fatalf("202: %v %s", err, accepted.Body)
	}
	loc := accepted.HTTPResponse.Header.Get("Location")
	idle(t, s, "durable")
	code, _, before := s.do("GET", loc, nil)
	if code != 200 || !strings.Contains(before, `"state":"succeeded"`) {
		t.Fatalf("GET %s: %d %s", loc, code, before)
	}
	histBefore := allSyncs(t, s, "durable", 100)
	if len(histBefore) != 3 {
		t.Fatalf("history before restart: %+v", histBefore)
	}
	view, _ := s.c.GetViewWithResponse(ctx(t), "durable", nil)

	s = restart(t, s, cfg, impl.Options{})
	got, err := s.c.GetRepoWithResponse(ctx(t), "durable")
	if err != nil || got.JSON200 == nil || got.JSON200.Kind != client.Mirror || got.JSON200.FullName == nil || *got.JSON200.FullName != "acme/durable" {
		t.Fatalf("repository after restart: %v %s", err, got.Body)
	}
	rf := idle(t, s, "durable")
	// The same start-up path as a configured mirror: read from disk,
	// then fetched.
	h := rf.History()
	if len(h) < 2 || h[1].Trigger != refresh.Startup || h[1].Mode != refresh.ModeReread || h[0].Trigger != refresh.Startup || h[0].Mode != refresh.ModeMirrorFetch {
		t.Fatalf("start-up runs: %+v", h[:min(len(h), 2)])
	}
	after, _ := s.c.GetViewWithResponse(ctx(t), "durable", nil)
	if after.JSON200 == nil || len(after.JSON200.Stacks) != len(view.JSON200.Stacks) || after.JSON200.Repo.HeadSha == nil {
		t.Fatalf("view after restart: %s", after.Body)
	}
	code, _, again := s.do("GET", loc, nil)
	if code != 200 || again != before {
		t.Fatalf("GET %s after restart: %d\n%s\nwant\n%s", loc, code, again, before)
	}
	syncOK(t, s, "durable")

	all := allSyncs(t, s, "durable", 2)
	if len(all) != len(histBefore)+3 { // + start-up read, start-up fetch, manual
		t.Fatalf("%d syncs after restart, want %d", len(all), len(histBefore)+3)
	}
	for i, sy := range all {
		if !uuidV7.MatchString(sy.Id) {
			t.Errorf("sync id %q is not a UUIDv7", sy.Id)
		}
		if i > 0 && !(sy.Id < all[i-1].Id) {
			t.Errorf("ids not strictly decreasing, newest first: %s then %s", all[i-1].Id, sy.Id)
		}
		if i > 0 && sy.QueuedAt.After(all[i-1].QueuedAt) {
			t.Errorf("id order differs from time order at %d", i)
		}
	}
	for _, old := range histBefore {
		if !slices.ContainsFunc(all, func(sy client.SyncResult) bool { return sy.Id == old.Id }) {
			t.Errorf("sync %s lost in the restart", old.Id)
		}
	}
	if got := all[len(all)-1]; got.Trigger != client.SyncResultTrigger(refresh.Onboard) || got.Id != histBefore[len(histBefore)-1].Id {
		t.Fatalf("oldest sync is %+v, want the onboarding clone", got)
	}
	if vv(repo.ViewVersion) < 1 {
		t.Fatal("onboarding built no view")
	}
}

// TestSyncsInterruptedByARestart: a sync running when the server stopped
// is failed with the shutdown's error; a sync a crashed process left
// queued is failed at the next start. Both still answer at their Location.
func TestSyncsInterruptedByARestart(t *testing.T) {
	up := newUpstream(t, "acme/interrupted.git")
	cfg := mirrorConfig(t)
	cf := &countingFetch{}
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	onboard(t, s, up.url)
	started := make(chan struct{}, 1)
	cf.set(make(chan struct{}), started) // never released
	wait := false
	accepted, err := s.c.SyncRepoWithResponse(ctx(t), "interrupted", &client.SyncRepoParams{Wait: &wait})
	if err != nil || accepted.JSON202 == nil {
		t.Fatalf("202: %v %s", err, accepted.Body)
	}
	<-started
	held := accepted.HTTPResponse.Header.Get("Location")
	s.cancel()
	s.srv.Close()
	s.app.Close() // cancels the held run

	// What a crashed process leaves: a queued sync nobody will run.
	st, err := store.Open(context.Background(), filepath.Join(cfg.DataDir, "stackd.db"))
	if err != nil {
		t.Fatal(err)
	}
	crashed := "0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"
	if err := st.PutSync(context.Background(), store.Sync{ID: crashed, RepoID: "interrupted", Trigger: "webhook", Mode: "mirror-fetch",
		State: store.StateQueued, QueuedAt: time.Now().Add(-time.Hour)}, 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	s = startServer(t, cfg, impl.Options{})
	for _, tc := range []struct{ path, err string }{
		{held, refresh.ErrClosed.Error()},
		{"/api/v1/repos/interrupted/syncs/" + crashed, "stackd stopped before this sync finished"},
	} {
		resp, err := s.c.GetSyncWithResponse(ctx(t), "interrupted", tc.path[strings.LastIndex(tc.path, "/")+1:])
		if err != nil || resp.JSON200 == nil || resp.JSON200.State != client.SyncResultStateFailed || resp.JSON200.Error == nil ||
			!strings.Contains(*resp.JSON200.Error, tc.err) || resp.JSON200.FinishedAt == nil {
			t.Fatalf("GET %s: %v %s", tc.path, err, resp.Body)
		}
	}
}

// TestDeleteRepo: DELETE removes an onboarded mirror (204): no longer
// served, its directory and history gone, not restored by a restart, and
// audited. The working repository and configured mirrors answer 409 with
// the reason, an unknown id 404.
func TestDeleteRepo(t *testing.T) {
	up, other, configured := newUpstream(t, "acme/doomed.git"), newUpstream(t, "acme/spared.git"), newUpstream(t, "acme/declared.git")
	cfg := mirrorConfig(t)
	cfg.Cwd, cfg.CwdExplicit = stackRepo(t).Dir, true
	cfg.Repos = []config.RepoConfig{{ID: "declared", URL: configured.url}}
	s := startServer(t, cfg, impl.Options{})
	onboard(t, s, up.url)
	onboard(t, s, other.url)
	syncOK(t, s, "doomed")
	idle(t, s, "declared")
	stream := openStream(t, s, "/api/v1/repos/doomed/events")
	connected := stream.next(t)
	spared := openStream(t, s, "/api/v1/repos/spared/events")
	spared.next(t) // connected

	del, err := s.c.DeleteRepoWithResponse(ctx(t), "DOOMED") // ids are case-insensitive
	if err != nil || del.StatusCode() != 204 {
		t.Fatalf("DELETE: %v %d %s", err, del.StatusCode(), del.Body)
	}
	// The removed repository's event stream gets repo_removed, then ends;
	// a reconnection with its id finds nothing. Other streams go on.
	last := stream.next(t)
	if last.typ != "repo_removed" || last.data != `{"id":"doomed"}` || last.id <= connected.id {
		t.Fatalf("last event of a removed repository's stream: %+v", last)
	}
	if stream.sc.Scan() {
		t.Fatalf("the stream went on after repo_removed: %q", stream.sc.Text())
	}
	if code, _, _ := s.do("GET", "/api/v1/repos/doomed/events", nil, "Last-Event-ID", strconv.FormatUint(last.id, 10)); code != 404 {
		t.Fatalf("reconnecting to a removed repository's events: %d", code)
	}
	syncOK(t, s, "spared")
	if ev := spared.next(t); ev.typ != "sync_started" {
		t.Fatalf("another repository's stream after the removal: %+v", ev)
	}
	if exists(t, mirrorDir(cfg, "doomed")) {
		t.Fatal("the mirror directory is still there")
	}
	for _, p := range []string{"/api/v1/repos/doomed", "/api/v1/repos/doomed/view", "/api/v1/repos/doomed/syncs"} {
		if code, _, body := s.do("GET", p, nil); code != 404 {
			t.Fatalf("GET %s after DELETE: %d %s", p, code, body)
		}
	}
	if code, _, _ := s.do("POST", "/api/v1/repos/doomed/sync", nil); code != 404 {
		t.Fatalf("sync after DELETE: %d", code)
	}
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "spared"); r.JSON200 == nil || !exists(t, mirrorDir(cfg, "spared")) {
		t.Fatal("another mirror went too")
	}

	for _, tc := range []struct {
		id     string
		status int
		detail string
	}{
		{"doomed", 404, "no repository"},
		{"never-there", 404, "no repository"},
		{"local", 409, "working repository"},
		{"declared", 409, "config file"},
	} {
		resp, err := s.c.DeleteRepoWithResponse(ctx(t), tc.id)
		if err != nil || resp.StatusCode() != tc.status {
			t.Fatalf("DELETE %s: %v %d %s", tc.id, err, resp.StatusCode(), resp.Body)
		}
		if !strings.Contains(string(resp.Body), tc.detail) || !strings.Contains(resp.HTTPResponse.Header.Get("Content-Type"), "problem+json") {
			t.Fatalf("DELETE %s: %s", tc.id, resp.Body)
		}
	}
	if !exists(t, mirrorDir(cfg, "declared")) {
		t.Fatal("a refused DELETE removed the configured mirror")
	}
	audit, err := s.c.ListAuditWithResponse(ctx(t), nil)
	if err != nil || audit.JSON200 == nil || !slices.ContainsFunc(*audit.JSON200, func(e client.AuditEntry) bool {
		return e.Action == "deleteRepo" && e.Outcome == "204" && e.Repo != nil && *e.Repo == "DOOMED"
	}) {
		t.Fatalf("audit: %v %s", err, audit.Body)
	}

	// Onboarded again, it starts afresh: a new clone, no old history.
	onboard(t, s, up.url)
	if h := allSyncs(t, s, "doomed", 50); len(h) != 1 || h[0].Trigger != client.SyncResultTrigger(refresh.Onboard) {
		t.Fatalf("history of the re-onboarded mirror: %+v", h)
	}
	if resp, _ := s.c.DeleteRepoWithResponse(ctx(t), "doomed"); resp.StatusCode() != 204 {
		t.Fatalf("second DELETE: %d", resp.StatusCode())
	}

	s = restart(t, s, cfg, impl.Options{})
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "doomed"); r.StatusCode() != 404 {
		t.Fatalf("a removed repository came back after a restart: %s", r.Body)
	}
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "spared"); r.JSON200 == nil {
		t.Fatal("the other onboarded mirror was not restored")
	}
	if exists(t, mirrorDir(cfg, "doomed")) {
		t.Fatal("the directory came back")
	}
}

// TestDeleteAccess: DELETE is gated like sync: 401 to anonymous callers
// with OIDC (nothing removed), 204 with a bearer ID token; 403 on a
// read-only server.
func TestDeleteAccess(t *testing.T) {
	idp := startIDP(t)
	up := newUpstream(t, "acme/guarded.git")
	cfg := oidcConfig(t, idp, "")
	cfg.AllowPrivateRemotes = true
	s := startServer(t, cfg, impl.Options{})
	bearer := []string{"Authorization", "Bearer " + idToken(t, idp, nil)}
	code, _, body := s.do("POST", "/api/v1/repos", strings.NewReader(`{"url":"`+up.url+`"}`), append([]string{"Content-Type", "application/json"}, bearer...)...)
	if code != 201 {
		t.Fatalf("onboard: %d %s", code, body)
	}
	if code, hdr, body := s.do("DELETE", "/api/v1/repos/guarded", nil); code != 401 || hdr.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("anonymous DELETE: %d %s", code, body)
	}
	if !exists(t, mirrorDir(cfg, "guarded")) {
		t.Fatal("a refused DELETE removed the mirror")
	}
	if code, _, body := s.do("DELETE", "/api/v1/repos/guarded", nil, bearer...); code != 204 {
		t.Fatalf("DELETE with a bearer token: %d %s", code, body)
	}
	if exists(t, mirrorDir(cfg, "guarded")) {
		t.Fatal("the mirror is still there")
	}

	// Read-only: refused before anything happens, also for a mirror
	// restored from the store.
	ro := mirrorConfig(t)
	s = startServer(t, ro, impl.Options{})
	onboard(t, s, up.url)
	ro.ReadOnly = true
	s = restart(t, s, ro, impl.Options{})
	if code, _, body := s.do("DELETE", "/api/v1/repos/guarded", nil); code != 403 || !strings.Contains(body, "/problems/read-only") {
		t.Fatalf("read-only DELETE: %d %s", code, body)
	}
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "guarded"); r.JSON200 == nil || !exists(t, mirrorDir(ro, "guarded")) {
		t.Fatal("a read-only server removed the mirror")
	}
}

// TestDeleteCancelsHeldRefresh: a DELETE while a fetch is held cancels it,
// fails the queued run, answers waiting callers 404, and leaves no run
// that could write the directory again.
func TestDeleteCancelsHeldRefresh(t *testing.T) {
	s, rf, cf, _, running := heldMirror(t, "held", refresh.Manual) // never released
	queued := rf.Trigger(refresh.Webhook)
	waiter := make(chan int, 1)
	go func() {
		resp, err := s.c.SyncRepoWithResponse(context.Background(), "held", nil)
		if err != nil {
			waiter <- 0
			return
		}
		waiter <- resp.StatusCode()
	}()
	dir := rf.Repo().Source().(*source.Mirror).Dir()
	if !exists(t, dir) {
		t.Fatal("no mirror to remove")
	}
	del, err := s.c.DeleteRepoWithResponse(ctx(t), "held")
	if err != nil || del.StatusCode() != 204 {
		t.Fatalf("DELETE: %v %d %s", err, del.StatusCode(), del.Body)
	}
	if exists(t, dir) {
		t.Fatal("the mirror directory is still there")
	}
	for _, id := range []string{running, queued} {
		res, err := rf.Wait(ctx(t), id)
		if err != nil || res.State != refresh.Failed || !errors.Is(res.Err, refresh.ErrRemoved) {
			t.Fatalf("run %s after DELETE: %+v %v", id, res, err)
		}
	}
	if code := <-waiter; code != 404 {
		t.Fatalf("a caller waiting on the removed repository got %d", code)
	}
	// Nothing the refresher is still asked can run again.
	if id := rf.Trigger(refresh.Interval); id != "" {
		t.Fatalf("a removed repository's refresher queued run %s", id)
	}
	if _, err := rf.Sync(ctx(t), refresh.Manual); !errors.Is(err, refresh.ErrRemoved) {
		t.Fatalf("Sync after removal: %v", err)
	}
	if got := cf.n.Load(); got != 1 {
		t.Fatalf("%d fetches, want only the held one", got)
	}
	if exists(t, dir) {
		t.Fatal("the mirror directory came back")
	}
}

// TestDeleteDuringOnboarding: a DELETE while the onboarding clone runs
// cancels it; even a run that ignores the cancellation cannot put the
// clone in place: the onboarding answers 409 and nothing is on disk.
func TestDeleteDuringOnboarding(t *testing.T) {
	up := newUpstream(t, "acme/fleeting.git")
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(ctx context.Context, id string, mode refresh.Mode) error {
		if mode != refresh.ModeMirrorFetch {
			return nil
		}
		once.Do(func() { close(started) })
		select {
		case <-ctx.Done(): // cancelled by the DELETE; go on regardless
		case <-release:
		}
		return nil
	}
	cfg := mirrorConfig(t)
	s := startServer(t, cfg, impl.Options{BeforeRefresh: hook})
	created := make(chan *client.CreateRepoResponse, 1)
	go func() {
		resp, _ := s.c.CreateRepoWithResponse(context.Background(), client.RepoCreate{Url: up.url})
		created <- resp
	}()
	<-started
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "fleeting"); r.JSON200 == nil || r.JSON200.SyncStatus.State != client.SyncStatusStateCloning {
		t.Fatalf("repository during its first clone: %s", r.Body)
	}
	del, err := s.c.DeleteRepoWithResponse(ctx(t), "fleeting")
	if err != nil || del.StatusCode() != 204 {
		t.Fatalf("DELETE: %v %d %s", err, del.StatusCode(), del.Body)
	}
	resp := <-created
	if resp == nil || resp.StatusCode() != 409 || !strings.Contains(string(resp.Body), "removed while it was being onboarded") {
		t.Fatalf("onboarding after DELETE: %+v", resp)
	}
	close(release)
	entries, err := os.ReadDir(filepath.Join(cfg.DataDir, "mirrors"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("mirrors/ after the cancelled onboarding: %v %v", entries, err)
	}
	s = restart(t, s, cfg, impl.Options{})
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "fleeting"); r.StatusCode() != 404 {
		t.Fatalf("the cancelled onboarding was stored: %s", r.Body)
	}
}

// TestOrphanMirrorsSweptAtStartup: at start-up, mirrors that belong to no
// repository (removed from the config file, or a stored repository the
// file now overrides) are removed with their history; directories that
// are not stackd mirrors are never touched.
func TestOrphanMirrorsSweptAtStartup(t *testing.T) {
	kept, dropped, onboarded := newUpstream(t, "acme/kept.git"), newUpstream(t, "acme/dropped.git"), newUpstream(t, "acme/stored.git")
	cfg := mirrorConfig(t)
	cfg.Repos = []config.RepoConfig{{ID: "kept", URL: kept.url}, {ID: "dropped", URL: dropped.url}}
	s := startServer(t, cfg, impl.Options{})
	idle(t, s, "kept")
	idle(t, s, "dropped")
	onboard(t, s, onboarded.url)
	stranger := newUpstream(t, "acme/stranger.git")
	onboard(t, s, stranger.url)

	// Things under mirrors/ that stackd did not clone.
	root := filepath.Join(cfg.DataDir, "mirrors")
	notes := filepath.Join(root, "notes.git")
	if err := os.MkdirAll(notes, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notes, "keep.txt"), []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kept.work.Run(root, "init", "-q", "--bare", "bare.git")
	if err := os.WriteFile(filepath.Join(root, "file.git"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "plain", "objects"), 0o700); err != nil {
		t.Fatal(err)
	}
	foreign := map[string]map[string]string{}
	for _, n := range []string{"notes.git", "bare.git", "plain"} {
		foreign[n] = treeHash(t, filepath.Join(root, n))
	}

	// The file now declares only "kept", plus the stranger's URL under
	// another id: the file wins over the stored "stranger".
	cfg.Repos = []config.RepoConfig{{ID: "kept", URL: kept.url}, {ID: "declared", URL: stranger.url}}
	s = restart(t, s, cfg, impl.Options{})
	for id, want := range map[string]bool{"kept": true, "stored": true, "declared": true, "dropped": false, "stranger": false} {
		if r, _ := s.c.GetRepoWithResponse(ctx(t), id); (r.StatusCode() == 200) != want {
			t.Errorf("%s served: %d, want %v", id, r.StatusCode(), want)
		}
	}
	if exists(t, mirrorDir(cfg, "dropped")) || exists(t, mirrorDir(cfg, "stranger")) {
		t.Fatal("an orphan mirror was not removed")
	}
	if !exists(t, mirrorDir(cfg, "kept")) || !exists(t, mirrorDir(cfg, "stored")) {
		t.Fatal("a served mirror was removed")
	}
	for n, before := range foreign {
		if diffs := diffTrees(before, treeHash(t, filepath.Join(root, n))); len(diffs) > 0 {
			t.Errorf("%s changed: %v", n, diffs)
		}
	}
	if !exists(t, filepath.Join(root, "file.git")) {
		t.Error("file.git was removed")
	}
	logs := s.logs.String()
	for _, want := range []string{`msg="removed a mirror that belongs to no repository" id=dropped`, `msg="removed a mirror that belongs to no repository" id=stranger`, "the file wins"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// The sync history of the removed mirrors is gone with them.
	st, err := store.Open(context.Background(), filepath.Join(cfg.DataDir, "stackd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	for _, id := range []string{"dropped", "stranger"} {
		if l, err := st.ListSyncs(context.Background(), id, "", 10); err != nil || len(l) != 0 {
			t.Errorf("history of %s: %d %v", id, len(l), err)
		}
	}
}

// TestSyncHistoryPagesAndRetention: pages follow the Link header and
// return every stored result once, also when syncs run between pages;
// the store keeps --sync-history finished results per repository.
func TestSyncHistoryPagesAndRetention(t *testing.T) {
	r := stackRepo(t)
	cfg := baseConfig(t, r.Dir)
	cfg.SyncHistory = 12
	s := startServerNoStart(t, cfg, impl.Options{}) // no watcher: the first read and the syncs below
	for range 9 {
		syncOK(t, s, "local")
	}
	limit := 3
	first, err := s.c.ListSyncsWithResponse(ctx(t), "local", &client.ListSyncsParams{Limit: &limit})
	if err != nil || first.JSON200 == nil || len(*first.JSON200) != 3 {
		t.Fatalf("first page: %v %s", err, first.Body)
	}
	next := nextLink(first.HTTPResponse.Header)
	if !strings.HasPrefix(next, "/api/v1/repos/local/syncs?") || !strings.Contains(next, "limit=3") || !strings.Contains(next, "cursor=") {
		t.Fatalf("Link = %q", first.HTTPResponse.Header.Get("Link"))
	}
	syncOK(t, s, "local") // a newer sync between pages: not in the later pages
	seen := map[string]int{}
	for _, sy := range *first.JSON200 {
		seen[sy.Id]++
	}
	for next != "" {
		code, hdr, body := s.do("GET", next, nil)
		page, err := client.ParseListSyncsResponse(&http.Response{StatusCode: code, Header: hdr, Body: readCloser(body)})
		if err != nil || page.JSON200 == nil {
			t.Fatalf("GET %s: %d %s", next, code, body)
		}
		for _, sy := range *page.JSON200 {
			seen[sy.Id]++
		}
		next = nextLink(hdr)
	}
	if len(seen) != 10 {
		t.Fatalf("%d results over the pages, want the 10 there were", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s returned %d times", id, n)
		}
	}
	for range 3 {
		syncOK(t, s, "local")
	}
	all := allSyncs(t, s, "local", 1000)
	if len(all) != 12 {
		t.Fatalf("history holds %d, want the 12 of --sync-history", len(all))
	}
	if slices.ContainsFunc(all, func(sy client.SyncResult) bool { return sy.Trigger == client.SyncResultTrigger(refresh.Onboard) }) {
		t.Fatal("the oldest results were kept instead of the newest")
	}
	for _, bad := range []string{"?limit=0", "?limit=1001", "?cursor=1", "?cursor=0190B3C4-5D6E-7F80-9A1B-2C3D4E5F6A7B"} {
		if code, _, body := s.do("GET", "/api/v1/repos/local/syncs"+bad, nil); code != 400 {
			t.Errorf("GET syncs%s: %d %s", bad, code, body)
		}
	}
}

// TestFullName: a mirror's fullName is shown and unique across
// repositories (409 before any clone); the working repository has none.
func TestFullName(t *testing.T) {
	up, other := newUpstream(t, "acme/named.git"), newUpstream(t, "elsewhere/another.git")
	cfg := mirrorConfig(t)
	cfg.Cwd, cfg.CwdExplicit = stackRepo(t).Dir, true
	s := startServer(t, cfg, impl.Options{})
	repo := onboard(t, s, up.url)
	if repo.FullName == nil || *repo.FullName != "acme/named" {
		t.Fatalf("fullName = %v", repo.FullName)
	}
	resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: other.url, FullName: strptr("ACME/Named")})
	if err != nil || resp.StatusCode() != 409 || !strings.Contains(string(resp.Body), "full name") {
		t.Fatalf("clashing fullName: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	if exists(t, mirrorDir(cfg, "another")) {
		t.Fatal("a refused onboarding cloned")
	}
	list, _ := s.c.ListReposWithResponse(ctx(t))
	for _, r := range *list.JSON200 {
		switch r.Id {
		case "local":
			if r.FullName != nil {
				t.Errorf("the working repository has fullName %q", *r.FullName)
			}
		case "named":
			if r.FullName == nil || *r.FullName != "acme/named" {
				t.Errorf("listed fullName %v", r.FullName)
			}
		}
	}
	if r := onboard(t, s, other.url); r.FullName == nil || *r.FullName != "elsewhere/another" {
		t.Fatalf("second mirror: %+v", r)
	}
}

// TestReadyzIgnoresOnboardedClones: a mirror onboarded through the API,
// or restored at start-up, that is still cloning does not make /readyz
// answer 503; its syncStatus says cloning.
func TestReadyzIgnoresOnboardedClones(t *testing.T) {
	up := newUpstream(t, "acme/slowclone.git")
	cf := &countingFetch{}
	cfg := mirrorConfig(t)
	cfg.Cwd, cfg.CwdExplicit = stackRepo(t).Dir, true
	s := startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	hold, started := make(chan struct{}), make(chan struct{}, 1)
	cf.set(hold, started)
	created := make(chan int, 1)
	go func() {
		resp, err := s.c.CreateRepoWithResponse(context.Background(), client.RepoCreate{Url: up.url})
		if err != nil {
			created <- 0
			return
		}
		created <- resp.StatusCode()
	}()
	<-started
	if code, _, body := s.do("GET", "/readyz", nil); code != 200 {
		t.Fatalf("readyz during an onboarding clone: %d %s", code, body)
	}
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "slowclone"); r.JSON200 == nil || r.JSON200.SyncStatus.State != client.SyncStatusStateCloning {
		t.Fatalf("syncStatus during the clone: %s", r.Body)
	}
	close(hold)
	if code := <-created; code != 201 {
		t.Fatalf("onboarding: %d", code)
	}
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "slowclone"); r.JSON200.SyncStatus.State != client.SyncStatusStateIdle {
		t.Fatalf("syncStatus after the clone: %s", r.Body)
	}

	// Restored without its directory: the start-up run clones it again.
	s.cancel()
	s.srv.Close()
	s.app.Close()
	if err := os.RemoveAll(mirrorDir(cfg, "slowclone")); err != nil {
		t.Fatal(err)
	}
	cf = &countingFetch{}
	hold, started = make(chan struct{}), make(chan struct{}, 1)
	cf.set(hold, started)
	s = startServer(t, cfg, impl.Options{BeforeRefresh: cf.fetch})
	<-started
	if code, _, body := s.do("GET", "/readyz", nil); code != 200 {
		t.Fatalf("readyz during a restored mirror's clone: %d %s", code, body)
	}
	if r, _ := s.c.GetRepoWithResponse(ctx(t), "slowclone"); r.JSON200 == nil || r.JSON200.SyncStatus.State != client.SyncStatusStateCloning {
		t.Fatalf("restored mirror during its clone: %s", r.Body)
	}
	close(hold)
	idle(t, s, "slowclone")
	if v, _ := s.c.GetViewWithResponse(ctx(t), "slowclone", nil); v.JSON200 == nil || len(v.JSON200.Stacks) != 1 {
		t.Fatalf("view after the clone: %s", v.Body)
	}
}

// TestRepoOriginAndCounts: through the generated client, each repository
// resource says where it was declared (the working repository local, a
// mirror of the config file config, an onboarded one api), which decides
// whether DELETE removes it (only api), and what its current view holds:
// stacks, their branches and how many need a restack, counted as the
// view itself shows them, moving with the view; a repository without a
// view has no counts, and the view's own repo carries neither field.
func TestRepoOriginAndCounts(t *testing.T) {
	configured, onboarded := newUpstream(t, "acme/configured.git"), newUpstream(t, "acme/onboarded.git")
	work := stackRepo(t)
	// Trunk moves on: a (whose stackit parent revision is the old main)
	// needs a restack; b and c do not. A plain branch off trunk is a
	// second stack.
	work.Git("checkout", "-q", "main")
	work.Commit("main2", map[string]string{"README": "hello again\n"})
	work.Branch("solo", "main")
	work.Commit("solo1", map[string]string{"solo.txt": "solo\n"})
	cfg := mirrorConfig(t)
	cfg.Cwd, cfg.CwdExplicit = work.Dir, true
	cfg.Repos = []config.RepoConfig{{ID: "configured", URL: configured.url}}
	s := startServer(t, cfg, impl.Options{})
	onboard(t, s, onboarded.url)
	syncOK(t, s, "local")
	syncOK(t, s, "configured")

	// countView counts a view as the dashboard would.
	countView := func(id string) client.RepoCounts {
		t.Helper()
		v, err := s.c.GetViewWithResponse(ctx(t), id, nil)
		if err != nil || v.JSON200 == nil {
			t.Fatalf("view %s: %v %d", id, err, v.StatusCode())
		}
		if v.JSON200.Repo.Origin != nil || v.JSON200.Repo.Counts != nil {
			t.Errorf("the view of %s carries origin %v or counts %v", id, v.JSON200.Repo.Origin, v.JSON200.Repo.Counts)
		}
		var c client.RepoCounts
		for _, st := range v.JSON200.Stacks {
			c.Stacks++
			for _, b := range st.Branches {
				c.Branches++
				if b.NeedsRestack {
					c.NeedsRestack++
				}
			}
		}
		return c
	}
	listed := func() map[string]client.Repo {
		t.Helper()
		list, err := s.c.ListReposWithResponse(ctx(t))
		if err != nil || list.JSON200 == nil {
			t.Fatalf("list: %v", err)
		}
		out := map[string]client.Repo{}
		for _, r := range *list.JSON200 {
			out[r.Id] = r
		}
		return out
	}
	want := map[string]struct {
		origin client.RepoOrigin
		counts client.RepoCounts
		delete int
	}{
		"local":      {client.OriginLocal, client.RepoCounts{Stacks: 2, Branches: 4, NeedsRestack: 1}, 409},
		"configured": {client.OriginConfig, client.RepoCounts{Stacks: 1, Branches: 3}, 409},
		"onboarded":  {client.OriginAPI, client.RepoCounts{Stacks: 1, Branches: 3}, 204},
	}
	repos := listed()
	if len(repos) != len(want) {
		t.Fatalf("listed %v", repos)
	}
	for id, w := range want {
		r := repos[id]
		one, err := s.c.GetRepoWithResponse(ctx(t), id)
		if err != nil || one.JSON200 == nil {
			t.Fatalf("get %s: %v", id, err)
		}
		for _, got := range []client.Repo{r, *one.JSON200} {
			if got.Origin == nil || *got.Origin != w.origin {
				t.Errorf("%s: origin %v, want %s", id, got.Origin, w.origin)
			}
			if got.Counts == nil || *got.Counts != w.counts {
				t.Errorf("%s: counts %+v, want %+v", id, got.Counts, w.counts)
			}
		}
		if c := countView(id); c != w.counts {
			t.Errorf("%s: the view counts %+v, the fixture %+v", id, c, w.counts)
		}
	}
	for id, w := range want {
		resp, err := s.c.DeleteRepoWithResponse(ctx(t), id)
		if err != nil || resp.StatusCode() != w.delete {
			t.Errorf("DELETE %s (origin %s): %v %d, want %d", id, w.origin, err, resp.StatusCode(), w.delete)
		}
	}

	// The counts follow the view: a new branch on solo joins its stack.
	work.Git("checkout", "-q", "solo")
	work.Branch("solo2", "solo")
	work.Commit("solo2 work", map[string]string{"solo2.txt": "x\n"})
	syncOK(t, s, "local")
	got := listed()["local"].Counts
	if w := (client.RepoCounts{Stacks: 2, Branches: 5, NeedsRestack: 1}); got == nil || *got != w || countView("local") != w {
		t.Errorf("after a new branch: counts %+v, want %+v", got, w)
	}

	// A repository without a view yet has no counts.
	cfg2 := mirrorConfig(t)
	cfg2.Repos = []config.RepoConfig{{ID: "pending", URL: configured.url}}
	empty := startServerNoStart(t, cfg2, impl.Options{})
	r, err := empty.c.GetRepoWithResponse(ctx(t), "pending")
	if err != nil || r.JSON200 == nil || r.JSON200.ViewVersion != nil || r.JSON200.Counts != nil || r.JSON200.Origin == nil || *r.JSON200.Origin != client.OriginConfig {
		t.Fatalf("a mirror not cloned yet: %v %s", err, r.Body)
	}
}

// TestRepoIDHistoryStartsEmpty: a failed onboarding (a real unreachable
// remote) leaves no sync rows in the store, and a later successful
// onboarding under the same id (of another URL) lists only its own syncs,
// on SQLite and on PostgreSQL.
func TestRepoIDHistoryStartsEmpty(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			cfg := mirrorConfig(t)
			if engine == "postgres" {
				cfg = pgConfig(t)
			}
			up := newUpstream(t, "acme/hello-good.git")
			s := startServer(t, cfg, impl.Options{})
			st, err := store.OpenFor(ctx(t), cfg.DatabaseURL, cfg.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()

			id := "hello"
			bad, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: "git://127.0.0.1:1/hello.git", Id: &id})
			if err != nil || bad.StatusCode() != 502 || bad.ApplicationproblemJSON502 == nil {
				t.Fatalf("unreachable onboarding: %v %d %s", err, bad.StatusCode(), bad.Body)
			}
			if rows, err := st.ListSyncs(ctx(t), id, "", 100); err != nil || len(rows) != 0 {
				t.Fatalf("a failed onboarding left %d sync rows: %+v %v", len(rows), rows, err)
			}
			if repos, err := st.Repos(ctx(t)); err != nil || len(repos) != 0 {
				t.Fatalf("a failed onboarding left repository rows: %+v %v", repos, err)
			}

			good, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.url, Id: &id})
			if err != nil || good.JSON201 == nil {
				t.Fatalf("onboarding: %v %d %s", err, good.StatusCode(), good.Body)
			}
			hist := allSyncs(t, s, id, 100)
			if len(hist) != 1 || hist[0].Trigger != client.Onboard || hist[0].State != client.SyncResultStateSucceeded || hist[0].Error != nil {
				t.Fatalf("the history of the new %q: %+v", id, hist)
			}
			if rows, err := st.ListSyncs(ctx(t), id, "", 100); err != nil || len(rows) != 1 || rows[0].ID != hist[0].Id {
				t.Fatalf("stored syncs of the new %q: %+v %v", id, rows, err)
			}
		})
	}
}

// TestAuditNamesTheRepository: the audit entry of an onboarding names the
// repository (the id given, or the one derived from the URL), whether the
// onboarding succeeded or failed, as the entries of routes with a repoID
// parameter do; an onboarding refused for its id names none.
func TestAuditNamesTheRepository(t *testing.T) {
	// Signed in: a failed request gets its own entry at once (an
	// anonymous one is counted in its minute's aggregate).
	idp := startIDP(t)
	up := newUpstream(t, "acme/audited.git")
	cfg := oidcConfig(t, idp, "")
	cfg.AllowPrivateRemotes = true
	s := startServer(t, cfg, impl.Options{})
	tok := idToken(t, idp, nil)
	bearer := func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
	if resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.url}, bearer); err != nil || resp.StatusCode() != 201 {
		t.Fatalf("onboarding: %v %d %s", err, resp.StatusCode(), resp.Body) // id "audited", from the URL
	}
	id := "hello"
	if resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: "git://127.0.0.1:1/x.git", Id: &id}, bearer); err != nil || resp.StatusCode() != 502 {
		t.Fatalf("unreachable onboarding: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	bad := "-bad"
	if resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.url, Id: &bad}, bearer); err != nil || resp.StatusCode() != 400 {
		t.Fatalf("onboarding with a bad id: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	if resp, err := s.c.SyncRepoWithResponse(ctx(t), "audited", nil, bearer); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("sync: %v %d %s", err, resp.StatusCode(), resp.Body)
	}

	audit, err := s.c.ListAuditWithResponse(ctx(t), nil, bearer)
	if err != nil || audit.JSON200 == nil {
		t.Fatalf("audit: %v %s", err, audit.Body)
	}
	repoOf := func(action, outcome string) []string {
		var out []string
		for _, e := range *audit.JSON200 {
			if e.Action == action && e.Outcome == outcome {
				out = append(out, deref(e.Repo))
			}
		}
		return out
	}
	for _, tc := range []struct {
		action, outcome string
		want            []string
	}{
		{"createRepo", "201", []string{"audited"}},
		{"createRepo", "502", []string{"hello"}},
		{"createRepo", "400", []string{"<nil>"}},
		{"syncRepo", "200", []string{"audited"}},
	} {
		if got := repoOf(tc.action, tc.outcome); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: repo %q, want %q", tc.action, tc.outcome, got, tc.want)
		}
	}
	if t.Failed() {
		t.Logf("audit: %s", audit.Body)
	}
}
