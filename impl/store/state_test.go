package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/store/pgtest"
)

// The contract tests below take any Store: every engine must pass them.
// PostgreSQL runs them in a new database of the package's throwaway
// cluster (pgtest; skipped, saying why, where there is no PostgreSQL,
// and required in CI).
var engines = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"sqlite", func(t *testing.T) Store { s, _ := openTemp(t); return s }},
	{"postgres", func(t *testing.T) Store { return openPostgres(t, pgtest.Shared(t).NewDatabase(t)) }},
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openPostgres(t *testing.T, url string) *Postgres {
	t.Helper()
	s, err := OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func forEachEngine(t *testing.T, test func(t *testing.T, s Store)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { test(t, e.open(t)) })
	}
}

func TestMigrationsAreNumberedInOrder(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migrations[%d] has version %d", i, m.version)
		}
		if m.name == "" || m.sqliteText() == "" || m.postgresText() == "" {
			t.Errorf("migration %d has no name, no SQLite or no PostgreSQL text", m.version)
		}
	}
}

// TestUpgradeFromFirstSchema: a database made by a release that had only
// the first migration keeps its sessions and audit entries and gains the
// new tables.
func TestUpgradeFromFirstSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stackd.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`,
		migrations[0].sqliteText(),
		`INSERT INTO migrations (version, applied_at) VALUES (1, 0)`,
		`INSERT INTO audit (at, action) VALUES (1, 'syncRepo')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("version after upgrade = %d, %v", v, err)
	}
	if log, err := s.AuditLog(ctx, 0); err != nil || len(log) != 1 || log[0].Action != "syncRepo" {
		t.Fatalf("audit after upgrade = %+v, %v", log, err)
	}
	if err := s.AddRepo(ctx, Repo{ID: "a", URL: "https://x/a", CreatedAt: t0}); err != nil {
		t.Fatalf("new table: %v", err)
	}
}

func TestRepos(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		b := Repo{ID: "Beta", URL: "https://example.com/acme/beta.git", Trunk: "main", FullName: "acme/beta", CreatedAt: t0, CreatedBy: "ann@example.com",
			AddedBySubject: "sub-ann", AddedByEmail: "ann@example.com"}
		a := Repo{ID: "alpha", URL: "git://example.com/alpha", CreatedAt: t0.Add(time.Second)}
		for _, r := range []Repo{b, a} {
			if err := s.AddRepo(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Repos(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, []Repo{a, b}) {
			t.Fatalf("repos = %+v", got)
		}
		if err := s.AddRepo(ctx, Repo{ID: "BETA", URL: "https://other/x", CreatedAt: t0}); !errors.Is(err, ErrConflict) {
			t.Fatalf("same id in other case: %v", err)
		}
		for _, bad := range []Repo{{URL: "u", CreatedAt: t0}, {ID: "x", CreatedAt: t0}, {ID: "x", URL: "u"}} {
			if err := s.AddRepo(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("AddRepo(%+v) = %v", bad, err)
			}
		}
		putSync(t, s, "beta", "0001", StateSucceeded)
		putSync(t, s, "alpha", "0002", StateSucceeded)
		if err := s.DeleteRepo(ctx, "BETA"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRepo(ctx, "never-there"); err != nil {
			t.Fatalf("deleting a missing repo: %v", err)
		}
		got, _ = s.Repos(ctx)
		if !reflect.DeepEqual(got, []Repo{a}) {
			t.Fatalf("repos after delete = %+v", got)
		}
		if l, _ := s.ListSyncs(ctx, "Beta", "", 10); len(l) != 0 {
			t.Fatalf("history of a deleted repo: %+v", l)
		}
		if l, _ := s.ListSyncs(ctx, "alpha", "", 10); len(l) != 1 {
			t.Fatalf("history of another repo went too: %+v", l)
		}
	})
}

func syncAt(repo, id, state string) Sync {
	sy := Sync{ID: id, RepoID: repo, Trigger: "manual", Mode: "mirror-fetch", State: state, QueuedAt: t0, ViewVersion: 1}
	if state != StateQueued {
		start := t0.Add(time.Second)
		sy.StartedAt = &start
	}
	if state == StateSucceeded || state == StateFailed {
		end := t0.Add(3 * time.Second)
		d := int64(2000)
		sy.FinishedAt, sy.DurationMs = &end, &d
	}
	return sy
}

func putSync(t *testing.T, s Store, repo, id, state string) {
	t.Helper()
	if err := s.PutSync(context.Background(), syncAt(repo, id, state), 0); err != nil {
		t.Fatal(err)
	}
}

func TestSyncRoundTripAndStatesOnlyMoveForward(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		full := syncAt("api", "0190a", StateFailed)
		full.Changes = []RefChange{{Ref: "refs/heads/a", New: "abc", Change: "created"}, {Ref: "refs/heads/b", Old: "1", New: "2", Change: "forced"}}
		full.ChangesTotal = 7
		full.Error = "could not fetch: connection refused"
		full.Trigger, full.Mode = "webhook", "reread"

		putSync(t, s, "api", "0190a", StateQueued)
		if got, err := s.GetSync(ctx, "API", "0190a"); err != nil || got.State != StateQueued || got.StartedAt != nil || len(got.Changes) != 0 {
			t.Fatalf("queued = %+v, %v", got, err)
		}
		if err := s.PutSync(ctx, full, 0); err != nil {
			t.Fatal(err)
		}
		// A late write of an earlier state (a queued or running write that
		// lost the race with the end of the run) changes nothing.
		putSync(t, s, "api", "0190a", StateRunning)
		putSync(t, s, "api", "0190a", StateQueued)
		got, err := s.GetSync(ctx, "api", "0190a")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, full) {
			t.Fatalf("stored\n %+v\nwant\n %+v", got, full)
		}
		if _, err := s.GetSync(ctx, "other", "0190a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a sync of another repository: %v", err)
		}
		if _, err := s.GetSync(ctx, "api", "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing sync: %v", err)
		}
		for _, bad := range []Sync{{RepoID: "a", QueuedAt: t0, State: StateQueued}, {ID: "x", QueuedAt: t0, State: StateQueued},
			{ID: "x", RepoID: "a", State: StateQueued}, {ID: "x", RepoID: "a", QueuedAt: t0, State: "done"}} {
			if err := s.PutSync(ctx, bad, 0); !errors.Is(err, ErrInvalid) {
				t.Errorf("PutSync(%+v) = %v", bad, err)
			}
		}
	})
}

func ids(list []Sync) []string {
	out := []string{}
	for _, s := range list {
		out = append(out, s.ID)
	}
	return out
}

// TestSyncHistoryIsTrimmedButNeverItsLiveRuns: keep counts finished syncs;
// queued and running ones stay whatever their age.
func TestSyncHistoryIsTrimmedButNeverItsLiveRuns(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		putSync(t, s, "r", "00", StateRunning) // oldest, still running
		for i := 1; i <= 6; i++ {
			if err := s.PutSync(ctx, syncAt("r", fmt.Sprintf("%02d", i), StateSucceeded), 3); err != nil {
				t.Fatal(err)
			}
		}
		putSync(t, s, "other", "05x", StateSucceeded)
		if err := s.PutSync(ctx, syncAt("r", "07", StateQueued), 3); err != nil {
			t.Fatal(err)
		}
		list, err := s.ListSyncs(ctx, "r", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(list), []string{"07", "06", "05", "04", "00"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("kept %v, want %v", got, want)
		}
		if l, _ := s.ListSyncs(ctx, "other", "", 100); len(l) != 1 {
			t.Fatalf("trimming touched another repository: %v", ids(l))
		}
	})
}

// TestPutSyncsIsOneTransaction: PutSyncs stores a batch over several
// repositories and trims each to keep, as PutSync of each would; a batch
// with one invalid sync stores none; states never move back.
func TestPutSyncsIsOneTransaction(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		for i := 1; i <= 3; i++ {
			putSync(t, s, "a", fmt.Sprintf("%02d", i), StateSucceeded)
		}
		putSync(t, s, "b", "05", StateSucceeded)
		batch := []Sync{syncAt("a", "06", StateSucceeded), syncAt("b", "07", StateFailed), syncAt("a", "08", StateSucceeded),
			syncAt("b", "05", StateRunning)} // 05 stays succeeded
		if err := s.PutSyncs(ctx, batch, 3); err != nil {
			t.Fatal(err)
		}
		for repo, want := range map[string][]string{"a": {"08", "06", "03"}, "b": {"07", "05"}} {
			list, err := s.ListSyncs(ctx, repo, "", 100)
			if err != nil || !reflect.DeepEqual(ids(list), want) {
				t.Fatalf("%s kept %v %v, want %v", repo, ids(list), err, want)
			}
		}
		if sy, err := s.GetSync(ctx, "b", "05"); err != nil || sy.State != StateSucceeded {
			t.Fatalf("05 went back: %+v %v", sy, err)
		}
		bad := []Sync{syncAt("a", "09", StateSucceeded), {ID: "10", RepoID: "a", State: StateSucceeded}}
		if err := s.PutSyncs(ctx, bad, 3); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a batch with an invalid sync: %v", err)
		}
		if _, err := s.GetSync(ctx, "a", "09"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a refused batch stored part of itself: %v", err)
		}
		if err := s.PutSyncs(ctx, nil, 3); err != nil {
			t.Fatalf("an empty batch: %v", err)
		}
	})
}

