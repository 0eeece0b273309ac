package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/store/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// migrateOutput runs stackd migrate and returns its exit code and output.
func migrateOutput(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"migrate"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestMigrate: stackd migrate applies the missing migrations of either
// engine, says which, and applies none the second time; the PostgreSQL
// URL comes from --database-url or STACKD_DATABASE_URL and its password
// is never printed.
func TestMigrate(t *testing.T) {
	pg := pgtest.Shared(t)
	for _, tc := range []struct {
		name  string
		args  func() []string
		where func(args []string) string
	}{
		{"sqlite", func() []string { return []string{"--data-dir", filepath.Join(t.TempDir(), "data")} },
			func(args []string) string { return "database: sqlite " + filepath.Join(args[1], "stackd.db") }},
		{"postgres flag", func() []string { return []string{"--database-url", pg.NewDatabase(t)} },
			func([]string) string { return "database: postgres://stackd@/test_" }},
		{"postgres environment", func() []string { t.Setenv("STACKD_DATABASE_URL", pg.NewDatabase(t)); return nil },
			func([]string) string { return "database: postgres://stackd@/test_" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			args := tc.args()
			code, out, errs := migrateOutput(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s%s", code, out, errs)
			}
			for _, want := range []string{tc.where(args), "applied migration 1: sessions and audit log",
				"applied migration 2: repositories and sync history", "applied migration 3: webhook deliveries and replica ids",
				"applied migration 4: view versions and shared keys", "applied migration 5: bounded audit entries",
				"applied migration 6: repository owners and audit subjects", "applied migration 7: interval schedule", "schema version 7\n"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, pg.Password()) {
				t.Errorf("output shows the password:\n%s", out)
			}
			code, out, errs = migrateOutput(t, args...)
			if code != 0 || strings.Contains(out, "applied") || !strings.Contains(out, "schema version 7: up to date, nothing to apply") {
				t.Fatalf("second run: exit %d:\n%s%s", code, out, errs)
			}
		})
	}
}

// TestMigrateFailures: a URL that is not PostgreSQL's is a usage error
// (2); an unreachable database is one line (1); neither shows the
// password.
func TestMigrateFailures(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--database-url", "mysql://u:sekrit@db/x"}, 2, "want a postgres:// or postgresql:// URL"},
		{[]string{"--database-url", "postgres://u:sekrit@127.0.0.1:1/x"}, 1, "database unavailable"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
	} {
		code, out, errs := migrateOutput(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
		if strings.Contains(out+errs, "sekrit") || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%v: stderr shows the password or is not one line: %q", tc.args, errs)
		}
	}
}

// lineWriter collects log lines and signals when one contains want.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
	once  sync.Once
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.found) })
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestServeOnPostgresNamesTheReplica: stackd serve --database-url serves
// from PostgreSQL; every log line carries the replica id; the database is
// named without its password; the current directory's repository (this
// test runs inside stackd's own) is not served.
func TestServeOnPostgresNamesTheReplica(t *testing.T) {
	pg := pgtest.Shared(t)
	url := pg.NewDatabase(t)
	logs := &lineWriter{want: `"msg":"stackd listening"`, found: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, []string{"--addr", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "data"), "--log-format", "json",
			"--database-url", url, "--replica-id", "replica-7"}, io.Discard, logs)
	}()
	select {
	case <-logs.found:
	case err := <-done:
		t.Fatalf("serve ended: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second): // failure guard
		t.Fatalf("not listening:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	text := logs.String()
	if strings.Contains(text, pg.Password()) {
		t.Errorf("the log shows the database password:\n%s", text)
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	seen := map[string]bool{}
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("not a JSON line: %s", sc.Text())
		}
		if line["replica"] != "replica-7" {
			t.Errorf("a line without the replica: %s", sc.Text())
		}
		msg, _ := line["msg"].(string)
		seen[msg] = true
		if msg == "database" && !strings.HasPrefix(line["url"].(string), "postgres://stackd@/test_") {
			t.Errorf("database line: %s", sc.Text())
		}
	}
	for _, want := range []string{"database", "database migrated", "stackd listening", "shutting down"} {
		if !seen[want] {
			t.Errorf("no %q line:\n%s", want, text)
		}
	}
	if !strings.Contains(text, "not serving a working repository") {
		t.Errorf("the current directory's repository was served:\n%s", text)
	}
}
