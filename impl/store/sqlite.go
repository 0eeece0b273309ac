// SQLite engine of the store: one file in the data directory.

package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// busyTimeout is how long a connection waits for another writer's lock.
const busyTimeout = 5 * time.Second

// defaultAuditLimit is what AuditLog returns when asked for limit <= 0.
const defaultAuditLimit = 100

// SQLite is the Store on one SQLite file. It is safe for concurrent use,
// also by several processes on the same file.
type SQLite struct {
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// Open opens (creating when missing, with mode 0600) the database at path and
// brings its schema up to date.
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
	s := &SQLite{db: db}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	return s.db.Close()
}

// SchemaVersion reports how many migrations the database has applied.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("migrate: database schema version %d is newer than this binary's %d", have, len(migrations))
	}
	for i := have; i < len(migrations); i++ {
		m := migrations[i]
		if _, err := tx.ExecContext(ctx, m.sqliteText()); err != nil {
			return fmt.Errorf("migrate: version %d (%s): %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO migrations (version, applied_at) VALUES (?, ?)`,
			m.version, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate: version %d: %w", m.version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// HashID returns the stored form of a raw session id.
func HashID(rawID string) string {
	sum := sha256.Sum256([]byte(rawID))
	return hex.EncodeToString(sum[:])
}

// CreateSession stores sess under a new random id and returns the raw id,
// which only the caller (the cookie) keeps. Subject and ExpiresAt are
// required; ExpiresAt must be after CreatedAt.
func (s *SQLite) CreateSession(ctx context.Context, sess Session) (rawID string, err error) {
	if sess.Subject == "" || sess.ExpiresAt.IsZero() || sess.CreatedAt.IsZero() || !sess.ExpiresAt.After(sess.CreatedAt) {
		return "", fmt.Errorf("store: create session: %w: needs a subject, a creation time and a later expiry", ErrInvalid)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: create session: %w", err)
	}
	rawID = base64.RawURLEncoding.EncodeToString(b[:])
	groups := sess.Groups
	if groups == nil {
		groups = []string{}
	}
	gj, err := json.Marshal(groups)
	if err != nil {
		return "", fmt.Errorf("store: create session: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO sessions
		(id_hash, subject, email, email_verified, name, groups_json, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		HashID(rawID), sess.Subject, sess.Email, sess.EmailVerified, sess.Name, string(gj),
		sess.CreatedAt.UnixNano(), sess.ExpiresAt.UnixNano())
	if err != nil {
		return "", fmt.Errorf("store: create session: %w", err)
	}
	return rawID, nil
}

// Session returns the session for rawID, or ErrNotFound when there is none or
// it has expired at now.
func (s *SQLite) Session(ctx context.Context, rawID string, now time.Time) (Session, error) {
	if rawID == "" {
		return Session{}, ErrNotFound
	}
	var (
		sess             Session
		gj               string
		created, expires int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT id_hash, subject, email, email_verified, name, groups_json, created_at, expires_at
		FROM sessions WHERE id_hash = ? AND expires_at > ?`, HashID(rawID), now.UnixNano()).
		Scan(&sess.ID, &sess.Subject, &sess.Email, &sess.EmailVerified, &sess.Name, &gj, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("store: session: %w", err)
	}
	if err := json.Unmarshal([]byte(gj), &sess.Groups); err != nil {
		return Session{}, fmt.Errorf("store: session %s groups: %w", sess.ID, err)
	}
	sess.CreatedAt = time.Unix(0, created).UTC()
	sess.ExpiresAt = time.Unix(0, expires).UTC()
	return sess, nil
}

// DeleteSession removes the session for rawID; deleting a missing session is
// not an error.
func (s *SQLite) DeleteSession(ctx context.Context, rawID string) error {
	if rawID == "" {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, HashID(rawID)); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// Sweep deletes the sessions expired at now and reports how many went.
func (s *SQLite) Sweep(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: sweep: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: sweep: %w", err)
	}
	return n, nil
}

// Audit appends e to the audit log. At and Action are required; ID is
// assigned.
func (s *SQLite) Audit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() || e.Action == "" {
		return fmt.Errorf("store: audit: %w: needs a time and an action", ErrInvalid)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit (at, actor, method, action, repo, outcome, client)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		e.At.UnixNano(), e.Actor, e.Method, e.Action, e.Repo, e.Outcome, e.Client)
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// AuditLog returns up to limit entries, newest first (by time, then by
// insertion order). limit <= 0 means 100.
func (s *SQLite) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, actor, method, action, repo, outcome, client
		FROM audit ORDER BY at DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []AuditEntry
	for rows.Next() {
		var (
			e  AuditEntry
			at int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Method, &e.Action, &e.Repo, &e.Outcome, &e.Client); err != nil {
			return nil, fmt.Errorf("store: audit log: %w", err)
		}
		e.At = time.Unix(0, at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	return out, nil
}
