package impl_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/store/pgtest"
)

// The tests of a server on PostgreSQL (--database-url) use throwaway
// clusters (impl/store/pgtest): the package's shared one, or their own
// where they stop and start it. Without PostgreSQL they skip, saying why
// (CI requires them: STACKD_PGTEST=require).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// pgConfig is mirrorConfig on a new database of the shared cluster.
func pgConfig(t *testing.T) config.Config {
	cfg := mirrorConfig(t)
	cfg.DatabaseURL = pgtest.Shared(t).NewDatabase(t)
	cfg.ReplicaID = "replica-a"
	return cfg
}

// TestPostgresServerKeepsItsState: a server with --database-url serves,
// onboards and syncs, and after a restart serves the onboarded mirror
// again with its history, all kept in PostgreSQL (no stackd.db in the
// data directory); every sync names the replica that ran it.
func TestPostgresServerKeepsItsState(t *testing.T) {
	up := newUpstream(t, "acme/kept.git")
	cfg := pgConfig(t)
	s := startServer(t, cfg, impl.Options{})
	if code, _, body := s.do("GET", "/readyz", nil); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	onboard(t, s, up.url)
	up.work.Commit("more", map[string]string{"k": "k\n"})
	up.push("main")
	res := syncOK(t, s, "kept")
	if res.Replica == nil || *res.Replica != "replica-a" {
		t.Fatalf("sync result replica = %v, want replica-a", res.Replica)
	}
	before := allSyncs(t, s, "kept", 100)
	if len(before) != 2 {
		t.Fatalf("history: %+v", before)
	}

	s = restart(t, s, cfg, impl.Options{})
	if got, err := s.c.GetRepoWithResponse(ctx(t), "kept"); err != nil || got.JSON200 == nil {
		t.Fatalf("the onboarded mirror after a restart: %v %s", err, got.Body)
	}
	idle(t, s, "kept")
	after := allSyncs(t, s, "kept", 100)
	if len(after) != len(before)+2 { // + the start-up read and fetch
		t.Fatalf("%d syncs after the restart, want %d", len(after), len(before)+2)
	}
	for _, sy := range after {
		if sy.Replica == nil || *sy.Replica != "replica-a" {
			t.Errorf("sync %s: replica %v", sy.Id, sy.Replica)
		}
	}
	if exists(t, filepath.Join(cfg.DataDir, "stackd.db")) {
		t.Error("a server on PostgreSQL made stackd.db in its data directory")
	}
	conn, err := pgx.Connect(ctx(t), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var repos, syncs int
	if err := conn.QueryRow(ctx(t), `SELECT (SELECT COUNT(*) FROM repos WHERE id = 'kept'), (SELECT COUNT(*) FROM syncs WHERE repo_id = 'kept')`).Scan(&repos, &syncs); err != nil {
		t.Fatal(err)
	}
	if repos != 1 || syncs != len(after) {
		t.Fatalf("in PostgreSQL: %d repos, %d syncs; want 1 and %d", repos, syncs, len(after))
	}
}

// TestDatabaseDownAndBack: while PostgreSQL is down, /readyz answers 503
// (without naming the database), operations that need the database
// answer 503 with Retry-After (never 500), and what does not need it goes
// on (views, a recent sync from memory, webhooks deduplicated in memory);
// when it is back, the same server is ready again and everything works,
// without a restart.
func TestDatabaseDownAndBack(t *testing.T) {
	c := pgtest.Start(t)
	up := newUpstream(t, "acme/flaky.git")
	cfg := mirrorConfig(t)
	cfg.DatabaseURL = c.NewDatabase(t)
	cfg.WebhookSecret = "k"
	s := startServer(t, cfg, impl.Options{})
	onboard(t, s, up.url)
	done := syncOK(t, s, "flaky")

	c.Stop(t)
	code, _, body := s.do("GET", "/readyz", nil)
	if code != 503 || !strings.Contains(body, "the database is unreachable") {
		t.Fatalf("readyz with the database down: %d %s", code, body)
	}
	for _, secret := range []string{c.Password(), c.SocketDir(), cfg.DatabaseURL, "postgres"} {
		if strings.Contains(body, secret) {
			t.Errorf("readyz names the database (%q): %s", secret, body)
		}
	}
	for _, call := range []struct{ method, path, body string }{
		{"GET", "/api/v1/repos/flaky/syncs", ""},
		{"DELETE", "/api/v1/repos/flaky", ""},
		{"POST", "/api/v1/repos", `{"url":"` + up.url + `","id":"other"}`},
		// A mirror's refresh needs its lease, which lives in the database.
		{"POST", "/api/v1/repos/flaky/sync", ""},
	} {
		var hdr []string
		if call.body != "" {
			hdr = []string{"Content-Type", "application/json"}
		}
		code, h, body := s.do(call.method, call.path, strings.NewReader(call.body), hdr...)
		if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "the database is unreachable") {
			t.Errorf("%s %s with the database down: %d (Retry-After %q) %s", call.method, call.path, code, h.Get("Retry-After"), body)
		}
		if strings.Contains(body, c.Password()) || strings.Contains(body, c.SocketDir()) {
			t.Errorf("%s %s names the database: %s", call.method, call.path, body)
		}
	}
	if got, err := s.c.GetRepoWithResponse(ctx(t), "flaky"); err != nil || got.JSON200 == nil {
		t.Fatalf("the refused removal changed the repository: %v %s", err, got.Body)
	}
	if code, _, body := s.do("GET", "/api/v1/repos/flaky/view", nil); code != 200 {
		t.Errorf("a view with the database down: %d %s", code, body)
	}
	if code, _, body := s.do("GET", "/api/v1/repos/flaky/syncs/"+done.Id, nil); code != 200 {
		t.Errorf("a recent sync (from memory) with the database down: %d %s", code, body)
	}
	push := `{"ref":"refs/heads/main","repository":{"full_name":"acme/flaky"}}`
	hook := func(delivery string) int {
		code, _, _ := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(push),
			"Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", delivery, "X-Hub-Signature-256", sign("k", push))
		return code
	}
	if first, again := hook("down-1"), hook("down-1"); first != 202 || again != 204 {
		t.Errorf("webhook with the database down: %d then %d, want 202 then 204 (deduplicated in memory)", first, again)
	}
	if strings.Contains(s.logs.String(), c.Password()) {
		t.Error("the server log shows the database password")
	}

	c.Start(t)
	if code, _, body := s.do("GET", "/readyz", nil); code != 200 {
		t.Fatalf("readyz once the database is back: %d %s", code, body)
	}
	if list := allSyncs(t, s, "flaky", 100); len(list) < 2 {
		t.Fatalf("history once the database is back: %+v", list)
	}
	if first, again := hook("up-1"), hook("up-1"); first != 202 || again != 204 {
		t.Errorf("webhook once the database is back: %d then %d", first, again)
	}
	idle(t, s, "flaky")
	if code, _, body := s.do("DELETE", "/api/v1/repos/flaky", nil); code != 204 {
		t.Fatalf("removal once the database is back: %d %s", code, body)
	}
}

