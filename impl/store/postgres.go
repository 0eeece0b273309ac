// PostgreSQL engine of the store: one database shared by every stackd
// process (replica) that is given its URL.

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// defaultConnectTimeout bounds one connection attempt when the URL does
// not set connect_timeout: a database that does not answer makes calls
// fail with ErrUnavailable instead of hanging.
const defaultConnectTimeout = 5 * time.Second

// migrationLock is the key of the advisory lock that serialises
// migrations between processes (an arbitrary constant: "stackd" in ASCII).
const migrationLock = 0x737461636b64

// Postgres is the Store on a PostgreSQL database, through a pgx pool. It
// is safe for concurrent use, also by several processes on the same
// database.
type Postgres struct {
	core
	pool *pgxpool.Pool
	desc string
}

var _ Store = (*Postgres)(nil)

// IsPostgresURL reports whether s is a URL this engine takes: postgres://
// or postgresql://. (Key/value connection strings are not accepted: a
// URL is what stackd can describe without its password.)
func IsPostgresURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// OpenPostgres connects to the database at rawURL (postgres://...) and
// brings its schema up to date (Applied says which steps that took). The
// URL may leave out the password (PGPASSWORD and ~/.pgpass are read, as
// libpq does). Errors never contain the URL's password.
func OpenPostgres(ctx context.Context, rawURL string) (*Postgres, error) {
	cfg, err := postgresConfig(rawURL)
	if err != nil {
		return nil, err
	}
	desc := describe(cfg.ConnConfig.Config)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, openError{desc: desc, err: err}
	}
	p := &Postgres{pool: pool, desc: desc}
	p.core = core{db: newPgDB(p), engine: "postgres"}
	if err := p.migrate(ctx); err != nil {
		pool.Close()
		return nil, openError{desc: desc, err: err}
	}
	return p, nil
}

// openError is why OpenPostgres failed, on one line, naming the database
// without its password.
type openError struct {
	desc string
	err  error
}

func (e openError) Error() string {
	msg := strings.NewReplacer(":\n\t", ": ", "\n\t", "; ", "\n", "; ").Replace(e.err.Error())
	return "database " + e.desc + ": " + msg
}

func (e openError) Unwrap() error { return e.err }

// postgresConfig parses a database URL into a pool configuration.
func postgresConfig(rawURL string) (*pgxpool.Config, error) {
	if !IsPostgresURL(rawURL) {
		return nil, fmt.Errorf("store: %w: the database URL must start with postgres:// or postgresql://", ErrInvalid)
	}
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store: %w: database URL: %s", ErrInvalid, parseReason(err))
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	return cfg, nil
}

// parseReason is why a URL did not parse, in words that cannot quote it:
// pgconn's message quotes the URL (masking what it recognises as a
// password), net/url's quotes it whole.
func parseReason(err error) string {
	reason := "cannot parse it"
	if cause := errors.Unwrap(err); cause != nil {
		var ue *url.Error
		if errors.As(cause, &ue) {
			cause = ue.Err
		}
		if msg := cause.Error(); !strings.ContainsAny(msg, "@/") {
			reason = msg
		}
	}
	return reason
}

// DescribeURL names the database of a postgres:// URL for logs and
// messages: user, host(s), port and database, never the password or the
// query. An unparseable URL is described as such.
func DescribeURL(rawURL string) string {
	cfg, err := postgresConfig(rawURL)
	if err != nil {
		return "postgres (unparseable URL)"
	}
	return describe(cfg.ConnConfig.Config)
}

func describe(c pgconn.Config) string {
	u := url.URL{Scheme: "postgres", User: url.User(c.User), Path: "/" + c.Database}
	if strings.HasPrefix(c.Host, "/") {
		u.Host = ""
		return u.String() + "?host=" + c.Host + "&port=" + strconv.Itoa(int(c.Port))
	}
	u.Host = net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	return u.String()
}

