package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stackd/stackd/impl/store/pgtest"
)

// coreOf is the engine-independent part of a Store of this package.
func coreOf(t *testing.T, s Store) *core {
	t.Helper()
	switch v := s.(type) {
	case *SQLite:
		return &v.core
	case *Postgres:
		return &v.core
	}
	t.Fatalf("no core in %T", s)
	return nil
}

// TestAuditAggregateRoundTrip: the route, the request count and the time
// of the last request come back as stored; an entry without them reads
// as one request at its own time.
func TestAuditAggregateRoundTrip(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		agg := AuditEntry{At: t0, Actor: "anonymous", Method: "anonymous", Action: "syncRepo",
			Route: "/api/v1/repos/{repoID}/sync", Repo: `x\x00y`, Outcome: "401 unauthorized",
			Client: "2001:db8::/64", Requests: 7, LastAt: t0.Add(59 * time.Second)}
		one := AuditEntry{At: t0.Add(time.Minute), Actor: "a@example.com", Subject: "sub-a", Method: "bearer", Action: "createRepo",
			Route: "/api/v1/repos", Outcome: "201", Client: "192.0.2.1"}
		for _, e := range []AuditEntry{agg, one} {
			if err := s.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.AuditLog(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		agg.ID, one.ID = 1, 2
		one.Requests, one.LastAt = 1, one.At
		if want := []AuditEntry{one, agg}; !reflect.DeepEqual(got, want) {
			t.Errorf("audit log:\n got %+v\nwant %+v", got, want)
		}
		if err := s.Audit(ctx, AuditEntry{At: t0, Action: "x", Requests: -1}); !errors.Is(err, ErrInvalid) {
			t.Errorf("negative count: %v", err)
		}
	})
}

// auditActors lists the actors of the whole log, oldest first.
func auditActors(t *testing.T, s Store) []string {
	t.Helper()
	log, err := s.AuditLog(context.Background(), 1000000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(log) - 1; i >= 0; i-- {
		out = append(out, log[i].Actor)
	}
	return out
}

// TestAuditLogOf: the entries of one subject, newest first, and only
// theirs (another subject's and anonymous ones are left out).
func TestAuditLogOf(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var mine []AuditEntry
		for i, sub := range []string{"sub-a", "sub-b", "", "sub-a", "sub-a"} {
			e := AuditEntry{At: t0.Add(time.Duration(i) * time.Second), Actor: "x", Subject: sub, Action: "syncRepo", Outcome: "202"}
			if err := s.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
			if sub == "sub-a" {
				e.ID, e.Requests, e.LastAt = int64(i+1), 1, e.At
				mine = append([]AuditEntry{e}, mine...)
			}
		}
		got, err := s.AuditLogOf(ctx, "sub-a", 2)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, mine[:2]) {
			t.Errorf("AuditLogOf(sub-a, 2):\n got %+v\nwant %+v", got, mine[:2])
		}
		if got, err := s.AuditLogOf(ctx, "nobody", 0); err != nil || len(got) != 0 {
			t.Errorf("AuditLogOf(nobody) = %+v, %v", got, err)
		}
	})
}

// TestPruneAudit: the age limit goes first, then the count limit keeps the
// newest entries by (time, insertion order), the same order as the log;
// entries inserted out of time order (an aggregate is written when its
// minute closes, with the time of its first request) are pruned by time.
func TestPruneAudit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		// u0..u5 at minutes 0..5, inserted in the order 3 0 5 1 4 2, u6
		// at minute 4 again (a tie broken by insertion order).
		for _, i := range []int{3, 0, 5, 1, 4, 2} {
			if err := s.Audit(ctx, AuditEntry{At: t0.Add(time.Duration(i) * time.Minute), Actor: fmt.Sprintf("u%d", i), Action: "syncRepo"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Audit(ctx, AuditEntry{At: t0.Add(4 * time.Minute), Actor: "u6", Action: "syncRepo"}); err != nil {
			t.Fatal(err)
		}
		if n, err := s.PruneAudit(ctx, time.Time{}, 0); err != nil || n != 0 {
			t.Fatalf("no limits pruned %d, %v", n, err)
		}
		if n, err := s.PruneAudit(ctx, t0.Add(2*time.Minute), 0); err != nil || n != 2 {
			t.Fatalf("age pruned %d, %v", n, err)
		}
		if got, want := auditActors(t, s), []string{"u2", "u3", "u4", "u6", "u5"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("after the age limit: %v, want %v", got, want)
		}
		if n, err := s.PruneAudit(ctx, time.Time{}, 10); err != nil || n != 0 {
			t.Fatalf("count above the log pruned %d, %v", n, err)
		}
		// Keep 2: u6 and u5 stay, u4 (same time as u6, inserted before
		// it) goes.
		if n, err := s.PruneAudit(ctx, t0, 2); err != nil || n != 3 {
			t.Fatalf("count pruned %d, %v", n, err)
		}
		if got, want := auditActors(t, s), []string{"u6", "u5"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("after the count limit: %v, want %v", got, want)
		}
	})
}

