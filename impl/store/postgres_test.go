package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stackd/stackd/impl/store/pgtest"
)

func TestRebind(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"a = ? AND b = ?", "a = $1 AND b = $2"},
		{"x IN (?, '') AND y = '?' AND z = ?", "x IN ($1, '') AND y = '?' AND z = $2"},
		{`COLLATE "C?" = ?`, `COLLATE "C?" = $1`},
		{"?,?,?,?,?,?,?,?,?,?,?", "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11"},
	}
	for _, tt := range tests {
		if got := rebind(tt.in); got != tt.want {
			t.Errorf("rebind(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnavailableClassification(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"cancelled by the caller", fmt.Errorf("q: %w", context.Canceled), false},
		{"a deadline", fmt.Errorf("q: %w", context.DeadlineExceeded), true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"syntax error", &pgconn.PgError{Code: "42601"}, false},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"closed connection", fmt.Errorf("x: %w", pgconn.ErrConnClosed), true},
		{"EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"already classified", fmt.Errorf("%w: x", ErrUnavailable), true},
		{"anything else", errors.New("scan: cannot assign"), false},
	}
	for _, tt := range tests {
		if got := Unavailable(tt.err); got != tt.want {
			t.Errorf("%s: Unavailable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestPostgresURLs: only postgres:// URLs are taken; neither a refusal
// nor a description ever shows the password.
func TestPostgresURLs(t *testing.T) {
	for _, bad := range []string{
		"host=db user=u password=sekrit",
		"mysql://u:sekrit@db/x",
		"postgres://u:sekrit@db:notaport/x",
		"postgres://u:sekrit@db/x?sslmode=bogus",
		"postgres://u:sekrit@[::1/x",
	} {
		_, err := OpenPostgres(context.Background(), bad)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("OpenPostgres(%q) = %v, want ErrInvalid", bad, err)
			continue
		}
		if strings.Contains(err.Error(), "sekrit") {
			t.Errorf("the refusal of %q shows the password: %v", bad, err)
		}
	}
	for in, want := range map[string]string{
		"postgres://stackd:sekrit@db.example:5433/stackd?sslmode=require": "postgres://stackd@db.example:5433/stackd",
		"postgresql://u:sekrit@/x?host=/run/pg&password=sekrit":           "postgres://u@/x?host=/run/pg&port=5432",
		"postgres://[::1]/x?user=u":                                       "postgres://u@[::1]:5432/x",
		"postgres://u:sekrit@db:notaport/x":                               "postgres (unparseable URL)",
	} {
		if got := DescribeURL(in); got != want {
			t.Errorf("DescribeURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPostgresWrongPassword: a refused login is an error without the
// password, and not "unavailable" (retrying will not help).
func TestPostgresWrongPassword(t *testing.T) {
	c := pgtest.Shared(t)
	url := strings.Replace(c.URL("postgres"), c.Password(), "not-"+c.Password()[:8]+"-sekrit", 1)
	_, err := OpenPostgres(context.Background(), url)
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), "sekrit") || strings.Contains(err.Error(), c.Password()) {
		t.Errorf("error shows a password: %v", err)
	}
}

// TestConcurrentMigrations: replicas that start together on a new
// database apply every step once (the advisory lock) and all open.
func TestConcurrentMigrations(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	const replicas = 4
	stores := make(chan *Postgres, replicas)
	errs := make(chan error, replicas)
	var wg sync.WaitGroup
	for range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenPostgres(context.Background(), url)
			if err != nil {
				errs <- err
				return
			}
			stores <- s
		}()
	}
	wg.Wait()
	close(stores)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	migrated := 0
	for s := range stores {
		if n := len(s.Applied()); n > 0 {
			migrated++
			if n != len(migrations) {
				t.Errorf("one replica applied %d steps", n)
			}
		}
		var rows int
		if err := s.pool.QueryRow(context.Background(), `SELECT COUNT(*) FROM migrations`).Scan(&rows); err != nil || rows != len(migrations) {
			t.Errorf("migrations table: %d rows, %v", rows, err)
		}
		_ = s.Close()
	}
	if migrated != 1 {
		t.Errorf("%d replicas applied migrations, want 1", migrated)
	}
}

func TestPostgresRefusesNewerSchema(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	s := openPostgres(t, url)
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO migrations (version, applied_at) VALUES ($1, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPostgres(context.Background(), url); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

// TestPostgresConcurrentUse: two pools on one database, as two replicas
// have: sessions and audit entries from both, and an id onboarded by
// both at once is stored once (the others get ErrConflict).
func TestPostgresConcurrentUse(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := openPostgres(t, url), openPostgres(t, url)
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	added := make(chan int, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := a
			if w%2 == 1 {
				st = b
			}
			for i := range each {
				raw, err := st.CreateSession(ctx, Session{Subject: fmt.Sprint(w), CreatedAt: t0, ExpiresAt: t0.Add(time.Duration(i+1) * time.Minute)})
				if err != nil {
					errs <- err
					return
				}
				if _, err := st.Session(ctx, raw, t0); err != nil {
					errs <- fmt.Errorf("read back: %w", err)
					return
				}
				if err := st.Audit(ctx, AuditEntry{At: t0, Action: "a", Actor: fmt.Sprint(w)}); err != nil {
					errs <- err
					return
				}
			}
			switch err := st.AddRepo(ctx, Repo{ID: "Same", URL: "https://x/same", CreatedAt: t0, CreatedBy: fmt.Sprint(w)}); {
			case err == nil:
				added <- w
			case !errors.Is(err, ErrConflict):
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(added)
	for err := range errs {
		t.Error(err)
	}
	if len(added) != 1 {
		t.Errorf("%d concurrent onboardings of one id succeeded, want 1", len(added))
	}
	log, err := b.AuditLog(ctx, 10000)
	if err != nil || len(log) != workers*each {
		t.Errorf("%d audit entries, %v; want %d", len(log), err, workers*each)
	}
}

// TestPostgresDownAndBack: while the server is down every call fails
// with ErrUnavailable, without the password in the error; once it is back
// the same Store works again, without reopening.
func TestPostgresDownAndBack(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	s := openPostgres(t, c.NewDatabase(t))
	raw, err := s.CreateSession(ctx, Session{Subject: "x", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(t)
	calls := map[string]func() error{
		"ping":     func() error { return s.Ping(ctx) },
		"session":  func() error { _, err := s.Session(ctx, raw, t0); return err },
		"add repo": func() error { return s.AddRepo(ctx, Repo{ID: "a", URL: "https://x/a", CreatedAt: t0}) },
		"put sync": func() error { return s.PutSync(ctx, syncAt("a", "1", StateSucceeded), 10) },
		"list":     func() error { _, err := s.ListSyncs(ctx, "a", "", 10); return err },
		"delivery": func() error { _, err := s.SeenDelivery(ctx, "d", t0, time.Hour); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s while the database is down: %v, want ErrUnavailable", name, err)
		}
		if err != nil && strings.Contains(err.Error(), c.Password()) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	c.Start(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after the database came back: %v", err)
	}
	if _, err := s.Session(ctx, raw, t0); err != nil {
		t.Fatalf("session after the database came back: %v", err)
	}
	if err := s.AddRepo(ctx, Repo{ID: "a", URL: "https://x/a", CreatedAt: t0}); err != nil {
		t.Fatalf("write after the database came back: %v", err)
	}
}

// TestPostgresDropsBrokenConnections: the pool holds several idle
// connections when the server goes down; the first call that finds it
// down makes the pool drop them all, so that once it is back every call
// gets a new connection instead of a broken one.
func TestPostgresDropsBrokenConnections(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	s := openPostgres(t, c.NewDatabase(t))
	const n = 4
	var conns []interface{ Release() }
	for range n {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	for _, conn := range conns {
		conn.Release()
	}
	if idle := s.pool.Stat().IdleConns(); idle != n {
		t.Fatalf("%d idle connections, want %d", idle, n)
	}
	c.Stop(t)
	if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ping while down: %v", err)
	}
	c.Start(t)
	for i := range n {
		if _, err := s.AuditLog(ctx, 1); err != nil {
			t.Fatalf("call %d after the server came back: %v", i, err)
		}
	}
}

// TestPostgresRawIDNeverStored: PostgreSQL keeps the hash of a session
// id, never the id (the same code as SQLite's, checked on the engine).
func TestPostgresRawIDNeverStored(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t, pgtest.Shared(t).NewDatabase(t))
	raw, err := s.CreateSession(ctx, Session{Subject: "s", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var hashes, raws int
	if err := s.pool.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM sessions WHERE id_hash = $1),
		(SELECT COUNT(*) FROM sessions WHERE id_hash = $2 OR subject = $2 OR groups_json LIKE '%' || $2 || '%')`,
		HashID(raw), raw).Scan(&hashes, &raws); err != nil {
		t.Fatal(err)
	}
	if hashes != 1 || raws != 0 {
		t.Fatalf("%d rows with the hash (want 1), %d with the raw id (want 0)", hashes, raws)
	}
}