// TestSyncPagesReturnEveryResultOnce: pages by the last id of the previous
// page cover the history exactly once, also while new syncs arrive.
func TestSyncPagesReturnEveryResultOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		for i := 0; i < 23; i++ {
			putSync(t, s, "r", fmt.Sprintf("%03d", i), StateSucceeded)
		}
		seen := map[string]int{}
		var order []string
		before := ""
		for page := 0; ; page++ {
			list, err := s.ListSyncs(ctx, "R", before, 5)
			if err != nil {
				t.Fatal(err)
			}
			if page == 1 {
				putSync(t, s, "r", "999", StateQueued) // newer than every page
			}
			for _, sy := range list {
				seen[sy.ID]++
				order = append(order, sy.ID)
			}
			if len(list) < 5 {
				break
			}
			before = list[len(list)-1].ID
		}
		if len(seen) != 23 {
			t.Fatalf("%d distinct results, want 23: %v", len(seen), order)
		}
		for i, id := range order {
			if seen[id] != 1 {
				t.Errorf("%s returned %d times", id, seen[id])
			}
			if want := fmt.Sprintf("%03d", 22-i); id != want {
				t.Errorf("result %d is %s, want %s (newest first)", i, id, want)
			}
		}
		if l, _ := s.ListSyncs(ctx, "r", "", 0); len(l) != 24 {
			t.Fatalf("default page: %d", len(l))
		}
	})
}

func TestFailUnfinishedAndDeleteSyncs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		putSync(t, s, "r", "1", StateSucceeded)
		putSync(t, s, "r", "2", StateRunning)
		putSync(t, s, "q", "3", StateQueued)
		at := t0.Add(time.Minute)
		n, err := s.FailUnfinished(ctx, "", at, "stackd restarted")
		if err != nil || n != 2 {
			t.Fatalf("FailUnfinished = %d, %v", n, err)
		}
		running, _ := s.GetSync(ctx, "r", "2")
		if running.State != StateFailed || running.Error != "stackd restarted" || running.FinishedAt == nil || !running.FinishedAt.Equal(at) ||
			running.DurationMs == nil || *running.DurationMs != 59000 {
			t.Fatalf("running sync after restart = %+v", running)
		}
		queued, _ := s.GetSync(ctx, "q", "3")
		if queued.State != StateFailed || queued.StartedAt != nil || queued.DurationMs != nil {
			t.Fatalf("queued sync after restart = %+v", queued)
		}
		if done, _ := s.GetSync(ctx, "r", "1"); done.State != StateSucceeded || done.Error != "" {
			t.Fatalf("a finished sync changed: %+v", done)
		}
		if err := s.DeleteSyncs(ctx, "R"); err != nil {
			t.Fatal(err)
		}
		if l, _ := s.ListSyncs(ctx, "r", "", 10); len(l) != 0 {
			t.Fatalf("after DeleteSyncs: %v", ids(l))
		}
		if l, _ := s.ListSyncs(ctx, "q", "", 10); len(l) != 1 {
			t.Fatalf("DeleteSyncs touched another repository: %v", ids(l))
		}
	})
}

// TestUpgradeKeepsRepoOwners: the repositories stored before owners had
// columns of their own (migration 6) keep their onboarder: an actor with
// an @ becomes the owner's e-mail, any other its subject, none stays none.
func TestUpgradeKeepsRepoOwners(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stackd.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	qs := []string{`CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`}
	for _, m := range migrations[:5] {
		qs = append(qs, m.sqliteText(), fmt.Sprintf(`INSERT INTO migrations (version, applied_at) VALUES (%d, 0)`, m.version))
	}
	qs = append(qs, `INSERT INTO repos (id_key, id, url, created_at, created_by) VALUES
		('a', 'a', 'https://x/a', 1, 'ann@example.com'), ('b', 'b', 'https://x/b', 1, 'sub-bob'), ('c', 'c', 'https://x/c', 1, '')`)
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	got, err := s.Repos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type owner struct{ id, subject, email string }
	var owners []owner
	for _, r := range got {
		owners = append(owners, owner{r.ID, r.AddedBySubject, r.AddedByEmail})
	}
	want := []owner{{"a", "", "ann@example.com"}, {"b", "sub-bob", ""}, {"c", "", ""}}
	if !reflect.DeepEqual(owners, want) {
		t.Fatalf("owners after upgrade = %+v, want %+v", owners, want)
	}
}

// TestStateSurvivesReopen: repositories and syncs are in the file.
func TestStateSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if err := s.AddRepo(ctx, Repo{ID: "a", URL: "https://x/a", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	putSync(t, s, "a", "1", StateSucceeded)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s2.Close() }()
	if r, _ := s2.Repos(ctx); len(r) != 1 || r[0].ID != "a" {
		t.Fatalf("repos after reopen: %+v", r)
	}
	if sy, err := s2.GetSync(ctx, "a", "1"); err != nil || sy.State != StateSucceeded {
		t.Fatalf("sync after reopen: %+v %v", sy, err)
	}
}

// TestSeenDelivery: a delivery id is new once within the TTL, a repeat
// does not extend its lifetime, and of concurrent calls with one new id
// exactly one is told it is new.
func TestSeenDelivery(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		ttl := time.Hour
		steps := []struct {
			id   string
			at   time.Duration
			seen bool
		}{
			{"", 0, false},
			{"", 0, false}, // never recorded
			{"d1", 0, false},
			{"d1", 0, true},
			{"d2", time.Minute, false},
			{"d1", 59 * time.Minute, true},  // a repeat...
			{"d1", 60 * time.Minute, false}, // ...did not extend the first record
			{"d1", 61 * time.Minute, true},
			{"d2", 2 * time.Hour, false}, // expired long ago (and swept)
		}
		for i, st := range steps {
			seen, err := s.SeenDelivery(ctx, st.id, t0.Add(st.at), ttl)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if seen != st.seen {
				t.Errorf("step %d: SeenDelivery(%q, +%s) = %v, want %v", i, st.id, st.at, seen, st.seen)
			}
		}
		if _, err := s.SeenDelivery(ctx, "x", t0, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("zero ttl: %v", err)
		}

		const callers = 12
		results := make(chan bool, callers)
		errs := make(chan error, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seen, err := s.SeenDelivery(ctx, "race", t0, ttl)
				if err != nil {
					errs <- err
					return
				}
				results <- seen
			}()
		}
		wg.Wait()
		close(results)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		fresh := 0
		for seen := range results {
			if !seen {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("%d of %d concurrent calls were told the delivery is new, want 1", fresh, callers)
		}
	})
}

// TestFailUnfinishedOnlyForItsReplica: a replica fails its own unfinished
// syncs (and those recorded without a replica), never another replica's;
// the replica is stored with the sync.
func TestFailUnfinishedOnlyForItsReplica(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		for _, sy := range []Sync{syncAt("r", "1", StateRunning), syncAt("r", "2", StateRunning), syncAt("r", "3", StateQueued), syncAt("r", "4", StateSucceeded)} {
			switch sy.ID {
			case "1", "4":
				sy.Replica = "a:8080"
			case "2":
				sy.Replica = "b:8080"
			}
			if err := s.PutSync(ctx, sy, 0); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := s.GetSync(ctx, "r", "2"); err != nil || got.Replica != "b:8080" {
			t.Fatalf("replica not stored: %+v %v", got, err)
		}
		n, err := s.FailUnfinished(ctx, "a:8080", t0.Add(time.Minute), "restarted")
		if err != nil || n != 2 {
			t.Fatalf("FailUnfinished = %d, %v; want 2 (its own running sync and the one without replica)", n, err)
		}
		want := map[string]string{"1": StateFailed, "2": StateRunning, "3": StateFailed, "4": StateSucceeded}
		for id, state := range want {
			got, err := s.GetSync(ctx, "r", id)
			if err != nil || got.State != state {
				t.Errorf("sync %s: %q %v, want %q", id, got.State, err, state)
			}
		}
	})
}

// TestAppliedSteps: opening a new database applies every step and says
// so; opening it again applies none.
func TestAppliedSteps(t *testing.T) {
	var all []Step
	for _, m := range migrations {
		all = append(all, Step{Version: m.version, Name: m.name})
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stackd.db")
	url := ""
	reopen := map[string]func(t *testing.T) Store{
		"sqlite": func(t *testing.T) Store {
			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
		"postgres": func(t *testing.T) Store {
			if url == "" {
				url = pgtest.Shared(t).NewDatabase(t)
			}
			return openPostgres(t, url)
		},
	}
	for name, open := range reopen {
		t.Run(name, func(t *testing.T) {
			if got := open(t).Applied(); !reflect.DeepEqual(got, all) {
				t.Errorf("first open applied %+v, want %+v", got, all)
			}
			if got := open(t).Applied(); len(got) != 0 {
				t.Errorf("second open applied %+v", got)
			}
		})
	}
}
