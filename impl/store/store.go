// Package store keeps stackd's server-side state in one SQLite file: browser
// sessions and the audit log.
//
// A session is known to the browser by a random raw id (32 bytes, base64url)
// that travels only in its cookie; the database keeps the SHA-256 of it, so a
// copy of the file does not hand out live sessions. The file is created with
// mode 0600, opened in WAL mode with a busy timeout, and its schema is
// versioned by a migrations table so later releases can extend it.
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

// ErrNotFound is returned when a session is missing or expired.
var ErrNotFound = errors.New("store: not found")

// ErrInvalid is returned for a session or audit entry that lacks a required
// field.
var ErrInvalid = errors.New("store: invalid argument")

// busyTimeout is how long a connection waits for another writer's lock.
const busyTimeout = 5 * time.Second

// defaultAuditLimit is what AuditLog returns when asked for limit <= 0.
const defaultAuditLimit = 100

// migrations are applied in order; the migrations table records how many ran.
// Append only: never edit a released entry.
var migrations = []string{
	`CREATE TABLE sessions (
		id_hash        TEXT PRIMARY KEY,
		subject        TEXT NOT NULL,
		email          TEXT NOT NULL DEFAULT '',
		email_verified INTEGER NOT NULL DEFAULT 0,
		name           TEXT NOT NULL DEFAULT '',
		groups_json    TEXT NOT NULL DEFAULT '[]',
		created_at     INTEGER NOT NULL,
		expires_at     INTEGER NOT NULL
	);
	CREATE INDEX sessions_expires_at ON sessions (expires_at);
	CREATE TABLE audit (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		at      INTEGER NOT NULL,
		actor   TEXT NOT NULL DEFAULT '',
		method  TEXT NOT NULL DEFAULT '',
		action  TEXT NOT NULL DEFAULT '',
		repo    TEXT NOT NULL DEFAULT '',
		outcome TEXT NOT NULL DEFAULT '',
		client  TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX audit_at ON audit (at);`,
}

// Store is a handle on the database file. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

// Open opens (creating when missing, with mode 0600) the database at path and
// brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
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
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	return s.db.Close()
}

// SchemaVersion reports how many migrations the database has applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

func (s *Store) migrate(ctx context.Context) error {
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
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate: version %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO migrations (version, applied_at) VALUES (?, ?)`,
			i+1, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate: version %d: %w", i+1, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Session is a signed-in browser's server-side state.
type Session struct {
	// ID is the SHA-256 (hex) of the raw id: safe to log, useless as a
	// cookie. The raw id is never stored. It is set by Session.
	ID            string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string
	CreatedAt     time.Time
	ExpiresAt     time.Time
}

// HashID returns the stored form of a raw session id.
func HashID(rawID string) string {
	sum := sha256.Sum256([]byte(rawID))
	return hex.EncodeToString(sum[:])
}

// CreateSession stores sess under a new random id and returns the raw id,
// which only the caller (the cookie) keeps. Subject and ExpiresAt are
// required; ExpiresAt must be after CreatedAt.
func (s *Store) CreateSession(ctx context.Context, sess Session) (rawID string, err error) {
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
func (s *Store) Session(ctx context.Context, rawID string, now time.Time) (Session, error) {
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
func (s *Store) DeleteSession(ctx context.Context, rawID string) error {
	if rawID == "" {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, HashID(rawID)); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// Sweep deletes the sessions expired at now and reports how many went.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int64, error) {
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

// AuditEntry is one audited operation.
type AuditEntry struct {
	ID      int64
	At      time.Time
	Actor   string // e-mail or subject of the principal; empty when anonymous
	Method  string // session | bearer | anonymous
	Action  string // the operationId
	Repo    string // the repository id, when the operation names one
	Outcome string // the final status, e.g. "200" or "403 read-only"
	Client  string // the client address
}

// Audit appends e to the audit log. At and Action are required; ID is
// assigned.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
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
func (s *Store) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
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
