// SQLite engine of the store: one file in the data directory.

package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// maxIdleConns is how many idle connections the pool keeps.
const maxIdleConns = 4

// busyTimeout is how long a connection waits for another writer's lock.
const busyTimeout = 5 * time.Second

// SQLite is the Store on one SQLite file. It is safe for concurrent use,
// also by several processes on the same file (of one machine).
type SQLite struct {
	core
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// Open opens (creating when missing, with mode 0600) the database at path and
// brings its schema up to date (Applied says which steps that took).
func Open(ctx context.Context, path string) (*SQLite, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: open %q: %w: path must be a plain file name", path, ErrInvalid)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	dsn := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate",
		path, busyTimeout.Milliseconds())
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// Concurrent syncs each write their record: idle connections kept
	// for them are not opened again (a connection's open runs the
	// pragmas) at every interval. database/sql keeps 2 by default.
	db.SetMaxIdleConns(maxIdleConns)
	s := &SQLite{core: core{db: newSQLiteDB(db), engine: "sqlite"}, db: db}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	if d, ok := s.core.db.(sqliteDB); ok {
		d.stmts.close()
	}
	return s.db.Close()
}

// sqlQueries runs statements on a database/sql connection pool or
// transaction: what sqliteDB and sqliteTx have in common.
type sqlQueries struct {
	c interface {
		ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	}
	stmts *stmtCache
	tx    *sql.Tx // the transaction c is, nil on the pool
}

func (s sqlQueries) exec(ctx context.Context, q string, args ...any) (int64, error) {
	if err := checkText(args); err != nil {
		return 0, err
	}
	if st := s.stmts.get(ctx, q); st != nil {
		if s.tx != nil {
			st = s.tx.StmtContext(ctx, st) // closed with the transaction
		}
		return sqlExec(st.ExecContext(ctx, args...))
	}
	return sqlExec(s.c.ExecContext(ctx, q, args...))
}

// preparedQueries are the statements every sync runs (a few times per
// run, for every repository at every interval): SQLite parses them once
// per connection instead of once per run. Only single statements belong
// here.
var preparedQueries = map[string]bool{putSyncQuery: true, trimSyncsQuery: true}

// stmtCache holds the prepared preparedQueries of one database. A
// statement prepares itself again on each connection it is used on
// (database/sql keeps one per connection), and is closed with the
// database.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// close closes the prepared statements (before the database: SQLite
// keeps a connection with unfinalised statements open).
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		_ = st.Close()
		delete(c.m, q)
	}
}

// get returns q prepared, nil when q is not one of preparedQueries or
// cannot be prepared (then it runs unprepared, and reports its error).
func (c *stmtCache) get(ctx context.Context, q string) *sql.Stmt {
	if c == nil || !preparedQueries[q] {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok {
		return st
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.m[q] = st
	return st
}

func (s sqlQueries) query(ctx context.Context, q string, args ...any) (rowsIter, error) {
	if err := checkText(args); err != nil {
		return nil, err
	}
	rows, err := s.c.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (s sqlQueries) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	if err := checkText(args); err != nil {
		return errRow{err}
	}
	return s.c.QueryRowContext(ctx, q, args...)
}

// sqliteDB adapts database/sql to engineDB. The SQL runs as written.
type sqliteDB struct {
	sqlQueries
	db *sql.DB
}

func newSQLiteDB(db *sql.DB) sqliteDB {
	return sqliteDB{sqlQueries{c: db, stmts: &stmtCache{db: db, m: map[string]*sql.Stmt{}}}, db}
}

func (d sqliteDB) begin(ctx context.Context) (engineTx, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return sqliteTx{sqlQueries{c: tx, stmts: d.stmts, tx: tx}, tx}, nil
}

func (d sqliteDB) ping(ctx context.Context) error { return d.db.PingContext(ctx) }

// SQLite serialises writers: _txlock=immediate takes the write lock at
// BEGIN.
func (d sqliteDB) lockMigrations() string { return "" }

func (d sqliteDB) stepText(m migration) string { return m.sqliteText() }

func (d sqliteDB) close() {
	d.stmts.close()
	_ = d.db.Close()
}

type sqliteTx struct {
	sqlQueries
	tx *sql.Tx
}

func (t sqliteTx) commit(context.Context) error   { return t.tx.Commit() }
func (t sqliteTx) rollback(context.Context) error { return t.tx.Rollback() }

func sqlExec(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }
