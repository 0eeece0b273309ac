package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openTemp(t *testing.T) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stackd.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func TestOpenCreatesPrivateFileWithSchema(t *testing.T) {
	s, path := openTemp(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %o, want 600", perm)
	}
	v, err := s.SchemaVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v != len(migrations) {
		t.Errorf("schema version = %d, want %d", v, len(migrations))
	}
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
	var busy int
	if err := s.db.QueryRow(`PRAGMA busy_timeout`).Scan(&busy); err != nil {
		t.Fatal(err)
	}
	if busy != int(busyTimeout.Milliseconds()) {
		t.Errorf("busy_timeout = %d", busy)
	}
}

func TestOpenTwiceKeepsVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	for i := 0; i < 2; i++ {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		v, err := s.SchemaVersion(ctx)
		if err != nil || v != len(migrations) {
			t.Fatalf("open %d: version %d, %v", i, v, err)
		}
		var n int
		if err := s.db.QueryRow(`SELECT COUNT(*) FROM migrations`).Scan(&n); err != nil || n != len(migrations) {
			t.Fatalf("open %d: %d migration rows, %v", i, n, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if _, err := s.db.Exec(`INSERT INTO migrations (version, applied_at) VALUES (?, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path); err == nil {
		t.Fatal("Open of a newer schema succeeded")
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", "a?b", filepath.Join(t.TempDir(), "missing", "dir", "db")} {
		if s, err := Open(context.Background(), p); err == nil {
			_ = s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestSessionRoundTripAndRestart(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	in := Session{
		Subject: "sub-1", Email: "a@example.com", EmailVerified: true, Name: "A",
		Groups: []string{"eng", "ops"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
	}
	raw, err := s.CreateSession(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 43 { // 32 bytes, base64url without padding
		t.Errorf("raw id %q has length %d", raw, len(raw))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s2.Close() }()
	got, err := s2.Session(ctx, raw, t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	want := in
	want.ID = HashID(raw)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestSessionLookups(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		raw, err := s.CreateSession(ctx, Session{Subject: "x", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			raw     string
			now     time.Time
			wantErr error
		}{
			{"live", raw, t0.Add(59 * time.Minute), nil},
			{"at expiry", raw, t0.Add(time.Hour), ErrNotFound},
			{"after expiry", raw, t0.Add(2 * time.Hour), ErrNotFound},
			{"unknown", "nope", t0, ErrNotFound},
			{"empty", "", t0, ErrNotFound},
			{"hash is not a raw id", HashID(raw), t0, ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.Session(ctx, tt.raw, tt.now)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if err == nil && got.Subject != "x" {
					t.Errorf("subject = %q", got.Subject)
				}
				if err == nil && got.Groups == nil {
					t.Errorf("groups nil, want empty")
				}
			})
		}
	})
}

func TestCreateSessionInvalid(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		tests := []struct {
			name string
			sess Session
		}{
			{"no subject", Session{CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}},
			{"no expiry", Session{Subject: "s", CreatedAt: t0}},
			{"no creation", Session{Subject: "s", ExpiresAt: t0}},
			{"expiry before creation", Session{Subject: "s", CreatedAt: t0, ExpiresAt: t0.Add(-time.Second)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := s.CreateSession(ctx, tt.sess); !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
			})
		}
	})
}

func TestDeleteSession(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		raw, err := s.CreateSession(ctx, Session{Subject: "x", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSession(ctx, raw); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(ctx, raw, t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
		if err := s.DeleteSession(ctx, raw); err != nil {
			t.Fatalf("second delete: %v", err)
		}
		if err := s.DeleteSession(ctx, ""); err != nil {
			t.Fatalf("empty delete: %v", err)
		}
	})
}

func TestSweep(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var raws []string
		for i := 1; i <= 4; i++ {
			raw, err := s.CreateSession(ctx, Session{Subject: fmt.Sprint(i), CreatedAt: t0, ExpiresAt: t0.Add(time.Duration(i) * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			raws = append(raws, raw)
		}
		steps := []struct {
			now  time.Time
			want int64
		}{
			{t0, 0},
			{t0.Add(2 * time.Hour), 2}, // expiring at 1h and exactly at 2h
			{t0.Add(2 * time.Hour), 0},
			{t0.Add(10 * time.Hour), 2},
		}
		for i, st := range steps {
			n, err := s.Sweep(ctx, st.now)
			if err != nil {
				t.Fatal(err)
			}
			if n != st.want {
				t.Errorf("step %d: swept %d, want %d", i, n, st.want)
			}
		}
		for _, raw := range raws {
			if _, err := s.Session(ctx, raw, t0); !errors.Is(err, ErrNotFound) {
				t.Errorf("session survived sweep: %v", err)
			}
		}
	})
}

func TestRawIDNeverStored(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	var raws []string
	for i := 0; i < 20; i++ {
		raw, err := s.CreateSession(ctx, Session{Subject: "s", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	// In the table: only hashes.
	rows, err := s.db.Query(`SELECT id_hash FROM sessions`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		stored[h] = true
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	for _, raw := range raws {
		if stored[raw] {
			t.Errorf("raw id %q stored as key", raw)
		}
		if !stored[HashID(raw)] {
			t.Errorf("hash of %q missing", raw)
		}
	}
	// In the bytes on disk (main file and WAL, before and after a checkpoint).
	check := func(when string) {
		t.Helper()
		var all []byte
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			b, err := os.ReadFile(p)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		found := 0
		for _, raw := range raws {
			if bytes.Contains(all, []byte(raw)) {
				t.Errorf("%s: raw id %q found in database files", when, raw)
			}
			if bytes.Contains(all, []byte(HashID(raw))) {
				found++
			}
		}
		if found == 0 {
			t.Errorf("%s: no hash found in the files either: the check reads nothing", when)
		}
	}
	check("open")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed")
}

func TestAuditOrderAndLimit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		// Inserted out of time order; two share a timestamp.
		ats := []time.Duration{3, 1, 2, 2, 5}
		for i, d := range ats {
			e := AuditEntry{At: t0.Add(d * time.Minute), Actor: fmt.Sprintf("u%d", i), Method: "session",
				Action: "syncRepo", Repo: "r", Outcome: "200", Client: "127.0.0.1"}
			if err := s.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			limit int
			want  []string
		}{
			{0, []string{"u4", "u0", "u3", "u2", "u1"}},
			{2, []string{"u4", "u0"}},
			{10, []string{"u4", "u0", "u3", "u2", "u1"}},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
				got, err := s.AuditLog(ctx, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				var actors []string
				for _, e := range got {
					actors = append(actors, e.Actor)
				}
				if !reflect.DeepEqual(actors, tt.want) {
					t.Errorf("actors = %v, want %v", actors, tt.want)
				}
			})
		}
		got, err := s.AuditLog(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		want := AuditEntry{ID: 5, At: t0.Add(5 * time.Minute), Actor: "u4", Method: "session", Action: "syncRepo", Repo: "r", Outcome: "200", Client: "127.0.0.1",
			Requests: 1, LastAt: t0.Add(5 * time.Minute)}
		if !reflect.DeepEqual(got[0], want) {
			t.Errorf("entry = %+v, want %+v", got[0], want)
		}
		if err := s.Audit(ctx, AuditEntry{Action: "x"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("audit without time: %v", err)
		}
		if err := s.Audit(ctx, AuditEntry{At: t0}); !errors.Is(err, ErrInvalid) {
			t.Errorf("audit without action: %v", err)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	// A second handle on the same file, as a second process would have.
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s2.Close() }()

	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			st := s
			if w%2 == 1 {
				st = s2
			}
			for i := 0; i < each; i++ {
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
				if i%5 == 0 {
					if _, err := st.Sweep(ctx, t0); err != nil { // nothing expires at t0
						errs <- err
						return
					}
					if _, err := st.AuditLog(ctx, 10); err != nil {
						errs <- err
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	log, err := s.AuditLog(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != workers*each {
		t.Errorf("%d audit entries, want %d", len(log), workers*each)
	}
}

// TestSQLitePreparesTheSyncWrites: the sync writes run as statements
// prepared once (the cache holds them after a finished sync with a trim),
// give the same history as before across many writes, and Close closes
// them with the database.
func TestSQLitePreparesTheSyncWrites(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	for i := range 6 {
		id := fmt.Sprintf("%02d", i)
		for _, state := range []string{StateQueued, StateRunning, StateSucceeded} {
			if err := s.PutSync(ctx, syncAt("r", id, state), 3); err != nil {
				t.Fatalf("PutSync %s %s: %v", id, state, err)
			}
		}
	}
	cache := s.core.db.(sqliteDB).stmts
	cache.mu.Lock()
	prepared := len(cache.m)
	cache.mu.Unlock()
	if prepared != len(preparedQueries) {
		t.Fatalf("%d statements prepared, want %d", prepared, len(preparedQueries))
	}
	list, err := s.ListSyncs(ctx, "r", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sy := range list {
		ids = append(ids, sy.ID+":"+sy.State)
	}
	if want := []string{"05:succeeded", "04:succeeded", "03:succeeded"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("history %v, want %v", ids, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(cache.m) != 0 {
		t.Fatalf("%d statements left open after Close", len(cache.m))
	}
	// The file is whole and opens again with the history.
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if list, err := s2.ListSyncs(ctx, "r", "", 10); err != nil || len(list) != 3 {
		t.Fatalf("after reopening: %d syncs, %v", len(list), err)
	}
}
