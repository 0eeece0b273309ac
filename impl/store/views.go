package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// View is the record of a mirror's current view that replicas sharing the
// database agree on (ViewStore).
type View struct {
	// Version is the view's version, as every replica serves it.
	Version int64
	// ContentHash is the view's content hash (view.Snapshot.ContentHash):
	// the same refs, metadata and HEAD give the same hash on every
	// replica.
	ContentHash string
	// BuiltAt is the build time every replica shows for this version, so
	// that they serve the same bytes.
	BuiltAt time.Time
}

// commitViewQuery stores a view's content hash and decides its version in
// one statement, also between processes: the stored version when the
// hash is the stored one (raised to the caller's local version if that
// is higher), else one above both the stored version and the caller's.
// The build time of a version is the one it was first committed with.
const commitViewQuery = `INSERT INTO view_versions (repo_key, repo_id, version, content_hash, built_at)
	VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (repo_key) DO UPDATE SET
		version = CASE
			WHEN view_versions.content_hash = excluded.content_hash THEN
				CASE WHEN view_versions.version >= CAST(? AS BIGINT) THEN view_versions.version ELSE CAST(? AS BIGINT) END
			WHEN view_versions.version >= excluded.version THEN view_versions.version + 1
			ELSE excluded.version END,
		built_at = CASE WHEN view_versions.content_hash = excluded.content_hash THEN view_versions.built_at ELSE excluded.built_at END,
		content_hash = excluded.content_hash,
		repo_id = excluded.repo_id
	RETURNING version, content_hash, built_at`

// CommitView records hash as the repository's current view.
func (s *core) CommitView(ctx context.Context, repoID, hash string, local int64, builtAt time.Time) (View, bool, error) {
	defer s.timed("commit_view")()
	if repoID == "" || hash == "" || local < 0 || builtAt.IsZero() {
		return View{}, false, fmt.Errorf("store: commit view: %w: needs a repository, a hash, a version >= 0 and a build time", ErrInvalid)
	}
	var (
		v  View
		at int64
	)
	err := s.db.queryRow(ctx, commitViewQuery, strings.ToLower(repoID), repoID, local+1, hash, builtAt.UnixNano(), local, local).
		Scan(&v.Version, &v.ContentHash, &at)
	if err != nil {
		return View{}, false, fmt.Errorf("store: commit view: %w", err)
	}
	v.BuiltAt = time.Unix(0, at).UTC()
	// A new version takes the caller's build time; a stored one keeps
	// its own (equal nanoseconds by chance would only skip a notice).
	return v, at == builtAt.UnixNano(), nil
}

// CurrentView returns the repository's current view record.
func (s *core) CurrentView(ctx context.Context, repoID string) (View, error) {
	defer s.timed("current_view")()
	var (
		v  View
		at int64
	)
	err := s.db.queryRow(ctx, `SELECT version, content_hash, built_at FROM view_versions WHERE repo_key = ?`,
		strings.ToLower(repoID)).Scan(&v.Version, &v.ContentHash, &at)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return View{}, fmt.Errorf("store: view of %q: %w", repoID, ErrNotFound)
		}
		return View{}, fmt.Errorf("store: view: %w", err)
	}
	v.BuiltAt = time.Unix(0, at).UTC()
	return v, nil
}

// SharedKey returns the key called name, creating it (size random bytes)
// when no process has yet: every process sharing the database gets the
// same bytes.
func (s *core) SharedKey(ctx context.Context, name string, size int) ([]byte, error) {
	defer s.timed("shared_key")()
	if name == "" || size <= 0 {
		return nil, fmt.Errorf("store: shared key: %w: needs a name and a size", ErrInvalid)
	}
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("store: shared key: %w", err)
	}
	if _, err := s.db.exec(ctx, `INSERT INTO shared_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
		name, hex.EncodeToString(fresh)); err != nil {
		return nil, fmt.Errorf("store: shared key: %w", err)
	}
	var value string
	if err := s.db.queryRow(ctx, `SELECT value FROM shared_keys WHERE name = ?`, name).Scan(&value); err != nil {
		return nil, fmt.Errorf("store: shared key: %w", err)
	}
	key, err := hex.DecodeString(value)
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("store: shared key %q is not hex", name)
	}
	return key, nil
}
