package store

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// The Store is implemented once, by core, over the few operations every
// engine provides (engineDB): the SQL is the same text for SQLite and
// PostgreSQL (written with "?" placeholders, which the PostgreSQL engine
// rebinds to $n), so the two engines cannot drift apart in what they
// mean. An engine only adapts its driver: database/sql for SQLite, a pgx
// pool for PostgreSQL, and says how its errors read (sql.ErrNoRows for
// "no row"; ErrUnavailable when the database cannot be reached).

// checkText refuses a statement whose arguments hold a NUL byte in text
// (ErrNUL), before it reaches the database. Both engines call it on every
// statement: PostgreSQL cannot store NUL in TEXT (it would fail with an
// error of its own, a 500), and SQLite, which could, refuses it too, so
// the engines agree whatever field a value came from.
func checkText(args []any) error {
	for i, a := range args {
		var s string
		switch v := a.(type) {
		case string:
			s = v
		case *string:
			if v == nil {
				continue
			}
			s = *v
		case []byte:
			s = string(v)
		default:
			continue
		}
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w (argument %d)", ErrNUL, i+1)
		}
	}
	return nil
}

// errRow is the row of a statement refused before it ran.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// querier runs statements, in or outside a transaction.
type querier interface {
	// exec runs a statement and reports how many rows it changed.
	exec(ctx context.Context, q string, args ...any) (int64, error)
	// query runs a query; the caller closes the rows.
	query(ctx context.Context, q string, args ...any) (rowsIter, error)
	// queryRow runs a query of at most one row; Scan reports
	// sql.ErrNoRows when there was none.
	queryRow(ctx context.Context, q string, args ...any) rowScanner
}

// engineDB is a database handle of one engine.
type engineDB interface {
	querier
	// begin starts a transaction. SQLite's are serialised (BEGIN
	// IMMEDIATE); PostgreSQL's are READ COMMITTED.
	begin(ctx context.Context) (engineTx, error)
	// ping checks that the database answers.
	ping(ctx context.Context) error
	// lockMigrations is the statement that serialises migrations between
	// processes inside a transaction ("" when transactions already are).
	lockMigrations() string
	// stepText is the text of a migration for this engine.
	stepText(m migration) string
	close()
}

type engineTx interface {
	querier
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

type rowsIter interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

type rowScanner interface {
	Scan(dest ...any) error
}

// core implements Store over an engine.
type core struct {
	db engineDB
	// engine names it in the metrics: sqlite or postgres.
	engine string
	// applied are the migration steps the last migrate applied.
	applied []Step
	// observer times each operation (Observe); nil: none.
	observer atomic.Pointer[QueryObserver]
}

// QueryObserver is told the time of each operation of a store (package
// metrics: metrics.Metrics.StoreQuery); operation is the method's name in
// snake case (put_sync, seen_delivery, ...).
type QueryObserver interface {
	StoreQuery(engine, operation string, d time.Duration)
}

// Observe makes o time every operation of the store from now on.
func (c *core) Observe(o QueryObserver) { c.observer.Store(&o) }

// timed starts timing an operation; call what it returns at its end.
func (c *core) timed(operation string) func() {
	o := c.observer.Load()
	if o == nil {
		return func() {}
	}
	start := time.Now()
	return func() { (*o).StoreQuery(c.engine, operation, time.Since(start)) }
}

// SchemaVersion reports how many migrations the database has applied.
func (c *core) SchemaVersion(ctx context.Context) (int, error) {
	defer c.timed("schema_version")()
	var v int
	if err := c.db.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

// Ping checks that the database answers.
func (c *core) Ping(ctx context.Context) error {
	defer c.timed("ping")()
	if err := c.db.ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Applied returns the migration steps that opening the store applied, in
// order (none when the schema was already current).
func (c *core) Applied() []Step { return append([]Step(nil), c.applied...) }

// migrate applies, in one transaction, the steps above the version the
// database has recorded. A database newer than this binary is refused.
func (c *core) migrate(ctx context.Context) error {
	tx, err := c.db.begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = tx.rollback(context.WithoutCancel(ctx)) }()
	if lock := c.db.lockMigrations(); lock != "" {
		if _, err := tx.exec(ctx, lock); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
	}
	if _, err := tx.exec(ctx, `CREATE TABLE IF NOT EXISTS migrations (
		version    INTEGER PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := tx.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("migrate: %w: database schema version %d is newer than this binary's %d", ErrSchemaTooNew, have, len(migrations))
	}
	var applied []Step
	for i := have; i < len(migrations); i++ {
		m := migrations[i]
		if _, err := tx.exec(ctx, c.db.stepText(m)); err != nil {
			return fmt.Errorf("migrate: version %d (%s): %w", m.version, m.name, err)
		}
		if _, err := tx.exec(ctx, `INSERT INTO migrations (version, applied_at) VALUES (?, ?)`,
			m.version, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate: version %d: %w", m.version, err)
		}
		applied = append(applied, Step{Version: m.version, Name: m.name})
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	c.applied = applied
	return nil
}