// TestPruneAuditInBatches: a backlog larger than one batch goes entirely,
// over several statements, by age and by count.
func TestPruneAuditInBatches(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		db := coreOf(t, s).db
		const rows = 2*AuditPruneBatch + 500
		// One statement fills the table (both engines run it).
		if _, err := db.exec(ctx, `INSERT INTO audit (at, action, actor)
			WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
			SELECT i, 'syncRepo', 'bulk' FROM n`, rows); err != nil {
			t.Fatal(err)
		}
		n, err := s.PruneAudit(ctx, time.Unix(0, 2*AuditPruneBatch+1), 0)
		if err != nil || n != 2*AuditPruneBatch {
			t.Fatalf("age pruned %d, %v; want %d", n, err, 2*AuditPruneBatch)
		}
		n, err = s.PruneAudit(ctx, time.Time{}, 100)
		if err != nil || n != 400 {
			t.Fatalf("count pruned %d, %v; want 400", n, err)
		}
		log, err := s.AuditLog(ctx, 1000)
		if err != nil || len(log) != 100 || log[0].At != time.Unix(0, rows).UTC() || log[99].At != time.Unix(0, rows-99).UTC() {
			t.Fatalf("left %d entries (%v), newest %v", len(log), err, log[0].At)
		}
	})
}

// TestNULRefused: a NUL byte in any text a method stores or looks up is
// refused with ErrNUL by both engines, before the database sees it (on
// PostgreSQL it would otherwise be the database's own error, a 500), and
// nothing is stored.
func TestNULRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		calls := []struct {
			name string
			call func() error
		}{
			{"repo full name", func() error {
				return s.AddRepo(ctx, Repo{ID: "a", URL: "https://x/a", FullName: "o/\x00", CreatedAt: t0})
			}},
			{"repo trunk", func() error {
				return s.AddRepo(ctx, Repo{ID: "a", URL: "https://x/a", Trunk: "main\x00", CreatedAt: t0})
			}},
			{"audit repo", func() error {
				return s.Audit(ctx, AuditEntry{At: t0, Action: "syncRepo", Repo: "\x00"})
			}},
			{"session name", func() error {
				_, err := s.CreateSession(ctx, Session{Subject: "s", Name: "a\x00b", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
				return err
			}},
			{"sync lookup", func() error { _, err := s.GetSync(ctx, "r\x00", "1"); return err }},
			{"sync list", func() error { _, err := s.ListSyncs(ctx, "r\x00", "", 0); return err }},
			{"sync error", func() error {
				sy := syncAt("r", "1", StateFailed)
				sy.Error = "boom\x00"
				return s.PutSync(ctx, sy, 0)
			}},
			{"shared key name", func() error { _, err := s.SharedKey(ctx, "k\x00", 8); return err }},
		}
		for _, c := range calls {
			err := c.call()
			if !errors.Is(err, ErrNUL) || !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrNUL", c.name, err)
			}
			if err != nil && strings.Contains(err.Error(), "\x00") {
				t.Errorf("%s: the error repeats the value: %q", c.name, err)
			}
		}
		if repos, err := s.Repos(ctx); err != nil || len(repos) != 0 {
			t.Errorf("repos stored: %+v %v", repos, err)
		}
		if log, err := s.AuditLog(ctx, 0); err != nil || len(log) != 0 {
			t.Errorf("audit stored: %+v %v", log, err)
		}
		// A NUL inside JSON text is escaped (\u0000), so it is stored.
		if _, err := s.CreateSession(ctx, Session{Subject: "s", Groups: []string{"a\x00"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
			t.Errorf("groups with NUL (JSON-escaped): %v", err)
		}
	})
}

// TestAuditUpgrade: entries written before the audit columns existed read
// as one request each at their own time, without a route, and their raw
// repository parameter is cut to 128 characters; both engines.
func TestAuditUpgrade(t *testing.T) {
	ctx := context.Background()
	long := strings.Repeat("r", 60000)
	prepare := map[string]func(t *testing.T) Store{
		"sqlite": func(t *testing.T) Store {
			path := filepath.Join(t.TempDir(), "stackd.db")
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			for _, m := range migrations[:4] {
				if _, err := db.Exec(m.sqliteText()); err != nil {
					t.Fatalf("step %d: %v", m.version, err)
				}
				if _, err := db.Exec(`INSERT INTO migrations (version, applied_at) VALUES (?, 0)`, m.version); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.Exec(`INSERT INTO audit (at, action, repo) VALUES (?, 'syncRepo', ?)`, t0.UnixNano(), long); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			st, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		},
		"postgres": func(t *testing.T) Store {
			url := pgtest.Shared(t).NewDatabase(t)
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, `CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			for _, m := range migrations[:4] {
				if _, err := conn.Exec(ctx, m.postgresText()); err != nil {
					t.Fatalf("step %d: %v", m.version, err)
				}
				if _, err := conn.Exec(ctx, `INSERT INTO migrations (version, applied_at) VALUES ($1, 0)`, m.version); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := conn.Exec(ctx, `INSERT INTO audit (at, action, repo) VALUES ($1, 'syncRepo', $2)`, t0.UnixNano(), long); err != nil {
				t.Fatal(err)
			}
			return openPostgres(t, url)
		},
	}
	for name, open := range prepare {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			log, err := s.AuditLog(ctx, 0)
			if err != nil || len(log) != 1 {
				t.Fatalf("audit after upgrade: %+v %v", log, err)
			}
			want := AuditEntry{ID: 1, At: t0, Action: "syncRepo", Repo: long[:128], Requests: 1, LastAt: t0}
			if !reflect.DeepEqual(log[0], want) {
				t.Errorf("upgraded entry %+v", log[0])
			}
		})
	}
}
