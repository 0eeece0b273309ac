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
	"time"
)

// defaultAuditLimit is what AuditLog returns when asked for limit <= 0.
const defaultAuditLimit = 100

// HashID returns the stored form of a raw session id.
func HashID(rawID string) string {
	sum := sha256.Sum256([]byte(rawID))
	return hex.EncodeToString(sum[:])
}

// CreateSession stores sess under a new random id and returns the raw id,
// which only the caller (the cookie) keeps. Subject and ExpiresAt are
// required; ExpiresAt must be after CreatedAt.
func (s *core) CreateSession(ctx context.Context, sess Session) (rawID string, err error) {
	defer s.timed("create_session")()
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
	_, err = s.db.exec(ctx, `INSERT INTO sessions
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
func (s *core) Session(ctx context.Context, rawID string, now time.Time) (Session, error) {
	defer s.timed("session")()
	if rawID == "" {
		return Session{}, ErrNotFound
	}
	var (
		sess             Session
		gj               string
		created, expires int64
	)
	err := s.db.queryRow(ctx, `SELECT id_hash, subject, email, email_verified, name, groups_json, created_at, expires_at
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
func (s *core) DeleteSession(ctx context.Context, rawID string) error {
	defer s.timed("delete_session")()
	if rawID == "" {
		return nil
	}
	if _, err := s.db.exec(ctx, `DELETE FROM sessions WHERE id_hash = ?`, HashID(rawID)); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// Sweep deletes the sessions expired at now and reports how many went.
func (s *core) Sweep(ctx context.Context, now time.Time) (int64, error) {
	defer s.timed("sweep")()
	n, err := s.db.exec(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: sweep: %w", err)
	}
	return n, nil
}

// Audit appends e to the audit log. At and Action are required; ID is
// assigned.
func (s *core) Audit(ctx context.Context, e AuditEntry) error {
	defer s.timed("audit")()
	if e.At.IsZero() || e.Action == "" || e.Requests < 0 {
		return fmt.Errorf("store: audit: %w: needs a time, an action and a count that is not negative", ErrInvalid)
	}
	requests := max(e.Requests, 1)
	last := e.LastAt
	if last.IsZero() {
		last = e.At
	}
	_, err := s.db.exec(ctx, `INSERT INTO audit (at, actor, subject, method, action, route, repo, outcome, client, requests, last_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.At.UnixNano(), e.Actor, e.Subject, e.Method, e.Action, e.Route, e.Repo, e.Outcome, e.Client, requests, last.UnixNano())
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// AuditLog returns up to limit entries, newest first (by time, then by
// insertion order). limit <= 0 means 100.
func (s *core) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	return s.auditLog(ctx, false, "", limit)
}

// AuditLogOf is AuditLog, of the entries of one subject.
func (s *core) AuditLogOf(ctx context.Context, subject string, limit int) ([]AuditEntry, error) {
	return s.auditLog(ctx, true, subject, limit)
}

// auditLog reads the newest entries, of one subject when of.
func (s *core) auditLog(ctx context.Context, of bool, subject string, limit int) ([]AuditEntry, error) {
	defer s.timed("audit_log")()
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	const cols = `SELECT id, at, actor, subject, method, action, route, repo, outcome, client, requests, last_at FROM audit`
	var (
		rows rowsIter
		err  error
	)
	if of {
		rows, err = s.db.query(ctx, cols+` WHERE subject = ? ORDER BY at DESC, id DESC LIMIT ?`, subject, limit)
	} else {
		rows, err = s.db.query(ctx, cols+` ORDER BY at DESC, id DESC LIMIT ?`, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var (
			e        AuditEntry
			at, last int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Subject, &e.Method, &e.Action, &e.Route, &e.Repo, &e.Outcome, &e.Client, &e.Requests, &last); err != nil {
			return nil, fmt.Errorf("store: audit log: %w", err)
		}
		e.At = time.Unix(0, at).UTC()
		e.LastAt = e.At
		if last != 0 {
			e.LastAt = time.Unix(0, last).UTC()
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	return out, nil
}

// PruneAudit deletes the entries older than before, then all but the
// newest keep, in batches (see AuditStore).
func (s *core) PruneAudit(ctx context.Context, before time.Time, keep int) (int64, error) {
	defer s.timed("prune_audit")()
	var total int64
	// deleteWhere deletes, oldest first, the rows that cond selects,
	// AuditPruneBatch at a time, until a batch comes back short.
	deleteWhere := func(cond string, args ...any) error {
		for {
			n, err := s.db.exec(ctx, `DELETE FROM audit WHERE id IN
				(SELECT id FROM audit WHERE `+cond+` ORDER BY at, id LIMIT ?)`, append(args, AuditPruneBatch)...)
			if err != nil {
				return err
			}
			total += n
			if n < AuditPruneBatch {
				return nil
			}
		}
	}
	if !before.IsZero() {
		if err := deleteWhere(`at < ?`, before.UnixNano()); err != nil {
			return total, fmt.Errorf("store: prune audit log: %w", err)
		}
	}
	if keep > 0 {
		// The newest entry beyond the keep newest: it and every older
		// one go.
		var at, id int64
		err := s.db.queryRow(ctx, `SELECT at, id FROM audit ORDER BY at DESC, id DESC LIMIT 1 OFFSET ?`, keep).Scan(&at, &id)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return total, fmt.Errorf("store: prune audit log: %w", err)
		default:
			if err := deleteWhere(`at < ? OR (at = ? AND id <= ?)`, at, at, id); err != nil {
				return total, fmt.Errorf("store: prune audit log: %w", err)
			}
		}
	}
	return total, nil
}