// Pool is the connection pool, for what only PostgreSQL offers
// (LISTEN/NOTIFY on an acquired connection, advisory locks). Its errors
// are the driver's: classify them with Unavailable.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// String describes the database without its password.
func (p *Postgres) String() string { return p.desc }

// Close closes the pool.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// Unavailable reports whether err says the database could not be reached
// or went away (as opposed to a statement it refused): the connection
// failed or broke, the server is shutting down or starting up, or a
// deadline passed while waiting for it. A cancelled context (a client
// that left) is not unavailability.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // admin/crash shutdown, cannot connect now
			return true
		case pe.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err):
		return true
	case errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, net.ErrClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// classify turns the driver's errors into the store's: no row is
// sql.ErrNoRows; an unreachable database is ErrUnavailable, and then the
// pool drops its idle connections (they broke with it), so that the
// first call after the database is back opens a fresh one.
func (p *Postgres) classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return sql.ErrNoRows
	case Unavailable(err):
		p.pool.Reset()
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// rebind turns the store's "?" placeholders into PostgreSQL's $1, $2, ...
// Question marks inside quoted literals or identifiers stay.
func rebind(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// pgQueries runs statements (rebound to $n) on the pool or a
// transaction, classifying errors: what pgDB and pgTx have in common.
type pgQueries struct {
	c interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
	p *Postgres
}

func (s pgQueries) exec(ctx context.Context, q string, args ...any) (int64, error) {
	if err := checkText(args); err != nil {
		return 0, err
	}
	tag, err := s.c.Exec(ctx, rebind(q), args...)
	if err != nil {
		return 0, s.p.classify(err)
	}
	return tag.RowsAffected(), nil
}

func (s pgQueries) query(ctx context.Context, q string, args ...any) (rowsIter, error) {
	if err := checkText(args); err != nil {
		return nil, err
	}
	rows, err := s.c.Query(ctx, rebind(q), args...)
	if err != nil {
		return nil, s.p.classify(err)
	}
	return pgRows{rows: rows, p: s.p}, nil
}

func (s pgQueries) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	if err := checkText(args); err != nil {
		return errRow{err}
	}
	return pgRow{row: s.c.QueryRow(ctx, rebind(q), args...), p: s.p}
}

// pgDB adapts the pool to engineDB.
type pgDB struct {
	pgQueries
}

func newPgDB(p *Postgres) pgDB { return pgDB{pgQueries{c: p.pool, p: p}} }

func (d pgDB) begin(ctx context.Context) (engineTx, error) {
	tx, err := d.p.pool.Begin(ctx)
	if err != nil {
		return nil, d.p.classify(err)
	}
	return pgTx{pgQueries{c: tx, p: d.p}, tx}, nil
}

func (d pgDB) ping(ctx context.Context) error { return d.p.classify(d.p.pool.Ping(ctx)) }

func (d pgDB) lockMigrations() string {
	return "SELECT pg_advisory_xact_lock(" + strconv.FormatInt(migrationLock, 10) + ")"
}

func (d pgDB) stepText(m migration) string { return m.postgresText() }

func (d pgDB) close() { d.p.pool.Close() }

type pgTx struct {
	pgQueries
	tx pgx.Tx
}

func (t pgTx) commit(ctx context.Context) error { return t.p.classify(t.tx.Commit(ctx)) }

func (t pgTx) rollback(ctx context.Context) error {
	err := t.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return t.p.classify(err)
}

type pgRows struct {
	rows pgx.Rows
	p    *Postgres
}

func (r pgRows) Next() bool             { return r.rows.Next() }
func (r pgRows) Scan(dest ...any) error { return r.p.classify(r.rows.Scan(dest...)) }
func (r pgRows) Err() error             { return r.p.classify(r.rows.Err()) }
func (r pgRows) Close()                 { r.rows.Close() }

type pgRow struct {
	row pgx.Row
	p   *Postgres
}

func (r pgRow) Scan(dest ...any) error { return r.p.classify(r.row.Scan(dest...)) }