// TestWebhookDeliveriesDeduplicatedInTheDatabase: a delivery seen by one
// server is a repeat for another server on the same database.
func TestWebhookDeliveriesDeduplicatedInTheDatabase(t *testing.T) {
	up := newUpstream(t, "acme/shared.git")
	cfg := pgConfig(t)
	cfg.WebhookSecret = "k"
	a := startServer(t, cfg, impl.Options{})
	onboard(t, a, up.url)
	cfgB := cfg
	cfgB.DataDir = filepath.Join(t.TempDir(), "b")
	cfgB.ReplicaID = "replica-b"
	b := startServer(t, cfgB, impl.Options{})
	idle(t, b, "shared") // restored from the database, cloned by b
	push := `{"ref":"refs/heads/main","repository":{"full_name":"acme/shared"}}`
	hook := func(s *testServer) int {
		code, _, _ := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(push),
			"Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", "once", "X-Hub-Signature-256", sign("k", push))
		return code
	}
	if first, other := hook(a), hook(b); first != 202 || other != 204 {
		t.Fatalf("one delivery to two servers: %d then %d, want 202 then 204", first, other)
	}
}

// TestWorkingRepositoryIsSingleReplica: with --database-url, an explicit
// --cwd is refused unless --allow-local-with-database; the current
// directory's repository is not served without it.
func TestWorkingRepositoryIsSingleReplica(t *testing.T) {
	dir := stackRepo(t).Dir
	url := pgtest.Shared(t).NewDatabase(t)

	explicit := baseConfig(t, dir)
	explicit.DatabaseURL = url
	if _, err := impl.New(explicit, slogDiscard(), impl.Options{}); !errors.Is(err, impl.ErrLocalWithDatabase) {
		t.Fatalf("--cwd with --database-url: %v", err)
	}
	if err := explicit.Validate(); err == nil || !strings.Contains(err.Error(), "--allow-local-with-database") {
		t.Fatalf("Validate: %v", err)
	}

	implicit := baseConfig(t, "")
	implicit.Cwd, implicit.DatabaseURL = dir, url
	s := startServer(t, implicit, impl.Options{})
	if list, err := s.c.ListReposWithResponse(ctx(t)); err != nil || list.JSON200 == nil || len(*list.JSON200) != 0 {
		t.Fatalf("the current directory's repository was served: %v %s", err, list.Body)
	}

	allowed := explicit
	allowed.AllowLocalWithDatabase = true
	s = startServer(t, allowed, impl.Options{})
	if got, err := s.c.GetRepoWithResponse(ctx(t), "local"); err != nil || got.JSON200 == nil || got.JSON200.Kind != client.Local {
		t.Fatalf("--allow-local-with-database: %v %s", err, got.Body)
	}
}

// TestReplicasShareTheIntervalRun: replicas of one mirror list its remote
// once per interval between them, by construction: the schedule is in the
// database, and a replica whose timer fires runs the interval run only if
// it claimed the due time there. The one that lost the claim runs nothing
// and waits for the due time the winner stored.
func TestReplicasShareTheIntervalRun(t *testing.T) {
	up := newUpstream(t, "acme/ticking.git")
	cfg := pgConfig(t)
	cfg.SyncInterval = time.Hour
	// Each replica hands each timer of its scheduler to the test, so
	// receiving the next one proves that the scheduler went round (a run
	// ended, or a claim was lost).
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	handTo := func(waits chan chan time.Time) func(time.Duration) <-chan time.Time {
		return func(time.Duration) <-chan time.Time {
			c := make(chan time.Time, 1)
			select {
			case waits <- c:
			case <-done:
			}
			return c
		}
	}
	waitsA, waitsB := make(chan chan time.Time), make(chan chan time.Time)
	cfA := &countingFetch{}
	a := startServer(t, cfg, impl.Options{After: handTo(waitsA), BeforeRefresh: cfA.fetch})
	onboard(t, a, up.url)
	timerA := <-waitsA

	// b shares a's database and data directory.
	cfgB := cfg
	cfgB.ReplicaID = "replica-b"
	cfB := &countingFetch{}
	b := startServer(t, cfgB, impl.Options{After: handTo(waitsB), BeforeRefresh: cfB.fetch})
	rfA, rfB := idle(t, a, "ticking"), idle(t, b, "ticking")
	timerB := <-waitsB
	// Both wait for the same stored due time.
	dueA, dueB := rfA.Status().NextScheduledAt, rfB.Status().NextScheduledAt
	if dueA == nil || dueB == nil || !dueA.Equal(*dueB) {
		t.Fatalf("next scheduled: a %v, b %v: want the one stored due time", dueA, dueB)
	}
	fetchesA, fetchesB := cfA.n.Load(), cfB.n.Load()
	intervalRuns := func(replica string) (n int) {
		for _, r := range rfB.History() {
			if r.Replica == replica && r.Trigger == refresh.Interval {
				n++
			}
		}
		return n
	}

	// a's timer fires first: a claims the run and runs it.
	timerA <- time.Now()
	<-waitsA // a re-armed its timer: its run ended
	if got := intervalRuns(cfg.ReplicaID); got != 1 {
		t.Fatalf("a ran %d interval runs, want 1", got)
	}
	if got := cfA.n.Load() - fetchesA; got != 1 {
		t.Fatalf("a listed the remote %d times, want 1", got)
	}
	// b's timer, armed for the same due time, fires: the claim is lost,
	// b lists nothing and waits for the due time a stored.
	timerB <- time.Now()
	timerB = <-waitsB
	if got := cfB.n.Load() - fetchesB; got != 0 {
		t.Fatalf("b listed the remote %d times after a's run, want 0", got)
	}
	if got := intervalRuns("replica-b"); got != 0 {
		t.Fatalf("b ran %d interval runs after a's run, want 0", got)
	}
	if next := rfB.Status().NextScheduledAt; next == nil || !next.After(*dueB) {
		t.Fatalf("b's next scheduled run %v: want the later due time a stored", next)
	}

	// That due time comes and b's timer fires first: b claims, b runs.
	timerB <- time.Now()
	<-waitsB
	if got := intervalRuns("replica-b"); got != 1 {
		t.Fatalf("b ran %d interval runs once due, want 1", got)
	}
}

// TestDataDirInUse: a server without a database owns its data directory:
// a second server on it is refused (ErrDataDirInUse), and so is a replica
// on PostgreSQL, until the first one is gone. Replicas on one database
// share a data directory; a single server is refused beside them.
func TestDataDirInUse(t *testing.T) {
	up := newUpstream(t, "acme/owned.git")
	single := mirrorConfig(t)
	s := startServer(t, single, impl.Options{})
	onboard(t, s, up.url)

	replica := pgConfig(t)
	replica.DataDir = single.DataDir
	for name, cfg := range map[string]config.Config{"another single server": single, "a replica": replica} {
		app, err := impl.New(cfg, slog.New(slog.DiscardHandler), impl.Options{})
		if !errors.Is(err, impl.ErrDataDirInUse) || app != nil {
			t.Fatalf("%s beside a single server: %v", name, err)
		}
		if strings.Contains(err.Error(), "postgres") {
			t.Fatalf("the error names the database: %v", err)
		}
	}
	s = restart(t, s, single, impl.Options{}) // the lock went with the first
	idle(t, s, "owned")
	s.app.Close()

	// Replicas share it; a single server is refused beside them.
	a := startServer(t, replica, impl.Options{})
	other := replica
	other.ReplicaID = "replica-b"
	startServer(t, other, impl.Options{})
	if app, err := impl.New(single, slog.New(slog.DiscardHandler), impl.Options{}); !errors.Is(err, impl.ErrDataDirInUse) || app != nil {
		t.Fatalf("a single server beside replicas: %v", err)
	}
	if code, _, _ := a.do("GET", "/readyz", nil); code != 200 {
		t.Fatalf("replica a: readyz %d", code)
	}
}
